"""The checkpoint's batch-mode tables: every write and read of `stream.batch`, over an open `Checkpoint`.

A batch input file moves through states, each committed before the step it allows (so a crash at any
point resumes by what is stored, never by guessing)::

    writing ─▶ written ─▶ uploading ─▶ uploaded ─▶ creating ─▶ submitted ─▶ collected
       │         (file-only: written ─▶ local ─▶ collected)
       └─ a crash while writing: the file and its lines are discarded and planned again

``uploading`` and ``creating`` are the moments an id may exist at the provider but not yet here: a rerun
looks the file (by its unique name) or the batch (by its input file id) up before it uploads or creates
again. A record is *pending* while it has a line in a file not yet collected; once its file is collected
it is either done (``records``), failed (``records``, with the reason) or missing from the output, and the
next submit asks again what is not done.

An embeddings line (``--task embed``) carries many records: each has its ``batch_lines`` row (one line number
shared by all of them) and a ``batch_inputs`` row with its position in the line's ``input`` array, so a
result line is matched back to its records in order.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import aiosqlite
import orjson

from .checkpoint import Checkpoint

__all__ = ["BatchStore", "BatchFile", "LineRow", "InputRow", "PlaceRow", "SETTLED", "TERMINAL"]

_CHUNK = 500

#: Provider statuses after which a batch changes no more (OpenAI's Batch object, ``status``).
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
SETTLED = "collected"
#: The records a batch answered: done, with a line in a batch file.
_THROUGH_BATCHES = "status = 'done' AND record_id IN (SELECT record_id FROM batch_lines)"

_FILE_COLUMNS = (
    "name, path, state, lines, bytes, base_url, endpoint, file_id, batch_id, status, output_file_id, "
    "error_file_id, counts, errors, created_at, updated_at"
)
_UPDATABLE = frozenset(
    {
        "state",
        "lines",
        "bytes",
        "file_id",
        "batch_id",
        "status",
        "output_file_id",
        "error_file_id",
        "counts",
        "errors",
    }
)


class BatchFile(NamedTuple):
    """One ``batch_files`` row; `counts` and `errors` are the provider's objects (decoded)."""

    name: str
    path: str
    state: str
    lines: int
    bytes: int
    base_url: str | None
    endpoint: str
    file_id: str | None
    batch_id: str | None
    status: str | None
    output_file_id: str | None
    error_file_id: str | None
    counts: dict[str, Any] | None
    errors: dict[str, Any] | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> BatchFile:
        values = list(row)
        for i in (12, 13):
            values[i] = orjson.loads(values[i]) if values[i] else None
        return cls(*values)


class LineRow(NamedTuple):
    """A request line of a batch file: which record, at which (1-based) line, for which task."""

    record_id: str
    name: str
    line: int
    task: str


class InputRow(NamedTuple):
    """One record of an embeddings line: its file, its position in the line's ``input`` (from 0), its token
    count (its share of the line's usage), whether its text was cut, the annotation embedded with the code."""

    record_id: str
    name: str
    position: int
    tokens: int
    truncated: bool
    annotation_id: str | None


class PlaceRow(NamedTuple):
    """A place waiting for a record's answer: its occurrence id and its snippet (orjson of the fields)."""

    occurrence_id: str
    record_id: str
    snippet: bytes


