"""A set of ids kept on disk, for sets that would grow with the tree (the dry run's records counted so far).

In a Python set an id costs about 100 bytes (the object and its slot): some 25 MB for the 250k snippets of a
large tree, and more for a larger one. Here the ids live in SQLite's private temporary database (on disk past
a fixed page cache of ~2 MB, removed when closed), looked up and added a file's worth at a time.

It is used from the event loop's thread, without aiosqlite: a look-up and an insert take ~0.1 ms a file,
less than the two hops to a database thread would (~1 ms a file, +10% on a dry run).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager

import orjson

from stream.errors import CheckpointError

__all__ = ["DiskIdSet"]


class DiskIdSet:
    """``with DiskIdSet() as ids:``, then ``ids.which(some)`` and ``ids.add(more)``."""

    def __init__(self) -> None:
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> DiskIdSet:
        with _translated():
            # "": a private temporary database, deleted on close; scratch data needs no rollback journal.
            self._db = sqlite3.connect("", isolation_level=None)
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY) WITHOUT ROWID")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    def which(self, ids: Collection[str]) -> set[str]:
        """Those of `ids` that are in the set."""
        assert self._db is not None
        if not ids:
            return set()
        # One statement whatever the count (an IN list of placeholders would be a new statement per length).
        with _translated():
            rows = self._db.execute(
                "SELECT id FROM ids WHERE id IN (SELECT value FROM json_each(?))", (_json(ids),)
            ).fetchall()
        return {row[0] for row in rows}

    def add(self, ids: Collection[str]) -> None:
        assert self._db is not None
        if ids:
            with _translated():
                self._db.execute("INSERT OR IGNORE INTO ids SELECT value FROM json_each(?)", (_json(ids),))


def _json(ids: Collection[str]) -> str:
    return orjson.dumps(list(ids)).decode()


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:  # e.g. the temporary directory is full
        raise CheckpointError(f"temporary database of the ids counted so far: {exc}") from None
