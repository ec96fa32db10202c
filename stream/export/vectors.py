"""``export --format vectors``: the checkpoint's current vectors as one Parquet file, for a vector database.

One row per current vector (`sinks.vectors`' rule, the one search uses: a place's newest vector; a snippet
edited and embedded again is written with its new vector only), in the order they were stored:

- ``id``: the record id (snippet id + task fingerprint), stable while the code and settings are;
- ``path``, ``start_line``, ``end_line`` (int32, 1-based, inclusive), ``qualname``, ``language``, ``kind``:
  where the code is and what it is;
- ``text``: what the vector was made of, by the record's ``--embed-text``: ``both`` is the annotation, a
  blank line and the code (the code alone when it had no annotation), ``code`` the code, ``annotation``
  the annotation;
- ``model``: the embedding model; ``vector``: ``fixed_size_list<float32>[dimensions]``, as the server gave it.

A text the embed step cut to the model's per-input limit is written whole here: the vector was made of its
start. A file holds vectors of one model and size: with several models in the checkpoint, ``--model``
chooses one (and of one model with several sizes, the newest is taken and the others named in a note).
The file is written under a temporary name and renamed into place when whole (`stream.export.files`);
nothing to write leaves any older file as it was. pyarrow is imported only here, by this format.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ConfigError
from .files import Outputs, missing_folder

if TYPE_CHECKING:
    import pyarrow as pa

    from sinks.vector_rows import VectorRow
    from sinks.vectors import Pair

__all__ = ["VECTORS", "VectorReport", "export_vectors"]

VECTORS = "vectors"  # the format's name in --format
_BATCH = 4096  # rows per record batch (and Parquet row group): 24 MiB of 1536-dimension vectors
#: A snippet's fields, as its place's line holds them (`stream.record.provenance`).
_SNIPPET = (
    "path",
    "language",
    "kind",
    "qualname",
    "start_line",
    "end_line",
    "code",
    "docstring",
    "signature",
    "parent",
)


@dataclass
class VectorReport:
    """What a vectors export wrote: the file, the model and size, the rows; `empty_reason` when none."""

    output: str
    model: str = ""
    dimensions: int = 0
    rows: int = 0
    notes: list[str] = field(default_factory=list)
    empty_reason: str = ""

    def text(self) -> str:
        """The summary for stderr."""
        lines = [
            f"exported {self.rows:,} vectors of {self.model} ({self.dimensions} dimensions) to {self.output}"
        ]
        return "\n".join([*lines, *self.notes])


def export_vectors(db: str | Path, output: str, *, models: tuple[str, ...] = ()) -> VectorReport:
    """Write the current vectors of `db` to the Parquet file `output` (see the module's docstring).

    Raises ConfigError for an unusable output, checkpoint or --model, SinkError when the file cannot be
    written. No vectors: nothing is written, and the report's `empty_reason` says why. The checkpoint is
    read when this is called, not when the command line is parsed (the imports are here)."""
    from sinks.vector_rows import current_rows
    from sinks.vectors import open_store

    if output == "-":
        raise ConfigError("--format vectors writes a Parquet file, not lines: give -o FILE")
    target = Path(output)
    if (folder := missing_folder(target)) is not None:
        raise ConfigError(f"-o {target}: the folder {folder} does not exist (create it first)")
    pa, pq = _pyarrow()
    report = VectorReport(output)
    if not Path(db).is_file():
        raise ConfigError(f"no checkpoint at {db} (give its path with --db)")
    with open_store(db, "exact") as store:
        chosen = _choose(store.pairs(), models, report)
        if chosen is None:
            return report
        report.model, report.dimensions = chosen.model, chosen.dimensions
        rows = current_rows(store, chosen)
        schema = _schema(pa, chosen.dimensions)
        with Outputs([target]) as out:
            writer = pq.ParquetWriter(_Into(out), schema)
            try:
                for batch in _batches(pa, schema, rows, chosen):
                    writer.write_batch(batch)
                    report.rows += batch.num_rows
            finally:
                writer.close()
    return report


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("--format vectors writes Parquet with pyarrow: pip install pyarrow") from None
    return pa, pq


def _choose(sets: list[Pair], models: tuple[str, ...], report: VectorReport) -> Pair | None:
    """The model and size to export (`sets` the newest first); None, with the report's reason, when the
    checkpoint has no vectors."""
    from ..search import EMBED_FIRST

    if not sets:
        report.empty_reason = f"the checkpoint holds no vectors; embed the snippets first: {EMBED_FIRST}"
        return None
    there = ", ".join(f"{s.model} ({s.dimensions} dimensions, {s.vectors:,} vectors)" for s in sets)
    if models:
        sets = [s for s in sets if s.model in models]
        if not sets:
            raise ConfigError(f"--model {' '.join(models)}: no vectors of that model; vectors there: {there}")
    if len({s.model for s in sets}) > 1:
        raise ConfigError(f"vectors of several models: {there}; choose one with --model")
    chosen, others = sets[0], sets[1:]
    if others:
        sizes = ", ".join(f"{s.dimensions} ({s.vectors:,} vectors)" for s in others)
        report.notes.append(f"note: left out the vectors of {chosen.model} of other sizes: {sizes}")
    return chosen


def _schema(pa: Any, dimensions: int) -> pa.Schema:
    text = pa.string()
    return pa.schema(
        [
            ("id", text),
            ("path", text),
            ("start_line", pa.int32()),
            ("end_line", pa.int32()),
            ("qualname", text),
            ("language", text),
            ("kind", text),
            ("text", text),
            ("model", text),
            ("vector", pa.list_(pa.float32(), dimensions)),
        ]
    )


def _batches(pa: Any, schema: pa.Schema, rows: Iterable[VectorRow], chosen: Pair) -> Iterator[Any]:
    """`rows` as record batches of `_BATCH` rows."""
    columns: dict[str, list[Any]] = {name: [] for name in schema.names if name != "vector"}
    vectors: list[bytes] = []
    size = chosen.dimensions * 4
    for row in rows:
        if len(row.vector) != size:
            raise ConfigError(f"record {row.record_id}: its vector has {len(row.vector)} bytes, not {size}")
        place = orjson.loads(row.line)
        columns["id"].append(row.record_id)
        for name in ("path", "start_line", "end_line", "qualname", "language", "kind"):
            columns[name].append(place[name])
        columns["text"].append(_text(place, row))
        columns["model"].append(chosen.model)
        vectors.append(row.vector)
        if len(vectors) == _BATCH:
            yield _batch(pa, schema, columns, vectors, chosen.dimensions)
            columns = {name: [] for name in columns}
            vectors = []
    if vectors:
        yield _batch(pa, schema, columns, vectors, chosen.dimensions)


def _text(place: dict[str, Any], row: VectorRow) -> str:
    """What the vector was made of, rebuilt as the embed step builds it (`stream.embeddings.text_of`)."""
    from ..embeddings import text_of
    from ..model import Snippet

    # (the line's snippet id spares the hash a Snippet would compute)
    snippet = Snippet(**{name: place.get(name) for name in _SNIPPET}, id=place.get("snippet_id") or "")
    return text_of(snippet, row.annotation, row.embed_text or "code") or ""


def _batch(pa: Any, schema: pa.Schema, columns: dict[str, list[Any]], vectors: list[bytes], dims: int) -> Any:
    raw = b"".join(vectors)
    if sys.byteorder == "big":  # stored little-endian; Arrow buffers are native
        from array import array

        values = array("f")
        values.frombytes(raw)
        values.byteswap()
        raw = values.tobytes()
    flat = pa.Array.from_buffers(pa.float32(), len(vectors) * dims, [None, pa.py_buffer(raw)])
    arrays = [pa.array(columns[name], type=schema.field(name).type) for name in schema.names[:-1]]
    return pa.record_batch([*arrays, pa.FixedSizeListArray.from_arrays(flat, dims)], schema=schema)


class _Into:
    """The file-like object pyarrow writes the Parquet file to: its bytes go to `Outputs` (which renames the
    file into place when whole); `tell` is the offset Parquet's footer records."""

    def __init__(self, out: Outputs) -> None:
        self.out = out
        self.offset = 0
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.out.write(0, chunk)
        self.offset += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass
