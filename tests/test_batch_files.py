"""Batch mode without a provider: ``batch submit --batch-file-only DIR`` writes the JSONL a local runner takes
(`vllm run-batch -i FILE -o OUT`), and ``batch collect --from OUT`` ingests the runner's output.

The runner is played by `answer_file`, which writes OpenAI's batch output lines
(https://platform.openai.com/docs/api-reference/batch/request-output; vLLM's ``run-batch`` writes the same
shape: ``custom_id``, ``response`` with ``status_code`` and ``body``, ``error``) in shuffled order, as the
Batch guide warns output order may not match input order.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import orjson

from tests.helpers import db_rows, make_tree, read_ndjson, snipstream


def _lines(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("*.jsonl")):
        out += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return out


def answer_file(
    inputs: list[dict], out: Path, *, error: Callable[[dict], dict | None] = lambda _: None, seed: int = 1
) -> None:
    """Write a runner's output for `inputs`: a chat.completion per line (or the `error` given for it)."""
    lines = []
    for i, line in enumerate(inputs):
        err = error(line)
        if err is not None:
            lines.append({"id": f"r{i}", "custom_id": line["custom_id"], "response": None, "error": err})
            continue
        content = line["body"].get("x_answer") or f"Explains {line['custom_id'][:8]}: it adds things up."
        body = {
            "id": f"chatcmpl-{i}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": line["body"]["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }
        response = {"status_code": 200, "request_id": f"req-{i}", "body": body}
        lines.append({"id": f"r{i}", "custom_id": line["custom_id"], "response": response, "error": None})
    random.Random(seed).shuffle(lines)
    out.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))


def _submit(tmp_path: Path, tree: Path, *extra: str) -> None:
    res = snipstream(
        "batch", "submit", tree, "--db", tmp_path / "s.db", "--batch-file-only", tmp_path / "in",
        "--model", "gpt-4o-mini", *extra, cwd=tmp_path,
    )  # fmt: skip
    assert res.code == 0, res.stderr


def _collect(tmp_path: Path, output: Path, records: Path) -> str:
    res = snipstream(
        "batch", "collect", "--db", tmp_path / "s.db", "--from", output, "-o", records, cwd=tmp_path
    )
    assert res.code in (0, 1), res.stderr
    return res.stderr


