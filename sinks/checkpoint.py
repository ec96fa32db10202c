"""The resumable checkpoint writer: SQLite (WAL) through aiosqlite, the source of truth of a run.

The tables and the rows written to them are in `sinks.schema`; reports read the checkpoint through
`sinks.reader`, never through this writer.

Order of writes (DESIGN "Checkpoint"): a result is committed before its line is written anywhere; a line is
marked emitted, together with the file's new offset, only after it has been written. A crash in between
leaves a line beyond the known offset, which the next run cuts off and writes again.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import orjson

from stream.errors import CheckpointError

from .reader import readonly_uri
from .schema import (
    MIGRATIONS,
    MIGRATIONS_TABLE,
    Done,
    Failed,
    FileRow,
    KnownFile,
    Occurrence,
    SkipRow,
    pending_migrations,
    statements,
)

__all__ = ["Checkpoint", "Done", "Failed", "MIGRATIONS"]

_CHUNK = 500  # ids per IN (...) look-up

_INSERT_FILES = (
    "INSERT OR REPLACE INTO files (file, task, size, mtime_ns, hash, snippets, skip_reason, skip_detail) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_DONE = (
    "INSERT INTO records (record_id, snippet_id, task, model, status, result, attempts, updated_at, flags, "
    "score) VALUES (?, ?, ?, ?, 'done', ?, ?, ?, ?, ?) ON CONFLICT(record_id) DO UPDATE SET status = 'done', "
    "result = excluded.result, reason = NULL, error = NULL, attempts = records.attempts + excluded.attempts, "
    "updated_at = excluded.updated_at, flags = excluded.flags, score = excluded.score"
)
# A place made its place's newest again: its time becomes now (the vector index's sync notices the newest
# time changing: `sinks.vectors`).
_TOUCH_OCCURRENCE = "UPDATE occurrences SET created_at = ? WHERE occurrence_id = ?"
# An embed record's vector (its record id is unique: a record answered again keeps its first vector's row).
_INSERT_VECTORS = (
    "INSERT INTO vectors (record_id, snippet_id, model, dimensions, vector, annotation_id, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(record_id) DO UPDATE SET vector = excluded.vector"
)
# A failure never overwrites a done answer (the WHERE of the upsert).
_INSERT_FAILED = (
    "INSERT INTO records (record_id, snippet_id, task, model, status, reason, error, attempts, path, "
    "qualname, updated_at) VALUES (?, ?, ?, ?, 'failed', ?, ?, ?, ?, ?, ?) ON CONFLICT(record_id) DO UPDATE "
    "SET status = 'failed', reason = excluded.reason, error = excluded.error, "
    "attempts = records.attempts + excluded.attempts, updated_at = excluded.updated_at "
    "WHERE records.status = 'failed'"
)
_INSERT_OCCURRENCES = (
    "INSERT OR IGNORE INTO occurrences (occurrence_id, record_id, path, qualname, line, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_SKIPS = "INSERT OR REPLACE INTO skips (file, path, reason, detail, run_id) VALUES (?, ?, ?, ?, ?)"
_UPSERT_OUTPUT = (
    "INSERT INTO outputs (target, offset, updated_at) VALUES (?, ?, ?) ON CONFLICT(target) "
    "DO UPDATE SET offset = excluded.offset, updated_at = excluded.updated_at"
)
_LINES = "SELECT occurrence_id, line FROM occurrences WHERE {where} occurrence_id > ? ORDER BY occurrence_id LIMIT ?"
_HAS_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"


class Checkpoint:
    """The SQLite checkpoint. ``async with Checkpoint(path) as ckpt:`` opens, locks and migrates it.

    Only one run may write a checkpoint at a time: an exclusive ``flock`` on the database file is taken on
    open (SQLite itself uses POSIX record locks, which do not interfere), and a second run is refused
    with a clear message rather than interleaving with the first. ``readonly=True`` takes no lock and
    writes nothing (for dry runs).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._db: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None
        self._tables = False  # the schema exists (cached once seen)

    @property
    def db(self) -> aiosqlite.Connection:
        assert self._db is not None, "checkpoint is not open"
        return self._db

    async def __aenter__(self) -> Checkpoint:
        try:
            if self.readonly:
                self._db = await aiosqlite.connect(readonly_uri(self.path), uri=True)
            else:
                self._lock_fd = _lock(self.path)
                self._db = await aiosqlite.connect(self.path, isolation_level=None)
                await self.db.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode survives a killed process; only a power cut can lose the last commits.
                await self.db.execute("PRAGMA synchronous=NORMAL")
                await self.db.execute("PRAGMA busy_timeout=5000")
                await self._migrate()
        except CheckpointError:
            await self._close()
            raise
        except (OSError, aiosqlite.Error) as exc:
            await self._close()
            raise CheckpointError(f"cannot open checkpoint {self.path}: {exc}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            await self._close()

    async def _close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _migrate(self) -> None:
        await self.db.execute(MIGRATIONS_TABLE)
        async with self.db.execute("SELECT name FROM migrations") as cur:
            applied = {row[0] async for row in cur}
        for name, sql in pending_migrations(applied):
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements(sql):
                    await self.db.execute(statement)
                await self.db.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise

    # --- reads -------------------------------------------------------------------------------------------

    async def lookup(
        self, record_ids: Sequence[str], occurrence_ids: Sequence[str]
    ) -> tuple[set[str], set[str]]:
        """Which of these records are done, and which of these places were already written."""
        if not await self._has_tables():
            return set(), set()
        done = await self._which(
            "SELECT record_id FROM records WHERE status = 'done' AND record_id", record_ids
        )
        seen = await self._which("SELECT occurrence_id FROM occurrences WHERE occurrence_id", occurrence_ids)
        return done, seen

    async def _which(self, select: str, ids: Sequence[str]) -> set[str]:
        """The ids found by ``{select} IN (ids)``, asked `_CHUNK` at a time."""
        found: set[str] = set()
        for start in range(0, len(ids), _CHUNK):
            chunk = list(dict.fromkeys(ids[start : start + _CHUNK]))
            rows = await self.db.execute_fetchall(f"{select} IN ({','.join('?' * len(chunk))})", chunk)
            found.update(row[0] for row in rows)
        return found

    async def results(self, record_ids: Sequence[str]) -> dict[str, bytes]:
        """Stored results of these done records."""
        found: dict[str, bytes] = {}
        for start in range(0, len(record_ids), _CHUNK):
            chunk = list(record_ids[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            async with self.db.execute(
                f"SELECT record_id, result FROM records WHERE status = 'done' AND record_id IN ({marks})",
                chunk,
            ) as cur:
                found.update({row[0]: row[1] async for row in cur})
        return found

    def unemitted(self, batch: int = 500) -> AsyncIterator[list[tuple[str, bytes]]]:
        """Occurrences committed but never emitted (a crash or a closed pipe came between)."""
        return self._lines("emitted = 0 AND", batch)

    def all_lines(self, batch: int = 500) -> AsyncIterator[list[tuple[str, bytes]]]:
        """Every occurrence's line, for --emit-all."""
        return self._lines("", batch)

    async def _lines(self, where: str, batch: int) -> AsyncIterator[list[tuple[str, bytes]]]:
        """(occurrence id, line) pages in occurrence id order, `batch` at a time."""
        last = ""
        while True:
            async with self.db.execute(_LINES.format(where=where), (last, batch)) as cur:
                rows = [(r[0], r[1]) async for r in cur]
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    async def known_files(self, task: str) -> dict[str, KnownFile]:
        """The file index for `task`: path → (size, mtime_ns, hash, snippets, skip reason, skip detail)."""
        if not await self._has_tables() or not await self._has_table("files"):
            return {}
        async with self.db.execute(
            "SELECT file, size, mtime_ns, hash, snippets, skip_reason, skip_detail FROM files WHERE task = ?",
            (task,),
        ) as cur:
            return {row[0]: KnownFile(*row[1:]) async for row in cur}

    async def output_offset(self, target: str) -> int | None:
        async with self.db.execute("SELECT offset FROM outputs WHERE target = ?", (target,)) as cur:
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    async def _has_tables(self) -> bool:
        if not self._tables:
            self._tables = await self._has_table("records")
        return self._tables

    async def _has_table(self, name: str) -> bool:
        async with self.db.execute(_HAS_TABLE, (name,)) as cur:
            return await cur.fetchone() is not None

    # --- writes ------------------------------------------------------------------------------------------

    async def start_run(self, config: dict[str, Any]) -> int:
        cur = await self.db.execute(
            "INSERT INTO runs (started_at, config) VALUES (?, ?)", (time.time(), orjson.dumps(config))
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def finish_run(self, run_id: int, summary: dict[str, Any]) -> None:
        await self.db.execute(
            "UPDATE runs SET finished_at = ?, summary = ? WHERE run_id = ?",
            (time.time(), orjson.dumps(summary), run_id),
        )

    async def commit(
        self,
        done: Iterable[Done],
        failed: Iterable[Failed],
        skips: Iterable[SkipRow],
        run_id: int | None,
        files: Iterable[FileRow] = (),
    ) -> None:
        """Store results, failures, skipped files and finished files in one transaction.

        `files` rows: `FileRow` (file, task, and what is known of the file)."""
        now = time.time()
        done, failed, skips, files = list(done), list(failed), list(skips), list(files)
        async with self.transaction():
            if files:
                await self.db.executemany(_INSERT_FILES, [f.params() for f in files])
            if done:
                await self.db.executemany(
                    _INSERT_DONE,
                    [
                        (
                            d.record_id,
                            d.snippet_id,
                            d.task,
                            d.model,
                            d.result,
                            d.attempts,
                            now,
                            d.flags,
                            d.score,
                        )
                        for d in done
                    ],
                )
                await self._insert_occurrences([(d.record_id, o) for d in done for o in d.occurrences], now)
                vectors = [(d.record_id, d.snippet_id, *d.vector, now) for d in done if d.vector is not None]
                if vectors:
                    await self.db.executemany(_INSERT_VECTORS, vectors)
            if failed:
                await self.db.executemany(_INSERT_FAILED, [_failed_row(f, now) for f in failed])
            if skips:
                await self.db.executemany(_INSERT_SKIPS, [(*s, run_id) for s in skips])

    async def add_occurrences(self, places: Sequence[tuple[str, Occurrence]]) -> None:
        """New places (record id, occurrence) of already answered records (same code found elsewhere)."""
        async with self.transaction():
            await self._insert_occurrences(places, time.time())

    async def _insert_occurrences(self, places: Sequence[tuple[str, Occurrence]], now: float) -> None:
        await self.db.executemany(
            _INSERT_OCCURRENCES,
            [(o.occurrence_id, record_id, o.path, o.qualname, o.line, now) for record_id, o in places],
        )

    async def touch_occurrences(self, occurrence_ids: Sequence[str]) -> None:
        """These places are their place's newest again (their code is back): their time becomes now."""
        now = time.time()
        async with self.transaction():
            await self.db.executemany(
                "UPDATE occurrences SET created_at = ? WHERE occurrence_id = ?",
                [(now, i) for i in occurrence_ids],
            )

    async def mark_emitted(
        self, occurrence_ids: Sequence[str], target: str | None, offset: int | None
    ) -> None:
        """Mark lines as written; with a file target, record the offset up to which the file is whole."""
        async with self.transaction():
            await self.db.executemany(
                "UPDATE occurrences SET emitted = 1 WHERE occurrence_id = ?", [(i,) for i in occurrence_ids]
            )
            if target is not None and offset is not None:
                await self.db.execute(_UPSERT_OUTPUT, (target, offset, time.time()))

    def transaction(self) -> _Transaction:
        return _Transaction(self.db)


def _failed_row(f: Failed, now: float) -> tuple[Any, ...]:
    return (
        f.record_id,
        f.snippet_id,
        f.task,
        f.model,
        f.reason,
        f.error,
        f.attempts,
        f.path,
        f.qualname,
        now,
    )


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error; shielded so a cancel cannot leave it half-open."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def __aenter__(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.db.execute("BEGIN IMMEDIATE")

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        with anyio.CancelScope(shield=True):
            if exc_type is None:
                try:
                    await self.db.execute("COMMIT")
                except aiosqlite.Error as err:
                    await self.db.execute("ROLLBACK")
                    raise CheckpointError(f"cannot commit to the checkpoint: {err}") from None
            else:
                await self.db.execute("ROLLBACK")


def _lock(path: Path) -> int:
    """An exclusive lock on the checkpoint file for the run (another run on it is refused): its fd."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CheckpointError(f"cannot open checkpoint {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise CheckpointError(
            f"checkpoint {path} is in use by another snipstream run; wait for it to finish or use another --db"
        ) from None
    return fd
