"""The judge (``--task judge``): each new answer scored by the same model against the prompt it was asked
with, a low score asked again with the judge's finding, every judge token counted; end to end against the
fake server, whose request log shows each judge request with the answer it judges."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream.cli import build_parser, config_from_args
from stream.errors import ConfigError, StructuredError
from stream.judge import SCHEMA, Judgment, followup, render
from stream.prompt import DEFAULT_TASKS, parse_structured
from tests.fakeserver import FakeOpenAI, LoggedRequest, default_reply
from tests.fakeserver.replies import judge_answer, judging
from tests.helpers import db_rows, read_ndjson, run_args, server_usage, snipstream

FOLLOWUP = "A reviewer checked that answer"


def _run(
    server: FakeOpenAI, tree: Path, tmp_path: Path, *extra: str, out: str = "out.ndjson"
) -> tuple[list[dict], Path]:
    out, db = tmp_path / out, tmp_path / "s.db"
    r = snipstream(*run_args(server, tree, "-o", out, "--db", db, *extra), cwd=tmp_path)
    assert r.code == 0, r.stderr
    return read_ndjson(out), db


def _summary(db: Path) -> dict:
    (raw,) = db_rows(db, "SELECT summary FROM runs ORDER BY run_id DESC LIMIT 1")[0]
    return orjson.loads(raw)


def _task_requests(server: FakeOpenAI) -> list[LoggedRequest]:
    return [r for r in server.requests if r.body and judge_answer(r) is None]


def _judge_requests(server: FakeOpenAI) -> list[LoggedRequest]:
    return [r for r in server.requests if r.body and judge_answer(r) is not None]


def _user(req: LoggedRequest) -> str:
    assert req.body is not None
    return next(m["content"] for m in req.body["messages"] if m["role"] == "user")


def _is_reask(req: LoggedRequest) -> bool:
    return FOLLOWUP in req.prompt_text


def test_each_answer_is_judged_against_the_prompt_it_was_asked_with(tree, tmp_path) -> None:
    with FakeOpenAI(chunks=8, reply=judging(lambda answer: 4)) as server:
        records, db = _run(server, tree, tmp_path, "--task", "annotate,docstring,judge")
        tasks, judges = _task_requests(server), _judge_requests(server)
        usage = [server_usage(server, r) for r in server.requests]
    assert len(judges) == len(tasks) == len(records) and records
    prompts = {_user(r) for r in tasks}
    for rec in records:
        assert rec["judge"]["score"] == 4 and rec["judge"]["error"] == ""
        assert rec["judge"]["model"] == "m" and rec["judge"]["usage"]["completion_tokens"] > 0
        assert "reasks" not in rec["judge"] and rec["attempts"] == 1
        # the judge request that judged this answer: it carries the answer and the prompt it was asked with
        (judged,) = [r for r in judges if judge_answer(r) == rec["annotation"]]
        asked = [p for p in prompts if p in judged.prompt_text]
        assert len(asked) == 1 and rec["code"].strip() in asked[0]
        fmt = judged.body["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "judge"
    docstrings = [rec for rec in records if rec["task"]["template"] == "docstring"]
    assert docstrings and all(orjson.loads(rec["annotation"]) == rec["data"] for rec in docstrings)
    assert db_rows(db, "SELECT DISTINCT score FROM records") == [(4,)]
    # the judge's tokens are the run's: the summary adds up every request the server answered
    summary = _summary(db)
    assert summary["requests"] == len(server.requests) == 2 * len(records)
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == tuple(
        map(sum, zip(*usage, strict=True))
    )
    report = orjson.loads(snipstream("status", "--db", db, "--json", cwd=tmp_path).stdout)["quality"]
    assert report["scores"] == {"1": 0, "2": 0, "3": 0, "4": len(records), "5": 0}
    assert report["unjudged"] == 0 and report["judge_completion_tokens"] > 0


def _task_reply(req: LoggedRequest) -> str:
    """A task's answer; asked again after the judge's finding, a corrected one."""
    answer = default_reply(req)
    return "Corrected. " + answer if _is_reask(req) and not answer.startswith("{") else answer


def test_a_low_score_sends_the_answer_back_once_with_the_finding(tree, tmp_path) -> None:
    reply = judging(lambda answer: 5 if answer.startswith("Corrected") else 2, _task_reply)
    with FakeOpenAI(chunks=8, reply=reply) as server:
        records, db = _run(server, tree, tmp_path, "--task", "annotate,judge")
        reasks = [r for r in _task_requests(server) if _is_reask(r)]
        first = {_user(r): default_reply(r) for r in _task_requests(server) if not _is_reask(r)}
        usage = [server_usage(server, r) for r in server.requests]
    assert records and len(reasks) == len(records), "exactly one re-ask per record"
    for rec in records:
        assert rec["annotation"].startswith("Corrected. ") and rec["judge"]["score"] == 5
        (step,) = rec["judge"]["reasks"]
        assert step["score"] == 2 and step["reask"] == "answered" and step["error"]
        assert rec["attempts"] == 2
    # each prompt was asked again once, carrying its first answer and what the judge found in it
    assert sorted(_user(r) for r in reasks) == sorted(first)
    for again in reasks:
        assert again.body["messages"][-2] == {"role": "assistant", "content": first[_user(again)]}
        assert records[0]["judge"]["reasks"][0]["error"] in again.body["messages"][-1]["content"]
    assert {s for (s,) in db_rows(db, "SELECT score FROM records")} == {5}
    summary = _summary(db)  # the replaced answers and both judgments are paid for, and counted
    assert summary["requests"] == 4 * len(records)
    assert summary["scores"] == {"5": len(records)} and summary["judge_reasks"] == len(records)
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == tuple(
        map(sum, zip(*usage, strict=True))
    )


@pytest.mark.parametrize(
    ("options", "asks"), [((), 2), (("--judge-reasks", "2"), 3), (("--judge-reask-below", "0"), 1)]
)
def test_how_often_a_low_score_is_asked_again(tree, tmp_path, options, asks) -> None:
    with FakeOpenAI(chunks=8, reply=judging(lambda answer: 1)) as server:
        records, db = _run(server, tree, tmp_path, "--task", "annotate,judge", *options)
        tasks, judges = _task_requests(server), _judge_requests(server)
    assert len(tasks) == len(judges) == asks * len(records)
    for rec in records:
        assert rec["judge"]["score"] == 1 and len(rec["judge"].get("reasks", [])) == asks - 1
        assert rec["attempts"] == asks
    assert db_rows(db, "SELECT DISTINCT score FROM records") == [(1,)]


def test_a_failed_judge_keeps_the_paid_for_answer(tree, tmp_path) -> None:
    def reply(req: LoggedRequest) -> str:
        if judge_answer(req) is not None:
            raise RuntimeError("the judge is down")  # the fake server answers 500
        return default_reply(req)

    with FakeOpenAI(chunks=8, reply=reply) as server:
        records, db = _run(server, tree, tmp_path, "--task", "annotate,judge", "--max-attempts", "2")
        answers = [default_reply(r) for r in _task_requests(server)]
    assert records and sorted(rec["annotation"] for rec in records) == sorted(answers)
    for rec in records:
        assert rec["judge"]["score"] is None and rec["judge"]["unjudged"].startswith("http_500")
        assert rec["judge"]["attempts"] == 2
    assert db_rows(db, "SELECT DISTINCT score, status FROM records") == [(None, "done")]
    assert _summary(db)["failed"] == {}
    report = orjson.loads(snipstream("status", "--db", db, "--json", cwd=tmp_path).stdout)["quality"]
    assert report["judged"] == 0 and report["unjudged"] == len(records)


def test_a_failed_reask_keeps_the_earlier_answer_and_its_judgment(tree, tmp_path) -> None:
    def task(req: LoggedRequest) -> str:
        if _is_reask(req):
            raise RuntimeError("down for re-asks")
        return default_reply(req)

    with FakeOpenAI(chunks=8, reply=judging(lambda answer: 2, task)) as server:
        records, db = _run(server, tree, tmp_path, "--task", "annotate,judge", "--max-attempts", "1")
        first = {default_reply(r) for r in _task_requests(server) if not _is_reask(r)}
    assert {rec["annotation"] for rec in records} == first
    for rec in records:
        (step,) = rec["judge"]["reasks"]
        assert rec["judge"]["score"] == 2 and step["reask"].startswith("failed: http_500")
    assert _summary(db)["failed"] == {}


def test_turning_the_judge_on_or_off_re_pays_no_done_answer(tree, tmp_path) -> None:
    with FakeOpenAI(chunks=8, reply=judging(lambda answer: 3)) as server:
        first, db = _run(server, tree, tmp_path)
        sent = len(server.requests)
        again, _ = _run(server, tree, tmp_path, "--task", "annotate,summarize,judge", "--emit-all", out="2")
        assert len(server.requests) == sent, "done answers are not asked or judged again"
    assert sorted(r["record_id"] for r in again) == sorted(r["record_id"] for r in first)
    assert all("judge" not in r for r in again)  # they keep the judgment they had: none
    assert db_rows(db, "SELECT DISTINCT score FROM records") == [(None,)]


def test_batch_mode_refuses_the_judge(tree, tmp_path) -> None:
    r = snipstream(
        "batch", "submit", tree, "--db", tmp_path / "s.db", "--batch-file-only", tmp_path / "in",
        "--task", "annotate,judge", cwd=tmp_path,
    )  # fmt: skip
    assert r.code == 2, r.stderr
    assert "--task judge is not available in batch mode" in r.stderr
    assert not (tmp_path / "in").exists()


# --- the pieces ----------------------------------------------------------------------------------------------


def test_task_judge_turns_the_judge_on_and_is_no_task() -> None:
    def config(*argv: str):
        return config_from_args(build_parser().parse_args(["run", "src", *argv]))

    cfg = config("--task", "qa,judge")
    assert cfg.judge and [t.name for t in cfg.tasks] == ["qa"]
    alone = config("--task", "judge")  # the default tasks, judged
    assert alone.judge and [t.name for t in alone.tasks] == list(DEFAULT_TASKS)
    assert not config("--task", "qa").judge
    assert (cfg.judge_reask_below, cfg.judge_reasks) == (3, 1)
    with pytest.raises(ConfigError, match="--judge-reask-below must be 0"):
        config("--task", "judge", "--judge-reask-below", "6", "--base-url", "http://127.0.0.1:9/v1").resolve(
            {}
        )
    with pytest.raises(ConfigError, match=r"built-in tasks: .*judge"):
        config("--task", "jugde")


def test_the_judge_prompt_holds_the_request_and_the_answer() -> None:
    system, user = render("Explain:\ndef f(x):\n    return x\n", "It returns x.")
    assert system and "<request>\nExplain:\ndef f(x):\n    return x\n\n</request>" in user
    assert "<answer>\nIt returns x.\n</answer>" in user
    assert user.rstrip().endswith(orjson.dumps(SCHEMA).decode())
    assert parse_structured('{"score": 2, "error": "x is not doubled"}', SCHEMA) == {
        "score": 2,
        "error": "x is not doubled",
    }
    for bad in ('{"score": 0, "error": ""}', '{"score": 6, "error": ""}', '{"score": 3}'):
        with pytest.raises(StructuredError):
            parse_structured(bad, SCHEMA)
    messages = followup("It returns x.", Judgment(2, "it doubles x"))
    assert messages[0] == {"role": "assistant", "content": "It returns x."}
    assert "scored it 2 of 5: it doubles x" in messages[1]["content"]
    assert Judgment(2).low(3) and not Judgment(3).low(3) and not Judgment(None).low(3)
