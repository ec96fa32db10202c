"""``snipstream export``: checkpoint answers → fine-tuning data, through the command's own parser and run().

The checkpoint is built by running the real tool against the loopback fake server (annotate answers), plus
answers of the structured and documentation tasks written with the checkpoint's own API (those tasks are
not wired into the run yet), with `store` and `make_record` from tests/helpers.py.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream import export as export_mod
from stream.cli import export as export_cmd
from stream.export import check_example, check_openai_chat, parse_split, split_of, split_targets
from tests.fakeserver import FakeOpenAI
from tests.helpers import (
    checkpoint_held,
    make_record,
    make_tree,
    read_ndjson,
    run_args,
    snipstream,
    store,
    subcommand,
)

# --- building checkpoints (make_record and store: tests/helpers.py) --------------------------------------


def elsewhere(rec: dict[str, Any], path: str, start_line: int = 1) -> dict[str, Any]:
    """The same answer found at another place (same record id)."""
    return {**rec, "path": path, "start_line": start_line}


# --- running the command -----------------------------------------------------------------------------------


def export(*argv: str | Path, capsysbinary: pytest.CaptureFixture[bytes]) -> tuple[int, bytes, str]:
    """``snipstream export ARGS`` through the subcommand's own parser and run(); (exit code, stdout, stderr)."""
    code, out, err = subcommand(export_cmd, "export", argv, capsysbinary)
    return code, out, err.decode()


def stored_line(db: Path, qualname: str) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        (line,) = conn.execute("SELECT line FROM occurrences WHERE qualname = ?", (qualname,)).fetchone()
    return orjson.loads(line)


# --- the shared checkpoint ---------------------------------------------------------------------------------

PLAIN = 'def plain(a, b=1):\n    """Add two numbers."""\n    # a comment inside\n    return a + b\n'
PARSE = "def parse(text):\n    return int(text)\n"
GUIDE = "# Install\n\nRun `pip install snipstream`.\n"
REVIEW = "It reviews its input and returns it unchanged."  # long enough to pass cleaning (stream.clean)
ANSWER = "It returns its argument doubled, for any number."

