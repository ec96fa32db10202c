"""Crash safety: hard kills, full disks, concurrent runs and secrets, through the real command line."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import REPO, read_ndjson, snipstream
from tests.fakeserver import ALL_FAULTS, FakeOpenAI, Scripted

TEMPLATE = (
    "Please provide a complete annotation for the following Python code snippet that includes information "
    "about what the code does, any relevant details, and how it can be used in questions, documentation, "
    "and code creation:\n{code}\n"
)


def many_functions(root: Path, files: int = 8, per_file: int = 10) -> Path:
    root.mkdir(parents=True)
    for f in range(files):
        body = "".join(f"def f{f}_{i}(x):\n    # step {i}\n    return x + {i}\n\n\n" for i in range(per_file))
        (root / f"mod{f}.py").write_text(body)
    return root


def committed_prompts(db: Path) -> set[str]:
    """The prompts whose answers the checkpoint holds (rebuilt from the stored lines' code)."""
    if not db.exists():
        return set()
    with sqlite3.connect(db) as conn:
        lines = [row[0] for row in conn.execute("SELECT line FROM occurrences")]
    return {TEMPLATE.format(code=orjson.loads(line)["code"]) for line in lines}


def test_ten_hard_kills_and_reruns_leave_each_record_once(tmp_path):
    src = many_functions(tmp_path / "src")
    out, db = tmp_path / "out.ndjson", tmp_path / "snipstream.db"
    rng = random.Random(20261125)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with FakeOpenAI(chunks=4, latency=0.01, chunk_delay=0.005) as srv:
        args = [
            sys.executable,
            "-m",
            "stream",
            "run",
            str(src),
            "--base-url",
            srv.url,
            "--model",
            "m",
            "-o",
            str(out),
            "--concurrency",
            "4",
            "--progress",
            "off",
        ]
        for _ in range(10):
            before = committed_prompts(db)
            seen = len(srv.requests)
            proc = subprocess.Popen(
                args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(0.3, 1.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            again = [r.prompt_text for r in srv.requests[seen:] if r.prompt_text in before]
            assert again == [], "an answer already committed was requested again"
        before = committed_prompts(db)
        seen = len(srv.requests)
        final = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, timeout=120)
        assert final.returncode == 0, final.stderr.decode()
        assert not [r.prompt_text for r in srv.requests[seen:] if r.prompt_text in before]
    records = read_ndjson(out)  # every line is whole JSON: torn tails were cut back
    keys = [(r["record_id"], r["path"], r["qualname"]) for r in records]
    assert len(keys) == len(set(keys)) == 80, "each record exactly once"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM occurrences WHERE emitted = 0").fetchone() == (0,)
        stored = {
            (r[0], r[1], r[2]) for r in conn.execute("SELECT record_id, path, qualname FROM occurrences")
        }
        (offset,) = conn.execute("SELECT offset FROM outputs").fetchone()
    assert stored == set(keys)
    assert offset == out.stat().st_size


def test_a_full_disk_is_a_clear_error_and_nothing_paid_for_is_lost(tree, tmp_path):
    with FakeOpenAI() as srv:
        r = snipstream("run", tree, "--base-url", srv.url, "--model", "m", "-o", "/dev/full", cwd=tmp_path)
        assert r.code == 3
        assert "No space left on device" in r.stderr
        assert "Traceback" not in r.stderr
        sent = len(srv.requests)
        with sqlite3.connect(tmp_path / "snipstream.db") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            done = conn.execute("SELECT count(*) FROM records WHERE status = 'done'").fetchone()[0]
        assert done >= 1
        out = tmp_path / "out.ndjson"
        r = snipstream("run", tree, "--base-url", srv.url, "--model", "m", "-o", out, cwd=tmp_path)
        assert r.code == 0, r.stderr
        # what was answered before the disk filled up is written now, not asked again
        assert len(srv.requests) - sent == 13 - done
        assert len(read_ndjson(out)) == 13


def test_the_api_key_appears_in_no_artefact(tree, tmp_path):
    key = "sk-SENTINEL-5f1c9e0b7a"
    echo = {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}}
    with FakeOpenAI(api_key=key) as srv:
        srv.script(Scripted(status=500, body=echo), Scripted(status=400, body=echo))
        out = tmp_path / "out.ndjson"
        r = snipstream(
            "run",
            tree,
            "--base-url",
            srv.url,
            "--model",
            "m",
            "-o",
            out,
            "--progress",
            "plain",
            "--progress-interval",
            "0.05",
            "--concurrency",
            "1",
            "--backoff",
            "0.01",
            cwd=tmp_path,
            env={"OPENAI_API_KEY": key},
        )
        assert r.code == 1, r.stderr  # the 400 failed one snippet, with the server's message stored
        assert all(req.headers["authorization"] == f"Bearer {key}" for req in srv.requests)
        wrong = snipstream(
            "run",
            tree,
            "--base-url",
            srv.url,
            "--model",
            "m",
            "--db",
            tmp_path / "w.db",
            cwd=tmp_path,
            env={"OPENAI_API_KEY": key + "-wrong"},
        )
        assert wrong.code == 3
    artefacts = {
        "stdout": r.stdout + wrong.stdout,
        "stderr": (r.stderr + wrong.stderr).encode(),
        "ndjson": out.read_bytes(),
    }
    for path in tmp_path.glob("*.db*"):
        artefacts[path.name] = path.read_bytes()
    for name, data in artefacts.items():
        assert key.encode() not in data, f"the key leaked into {name}"
        assert key[:12].encode() not in data, f"a prefix of the key leaked into {name}"
    with sqlite3.connect(tmp_path / "snipstream.db") as conn:
        (error,) = conn.execute("SELECT error FROM records WHERE status = 'failed'").fetchone()
    assert "Incorrect API key provided: ***" in error


def test_a_fifth_of_requests_faulty_still_gives_every_record_exactly_once(tmp_path):
    """Acceptance: 2,000 snippets, 20% of requests hit by a random mix of every fault class."""
    src = many_functions(tmp_path / "src", files=40, per_file=50)
    out = tmp_path / "out.ndjson"
    with FakeOpenAI(chunks=4, fault_rate=0.2, seed=7, stall_seconds=1.0) as srv:
        r = snipstream(
            "run",
            src,
            "--base-url",
            srv.url,
            "--model",
            "m",
            "-o",
            out,
            "--concurrency",
            "32",
            "--backoff",
            "0.01",
            "--stall-timeout",
            "0.3",
            "--max-attempts",
            "10",
            cwd=tmp_path,
            timeout=120,
        )
        faults = srv.stats["faults"]
    assert r.code == 0, r.stderr
    assert set(faults) == set(ALL_FAULTS)  # every fault class was met
    assert sum(faults.values()) >= 300
    records = read_ndjson(out)
    keys = [(x["path"], x["qualname"]) for x in records]
    assert len(keys) == len(set(keys)) == 2000
    assert sum(x["attempts"] > 1 for x in records) >= 250  # the faults were met, and retried
    assert all(
        x["annotation"].startswith("Annotation ") and x["response"]["finish_reason"] == "stop"
        for x in records
    )


@pytest.mark.parametrize("fault", ALL_FAULTS)
def test_each_fault_class_is_survived_with_every_record_once(fault, tmp_path):
    src = many_functions(tmp_path / "src", files=2, per_file=15)
    out, db = tmp_path / "out.ndjson", tmp_path / "snipstream.db"
    with FakeOpenAI(chunks=4, fault_rate=0.4, faults=[fault], seed=3, stall_seconds=1.0) as srv:
        r = snipstream(
            "run",
            src,
            "--base-url",
            srv.url,
            "--model",
            "m",
            "-o",
            out,
            "--concurrency",
            "4",
            "--backoff",
            "0.01",
            "--stall-timeout",
            "0.3",
            "--max-attempts",
            "12",
            cwd=tmp_path,
        )
        injected = srv.stats["faults"].get(fault, 0)
        sent = len(srv.requests)
    assert r.code == 0, r.stderr
    assert injected > 0
    records = read_ndjson(out)
    assert len({(x["path"], x["qualname"]) for x in records}) == len(records) == 30
    # every extra request was a retry of a fault ("slow" answers are whole, only slow): none for work
    # already committed
    retries = 0 if fault == "slow" else injected
    assert sent == 30 + retries
    assert sum(x["attempts"] for x in records) == 30 + retries
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM records WHERE status = 'done'").fetchone() == (30,)
