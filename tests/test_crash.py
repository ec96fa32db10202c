"""Crash safety: hard kills, full disks, concurrent runs and secrets, through the real command line."""

from __future__ import annotations

import functools
import random
import signal
import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from tests.fakeserver import ALL_FAULTS, FakeOpenAI, Scripted
from tests.helpers import read_ndjson, run_args, running, snipstream, wait_until

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
    conn = sqlite3.connect(db)
    try:
        lines = [row[0] for row in conn.execute("SELECT line FROM occurrences")]
    except sqlite3.OperationalError:  # a first run is still creating it
        return set()
    finally:
        conn.close()
    return {TEMPLATE.format(code=orjson.loads(line)["code"]) for line in lines}


def output_state(db: Path, out: Path) -> tuple[int, int, int | None, int]:
    """(places committed, of them not yet marked written, the confirmed offset of `out` or None, its size).

    The size is read first and the checkpoint in one statement after it, so ``size > offset`` means that
    lines were written but not yet confirmed at the moment the checkpoint was read."""
    size = out.stat().st_size if out.exists() else 0
    if not db.exists():
        return 0, 0, None, size
    conn = sqlite3.connect(db)
    try:
        committed, unwritten, offset = conn.execute(
            "SELECT (SELECT count(*) FROM occurrences), "
            "(SELECT count(*) FROM occurrences WHERE emitted = 0), (SELECT offset FROM outputs)"
        ).fetchone()
    except sqlite3.OperationalError:  # a first run is still creating it
        return 0, 0, None, size
    finally:
        conn.close()
    return committed, unwritten, offset, size


def kill_point(srv: FakeOpenAI, db: Path, out: Path, stage: str, k: int, start: tuple[int, int]) -> object:
    """Whether a run begun at `start` (requests sent, places committed) has reached `stage`:

    * ``requests``: it has sent `k` requests and the newest are unanswered: their prompts (arrived within
      20 ms: no answer can have come back, the server waits `latency` first);
    * ``unconfirmed``: it has committed answers of its own and written lines past the confirmed offset
      (committed places not yet marked written), after a first confirmed offset (see the test
      below for a kill before it)."""
    requests, committed_before = start
    if stage == "requests":
        log = srv.requests
        now = time.monotonic()
        fresh = [r.prompt_text for r in log[requests:] if r.status == 0 and now - r.time < 0.02]
        return len(log) - requests >= k and fresh
    committed, unwritten, offset, size = output_state(db, out)
    return offset is not None and committed > committed_before and size > offset and unwritten > 0


