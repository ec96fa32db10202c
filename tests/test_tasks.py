"""Tasks beyond annotation: built-in structured tasks, JSON checked against a schema, one re-ask, custom
templates with a schema, and stepping down when a server refuses ``response_format``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from stream.prompt import TASKS, StructuredError, parse_structured
from tests.fakeserver import FakeOpenAI, LoggedRequest, Scripted, default_reply
from tests.helpers import EXPECTED, read_ndjson, run_args, snipstream


def failures(db: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT qualname, reason, error FROM records WHERE status = 'failed'").fetchall()
    return {q: (reason, error) for q, reason, error in rows}


# --- parsing ---------------------------------------------------------------------------------------------


def test_parse_structured_accepts_plain_or_fenced_json_and_names_what_is_wrong():
    schema = TASKS["qa"].schema
    assert schema is not None
    good = {"pairs": [{"question": "What does f return?", "answer": "Its argument doubled."}]}
    assert parse_structured(orjson.dumps(good).decode(), schema) == good
    assert parse_structured("```json\n" + orjson.dumps(good).decode() + "\n```\n", schema) == good
    with pytest.raises(StructuredError) as bad_json:
        parse_structured("Sure! Here are the pairs: {", schema)
    assert bad_json.value.reason == "invalid_json"
    with pytest.raises(StructuredError) as bad_shape:
        parse_structured('{"pairs": [{"question": "q"}]}', schema)
    assert bad_shape.value.reason == "schema_mismatch"
    assert "pairs/0" in str(bad_shape.value) and "'answer' is a required property" in str(bad_shape.value)
    with pytest.raises(StructuredError):
        parse_structured('{"pairs": []}', schema)  # minItems 1


# --- end to end ------------------------------------------------------------------------------------------


def qa_reply(req: LoggedRequest) -> str:
    """Valid pairs for most snippets; prose for `plain`, a wrong shape for `decorated` (even when asked again)."""
    text = req.prompt_text
    if "def plain(" in text:
        return "Here are three questions about plain: 1. What does it add?"
    if "def decorated(" in text:
        return '{"pairs": [{"q": "missing the right keys"}]}'
    return default_reply(req)


def test_qa_task_stores_valid_json_as_data_and_fails_invalid_replies_with_the_parse_error(tree, tmp_path):
    out, db = tmp_path / "out.ndjson", tmp_path / "s.db"
    with FakeOpenAI(chunks=4, reply=qa_reply) as server:
        r = snipstream(*run_args(server, tree, "--task", "qa", "-o", out, "--db", db), cwd=tmp_path)
        requests = server.requests
    assert r.code == 1, r.stderr  # finished, some failed
    records = read_ndjson(out)
    done = {rec["qualname"] for rec in records}
    assert done == {q for _, q in EXPECTED} - {"plain", "decorated"}
    for rec in records:
        assert rec["task"]["template"] == "qa"
        pairs = rec["data"]["pairs"]
        assert len(pairs) >= 1 and all(p["question"] and p["answer"] for p in pairs)
        assert orjson.loads(rec["annotation"]) == rec["data"]  # the raw reply is kept too
    failed = failures(db)
    assert failed["plain"][0] == "invalid_json" and "reply is not JSON" in failed["plain"][1]
    assert failed["decorated"][0] == "schema_mismatch"
    assert "'question' is a required property" in failed["decorated"][1]
    assert "invalid_json: invalid_json failed 1" not in r.stderr
    assert "invalid_json 1" in r.stderr and "schema_mismatch 1" in r.stderr
    # each bad reply was asked about once more, showing the model its reply and the error
    plain = [q for q in requests if "def plain(" in q.prompt_text]
    assert len(plain) == 2
    second = plain[1].body["messages"]
    assert second[-2]["role"] == "assistant" and second[-2]["content"].startswith("Here are three questions")
    assert "reply is not JSON" in second[-1]["content"]
    # the request asked for the schema through response_format
    fmt = requests[0].body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == TASKS["qa"].schema


def test_several_tasks_share_one_walk_and_each_answer_is_its_own_record(tree, server, tmp_path):
    out = tmp_path / "out.ndjson"
    r = snipstream(*run_args(server, tree, "--task", "annotate,docstring", "-o", out), cwd=tmp_path)
    assert r.code == 0, r.stderr
    records = read_ndjson(out)
    by_task: dict[str, set[str]] = {}
    for rec in records:
        by_task.setdefault(rec["task"]["template"], set()).add(rec["qualname"])
    names = {q for _, q in EXPECTED}
    assert by_task == {"annotate": names, "docstring": names}
    assert len(server.requests) == 2 * len(EXPECTED)
    docstrings = [rec for rec in records if rec["task"]["template"] == "docstring"]
    assert all(rec["data"]["docstring"].startswith("docstring ") for rec in docstrings)
    assert all(rec["data"] is None for rec in records if rec["task"]["template"] == "annotate")
    assert len({rec["record_id"] for rec in records}) == len(records)
    # a rerun with the same tasks asks nothing
    again = snipstream(
        *run_args(server, tree, "--task", "docstring", "--task", "annotate", "-o", out), cwd=tmp_path
    )
    assert again.code == 0 and len(server.requests) == 2 * len(EXPECTED)


def test_a_server_refusing_response_format_is_asked_with_weaker_formats(tree, tmp_path):
    out = tmp_path / "out.ndjson"
    refusal = {
        "error": {"message": "response_format json_schema is not supported", "type": "invalid_request_error"}
    }
    with FakeOpenAI(chunks=4) as server:
        server.script(Scripted(status=400, body=refusal))
        r = snipstream(
            *run_args(server, tree, "--task", "docstring", "--concurrency", "1", "-o", out), cwd=tmp_path
        )
        requests = server.requests
    assert r.code == 0, r.stderr
    assert "refused response_format" in r.stderr
    assert requests[0].body["response_format"]["type"] == "json_schema"
    assert all(q.body["response_format"] == {"type": "json_object"} for q in requests[1:])
    assert len(read_ndjson(out)) == len(EXPECTED)


def test_response_format_off_still_validates_the_reply(tree, server, tmp_path):
    out = tmp_path / "out.ndjson"
    r = snipstream(
        *run_args(server, tree, "--task", "instruct", "--response-format", "off", "-o", out), cwd=tmp_path
    )
    assert r.code == 0, r.stderr
    assert all("response_format" not in q.body for q in server.requests)
    assert "matching this schema" in server.requests[0].prompt_text
    records = read_ndjson(out)
    assert {tuple(rec["data"]) for rec in records} == {("problem", "solution")}


def test_custom_template_with_a_schema_is_a_structured_task(tree, tmp_path):
    template = tmp_path / "risk.toml"
    template.write_text(
        'name = "risk"\n'
        'user = "Rate how risky it is to change this {language} code:\\n{code}"\n'
        'applies_to = ["code"]\n'
        "[schema]\n"
        'type = "object"\n'
        'required = ["level", "why"]\n'
        "[schema.properties.level]\n"
        'enum = ["low", "medium", "high"]\n'
        "[schema.properties.why]\n"
        'type = "string"\n'
    )

    def reply(req: LoggedRequest) -> str:
        return '{"level": "extreme", "why": "x"}' if "def main(" in req.prompt_text else default_reply(req)

    out, db = tmp_path / "out.ndjson", tmp_path / "s.db"
    with FakeOpenAI(chunks=2, reply=reply) as server:
        r = snipstream(*run_args(server, tree, "--template", template, "-o", out, "--db", db), cwd=tmp_path)
    assert r.code == 1, r.stderr
    records = read_ndjson(out)
    assert len(records) == len(EXPECTED) - 1
    assert {rec["data"]["level"] for rec in records} == {"low"}
    assert failures(db)["main"][0] == "schema_mismatch"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "poem"], "--task 'poem': no such task"),
        (["--task", "qa", "--task", "qa"], "task 'qa' given twice"),
    ],
)
def test_bad_task_choices_are_refused_before_any_request(tree, server, tmp_path, args, message):
    r = snipstream(*run_args(server, tree, *args), cwd=tmp_path)
    assert r.code == 2 and message in r.stderr
    assert server.requests == []


def test_a_template_with_an_invalid_schema_is_refused(tree, server, tmp_path):
    template = tmp_path / "bad.toml"
    template.write_text('user = "{code}"\n[schema]\ntype = "objekt"\n')
    r = snipstream(*run_args(server, tree, "--template", template), cwd=tmp_path)
    assert r.code == 2 and "'schema' is not a valid JSON schema" in r.stderr
    assert server.requests == []


def test_a_structured_answer_cut_at_max_tokens_is_a_truncated_failure_not_asked_again(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "one.py").write_text("def one(a):\n    return a + 1\n")
    db = tmp_path / "s.db"
    with FakeOpenAI(chunks=2, reply=lambda req: '{"docstring": "Add one to') as server:
        server.script(Scripted(finish_reason="length"))
        r = snipstream(
            *run_args(server, root, "--task", "docstring", "--db", db, "-o", tmp_path / "o"), cwd=tmp_path
        )
        assert len(server.requests) == 1
    assert r.code == 1, r.stderr
    reason, error = failures(db)["one"]
    assert reason == "truncated" and "before its JSON was complete" in error and "invalid_json" in error
