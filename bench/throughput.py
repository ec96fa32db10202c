"""Throughput: snippets/s and client CPU per request against a server that answers at once.

The fake server (its own process) streams every answer as 20 chunks with no delay. Four clients, each in
its own process, send the same N requests with 64 in flight:

  (a) ``snipstream run`` end to end on a generated tree of N functions (fresh --db, -o /dev/null,
      --concurrency 64): walk, parse, plan, request, checkpoint, write;
  (b) the ceiling of the stack: a bare loop over 8 httpx.AsyncClients x 8 connections, SSE data lines
      parsed with orjson, deltas joined (bench/_clients.py);
  (c) the naive way: openai.AsyncOpenAI + asyncio.Semaphore(64) + asyncio.gather, stream=True;
  (d) a bare aiohttp loop (one ClientSession, TCPConnector(limit=64)).

(b)-(d) send exactly snipstream's bodies (taken from its --dry-run output, not timed). Figures:
snippets/s over the client process's whole life (fork to exit: startup and imports included), the same
over the server-side span (first request arrival to last answer finished: the steady state), client CPU
ms per request (wait4 rusage of the client process) and its peak RSS. In full mode each client runs twice,
interleaved (a b c d a b c d), and the faster run counts.

    python -m bench throughput [--quick]          # N = 5,000 (quick: 300)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench._common import (
    PY,
    REPO,
    Row,
    Server,
    bodies_from_dry_run,
    db_count,
    fnum,
    fratio,
    installed,
    make_tree,
    mb,
    rate,
    run_proc,
    snipstream,
    workdir,
)

NAME = "throughput"
TITLE = "1 throughput"
CONCURRENCY = 64
CASES = (
    ("a", "(a) snipstream run, end to end", None),
    ("b", "(b) bare httpx loop (8 clients x 8 conns)", "httpx"),
    ("c", "(c) naive openai.AsyncOpenAI + Semaphore + gather", "openai"),
    ("d", "(d) bare aiohttp loop (TCPConnector(limit=64))", "aiohttp"),
)


def _measure(
    key: str,
    kind: str | None,
    server: Server,
    tree: Path,
    bodies: Path,
    work: Path,
    rep: int,
    n: int,
    timeout: float,
) -> dict[str, Any]:
    server.reset()
    before = server.stats()
    if kind is None:
        db = work / f"a-{rep}.db"
        argv = snipstream([tree], db=db, url=server.url, extra=["--concurrency", str(CONCURRENCY), "-q"])
        res = run_proc(argv, timeout=timeout, cwd=work)
        ok = db_count(db, "SELECT count(*) FROM records WHERE status = 'done'")
        errors = None if ok is None else n - ok
        first_error = res.tail(300) if res.returncode != 0 else ""
    else:
        argv = [
            PY,
            "-m",
            "bench._clients",
            kind,
            "--url",
            server.url,
            "--bodies",
            str(bodies),
            "--concurrency",
            str(CONCURRENCY),
            "--clients",
            "8",
        ]
        res = run_proc(argv, timeout=timeout, cwd=REPO)
        try:
            out = res.json()
            ok, errors, first_error = out["ok"], out["errors"], out["first_error"]
        except Exception:
            ok, errors, first_error = None, None, res.tail(300)
    after = server.stats()
    if res.timed_out:
        first_error = f"timed out after {timeout:g}s; " + first_error
    span = (after["last_done"] - after["first"]) if after["first"] and after["last_done"] else float("nan")
    requests = after["arrived"]
    return {
        "key": key,
        "wall": res.wall,
        "cpu": res.cpu,
        "rss": res.maxrss_kb,
        "span": span,
        "requests": requests,
        "ok": ok,
        "errors": errors,
        "first_error": first_error,
        "exit": res.returncode,
        "server_cpu": after["cpu"] - before["cpu"],
        "rate_wall": rate(n, res.wall),
        "rate_span": rate(requests, span),
        "cpu_ms": 1000 * res.cpu / n,
    }


def run(quick: bool) -> list[Row]:
    n = 300 if quick else 5000
    reps = 1 if quick else 2
    timeout = 120 if quick else 600
    rows: list[Row] = []
    available = {kind: installed(kind) for _, _, kind in CASES if kind}
    with workdir(NAME) as work:
        tree = make_tree(work / "src", n)
        bodies = work / "bodies.ndjson"
        nbodies = bodies_from_dry_run(tree, bodies, work, timeout=timeout)
        if nbodies != n:
            raise RuntimeError(f"the dry run of {n} generated functions would send {nbodies} requests")
        results: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in CASES}
        with Server(chunks=20) as server:
            for rep in range(reps):
                for key, _, kind in CASES:
                    if kind is not None and not available[kind]:
                        continue
                    results[key].append(_measure(key, kind, server, tree, bodies, work, rep, n, timeout))
    best: dict[str, dict[str, Any] | None] = {
        key: (min(rs, key=lambda r: r["wall"]) if rs else None) for key, rs in results.items()
    }
    for key, label, kind in CASES:
        r = best[key]
        case = f"{label}, {n:,} requests, {CONCURRENCY} in flight"
        if r is None:
            rows.append(Row(TITLE, case, f"n/a ({kind} not installed)"))
            continue
        result = f"{fnum(r['rate_wall'])} snippets/s · {r['cpu_ms']:.2f} CPU ms/req · RSS {mb(r['rss'])}"
        note = (
            f"span rate {fnum(r['rate_span'])}/s (first request to last answer); wall {r['wall']:.2f}s; "
            f"server CPU {1000 * r['server_cpu'] / max(1, r['requests']):.2f} ms/req"
        )
        if r["errors"] or r["ok"] is None or r["exit"] not in (0,):
            note += f"; ok {r['ok']}, errors {r['errors']}, exit {r['exit']}: {r['first_error'][:200]}"
        if reps > 1:
            note += f"; best of {len(results[key])}: walls " + ", ".join(
                f"{x['wall']:.2f}" for x in results[key]
            )
        rows.append(Row(TITLE, case, result, note=note))

    a = best["a"]
    for other, target, label in (
        ("b", "≥ 0.9", "a/b snipstream ÷ bare httpx"),
        ("c", "≥ 1.5", "a/c snipstream ÷ naive openai"),
        ("d", "", "a/d snipstream ÷ bare aiohttp"),
    ):
        o = best[other]
        if a is None or o is None:
            rows.append(Row(TITLE, label, "n/a", target))
            continue
        rows.append(
            Row(
                TITLE,
                label + " (snippets/s, whole process)",
                fratio(a["rate_wall"] / o["rate_wall"]),
                target,
                note=f"server-side span: {fratio(a['rate_span'] / o['rate_span'])}; "
                f"CPU per request {fratio(o['cpu_ms'] / a['cpu_ms'])} (theirs ÷ ours)",
            )
        )
    return rows


if __name__ == "__main__":
    from bench.runner import standalone

    standalone(NAME)
