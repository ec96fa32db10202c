"""Rate-limit precision: how much of a server's limit snipstream uses, and how many 429s it provokes.

The project's fake server enforces requests/min and tokens/min with token buckets (about one second of
burst) and sends OpenAI's ``x-ratelimit-*`` headers. snipstream annotates N snippets end to end (the real
command line in a subprocess) three ways:

  (a) configured with the server's limits       target: >= 0.97 of the binding limit, <= 0.5% 429s
  (b) no limits configured (headers only)        target: >= 0.95
  (c) configured 2x too high                     target: 100% done, >= 0.85, no failed snippet
  (d) as (c), but the server sends no x-ratelimit headers: only 429s and their retry-after teach it
      (for information: no target)

Achieved rate = requests (or net tokens) the server admitted / (last answer − first admission).

    python -m bench.ratelimit            # 2,000 snippets at 3,000 rpm / 300,000 tpm (about 3 minutes)
    python -m bench.ratelimit --quick    # a smoke test: 200 snippets at 30,000 rpm
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fakeserver import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent


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


def scenario(server: FakeOpenAI, src: Path, work: Path, name: str, extra: list[str]) -> dict[str, float]:
    server.reset_stats()
    server.clear()
    db = work / f"{name}.db"
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
        "64",
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
    stats = server.stats
    with sqlite3.connect(db) as conn:
        done = conn.execute("SELECT count(*) FROM records WHERE status = 'done'").fetchone()[0]
        failed = conn.execute("SELECT count(*) FROM records WHERE status = 'failed'").fetchone()[0]
    span = max(1e-9, stats["last_done"] - stats["first_admit"])
    sent = len(server.requests)
    r429 = sum(1 for r in server.requests if r.status == 429)
    return {
        "exit": proc.returncode,
        "done": done,
        "failed": failed,
        "rpm": stats["admitted"] / span * 60,
        "tpm": stats["tokens_charged"] / span * 60,
        "share_429": r429 / sent if sent else 0.0,
        "wall": wall,
        "stderr": proc.stderr.decode()[-500:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (no figures worth quoting)")
    parser.add_argument("--snippets", type=int, default=None)
    parser.add_argument("--rpm", type=float, default=None)
    parser.add_argument("--tpm", type=float, default=None)
    args = parser.parse_args(argv)
    snippets = args.snippets or (200 if args.quick else 2000)
    rpm = args.rpm or (30_000 if args.quick else 3_000)
    tpm = args.tpm or (3_000_000 if args.quick else 300_000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="snipstream-bench-") as tmp:
        work = Path(tmp)
        src = work / "src"
        src.mkdir()
        make_tree(src, snippets)
        with FakeOpenAI(rpm=rpm, tpm=tpm, chunks=20) as server:
            for name, label, extra, headers in (
                ("a", "(a) limits configured", ["--rpm", f"{rpm:g}", "--tpm", f"{tpm:g}"], True),
                ("b", "(b) headers only", [], True),
                ("c", "(c) configured 2x too high", ["--rpm", f"{2 * rpm:g}", "--tpm", f"{2 * tpm:g}"], True),
                (
                    "d",
                    "(d) 2x too high, server sends no headers",
                    ["--rpm", f"{2 * rpm:g}", "--tpm", f"{2 * tpm:g}"],
                    False,
                ),
            ):
                server.ratelimit_headers = headers
                result = scenario(server, src, work, name, extra)
                rows.append((label, result))
                if result["exit"] not in (0, 1):
                    print(
                        f"{label}: snipstream exited {result['exit']}:\n{result['stderr']}", file=sys.stderr
                    )
    print(
        f"rate limits: {snippets} snippets, server enforcing {rpm:g} requests/min and {tpm:g} tokens/min "
        "(1 s burst)"
    )
    print("| scenario | done | failed | requests/limit | tokens/limit | binding | 429 share | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, r in rows:
        req, tok = r["rpm"] / rpm, r["tpm"] / tpm
        print(
            f"| {label} | {r['done']}/{snippets} | {r['failed']} | {req:.3f} | {tok:.3f} | {max(req, tok):.3f} "
            f"| {r['share_429']:.2%} | {r['wall']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
