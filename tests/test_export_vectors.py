"""``export --format vectors``: the checkpoint's current vectors as Parquet, read back with pyarrow.

Checkpoints are built through `sinks.checkpoint.Checkpoint` with embed records as ``--task embed`` stores
them (`store_embedded`, also used by tests/test_ask.py); the vectors are the fake server's
(`tests.fakeserver.embeddings.embed`), so they are those a run against it would have stored."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import orjson
import pyarrow.parquet as pq
import pytest

import stream.cli.export as export_cmd
from tests.fakeserver.embeddings import DEFAULT_DIMENSIONS, embed
from tests.helpers import REPO, make_record, store, subcommand

EMBED_MODEL = "text-embedding-3-small"  # Config's default --embed-model


def embed_text(rec: dict[str, Any], mode: str) -> str:
    """What ``--embed-text`` `mode` embeds of the snippet of `rec` (its annotation, when it has one)."""
    from stream.embeddings import text_of
    from stream.model import Snippet

    fields = ("path", "language", "kind", "qualname", "start_line", "end_line", "code", "docstring")
    snippet = Snippet(**{f: rec[f] for f in fields}, signature=rec["signature"], parent=rec["parent"])
    text = text_of(snippet, rec["annotation"], mode)
    assert text is not None
    return text


def store_embedded(
    db: Path,
    records: Sequence[dict[str, Any]],
    *,
    mode: str = "both",
    model: str = EMBED_MODEL,
    dimensions: int = DEFAULT_DIMENSIONS,
    annotated: bool = True,
) -> dict[str, bytes]:
    """Store `records` (annotate answers, from `make_record`) when `annotated`, then one embed record with
    its vector for each, as ``--task embed`` does (the vector of `embed_text`, the annotation embedded
    with the code when there is one). Returns each embed record's id → its vector's bytes."""
    from sinks.checkpoint import Checkpoint
    from sinks.schema import Done, Occurrence, Vector
    from stream.embeddings import to_bytes
    from stream.model import stable_hash

    if annotated:
        store(db, records)
    done, vectors = [], {}
    for rec in records:
        fingerprint = stable_hash("embed", model, str(dimensions), mode)
        rid = stable_hash(rec["snippet_id"], fingerprint)
        annotation_id = rec["record_id"] if annotated and mode != "code" else None
        text = embed_text(rec, mode) if annotated else rec["code"]
        vector = to_bytes(embed(text, dimensions))
        result = {
            "task": {"template": "embed", "fingerprint": fingerprint, "api": "embeddings", "model": model},
            "embedding": {
                "model": model,
                "dimensions": dimensions,
                "text": mode,
                "annotation_id": annotation_id,
                "truncated": False,
            },
            "response": {"model": model, "usage": {"prompt_tokens": 10, "total_tokens": 10}},
        }
        provenance = {k: rec[k] for k in rec if k not in ("task", "annotation", "data", "response")}
        line = orjson.dumps({**provenance, "record_id": rid, **result}) + b"\n"
        place = Occurrence(stable_hash(rid, rec["path"], rec["qualname"]), rec["path"], rec["qualname"], line)
        done.append(
            Done(
                rid,
                rec["snippet_id"],
                fingerprint,
                model,
                orjson.dumps(result),
                1,
                [place],
                vector=Vector(model, dimensions, vector, annotation_id),
            )
        )
        vectors[rid] = vector

    async def commit() -> None:
        async with Checkpoint(db) as ckpt:
            await ckpt.commit(done, [], [], None)

    anyio.run(commit)
    return vectors


def _records() -> list[dict[str, Any]]:
    return [
        make_record("load_plugins", path="pkg/plugins.py", code="def load_plugins(x):\n    return x\n"),
        make_record("area", path="pkg/shapes.py", start_line=5, code="def area(r):\n    return 3 * r * r\n"),
    ]


def _export(db: Path, out: Path, capsys: Any, *extra: str) -> tuple[int, str]:
    code, _, err = subcommand(
        export_cmd, "export", ["--db", db, "--format", "vectors", "-o", out, *extra], capsys
    )
    return code, err.decode()


def test_the_file_holds_each_records_vector_and_what_it_was_made_of(
    tmp_path: Path, capsysbinary: Any
) -> None:
    db, out = tmp_path / "ck.db", tmp_path / "vectors.parquet"
    records = _records()
    stored = store_embedded(db, records)
    code, err = _export(db, out, capsysbinary)
    assert code == 0, err
    assert f"exported 2 vectors of {EMBED_MODEL} ({DEFAULT_DIMENSIONS} dimensions)" in err
    table = pq.read_table(out)
    assert table.schema.field("vector").type.list_size == DEFAULT_DIMENSIONS
    assert str(table.schema.field("vector").type.value_type) == "float"
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == ["pkg/plugins.py", "pkg/shapes.py"]  # as stored
    from stream.embeddings import floats

    for row, rec in zip(rows, records, strict=True):
        assert row["vector"] == floats(stored[row["id"]])  # the float32 values, exactly
        assert (row["qualname"], row["start_line"], row["end_line"]) == (
            rec["qualname"],
            rec["start_line"],
            rec["end_line"],
        )
        assert row["text"] == f"{rec['annotation']}\n\n{rec['code']}"  # --embed-text both
        assert row["model"] == EMBED_MODEL


def test_code_alone_is_the_text_of_code_embeddings(tmp_path: Path, capsysbinary: Any) -> None:
    db, out = tmp_path / "ck.db", tmp_path / "v.parquet"
    records = _records()
    store_embedded(db, records, mode="code")
    assert _export(db, out, capsysbinary)[0] == 0
    assert [r["text"] for r in pq.read_table(out).to_pylist()] == [r["code"] for r in records]


def test_an_edited_snippet_is_written_with_its_new_vector_only(tmp_path: Path, capsysbinary: Any) -> None:
    db, out = tmp_path / "ck.db", tmp_path / "v.parquet"
    old, other = _records()
    store_embedded(db, [old, other])
    new = make_record("load_plugins", path="pkg/plugins.py", code="def load_plugins(x, y):\n    return y\n")
    stored = store_embedded(db, [new])  # a rerun after the edit: a new record at the same place
    assert _export(db, out, capsysbinary)[0] == 0
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 2
    plugins = next(r for r in rows if r["qualname"] == "load_plugins")
    assert list(stored) == [plugins["id"]]
    assert "def load_plugins(x, y)" in plugins["text"]


def test_no_vectors_writes_nothing_and_says_what_to_run(tmp_path: Path, capsysbinary: Any) -> None:
    db, out = tmp_path / "ck.db", tmp_path / "v.parquet"
    store(db, _records())  # annotations only
    out.write_bytes(b"older")
    code, err = _export(db, out, capsysbinary)
    assert code == 1
    assert "no vectors" in err and "--task embed" in err
    assert out.read_bytes() == b"older"


def test_no_checkpoint_is_a_usage_error(tmp_path: Path, capsysbinary: Any) -> None:
    code, err = _export(tmp_path / "none.db", tmp_path / "v.parquet", capsysbinary)
    assert code == 2 and "no checkpoint" in err
    assert not (tmp_path / "v.parquet").exists()


def test_vectors_of_several_models_need_model(tmp_path: Path, capsysbinary: Any) -> None:
    db, out = tmp_path / "ck.db", tmp_path / "v.parquet"
    records = _records()
    store_embedded(db, records)
    store_embedded(db, records, model="nomic-embed-text", dimensions=64, annotated=False)
    code, err = _export(db, out, capsysbinary)
    assert code == 2 and "several models" in err and "nomic-embed-text (64 dimensions, 2 vectors)" in err
    assert not out.exists()
    code, err = _export(db, out, capsysbinary, "--model", "nomic-embed-text")
    assert code == 0, err
    table = pq.read_table(out)
    assert table.schema.field("vector").type.list_size == 64
    assert [r["text"] for r in table.to_pylist()] == [r["code"] for r in records]


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["-o", "-"], "Parquet file"), (["--split", "0.9/0.1"], "--split do not apply")],
)
def test_what_a_parquet_file_cannot_be(
    extra: list[str], message: str, tmp_path: Path, capsysbinary: Any
) -> None:
    db = tmp_path / "ck.db"
    store_embedded(db, _records())
    code, _, err = subcommand(
        export_cmd,
        "export",
        ["--db", db, "--format", "vectors", "-o", tmp_path / "v.parquet", *extra],
        capsysbinary,
    )
    assert code == 2 and message in err.decode()


def test_the_vectors_export_loads_neither_httpx_nor_tiktoken(tmp_path: Path) -> None:
    db = tmp_path / "ck.db"
    store_embedded(db, _records()[:1])
    code = (
        "import sys; from stream.cli import main\n"
        f"assert main(['export', '--format', 'vectors', '--db', {str(db)!r}, '-o', {str(tmp_path / 'v.pq')!r}]) == 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'httpcore', 'tiktoken', 'tree_sitter'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_after_a_run_the_text_is_what_was_sent_and_the_vector_what_came_back(
    tmp_path: Path, tree: Path, capsysbinary: Any
) -> None:
    from tests.fakeserver import FakeOpenAI
    from tests.fakeserver.embeddings import embedding_inputs
    from tests.helpers import run_args, snipstream

    db, out = tmp_path / "ck.db", tmp_path / "v.parquet"
    with FakeOpenAI(chunks=4) as server:
        args = run_args(server, tree, "--task", "annotate,embed", "--db", db, "-o", tmp_path / "o.ndjson")
        done = snipstream(*args, cwd=tmp_path)
        assert done.code == 0, done.stderr
        sent = [
            t
            for r in server.requests
            if r.path.endswith("/embeddings")
            for t in embedding_inputs(r.body) or []
        ]
    assert _export(db, out, capsysbinary)[0] == 0
    rows = pq.read_table(out).to_pylist()
    assert sorted(r["text"] for r in rows) == sorted(sent)
    for row in rows:
        assert row["vector"] == pytest.approx(embed(row["text"]), abs=1e-7)
