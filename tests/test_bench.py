"""The benchmarks run (quick mode): CI checks they work; their figures are read by people, not asserted."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_ratelimit_benchmark_quick_mode_prints_its_table():
    proc = subprocess.run([sys.executable, "-m", "bench.ratelimit", "--quick"], cwd=REPO, capture_output=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    table = proc.stdout.decode()
    for row in ("(a) limits configured", "(b) headers only", "(c) configured 2x too high"):
        line = next(x for x in table.splitlines() if x.startswith(f"| {row}"))
        assert "| 200/200 |" in line  # every snippet done in every scenario
