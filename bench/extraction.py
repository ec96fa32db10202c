"""Extraction: snippets/s over the standard library, against the floor of parsing it.

The tree: the stdlib directory (``sysconfig.get_paths()["stdlib"]``) with the default excludes (so without
site-packages), every ``.py`` file up to --max-file-bytes; the bytes are read into memory first (not
timed). In ROUNDS rounds (quick: 1, on the first 100 files), each step timed after a ``gc.collect()``:

* floor: ``ast.parse`` of every file's bytes, single-threaded, in process;
* ``stream.extract.python.extract`` on every file (what snipstream does per file);
* snipstream's whole extraction stage, in process: ``stream.scan.scan`` over the tree with ``jobs=2`` (a
  pool of 2 spawned processes, pool start-up included: each reads its files, extracts, filters and scans
  for secrets, and pickles the snippets back) and with ``jobs=1`` (one thread, for reference). The floor
  does less than the stage (no reading, no filters, no secrets scan);

and, in the first NAIVE_ROUNDS rounds only, the naive way: ``ast.parse``, ``ast.walk`` over
FunctionDef/AsyncFunctionDef/ClassDef, ``ast.unparse`` each. Ratios to the floor are taken per round
(against that round's floor) and printed as median, IQR and range. Last, as whole processes, once:
``snipstream run <stdlib> --dry-run -o /dev/null --jobs 2``, and the same without ``--jobs`` (a dry run also
renders every prompt and counts its tokens). Targets: extract/floor time <= 1.1; the stage with jobs=2
faster than the floor.

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
    fspread,
    has_option,
    link_tree,
    python_files,
    rate,
    run_proc,
    snipstream,
    spread,
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
    best: dict[str, tuple[float, int]] = {}
    for _ in range(reps):
        for name in which:
            elapsed, count = _time(name, datas)
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, count)
    return best


_FNS: dict[str, Callable[[list[tuple[str, bytes]]], int]] = {
    "floor": _floor,
    "extract": _extract,
    "naive": _naive,
}


def _time(name: str, datas: list[tuple[str, bytes]]) -> tuple[float, int]:
    gc.collect()
    t = time.perf_counter()
    count = _FNS[name](datas)
    return time.perf_counter() - t, count


def _scan_once(tree: Path, jobs: int) -> tuple[float, int, int]:
    """Time of snipstream's extraction stage over `tree`, with its snippet and file counts."""
    from stream.scan import Scanned, scan

    gc.collect()
    t = time.perf_counter()
    count = nfiles = 0
    for item in scan([tree], jobs=jobs):
        if isinstance(item, Scanned):
            count += len(item.snippets)
            nfiles += 1
    return time.perf_counter() - t, count, nfiles


def extract_seconds(tree: Path, files: Sequence[Path], reps: int = 1) -> tuple[float, int]:
    """Single-threaded extraction time of `files` (under `tree`), measured once per run and shared."""
    key = f"extract:{tree}:{len(files)}"
    if key not in SHARED:
        SHARED[key] = measure(load(files, tree), reps, ("extract",))["extract"]
    return SHARED[key]


ROUNDS = 4
NAIVE_ROUNDS = 2


def run(quick: bool) -> list[Row]:
    rounds = 1 if quick else ROUNDS
    timeout = 120 if quick else 1800
    files = python_files(STDLIB)
    if quick:
        files = files[:100]
    datas = load(files, STDLIB)
    size = sum(len(d) for _, d in datas)
    times: dict[str, list[float]] = {"floor": [], "extract": [], "naive": [], "stage2": [], "stage1": []}
    counts: dict[str, int] = {}
    scanned: dict[str, tuple[int, int]] = {}
    with workdir(NAME) as work:
        tree = link_tree(files, STDLIB, work / "tree") if quick else STDLIB
        for i in range(rounds):
            steps = ["floor", "extract", "stage2", "stage1"] + (["naive"] if i < NAIVE_ROUNDS else [])
            if i % 2:
                steps.reverse()
            for step in steps:
                if step.startswith("stage"):
                    t, count, nfiles = _scan_once(tree, int(step[-1]))
                    scanned[step] = (count, nfiles)
                else:
                    t, count = _time(step, datas)
                    counts[step] = count
                times[step].append(t)
        best_extract = min(times["extract"])
        SHARED[f"extract:{STDLIB}:{len(files)}"] = (best_extract, counts["extract"])
        snippets = counts["extract"]
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
            "stage2": "extraction stage: stream.scan.scan(<stdlib>, jobs=2), reading, filters and secrets "
            "scan included",
            "stage1": "extraction stage: stream.scan.scan(<stdlib>, jobs=1), reading, filters and secrets "
            "scan included",
        }
        for name in ("floor", "extract", "naive", "stage2", "stage1"):
            ts = times[name]
            sp = spread(ts)
            n = scanned[name][0] if name.startswith("stage") else snippets
            note = f"{sp.median:.2f} s median of {sp.n} (" + ", ".join(f"{t:.2f}" for t in ts) + ")"
            if name.startswith("stage"):
                note += f", {scanned[name][0]:,} snippets kept in {scanned[name][1]:,} files"
                note += " (pool start-up included)" if name == "stage2" else " (one thread, for reference)"
            elif name != "floor":
                note += f", {counts[name]:,} snippets"
            rows.append(Row(TITLE, labels[name], f"{fnum(rate(n, sp.median))} snippets/s", note=note))

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
                f"core), RSS {res.maxrss_kb / 1024:.0f} MB; {fnum(n)} snippets in {fnum(nfiles)} files; 1 run"
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

    def per_round(name: str) -> list[float]:
        return [t / f for t, f in zip(times[name], times["floor"], strict=False)]

    floor_med = spread(times["floor"]).median
    rows.append(Row(TITLE, "extract ÷ floor (time, per round)", fspread(per_round("extract")), "≤ 1.1"))
    rows.append(Row(TITLE, "naive ÷ floor (time, per round)", fspread(per_round("naive"))))
    rows.append(
        Row(
            TITLE,
            "extraction stage with jobs=2 ÷ floor (time, per round)",
            fspread(per_round("stage2")),
            "< 1 (faster than the floor)",
            note=f"jobs=1: {fspread(per_round('stage1'))}",
        )
    )
    jobs2 = cli.get("jobs2")
    rows.append(
        Row(
            TITLE,
            "--jobs 2 dry run ÷ floor (time; the floor's median)",
            "n/a (no --jobs yet)" if jobs2 is None else fratio(jobs2 / floor_med),
            "",
            note=""
            if cli.get("default") is None
            else f"without --jobs: {fratio(cli['default'] / floor_med)}",
        )
    )  # type: ignore[operator]
    return rows


if __name__ == "__main__":
    from bench.runner import standalone

    standalone(NAME)
