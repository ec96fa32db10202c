"""The resumable checkpoint: SQLite (WAL) through aiosqlite, the source of truth of a run.

Tables (created by the named, append-only migrations in `MIGRATIONS`, each recorded in ``migrations``):

- ``records``: one row per paid-for answer, keyed by record id (snippet id + task fingerprint); status
  ``done`` with the result, or ``failed`` with the reason and every attempt's error.
- ``occurrences``: one row per place a record's snippet was found (record id + path + qualname), holding
  the exact NDJSON line and whether it has been emitted.
- ``outputs``: for each output file, the byte offset up to which every line is known whole and emitted.
- ``skips``: files passed over, with the reason. ``runs``: one row per run with its summary.
- ``files``: per task, files whose snippets were all done (or that were skipped for their content), with
  size, mtime and content hash, so an unchanged file is not parsed again.

Order of writes (DESIGN "Checkpoint"): a result is committed before its line is written anywhere; a line is
marked emitted, together with the file's new offset, only after it has been written. A crash in between
leaves a line beyond the known offset, which the next run cuts off and writes again.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import orjson

from stream.errors import CheckpointError

__all__ = ["Checkpoint", "Done", "Failed", "MIGRATIONS"]

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE records (
            record_id TEXT PRIMARY KEY,
            snippet_id TEXT NOT NULL,
            task TEXT NOT NULL,
            model TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
            result BLOB,
            reason TEXT,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            path TEXT,
            qualname TEXT,
            updated_at REAL NOT NULL
        );
        CREATE INDEX records_status ON records(status);
        CREATE TABLE occurrences (
            occurrence_id TEXT PRIMARY KEY,
            record_id TEXT NOT NULL REFERENCES records(record_id),
            path TEXT NOT NULL,
            qualname TEXT NOT NULL,
            line BLOB NOT NULL,
            emitted INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        );
        CREATE INDEX occurrences_pending ON occurrences(emitted) WHERE emitted = 0;
        CREATE TABLE outputs (
            target TEXT PRIMARY KEY,
            offset INTEGER NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE skips (
            file TEXT PRIMARY KEY,
            path TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT,
            run_id INTEGER
        );
        CREATE TABLE runs (
            run_id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at REAL NOT NULL,
            finished_at REAL,
            config BLOB,
            summary BLOB
        );
        """,
    ),
    (
        "0002_files",
        """
        CREATE TABLE files (
            file TEXT NOT NULL,
            task TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            hash TEXT NOT NULL,
            snippets INTEGER NOT NULL,
            skip_reason TEXT,
            skip_detail TEXT,
            PRIMARY KEY (file, task)
        );
        """,
    ),
]


@dataclass(frozen=True, slots=True)
class Done:
    """A successful answer and the line(s) it produces."""

    record_id: str
    snippet_id: str
    task: str
    model: str
    result: bytes  # orjson of the annotation and response metadata, reused for new occurrences
    attempts: int
    occurrences: Sequence[tuple[str, str, str, bytes]]  # (occurrence id, path, qualname, line)