def test_hard_kills_at_each_stage_and_reruns_leave_each_record_once(tmp_path):
    """SIGKILLs, each on a running process with work pending, two at each stage: requests in flight
    (nothing of them committed); lines written but not yet confirmed (the next run must cut them and
    write them again from the checkpoint). Nothing committed is asked again; a last run finishes with
    every record exactly once."""
    src = many_functions(tmp_path / "src")
    total = 80
    out, db = tmp_path / "out.ndjson", tmp_path / "snipstream.db"
    rng = random.Random(20261125)
    with FakeOpenAI(chunks=4, chunk_delay=0.005) as srv:
        # (--context none: the prompts are rebuilt from each record's code alone, TEMPLATE)
        args = [
            *run_args(srv, src),
            "-o",
            out,
            "--concurrency",
            "4",
            "--progress",
            "off",
            "--context",
            "none",
        ]
        hits = {"requests": 0, "unconfirmed": 0}
        kills = 0
        for stage in ("requests", "unconfirmed") * 2:
            # another kill at the same stage when its moment (a few ms) passed before the kill landed
            for _ in range(5):
                before = committed_prompts(db)
                seen = len(srv.requests)
                # the first run's kill comes before any answer: the first batch of 4 is still in flight
                k = rng.randint(1, 4 if kills == 0 else 8)
                srv.latency = 0.1 if stage == "requests" else 0.02  # only `requests` needs the wait
                with running(*args, cwd=tmp_path, stderr=False) as proc:
                    fresh = wait_until(
                        functools.partial(kill_point, srv, db, out, stage, k, (seen, len(before))),
                        f"the run reaches stage {stage}",
                        proc=proc,
                    )
                    proc.signal(signal.SIGKILL)
                    code, _ = proc.finish()
                kills += 1
                assert code == -signal.SIGKILL, "the kill landed on a running process"
                after = committed_prompts(db)
                _, unwritten, offset, size = output_state(db, out)
                assert before <= after
                assert len(after) < total, "work was pending when the kill landed"
                again = [r.prompt_text for r in srv.requests[seen:] if r.prompt_text in before]
                assert again == [], "an answer already committed was requested again"
                if stage == "requests":
                    assert not set(fresh) & after, "the requests in flight were unanswered at the kill"
                    hit = True
                else:  # lines the next run must cut, and write again
                    hit = offset is not None and size > offset and unwritten > 0
                if hit:
                    hits[stage] += 1
                    break
        assert hits == {"requests": 2, "unconfirmed": 2}, hits
        before = committed_prompts(db)
        seen = len(srv.requests)
        srv.latency = srv.chunk_delay = 0.0
        final = snipstream(*args, "--concurrency", "16", cwd=tmp_path, timeout=120)
        assert final.code == 0, final.stderr
        asked = [r.prompt_text for r in srv.requests[seen:]]
    records = read_ndjson(out)  # every line is whole JSON: unconfirmed tails were cut back
    keys = [(r["record_id"], r["path"], r["qualname"]) for r in records]
    assert len(keys) == len(set(keys)) == total, "each record exactly once"
    # the last run asked exactly for what no earlier run had committed, each once
    assert sorted(asked) == sorted({TEMPLATE.format(code=r["code"]) for r in records} - before)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM occurrences WHERE emitted = 0").fetchone() == (0,)
        stored = {
            (r[0], r[1], r[2]) for r in conn.execute("SELECT record_id, path, qualname FROM occurrences")
        }
        (offset,) = conn.execute("SELECT offset FROM outputs").fetchone()
    assert stored == set(keys)
    assert offset == out.stat().st_size


def test_a_kill_before_the_first_confirmed_line_is_resumed(tmp_path):
    src = many_functions(tmp_path / "src", files=1, per_file=12)
    out, db = tmp_path / "out.ndjson", tmp_path / "snipstream.db"
    with FakeOpenAI(chunks=4, latency=0.02) as srv:
        args = [*run_args(srv, src), "-o", out, "--concurrency", "4", "--progress", "off"]
        # Until a kill lands between the first lines and their confirmation: a window of about one thread hop
        # to the checkpoint, hit by about a third of the tries here (the loop has less to do there than it had).
        for _ in range(20):
            out.unlink(missing_ok=True)
            for path in tmp_path.glob("snipstream.db*"):
                path.unlink()
            with running(*args, cwd=tmp_path, stderr=False) as proc:
                wait_until(lambda: output_state(db, out)[3] > 0, "the first lines are written", proc=proc)
                proc.signal(signal.SIGKILL)
                proc.finish()
            committed, unwritten, _, size = output_state(db, out)
            if size > 0 and unwritten == committed > 0:  # lines written, none yet marked so
                break
        else:
            pytest.skip("no kill landed before the first confirmation")
        r = snipstream(*args, cwd=tmp_path)
    assert r.code == 0, r.stderr
    keys = [(x["path"], x["qualname"]) for x in read_ndjson(out)]
    assert len(keys) == len(set(keys)) == 12


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
        progress = ["--progress", "plain", "--progress-interval", "0.05", "--concurrency", "1"]
        r = snipstream(*run_args(srv, tree, "-o", out, *progress), cwd=tmp_path, env={"OPENAI_API_KEY": key})
        assert r.code == 1, r.stderr  # the 400 failed one snippet, with the server's message stored
        assert all(req.headers["authorization"] == f"Bearer {key}" for req in srv.requests)
        wrong_key = {"OPENAI_API_KEY": key + "-wrong"}
        wrong = snipstream(
            *run_args(srv, tree, "--db", tmp_path / "w.db", backoff=None), cwd=tmp_path, env=wrong_key
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
        args = run_args(
            srv, src, "-o", out, "--concurrency", "32", "--stall-timeout", "0.3", "--max-attempts", "10"
        )
        r = snipstream(*args, cwd=tmp_path, timeout=120)
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
        args = run_args(
            srv, src, "-o", out, "--concurrency", "4", "--stall-timeout", "0.3", "--max-attempts", "12"
        )
        r = snipstream(*args, cwd=tmp_path)
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
