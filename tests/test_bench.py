"""The benchmarks run (quick mode): CI checks they work; their figures are read by people, not asserted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_ratelimit_benchmark_quick_mode_prints_its_table():
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ratelimit", "--quick"],
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    table = proc.stdout.decode()
    for row in ("(a) limits configured", "(b) headers only", "(c) configured 2x too high"):
        line = next(x for x in table.splitlines() if x.startswith(f"| {row}"))
        assert "| 200/200 |" in line  # every snippet done in every scenario


@pytest.mark.timeout(300)
@pytest.mark.timeout(240)  # the whole suite in quick mode: about 30 s alone, more on a busy machine
def test_benchmark_suite_quick_mode_prints_one_table_and_writes_the_results_file(tmp_path):
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    table = proc.stdout.decode()
    assert table.startswith("| benchmark | measurement | result | target | notes |")
    for title in (
        "1 throughput",
        "2 concurrency",
        "3 first request",
        "4 memory",
        "5 extraction",
        "6 no-op rerun",
    ):
        assert f"| {title} |" in table, title
    assert "| error |" not in table
    snipstream_row = next(
        x for x in table.splitlines() if x.startswith("| 1 throughput | (a) snipstream run")
    )
    assert "snippets/s" in snipstream_row and "errors" not in snipstream_row
    text = out.read_text()
    assert "QUICK mode" in text and table.strip() in text
    assert "## Commands" in text and "python -m stream run" in text
