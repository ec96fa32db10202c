"""Batch mode against the test server's Files and Batches API (OpenAI's objects and state machine, emulated
in `tests/fakeserver/batches.py` with the docs it follows cited there).

The acceptance of issue 11: 5,000 snippets submitted, the process killed with SIGKILL during submit and
again during collect, then rerun: every record exactly once in NDJSON and the checkpoint, no line uploaded
twice, expired and failed lines resubmitted once, cost at the batch price.
"""

from __future__ import annotations

import signal
import textwrap
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.fakeserver import FakeOpenAI
from tests.helpers import db_count, db_rows, make_tree, read_ndjson, running, snipstream, wait_until

MODEL = "gpt-4o-mini"  # priced in the built-in table: $0.15 in / $0.60 out per million tokens


@pytest.fixture
def server():
    with FakeOpenAI(batch_step_seconds=0.02) as s:
        yield s


def _submit_args(server: FakeOpenAI, tree: Path, db: Path, *extra: str) -> list[str]:
    return ["batch", "submit", str(tree), "--base-url", server.url, "--model", MODEL, "--db", str(db),
            "--backoff", "0.01", *extra]  # fmt: skip


def _collect_args(server: FakeOpenAI, db: Path, out: Path, *extra: str) -> list[str]:
    return ["batch", "collect", "--base-url", server.url, "--db", str(db), "-o", str(out), "--wait",
            "--poll", "0.05", *extra]  # fmt: skip


def _uploaded_ids(server: FakeOpenAI) -> list[str]:
    return [cid for upload in server.uploads for cid in upload["custom_ids"]]


def _many_functions(root: Path, n: int, per_file: int = 50) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for f in range(0, n, per_file):
        body = "\n\n".join(
            textwrap.dedent(
                f'''\
                def f{i}(a, b):
                    """Helper number {i}."""
                    total = a * {i} + b
                    return total - {i % 7}
                '''
            )
            for i in range(f, min(n, f + per_file))
        )
        (root / f"m{f // per_file:04d}.py").write_text(body)
    return root


