"""The checkpoint's current vectors read for ``export --format vectors``, with what each was made of.

Which vectors are current is `sinks.vectors`'s one rule (`Store.current`: each place's newest vector of the
model and size; a vector current at two places, at the one written last), so the export writes exactly what
search searches. This module adds the rows: each current vector with its record, its place's line and the
annotation embedded with it, read from a store opened with the ``exact`` engine (stdlib sqlite3,
read-only, no lock). SQLite errors are raised as ConfigError.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import NamedTuple

from stream.errors import ConfigError

from .vectors import Pair, Store

__all__ = ["VectorRow", "current_rows"]


class VectorRow(NamedTuple):
    """One current vector, at its place."""

    record_id: str
    line: bytes  # the place's NDJSON line: the provenance (path, lines, qualname, code, ...)
    vector: bytes  # float32 little-endian, dimensions × 4 bytes
    embed_text: str | None  # what was embedded (--embed-text: both, code, annotation), from the record
    annotation: str | None  # the answer embedded with the code (the record `annotation_id` names), if any


# Every vector of one model and size, in the order stored, with its record's --embed-text and annotation.
_ROWS = """
SELECT v.rowid, v.record_id, v.vector, json_extract(CAST(r.result AS TEXT), '$.embedding.text'),
       json_extract(CAST(a.result AS TEXT), '$.annotation')
FROM vectors AS v JOIN records AS r ON r.record_id = v.record_id
LEFT JOIN records AS a ON a.record_id = v.annotation_id AND a.status = 'done'
WHERE v.model = ? AND v.dimensions = ?
ORDER BY v.rowid
"""
_LINE = "SELECT line FROM occurrences WHERE rowid = ?"


def current_rows(store: Store, pair: Pair) -> Iterator[VectorRow]:
    """The current vectors of `pair` in the order they were stored, each at its place (`Store.current`).
    Streamed: memory holds the map of current vectors to places, not the vectors."""
    try:
        places = store.current(pair)
        for rowid, record_id, vector, embed_text, annotation in store.conn.execute(
            _ROWS, (pair.model, pair.dimensions)
        ):
            occurrence = places.get(rowid)
            if occurrence is None:
                continue  # superseded at its place by a newer vector
            (line,) = store.conn.execute(_LINE, (occurrence,)).fetchone()
            yield VectorRow(record_id, line, vector, embed_text, annotation)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot read checkpoint {store.path}: {exc}") from None
