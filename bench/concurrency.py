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
the bare httpx loop of the throughput benchmark (``bench/_clients.py``: the ceiling of snipstream's stack,
125 clients x 8 connections) and by the bare aiohttp loop; they are scored the same way (one round each).

    python -m bench concurrency [--quick]
"""

from __future__ import annotations

from bench._common import (
    PY,
    REPO,
    Row,
    Server,
    bodies_from_dry_run,
    db_count,
    fnum,
    fratio,
    fspread,
    installed,
    make_tree,
    rate,
    run_proc,
    snipstream,
    spread,
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
    }


def _med(rs: list[dict], key: str) -> float:
    return spread([r[key] for r in rs]).median


def _inflight(rs: list[dict], concurrency: int) -> str:
    return (
        f"in flight: peak {fnum(_med(rs, 'peak'))}, time-weighted mean {fnum(_med(rs, 'mean_inflight'))} "
        f"of {concurrency:,}"
    )


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
        for client, label in (("httpx", "bare httpx loop"), ("aiohttp", "bare aiohttp loop")):
            if client == "aiohttp" and not installed("aiohttp"):
                continue
            chunks, delay = variants[0][1:]
            r = _one(
                tree,
                work,
                key=client,
                snippets=snippets,
                concurrency=concurrency,
                chunks=chunks,
                delay=delay,
                timeout=timeout,
                client=client,
                bodies=bodies,
            )
            res = r["res"]
            rows.append(
                Row(
                    TITLE,
                    f"(for scale) {label}, same requests and concurrency {concurrency:,}, "
                    f"{chunks} pieces x {delay * 1000:g} ms: throughput ÷ (concurrency ÷ nominal latency)",
                    f"{fratio(r['score'])}; {_inflight([r], concurrency)}",
                    "",
                    note=f"{fnum(r['throughput'])} answers/s; {r['done']} answered; nominal latency "
                    f"{r['nominal']:.2f} s, measured {r['mean_latency']:.2f} s (divided by the measured one: "
                    f"{fratio(r['score_measured'])}); server CPU {r['server_cpu_share']:.0%} of a core; client "
                    f"CPU {res.cpu:.1f} s over {res.wall:.1f} s wall ({res.cpu / res.wall:.0%} of a core), "
                    f"RSS {res.maxrss_kb / 1024:.0f} MB; 1 round",
                )
            )
        for key, chunks, delay in variants:
            n = rounds if key == "main" else 1
            rs = [
                _one(
                    tree,
                    work,
                    key=f"{key}-{i}",
                    snippets=snippets,
                    concurrency=concurrency,
                    chunks=chunks,
                    delay=delay,
                    timeout=timeout,
                )
                for i in range(n)
            ]
            what = f"{chunks} pieces x {delay * 1000:g} ms"
            prefix = "" if key == "main" else "(variant) "
            problems = ""
            for r in rs:
                res = r["res"]
                if res.timed_out or res.returncode != 0 or r["done"] != snippets:
                    problems = f"; exit {res.returncode}, done {r['done']}/{snippets}: {res.tail(200)}"
            rows.append(
                Row(
                    TITLE,
                    f"{prefix}peak requests in flight (server side), --concurrency {concurrency:,}, "
                    f"{snippets:,} snippets, {what}",
                    fspread([r["peak"] for r in rs], fnum),
                    f"{concurrency:,}",
                    note=f"time-weighted mean in flight {fspread([r['mean_inflight'] for r in rs], fnum)}; "
                    f"{r['requests']:,} requests a round" + problems,
                )
            )
            cpu = _med(rs, "server_cpu_share")
            walls = [r["res"].wall for r in rs]
            ccpu = [r["res"].cpu for r in rs]
            rows.append(
                Row(
                    TITLE,
                    f"{prefix}throughput ÷ (concurrency ÷ nominal latency), {what}",
                    f"{fspread([r['score'] for r in rs])}; {_inflight(rs, concurrency)}",
                    "≥ 0.9" if key == "main" else "",
                    note=f"{fnum(_med(rs, 'throughput'))} answers/s over the server-side span "
                    f"{_med(rs, 'span'):.1f} s; nominal latency {rs[0]['nominal']:.2f} s, measured "
                    f"{_med(rs, 'mean_latency'):.2f} s (divided by the measured one: "
                    f"{fratio(_med(rs, 'score_measured'))}); server CPU {cpu:.0%} of a core; client wall "
                    f"{spread(walls).median:.1f} s, CPU {spread(ccpu).median:.1f} s "
                    f"({spread(ccpu).median / spread(walls).median:.0%} of a core), RSS "
                    f"{max(r['res'].maxrss_kb for r in rs) / 1024:.0f} MB (medians, max RSS)",
                )
            )
    return rows


if __name__ == "__main__":
    from bench.runner import standalone

    standalone(NAME)
