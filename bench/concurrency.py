"""Concurrency: does snipstream really keep --concurrency requests in flight against a slow server?

The fake server (its own process) streams each answer as 200 pieces, 10 ms apart: the NOMINAL latency of
a request is chunks x chunk delay + the server's latency before answering = 2.0 s, what an ideal client
would see. ``snipstream run --concurrency 1000`` annotates 2,000 generated functions (quick: 100 and
200), ROUNDS times. The server counts requests in flight (read, until its last byte is written) and
reports the peak, the time-weighted mean, and each request's duration. Figures:

* peak in flight, as the server saw it (target: the --concurrency);
* the score: throughput / (concurrency / nominal latency), where throughput is answers per second over
  the server-side span (first arrival to last answer). 1.0 means --concurrency requests were kept in
  flight at the nominal latency the whole time. Target >= 0.9. It is printed with the in-flight count
  (peak and time-weighted mean) beside it. The score is NOT divided by the measured latency: a client
  that slows every stream (by reading it late) keeps its requests "in flight" longer without answering
  more, and would score well by that measure; the measured latency is in the notes, for information.

On a small machine the server itself may not keep up with 1,000 streams x 100 events/s (it is one Python
process): its CPU share is reported, and in full mode a variant with 20 pieces 100 ms apart (the same
2 s, a tenth of the events) separates the client's behaviour from the server's limits.

For scale, the same requests (snipstream's bodies, from its dry run) are sent at the same concurrency by
the bare httpx loop of the throughput benchmark (``bench/_clients.py``: 125 clients x 8 connections; one
round) and by the bare aiohttp loop, scored the same way. The bare aiohttp loop runs in every round, side by
side with snipstream (the order reversed every other round), and the ratio snipstream ÷ bare aiohttp of the
score and of the in-flight counts is taken per round (target: score ≥ 0.85 of the bare loop's). Each client's
CPU per request and per SSE event (its process CPU time ÷ requests, ÷ the events of an answer, counted on
a probe request) is in the notes.

    python -m bench concurrency [--quick]
"""

from __future__ import annotations

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
    rate,
    run_proc,
    snipstream,
    spread,
    sse_events,
    workdir,
)

NAME = "concurrency"
TITLE = "2 concurrency"


ROUNDS = 3
LATENCY = 0.0  # the server's latency before it starts answering


