"""The cleaning step: each defect marked with its reason, by `stream.clean` alone and end to end (a run
against the fake server's answers with defects: the NDJSON, ``records.flags`` and ``snipstream status``)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from stream.clean import MIN_WORDS, REASONS, flags, flags_of_data
from tests.fakeserver import FakeOpenAI
from tests.fakeserver.replies import DEFECTS, defect_reply
from tests.helpers import db_rows, read_ndjson, run_args, snipstream

CODE = 'def area(self):\n    """The area in square units."""\n    return self.width * self.height\n'
PROMPT = f"Please annotate the following Python code snippet:\n{CODE}\n"
GOOD = (
    "`area` multiplies the rectangle's `width` by its `height` and returns the product, the area in "
    "square units. It reads both attributes on every call, so a resized shape reports its new area."
)


# --- the reasons, one by one ---------------------------------------------------------------------------------


def test_a_good_answer_is_clean() -> None:
    assert flags(GOOD, prompt=PROMPT) == []
    assert flags("Gibt die Fläche zurück: Breite mal Höhe, in Quadrateinheiten.", prompt=PROMPT) == []
    # scripts without spaces count a word per character: a sentence is not "too short"
    assert flags("这个方法返回矩形的面积，即宽度乘以高度。", prompt=PROMPT) == []


def test_replacement_character() -> None:
    assert flags(GOOD.replace("product", "produ\ufffd\ufffdt")) == ["replacement_char"]


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9f"])
def test_control_characters_but_not_newlines_or_tabs(char: str) -> None:
    assert flags(GOOD + char + " more text.") == ["control_chars"]
    assert flags(GOOD.replace(" ", "\t", 2) + "\r\n\nAnd a new paragraph.") == []


def test_too_short() -> None:
    assert flags("Returns the area.") == ["too_short"]
    assert flags("   ") == ["too_short"]
    assert flags("word " * MIN_WORDS) == []


def test_repetitive_words_and_repeated_lines() -> None:
    assert flags("The method returns the area of the shape. " * 8) == ["repetitive"]
    lines = "\n".join(["- It returns the area of the shape."] * 3 + ["- It reads width and height."] * 2)
    assert flags(lines) == ["repetitive"]
    # short repeated lines (braces of a code block) do not make an answer repetitive
    code = "It loops:\n```\nfor x in xs {\n    if x {\n        y()\n    }\n}\n```\nand stops at the end."
    assert "repetitive" not in flags(code)


def test_echoes_the_prompt() -> None:
    echo = CODE.replace("\n", " ")
    assert flags(echo, prompt=PROMPT) == ["echoes_prompt"]
    assert flags(echo) == []  # without the prompt there is nothing to compare
    # quoting a line of the code inside a real explanation is no echo
    assert flags(f"{GOOD} The body is `return self.width * self.height`.", prompt=PROMPT) == []


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that.",
        "I\u2019m sorry, but I cannot provide an annotation for this code snippet.",
        "Sorry, I can't assist with that request.",
        "I cannot help with this request because it looks like it contains credentials.",
        "As an AI language model, I do not have enough context to annotate this code properly.",
        "I apologize, but the snippet you gave is incomplete and I will not guess what it does.",
    ],
)
def test_refusals(text: str) -> None:
    assert "refusal" in flags(text)


def test_a_late_apology_is_no_refusal() -> None:
    assert flags(GOOD + " I'm sorry that I can't say more without the rest of the class.") == []


def test_several_reasons_come_in_the_fixed_order() -> None:
    text = "Sorry, I can't \ufffd\x00"
    assert flags(text) == ["replacement_char", "control_chars", "too_short", "refusal"]
    assert set(DEFECTS) == set(REASONS)  # the fake server can give every reason's defect


def test_structured_answers_are_checked_field_by_field() -> None:
    assert flags_of_data({"docstring": GOOD}, prompt=PROMPT) == []
    qa = {"pairs": [{"question": "What does area return?", "answer": "As an AI, I cannot know that."}]}
    assert flags_of_data(qa) == ["refusal"]
    # length is judged on the fields together: short fields of a long record are not too short
    assert flags_of_data({"questions": ["Why?", "How so?", "What for?"], "summary": "Shapes."}) == []
    assert flags_of_data({"docstring": "Area."}) == ["too_short"]
    assert flags_of_data({"summary": ""}) == ["too_short"]


def test_fast_enough_for_every_record() -> None:
    answer = GOOD * 40  # ~1,400 words
    prompt = PROMPT * 60
    start = time.perf_counter()
    for _ in range(100):
        flags(answer, prompt=prompt)
    per_answer = (time.perf_counter() - start) / 100
    assert per_answer < 0.025, f"{per_answer * 1000:.1f} ms per answer"  # (about 3 ms measured)


# --- end to end ----------------------------------------------------------------------------------------------


def _defect_tree(root: Path) -> Path:
    """One file per defect (so no prompt's context names another's function), and a clean function."""
    root.mkdir(parents=True)
    for defect in DEFECTS:
        (root / f"{defect}.py").write_text(
            f"def defect_{defect}(items):\n    total = sum(items)\n    return total\n"
        )
    (root / "fine.py").write_text("def fine(a, b):\n    total = a + b\n    return total\n")
    return root


def test_each_defect_is_marked_in_the_records_the_checkpoint_and_status(tmp_path: Path) -> None:
    tree = _defect_tree(tmp_path / "project")
    out, db = tmp_path / "out.ndjson", tmp_path / "s.db"
    with FakeOpenAI(chunks=8, reply=defect_reply) as server:
        r = snipstream(*run_args(server, tree, "-o", out, "--db", db), cwd=tmp_path)
    assert r.code == 0, r.stderr
    flagged = next(ln for ln in r.stderr.splitlines() if ln.startswith("flagged by cleaning: "))
    assert all(f"{d} 1" in flagged for d in DEFECTS), flagged  # the run's summary says so too
    records = {rec["qualname"]: rec for rec in read_ndjson(out)}
    expected = {f"defect_{d}": [d] for d in DEFECTS} | {"fine": []}
    assert {name: rec["flags"] for name, rec in records.items()} == expected
    assert "\x00" in records["defect_control_chars"]["annotation"]  # kept as answered: only marked
    stored = dict(db_rows(db, "SELECT record_id, flags FROM records WHERE status = 'done'"))
    assert {rid: orjson.loads(f) for rid, f in stored.items()} == {
        rec["record_id"]: rec["flags"] for rec in records.values()
    }
    assert stored[records["fine"]["record_id"]] == "[]"

    report = snipstream("status", "--db", db, "--json", cwd=tmp_path)
    assert report.code == 0, report.stderr
    quality = orjson.loads(report.stdout)["quality"]
    assert quality["checked"] == len(DEFECTS) + 1 and quality["flagged"] == len(DEFECTS)
    assert quality["flags"] == dict.fromkeys(DEFECTS, 1)
    text = snipstream("status", "--db", db, cwd=tmp_path)
    line = next(ln for ln in (text.stdout.decode() + text.stderr).splitlines() if ln.startswith("cleaning:"))
    assert line.startswith(f"cleaning: {len(DEFECTS) + 1} answers checked, {len(DEFECTS)} flagged: ")
    assert all(f"{d} 1" in line for d in DEFECTS), line


def test_structured_answers_are_marked_by_their_fields(tmp_path: Path) -> None:
    tree = tmp_path / "project"
    tree.mkdir()
    (tree / "a.py").write_text("def refusing(x):\n    return x\n")

    def reply(req):  # the docstring task's JSON, with a refusal in its one field
        return orjson.dumps({"docstring": "I'm sorry, but I can't help with that."}).decode()

    out, db = tmp_path / "out.ndjson", tmp_path / "s.db"
    with FakeOpenAI(chunks=4, reply=reply) as server:
        r = snipstream(*run_args(server, tree, "-o", out, "--db", db, "--task", "docstring"), cwd=tmp_path)
    assert r.code == 0, r.stderr
    (rec,) = read_ndjson(out)
    assert rec["data"] == {"docstring": "I'm sorry, but I can't help with that."}
    assert rec["flags"] == ["refusal"]
    assert db_rows(db, "SELECT flags FROM records") == [('["refusal"]',)]


def test_status_reads_a_checkpoint_from_before_cleaning(tmp_path: Path) -> None:
    """A checkpoint last written before migration 0004 (status never migrates): nothing checked, no error."""
    import sqlite3

    from sinks.schema import MIGRATIONS, statements

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL)")
        for name, sql in MIGRATIONS:
            if name == "0004_quality":
                break
            for statement in statements(sql):
                conn.execute(statement)
        conn.execute(
            "INSERT INTO records (record_id, snippet_id, task, model, status, result, attempts, updated_at) "
            "VALUES ('r', 's', 't', 'm', 'done', ?, 1, 0)",
            (orjson.dumps({"annotation": "About f."}),),
        )
    conn.close()
    report = snipstream("status", "--db", db, "--json", cwd=tmp_path)
    assert report.code == 0, report.stderr
    quality = orjson.loads(report.stdout)["quality"]
    assert (quality["checked"], quality["judged"], quality["unjudged"]) == (0, 0, 1)
    text = snipstream("status", "--db", db, cwd=tmp_path)
    assert "cleaning: no answer checked yet" in text.stderr + text.stdout.decode()


def test_the_fast_word_cut_of_ascii_prompts_gives_the_same_words() -> None:
    """`_echoes` cuts an ASCII prompt with str.translate; it must find exactly `_WORD`'s words."""
    from stream.clean import _NOT_WORD, _WORD

    root = Path(__file__).resolve().parent.parent
    texts = [
        p.read_text().encode("ascii", "ignore").decode().lower() for p in sorted(root.glob("stream/*.py"))
    ]
    assert len(texts) > 10
    for text in texts:
        assert text.translate(_NOT_WORD).split() == _WORD.findall(text)