QA = {
    "pairs": [
        {"question": "What does parse return?", "answer": "An int."},
        {"question": "What happens with bad text?", "answer": "int() raises ValueError."},
    ]
}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run over the test tree (13 annotate answers), plus one answer of every other task."""
    root = tmp_path_factory.mktemp("export")
    tree = make_tree(root / "project")
    db = root / "snipstream.db"
    with FakeOpenAI(chunks=4) as srv:
        r = snipstream(*run_args(srv, tree, "-o", root / "out.ndjson", "--db", db, backoff=None), cwd=root)
    assert r.code == 0, r.stderr
    annotate_fp = stored_line(db, "plain")["task"]["fingerprint"]
    store(
        db,
        [
            make_record("parse", path="pkg/qa.py", template="qa", data=QA, code=PARSE),
            make_record(
                "parse",
                path="pkg/doc.py",
                template="docstring",
                data={"docstring": "Parse text as an integer."},
                code=PARSE,
            ),
            make_record(
                "cache",
                path="pkg/inst.py",
                template="instruct",
                data={"problem": "Write a function that caches results.", "solution": "Use functools.cache."},
            ),
            make_record(
                "Install",
                path="docs/guide.md",
                template="summarize",
                kind="doc_section",
                language="markdown",
                code=GUIDE,
                data={"summary": "How to install it.", "questions": ["How do I install it?"]},
            ),
            make_record(
                "Install",
                path="docs/guide.md",
                template="explain",
                kind="doc_section",
                language="markdown",
                code=GUIDE,
                annotation="It says to install with pip.",
            ),
            make_record("review_me", path="pkg/custom.py", template="brief", annotation=REVIEW),
            make_record(
                "cut",
                path="pkg/cut.py",
                fingerprint=annotate_fp,
                annotation="This is cut short before the end of its sen",
                truncated=True,
            ),
        ],
    )
    return db


# annotate 13, qa 2 (one answer), docstring, instruct, summarize, explain; not the custom nor the truncated
EXAMPLES = 13 + 2 + 4
STORED = 13 + 1 + 4 + 1  # jsonl: every answer as stored, the custom template's too (not the truncated)


def test_every_format_is_written_with_exact_examples(ckpt, tmp_path, capsysbinary):
    plain = stored_line(ckpt, "plain")
    user = (
        "Explain the Python function `plain` from `pkg/shapes.py`: what it does, the relevant details, and how "
        f"it can be used.\n\n```python\n{PLAIN}```"
    )
    answer = plain["annotation"]
    expected = {
        "openai-chat": {
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        },
        "sharegpt": {"conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": answer}]},
        "alpaca": {
            "instruction": "Explain the Python function `plain` from `pkg/shapes.py`: what it does, the relevant "
            "details, and how it can be used.",
            "input": f"```python\n{PLAIN}```",
            "output": answer,
        },
        "prompt-completion": {"prompt": user + "\n\n", "completion": answer},
    }
    for fmt, example in expected.items():
        out = tmp_path / f"{fmt}.jsonl"
        code, stdout, err = export("--db", ckpt, "--format", fmt, "-o", out, capsysbinary=capsysbinary)
        assert code == 0, err
        assert stdout == b"", "examples go to the file only"
        rows = read_ndjson(out)
        assert len(rows) == EXAMPLES, fmt
        assert example in rows, fmt
        assert f"examples written: all {EXAMPLES} → {out}" in err
        assert "0 with problems" in err
        assert "truncated 1" in err and "custom_task 1" in err
    code, _, err = export(
        "--db", ckpt, "--format", "jsonl", "-o", tmp_path / "all.jsonl", capsysbinary=capsysbinary
    )
    assert code == 0, err
    stored = read_ndjson(tmp_path / "all.jsonl")
    assert len(stored) == STORED
    assert plain in stored, "jsonl writes the record exactly as stored"
    assert "format check" not in err and "tokens per example" not in err


def test_answers_come_in_path_then_line_order(ckpt, tmp_path, capsysbinary):
    code, _, err = export(
        "--db", ckpt, "--format", "jsonl", "-o", tmp_path / "a.jsonl", capsysbinary=capsysbinary
    )
    assert code == 0, err
    keys = [(r["path"], r["start_line"]) for r in read_ndjson(tmp_path / "a.jsonl")]
    assert keys == sorted(keys)


def test_each_task_maps_to_its_examples(ckpt, tmp_path, capsysbinary):
    out = tmp_path / "chat.jsonl"
    assert export("--db", ckpt, "--format", "openai-chat", "-o", out, capsysbinary=capsysbinary)[0] == 0
    pairs = {(m["messages"][0]["content"], m["messages"][1]["content"]) for m in read_ndjson(out)}
    parse = f"```python\n{PARSE}```"
    guide = f"```markdown\n{GUIDE}```"
    context = f"The Python function `parse` from `pkg/qa.py`:\n\n{parse}\n\n"
    assert (context + "What does parse return?", "An int.") in pairs
    assert (context + "What happens with bad text?", "int() raises ValueError.") in pairs
    assert (
        f"Write a docstring for the Python function `parse` from `pkg/doc.py`.\n\n{parse}",
        "Parse text as an integer.",
    ) in pairs
    assert ("Write a function that caches results.", "Use functools.cache.") in pairs
    assert (f"Summarize the section `Install` of `docs/guide.md`.\n\n{guide}", "How to install it.") in pairs
    assert (
        f"Explain the section `Install` of `docs/guide.md`.\n\n{guide}",
        "It says to install with pip.",
    ) in pairs
    out = tmp_path / "alpaca.jsonl"
    assert export("--db", ckpt, "--format", "alpaca", "-o", out, capsysbinary=capsysbinary)[0] == 0
    assert {
        "instruction": "What does parse return?",
        "input": f"The Python function `parse` from `pkg/qa.py`:\n\n{parse}",
        "output": "An int.",
    } in read_ndjson(out)
    assert {
        "instruction": "Write a function that caches results.",
        "input": "",
        "output": "Use functools.cache.",
    } in read_ndjson(out)


def test_system_message_goes_where_each_format_keeps_it(ckpt, tmp_path, capsysbinary):
    system = "You are a code expert."
    found = {}
    for fmt in ("openai-chat", "sharegpt", "alpaca", "prompt-completion"):
        out = tmp_path / f"{fmt}.jsonl"
        code, _, err = export(
            "--db",
            ckpt,
            "--format",
            fmt,
            "-o",
            out,
            "--system",
            system,
            "--task",
            "instruct",
            capsysbinary=capsysbinary,
        )
        assert code == 0, err
        (found[fmt],) = read_ndjson(out)
    assert found["openai-chat"]["messages"][0] == {"role": "system", "content": system}
    assert found["sharegpt"]["conversations"][0] == {"from": "system", "value": system}
    assert found["alpaca"]["system"] == system
    assert found["prompt-completion"]["prompt"] == f"{system}\n\nWrite a function that caches results.\n\n"


def test_openai_chat_output_passes_the_fine_tuning_format_checks(ckpt, tmp_path, capsysbinary):
    out = tmp_path / "chat.jsonl"
    assert export("--db", ckpt, "--format", "openai-chat", "-o", out, capsysbinary=capsysbinary)[0] == 0
    for example in read_ndjson(out):
        assert check_openai_chat(example) == []
        assert set(example) == {"messages"}
        roles = [m["role"] for m in example["messages"]]
        assert roles == ["user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in example["messages"])


GOOD = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        ([1, 2], "not_an_object"),
        ({"messages": "hi"}, "missing_messages"),
        ({}, "missing_messages"),
        ({**GOOD, "extra": 1}, "unknown_key:extra"),
        ({"messages": [{"role": "user", "content": "q"}]}, "no_assistant_message"),
        ({"messages": [{"role": "robot", "content": "q"}, GOOD["messages"][1]]}, "unrecognized_role"),
        ({"messages": [{"role": "user", "content": ""}, GOOD["messages"][1]]}, "empty_content"),
        ({"messages": [GOOD["messages"][0], {"role": "assistant", "content": "  \n"}]}, "empty_content"),
        ({"messages": [{"role": "user", "content": 3}, GOOD["messages"][1]]}, "content_not_a_string"),
        ({"messages": [{"role": "user"}, GOOD["messages"][1]]}, "message_missing_key"),
        (
            {"messages": [{"role": "user", "content": "q", "tone": "x"}, GOOD["messages"][1]]},
            "unknown_message_key:tone",
        ),
        ({"messages": ["q", GOOD["messages"][1]]}, "message_not_an_object"),
        (
            {"messages": [GOOD["messages"][0], {"role": "assistant", "content": "a", "weight": 2}]},
            "bad_weight",
        ),
    ],
)
def test_the_validator_catches_a_corrupted_chat_example(corrupt, problem):
    assert check_openai_chat(GOOD) == []
    assert problem in check_openai_chat(corrupt)


def test_the_other_formats_are_checked_too():
    assert check_example("sharegpt", {"conversations": [{"from": "human", "value": "q"}]}) == [
        "no_assistant_message"
    ]
    assert check_example(
        "sharegpt", {"conversations": [{"from": "bot", "value": "q"}, {"from": "gpt", "value": "a"}]}
    )
    assert check_example("alpaca", {"instruction": "q", "input": "", "output": "a"}) == []
    assert check_example("alpaca", {"instruction": "q", "output": "a"}) == ["missing_key:input"]
    assert check_example("prompt-completion", {"prompt": "q", "completion": ""}) == ["empty_content"]


def test_an_empty_answer_is_not_written_and_counted_as_a_problem(tmp_path, capsysbinary):
    db = tmp_path / "c.db"
    store(db, [make_record("empty", annotation="  "), make_record("fine", annotation=ANSWER)])
    out = tmp_path / "chat.jsonl"
    chat = ["--db", db, "--format", "openai-chat", "-o", out]
    code, _, err = export(*chat, "--include-flagged", capsysbinary=capsysbinary)
    assert code == 0, err
    assert len(read_ndjson(out)) == 1
    assert "format check (openai-chat): 2 examples, 1 with problems (not written): empty_content 1" in err
    # without --include-flagged the cleaning step's too_short keeps it out before the format check
    code, _, err = export(*chat, capsysbinary=capsysbinary)
    assert (code, len(read_ndjson(out))) == (0, 1), err
    assert "flagged by cleaning, left out: answers 1 (too_short 1;" in err


def test_an_answer_in_several_places_is_exported_once_at_its_first_place(tmp_path, capsysbinary):
    twin = make_record("twin", path="z.py", annotation=ANSWER, code="def twin(x):\n    return x * 2\n")
    other = make_record("other", path="other.py", annotation=ANSWER)
    db = tmp_path / "snipstream.db"
    store(db, [twin, elsewhere(twin, "b/a.py", 3), other])  # the same record (code and task) in two files
    code, _, err = export(
        "--db", db, "--format", "jsonl", "-o", tmp_path / "x.jsonl", capsysbinary=capsysbinary
    )
    assert code == 0, err
    rows = read_ndjson(tmp_path / "x.jsonl")
    assert [(r["path"], r["qualname"], r["start_line"]) for r in rows] == [
        ("b/a.py", "twin", 3),
        ("other.py", "other", 1),
    ]
    assert "answers: 2 read (3 places" in err
    code, _, err = export(
        "--db", db, "--format", "sharegpt", "-o", tmp_path / "s.jsonl", capsysbinary=capsysbinary
    )
    assert len(read_ndjson(tmp_path / "s.jsonl")) == 2


def test_truncated_answers_are_left_out_unless_asked_for(ckpt, tmp_path, capsysbinary):
    out = tmp_path / "chat.jsonl"
    code, _, err = export("--db", ckpt, "--format", "openai-chat", "-o", out, capsysbinary=capsysbinary)
    assert "This is cut short" not in out.read_text()
    assert "answers skipped:" in err and "truncated 1" in err
    code, _, err = export(
        "--db", ckpt, "--format", "openai-chat", "-o", out, "--include-truncated", capsysbinary=capsysbinary
    )
    assert code == 0, err
    assert len(read_ndjson(out)) == EXAMPLES + 1
    assert "This is cut short" in out.read_text()


def test_task_selection_and_custom_templates(ckpt, tmp_path, capsysbinary):
    out = tmp_path / "qa.jsonl"
    code, _, err = export(
        "--db", ckpt, "--format", "alpaca", "-o", out, "--task", "qa", capsysbinary=capsysbinary
    )
    assert code == 0, err
    assert [r["output"] for r in read_ndjson(out)] == ["An int.", "int() raises ValueError."]
    assert "task_not_selected" in err
    # a custom template is left out by default (its prompt is unknown) and exported when named
    chat = ["--db", ckpt, "--format", "openai-chat", "-o", out]
    code, _, err = export(*chat, "--task", "brief", "nosuch", capsysbinary=capsysbinary)
    assert code == 0, err
    ((user, assistant),) = [[m["content"] for m in r["messages"]] for r in read_ndjson(out)]
    assert user.startswith("Explain the Python function `review_me` from `pkg/custom.py`: what it does")
    assert assistant == REVIEW
    assert "note: --task nosuch matched no answer" in err
    # a fingerprint prefix selects one task
    prefix = stored_line(ckpt, "plain")["task"]["fingerprint"][:8]
    code, _, err = export(
        "--db", ckpt, "--format", "jsonl", "-o", out, "--task", prefix, capsysbinary=capsysbinary
    )
    assert len(read_ndjson(out)) == 13


def test_split_keeps_each_file_in_one_split_with_the_ratio(tmp_path, capsysbinary):
    db = tmp_path / "many.db"
    records = []
    for i in range(1000):
        for j in range(3):  # three answers per file
            records.append(
                make_record(
                    f"f{j}",
                    path=f"src/m{i}.py",
                    code=f"def f{j}(x):\n    return x + {i}\n",
                    annotation=ANSWER,
                )
            )
    store(db, records)
    out = tmp_path / "data.jsonl"
    code, _, err = export(
        "--db", db, "--format", "openai-chat", "-o", out, "--split", "0.9/0.1", capsysbinary=capsysbinary
    )
    assert code == 0, err
    assert not out.exists()
    train, valid = read_ndjson(tmp_path / "data.train.jsonl"), read_ndjson(tmp_path / "data.valid.jsonl")

    def files(rows: list[dict[str, Any]]) -> Counter[str]:
        return Counter(r["messages"][0]["content"].split("`")[3] for r in rows)

    in_train, in_valid = files(train), files(valid)
    assert not set(in_train) & set(in_valid), "no file in both splits"
    assert set(in_train.values()) == set(in_valid.values()) == {3}, "a file's answers stay together"
    assert len(in_train) + len(in_valid) == 1000
    assert 0.06 <= len(in_valid) / 1000 <= 0.14
    assert f"train {len(train):,} → {tmp_path / 'data.train.jsonl'}, valid {len(valid):,} →" in err
    # the same export again puts every file in the same split
    export("--db", db, "--format", "openai-chat", "-o", out, "--split", "90/10", capsysbinary=capsysbinary)
    assert read_ndjson(tmp_path / "data.valid.jsonl") == valid


def test_split_assignment_is_stable_and_named():
    # pinned: a change here would move files between splits of every existing dataset
    assert [split_of(f"src/m{i}.py", (0.5, 0.5)) for i in range(8)] == [1, 0, 0, 0, 1, 1, 1, 1]
    assert split_of("x.py", (0.999999, 0.000001)) == 0
    assert parse_split("0.9/0.1") == pytest.approx((0.9, 0.1))
    assert parse_split("80/10/10") == pytest.approx((0.8, 0.1, 0.1))
    assert split_targets("out/data.jsonl", 3) == [
        Path("out/data.train.jsonl"),
        Path("out/data.valid.jsonl"),
        Path("out/data.test.jsonl"),
    ]
    assert split_targets("data", 2) == [Path("data.train.jsonl"), Path("data.valid.jsonl")]


def test_split_of_is_the_documented_hash():
    import hashlib

    point = int.from_bytes(hashlib.blake2b(b"pkg/shapes.py", digest_size=8).digest(), "big") / 2**64
    assert split_of("pkg/shapes.py", (0.5, 0.5)) == (0 if point < 0.5 else 1)


@pytest.mark.parametrize("bad", ["0.9", "0.9/0.2", "a/b", "1/0", "-0.1/1.1", "0.5/0.3/0.1/0.1"])
def test_bad_split_is_a_usage_error(ckpt, tmp_path, capsysbinary, bad):
    with pytest.raises(SystemExit) as exc:
        export(
            "--db",
            ckpt,
            "--format",
            "alpaca",
            "-o",
            tmp_path / "x.jsonl",
            "--split",
            bad,
            capsysbinary=capsysbinary,
        )
    assert exc.value.code == 2
    assert "--split" in capsysbinary.readouterr().err.decode()


def test_usage_errors_exit_2_and_write_nothing(ckpt, tmp_path, capsysbinary):
    code, out, err = export(
        "--db",
        tmp_path / "none.db",
        "--format",
        "alpaca",
        "-o",
        tmp_path / "x.jsonl",
        capsysbinary=capsysbinary,
    )
    assert (code, out) == (2, b"") and "no checkpoint at" in err
    (tmp_path / "junk.db").write_text("not sqlite at all, just text" * 100)
    code, out, err = export(
        "--db",
        tmp_path / "junk.db",
        "--format",
        "alpaca",
        "-o",
        tmp_path / "x.jsonl",
        capsysbinary=capsysbinary,
    )
    assert code == 2 and "junk.db" in err
    code, out, err = export(
        "--db", ckpt, "--format", "alpaca", "-o", "-", "--split", "0.9/0.1", capsysbinary=capsysbinary
    )
    assert code == 2 and "-o FILE" in err
    assert not (tmp_path / "x.jsonl").exists()


def test_unwritable_output_exits_3_and_leaves_no_temporary_file(ckpt, tmp_path, capsysbinary):
    taken = tmp_path / "taken.jsonl"
    taken.mkdir()  # a folder where the file should go: the final rename fails, as root too
    code, _, err = export("--db", ckpt, "--format", "alpaca", "-o", taken, capsysbinary=capsysbinary)
    assert code == 3 and f"cannot write {taken}: Is a directory" in err
    assert ".tmp" not in err, "the error names the file asked for, not the temporary one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.jsonl"], "no temporary file left"
    # a device is written in place, never renamed over (that would replace /dev/full itself)
    code, _, err = export("--db", ckpt, "--format", "alpaca", "-o", "/dev/full", capsysbinary=capsysbinary)
    assert code == 3 and "cannot write /dev/full" in err
    assert Path("/dev/full").is_char_device()
    assert not list(Path("/dev").glob(".full.*.tmp"))


def test_a_failed_export_leaves_the_previous_file_whole(ckpt, tmp_path, capsysbinary, monkeypatch):
    out = tmp_path / "chat.jsonl"
    out.write_text("previous\n")

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_mod.files.os, "replace", fail)
    code, _, err = export("--db", ckpt, "--format", "openai-chat", "-o", out, capsysbinary=capsysbinary)
    assert code == 3 and "No space left on device" in err
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.jsonl"], "no temporary file left"


def test_stdout_gets_only_the_examples(ckpt, capsysbinary):
    code, out, err = export("--db", ckpt, "--format", "sharegpt", "-o", "-", capsysbinary=capsysbinary)
    assert code == 0, err
    assert len(out.splitlines()) == EXAMPLES
    assert all("conversations" in orjson.loads(line) for line in out.splitlines())
    assert "examples written: all" in err


def test_long_examples_are_dropped_and_lengths_reported(ckpt, tmp_path, capsysbinary):
    out = tmp_path / "chat.jsonl"
    chat = ["--db", ckpt, "--format", "openai-chat", "-o", out]
    code, _, err = export(*chat, "--max-example-tokens", "60", capsysbinary=capsysbinary)
    assert code == 0, err
    written = len(read_ndjson(out))
    (stats,) = [line for line in err.splitlines() if line.startswith("tokens per example")]
    dropped = int(stats.split("; ")[1].split()[0])
    assert dropped > 0 and written + dropped == EXAMPLES
    assert "over --max-example-tokens 60, dropped" in stats
    assert all(f" {key} " in stats for key in ("min", "mean", "p95", "max"))


def test_export_reads_while_a_run_holds_the_checkpoint(ckpt, tmp_path, capsysbinary):
    with checkpoint_held(ckpt):
        out = tmp_path / "chat.jsonl"
        code, _, err = export("--db", ckpt, "--format", "openai-chat", "-o", out, capsysbinary=capsysbinary)
        assert code == 0, err
        assert len(read_ndjson(out)) == EXAMPLES


def test_datasets_loads_every_format(ckpt, tmp_path, capsysbinary, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    datasets = pytest.importorskip("datasets")
    columns = {
        "openai-chat": {"messages"},
        "sharegpt": {"conversations"},
        "alpaca": {"instruction", "input", "output"},
        "prompt-completion": {"prompt", "completion"},
    }
    for fmt in export_mod.FORMATS:
        out = tmp_path / f"{fmt}.jsonl"
        assert export("--db", ckpt, "--format", fmt, "-o", out, capsysbinary=capsysbinary)[0] == 0
        ds = datasets.load_dataset(
            "json", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache")
        )
        assert ds.num_rows == (STORED if fmt == "jsonl" else EXAMPLES), fmt
        if fmt in columns:
            assert set(ds.column_names) == columns[fmt]
        else:
            assert {"record_id", "code", "annotation", "data", "task"} <= set(ds.column_names)
