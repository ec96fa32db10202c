"""What an export writes and when: nothing (and exit 1, saying why) when every answer is left out, usage
errors named before anything is written, no empty split file, the --ids sidecar that leads each example
back to its code, and the --card, written only when asked for."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from stream import __version__
from stream.cli import export as export_cmd
from tests.helpers import make_record, read_ndjson, store, subcommand

PARSE = "def parse(text):\n    return int(text)\n"
QA = {
    "pairs": [
        {"question": "What does parse return?", "answer": "The text read as a base-ten integer."},
        {"question": "What happens with bad text?", "answer": "int() raises ValueError for it."},
    ]
}


def export(*argv: str | Path, capsysbinary: pytest.CaptureFixture[bytes]) -> tuple[int, bytes, str]:
    code, out, err = subcommand(export_cmd, "export", argv, capsysbinary)
    return code, out, err.decode()


def answer(i: int) -> str:
    return f"It returns its argument plus {i}, for any number given."


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """Ten files with one annotate answer each, and a qa answer with two pairs."""
    db = tmp_path / "snipstream.db"
    records = [
        make_record(
            f"f{i}",
            path=f"src/m{i}.py",
            start_line=3,
            code=f"def f{i}(x):\n    return x + {i}\n",
            annotation=answer(i),
        )
        for i in range(10)
    ]
    records.append(make_record("parse", path="pkg/qa.py", template="qa", data=QA, code=PARSE, model="m2"))
    store(db, records)
    return db


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- nothing to write ---------------------------------------------------------------------------------------


def test_an_export_that_writes_nothing_exits_1_says_why_and_leaves_files_alone(ckpt, tmp_path, capsysbinary):
    out = tmp_path / "out" / "chat.jsonl"
    out.parent.mkdir()
    out.write_text("previous\n")
    chat = [
        "--db",
        ckpt,
        "--format",
        "openai-chat",
        "-o",
        out,
        "--ids",
        tmp_path / "out" / "ids.jsonl",
        "--card",
        tmp_path / "out" / "CARD.md",
    ]
    code, stdout, err = export(*chat, "--min-score", "3", capsysbinary=capsysbinary)
    assert (code, stdout) == (1, b"")
    assert "snipstream: error: nothing exported (all 11 answers were left out: not_judged 11)" in err
    assert out.read_text() == "previous\n" and files(out.parent) == ["chat.jsonl"], (
        "no file written or replaced"
    )
    code, _, err = export(*chat, "--task", "docstring", capsysbinary=capsysbinary)
    assert code == 1 and "task_not_selected 11" in err and "note: --task docstring matched no answer" in err
    code, stdout, err = export(
        "--db", ckpt, "--format", "jsonl", "-o", "-", "--min-score", "5", capsysbinary=capsysbinary
    )
    assert (code, stdout) == (1, b""), "nothing on stdout either"
    empty = tmp_path / "empty.db"
    store(empty, [])
    code, _, err = export(
        "--db", empty, "--format", "alpaca", "-o", tmp_path / "a.jsonl", capsysbinary=capsysbinary
    )
    assert code == 1 and "nothing exported (no done answers in the checkpoint)" in err
    assert not (tmp_path / "a.jsonl").exists()


def test_a_blank_system_message_is_a_usage_error(ckpt, tmp_path, capsysbinary):
    code, _, err = export(
        "--db",
        ckpt,
        "--format",
        "openai-chat",
        "-o",
        tmp_path / "c.jsonl",
        "--system",
        " \n\t ",
        capsysbinary=capsysbinary,
    )
    assert code == 2 and "--system is blank" in err
    assert not (tmp_path / "c.jsonl").exists()
    # a system message with whitespace around it is trimmed
    code, _, err = export(
        "--db",
        ckpt,
        "--format",
        "openai-chat",
        "-o",
        tmp_path / "c.jsonl",
        "--system",
        "  Be exact.\n",
        capsysbinary=capsysbinary,
    )
    assert code == 0, err
    assert {r["messages"][0]["content"] for r in read_ndjson(tmp_path / "c.jsonl")} == {"Be exact."}


def test_a_model_with_no_answers_is_named_with_the_models_there(ckpt, tmp_path, capsysbinary):
    out = tmp_path / "c.jsonl"
    code, _, err = export(
        "--db", ckpt, "--format", "alpaca", "-o", out, "--model", "gpt-4o", capsysbinary=capsysbinary
    )
    assert code == 2
    assert "--model gpt-4o: no done answers of that model; models there: m (10), m2 (1)" in err
    assert not out.exists()
    code, _, err = export(
        "--db", ckpt, "--format", "alpaca", "-o", out, "--model", "m2", "gpt-4o", capsysbinary=capsysbinary
    )
    assert code == 0, err
    assert len(read_ndjson(out)) == 2 and "note: --model gpt-4o has no done answers" in err


def test_a_missing_output_folder_is_named_as_such(ckpt, tmp_path, capsysbinary):
    for option in ("-o", "--ids", "--card"):
        argv = {"-o": tmp_path / "c.jsonl", option: tmp_path / "out" / "x.jsonl"}
        code, _, err = export(
            "--db",
            ckpt,
            "--format",
            "openai-chat",
            *[a for kv in argv.items() for a in kv],
            capsysbinary=capsysbinary,
        )
        assert code == 2, option
        assert f"{option} {tmp_path / 'out' / 'x.jsonl'}: the folder {tmp_path / 'out'} does not exist" in err
        assert ".tmp" not in err
        assert files(tmp_path) == ["snipstream.db"], "nothing written"
    code, _, err = export(
        "--db",
        ckpt,
        "--format",
        "alpaca",
        "-o",
        tmp_path / "out" / "d.jsonl",
        "--split",
        "0.5/0.5",
        capsysbinary=capsysbinary,
    )
    assert code == 2 and f"the folder {tmp_path / 'out'} does not exist" in err
    code, _, err = export(
        "--db",
        ckpt,
        "--format",
        "alpaca",
        "-o",
        tmp_path / "c.jsonl",
        "--ids",
        tmp_path / "c.jsonl",
        capsysbinary=capsysbinary,
    )
    assert code == 2 and "is also the file of -o" in err
    code, _, err = export(
        "--db", ckpt, "--format", "alpaca", "-o", "-", "--card", "-", capsysbinary=capsysbinary
    )
    assert code == 2 and "--card writes a file" in err


def test_a_split_that_comes_out_empty_gets_no_file(tmp_path, capsysbinary):
    db = tmp_path / "one.db"
    store(db, [make_record("f", path="src/only.py", annotation=answer(1))])  # one file: one split gets it all
    out = tmp_path / "d.jsonl"
    for name in ("d.train.jsonl", "d.valid.jsonl"):
        (tmp_path / name).write_text('{"old": 1}\n')
    code, _, err = export(
        "--db", db, "--format", "alpaca", "-o", out, "--split", "0.5/0.5", capsysbinary=capsysbinary
    )
    assert code == 0, err
    written = [n for n in ("d.train.jsonl", "d.valid.jsonl") if (tmp_path / n).exists()]
    assert len(written) == 1, "the empty split's file is not there: neither written nor left from before"
    assert read_ndjson(tmp_path / written[0])[0]["output"] == answer(1)
    assert "an older file of a split that is empty now" in err


# --- the --ids sidecar --------------------------------------------------------------------------------------


def test_the_ids_sidecar_leads_each_example_back_to_its_code(ckpt, tmp_path, capsysbinary):
    out, ids = tmp_path / "d.jsonl", tmp_path / "d.ids.jsonl"
    code, _, err = export(
        "--db",
        ckpt,
        "--format",
        "openai-chat",
        "-o",
        out,
        "--split",
        "0.5/0.5",
        "--ids",
        ids,
        capsysbinary=capsysbinary,
    )
    assert code == 0, err
    sidecar = read_ndjson(ids)
    splits = {name: read_ndjson(tmp_path / f"d.{name}.jsonl") for name in ("train", "valid")}
    assert len(sidecar) == sum(map(len, splits.values())) == 12, "one sidecar line per example, qa twice"
    with sqlite3.connect(ckpt) as conn:
        stored = {
            rid: orjson.loads(line) for rid, line in conn.execute("SELECT record_id, line FROM occurrences")
        }
    for entry in sidecar:
        assert entry["file"] == f"d.{entry['split']}.jsonl"
        example = splits[entry["split"]][entry["line"] - 1]
        rec = stored[entry["record_id"]]
        assert (entry["path"], entry["qualname"]) == (rec["path"], rec["qualname"])
        assert (entry["start_line"], entry["end_line"]) == (rec["start_line"], rec["end_line"])
        assert rec["code"] in example["messages"][0]["content"], "the example is about that record's code"
    assert sum(e["qualname"] == "parse" for e in sidecar) == 2
    # one file: the line numbers are the file's, with no split named
    code, stdout, err = export(
        "--db", ckpt, "--format", "alpaca", "-o", "-", "--ids", ids, capsysbinary=capsysbinary
    )
    assert code == 0, err
    entries = read_ndjson(ids)
    assert [e["line"] for e in entries] == list(range(1, len(stdout.splitlines()) + 1))
    assert "split" not in entries[0] and "file" not in entries[0]


# --- the --card ---------------------------------------------------------------------------------------------


def test_the_card_describes_the_export_and_leaves_licence_fields_to_the_owner(ckpt, tmp_path, capsysbinary):
    with sqlite3.connect(ckpt) as conn:  # one answer flagged by the cleaning step
        conn.execute(
            "UPDATE records SET flags = '[\"repetitive\"]' WHERE record_id = ?",
            (make_record("f3", path="x", code="def f3(x):\n    return x + 3\n")["record_id"],),
        )
    out, card = tmp_path / "d.jsonl", tmp_path / "CARD.md"
    code, _, err = export("--db", ckpt, "--format", "sharegpt", "-o", out, capsysbinary=capsysbinary)
    assert code == 0 and not card.exists(), "no card unless asked for"
    code, _, err = export(
        "--db",
        ckpt,
        "--format",
        "sharegpt",
        "-o",
        out,
        "--split",
        "0.5/0.5",
        "--card",
        card,
        "--system",
        "Be exact.",
        capsysbinary=capsysbinary,
    )
    assert code == 0, err
    text = card.read_text()
    assert text.startswith("# Dataset card\n")
    assert f"snipstream {__version__}" in text
    assert "- format: `sharegpt`, for LLaMA-Factory" in text
    assert "- examples: 11, from 10 answers" in text
    assert "| annotate | 9 |" in text and "| qa | 2 |" in text
    assert "| m | 9 |" in text and "| m2 | 1 |" in text
    assert "- answers flagged by cleaning: left out" in text and "- minimum judge score: none" in text
    assert "- max tokens per example: 65,536 (OpenAI's fine-tuning limit for gpt-4o-mini)" in text
    assert "- system message: 'Be exact.'" in text
    assert "| flagged | 1 |" in text and "repetitive 1" in text
    for field in ("Source code", "Licence of that source code", "Licence of this dataset", "Maintainer"):
        (line,) = [ln for ln in text.splitlines() if ln.startswith(f"- {field}")]
        assert line.endswith("TODO (the dataset's owner fills this in)")
    train, valid = (len(read_ndjson(tmp_path / f"d.{n}.jsonl")) for n in ("train", "valid"))
    assert f"- train: {train:,} examples in `{tmp_path / 'd.train.jsonl'}`" in text
    assert f"- valid: {valid:,} examples" in text
