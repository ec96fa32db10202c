"""A set of ids kept on disk, for sets that would grow with the tree (the dry run's records counted so far).

In a Python set an id costs about 100 bytes (the object and its slot): some 25 MB for the 250k snippets of a
large tree, and more for a larger one. Here the ids live in SQLite's private temporary database (on disk past
a fixed page cache of ~2 MB, removed when closed), looked up and added a file's worth at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager

import aiosqlite
import anyio
import orjson

from .errors import CheckpointError

__all__ = ["DiskIdSet"]


class DiskIdSet:
    """``async with DiskIdSet() as ids:``, then ``await ids.which(some)`` and ``await ids.add(more)``."""

    def __init__(self) -> None:
        self._db: aiosqlite.Connection | None = None

    async def __aenter__(self) -> DiskIdSet:
        with _translated():
            self._db = await aiosqlite.connect("")  # "": a private temporary database, deleted on close
            await self._db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY) WITHOUT ROWID")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with anyio.CancelScope(shield=True):
                await db.close()

    async def which(self, ids: Collection[str]) -> set[str]:
        """Those of `ids` that are in the set."""
        assert self._db is not None
        if not ids:
            return set()
        # One statement whatever the count (an IN list of placeholders would be a new statement per length).
        with _translated():
            rows = await self._db.execute_fetchall(
                "SELECT id FROM ids WHERE id IN (SELECT value FROM json_each(?))",
                (orjson.dumps(list(ids)).decode(),),
            )
        return {row[0] for row in rows}

    async def add(self, ids: Collection[str]) -> None:
        assert self._db is not None
        if ids:
            with _translated():
                await self._db.executemany("INSERT OR IGNORE INTO ids VALUES (?)", [(i,) for i in ids])
                await self._db.commit()


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except aiosqlite.Error as exc:  # e.g. the temporary directory is full
        raise CheckpointError(f"temporary database of the ids counted so far: {exc}") from None
