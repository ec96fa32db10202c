"""Rate-limit precision: how much of a server's limit snipstream uses, and how many 429s it provokes.

The project's fake server enforces requests/min and tokens/min with token buckets (one second of burst)
and charges each request its prompt + ``max_tokens`` at admission. Servers differ in what happens next,
so both kinds are run (see `tests.fakeserver.FakeOpenAI`, where the providers are quoted):

* **keeps the charge** (OpenAI's documented accounting, the fake server's default): nothing comes back
  when the answer is shorter than ``max_tokens``;
* **refunds** (``refund_unused``): the unused part goes back to the bucket when the answer ends.

snipstream annotates N snippets end to end (the real command line in a subprocess, ``--concurrency 32
--max-tokens 128``; every answer is 20 tokens, streamed over 0.1 s, so a refund lands after other
answers' headers):

  (a) ``--rpm``/``--tpm`` set to the server's limits, headers on every answer    >= 0.97, <= 0.5% 429s
  (b) no limits set: the ``x-ratelimit-*`` headers only                          >= 0.97, <= 0.5% 429s
      (a) and (b) for both kinds of server: the four main scenarios
  (c) limits set 2x too high, headers on every answer                            100% done, >= 0.85
  (d) as (c), but the server sends no x-ratelimit headers: only 429s and their retry-after teach it
  (e) limits set right, headers only on 429s, refunding server: nothing shows the refunds
      (d) and (e) for information: no target

Every figure comes from the server's own account (`FakeOpenAI.charges`: each admission's charge and
each refund, timestamped), over the steady state: from 3 s after the first admission (the initial burst
of a full bucket and the learning of limits are left out) to the last admission. "requests/limit" and
"tokens/limit" are the share of each limit's budget over that window the server counted as used: what it
charged in the window, corrected by the change of its bucket's level (rebuilt from the same account,
`bucket_share`), so 1.000 means nothing the limit allowed went unused and no figure can pass 1 by a
fuller bucket at the start (the uncorrected ratios are in the ``--json`` output). "binding" is the
larger (the limit that decides the pace); "429 share" is the server's 429s among the completion
requests it received in the window (a whole-run count is beside it). The defaults make tokens the
binding limit for both kinds of server (the server counts a prompt as 56 words, so a request costs
56 + 128 = 184 tokens kept, 56 + 20 = 76 refunded: 1,957 or 4,737 requests/min at 360,000 tokens/min,
under the 6,000 requests/min limit), so the accounting decides the result; 108 of every 184 tokens are
what a blind refund would wrongly count as returned.

    python -m bench.ratelimit            # 2,000 snippets a scenario at 6,000 rpm / 360,000 tpm (~7 min)
    python -m bench.ratelimit --quick    # a smoke test (200 snippets, limits too high to bind: not judged)
    python -m bench.ratelimit --only a,b # some scenarios (both kinds of server for a and b)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fakeserver import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
CHUNK_DELAY = 0.005  # between stream events: an answer takes 0.1 s, so refunds come after the headers
WARMUP_S = 3.0  # left out of the steady-state window after the first admission
TARGET_SHARE = 0.97
MAX_TOKENS = 128  # per request; every answer is 20 tokens (the server's chunks), so 108 go unused
TARGET_429 = 0.005


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    refund: bool  # the server's accounting
    headers: str  # where the server puts x-ratelimit-* headers: all | 429 | none
    flags: float | None  # --rpm/--tpm as a multiple of the server's limits (None: not set)
    target: str


SCENARIOS = (
    Scenario("a", "(a) limits configured", False, "all", 1.0, "≥ 0.97, ≤ 0.5% 429s"),
    Scenario("b", "(b) headers only", False, "all", None, "≥ 0.97, ≤ 0.5% 429s"),
    Scenario("a", "(a) limits configured", True, "all", 1.0, "≥ 0.97, ≤ 0.5% 429s"),
    Scenario("b", "(b) headers only", True, "all", None, "≥ 0.97, ≤ 0.5% 429s"),
    Scenario("c", "(c) configured 2x too high", False, "all", 2.0, "100% done, ≥ 0.85"),
    Scenario("d", "(d) 2x too high, server sends no headers", False, "none", 2.0, "(information)"),
    Scenario("e", "(e) limits configured, headers only on 429s", True, "429", 1.0, "(information)"),
)


def make_tree(root: Path, snippets: int) -> None:
    per_file = 50
    for f in range((snippets + per_file - 1) // per_file):
        n = min(per_file, snippets - f * per_file)
        body = "".join(
            f"def handler_{f}_{i}(request, retries=3):\n"
            f'    """Handle request {i} of module {f}."""\n'
            f"    for attempt in range(retries):\n"
            f"        if request.ok:\n"
            f"            return request.value + {i}\n"
            f"    raise RuntimeError('gave up')\n\n\n"
            for i in range(n)
        )
        (root / f"mod_{f:03d}.py").write_text(body)


def bucket_share(
    entries: list[tuple[float, int]], per_minute: float, start: float, end: float, burst: float = 1.0
) -> float:
    """The share of a bucket's refill over [start, end] that was used, from the server's account.

    `entries` are ``(time, amount)`` charges (negative: refunds) in time order. The bucket is rebuilt
    exactly as the server keeps it (full at the first entry, after the pause before each scenario;
    refills at ``per_minute / 60``, capped at `burst` seconds' worth), so what was charged in the window
    can be corrected by the change of the level over it: a bucket fuller at the start than at the end
    cannot lift the figure above what the limit allowed, and 1.0 means no refill went unused."""
    rate = per_minute / 60.0
    cap = max(1.0, rate * burst)
    level, stamp = cap, entries[0][0]
    at_start = at_end = None
    charged = 0.0
    for t, amount in entries:
        if at_start is None and t >= start:
            at_start = min(cap, level + (start - stamp) * rate)
        if t > end:
            break
        refilled = level + (t - stamp) * rate
        level = min(cap, refilled - amount) if amount < 0 else min(cap, refilled) - amount
        stamp = t
        if t >= start:
            charged += amount
        at_end = level
    if at_start is None or at_end is None:
        return 0.0
    # level(end) = level(start) + refill used - charged, so the refill used is:
    return (charged - at_start + at_end) / (rate * (end - start))


def steady_state(server: FakeOpenAI, rpm: float, tpm: float) -> dict[str, float]:
    """The server's own figures over the steady-state window (see the module docstring)."""
    charges = server.charges
    admissions = [t for t, r, _ in charges if r]
    completions = [r for r in server.requests if r.path.endswith("completions")]
    total_429 = sum(1 for r in completions if r.status == 429)
    if len(admissions) < 2:
        return {"window_s": 0.0, "requests": 0.0, "tokens": 0.0, "share_429": 0.0, "total_429": total_429}
    start, end = admissions[0] + WARMUP_S, admissions[-1]
    if end - start < 5.0:  # a short run (--quick): the whole span, burst included
        start = admissions[0]
    sent = [r for r in completions if start <= r.time <= end]
    limited = sum(1 for r in sent if r.status == 429)
    in_window = [t for t in admissions if start <= t <= end]
    per_second = [0] * (int(end - start) + 1)
    for t, _, k in charges:
        if start <= t <= end:
            per_second[int(t - start)] += k
    return {
        "longest_gap_s": max((b - a for a, b in itertools.pairwise(in_window)), default=0.0),
        "tokens_per_second": per_second,
        "window_s": end - start,
        "requests": bucket_share([(t, r) for t, r, _ in charges if r], rpm, start, end),
        "tokens": bucket_share([(t, k) for t, _, k in charges], tpm, start, end),
        "requests_raw": sum(r for t, r, _ in charges if start <= t <= end) / (rpm * (end - start) / 60),
        "tokens_raw": sum(k for t, _, k in charges if start <= t <= end) / (tpm * (end - start) / 60),
        "share_429": limited / len(sent) if sent else 0.0,
        "total_429": total_429,
    }


def run_scenario(
    server: FakeOpenAI, src: Path, work: Path, sc: Scenario, rpm: float, tpm: float
) -> dict[str, object]:
    server.refund_unused = sc.refund
    server.ratelimit_headers = sc.headers
    time.sleep(1.5)  # the buckets fill up again between scenarios, as after any pause
    server.reset_stats()
    server.clear()
    name = f"{sc.key}-{'refund' if sc.refund else 'keep'}-{sc.headers}"
    work.mkdir(exist_ok=True)
    db = work / f"{name}.db"
    extra = [] if sc.flags is None else ["--rpm", f"{sc.flags * rpm:g}", "--tpm", f"{sc.flags * tpm:g}"]
    cmd = [
        sys.executable,
        "-m",
        "stream",
        "run",
        str(src),
        "--base-url",
        server.url,
        "--model",
        "bench",
        "--db",
        str(db),
        "-o",
        os.devnull,
        "--max-tokens",
        str(MAX_TOKENS),
        "--concurrency",
        "32",
        "--progress",
        "off",
        "-q",
        *extra,
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - started
    with sqlite3.connect(db) as conn:
        done = conn.execute("SELECT count(*) FROM records WHERE status = 'done'").fetchone()[0]
        failed = conn.execute("SELECT count(*) FROM records WHERE status = 'failed'").fetchone()[0]
    return {
        "exit": proc.returncode,
        "done": done,
        "failed": failed,
        "wall": wall,
        "stderr": proc.stderr.decode()[-500:],
        **steady_state(server, rpm, tpm),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (no figures worth quoting)")
    parser.add_argument("--snippets", type=int, default=None)
    parser.add_argument("--rpm", type=float, default=None)
    parser.add_argument("--tpm", type=float, default=None)
    parser.add_argument("--only", default="", help="comma-separated scenario letters (default: all)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every scenario this many times, interleaved (default 1)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    snippets = args.snippets or (200 if args.quick else 2000)
    rpm = args.rpm or (60_000 if args.quick else 6_000)
    tpm = args.tpm or (3_600_000 if args.quick else 360_000)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    chosen = [sc for sc in SCENARIOS if not only or sc.key in only]
    results: dict[Scenario, list[dict[str, object]]] = {sc: [] for sc in chosen}
    with tempfile.TemporaryDirectory(prefix="snipstream-bench-") as tmp:
        work = Path(tmp)
        src = work / "src"
        src.mkdir()
        make_tree(src, snippets)
        with FakeOpenAI(rpm=rpm, tpm=tpm, chunks=20, chunk_delay=CHUNK_DELAY) as server:
            for round_ in range(args.rounds):
                for sc in chosen:
                    result = run_scenario(server, src, work / f"r{round_}", sc, rpm, tpm)
                    results[sc].append(result)
                    if result["exit"] not in (0, 1):
                        print(
                            f"{sc.label}: snipstream exited {result['exit']}:\n{result['stderr']}",
                            file=sys.stderr,
                        )
    print(
        f"rate limits: {snippets} snippets a scenario, server enforcing {rpm:g} requests/min and {tpm:g} "
        f"tokens/min (1 s burst); figures from the server's own account over the steady state "
        f"({WARMUP_S:g} s after the first admission to the last)"
        + (
            f"; {args.rounds} rounds: medians, the binding range and the worst 429 share"
            if args.rounds > 1
            else ""
        )
    )
    print(
        "| scenario | server | done | failed | requests/limit | tokens/limit | binding | 429 share "
        "(all 429s) | window s | wall s | target | |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for sc, runs in results.items():
        req = statistics.median(float(r["requests"]) for r in runs)  # type: ignore[arg-type]
        tok = statistics.median(float(r["tokens"]) for r in runs)  # type: ignore[arg-type]
        bindings = [max(float(r["requests"]), float(r["tokens"])) for r in runs]  # type: ignore[arg-type]
        share = max(float(r["share_429"]) for r in runs)  # type: ignore[arg-type]
        done = min(int(r["done"]) for r in runs)  # type: ignore[call-overload]
        failed = max(int(r["failed"]) for r in runs)  # type: ignore[call-overload]
        total_429 = sum(int(r["total_429"]) for r in runs)  # type: ignore[call-overload]
        window = statistics.median(float(r["window_s"]) for r in runs)  # type: ignore[arg-type]
        wall = statistics.median(float(r["wall"]) for r in runs)  # type: ignore[arg-type]
        binding = statistics.median(bindings)
        spread = f" ({min(bindings):.3f}–{max(bindings):.3f})" if len(runs) > 1 else ""
        which = "tokens" if tok >= req else "requests"
        server_kind = ("refunds" if sc.refund else "keeps the charge") + {
            "all": "",
            "429": ", headers on 429s",
            "none": ", no headers",
        }[sc.headers]
        if args.quick:
            met = "(quick: not judged)"
        elif sc.target.startswith("≥ 0.97"):  # every round must meet it
            met = "met" if min(bindings) >= TARGET_SHARE and share <= TARGET_429 else "MISSED"
        elif sc.target.startswith("100%"):
            met = "met" if done == snippets and min(bindings) >= 0.85 else "MISSED"
        else:
            met = ""
        print(
            f"| {sc.label} | {server_kind} | {done}/{snippets} | {failed} | {req:.3f} | {tok:.3f} "
            f"| {binding:.3f} {which}{spread} | {share:.2%} ({total_429}) | {window:.1f} | {wall:.1f} "
            f"| {sc.target} | {met} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {"scenario": sc.label, "refund": sc.refund, "headers": sc.headers, "round": i, **r}
                    for sc, runs in results.items()
                    for i, r in enumerate(runs)
                ],
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
