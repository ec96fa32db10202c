"""``snipstream search``: the nearest snippets by the checkpoint's vectors (stream.search, sinks.vectors).

Checkpoints are built through `sinks.checkpoint.Checkpoint` with vectors from the fake server's `embed()`
(bag-of-words: texts sharing words are close), and the query is embedded by the same fake server over HTTP,
so a query made of one function's words must find that function first. Both engines (the sqlite-vec index
and the exact numpy scan) are run on the same checkpoints and must agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import orjson
import pytest

from sinks.vectors import MAX_K, index_name, open_store
from stream.cli import search as search_cli
from stream.config import Config
from stream.embeddings import to_bytes
from stream.errors import APIConnectionError, ConfigError
from stream.search import EMBED_FIRST, Found, search
from tests.fakeserver import FakeOpenAI
from tests.fakeserver.embeddings import embed, embedding_inputs
from tests.helpers import db_rows, snipstream, store, subcommand

MODEL = "text-embedding-3-small"
DIMS = 64  # small vectors: the fake server answers any size up to its native one when asked
ENGINES = ("sqlite-vec", "exact")


@dataclass(frozen=True)
class Place:
    path: str
    qualname: str
    code: str
    annotation: str | None = None
    start_line: int = 1


PLACES = [
    Place(
        "pkg/plugins.py",
        "load_plugins",
        'def load_plugins(group):\n    """Import every entry point of the group and register it."""\n'
        "    for entry in entry_points(group=group):\n        registry[entry.name] = entry.load()\n",
        "Loads the plugins: imports each entry point of a group\nand puts it in the registry.\nThird line.\n"
        "Fourth line, not shown.",
        start_line=10,
    ),
    Place(
        "pkg/http.py",
        "parse_headers",
        "def parse_headers(raw):\n    return dict(line.split(': ', 1) for line in raw.splitlines())\n",
        "Parses raw HTTP header lines into a dictionary.",
    ),
    Place(
        "pkg/retry.py",
        "backoff_delay",
        "def backoff_delay(attempt, base):\n    return base * 2 ** attempt * random.uniform(0.5, 1.5)\n",
        "The exponential back-off delay with jitter before another attempt.",
    ),
    Place("pkg/shapes.py", "Circle.area", "def area(self):\n    return math.pi * self.radius ** 2\n"),
    Place(
        "pkg/writer.py",
        "commit_batch",
        "def commit_batch(db, rows):\n    with db.transaction():\n        db.insert_many(rows)\n",
        "Commits a batch of rows in one transaction before anything is written.",
    ),
]


def _text(place: Place) -> str:
    """What `--embed-text both` embeds: the annotation, a blank line, the code (stream.embeddings.text_of)."""
    return f"{place.annotation}\n\n{place.code}" if place.annotation else place.code


def _line(place: Place, record_id: str) -> bytes:
    end = place.start_line + place.code.count("\n") - 1
    return orjson.dumps(
        {"record_id": record_id, "path": place.path, "language": "python", "kind": "function",
         "qualname": place.qualname, "start_line": place.start_line, "end_line": end, "code": place.code}
    ) + b"\n"  # fmt: skip


def commit(db: Path, places: Sequence[Place], *, model: str = MODEL, dims: int = DIMS) -> dict[str, str]:
    """Commit each place's embed record (and its annotate record, when it has an annotation) with the fake
    server's vector of its text, in one transaction; returns qualname → embed record id."""
    from sinks.checkpoint import Checkpoint
    from sinks.schema import Done, Occurrence, Vector
    from stream.model import stable_hash

    done, ids = [], {}
    for p in places:
        sid = stable_hash("snippet", p.code)
        note_id = None
        if p.annotation is not None:
            note_id = stable_hash(sid, "annotate")
            result = orjson.dumps({"task": {"template": "annotate"}, "annotation": p.annotation})
            occ = Occurrence(stable_hash(note_id, p.path, p.qualname), p.path, p.qualname, _line(p, note_id))
            done.append(Done(note_id, sid, "annotate-fp", "chat-model", result, 1, [occ]))
        rid = stable_hash(sid, "embed", model, str(dims))
        result = orjson.dumps(
            {"task": {"template": "embed"}, "embedding": {"model": model, "dimensions": dims, "text": "both",
             "annotation_id": note_id}, "response": {"usage": {"prompt_tokens": 5, "total_tokens": 5}}}
        )  # fmt: skip
        vector = Vector(model, dims, to_bytes(embed(_text(p), dims)), note_id)
        occ = Occurrence(stable_hash(rid, p.path, p.qualname), p.path, p.qualname, _line(p, rid))
        done.append(Done(rid, sid, "embed-fp", model, result, 1, [occ], vector=vector))
        ids[p.qualname] = rid

    async def main() -> None:
        async with Checkpoint(db) as ckpt:
            await ckpt.commit(done, [], [], None)

    anyio.run(main)
    return ids


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    db = tmp_path / "ckpt.db"
    return db, commit(db, PLACES)


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as srv:
        yield srv


