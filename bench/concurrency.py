"""Concurrency: does snipstream really keep --concurrency requests in flight against a slow server?

The fake server (its own process) streams each answer as 200 pieces, 10 ms apart (about 2 s per
request). ``snipstream run --concurrency 1000`` annotates 3,000 generated functions (quick: 100 and 200).
The server counts requests in flight (read, until its last byte is written) and reports the peak, the
time-weighted mean, and each request's duration. Figures:

* peak in flight, as the server saw it (target: the --concurrency);
* throughput / (concurrency / latency), where throughput is answers per second over the server-side span
  (first arrival to last answer) and latency the mean request duration the server measured (by Little's
  law this is the mean in flight over the concurrency); also with the nominal 2 s latency, which counts
  a server slowed down by the load against the client. Target >= 0.9.

On a small machine the server itself may not keep up with 1,000 streams x 100 events/s (it is one Python
process): its CPU share is reported, and in full mode a variant with 20 pieces 100 ms apart (the same
~2 s, a tenth of the events) separates the client's behaviour from the server's limits.

For scale, the same requests (snipstream's bodies, from its dry run) are sent at the same concurrency by
the bare httpx loop of the throughput benchmark (``bench/_clients.py``: the ceiling of snipstream's stack,
125 clients x 8 connections) and by the bare aiohttp loop; their ratios are measured the same way.

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
    installed,
    make_tree,
    rate,
    run_proc,
    snipstream,
    workdir,
)

NAME = "concurrency"
TITLE = "2 concurrency"


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
    with Server(chunks=chunks, chunk_delay=delay, min_reply_chars=chunks) as server:
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
    else:
        try:
            done = res.json()["ok"]
        except Exception:
            done = None
    span = (st["last_done"] - st["first"]) if st["first"] and st["last_done"] else float("nan")
    finished = st["finished"]
    mean_latency = st["durations"] / finished if finished else float("nan")
    throughput = rate(finished, span)
    # nominal: `chunks` events with `delay` between them, plus the [DONE] after one more delay
    nominal = (chunks + 2) * delay
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
        "ratio": throughput / (concurrency / mean_latency),
        "ratio_nominal": throughput / (concurrency / nominal),
    }


def run(quick: bool) -> list[Row]:
    snippets, concurrency = (200, 100) if quick else (3000, 1000)
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
                    f"{chunks} pieces x {delay * 1000:g} ms: throughput ÷ (concurrency ÷ latency)",
                    f"{fratio(r['ratio'])} (peak in flight {r['peak']:,}, measured latency {r['mean_latency']:.2f} s)",
                    "",
                    note=f"{fnum(r['throughput'])} answers/s; {r['done']} answered; server CPU "
                    f"{r['server_cpu_share']:.0%} of a core; client CPU {res.cpu:.1f} s over {res.wall:.1f} s wall "
                    f"({res.cpu / res.wall:.0%} of a core)",
                )
            )
        for key, chunks, delay in variants:
            r = _one(
                tree,
                work,
                key=key,
                snippets=snippets,
                concurrency=concurrency,
                chunks=chunks,
                delay=delay,
                timeout=timeout,
            )
            res = r["res"]
            what = f"{chunks} pieces x {delay * 1000:g} ms"
            prefix = "" if key == "main" else "(variant) "
            problems = ""
            if res.timed_out or res.returncode != 0 or r["done"] != snippets:
                problems = f"; exit {res.returncode}, done {r['done']}/{snippets}: {res.tail(200)}"
            rows.append(
                Row(
                    TITLE,
                    f"{prefix}peak requests in flight (server side), --concurrency {concurrency:,}, "
                    f"{snippets:,} snippets, {what}",
                    f"{r['peak']:,}",
                    f"{concurrency:,}",
                    note=f"time-weighted mean in flight {fnum(r['mean_inflight'])}; {r['requests']:,} requests"
                    + problems,
                )
            )
            rows.append(
                Row(
                    TITLE,
                    f"{prefix}throughput ÷ (concurrency ÷ latency), {what}",
                    f"{fratio(r['ratio'])} (measured latency {r['mean_latency']:.2f} s)",
                    "≥ 0.9" if key == "main" else "",
                    note=f"{fnum(r['throughput'])} answers/s over the server-side span {r['span']:.1f} s; "
                    f"with the nominal {r['nominal']:.2f} s latency: {fratio(r['ratio_nominal'])}; "
                    f"server CPU {r['server_cpu_share']:.0%} of a core; client wall {res.wall:.1f} s, "
                    f"CPU {res.cpu:.1f} s ({res.cpu / res.wall:.0%} of a core), RSS {res.maxrss_kb / 1024:.0f} MB",
                )
            )
    return rows


if __name__ == "__main__":
    from bench.runner import standalone

    standalone(NAME)