def test_file_only_lines_are_openai_batch_requests(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    _submit(tmp_path, tree)
    lines = _lines(tmp_path / "in")
    assert lines, "no batch line written"
    ids = [line["custom_id"] for line in lines]
    assert len(ids) == len(set(ids)), "a record asked twice"
    for line in lines:
        assert set(line) == {"custom_id", "method", "url", "body"}
        assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
        assert "stream" not in line["body"] and "stream_options" not in line["body"]
        assert line["body"]["model"] == "gpt-4o-mini" and line["body"]["messages"]
    # the same ids a streamed run would make: the dry run's request lines carry them
    dry = snipstream(
        "run", tree, "--dry-run", "--db", tmp_path / "d.db", "--model", "gpt-4o-mini", cwd=tmp_path
    )
    assert {r["record_id"] for r in dry.records} == set(ids)


def test_a_second_submit_sends_nothing_already_in_a_batch(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    _submit(tmp_path, tree)
    first = _lines(tmp_path / "in")
    _submit(tmp_path, tree)
    assert len(_lines(tmp_path / "in")) == len(first)


def test_split_at_the_request_limit(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    _submit(tmp_path, tree, "--batch-max-requests", "3")
    files = sorted((tmp_path / "in").glob("*.jsonl"))
    counts = [len(f.read_bytes().splitlines()) for f in files]
    assert len(files) > 1 and max(counts) <= 3
    assert sum(counts) == len({line["custom_id"] for line in _lines(tmp_path / "in")})


def test_collect_from_a_runner_writes_each_record_once_and_resubmits_only_failures(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    _submit(tmp_path, tree)
    inputs = _lines(tmp_path / "in")
    expired = {inputs[0]["custom_id"], inputs[1]["custom_id"]}
    output = tmp_path / "out.jsonl"
    answer_file(
        inputs,
        output,
        error=lambda line: {"code": "batch_expired", "message": "This request could not be executed before the "
                            "completion window expired."} if line["custom_id"] in expired else None,
    )  # fmt: skip
    records = tmp_path / "records.ndjson"
    err = _collect(tmp_path, output, records)
    assert "batch_expired 2" in err
    got = read_ndjson(records)
    ids = {r["record_id"] for r in got}
    assert ids == {line["custom_id"] for line in inputs} - expired
    places = {(r["record_id"], r["path"], r["qualname"]) for r in got}
    assert len(places) == len(got), "a place written twice"
    assert all(r["response"]["usage"]["prompt_tokens"] == 100 for r in got)
    # collecting the same output again writes nothing more
    _collect(tmp_path, output, records)
    assert len(read_ndjson(records)) == len(got)
    # the next submit asks the expired ones again, and only those
    for path in (tmp_path / "in").glob("*.jsonl"):
        path.unlink()
    _submit(tmp_path, tree)
    assert {line["custom_id"] for line in _lines(tmp_path / "in")} == expired
    done = db_rows(tmp_path / "s.db", "SELECT count(*) FROM records WHERE status = 'done'")[0][0]
    assert done == len(ids)


def test_structured_reply_that_does_not_validate_is_reasked_by_the_next_submit(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    _submit(tmp_path, tree, "--task", "qa")
    inputs = _lines(tmp_path / "in")
    bad = inputs[0]["custom_id"]
    for line in inputs:
        line["body"]["x_answer"] = "not json at all" if line["custom_id"] == bad else orjson.dumps(
            {"pairs": [{"question": "What does it do?", "answer": "It adds."}]}
        ).decode()  # fmt: skip
    output = tmp_path / "out.jsonl"
    answer_file(inputs, output)
    records = tmp_path / "records.ndjson"
    _collect(tmp_path, output, records)
    written = {r["record_id"]: r for r in read_ndjson(records)}
    assert set(written) == {line["custom_id"] for line in inputs} - {bad}
    assert all(r["data"]["pairs"][0]["answer"] == "It adds." for r in written.values())
    reason = db_rows(tmp_path / "s.db", "SELECT reason FROM records WHERE record_id = ?", (bad,))[0][0]
    assert reason in ("invalid_json", "schema_mismatch")
    for path in (tmp_path / "in").glob("*.jsonl"):
        path.unlink()
    _submit(tmp_path, tree, "--task", "qa")
    again = _lines(tmp_path / "in")
    assert [line["custom_id"] for line in again] == [bad]
    messages = again[0]["body"]["messages"]
    assert messages[-2] == {"role": "assistant", "content": "not json at all"}
    assert "cannot be used" in messages[-1]["content"]


def test_collect_prices_at_the_batch_rate(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    _submit(tmp_path, tree)
    inputs = _lines(tmp_path / "in")
    output = tmp_path / "out.jsonl"
    answer_file(inputs, output)
    _collect(tmp_path, output, tmp_path / "r.ndjson")
    res = snipstream("batch", "status", "--db", tmp_path / "s.db", "--json", cwd=tmp_path)
    assert res.code == 0, res.stderr
    report = orjson.loads(res.stdout)
    # gpt-4o-mini lists at $0.15 in / $0.60 out per million tokens; the Batch API halves both
    n = len(inputs)
    assert report["answered"] == n
    assert abs(report["list_cost_usd"] - n * (100 * 0.15 + 20 * 0.60) / 1e6) < 1e-12
    assert abs(report["cost_usd"] - report["list_cost_usd"] / 2) < 1e-12


def test_collect_names_result_lines_that_are_not_ours(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    _submit(tmp_path, tree)
    inputs = _lines(tmp_path / "in")
    output = tmp_path / "out.jsonl"
    answer_file([*inputs, {**inputs[0], "custom_id": "not-one-of-ours"}], output)
    output.write_bytes(output.read_bytes() + b"this is no JSON\n")
    records = tmp_path / "records.ndjson"
    err = _collect(tmp_path, output, records)
    assert "1 result lines name no request" in err and "1 are not result lines" in err
    assert {r["record_id"] for r in read_ndjson(records)} == {line["custom_id"] for line in inputs}
