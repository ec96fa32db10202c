"""The rate limiter end to end: the command line against a server whose limits bind, judged by the server.

The server keeps the whole admission charge (prompt + ``max_tokens``, nothing back for a shorter answer:
OpenAI's documented accounting, see `tests.fakeserver.FakeOpenAI`), and every answer here is 20 tokens of
a 400-token reservation, so a limiter that believed the unused 380 came back would send about three
times what the server admits. There is more work than the server's one-second burst holds, so the limit
binds for most of the run. Everything asserted is counted from the server's own log (its 429s, its
account of what it charged): no timing, no sleeps.

Checked by hand when these tests were written: with `Limits.acquire` returning at once (the limiter
unwired), or with `Limits.refund` giving the unused tokens back to the bucket (the old blind refund),
every case here fails on its 429 count.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakeserver import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
SNIPPETS = 160
MAX_TOKENS = 400  # every answer is 20 tokens (the server's chunks): 380 of each reservation go unused


def make_tree(root: Path, snippets: int) -> None:
    per_file = 40
    for f in range(snippets // per_file):
        (root / f"mod_{f}.py").write_text(
            "".join(
                f"def handler_{f}_{i}(request):\n    return request.value + {i}\n\n\n"
                for i in range(per_file)
            )
        )


def run_cli(server: FakeOpenAI, tmp_path: Path, *extra: str) -> tuple[int, str, int]:
    """Annotate the tree through the real command line; returns (exit code, stderr, records done)."""
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src, SNIPPETS)
    db = tmp_path / "run.db"
    cmd = [
        sys.executable,
        "-m",
        "stream",
        "run",
        str(src),
        "--base-url",
        server.url,
        "--model",
        "m",
        "--task",
        "annotate",
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
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": "sk-test"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, env=env, timeout=120, check=False)
    with sqlite3.connect(db) as conn:
        done = conn.execute("SELECT count(*) FROM records WHERE status = 'done'").fetchone()[0]
    return proc.returncode, proc.stderr.decode(), done


def lowest_level(server: FakeOpenAI, per_minute: float, column: int) -> tuple[float, float]:
    """The server's bucket rebuilt from its own account (`FakeOpenAI.charges`, column 1 = requests,
    2 = tokens): (its lowest level, the total charged). Full at the start, one second of capacity."""
    rate = per_minute / 60
    charges = server.charges
    level, stamp, lowest, total = rate, charges[0][0], rate, 0.0
    for entry in charges:
        t, amount = entry[0], entry[column]
        refilled = level + (t - stamp) * rate
        level = min(rate, refilled - amount) if amount < 0 else min(rate, refilled) - amount
        stamp, lowest, total = t, min(lowest, level), total + amount
    return lowest, total


CASES = {
    # the setting: --rpm/--tpm set to the server's limits, headers on every answer
    "tokens bind, flags and headers": dict(tpm=1_200_000, rpm=60_000, headers="all", flags=True),
    # the limiter alone: nothing from the server but its 429s
    "tokens bind, flags, no headers": dict(tpm=1_200_000, rpm=60_000, headers="none", flags=True),
    # headers on refusals only: nothing shows whether the unused tokens came back, so they do not
    "tokens bind, flags, headers on 429s": dict(tpm=1_200_000, rpm=60_000, headers="429", flags=True),
    # no flags: the limits and the budget are learned from the headers
    "tokens bind, headers only": dict(tpm=1_200_000, rpm=60_000, headers="all", flags=False),
    # the request budget: 40 requests/s, a burst of 40, and 4 times that much work
    "requests bind, flags, no headers": dict(tpm=60_000_000, rpm=2_400, headers="none", flags=True),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_server_that_keeps_the_charge_is_held_to_its_limits(tmp_path: Path, case: str) -> None:
    c = CASES[case]
    rpm, tpm = float(c["rpm"]), float(c["tpm"])
    with FakeOpenAI(
        chunks=20, rpm=rpm, tpm=tpm, ratelimit_headers=c["headers"], refund_unused=False
    ) as server:
        flags = ["--rpm", f"{rpm:g}", "--tpm", f"{tpm:g}"] if c["flags"] else []
        code, stderr, done = run_cli(server, tmp_path, *flags)
        log = [r for r in server.requests if r.path == "/v1/chat/completions"]
        stats = server.stats
        low_requests, requests = lowest_level(server, rpm, 1)
        low_tokens, tokens = lowest_level(server, tpm, 2)

    assert code == 0, stderr[-2000:]
    assert done == SNIPPETS
    # Every snippet was admitted once, at its full reservation (the server gave nothing back) ...
    assert stats["admitted"] == requests == SNIPPETS
    admitted = [r for r in log if r.status == 200]
    assert tokens == stats["tokens_charged"] == sum(len(r.prompt_text.split()) + MAX_TOKENS for r in admitted)
    # ... there was far more work than one burst, so the limit decided the pace ...
    if case.startswith("tokens"):
        assert tokens > 3 * tpm / 60
    else:
        assert requests > 3 * rpm / 60
    # ... and the server never went past it (its bucket never below empty) ...
    assert low_requests >= 0 and low_tokens >= 0
    # ... while the client kept inside it: (almost) no request was refused.
    refused = sum(1 for r in log if r.status == 429)
    assert refused <= SNIPPETS // 100, f"{refused} of {len(log)} requests were refused with 429"
    assert len(log) == SNIPPETS + refused