def _one(
    tree,
    work,
    *,
    key: str,
    snippets: int,
    concurrency: int,
    chunks: int,
    delay: float,
    timeout: float,
    client: str | None = None,
    bodies=None,
) -> dict:
    db = work / f"{key}.db"
    with Server(chunks=chunks, latency=LATENCY, chunk_delay=delay, min_reply_chars=chunks) as server:
        events = sse_events(server.url, first_body(bodies))  # before the counters are reset
        server.reset()
        before = server.stats()
        if client is None:
            argv = snipstream([tree], db=db, url=server.url, extra=["--concurrency", str(concurrency), "-q"])
        else:
            argv = [PY, "-m", "bench._clients", client, "--url", server.url, "--bodies", str(bodies)]
            argv += ["--concurrency", str(concurrency), "--clients", str(max(1, concurrency // 8))]
        res = run_proc(argv, timeout=timeout, cwd=work if client is None else REPO)
        st = server.stats()
    if client is None:
        done = db_count(db, "SELECT count(*) FROM records WHERE status = 'done'")
        db.unlink(missing_ok=True)
    else:
        try:
            done = res.json()["ok"]
        except Exception:
            done = None
    span = (st["last_done"] - st["first"]) if st["first"] and st["last_done"] else float("nan")
    finished = st["finished"]
    mean_latency = st["durations"] / finished if finished else float("nan")
    throughput = rate(finished, span)
    nominal = chunks * delay + LATENCY  # what an ideal client would see (see the module's docstring)
    cpu_ms = 1000 * res.cpu / max(1, st["arrived"])
    return {
        "res": res,
        "done": done,
        "peak": st["peak"],
        "span": span,
        "throughput": throughput,
        "mean_latency": mean_latency,
        "mean_inflight": st["busy"] / span if span == span and span > 0 else 0.0,
        "nominal": nominal,
        "server_cpu_share": (st["cpu"] - before["cpu"]) / span if span > 0 else float("nan"),
        "requests": st["arrived"],
        "score": throughput / (concurrency / nominal),
        "score_measured": throughput / (concurrency / mean_latency),
        "events": events,
        "cpu_ms": cpu_ms,
        "cpu_us_event": cpu_per_event_us(cpu_ms, events),
    }


def _med(rs: list[dict], key: str) -> float:
    return spread([r[key] for r in rs]).median


def _inflight(rs: list[dict], concurrency: int) -> str:
    return (
        f"in flight: peak {fnum(_med(rs, 'peak'))}, time-weighted mean {fnum(_med(rs, 'mean_inflight'))} "
        f"of {concurrency:,}"
    )


def _cpu(rs: list[dict]) -> str:
    return (
        f"client CPU {_med(rs, 'cpu_ms'):.2f} ms/request, {_med(rs, 'cpu_us_event'):.1f} µs/SSE event "
        f"({rs[0]['events']} events an answer)"
    )


def _bare_row(label: str, rs: list[dict], concurrency: int, chunks: int, delay: float) -> Row:
    r = rs[0]
    res = r["res"]
    rounds = f"median of {len(rs)} rounds" if len(rs) > 1 else "1 round"
    return Row(
        TITLE,
        f"(for scale) {label}, same requests and concurrency {concurrency:,}, "
        f"{chunks} pieces x {delay * 1000:g} ms: throughput ÷ (concurrency ÷ nominal latency)",
        f"{fratio(_med(rs, 'score'))}; {_inflight(rs, concurrency)}",
        "",
        note=f"{fnum(_med(rs, 'throughput'))} answers/s; {r['done']} answered; nominal latency "
        f"{r['nominal']:.2f} s, measured {_med(rs, 'mean_latency'):.2f} s (divided by the measured one: "
        f"{fratio(_med(rs, 'score_measured'))}); server CPU {_med(rs, 'server_cpu_share'):.0%} of a core; "
        f"{_cpu(rs)}; client CPU {res.cpu:.1f} s over {res.wall:.1f} s wall ({res.cpu / res.wall:.0%} of a "
        f"core), RSS {res.maxrss_kb / 1024:.0f} MB; {rounds}",
    )


def _ratio_rows(ours: list[dict], bare: list[dict], concurrency: int) -> list[Row]:
    """snipstream ÷ the bare aiohttp loop, per round (the two run side by side in each round)."""
    pairs = list(zip(ours, bare, strict=False))
    if not pairs:
        return []
    score = [a["score"] / b["score"] for a, b in pairs]
    peak = [a["peak"] / b["peak"] for a, b in pairs if b["peak"]]
    mean = [a["mean_inflight"] / b["mean_inflight"] for a, b in pairs if b["mean_inflight"]]
    cpu = [b["cpu_ms"] / a["cpu_ms"] for a, b in pairs if a["cpu_ms"]]
    return [
        Row(
            TITLE,
            f"snipstream ÷ bare aiohttp loop, concurrency {concurrency:,}: score (throughput ÷ (concurrency ÷ "
            "nominal latency)), per round",
            fspread(score),
            "≥ 0.85",
            note=f"in flight, snipstream ÷ bare aiohttp: peak {fspread(peak)}, time-weighted mean "
            f"{fspread(mean)}; CPU per request (theirs ÷ ours) {fspread(cpu)}; snipstream {_cpu(ours)}, "
            f"bare aiohttp {_cpu(bare)}",
        )
    ]


def run(quick: bool) -> list[Row]:
    snippets, concurrency = (200, 100) if quick else (2000, 1000)
    rounds = 1 if quick else ROUNDS
    variants = [("main", 200, 0.01)] + ([] if quick else [("variant", 20, 0.1)])
    timeout = 120 if quick else 900
    rows: list[Row] = []
    with workdir(NAME) as work:
        tree = make_tree(work / "src", snippets)
        bodies = work / "bodies.ndjson"
        bodies_from_dry_run(tree, bodies, work, timeout=timeout)
        common = dict(snippets=snippets, concurrency=concurrency, timeout=timeout, bodies=bodies)
        chunks, delay = variants[0][1:]
        bare_httpx = [_one(tree, work, key="httpx", chunks=chunks, delay=delay, client="httpx", **common)]
        rows.append(_bare_row("bare httpx loop", bare_httpx, concurrency, chunks, delay))
        # The main variant: snipstream and the bare aiohttp loop side by side in each round, the order
        # reversed every other round, so that a ratio can be taken per round.
        aio = installed("aiohttp")
        ours: list[dict] = []
        bare: list[dict] = []
        for i in range(rounds):
            order = ("ours", "bare") if i % 2 == 0 else ("bare", "ours")
            for who in order:
                if who == "ours":
                    ours.append(_one(tree, work, key=f"main-{i}", chunks=chunks, delay=delay, **common))
                elif aio:
                    r = _one(
                        tree, work, key="aiohttp", chunks=chunks, delay=delay, client="aiohttp", **common
                    )
                    bare.append(r)
        if bare:
            rows.append(_bare_row("bare aiohttp loop", bare, concurrency, chunks, delay))
        for key, chunks, delay in variants:
            rs = (
                ours
                if key == "main"
                else [_one(tree, work, key=f"{key}-0", chunks=chunks, delay=delay, **common)]
            )
            rows += _rows(key, rs, snippets, concurrency, chunks, delay)
        rows += _ratio_rows(ours, bare, concurrency)
    return rows


def _rows(key: str, rs: list[dict], snippets: int, concurrency: int, chunks: int, delay: float) -> list[Row]:
    what = f"{chunks} pieces x {delay * 1000:g} ms"
    prefix = "" if key == "main" else "(variant) "
    problems = ""
    for r in rs:
        res = r["res"]
        if res.timed_out or res.returncode != 0 or r["done"] != snippets:
            problems = f"; exit {res.returncode}, done {r['done']}/{snippets}: {res.tail(200)}"
    cpu = _med(rs, "server_cpu_share")
    walls = [r["res"].wall for r in rs]
    ccpu = [r["res"].cpu for r in rs]
    return [
        Row(
            TITLE,
            f"{prefix}peak requests in flight (server side), --concurrency {concurrency:,}, "
            f"{snippets:,} snippets, {what}",
            fspread([r["peak"] for r in rs], fnum),
            f"{concurrency:,}",
            note=f"time-weighted mean in flight {fspread([r['mean_inflight'] for r in rs], fnum)}; "
            f"{rs[-1]['requests']:,} requests a round" + problems,
        ),
        Row(
            TITLE,
            f"{prefix}throughput ÷ (concurrency ÷ nominal latency), {what}",
            f"{fspread([r['score'] for r in rs])}; {_inflight(rs, concurrency)}",
            "≥ 0.9" if key == "main" else "",
            note=f"{fnum(_med(rs, 'throughput'))} answers/s over the server-side span "
            f"{_med(rs, 'span'):.1f} s; nominal latency {rs[0]['nominal']:.2f} s, measured "
            f"{_med(rs, 'mean_latency'):.2f} s (divided by the measured one: "
            f"{fratio(_med(rs, 'score_measured'))}); server CPU {cpu:.0%} of a core; {_cpu(rs)}; client wall "
            f"{spread(walls).median:.1f} s, CPU {spread(ccpu).median:.1f} s "
            f"({spread(ccpu).median / spread(walls).median:.0%} of a core), RSS "
            f"{max(r['res'].maxrss_kb for r in rs) / 1024:.0f} MB (medians, max RSS)",
        ),
    ]


if __name__ == "__main__":
    from bench.runner import standalone

    standalone(NAME)
