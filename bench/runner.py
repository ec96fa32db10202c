"""``python -m bench``: run the benchmark suite, print one markdown table, write bench/RESULTS.md.

    python -m bench                       # every benchmark, full size (minutes); writes bench/RESULTS.md
    python -m bench --quick               # every benchmark, small (seconds, for CI; figures not meaningful)
    python -m bench throughput memory     # a subset
    python -m bench --quick --out FILE    # also write the results file (quick runs and subsets do not
                                          # overwrite bench/RESULTS.md unless told to)

Benchmarks, in the order they run (each is a module of this package with ``run(quick) -> list[Row]``):
throughput, concurrency, first_request, memory, extraction, rerun. Targets are printed next to the
figures, never asserted. Each benchmark's clients and servers run in child processes; comparisons are
measured side by side in one run, so read the ratios rather than the absolute figures on a busy machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path

from bench._common import COMMANDS, PY, REPO, Row, benchmark, versions
from bench.readme import verdict

BENCHMARKS = (
    "throughput",
    "concurrency",
    "first_request",
    "memory",
    "extraction",
    "rerun",
    "batch",
    "context",
    "embed",
    "search",
)
RESULTS = REPO / "bench" / "RESULTS.md"


def _resolve(names: list[str]) -> list[str]:
    if not names:
        return list(BENCHMARKS)
    out = []
    for name in names:
        key = name.replace("-", "_").removeprefix("bench.")
        if key not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r}; choose from: {', '.join(BENCHMARKS)}")
        if key not in out:
            out.append(key)
    return [b for b in BENCHMARKS if b in out]  # suite order: rerun reuses extraction's figure


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[Row]) -> str:
    """The results table; the verdict column is computed from the result and the target (bench/readme.py)."""
    lines = [
        "| benchmark | measurement | result | target | verdict | notes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cells = (r.bench, r.case, r.result, r.target, verdict(r.result, r.target), r.note)
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return "\n".join(lines)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict[str, str]:
    cpuinfo = _read("/proc/cpuinfo")
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
        platform.processor() or "unknown",
    )
    meminfo = _read("/proc/meminfo")
    ram = next(
        (line.split(":", 1)[1].strip() for line in meminfo.splitlines() if line.startswith("MemTotal")), ""
    )
    if ram.endswith("kB"):
        ram = f"{int(ram.split()[0]) / 1024 / 1024:.1f} GiB"
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 0
    try:
        load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "n/a"
    return {
        "cpu": model,
        "cores": f"{os.cpu_count()} ({affinity} usable)",
        "ram": ram or "unknown",
        "os": platform.platform(),
        "load": load,
    }


def _git(*args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20, check=False
        )
        return proc.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _display(argv: list[str]) -> str:
    """A command as one would type it: `python` for this interpreter, $TMP for the suite's temp dirs and
    $URL for the fake server's address."""
    out = []
    for a in argv:
        if a == PY:
            out.append("python")
        elif "/snipstream-bench-" in a:
            rest = a.split("/snipstream-bench-", 1)[1].partition("/")[2]
            out.append('"$TMP"' + (("/" + shlex.quote(rest)) if rest else ""))
        elif a.startswith("http://127.0.0.1:"):
            out.append('"$URL"')
        else:
            out.append(shlex.quote(a))
    return " ".join(out)