def test_submit_status_collect_round_trip(server: FakeOpenAI, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    db, out = tmp_path / "b.db", tmp_path / "records.ndjson"
    res = snipstream(*_submit_args(server, tree, db), cwd=tmp_path)
    assert res.code == 0, res.stderr
    assert len(server.uploads) == 1 and server.uploads[0]["purpose"] == "batch"
    sent = _uploaded_ids(server)
    assert len(sent) == len(set(sent))
    status = snipstream("batch", "status", "--base-url", server.url, "--db", db, "--json", cwd=tmp_path)
    assert status.code == 0, status.stderr
    report = orjson.loads(status.stdout)
    assert [b["lines"] for b in report["batches"]] == [len(sent)]
    res = snipstream(*_collect_args(server, db, out), cwd=tmp_path)
    assert res.code == 0, res.stderr
    records = read_ndjson(out)
    assert {r["record_id"] for r in records} == set(sent)
    assert all(r["response"]["usage"]["total_tokens"] > 0 for r in records)
    assert all(r["annotation"] for r in records)
    # the same records a streamed run makes: a run over the same tree has nothing left to ask
    rerun = snipstream("run", tree, "--base-url", server.url, "--model", MODEL, "--db", db, "-o", tmp_path / "x",
                       cwd=tmp_path)  # fmt: skip
    assert rerun.code == 0, rerun.stderr
    assert server.completions_for("/v1/chat/completions") == 0
    after = orjson.loads(
        snipstream("batch", "status", "--base-url", server.url, "--db", db, "--json", cwd=tmp_path).stdout
    )
    assert after["batches"][0]["status"] == "completed"
    assert after["batches"][0]["request_counts"]["completed"] == len(sent)
    assert abs(after["cost_usd"] - after["list_cost_usd"] / 2) < 1e-12 and after["cost_usd"] > 0


def test_failed_validation_shows_the_providers_line_errors(server: FakeOpenAI, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    db = tmp_path / "b.db"
    server.max_batch_requests = 2  # the provider refuses a file with more lines than it takes
    res = snipstream(*_submit_args(server, tree, db), cwd=tmp_path)
    assert res.code == 0, res.stderr
    res = snipstream(*_collect_args(server, db, tmp_path / "r.ndjson"), cwd=tmp_path)
    assert "batch_failed" in res.stderr
    reasons = db_rows(db, "SELECT reason, count(*) FROM records GROUP BY reason")
    assert dict(reasons) == {"batch_failed": len(_uploaded_ids(server))}
    # the next submit (within the provider's limit this time) asks every line again
    server.max_batch_requests = 50_000
    res = snipstream(*_submit_args(server, tree, db), cwd=tmp_path)
    assert res.code == 0, res.stderr
    assert len(server.uploads) == 2
    assert sorted(server.uploads[1]["custom_ids"]) == sorted(server.uploads[0]["custom_ids"])


def test_cancel_keeps_what_was_done(server: FakeOpenAI, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    db, out = tmp_path / "b.db", tmp_path / "r.ndjson"
    server.batch_hold = True
    assert snipstream(*_submit_args(server, tree, db), cwd=tmp_path).code == 0
    res = snipstream("batch", "cancel", "--base-url", server.url, "--db", db, cwd=tmp_path)
    assert res.code == 0, res.stderr
    assert "cancel" in res.stderr
    server.release_batches()
    res = snipstream(*_collect_args(server, db, out), cwd=tmp_path)
    assert res.code in (0, 1), res.stderr
    done = {r["record_id"] for r in read_ndjson(out)}
    failed = dict(db_rows(db, "SELECT record_id, reason FROM records WHERE status = 'failed'"))
    assert done.isdisjoint(failed)
    assert done | set(failed) == set(_uploaded_ids(server))


@pytest.mark.timeout(300)
def test_sigkill_during_submit_and_collect_then_rerun(tmp_path: Path) -> None:
    tree = _many_functions(tmp_path / "src", 5_000)
    db, out = tmp_path / "b.db", tmp_path / "records.ndjson"
    expired_share, error_share = 0.04, 0.03
    with FakeOpenAI(
        batch_step_seconds=0.02,
        batch_expire=expired_share,
        batch_line_errors=error_share,
        upload_delay=0.5,
        content_delay=0.01,
        content_chunk_lines=50,
    ) as server:
        # 1. killed while uploading the third of five files
        args = _submit_args(server, tree, db, "--task", "annotate", "--batch-max-requests", "1000")
        with running(*args, cwd=tmp_path) as proc:
            wait_until(
                lambda: db_count(db, "SELECT count(*) FROM batch_files WHERE state IN ('uploading', 'submitted')")
                >= 3 and db_count(db, "SELECT count(*) FROM batch_files WHERE state = 'uploading'") == 1,
                "the third upload under way", timeout=120, proc=proc,
            )  # fmt: skip
            proc.proc.send_signal(signal.SIGKILL)
            proc.proc.wait()
        res = snipstream(*args, cwd=tmp_path, timeout=180)
        assert res.code == 0, res.stderr
        sent = _uploaded_ids(server)
        assert len(sent) == 5_000 and len(set(sent)) == 5_000, "a line uploaded twice"
        assert len(server.batches_created) == 5

        # 2. killed while collecting (records committed, others still downloading)
        with running(*_collect_args(server, db, out), cwd=tmp_path) as proc:
            wait_until(
                lambda: 0 < db_count(db, "SELECT count(*) FROM records") < 4_000,
                "some answers committed", timeout=120, proc=proc,
            )  # fmt: skip
            proc.proc.send_signal(signal.SIGKILL)
            proc.proc.wait()
        res = snipstream(*_collect_args(server, db, out), cwd=tmp_path, timeout=180)
        assert res.code in (0, 1), res.stderr

        records = read_ndjson(out)
        ids = Counter(r["record_id"] for r in records)
        assert max(ids.values()) == 1, "a record written twice"
        failed = dict(db_rows(db, "SELECT record_id, reason FROM records WHERE status = 'failed'"))
        done = {r[0] for r in db_rows(db, "SELECT record_id FROM records WHERE status = 'done'")}
        assert set(ids) == done and done.isdisjoint(failed) and len(done) + len(failed) == 5_000
        assert {"batch_expired"} <= set(failed.values()) and len(set(failed.values())) >= 2
        assert 0 < len(failed) < 5_000 * (expired_share + error_share) * 2

        # 3. the next submit sends the failed and expired lines again, once, and only those
        server.batch_expire, server.batch_line_errors = 0.0, 0.0
        res = snipstream(*args, cwd=tmp_path, timeout=180)
        assert res.code == 0, res.stderr
        again = _uploaded_ids(server)[5_000:]
        assert sorted(again) == sorted(failed)
        res = snipstream(*_collect_args(server, db, out), cwd=tmp_path, timeout=180)
        assert res.code == 0, res.stderr
        records = read_ndjson(out)
        assert len(records) == 5_000 and len({r["record_id"] for r in records}) == 5_000
        assert db_rows(db, "SELECT count(*) FROM records WHERE status = 'done'")[0][0] == 5_000
        # and nothing was ever streamed
        assert server.completions_for("/v1/chat/completions") == 0

        status = orjson.loads(
            snipstream("batch", "status", "--base-url", server.url, "--db", db, "--json", cwd=tmp_path).stdout
        )
        assert status["answered"] == 5_000
        assert abs(status["cost_usd"] - status["list_cost_usd"] / 2) < 1e-9


def test_split_at_the_byte_limit_and_each_file_is_its_own_batch(server: FakeOpenAI, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    db = tmp_path / "b.db"
    res = snipstream(*_submit_args(server, tree, db, "--batch-max-bytes", "4096"), cwd=tmp_path)
    assert res.code == 0, res.stderr
    assert len(server.uploads) > 1 and len(server.batches_created) == len(server.uploads)
    assert all(u["bytes"] <= 4096 for u in server.uploads)
    sent = _uploaded_ids(server)
    assert len(sent) == len(set(sent))


def test_the_key_stays_out_of_the_checkpoint_and_the_output(tmp_path: Path) -> None:
    key = "sk-batch-secret-123456"
    with FakeOpenAI(api_key=key, batch_step_seconds=0.01) as server:
        tree = make_tree(tmp_path / "src")
        db, out = tmp_path / "b.db", tmp_path / "r.ndjson"
        wrong = snipstream(
            *_submit_args(server, tree, db), cwd=tmp_path, env={"OPENAI_API_KEY": "sk-wrong-999"}
        )
        assert wrong.code != 0 and "401" in wrong.stderr and "$OPENAI_API_KEY" in wrong.stderr
        assert not server.uploads
        env = {"OPENAI_API_KEY": key}
        res = snipstream(*_submit_args(server, tree, db), cwd=tmp_path, env=env)  # resumes the written file
        assert res.code == 0, res.stderr
        assert len(server.uploads) == 1
        res2 = snipstream(*_collect_args(server, db, out), cwd=tmp_path, env=env)
        assert res2.code == 0, res2.stderr
    assert read_ndjson(out)
    for text in (res.stderr, res2.stderr, wrong.stderr, out.read_text(), db.read_bytes().decode("latin-1")):
        assert key not in text and "sk-wrong-999" not in text


def test_batch_steps_say_what_to_run_first(tmp_path: Path) -> None:
    for step in ("status", "collect", "cancel"):
        res = snipstream("batch", step, "--db", tmp_path / "none.db", "--base-url", "http://127.0.0.1:9/v1",
                         cwd=tmp_path)  # fmt: skip
        assert res.code == 2 and "no checkpoint" in res.stderr, (step, res.stderr)
        assert not (tmp_path / "none.db").exists()


def test_plan_prices_the_batch_api(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    res = snipstream("plan", tree, "--model", MODEL, "--db", tmp_path / "p.db", "--json", cwd=tmp_path)
    assert res.code == 0, res.stderr
    total = orjson.loads(res.stdout)["total"]
    assert total["cost_usd"] > 0 and abs(total["batch_cost_usd"] - total["cost_usd"] / 2) < 1e-12
    text = snipstream("plan", tree, "--model", MODEL, "--db", tmp_path / "p.db", cwd=tmp_path)
    assert "through the Batch API" in text.stderr
