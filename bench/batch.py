"""Batch files: peak RSS and time of ``batch submit --batch-file-only`` on the largest tree at hand.

``snipstream batch submit`` plans as a run does and writes OpenAI batch JSONL (split at 50,000 requests and
200 MB a file). With ``--batch-file-only DIR`` nothing is uploaded, so the figure is the planner and the
writer alone: the Python installation's lib directory with site-packages (~250k snippets,
``--no-default-excludes``), a fresh checkpoint. Peak RSS is the process's own ru_maxrss (spawned by the
bare launcher, bench/_exec.py). Target: ≤ 150 MB. For scale, the dry run of the same tree (same planner,
no files, no checkpoint writes) runs beside it. Quick mode: the first ~3k snippets.

    python -m bench batch [--quick]
"""

from __future__ import annotations

from bench._common import (
    MODEL,
    PY,
    STDLIB,
    Row,
    first_files_for,
    fnum,
    link_tree,
    python_files,
    rate,
    run_proc,
    workdir,
)

NAME = "batch"
TITLE = "7 batch files"


def _argv(command: list[str], tree, db, extra: list[str]) -> list[str]:
    return [PY, "-m", "stream", *command, str(tree), "--model", MODEL, "--db", str(db), "--progress", "off",
            "--no-default-excludes", *extra]  # fmt: skip


def run(quick: bool) -> list[Row]:
    files = python_files(STDLIB, default_excludes=False)
    timeout = 300 if quick else 3600
    rows: list[Row] = []
    with workdir(NAME) as work:
        if quick:
            tree, label = link_tree(first_files_for(files, 3_000), STDLIB, work / "tree"), "~3k snippets"
        else:
            tree, label = STDLIB, f"full tree ({len(files):,} files)"
        out = work / "batches"
        res = run_proc(
            _argv(["batch", "submit"], tree, work / "b.db", ["--batch-file-only", str(out)]),
            timeout=timeout,
            cwd=work,
        )
        written = sorted(out.glob("*.jsonl")) if out.exists() else []
        lines = sum(sum(1 for _ in p.open("rb")) for p in written)
        size = sum(p.stat().st_size for p in written)
        note = (
            f"{fnum(lines)} request lines in {len(written)} files ({size / 1e6:,.0f} MB); wall {res.wall:.1f} s "
            f"({fnum(rate(lines, res.wall))} lines/s), CPU {res.cpu:.1f} s"
        )
        if res.timed_out or res.returncode != 0:
            note += f"; exit {res.returncode}: {res.tail(200)}"
        rows.append(Row(TITLE, f"batch submit --batch-file-only, {label}", f"RSS {res.maxrss_kb / 1024:.0f} MB",
                        "≤ 150 MB", note))  # fmt: skip
        dry = run_proc(
            _argv(["run"], tree, work / "d.db", ["--dry-run", "-o", "/dev/null"]), timeout=timeout, cwd=work
        )
        rows.append(Row(TITLE, f"for scale: --dry-run, {label}", f"RSS {dry.maxrss_kb / 1024:.0f} MB", "",
                        f"wall {dry.wall:.1f} s, CPU {dry.cpu:.1f} s"))  # fmt: skip
    return rows