def results_md(
    rows: list[Row],
    *,
    argv: list[str],
    quick: bool,
    started: dt.datetime,
    elapsed: float,
    mach: dict[str, str],
) -> str:
    vers = versions()
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--", "stream", "sinks")
    env = [
        f"{k}={os.environ[k]}"
        for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONOPTIMIZE", "PYTHONHASHSEED")
        if k in os.environ
    ]
    env_note = ", ".join(env) if env else "no Python-affecting variables set"
    lines = [
        "# Benchmark results",
        "",
        f"`python -m bench{' ' + shlex.join(argv) if argv else ''}` on {started:%Y-%m-%d %H:%M} UTC, "
        f"{elapsed / 60:.1f} min{' (QUICK mode: smoke figures, not meaningful)' if quick else ''}.",
        "",
        f"- machine: {mach['cpu']}, {mach['cores']} cores, {mach['ram']} RAM; {mach['os']}; "
        f"load average at start {mach['load']}, at the end {mach.get('load_end', 'n/a')} (other work may "
        "share the machine: compare within a run)",
        f"- Python {platform.python_version()} ({platform.python_implementation()}, {PY})",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- code: commit {commit}"
        + (" with uncommitted changes in stream/ or sinks/ (measured as they were)" if dirty else ""),
        f"- environment: {env_note}",
        "",
        table(rows),
        "",
        "Method: every client and the fake server run in their own processes (the server is "
        "`python -m bench._server`, i.e. `tests.fakeserver` plus an in-flight counter and a stats endpoint). "
        "Each is spawned by a bare launcher (`bench/_exec.py`, ~9 MB), not by the runner: a child spawned "
        "by a large process inherits that process's peak as its own `ru_maxrss`. Client wall time is spawn "
        "to exit; CPU time and peak RSS come from `wait4`'s rusage of that child alone, taken by its "
        "launcher. Server-side figures (arrivals, in flight, span from first arrival to last answer) come "
        "from the server's own counters. Figures measured in rounds are medians with their interquartile "
        "range (IQR) and range; a ratio is taken within each round, between runs made side by side. "
        "Targets are printed, never asserted; the verdict column is computed from the result and the "
        "target by `bench/readme.py` (with an IQR, met or missed only when all of it is on one side of the "
        "target, else undecided). A full run also rewrites the table in README.md's Performance section "
        "(`python -m bench.readme`).",
        "",
        "## Commands",
        "",
        "`$TMP` is a temporary directory of the suite, `$URL` the fake server's base URL.",
        "",
        "```sh",
        f"cd {REPO}",
        f"python -m bench{' ' + shlex.join(argv) if argv else ''}",
    ]
    current = None
    for name, cmd in COMMANDS:
        if name != current:
            lines.append(f"# --- {name}")
            current = name
        lines.append(_display(cmd))
    lines += ["```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        epilog="benchmarks: " + ", ".join(BENCHMARKS),
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds, figures not meaningful")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the results file here (default: bench/RESULTS.md after a full, non-quick "
        "run of every benchmark; otherwise none)",
    )
    args = parser.parse_args(argv)
    names = _resolve(args.names)
    out = args.out
    if out is None and not args.quick and names == list(BENCHMARKS):
        out = RESULTS
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    mach = machine()
    rows: list[Row] = []
    failed = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        with benchmark(name):
            try:
                rows.extend(module.run(args.quick))
            except Exception as exc:
                traceback.print_exc()
                failed.append(name)
                rows.append(
                    Row(getattr(module, "TITLE", name), "error", f"{type(exc).__name__}: {exc}"[:300])
                )
        print(f"bench: {name} done in {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - t0
    mach["load_end"] = machine()["load"]
    text = table(rows)
    print(text)
    if out is not None:
        out.write_text(
            results_md(rows, argv=argv, quick=args.quick, started=started, elapsed=elapsed, mach=mach)
        )
        print(f"bench: wrote {out}", file=sys.stderr)
        if out == RESULTS and not args.quick:
            from bench import readme

            try:
                changed = readme.update(results=RESULTS)
                print(f"bench: README.md table {'updated' if changed else 'unchanged'}", file=sys.stderr)
            except ValueError as exc:
                print(f"bench: README.md not updated: {exc}", file=sys.stderr)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def standalone(name: str) -> None:
    """``python -m bench.<name> [--quick]``: the same as ``python -m bench <name>``."""
    sys.exit(main([name, *sys.argv[1:]]))
