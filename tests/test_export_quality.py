"""The export's quality filters: the cleaning step's flags (stored in ``records.flags``, or checked at export
for answers from before cleaning), the judge's ``records.score`` with --min-score, and answers trimmed."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from stream.cli import export as export_cmd
from tests.helpers import make_record, read_ndjson, store, subcommand

GOOD = "It parses the text as a base-ten integer and returns it."


def export(*argv: str | Path, capsysbinary: pytest.CaptureFixture[bytes]) -> tuple[int, str]:
    code, _, err = subcommand(export_cmd, "export", argv, capsysbinary)
    return code, err.decode()


def rec(name: str, annotation: str, **kw: Any) -> dict[str, Any]:
    return make_record(name, path=f"pkg/{name}.py", annotation=annotation, **kw)


def set_quality(db: Path, rows: dict[str, tuple[str | None, int | None]]) -> None:
    """records.flags and records.score by record id, as the cleaning step and the judge store them."""
    with sqlite3.connect(db) as conn:
        for rid, (flags, score) in rows.items():
            conn.execute("UPDATE records SET flags = ?, score = ? WHERE record_id = ?", (flags, score, rid))


def answers(path: Path) -> list[str]:
    return [r["messages"][-1]["content"] for r in read_ndjson(path)]


def test_flagged_answers_are_left_out_unless_asked_for(tmp_path, capsysbinary):
    db = tmp_path / "c.db"
    stored_bad = rec(
        "loop", "It loops. It loops. It loops. It loops over the list and returns the list again."
    )
    stored_clean = rec("parse", GOOD)
    # answered before cleaning existed (flags NULL): checked at export with stream.clean
    legacy = [
        rec("lost", "It returns the value \ufffd of the key, or None when the key is missing."),
        rec("nul", "It returns the value\x00 of the key, or None when the key is missing."),
        rec("short", "Returns x."),
        rec("refuse", "I'm sorry, but I can't help with explaining this function to you."),
        rec("fine", "It returns the value of the key, or None when the key is missing."),
    ]
    store(db, [stored_bad, stored_clean, *legacy])
    set_quality(
        db, {stored_bad["record_id"]: ('["repetitive"]', None), stored_clean["record_id"]: ("[]", None)}
    )
    out = tmp_path / "chat.jsonl"
    code, err = export("--db", db, "--format", "openai-chat", "-o", out, capsysbinary=capsysbinary)
    assert code == 0, err
    assert sorted(answers(out)) == sorted([GOOD, legacy[-1]["annotation"]])
    assert "answers skipped: flagged 5" in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("flagged by cleaning")]
    for reason in ("repetitive 1", "replacement_char 1", "control_chars 1", "too_short 1", "refusal 1"):
        assert reason in line
    assert "5 answers from before cleaning were checked now" in err
    code, err = export(
        "--db", db, "--format", "openai-chat", "-o", out, "--include-flagged", capsysbinary=capsysbinary
    )
    assert code == 0 and len(answers(out)) == 7, err
    # the records as stored (jsonl) go through the same filter
    code, err = export("--db", db, "--format", "jsonl", "-o", out, capsysbinary=capsysbinary)
    assert code == 0 and {r["qualname"] for r in read_ndjson(out)} == {"parse", "fine"}


def test_min_score_leaves_out_low_and_unjudged_answers(tmp_path, capsysbinary):
    db = tmp_path / "c.db"
    scored = {name: rec(name, f"{GOOD} ({name})") for name in ("five", "four", "three", "unjudged")}
    store(db, list(scored.values()))
    set_quality(db, {scored[n]["record_id"]: ("[]", s) for n, s in (("five", 5), ("four", 4), ("three", 3))})
    out = tmp_path / "chat.jsonl"
    code, err = export(
        "--db", db, "--format", "openai-chat", "-o", out, "--min-score", "4", capsysbinary=capsysbinary
    )
    assert code == 0, err
    assert sorted(answers(out)) == [f"{GOOD} (five)", f"{GOOD} (four)"]
    assert "score_below_4 1" in err and "not_judged 1" in err
    code, err = export(
        "--db", db, "--format", "openai-chat", "-o", out, "--min-score", "6", capsysbinary=capsysbinary
    )
    assert code == 2 and "--min-score takes a judge's score, 1 to 5" in err


def test_answers_are_trimmed_on_export(tmp_path, capsysbinary):
    db = tmp_path / "c.db"
    store(db, [rec("parse", f"\n\n  {GOOD}  \n\t")])
    for fmt, field in (("openai-chat", None), ("alpaca", "output"), ("prompt-completion", "completion")):
        out = tmp_path / f"{fmt}.jsonl"
        code, err = export("--db", db, "--format", fmt, "-o", out, capsysbinary=capsysbinary)
        assert code == 0, err
        (row,) = read_ndjson(out)
        assert (row["messages"][-1]["content"] if field is None else row[field]) == GOOD
        assert "answers trimmed of surrounding whitespace: 1" in err
    code, err = export(
        "--db", db, "--format", "jsonl", "-o", tmp_path / "as-stored.jsonl", capsysbinary=capsysbinary
    )
    assert read_ndjson(tmp_path / "as-stored.jsonl")[0]["annotation"] == f"\n\n  {GOOD}  \n\t", (
        "jsonl: as stored"
    )


def test_a_checkpoint_from_before_the_quality_columns_is_checked_at_export(tmp_path, capsysbinary):
    db = tmp_path / "old.db"
    store(db, [rec("parse", GOOD), rec("short", "Returns x.")])
    with sqlite3.connect(db) as conn:  # as a checkpoint last written by a version without migration 0004
        conn.execute("ALTER TABLE records DROP COLUMN flags")
        conn.execute("ALTER TABLE records DROP COLUMN score")
    out = tmp_path / "chat.jsonl"
    code, err = export("--db", db, "--format", "openai-chat", "-o", out, capsysbinary=capsysbinary)
    assert code == 0, err
    assert answers(out) == [GOOD]
    assert "flagged by cleaning, left out: answers 1 (too_short 1;" in err
    code, err = export(
        "--db", db, "--format", "openai-chat", "-o", out, "--min-score", "1", capsysbinary=capsysbinary
    )
    assert code == 1 and "not_judged 1" in err
