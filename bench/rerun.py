"""No-op rerun: what does running the same command again cost once everything is done?

Over the stdlib (default excludes; quick: its first 40 files), ``snipstream run`` annotates everything
against the fake server (its own process, answering at once; --concurrency 64, a fresh --db, -o a file),
then the very same command runs again: ROUNDS times, each from a copy of the checkpoint and output as the
first run left them (so every round is a true second run). Figures: the second run's wall time (process
start to exit) as a share of the single-threaded extraction time of the same files (benchmark 5's best
figure when it ran in the same suite, else measured here), as median, IQR and range over the rounds; the
requests the second runs sent and the lines they added to the output. Targets: <= 10% and 0 requests.
For information, a third run of the same command after the last round, and how many files the
checkpoint's file index (table ``files``, if the schema has it) holds after the first and second runs.

    python -m bench rerun [--quick]
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench._common import (
    STDLIB,
    Row,
    Server,
    db_count,
    fnum,
    fspread,
    link_tree,
    python_files,
    run_proc,
    snipstream,
    spread,
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


ROUNDS = 5


def _save(db: Path, out: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in [out, *db.parent.glob(db.name + "*")]:
        shutil.copy2(f, dest / f.name)


def _restore(db: Path, out: Path, src: Path) -> None:
    for f in db.parent.glob(db.name + "*"):
        f.unlink()
    for f in src.iterdir():
        shutil.copy2(f, db.parent / f.name)


def run(quick: bool) -> list[Row]:
    timeout = 120 if quick else 1800
    rounds = 2 if quick else ROUNDS
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
        index1 = db_count(db, _INDEXED)
        _save(db, out, work / "after-first")
        seconds = []
        for i in range(rounds):
            if i:
                _restore(db, out, work / "after-first")
            server.reset()
            res = run_proc(argv, timeout=timeout, cwd=work)
            st = server.stats()
            seconds.append((res, st["arrived"], _lines(out) - lines1))
        index2 = db_count(db, _INDEXED)
        server.reset()
        third = run_proc(argv, timeout=timeout, cwd=work)
        s3 = server.stats()
        ext_t, ext_n = extract_seconds(tree, tree_files)
    problems = ""
    for res, _, _ in seconds:
        if res.timed_out or res.returncode != 0:
            problems = f"; exit {res.returncode}: {res.tail(200)}"
    where = f"{len(tree_files):,} files of the stdlib{' (quick)' if quick else ''}"
    walls = [res.wall for res, _, _ in seconds]
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
            fspread([100 * w / ext_t for w in walls], lambda x: f"{x:.1f}", "%"),
            "≤ 10%",
            note=f"second run wall {spread(walls).median:.2f} s ("
            + ", ".join(f"{w:.2f}" for w in walls)
            + f"), CPU {spread([r.cpu for r, _, _ in seconds]).median:.2f} s, RSS "
            f"{max(r.maxrss_kb for r, _, _ in seconds) / 1024:.0f} MB (medians, max RSS); extraction "
            f"{ext_t:.2f} s for {ext_n:,} snippets (best){problems}",
        ),
        Row(
            TITLE,
            "requests sent by the second run (most in any round)",
            f"{max(n for _, n, _ in seconds):,}",
            "0",
            note=f"{max(n for _, _, n in seconds):,} lines added to the output (most in any round); "
            f"{len(seconds)} rounds",
        ),
        Row(
            TITLE,
            "for information: a third run (same command) ÷ the same extraction time",
            f"{100 * third.wall / ext_t:.1f}%",
            note=f"third run wall {third.wall:.2f} s, CPU {third.cpu:.2f} s, {s3['arrived']:,} requests; "
            f"files in the checkpoint's file index after the first run {fnum(index1)}, after the second "
            f"{fnum(index2)} (of {len(tree_files):,})",
        ),
    ]


if __name__ == "__main__":
    from bench.runner import standalone

    standalone(NAME)