@dataclass(frozen=True, slots=True)
class Failed:
    record_id: str
    snippet_id: str
    task: str
    model: str
    reason: str
    error: str  # every attempt's reason, one per line
    attempts: int
    path: str
    qualname: str


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
                uri = f"file:{self.path}?mode=ro"
                self._db = await aiosqlite.connect(uri, uri=True)
            else:
                self._lock()
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

    def _lock(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CheckpointError(f"cannot open checkpoint {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise CheckpointError(
                f"checkpoint {self.path} is in use by another snipstream run; wait for it to finish or use "
                "another --db"
            ) from None
        self._lock_fd = fd

    async def _migrate(self) -> None:
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        async with self.db.execute("SELECT name FROM migrations") as cur:
            applied = {row[0] async for row in cur}
        for name, sql in MIGRATIONS:
            if name in applied:
                continue
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, sql.split(";")):
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
        done: set[str] = set()
        seen: set[str] = set()
        for start in range(0, len(record_ids), 500):
            chunk = list(dict.fromkeys(record_ids[start : start + 500]))
            rows = await self.db.execute_fetchall(
                f"SELECT record_id FROM records WHERE status = 'done' AND record_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            done.update(row[0] for row in rows)
        for start in range(0, len(occurrence_ids), 500):
            chunk = list(dict.fromkeys(occurrence_ids[start : start + 500]))
            rows = await self.db.execute_fetchall(
                f"SELECT occurrence_id FROM occurrences WHERE occurrence_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            seen.update(row[0] for row in rows)
        return done, seen

    async def results(self, record_ids: Sequence[str]) -> dict[str, bytes]:
        """Stored results of these done records."""
        found: dict[str, bytes] = {}
        for start in range(0, len(record_ids), 500):
            chunk = list(record_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            async with self.db.execute(
                f"SELECT record_id, result FROM records WHERE status = 'done' AND record_id IN ({marks})",
                chunk,
            ) as cur:
                found.update({row[0]: row[1] async for row in cur})
        return found

    async def unemitted(self, batch: int = 500) -> AsyncIterator[list[tuple[str, bytes]]]:
        """Occurrences committed but never emitted (a crash or a closed pipe came between)."""
        last = ""
        while True:
            async with self.db.execute(
                "SELECT occurrence_id, line FROM occurrences WHERE emitted = 0 AND occurrence_id > ? "
                "ORDER BY occurrence_id LIMIT ?",
                (last, batch),
            ) as cur:
                rows = [(r[0], r[1]) async for r in cur]
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    async def all_lines(self, batch: int = 500) -> AsyncIterator[list[tuple[str, bytes]]]:
        """Every occurrence's line, for --emit-all."""
        last = ""
        while True:
            async with self.db.execute(
                "SELECT occurrence_id, line FROM occurrences WHERE occurrence_id > ? "
                "ORDER BY occurrence_id LIMIT ?",
                (last, batch),
            ) as cur:
                rows = [(r[0], r[1]) async for r in cur]
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    async def known_files(self, task: str) -> dict[str, tuple[int, int, str, int, str | None, str | None]]:
        """The file index for `task`: path → (size, mtime_ns, hash, snippets, skip reason, skip detail)."""
        if not await self._has_tables():
            return {}
        async with self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'files'"
        ) as cur:
            if await cur.fetchone() is None:
                return {}
        async with self.db.execute(
            "SELECT file, size, mtime_ns, hash, snippets, skip_reason, skip_detail FROM files WHERE task = ?",
            (task,),
        ) as cur:
            return {row[0]: tuple(row[1:]) async for row in cur}  # type: ignore[misc]

    async def output_offset(self, target: str) -> int | None:
        async with self.db.execute("SELECT offset FROM outputs WHERE target = ?", (target,)) as cur:
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    async def _has_tables(self) -> bool:
        if self._tables:
            return True
        async with self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'"
        ) as cur:
            self._tables = await cur.fetchone() is not None
        return self._tables

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
        skips: Iterable[tuple[str, str, str, str]],
        run_id: int | None,
        files: Iterable[tuple[Any, ...]] = (),
    ) -> None:
        """Store results, failures, skipped files and finished files in one transaction.

        `files` rows: (file, task, size, mtime_ns, hash, snippets, skip reason, skip detail)."""
        now = time.time()
        done, failed, skips, files = list(done), list(failed), list(skips), list(files)
        async with self._transaction():
            if files:
                await self.db.executemany(
                    "INSERT OR REPLACE INTO files (file, task, size, mtime_ns, hash, snippets, skip_reason, "
                    "skip_detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    files,
                )
            if done:
                await self.db.executemany(
                    "INSERT INTO records (record_id, snippet_id, task, model, status, result, attempts, "
                    "updated_at) VALUES (?, ?, ?, ?, 'done', ?, ?, ?) ON CONFLICT(record_id) DO UPDATE SET "
                    "status = 'done', result = excluded.result, reason = NULL, error = NULL, "
                    "attempts = records.attempts + excluded.attempts, updated_at = excluded.updated_at",
                    [(d.record_id, d.snippet_id, d.task, d.model, d.result, d.attempts, now) for d in done],
                )
                await self.db.executemany(
                    "INSERT OR IGNORE INTO occurrences (occurrence_id, record_id, path, qualname, line, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [(o[0], d.record_id, o[1], o[2], o[3], now) for d in done for o in d.occurrences],
                )
            if failed:
                await self.db.executemany(
                    "INSERT INTO records (record_id, snippet_id, task, model, status, reason, error, attempts, "
                    "path, qualname, updated_at) VALUES (?, ?, ?, ?, 'failed', ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(record_id) DO UPDATE SET status = 'failed', reason = excluded.reason, "
                    "error = excluded.error, attempts = records.attempts + excluded.attempts, "
                    "updated_at = excluded.updated_at WHERE records.status = 'failed'",
                    [
                        (
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
                        for f in failed
                    ],
                )
            if skips:
                await self.db.executemany(
                    "INSERT OR REPLACE INTO skips (file, path, reason, detail, run_id) VALUES (?, ?, ?, ?, ?)",
                    [(*s, run_id) for s in skips],
                )

    async def add_occurrences(self, done: Sequence[Done]) -> None:
        """New places of already answered records (same code found elsewhere)."""
        now = time.time()
        async with self._transaction():
            await self.db.executemany(
                "INSERT OR IGNORE INTO occurrences (occurrence_id, record_id, path, qualname, line, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(o[0], d.record_id, o[1], o[2], o[3], now) for d in done for o in d.occurrences],
            )

    async def mark_emitted(
        self, occurrence_ids: Sequence[str], target: str | None, offset: int | None
    ) -> None:
        """Mark lines as written; with a file target, record the offset up to which the file is whole."""
        async with self._transaction():
            await self.db.executemany(
                "UPDATE occurrences SET emitted = 1 WHERE occurrence_id = ?", [(i,) for i in occurrence_ids]
            )
            if target is not None and offset is not None:
                await self.db.execute(
                    "INSERT INTO outputs (target, offset, updated_at) VALUES (?, ?, ?) ON CONFLICT(target) "
                    "DO UPDATE SET offset = excluded.offset, updated_at = excluded.updated_at",
                    (target, offset, time.time()),
                )

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)


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
