"""Throughput: snippets/s and client CPU per request against a server that answers at once.

The fake server (its own process) streams every answer as 20 chunks with no delay. Four clients, each in
its own process, send the same N requests with 64 in flight:

  (a) ``snipstream run`` end to end on a generated tree of N functions (fresh --db, -o /dev/null,
      --concurrency 64): walk, parse, plan, request, checkpoint, write; the default transport (aiohttp);
  (a2) the same with ``--transport httpx`` (httpx's own transport, the default before issue 11);
  (b) the ceiling of (a2): a bare loop over 8 httpx.AsyncClients x 8 connections, SSE data lines
      parsed with orjson, deltas joined (bench/_clients.py);
  (e) the ceiling of (a): the same bare loop with each client over httpx_aiohttp.AiohttpTransport;
  (c) the naive way: openai.AsyncOpenAI + asyncio.Semaphore(64) + asyncio.gather, stream=True;
  (d) a bare aiohttp loop (one ClientSession, TCPConnector(limit=64)).

(b)-(e) send exactly snipstream's bodies (taken from its --dry-run output, not timed). Figures:
snippets/s over the client process's whole life (spawn to exit: startup and imports included), the same
over the server-side span (first request arrival to last answer finished: the steady state), client CPU
ms per request and µs per SSE event (wait4 rusage of the client process, ÷ requests, ÷ the events of an
answer, counted on a probe request) and its peak RSS (its own: see bench/_exec.py).

Rounds: in full mode every client runs ROUNDS times, interleaved, the order reversed every other round
(a b c d, d c b a, ...), so that load drift on a shared machine hits neighbours alike. A ratio is taken
per round between the two runs of that round (a_i / b_i), and its median, interquartile range and range
over the rounds are printed; a verdict against a target is only given when the whole IQR is on one side
of it (bench/readme.py). Absolute figures are medians over the rounds.

    python -m bench throughput [--quick]          # N = 2,000 x 9 rounds (quick: 300 x 2)
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
    cpu_per_event_us,
    db_count,
    first_body,
    fnum,
    fratio,
    fspread,
    installed,
    make_tree,
    mb,
    rate,
    run_proc,
    snipstream,
    spread,
    sse_events,
    workdir,
)

NAME = "throughput"
TITLE = "1 throughput"
CONCURRENCY = 64
CASES = (
    ("a", "(a) snipstream run, end to end (--transport aiohttp, the default)", None),
    ("a2", "(a2) snipstream run, end to end, --transport httpx", None),
    ("b", "(b) bare httpx loop (8 clients x 8 conns)", "httpx"),
    ("e", "(e) bare httpx loop over httpx-aiohttp (8 clients x 8 conns)", "httpx-aiohttp"),
    ("c", "(c) naive openai.AsyncOpenAI + Semaphore + gather", "openai"),
    ("d", "(d) bare aiohttp loop (TCPConnector(limit=64))", "aiohttp"),
)
SHORT = {
    "a": "snipstream (aiohttp)",
    "a2": "snipstream (--transport httpx)",
    "b": "bare httpx loop",
    "e": "bare httpx loop over httpx-aiohttp",
    "c": "naive openai",
    "d": "bare aiohttp loop",
}
#: snipstream's flags per case (the transport it runs over)
SNIPSTREAM_FLAGS = {"a": ["--transport", "aiohttp"], "a2": ["--transport", "httpx"]}


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
        flags = ["--concurrency", str(CONCURRENCY), "-q", *SNIPSTREAM_FLAGS[key]]
        argv = snipstream([tree], db=db, url=server.url, extra=flags)
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


ROUNDS = 9
N = 2000
# (c) takes several times as long as the others and is far from its target: it runs every 3rd round only.
SPARSE = {"c": 3}


def _cpu_row(key: str, rs: list[dict[str, Any]], events: int) -> Row:
    """One case's client CPU per request and per SSE event (the whole process: startup, walk, checkpoint
    and writing included for snipstream; `events` per answer, counted on a probe request)."""
    per_request = [r["cpu_ms"] for r in rs]
    per_event = [cpu_per_event_us(ms, events) for ms in per_request]
    return Row(
        TITLE,
        f"({key}) {SHORT[key]}: client CPU per request · per SSE event",
        f"{fspread(per_request, unit=' ms/request')} · {fnum(spread(per_event).median, 1)} µs/SSE event",
        note=f"{events} SSE events per answer (counted on a probe request: the content deltas, the finish "
        "chunk, the usage chunk, [DONE]); "
        "client process CPU time (wait4 rusage: user + system, every thread) ÷ requests, ÷ events; per round: "
        + ", ".join(f"{x:.1f}" for x in per_event)
        + " µs/event",
    )


def _gap(sp_median: float, q1: float, q3: float, target: str) -> str:
    """How the spread compares with the distance to the target (printed next to every headline ratio)."""
    try:
        value = float(target.split()[-1])
    except (ValueError, IndexError):
        return ""
    gap = abs(sp_median - value)
    width = q3 - q1
    return f"IQR width {width:.2f} {'<' if width < gap else '≥'} gap to the target {gap:.2f}" + (
        "" if width < gap else " (more rounds or a quieter machine needed)"
    )


def run(quick: bool) -> list[Row]:
    n = 300 if quick else N
    rounds = 2 if quick else ROUNDS
    timeout = 120 if quick else 600
    rows: list[Row] = []
    available = {kind: installed(kind.replace("-", "_")) for _, _, kind in CASES if kind}
    with workdir(NAME) as work:
        tree = make_tree(work / "src", n)
        bodies = work / "bodies.ndjson"
        nbodies = bodies_from_dry_run(tree, bodies, work, timeout=timeout)
        if nbodies != n:
            raise RuntimeError(f"the dry run of {n} generated functions would send {nbodies} requests")
        results: dict[str, list[dict[str, Any] | None]] = {key: [] for key, _, _ in CASES}
        with Server(chunks=20) as server:
            events = sse_events(server.url, first_body(bodies))
            for rep in range(rounds):
                order = CASES if rep % 2 == 0 else tuple(reversed(CASES))
                for key, _, kind in order:
                    if kind is not None and not available[kind]:
                        results[key].append(None)
                        continue
                    if key in SPARSE and rep % SPARSE[key]:
                        results[key].append(None)  # far from its target: fewer rounds do
                        continue
                    r = _measure(key, kind, server, tree, bodies, work, rep, n, timeout)
                    (work / f"a-{rep}.db").unlink(missing_ok=True)
                    results[key].append(r)

    def good(r: dict[str, Any] | None) -> bool:
        return r is not None and not r["errors"] and r["ok"] is not None and r["exit"] == 0

    for key, label, kind in CASES:
        rs = [r for r in results[key] if r is not None]
        case = f"{label}, {n:,} requests, {CONCURRENCY} in flight"
        if not rs:
            rows.append(Row(TITLE, case, f"n/a ({kind} not installed)"))
            continue
        result = fspread([r["rate_wall"] for r in rs], fnum, " snippets/s")
        cpu = spread([r["cpu_ms"] for r in rs]).median
        rss = spread([r["rss"] for r in rs])
        server_cpu = spread([1000 * r["server_cpu"] / max(1, r["requests"]) for r in rs]).median
        note = (
            f"{cpu:.2f} CPU ms/req, RSS {mb(rss.median)} (max {mb(rss.hi)}), span rate "
            f"{fnum(spread([r['rate_span'] for r in rs]).median)}/s (first request to last answer), "
            f"server CPU {server_cpu:.2f} ms/req (medians); walls "
            + ", ".join(f"{r['wall']:.2f}" for r in rs)
            + "; CPU ms/req "
            + ", ".join(f"{r['cpu_ms']:.2f}" for r in rs)
        )
        bad = [r for r in rs if not good(r)]
        if bad:
            r = bad[0]
            note += (
                f"; {len(bad)} round(s) with errors, e.g. ok {r['ok']}, errors {r['errors']}, exit "
                f"{r['exit']}: {r['first_error'][:200]}"
            )
        rows.append(Row(TITLE, case, result, note=note))
        rows.append(_cpu_row(key, rs, events))

    for ours, other, target, label in (
        ("a", "e", "≥ 0.9", "a/e snipstream ÷ bare httpx over aiohttp (the same transport)"),
        ("a2", "b", "≥ 0.9", "a2/b snipstream --transport httpx ÷ bare httpx (the same transport)"),
        ("a", "b", "", "(for scale) a/b snipstream (aiohttp) ÷ bare httpx"),
        ("a", "c", "≥ 1.5", "a/c snipstream ÷ naive openai"),
        ("a", "d", "", "(for scale) a/d snipstream ÷ bare aiohttp"),
    ):
        pairs = [(a, o) for a, o in zip(results[ours], results[other], strict=True) if good(a) and good(o)]
        case = label + " (snippets/s, whole process, per round)"
        if not pairs:
            rows.append(Row(TITLE, case, "n/a", target))
            continue
        ratios = [a["rate_wall"] / o["rate_wall"] for a, o in pairs]
        sp = spread(ratios)
        span = spread([a["rate_span"] / o["rate_span"] for a, o in pairs]).median
        cpu = spread([o["cpu_ms"] / a["cpu_ms"] for a, o in pairs]).median
        cpu_a = spread([a["cpu_ms"] for a, _ in pairs]).median
        cpu_o = spread([o["cpu_ms"] for _, o in pairs]).median
        note = (
            f"server-side span: {fratio(span)}; CPU per request {fratio(cpu)} (theirs ÷ ours) (medians of "
            f"{len(pairs)} rounds): {ours} {cpu_a:.2f} ms/request, {cpu_per_event_us(cpu_a, events):.1f} µs/SSE "
            f"event; {other} {cpu_o:.2f} ms/request, {cpu_per_event_us(cpu_o, events):.1f} µs/SSE event"
        )
        if target and sp.n > 1:
            note += "; " + _gap(sp.median, sp.q1, sp.q3, target)
        rows.append(Row(TITLE, case, fspread(ratios), target, note=note))
        # The same ratio from CPU time: every client here is CPU-bound, so with a core to itself its
        # throughput is 1 / (CPU per request). CPU time is far less disturbed than wall time by other work
        # on a shared machine (it does not count the time the process waits for a core).
        cpus = [o["cpu_ms"] / a["cpu_ms"] for a, o in pairs]
        csp = spread(cpus)
        cnote = (
            "what the ratio above is when each client has a core to itself: the clients are CPU-bound "
            "(client CPU ≈ wall in the quietest rounds), and CPU time does not count waiting for a core"
        )
        if target and csp.n > 1:
            cnote += "; " + _gap(csp.median, csp.q1, csp.q3, target)
        rows.append(
            Row(
                TITLE,
                label + " by CPU per request (theirs ÷ ours, per round)",
                fspread(cpus),
                target,
                note=cnote,
            )
        )
    return rows


if __name__ == "__main__":
    from bench.runner import standalone

    standalone(NAME)
