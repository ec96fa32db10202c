"""Near-duplicates: what grouping costs per snippet over the stdlib, rensa against datasketch, and what it finds.

The snippets: the stdlib (``sysconfig.get_paths()["stdlib"]``) as snipstream's own scan cuts and filters it
(default selection), read before timing. Each step is timed in one process on CPU time (``process_time``,
less moved by other processes on a shared machine than the wall clock), ``gc.collect()`` first, best of 3
(quick: first 100 files, best of 1), side by side in one run:

* the normalising (`stream.neardup.normalise`'s regular expression and fold), then the shingles;
* the MinHash sketch of every snippet's shingles, 128 slots: rensa's R-MinHash (one call per file, as
  snipstream makes it) and datasketch's MinHash (``update_batch`` per snippet, the permutations made once),
  when datasketch is installed (it is not a dependency: ``pip install datasketch``);
* the band keys, and the whole `file_band_keys` per file (what the scan adds per file);
* the extraction stage itself (``stream.scan.scan`` with and without the keys) for scale;

then, as whole processes, ``snipstream plan STDLIB --near-dup off`` against ``--near-dup keep`` (CPU
seconds of each child; not in quick mode). Last, the groups found: how many, their members, and a few.

    python -m bench.neardup [--quick]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from bench._common import PY, REPO, STDLIB, dry_run_counts, link_tree, python_files, run_proc
from stream import neardup as nd
from stream.filters import Selection
from stream.model import Snippet
from stream.scan import Scanned, scan


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t = time.process_time()
        result = fn()
        best = min(best, time.process_time() - t)
    return best, result


def _datasketch(shingled: list[list[str]]) -> Callable[[], object] | None:
    try:
        from datasketch import MinHash
    except ImportError:
        return None
    proto = MinHash(num_perm=nd.NUM_PERM, seed=nd.SEED)

    def sketch() -> object:
        out = []
        for shingles in shingled:
            m = MinHash(
                num_perm=nd.NUM_PERM, seed=nd.SEED, permutations=proto.permutations, scheme="affine32"
            )
            m.update_batch([s.encode() for s in shingles])
            out.append(m.hashvalues)
        return out

    return sketch


def _stages(files: list[list[Snippet]], repeat: int) -> list[tuple[str, float]]:
    from rensa import RMinHash

    snippets = [s for f in files for s in f]
    t_norm, normalised = timed(lambda: [nd._normalised(s.code, s.language) for s in snippets], repeat)
    big = [t for t in normalised if len(t) >= nd.MIN_TOKENS]  # type: ignore[union-attr]
    t_sh, shingled = timed(
        lambda: [[t[i : i + nd.SHINGLE] for i in range(len(t) - nd.SHINGLE + 1)] for t in big], repeat
    )
    t_rensa, digests = timed(lambda: RMinHash.digests_from_token_sets(shingled, nd.NUM_PERM, nd.SEED), repeat)
    datasketch = _datasketch(shingled)  # type: ignore[arg-type]
    t_ds = timed(datasketch, repeat)[0] if datasketch else float("nan")
    t_keys, _ = timed(lambda: [nd._keys(d, "python") for d in digests], repeat)  # type: ignore[union-attr]
    t_file, _ = timed(lambda: [nd.file_band_keys(f) for f in files], repeat)
    return [
        ("normalise (regex and fold)", t_norm),
        ("shingles", t_sh),
        ("MinHash sketch: rensa (R-MinHash, per file)", t_rensa),
        ("MinHash sketch: datasketch (per snippet)", t_ds),
        ("band keys", t_keys),
        ("file_band_keys, all of it (what the scan adds)", t_file),
    ]


def _plan(tree: Path, mode: str) -> tuple[float, float, int | None]:
    with tempfile.TemporaryDirectory() as d:
        res = run_proc(
            [PY, "-m", "stream", "plan", str(tree), "--near-dup", mode, "--db", f"{d}/none.db"],
            timeout=900,
            cwd=REPO,
        )
    return res.user + res.sys, res.wall, dry_run_counts(res.stderr)[0] or None


def _groups(files: list[list[Snippet]]) -> tuple[int, int, list[list[str]]]:
    """Groups (of 2+) of an in-memory LSH over the band keys, with the same rule as the pipeline."""
    from stream.pipeline.neardups import _best

    found: dict[int, int] = {}
    members: dict[int, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for f in files:
        for s, keys in zip(f, nd.file_band_keys(f), strict=True):
            if keys is None or s.id in seen:
                continue
            seen.add(s.id)
            grp = _best(keys, found)
            if grp is None:
                grp = len(members) + 1
                found.update({k: grp for k in keys if k not in found})
            members[grp].append(f"{s.path}:{s.qualname}")
    groups = [m for m in members.values() if len(m) > 1]
    return len(groups), sum(len(m) - 1 for m in groups), groups


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.neardup", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first 100 files, one pass, no whole processes")
    args = ap.parse_args(argv)
    repeat = 1 if args.quick else 3
    paths = python_files(STDLIB)[: 100 if args.quick else None]
    with tempfile.TemporaryDirectory() as d:
        tree = link_tree(paths, STDLIB, Path(d) / "stdlib")
        t_scan, items = timed(lambda: [i for i in scan([str(tree)]) if isinstance(i, Scanned)], 1)
        t_scan_nd, _ = timed(lambda: list(scan([str(tree)], selection=Selection(near_dup=True))), 1)
        files = [i.snippets for i in items]  # type: ignore[union-attr]
        n = sum(len(f) for f in files)
        grouped = sum(1 for f in files for s in f if len(nd._normalised(s.code, s.language)) >= nd.MIN_TOKENS)
        print(
            f"stdlib: {STDLIB}  files: {len(files):,}  snippets: {n:,}  "
            f"of which grouped (>= {nd.MIN_TOKENS} tokens): {grouped:,}"
        )
        print(
            f"scheme: {nd.SCHEME}; a snippet joins a group sharing >= its MIN_BANDS of {nd.BANDS} band keys"
        )
        print()
        print("| step | CPU s | per snippet | snippets/s |")
        print("| --- | --- | --- | --- |")
        for name, t in [*_stages(files, repeat), ("scan (read, extract, filter, secrets), without keys", t_scan),
                        ("scan with the keys (--near-dup keep/ask-once)", t_scan_nd)]:  # fmt: skip
            print(
                f"| {name} | {t:.3f} | {1e6 * t / n:.1f} µs | {n / t:,.0f} |"
                if t == t
                else f"| {name} | n/a | | |"
            )
        if not args.quick:
            print()
            print("| snipstream plan STDLIB | CPU s | wall s | snippets |")
            print("| --- | --- | --- | --- |")
            runs = {mode: _plan(tree, mode) for mode in ("off", "keep", "ask-once")}
            for mode, (cpu, wall, snippets) in runs.items():
                print(
                    f"| --near-dup {mode} | {cpu:.2f} | {wall:.2f} | {snippets if snippets is not None else '?'} |"
                )
            off = runs["off"][0]
            print(
                f"\nkeep costs {runs['keep'][0] / off - 1:+.1%} CPU over off; "
                f"ask-once {runs['ask-once'][0] / off - 1:+.1%}"
            )
        groups, members, examples = _groups(files)
        print(
            f"\ngroups: {groups:,}, members besides each group's first: {members:,} "
            f"({members / max(1, n):.1%} of the snippets)"
        )
        for g in sorted(examples, key=len, reverse=True)[:5]:
            print(f"  {len(g)}: " + ", ".join(g[:4]) + (" ..." if len(g) > 4 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