class BatchStore:
    """The batch tables of an open, writable checkpoint."""

    def __init__(self, ckpt: Checkpoint) -> None:
        self.ckpt = ckpt

    @property
    def db(self) -> aiosqlite.Connection:
        return self.ckpt.db

    # --- files -------------------------------------------------------------------------------------------

    async def files(self, *states: str) -> list[BatchFile]:
        """Every batch file (or those in `states`), oldest first."""
        where = f" WHERE state IN ({','.join('?' * len(states))})" if states else ""
        rows = await self.db.execute_fetchall(
            f"SELECT {_FILE_COLUMNS} FROM batch_files{where} ORDER BY created_at, name", states
        )
        return [BatchFile.from_row(r) for r in rows]

    async def new_file(self, name: str, path: str, base_url: str | None, endpoint: str) -> None:
        now = time.time()
        async with self.ckpt.transaction():
            await self.db.execute(
                "INSERT INTO batch_files (name, path, state, base_url, endpoint, created_at, updated_at) "
                "VALUES (?, ?, 'writing', ?, ?, ?, ?)",
                (name, path, base_url, endpoint, now, now),
            )

    async def update(self, name: str, **values: Any) -> None:
        """Set columns of one file's row (dicts are stored as JSON), in one transaction."""
        assert set(values) <= _UPDATABLE, set(values) - _UPDATABLE
        params = [orjson.dumps(v) if isinstance(v, dict) else v for v in values.values()]
        sets = ", ".join(f"{k} = ?" for k in values)
        async with self.ckpt.transaction():
            await self.db.execute(
                f"UPDATE batch_files SET {sets}, updated_at = ? WHERE name = ?", (*params, time.time(), name)
            )

    async def discard_unwritten(self) -> list[str]:
        """Files a crash left half-written: forget them and their lines (planned again); their paths."""
        rows = await self.db.execute_fetchall("SELECT name, path FROM batch_files WHERE state = 'writing'")
        if rows:
            async with self.ckpt.transaction():
                for name, _ in rows:
                    await self.db.execute("DELETE FROM batch_inputs WHERE name = ?", (name,))
                    await self.db.execute("DELETE FROM batch_lines WHERE name = ?", (name,))
                    await self.db.execute("DELETE FROM batch_files WHERE name = ?", (name,))
        return [path for _, path in rows]

    # --- lines, places, tasks ----------------------------------------------------------------------------

    async def add(
        self, lines: Sequence[LineRow], places: Sequence[PlaceRow], inputs: Sequence[InputRow] = ()
    ) -> None:
        """Lines of the file being written, places waiting for answers and the inputs of embeddings lines, in
        one transaction."""
        async with self.ckpt.transaction():
            if inputs:
                await self.db.executemany(
                    "INSERT OR REPLACE INTO batch_inputs (record_id, name, position, tokens, truncated, "
                    "annotation_id) VALUES (?, ?, ?, ?, ?, ?)",
                    inputs,
                )
            if lines:
                await self.db.executemany(
                    "INSERT OR REPLACE INTO batch_lines (record_id, name, line, task) VALUES (?, ?, ?, ?)",
                    lines,
                )
            if places:
                await self.db.executemany(
                    "INSERT OR IGNORE INTO batch_places (occurrence_id, record_id, snippet) VALUES (?, ?, ?)",
                    places,
                )

    async def _rows(self, select: str, ids: Sequence[str], tail: str = "") -> list[Any]:
        """The rows of ``{select} IN (ids) {tail}``, asked `_CHUNK` ids at a time."""
        rows: list[Any] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = list(dict.fromkeys(ids[start : start + _CHUNK]))
            marks = ",".join("?" * len(chunk))
            rows += await self.db.execute_fetchall(f"{select} IN ({marks}) {tail}", chunk)
        return rows

    async def pending(self, record_ids: Sequence[str]) -> set[str]:
        """Of these records, those with a line in a file not yet collected (asked, answer to come)."""
        select = (
            "SELECT l.record_id FROM batch_lines l JOIN batch_files f ON f.name = l.name "
            f"WHERE f.state != '{SETTLED}' AND l.record_id"
        )
        return {r[0] for r in await self._rows(select, record_ids)}

    async def refused(self, record_ids: Sequence[str]) -> set[str]:
        """Of these records, those whose last answer was a refusal (a 4xx other than 429): an embeddings line
        refused as a whole fails all its inputs, so these are asked again in lines of their own."""
        select = (
            "SELECT record_id FROM records WHERE status = 'failed' AND reason LIKE 'http_4%' "
            "AND reason != 'http_429' AND record_id"
        )
        return {r[0] for r in await self._rows(select, record_ids)}

    async def lines_of(self, name: str) -> dict[str, LineRow]:
        """The lines of one file, by record id."""
        rows = await self.db.execute_fetchall(
            "SELECT record_id, name, line, task FROM batch_lines WHERE name = ?", (name,)
        )
        return {r[0]: LineRow(*r) for r in rows}

    async def line_inputs(self, name: str, line: int) -> list[InputRow]:
        """The records of one embeddings line, in the order of its inputs."""
        rows = await self.db.execute_fetchall(
            "SELECT i.record_id, i.name, i.position, i.tokens, i.truncated, i.annotation_id "
            "FROM batch_lines l JOIN batch_inputs i ON i.record_id = l.record_id AND i.name = l.name "
            "WHERE l.name = ? AND l.line = ? ORDER BY i.position",
            (name, line),
        )
        return [InputRow(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]

    async def input_counts(self) -> dict[str, int]:
        """File name → the embedding inputs its lines carry (files of embeddings lines only)."""
        rows = await self.db.execute_fetchall("SELECT name, count(*) FROM batch_inputs GROUP BY name")
        return {name: int(n) for name, n in rows}

    async def names_of(self, record_ids: Sequence[str]) -> set[str]:
        """The files holding lines of these records."""
        return {
            r[0]
            for r in await self._rows("SELECT DISTINCT name FROM batch_lines WHERE record_id", record_ids)
        }

    async def line_tasks(self, record_ids: Sequence[str]) -> dict[str, str]:
        """record id → task fingerprint of its batch line."""
        return {
            r[0]: r[1]
            for r in await self._rows("SELECT record_id, task FROM batch_lines WHERE record_id", record_ids)
        }

    async def places(self, record_ids: Sequence[str]) -> dict[str, list[tuple[str, bytes]]]:
        """record id → its waiting places (occurrence id, snippet blob), in occurrence id order."""
        found: dict[str, list[tuple[str, bytes]]] = {}
        select = "SELECT record_id, occurrence_id, snippet FROM batch_places WHERE record_id"
        for record_id, oid, blob in await self._rows(select, record_ids, "ORDER BY occurrence_id"):
            found.setdefault(record_id, []).append((oid, blob))
        return found

    async def put_tasks(
        self, tasks: Iterable[tuple[str, str, dict[str, Any], dict[str, Any] | None]]
    ) -> None:
        """(fingerprint, template name, task info, JSON schema or None) of the run's tasks."""
        rows = [
            (fp, name, orjson.dumps(info), orjson.dumps(schema) if schema else None)
            for fp, name, info, schema in tasks
        ]
        async with self.ckpt.transaction():
            await self.db.executemany(
                "INSERT OR REPLACE INTO batch_tasks (fingerprint, name, info, schema) VALUES (?, ?, ?, ?)",
                rows,
            )

    async def tasks(self) -> dict[str, tuple[str, dict[str, Any], dict[str, Any] | None]]:
        rows = await self.db.execute_fetchall("SELECT fingerprint, name, info, schema FROM batch_tasks")
        return {
            fp: (name, orjson.loads(info), orjson.loads(schema) if schema else None)
            for fp, name, info, schema in rows
        }

    # --- re-asks of structured replies ---------------------------------------------------------------------

    async def set_reasks(self, followups: Sequence[tuple[str, Any]]) -> None:
        async with self.ckpt.transaction():
            await self.db.executemany(
                "INSERT OR REPLACE INTO batch_reasks (record_id, followup) VALUES (?, ?)",
                [(rid, orjson.dumps(f)) for rid, f in followups],
            )

    async def reasks(self, record_ids: Sequence[str]) -> dict[str, Any]:
        select = "SELECT record_id, followup FROM batch_reasks WHERE record_id"
        return {r[0]: orjson.loads(r[1]) for r in await self._rows(select, record_ids)}

    async def clear_reasks(self, record_ids: Sequence[str]) -> None:
        async with self.ckpt.transaction():
            await self.db.executemany(
                "DELETE FROM batch_reasks WHERE record_id = ?", [(r,) for r in record_ids]
            )

    # --- reports ---------------------------------------------------------------------------------------

    async def usage(self) -> tuple[int, int, int, int]:
        """(answers, prompt, completion, cached tokens) of the records that went through a batch and are done,
        summed in SQL from their stored usage (to price them); embed records are counted by `embed_usage`."""
        usage = "json_extract(result, '$.response.usage.{}')"
        rows = await self.db.execute_fetchall(
            f"SELECT count(*), total({usage.format('prompt_tokens')}), total({usage.format('completion_tokens')}), "
            f"total({usage.format('prompt_tokens_details.cached_tokens')}) FROM records "
            f"WHERE {_THROUGH_BATCHES} AND json_extract(result, '$.embedding') IS NULL"
        )
        count, prompt, completion, cached = rows[0]
        return int(count), int(prompt), int(completion), int(cached)

    async def embed_usage(self) -> tuple[int, int]:
        """(vectors, tokens) of the embed records that went through a batch and are done."""
        rows = await self.db.execute_fetchall(
            "SELECT count(*), total(json_extract(result, '$.response.usage.prompt_tokens')) FROM records "
            f"WHERE {_THROUGH_BATCHES} AND json_extract(result, '$.embedding') IS NOT NULL"
        )
        count, tokens = rows[0]
        return int(count), int(tokens)