def config(server: FakeOpenAI, db: Path, **options: object) -> Config:
    return Config(("src",), base_url=server.url, db=str(db), backoff=0.01, **options).resolve(env={})  # type: ignore[arg-type]


def find(cfg: Config, query: str, k: int = 10, *, exact: bool = False) -> Found:
    return anyio.run(lambda: search(cfg, query, k, exact=exact))


def embedding_requests(server: FakeOpenAI) -> list[dict]:
    return [r.body for r in server.requests if r.path.endswith("/embeddings") and r.body is not None]


# --- what is found ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_a_query_of_one_functions_words_finds_it_first(checkpoint, server, engine) -> None:
    db, ids = checkpoint
    cfg = config(server, db, dimensions=DIMS)
    found = find(cfg, "how are plugins loaded from the entry points of a group", exact=engine == "exact")
    assert found.index == engine and (found.model, found.dimensions) == (MODEL, DIMS)
    top = found.hits[0]
    assert (top.record_id, top.path, top.qualname) == (ids["load_plugins"], "pkg/plugins.py", "load_plugins")
    assert (top.start_line, top.end_line, top.kind, top.language) == (10, 13, "function", "python")
    assert top.code == PLACES[0].code and top.annotation == PLACES[0].annotation
    assert 0 < top.score <= 1 and all(h.score < top.score for h in found.hits[1:])
    assert found.hits[1].score >= found.hits[-1].score
    assert next(h for h in found.hits if h.qualname == "Circle.area").annotation is None  # the code alone
    # the question went out once, alone, with the checkpoint's model and size
    (body,) = embedding_requests(server)
    assert embedding_inputs(body) == ["how are plugins loaded from the entry points of a group"]
    assert body["model"] == MODEL and found.query_tokens == 11


@pytest.mark.parametrize(
    "query", ["transaction commit batch rows", "jitter exponential attempt", "math pi radius"]
)
def test_the_exact_scan_gives_the_index_hits_in_the_same_order(checkpoint, server, query) -> None:
    db, _ = checkpoint
    cfg = config(server, db)
    index, exact = find(cfg, query, len(PLACES)), find(cfg, query, len(PLACES), exact=True)
    assert (index.index, exact.index) == ("sqlite-vec", "exact") and exact.fallback == "asked for"
    assert [h.record_id for h in index.hits] == [h.record_id for h in exact.hits]
    assert [h.score for h in index.hits] == pytest.approx([h.score for h in exact.hits], abs=1e-5)
    assert index.hits[0].qualname == {"t": "commit_batch", "j": "backoff_delay", "m": "Circle.area"}[query[0]]


def test_ties_are_broken_alike_by_both_engines(tmp_path, server) -> None:
    db = tmp_path / "ckpt.db"
    codes = [
        "def f(x, y):\n    return x + y\n",
        "def f(y, x):\n    return y + x\n",
        "def f(x, y):\n    return y + x\n",
    ]
    twins = [Place(f"pkg/twin{i}.py", "f", code) for i, code in enumerate(codes)]
    ids = [commit(db, [twin])["f"] for twin in twins]  # the same words, so the same vector thrice
    cfg = config(server, db, dimensions=DIMS)
    for k in (1, 2, 3):
        index, exact = find(cfg, "f of x and y", k), find(cfg, "f of x and y", k, exact=True)
        assert (
            [h.record_id for h in index.hits] == [h.record_id for h in exact.hits] == ids[:k]
        )  # oldest first
        assert len({h.score for h in index.hits}) == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_after_an_edit_only_the_newer_record_at_the_place_is_found(checkpoint, server, engine) -> None:
    db, ids = checkpoint
    cfg = config(server, db)
    find(cfg, "anything", exact=engine == "exact")  # (the index is built before the edit)
    edited = Place("pkg/http.py", "parse_headers", "def parse_headers(raw):\n    return email.parser.parse(raw)\n",
                   "Parses the raw message with the email parser of the standard library.")  # fmt: skip
    new = commit(db, [edited])["parse_headers"]
    found = find(cfg, "parse raw http header lines dictionary", len(PLACES), exact=engine == "exact")
    assert len(found.hits) == len(PLACES)  # one vector per place: the old one is not current any more
    assert ids["parse_headers"] not in {h.record_id for h in found.hits}
    top = find(cfg, "email parser standard library message", exact=engine == "exact").hits[0]
    assert (top.record_id, top.code, top.annotation) == (new, edited.code, edited.annotation)


