"""The README's performance table is bench/RESULTS.md's, and every verdict is computed, never written.

`python -m bench` (a full run) writes bench/RESULTS.md and rewrites the README's table from it
(`python -m bench.readme` does the rewrite alone). These tests fail when someone edits a figure or a verdict
by hand in either file, or when the README's table is left behind by a new run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import readme
from bench.readme import current_block, parse_results, render, splice, verdict

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
RESULTS = REPO / "bench" / "RESULTS.md"


def _performance_section(text: str) -> str:
    start = text.index("\n## Performance\n")
    return text[start : text.index("\n## ", start + 1)]


def test_readme_performance_table_is_generated_from_results_md():
    text = README.read_text()
    block = current_block(text)
    assert block in _performance_section(text), "the generated table must sit in ## Performance"
    assert block == render(RESULTS.read_text()), (
        "README.md's performance table differs from bench/RESULTS.md: run `python -m bench.readme`"
    )


def test_results_md_is_a_full_run_and_its_verdicts_are_computed():
    text = RESULTS.read_text()
    res = parse_results(text)
    assert "QUICK mode" not in res.command
    assert res.rows
    for row in res.rows:
        assert row["verdict"] == verdict(row["result"], row["target"]), row
    # every target in the table states a number the verdict can be computed from
    for row in res.rows:
        if row["target"]:
            assert readme.parse_target(row["target"]) is not None, row


def test_a_figure_edited_by_hand_in_the_readme_is_caught(tmp_path):
    text = README.read_text()
    block = current_block(text)
    table_rows = [x for x in block.splitlines() if x.startswith("| ") and "| --- |" not in x][1:]
    first = table_rows[0]
    cells = first.split(" | ")
    cells[2] = cells[2] + "0"  # one digit more in the first result
    stale = splice(text, block.replace(first, " | ".join(cells)))
    (tmp_path / "README.md").write_text(stale)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.readme",
            "--check",
            "--readme",
            str(tmp_path / "README.md"),
            "--results",
            str(RESULTS),
        ],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout.decode()
    ok = subprocess.run(
        [sys.executable, "-m", "bench.readme", "--check"], cwd=REPO, capture_output=True, timeout=60
    )
    assert ok.returncode == 0, ok.stdout.decode()[-2000:]


@pytest.mark.parametrize(
    ("result", "target", "expected"),
    [
        ("0.70 (median of 9; IQR 0.68–0.72, range 0.64–0.75)", "≥ 0.9", "missed"),
        ("0.93 (median of 9; IQR 0.91–0.95, range 0.80–1.00)", "≥ 0.9", "met"),
        ("0.92 (median of 9; IQR 0.85–0.95, range 0.80–1.00)", "≥ 0.9", "undecided"),
        ("3.27 (median of 9; IQR 3.10–3.40, range 2.90–3.60)", "≥ 1.5", "met"),
        ("0.361 s (median of 5; IQR 0.359–0.392 s, range 0.350–0.400 s)", "< 1 s", "met"),
        ("RSS 113 MB", "≤ 150 MB", "met"),
        ("RSS 168 MB", "≤ 150 MB", "missed"),
        ("1.28", "≤ 1.1 (flat)", "missed"),  # the README once called this "flat"
        ("1.53", "≤ 1.1 (flat)", "missed"),
        ("1.04", "≤ 1.1 (flat)", "met"),
        ("6.1% (median of 5; IQR 5.9–6.3%, range 5.0–7.0%)", "≤ 10%", "met"),
        ("12% (median of 5; IQR 9–13%, range 8–14%)", "≤ 10%", "undecided"),
        ("0", "0", "met"),
        ("3", "0", "missed"),
        ("357 (median of 3; IQR 350–360, range 340–370)", "1,000", "missed"),
        ("1,000 (median of 3; IQR 1,000–1,000, range 1,000–1,000)", "1,000", "met"),
        ("2.06 (median of 4; IQR 2.00–2.10, range 1.90–2.20)", "< 1 (faster than the floor)", "missed"),
        ("n/a (aiohttp not installed)", "≥ 0.9", "n/a"),
        ("0.5", "", ""),
    ],
)
def test_verdict_is_computed_from_the_figure_and_the_target(result, target, expected):
    assert verdict(result, target) == expected
