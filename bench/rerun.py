"""No-op rerun: what does running the same command again cost once everything is done?

Over the stdlib (default excludes; quick: its first 40 files), ``snipstream run`` annotates everything
against the fake server (its own process, answering at once; --concurrency 64, a fresh --db, -o a file),
then the very same command runs again. Figures: the second run's wall time (process start to exit) as a
share of the single-threaded extraction time of the same files (benchmark 5's figure when it ran in the
same suite, else measured here), the requests the second run sent and the lines it added to the output.
Targets: <= 10% and 0 requests. For information, a third run of the same command, and how many files the
checkpoint's file index (table ``files``, if the schema has it) holds after the first and second runs.

    python -m bench rerun [--quick]
"""

from __future__ import annotations

from bench._common import (
    STDLIB,
    Row,
    Server,
    db_count,
    fnum,
    link_tree,
    python_files,
    run_proc,
    snipstream,
    workdir,
)
from bench.extraction import extract_seconds

NAME = "rerun"
TITLE = "6 no-op rerun"
# Files in the checkpoint's file index (None when the schema has no such table).
_INDEXED = "SELECT count(*) FROM files"


def _lines(path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def run(quick: bool) -> list[Row]:
    timeout = 120 if quick else 1800
    files = python_files(STDLIB)
    if quick:
        files = files[:40]
    with workdir(NAME) as work, Server(chunks=20) as server:
        tree = link_tree(files, STDLIB, work / "tree") if quick else STDLIB
        tree_files = python_files(tree) if quick else files
        out = work / "out.ndjson"
        db = work / "rerun.db"
        argv = snipstream([tree], db=db, output=out, url=server.url, extra=["--concurrency", "64", "-q"])
        server.reset()
        first = run_proc(argv, timeout=timeout, cwd=work).check(ok=(0, 1))
        s1 = server.stats()
        lines1 = _lines(out)
        server.reset()
        index1 = db_count(db, _INDEXED)
        second = run_proc(argv, timeout=timeout, cwd=work)
        s2 = server.stats()
        lines2 = _lines(out) - lines1
        index2 = db_count(db, _INDEXED)
        server.reset()
        third = run_proc(argv, timeout=timeout, cwd=work)
        s3 = server.stats()
        ext_t, ext_n = extract_seconds(tree, tree_files)
    problems = ""
    if second.timed_out or second.returncode != 0:
        problems = f"; exit {second.returncode}: {second.tail(200)}"
    where = f"{len(tree_files):,} files of the stdlib{' (quick)' if quick else ''}"
    return [
        Row(
            TITLE,
            f"first run to completion, {where}",
            f"{first.wall:.1f} s",
            note=f"{fnum(s1['arrived'])} requests, {lines1:,} lines written, CPU {first.cpu:.1f} s, "
            f"RSS {first.maxrss_kb / 1024:.0f} MB",
        ),
        Row(
            TITLE,
            "second run (same command) ÷ single-threaded extraction of the same files",
            f"{second.wall / ext_t:.0%}",
            "≤ 10%",
            note=f"second run wall {second.wall:.2f} s, CPU {second.cpu:.2f} s, RSS "
            f"{second.maxrss_kb / 1024:.0f} MB; extraction {ext_t:.2f} s for {ext_n:,} snippets{problems}",
        ),
        Row(
            TITLE,
            "requests sent by the second run",
            f"{s2['arrived']:,}",
            "0",
            note=f"{lines2:,} lines added to the output",
        ),
        Row(
            TITLE,
            "for information: a third run (same command) ÷ the same extraction time",
            f"{third.wall / ext_t:.0%}",
            note=f"third run wall {third.wall:.2f} s, CPU {third.cpu:.2f} s, {s3['arrived']:,} requests; "
            f"files in the checkpoint's file index after the first run {fnum(index1)}, after the second "
            f"{fnum(index2)} (of {len(tree_files):,})",
        ),
    ]


if __name__ == "__main__":
    from bench.runner import standalone

    standalone(NAME)