def test_k_is_how_many_hits_at_most(checkpoint, server) -> None:
    db, _ = checkpoint
    cfg = config(server, db)
    assert len(find(cfg, "plugins", 2).hits) == 2
    assert len(find(cfg, "plugins", MAX_K).hits) == len(PLACES)
    for bad in (0, MAX_K + 1):
        with pytest.raises(ConfigError, match=f"-k must be 1 to {MAX_K}"):
            find(cfg, "plugins", bad)


def test_the_newest_vectors_are_searched_unless_a_model_is_named(tmp_path, server) -> None:
    db = tmp_path / "ckpt.db"
    commit(db, PLACES[:2], model="old-model", dims=32)
    commit(db, PLACES[2:], model="nomic-embed-text", dims=48)
    assert (find(config(server, db), "delay").model, find(config(server, db), "delay").dimensions) == (
        "nomic-embed-text",
        48,
    )
    named = find(config(server, db, embed_model="old-model"), "plugins")
    assert (named.model, named.dimensions, named.hits[0].qualname) == ("old-model", 32, "load_plugins")
    assert {b["model"] for b in embedding_requests(server)} == {"nomic-embed-text", "old-model"}
    with pytest.raises(ConfigError, match=r"no vectors of other-model; it holds nomic-embed-text \(48 dim"):
        find(config(server, db, embed_model="other-model"), "plugins")


def test_shortened_vectors_are_asked_for_at_their_size(checkpoint, server) -> None:
    db, _ = checkpoint
    find(config(server, db), "plugins")  # the server's own size (1536) first, then the stored one
    assert [b.get("dimensions") for b in embedding_requests(server)] == [None, DIMS]
    server.clear()
    find(config(server, db, dimensions=DIMS), "plugins")  # named: sent at once
    assert [b.get("dimensions") for b in embedding_requests(server)] == [DIMS]


def test_a_failed_query_request_is_the_api_error_itself(checkpoint, tmp_path) -> None:
    db, _ = checkpoint
    cfg = Config(("src",), base_url="http://127.0.0.1:9/v1", db=str(db), max_attempts=1).resolve(env={})
    with pytest.raises(APIConnectionError):
        find(cfg, "plugins")
    res = snipstream("search", "plugins", "--db", db, "--base-url", "http://127.0.0.1:9/v1", "--max-attempts", "1",
                     cwd=tmp_path)  # fmt: skip
    assert (res.code, res.stdout) == (3, b"") and "APIConnectionError" in res.stderr


# --- the index ----------------------------------------------------------------------------------------------


def test_the_index_is_synced_only_when_the_checkpoint_changed(checkpoint) -> None:
    db, _ = checkpoint
    with open_store(db) as s:
        (pair,) = s.pairs()
        assert s.sync(pair) == (len(PLACES), 0, 0, False)
    with open_store(db) as s:
        assert s.sync(pair) == (0, 0, 0, True)  # nothing changed: nothing read
    table = index_name(MODEL, DIMS)
    assert db_rows(db, f"SELECT count(*) FROM {table}_rowids") == [(len(PLACES),)]
    commit(db, [Place("pkg/retry.py", "backoff_delay", "def backoff_delay(n):\n    return n\n")])
    with open_store(db) as s:
        assert s.sync(pair) == (1, 1, 0, False)
    with open_store(db) as s:
        assert s.sync(pair) == (0, 0, 0, True)
    assert db_rows(db, f"SELECT count(*) FROM {table}_rowids") == [(len(PLACES),)]
    # the checkpoint stays readable by stdlib sqlite3 (status, export): only the vec0 table itself is not
    assert db_rows(db, "SELECT count(*) FROM vectors") == [(len(PLACES) + 1,)]


