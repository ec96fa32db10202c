"""Extraction: snippets/s over the standard library, against the floor of parsing it.

The tree: the stdlib directory (``sysconfig.get_paths()["stdlib"]``) with the default excludes (so without
site-packages), every ``.py`` file up to --max-file-bytes; the bytes are read into memory first (not
timed). Single-threaded, in one process, each timed after a ``gc.collect()``, interleaved, best of 2 (quick:
1, on the first 100 files):

* floor: ``ast.parse`` of every file's bytes;
* ``stream.extract.python.extract`` on every file (what snipstream does per file);
* the naive way: ``ast.parse``, ``ast.walk`` over FunctionDef/AsyncFunctionDef/ClassDef, ``ast.unparse`` each;

then snipstream's whole extraction stage, in process: ``stream.scan.scan`` over the tree with ``jobs=2`` (a
pool of 2 spawned processes, pool start-up included: each reads its files, extracts, filters and scans for
secrets, and pickles the snippets back) and with ``jobs=1`` (one thread, for reference). The floor does
less than the stage (no reading, no filters, no secrets scan). Last, as whole processes: ``snipstream run
<stdlib> --dry-run -o /dev/null --jobs 2``, and the same without ``--jobs`` (a dry run also renders every
prompt and counts its tokens). Targets: extract/floor time <= 1.1; the stage with jobs=2 faster than the
floor.

    python -m bench extraction [--quick]
"""

from __future__ import annotations

import ast
import gc
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench._common import (
    SHARED,
    STDLIB,
    Row,
    dry_run_counts,
    fnum,
    fratio,
    has_option,
    link_tree,
    python_files,
    rate,
    run_proc,
    snipstream,
    workdir,
)

NAME = "extraction"
TITLE = "5 extraction"
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def load(files: Sequence[Path], base: Path) -> list[tuple[str, bytes]]:
    out = []
    for f in files:
        try:
            out.append((f.relative_to(base).as_posix(), f.read_bytes()))
        except OSError:
            continue
    return out


def _floor(datas: list[tuple[str, bytes]]) -> int:
    for _, data in datas:
        try:
            ast.parse(data)
        except Exception:
            continue
    return 0


def _extract(datas: list[tuple[str, bytes]]) -> int:
    from stream.extract.python import extract

    n = 0
    for rel, data in datas:
        try:
            n += len(extract(data, rel))
        except Exception:
            continue
    return n


def _naive(datas: list[tuple[str, bytes]]) -> int:
    n = 0
    for _, data in datas:
        try:
            tree = ast.parse(data)
            for node in ast.walk(tree):
                if isinstance(node, _DEFS):
                    ast.unparse(node)
                    n += 1
        except Exception:
            continue
    return n


def measure(
    datas: list[tuple[str, bytes]], reps: int, which: Sequence[str] = ("floor", "extract", "naive")
) -> dict[str, tuple[float, int]]:
    """Best time (s) and snippet count of each approach over `datas`, interleaved `reps` times."""
    fns: dict[str, Callable[[list[tuple[str, bytes]]], int]] = {
        "floor": _floor,
        "extract": _extract,
        "naive": _naive,
    }
    best: dict[str, tuple[float, int]] = {}
    for _ in range(reps):
        for name in which:
            gc.collect()
            t = time.perf_counter()
            count = fns[name](datas)
            elapsed = time.perf_counter() - t
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, count)
    return best


def _scan(tree: Path, jobs: int, reps: int) -> tuple[float, int, int]:
    """Best time of snipstream's extraction stage over `tree`, with its snippet and file counts."""
    from stream.scan import Scanned, scan

    best = (float("inf"), 0, 0)
    for _ in range(reps):
        gc.collect()
        t = time.perf_counter()
        count = nfiles = 0
        for item in scan([tree], jobs=jobs):
            if isinstance(item, Scanned):
                count += len(item.snippets)
                nfiles += 1
        elapsed = time.perf_counter() - t
        if elapsed < best[0]:
            best = (elapsed, count, nfiles)
    return best


def extract_seconds(tree: Path, files: Sequence[Path], reps: int = 1) -> tuple[float, int]:
    """Single-threaded extraction time of `files` (under `tree`), measured once per run and shared."""
    key = f"extract:{tree}:{len(files)}"
    if key not in SHARED:
        SHARED[key] = measure(load(files, tree), reps, ("extract",))["extract"]
    return SHARED[key]


