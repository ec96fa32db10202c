"""The near-duplicate groups in the checkpoint: the per-file look-ups, the new rows, and the counts shown.

The tables (migration ``0005_near_dups``, `sinks.schema`): ``near_dup_snippets`` holds each distinct snippet
big enough to group, with its group and whether it is the group's first in walk order; ``near_dup_bands``
maps each first snippet's LSH band keys (`stream.neardup`) to its group. A file costs two look-ups (its
snippets by id; the band keys of those not seen before) and one insert per table, each a single statement
over a JSON array: memory stays flat however many groups the checkpoint holds.

`CheckpointGroups` reads and writes a run's checkpoint on its aiosqlite connection. Its inserts are single
statements without a transaction of their own: each commits by itself, or with the writer's transaction
when it runs inside one (the connection is shared; a BEGIN of ours would collide with the writer's). Each
row is a fact on its own (a snippet's group, a key's group), so no two of them need to commit together.

`ScratchGroups` is the dry run's: it reads the checkpoint (read-only, when there is one) and keeps what the
run would add in SQLite's private temporary database, deleted on close: a dry run writes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from stream.errors import CheckpointError

from .schema import MIGRATIONS, statements

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

__all__ = ["SnippetRow", "GroupCounts", "CheckpointGroups", "ScratchGroups", "group_counts"]

_IN = "(SELECT value FROM json_each(?))"
_KNOWN = f"SELECT snippet_id, grp, first FROM near_dup_snippets WHERE snippet_id IN {_IN}"
_BANDS = f"SELECT key, grp FROM near_dup_bands WHERE key IN {_IN}"
_MEMBERS = f"SELECT grp, count(*) FROM near_dup_snippets WHERE first = 0 AND grp IN {_IN} GROUP BY grp"
_ADD_SNIPPETS = (
    "INSERT OR IGNORE INTO near_dup_snippets (snippet_id, grp, first, path, qualname) SELECT "
    + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(5))
    + " FROM json_each(?)"
)
_ADD_BANDS = (
    "INSERT OR IGNORE INTO near_dup_bands (key, grp) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)"
)
_LAST_GROUP = "SELECT coalesce(max(grp), 0) FROM near_dup_snippets"
_COUNTS = "SELECT count(DISTINCT grp), count(*) FROM near_dup_snippets WHERE first = 0"
_HAS_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'near_dup_snippets'"
_SCHEMA = dict(MIGRATIONS)["0005_near_dups"]


class SnippetRow(NamedTuple):
    """One ``near_dup_snippets`` row: a snippet's group, and whether it is the group's first."""

    snippet_id: str
    grp: int
    first: bool
    path: str
    qualname: str


class GroupCounts(NamedTuple):
    """Groups with at least one later member, and those members (each group's first left out)."""

    groups: int
    members: int


def _json(values: Collection[Any]) -> str:
    # (rows as plain lists: orjson takes no tuple subclass, a NamedTuple included)
    return orjson.dumps([list(v) if isinstance(v, tuple) else v for v in values]).decode()


class CheckpointGroups:
    """The groups of a run's checkpoint, read and written on its connection (see the module docstring)."""

    def __init__(self, ckpt: Checkpoint) -> None:
        self.ckpt = ckpt

    async def _one(self, sql: str) -> tuple[Any, ...]:
        rows = await self.ckpt.db.execute_fetchall(sql)
        return tuple(next(iter(rows)))

    async def start(self) -> tuple[int, GroupCounts]:
        """The last group number given, and the counts so far."""
        (last,) = await self._one(_LAST_GROUP)
        return int(last), GroupCounts(*await self._one(_COUNTS))

    async def known(self, snippet_ids: Collection[str]) -> dict[str, tuple[int, bool]]:
        """snippet id → (group, is the group's first), for those of `snippet_ids` already grouped."""
        rows = await self.ckpt.db.execute_fetchall(_KNOWN, (_json(snippet_ids),))
        return {sid: (grp, bool(first)) for sid, grp, first in rows}

    async def bands(self, keys: Collection[int]) -> dict[int, int]:
        """band key → group, for those of `keys` that some group's first snippet holds."""
        rows = await self.ckpt.db.execute_fetchall(_BANDS, (_json(keys),))
        return {key: grp for key, grp in rows}

    async def members(self, groups: Collection[int]) -> dict[int, int]:
        """group → its later members so far, for those of `groups` that have any."""
        rows = await self.ckpt.db.execute_fetchall(_MEMBERS, (_json(groups),))
        return {grp: count for grp, count in rows}

    async def add(self, snippets: Sequence[SnippetRow], bands: Sequence[tuple[int, int]]) -> None:
        try:
            if snippets:
                await self.ckpt.db.execute(_ADD_SNIPPETS, (_json(snippets),))
            if bands:
                await self.ckpt.db.execute(_ADD_BANDS, (_json(bands),))
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot record near-duplicate groups in the checkpoint: {exc}") from None


class ScratchGroups:
    """A dry run's groups: the checkpoint's (read-only), plus this run's in a private temporary database.

    ``with ScratchGroups(reader) as groups:``; the same methods as `CheckpointGroups`."""

    def __init__(self, reader: Checkpoint | None) -> None:
        self.reader = CheckpointGroups(reader) if reader is not None else None
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> ScratchGroups:
        with _translated():
            # "": SQLite's private temporary database (on disk past a small page cache), deleted on close.
            self._db = sqlite3.connect("", isolation_level=None)
            self._db.execute("PRAGMA journal_mode=OFF")
            for statement in statements(_SCHEMA):
                self._db.execute(statement)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "ScratchGroups is not open"
        return self._db

    async def _reading(self) -> bool:
        """Whether there is a checkpoint with the tables to read (a dry run does not migrate an old one)."""
        if self.reader is not None and not await self.reader.ckpt.db.execute_fetchall(_HAS_TABLE):
            self.reader = None
        return self.reader is not None

    async def start(self) -> tuple[int, GroupCounts]:
        if await self._reading():
            assert self.reader is not None
            return await self.reader.start()
        return 0, GroupCounts(0, 0)

    async def known(self, snippet_ids: Collection[str]) -> dict[str, tuple[int, bool]]:
        found = await self.reader.known(snippet_ids) if await self._reading() and self.reader else {}
        with _translated():
            rows = self.db.execute(_KNOWN, (_json(snippet_ids),)).fetchall()
        found.update({sid: (grp, bool(first)) for sid, grp, first in rows})
        return found

    async def bands(self, keys: Collection[int]) -> dict[int, int]:
        found = await self.reader.bands(keys) if await self._reading() and self.reader else {}
        with _translated():
            rows = self.db.execute(_BANDS, (_json(keys),)).fetchall()
        return {key: grp for key, grp in rows} | found  # (a key the checkpoint holds is never added here)

    async def members(self, groups: Collection[int]) -> dict[int, int]:
        found = await self.reader.members(groups) if await self._reading() and self.reader else {}
        with _translated():
            rows = self.db.execute(_MEMBERS, (_json(groups),)).fetchall()
        for grp, count in rows:  # a group of the checkpoint's can have members of this run's here
            found[grp] = found.get(grp, 0) + count
        return found

    async def add(self, snippets: Sequence[SnippetRow], bands: Sequence[tuple[int, int]]) -> None:
        with _translated():
            if snippets:
                self.db.execute(_ADD_SNIPPETS, (_json(snippets),))
            if bands:
                self.db.execute(_ADD_BANDS, (_json(bands),))


def group_counts(conn: sqlite3.Connection) -> GroupCounts | None:
    """The counts of a checkpoint opened with stdlib sqlite3 (for reports); None before migration 0005."""
    if conn.execute(_HAS_TABLE).fetchone() is None:
        return None
    return GroupCounts(*conn.execute(_COUNTS).fetchone())


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:  # e.g. the temporary directory is full
        raise CheckpointError(f"temporary database of the dry run's near-duplicate groups: {exc}") from None