def test_a_vector_found_again_at_its_old_place_moves_back(checkpoint, server) -> None:
    db, ids = checkpoint
    cfg = config(server, db)
    find(cfg, "x")
    commit(db, [Place("pkg/moved.py", "load_plugins", PLACES[0].code, PLACES[0].annotation, start_line=3)])
    with open_store(db) as s:
        (pair,) = s.pairs()
        assert s.sync(pair) == (0, 0, 1, False)  # the same record, its place now the newer one
    top = find(cfg, "plugins entry points registry").hits[0]
    assert (top.record_id, top.path, top.start_line) == (ids["load_plugins"], "pkg/moved.py", 3)


# --- the command line ---------------------------------------------------------------------------------------


def test_no_checkpoint_or_no_vectors_exits_2_saying_what_to_run(tmp_path, capsysbinary) -> None:
    missing = tmp_path / "none.db"
    code, out, err = subcommand(search_cli, "search", ["plugins", "--db", missing], capsysbinary)
    assert (code, out) == (2, b"") and f"no checkpoint at {missing}" in err.decode()
    assert EMBED_FIRST in err.decode() and not missing.exists()
    plain = tmp_path / "plain.db"
    from tests.helpers import make_record

    store(plain, [make_record("f")])  # annotations only
    code, out, err = subcommand(search_cli, "search", ["plugins", "--db", plain], capsysbinary)
    assert (code, out) == (2, b"") and "holds no vectors" in err.decode() and EMBED_FIRST in err.decode()


def test_text_output_is_place_qualname_score_and_the_first_annotation_lines(checkpoint, server, capsysbinary):
    db, _ = checkpoint
    argv = ["plugins entry points", "--db", db, "--base-url", server.url, "-k", "2", "--dimensions", DIMS]
    code, out, err = subcommand(search_cli, "search", argv, capsysbinary)
    assert code == 0, err
    lines = out.decode().splitlines()
    assert lines[0].startswith("pkg/plugins.py:10-13  load_plugins  0.")
    assert lines[1:4] == ["    Loads the plugins: imports each entry point of a group",
                          "    and puts it in the registry.", "    Third line."]  # fmt: skip
    assert not lines[4].startswith(" ") and len([x for x in lines if not x.startswith(" ")]) == 2
    assert f"{MODEL} vectors ({DIMS} dimensions), sqlite-vec index" in err.decode()


def test_search_on_the_command_line_prints_json(checkpoint, server, tmp_path) -> None:
    db, ids = checkpoint
    res = snipstream("search", "commit rows transaction", "--db", db, "--base-url", server.url, "--json",
                     "-k", "3", cwd=tmp_path)  # fmt: skip
    assert res.code == 0, res.stderr
    (doc,) = res.records
    assert set(doc) == {"query", "model", "dimensions", "index", "hits", "query_tokens", "fallback"}
    assert (doc["query"], doc["model"], doc["dimensions"], doc["index"]) == (
        "commit rows transaction", MODEL, DIMS, "sqlite-vec")  # fmt: skip
    assert doc["hits"][0]["record_id"] == ids["commit_batch"] and len(doc["hits"]) == 3
    assert set(doc["hits"][0]) == {"record_id", "score", "path", "qualname", "kind", "language",
                                   "start_line", "end_line", "code", "annotation"}  # fmt: skip
    assert "sqlite-vec index" in res.stderr


def test_without_sqlite_vec_the_exact_scan_answers_and_says_so(checkpoint, server, tmp_path) -> None:
    db, ids = checkpoint
    blocker = tmp_path / "blocked" / "sqlite_vec"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('blocked by the test', name='sqlite_vec')\n")
    env = {"PYTHONPATH": f"{blocker.parent}:{Path(__file__).resolve().parent.parent}"}
    res = snipstream("search", "plugins entry points", "--db", db, "--base-url", server.url, "--json",
                     cwd=tmp_path, env=env)  # fmt: skip
    assert res.code == 0, res.stderr
    (doc,) = res.records
    assert doc["index"] == "exact" and doc["fallback"] == "sqlite_vec is not installed"
    assert doc["hits"][0]["record_id"] == ids["load_plugins"]
    assert "exact scan (sqlite_vec is not installed)" in res.stderr