def run(quick: bool) -> list[Row]:
    reps = 1 if quick else 2
    timeout = 120 if quick else 1800
    files = python_files(STDLIB)
    if quick:
        files = files[:100]
    datas = load(files, STDLIB)
    size = sum(len(d) for _, d in datas)
    best = measure(datas, reps)
    SHARED[f"extract:{STDLIB}:{len(files)}"] = best["extract"]
    floor_t = best["floor"][0]
    snippets = best["extract"][1]
    rows = [
        Row(
            TITLE,
            "tree",
            f"{len(datas):,} files, {size / 1e6:.1f} MB, {snippets:,} snippets",
            note=f"{STDLIB}, default excludes{', first 100 files (quick)' if quick else ''}",
        )
    ]
    labels = {
        "floor": "floor: ast.parse of every file, one core",
        "extract": "stream.extract.python.extract on every file, one thread",
        "naive": "naive: ast.walk + ast.unparse of every def/class, one thread",
    }
    for name in ("floor", "extract", "naive"):
        t, count = best[name]
        rows.append(
            Row(
                TITLE,
                labels[name],
                f"{fnum(rate(snippets, t))} snippets/s",
                note=f"{t:.2f} s{'' if name == 'floor' else f', {count:,} snippets'}; best of {reps}",
            )
        )

    with workdir(NAME) as work:
        tree = link_tree(files, STDLIB, work / "tree") if quick else STDLIB
        stage: dict[int, float] = {}
        for jobs in (2, 1):
            t, count, nfiles = _scan(tree, jobs, reps)
            stage[jobs] = t
            rows.append(
                Row(
                    TITLE,
                    f"extraction stage: stream.scan.scan(<stdlib>, jobs={jobs}), reading, filters and secrets "
                    "scan included",
                    f"{fnum(rate(count, t))} snippets/s",
                    note=f"{t:.2f} s, {count:,} snippets kept in {nfiles:,} files; best of {reps}"
                    + (" (pool start-up included)" if jobs > 1 else " (one thread, for reference)"),
                )
            )
        cli: dict[str, float | None] = {}
        for key, extra in (("jobs2", ["--jobs", "2"]), ("default", [])):
            if key == "jobs2" and not has_option("--jobs"):
                cli[key] = None
                rows.append(
                    Row(
                        TITLE,
                        "snipstream run <stdlib> --dry-run -o /dev/null --jobs 2",
                        "n/a (no --jobs yet)",
                    )
                )
                continue
            res = run_proc(
                snipstream([tree], db=work / f"{key}.db", extra=["--dry-run", *extra]),
                timeout=timeout,
                cwd=work,
            )
            n, nfiles = dry_run_counts(res.stderr)
            cli[key] = res.wall if res.returncode == 0 and not res.timed_out else None
            note = (
                f"whole process: wall {res.wall:.2f} s, CPU {res.cpu:.2f} s ({res.cpu / res.wall:.0%} of a "
                f"core), RSS {res.maxrss_kb / 1024:.0f} MB; {fnum(n)} snippets in {fnum(nfiles)} files"
            )
            if cli[key] is None:
                note += f"; exit {res.returncode}: {res.tail(200)}"
            rows.append(
                Row(
                    TITLE,
                    f"snipstream run <stdlib> --dry-run -o /dev/null {' '.join(extra)}".strip()
                    + ("" if extra else " (no --jobs, for reference)"),
                    f"{fnum(rate(n or snippets, res.wall))} snippets/s",
                    note=note,
                )
            )

    rows.append(Row(TITLE, "extract ÷ floor (time)", fratio(best["extract"][0] / floor_t), "≤ 1.1"))
    rows.append(Row(TITLE, "naive ÷ floor (time)", fratio(best["naive"][0] / floor_t)))
    rows.append(
        Row(
            TITLE,
            "extraction stage with jobs=2 ÷ floor (time)",
            fratio(stage[2] / floor_t),
            "< 1 (faster than the floor)",
            note=f"jobs=1: {fratio(stage[1] / floor_t)}",
        )
    )
    jobs2 = cli.get("jobs2")
    rows.append(
        Row(
            TITLE,
            "--jobs 2 dry run ÷ floor (time)",
            "n/a (no --jobs yet)" if jobs2 is None else fratio(jobs2 / floor_t),
            "",
            note="" if cli.get("default") is None else f"without --jobs: {fratio(cli['default'] / floor_t)}",
        )
    )  # type: ignore[operator]
    return rows


if __name__ == "__main__":
    from bench.runner import standalone

    standalone(NAME)
