"""``snipstream ask``: the retrieved snippets in the prompt, the answer streamed, then its sources.

Against the loopback fake server: its embeddings are bag-of-words vectors (texts sharing words are close),
its chat answers `default_reply` of the prompt, and its request log shows what was sent. Checkpoints come
from a real ``run --task annotate,embed`` of the fixture tree, or from `store_embedded`
(tests/test_export_vectors.py) where the snippets must be chosen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import stream.cli.ask as ask_cmd
from stream.ask import SYSTEM, AnswerStream, build_prompt
from stream.search import Hit
from stream.tokens import Tokenizer
from tests.fakeserver import FakeOpenAI, Scripted
from tests.fakeserver.replies import default_reply
from tests.helpers import make_record, run_args, snipstream, store, subcommand
from tests.test_export_vectors import store_embedded

PLUGINS = '''def load_plugins(entry_points):
    """Load every plugin named by its entry point."""
    return [point.load() for point in entry_points]
'''
AREA = "def circle_area(radius):\n    return 3.14159 * radius * radius\n"


def _ask(server: FakeOpenAI, db: Path, question: str, capsys: Any, *extra: str) -> tuple[int, str, str]:
    argv = [question, "--db", db, "--base-url", server.url, "--model", "m", "--backoff", "0.01", *extra]
    code, out, err = subcommand(ask_cmd, "ask", argv, capsys)
    return code, out.decode(), err.decode()


def _chats(server: FakeOpenAI) -> list[Any]:
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


def _user_prompt(req: Any) -> str:
    return next(m["content"] for m in req.body["messages"] if m["role"] == "user")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "ck.db"
    store_embedded(
        path,
        [
            make_record(
                "load_plugins",
                path="pkg/plugins.py",
                start_line=10,
                code=PLUGINS,
                annotation="Imports each plugin module through its entry point.",
            ),
            make_record("circle_area", path="pkg/shapes.py", code=AREA, annotation="The area of a circle."),
        ],
    )
    return path


def test_a_run_then_ask_answers_from_the_function_the_question_names(tmp_path: Path, tree: Path) -> None:
    db = tmp_path / "ck.db"
    with FakeOpenAI(chunks=8) as server:
        done = snipstream(
            *run_args(server, tree, "--task", "annotate,embed", "--db", db, "-o", tmp_path / "o"),
            cwd=tmp_path,
        )
        assert done.code == 0, done.stderr
        server.clear()
        result = snipstream(
            "ask", "fetch a url as bytes", "--db", db, "--base-url", server.url, "--model", "m", cwd=tmp_path
        )
        assert result.code == 0, result.stderr
        (chat,) = _chats(server)
    answer, sources = result.stdout.decode().split("\n\nSources:\n")
    assert answer == default_reply(chat).rstrip("\n")
    places = sources.splitlines()
    assert places[0] == "pkg/shapes.py:17-19"  # fetch, whose code and docstring the question's words are from
    assert len(places) == 8  # -k's default
    prompt = _user_prompt(chat)
    assert 'async def fetch(url: str) -> bytes:\n    """Fetch a URL."""' in prompt
    assert prompt.index("[1] pkg/shapes.py:17-19 fetch") < prompt.index("[2] ")


def test_the_prompt_holds_the_snippets_found_and_the_rules(db: Path, capsysbinary: Any) -> None:
    with FakeOpenAI(chunks=8) as server:
        code, out, err = _ask(server, db, "how are plugins loaded from entry points?", capsysbinary)
        (chat,) = _chats(server)
    assert code == 0, err
    system = chat.body["messages"][0]
    assert system == {"role": "system", "content": SYSTEM}
    assert "sources only" in SYSTEM and "do not hold the answer" in SYSTEM and "path:start-end" in SYSTEM
    prompt = _user_prompt(chat)
    assert "[1] pkg/plugins.py:10-12 load_plugins (python function)\n```python\n" + PLUGINS in prompt
    assert "Explanation: Imports each plugin module through its entry point." in prompt
    assert "[2] pkg/shapes.py:1-2 circle_area" in prompt and AREA in prompt
    assert prompt.endswith("Question: how are plugins loaded from entry points?\n")
    assert chat.body["stream"] is True
    assert out == default_reply(chat) + "\n\nSources:\npkg/plugins.py:10-12\npkg/shapes.py:1-2\n"


def test_the_answer_is_written_piece_by_piece_as_it_streams(db: Path) -> None:
    import anyio

    from stream.ask import ask
    from stream.cli.options import DEFAULTS

    class Recorder:
        def __init__(self) -> None:
            self.writes: list[str] = []

        def write(self, text: str) -> int:
            self.writes.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    out = Recorder()
    with FakeOpenAI(chunks=8) as server:
        from dataclasses import replace

        cfg = replace(DEFAULTS, paths=(".",), db=str(db), base_url=server.url, model="m").resolve()
        answer = anyio.run(lambda: ask(cfg, "load plugins", stream=AnswerStream(out, print)))  # type: ignore[arg-type]
    pieces = [w for w in out.writes if w != "\n"]
    assert len(pieces) >= 8  # one write per streamed piece, not one at the end
    assert "".join(pieces) == answer.text


def test_json_is_one_document_and_nothing_streamed(db: Path, capsysbinary: Any) -> None:
    with FakeOpenAI(chunks=8) as server:
        code, out, err = _ask(server, db, "how are plugins loaded?", capsysbinary, "--json")
        (chat,) = _chats(server)
    assert code == 0, err
    (line,) = out.splitlines()
    doc = orjson.loads(line)
    assert set(doc) == {"question", "answer", "sources", "model", "usage"}
    assert doc["question"] == "how are plugins loaded?"
    assert doc["answer"] == default_reply(chat)
    assert doc["model"] == "m"
    assert doc["usage"]["completion_tokens"] > 0
    first = doc["sources"][0]
    assert {k: first[k] for k in ("path", "start_line", "end_line", "qualname")} == {
        "path": "pkg/plugins.py",
        "start_line": 10,
        "end_line": 12,
        "qualname": "load_plugins",
    }
    assert first["score"] > doc["sources"][1]["score"]


@pytest.mark.parametrize("vectors", [False, True], ids=["no checkpoint", "no vectors"])
def test_nothing_to_search_says_what_to_run_first(vectors: bool, tmp_path: Path, capsysbinary: Any) -> None:
    db = tmp_path / "ck.db"
    if vectors:
        store(db, [make_record("plain")])  # annotations, no vectors
    with FakeOpenAI() as server:
        code, out, err = _ask(server, db, "anything?", capsysbinary)
        assert server.requests == []
    assert code == 2 and out == ""
    assert "snipstream run --task embed" in err


def test_sources_over_the_budget_are_left_out(tmp_path: Path, capsysbinary: Any) -> None:
    db = tmp_path / "ck.db"
    big = "def load_everything():\n" + "".join(f"    step_{i} = plugin_{i}()\n" for i in range(600))
    store_embedded(
        db,
        [
            make_record("load_plugins", path="pkg/plugins.py", code=PLUGINS),
            make_record("load_everything", path="pkg/big.py", code=big),
        ],
    )
    with FakeOpenAI(chunks=8) as server:
        code, out, err = _ask(
            server, db, "load plugins entry points", capsysbinary, "--context-budget", "1000"
        )
        (chat,) = _chats(server)
    assert code == 0, err
    assert "1 of the 2 snippets found did not fit --context-budget 1000" in err
    assert "load_everything" not in _user_prompt(chat) and PLUGINS in _user_prompt(chat)
    assert out.endswith("\n\nSources:\npkg/plugins.py:1-3\n")


def test_a_budget_that_holds_no_source_asks_nothing(db: Path, capsysbinary: Any) -> None:
    with FakeOpenAI() as server:
        code, _, err = _ask(server, db, "load plugins", capsysbinary, "--context-budget", "100")
        assert _chats(server) == []
    assert code == 2 and "--context-budget 100 holds none of the 2 snippets" in err


def test_a_lower_ranked_source_that_fits_is_still_given() -> None:
    words = Tokenizer("words", lambda text: len(text.split()))

    def hit(name: str, code: str) -> Hit:
        return Hit(name, 0.5, f"{name}.py", name, "function", "python", 1, 2, code, None)

    hits = [hit("a", "def a(): pass"), hit("b", "x " * 500), hit("c", "def c(): pass")]
    prompt = build_prompt("why?", hits, 200, words)
    assert [h.qualname for h in prompt.sources] == ["a", "c"]
    assert prompt.left_out == 1
    assert "[2] c.py:1-2 c" in prompt.user  # numbered as given
    assert prompt.tokens <= 200


def test_a_retry_after_part_of_the_answer_starts_it_over(db: Path, capsysbinary: Any) -> None:
    with FakeOpenAI(chunks=8) as server:
        server.script(Scripted(), Scripted(cut_after_chunks=3))  # the query's embedding, then the chat
        code, out, err = _ask(server, db, "load plugins", capsysbinary)
        chats = _chats(server)
    assert code == 0, err
    assert len(chats) == 2
    full = default_reply(chats[1])
    assert "the answer broke off after" in err and "starts over below" in err
    partial, rest = out.split("\n", 1)
    assert partial and full.startswith(partial) and partial != full
    assert rest == full + "\n\nSources:\npkg/plugins.py:10-12\npkg/shapes.py:1-2\n"


def test_an_answer_that_cannot_be_had_ends_with_the_error_and_no_sources(db: Path, capsysbinary: Any) -> None:
    with FakeOpenAI(chunks=8) as server:
        server.script(Scripted(), Scripted(cut_after_chunks=3))
        code, out, err = _ask(server, db, "load plugins", capsysbinary, "--max-attempts", "1")
    assert code == 3
    assert out and out.endswith("\n") and "Sources:" not in out  # the partial answer's line ended
    assert "snipstream: StreamError:" in err
