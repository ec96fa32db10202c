"""Search at the stdlib's scale: the sqlite-vec index against the exact numpy scan over ~250k vectors.

The checkpoint: N places (the stdlib cut by snipstream's default selection gives about 250k snippets; the
full run uses 250,000), each with an annotate record and an embed record whose vector is a random unit
vector (seeded; brute-force search costs the same whatever the values, and the fake server's bag-of-words
`embed()` in pure Python would take longer than the searches), of 1536 dimensions (text-embedding-3-small's
size), then of 256 (quick: 2,000 places of 256 only). Written through `sinks.checkpoint.Checkpoint`, 5,000
places a commit, as a run writes them. Then, each in its own child process (its peak RSS is its own,
bench/_exec.py):

* the index build: the first `Store.sync` of a fresh checkpoint (every current vector inserted into the
  ``vec0`` table), its wall time and peak RSS; then a second sync, skipped because nothing changed;
* after 1% of the places were edited (a new record at each), the sync that follows;
* `Q` searches (k = 10, random unit queries, seeded; the exact scan: 10 of them at full size) with each
  engine: the latency of `Store.nearest` (the KNN and the hits' places and annotations read back; the
  query's embedding request left out, that is the server's time), median and p95, after one warm-up
  search; and the child's peak RSS;
* whether both engines return the same top 10 for every query;
* the checkpoint file's size before and after the index (the index holds a copy of each current vector).

    python -m bench.search [--quick] [--places N] [--dims D] [--queries Q]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from bench._common import PY, REPO, Row, mb, run_proc, workdir

NAME = "search"
TITLE = "9 search"
MODEL = "text-embedding-3-small"
_BATCH = 5_000  # places per commit while building the checkpoint
_SEED = 13


def _vectors(n: int, dims: int, seed: int):  # -> numpy array (n, dims) of float32 unit rows
    import numpy as np

    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, dims), dtype=np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m.astype("<f4")


def build(db: Path, places: int, dims: int, *, edited: str = "") -> None:
    """The checkpoint: `places` annotate + embed records, one occurrence each, committed `_BATCH` at a time.
    With `edited`, the same places again with new records (new code, new vectors), as after an edit."""
    import anyio
    import orjson

    from sinks.checkpoint import Checkpoint
    from sinks.schema import Done, Occurrence, Vector

    async def main() -> None:
        async with Checkpoint(db) as ckpt:
            for start in range(0, places, _BATCH):
                vectors = _vectors(min(_BATCH, places - start), dims, _SEED + start + len(edited) * 7919)
                done = []
                for i, vec in enumerate(vectors, start):
                    path, qualname = f"lib/mod{i // 50:05d}.py", f"func_{i % 50}"
                    code = f"def {qualname}(x):\n    return x + {i}{edited}\n"
                    line = orjson.dumps({"path": path, "qualname": qualname, "language": "python", "kind":
                                         "function", "start_line": 3 * (i % 50) + 1, "end_line": 3 * (i % 50) + 2,
                                         "code": code}) + b"\n"  # fmt: skip
                    note, embed = f"a{i:07d}{edited}", f"e{i:07d}{edited}"
                    result = orjson.dumps({"annotation": f"Returns x plus {i}.\nA second line."})
                    done.append(Done(note, f"s{i}{edited}", "annotate", "m", result, 1,
                                     [Occurrence(f"o{note}", path, qualname, line)]))  # fmt: skip
                    vector = Vector(MODEL, dims, vec.tobytes(), note)
                    done.append(Done(embed, f"s{i}{edited}", "embed", MODEL, b"{}", 1,
                                     [Occurrence(f"o{embed}", path, qualname, line)], vector=vector))  # fmt: skip
                await ckpt.commit(done, [], [], None)

    anyio.run(main)


def child(mode: str, db: Path, queries: int, dims: int) -> dict:
    """One measured step, in its own process: ``sync`` (the index brought up to date), or ``sqlite-vec`` /
    ``exact`` (the searches)."""
    from sinks.vectors import open_store

    if mode == "sync":
        with open_store(db, "sqlite-vec") as store:
            (pair,) = store.pairs()
            t = time.perf_counter()
            synced = store.sync(pair)
            return {"seconds": time.perf_counter() - t, "synced": list(synced or ())}
    out: dict = {"latencies": [], "top": []}
    with open_store(db, mode) as store:
        (pair,) = store.pairs()
        qs = _vectors(queries + 1, dims, seed=_SEED - 1)
        store.nearest(pair, qs[0].tobytes(), 10)  # warm-up: the index synced (nothing to do), pages cached
        for q in qs[1:]:
            t = time.perf_counter()
            hits = store.nearest(pair, q.tobytes(), 10)
            out["latencies"].append(time.perf_counter() - t)
            out["top"].append([h.record_id for h in hits])
    return out


def _child(mode: str, db: Path, queries: int, dims: int, timeout: float) -> tuple[dict, object]:
    argv = [PY, "-m", "bench.search", "--child", mode, "--db", str(db), "--queries", str(queries),
            "--dims", str(dims)]  # fmt: skip
    res = run_proc(argv, timeout=timeout, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(f"bench.search --child {mode}: exit {res.returncode}: {res.tail(600)}")
    return json.loads(res.stdout.strip().splitlines()[-1]), res


def _latency(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"{statistics.median(ms):,.1f} ms median, p95 {p95:,.1f} ms"


def _case(work: Path, places: int, dims: int, queries: int, exact_queries: int) -> list[Row]:
    label = f"{places:,} vectors × {dims}"
    db = work / f"search-{dims}.db"
    t = time.perf_counter()
    build(db, places, dims)
    built, size = time.perf_counter() - t, db.stat().st_size
    sync, res = _child("sync", db, queries, dims, timeout=3600)
    grown = db.stat().st_size - size
    note = (f"{sync['synced'][0]:,} vectors indexed; child peak RSS {mb(res.maxrss_kb)}; checkpoint "
            f"{size / 2**20:,.0f} MB (written in {built:.0f} s) + index {grown / 2**20:,.0f} MB")  # fmt: skip
    rows = [
        Row(TITLE, f"(for scale) index build, first sync ({label})", f"{sync['seconds']:.2f} s", "", note)
    ]
    again, _ = _child("sync", db, queries, dims, timeout=600)
    case, took = f"(for scale) sync again, nothing changed ({label})", f"{again['seconds'] * 1000:.1f} ms"
    rows.append(
        Row(TITLE, case, took, "", "skipped" if again["synced"][3] else f"not skipped: {again['synced']}")
    )
    edits = max(1, places // 100)
    build(db, edits, dims, edited="-edited")
    resync, res = _child("sync", db, queries, dims, timeout=600)
    added, removed = resync["synced"][:2]
    rows.append(Row(TITLE, f"(for scale) sync after {edits:,} snippets (1%) were edited ({label})",
                    f"{resync['seconds']:.2f} s", "", f"{added:,} added, {removed:,} removed; child peak RSS "
                    f"{mb(res.maxrss_kb)}"))  # fmt: skip
    tops = {}
    for engine, n in (("sqlite-vec", queries), ("exact", exact_queries)):
        found, res = _child(engine, db, n, dims, timeout=3600)
        tops[engine] = found["top"]
        rows.append(Row(TITLE, f"(for scale) search latency, {engine}, k = 10 ({label})",
                        _latency(found["latencies"]), "", f"{n} queries after a warm-up; child peak RSS "
                        f"{mb(res.maxrss_kb)}; the query's embedding request not included"))  # fmt: skip
    same = sum(a == b for a, b in zip(tops["sqlite-vec"], tops["exact"], strict=False))
    rows.append(Row(TITLE, f"queries whose top 10 both engines agree on ({label})",
                    f"{same / exact_queries:.0%}", "100%", f"{same} of {exact_queries}"))  # fmt: skip
    db.unlink()  # (GBs at full size: one case's checkpoint at a time)
    return rows


def run(
    quick: bool, places: int | None = None, dims: int | None = None, queries: int | None = None
) -> list[Row]:
    """Each size of vectors (full: 1536 and 256 dimensions; quick: 256) over `places` (full: 250,000)."""
    places = places or (2_000 if quick else 250_000)
    sizes = [dims] if dims else ([256] if quick else [1536, 256])
    queries = queries or (10 if quick else 50)
    rows: list[Row] = []
    with workdir(NAME) as work:
        for size in sizes:  # the exact scan reads every vector per query: fewer queries at full size
            rows += _case(work, places, size, queries, queries if quick else min(queries, 10))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--places", type=int)
    ap.add_argument("--dims", type=int)
    ap.add_argument("--queries", type=int)
    ap.add_argument("--child", choices=("sync", "sqlite-vec", "exact"), help=argparse.SUPPRESS)
    ap.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.db, args.queries, args.dims)))
        return 0
    from bench.runner import table

    print(table(run(args.quick, args.places, args.dims, args.queries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
