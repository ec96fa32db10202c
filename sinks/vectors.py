"""The checkpoint's vectors searched: each place's current vector, its nearest-neighbour index (a sqlite-vec
``vec0`` table inside the checkpoint file), and an exact scan with numpy where sqlite-vec cannot be loaded.

A place (path, qualname) may have several embed records: a snippet edited and run again gets a new record
and a new occurrence at the same place, and the old ones stay. The **current** vector of a place is the one
of its newest occurrence (``created_at``, then ``occurrence_id``, as `sinks.vector_rows` orders them) among
the records with a vector of the model and size searched; a vector current at two places (the same code
twice) is indexed once, with the later one. That set is what both engines search: they give the same hits.

**The index** (`Index`): one ``vec0`` table per (model, dimensions), named ``vec_<hash>`` (`index_name`),
keyed by ``vectors.rowid``, with cosine distance (``distance_metric=cosine``: vectors need not be
normalised; score = 1 − distance = the cosine similarity) and the rowid of the place's occurrence as an
auxiliary column (``+occurrence``), as sqlite-vec documents them (https://alexgarcia.xyz/sqlite-vec/
features/knn.html; vec0's column options in its README and ``sqlite-vec.c``). It is brought up to date at
search time (`Index.sync`): current vectors not yet indexed are inserted, indexed ones no longer current are
deleted, moved ones get their new place. The ``vector_index`` table (made here, not by a migration: only
search needs it) keeps, per index, the checkpoint's state at its last sync (the highest occurrence and vector
rowids, the vectors of its model and size); while that holds, the sync is skipped. ``vec0`` is itself a
brute-force scan, in C over contiguous chunks.

**Locks.** stdlib sqlite3 on this platform cannot load extensions, so the index is opened through apsw
(which bundles its own SQLite). Two SQLite libraries in one process on one file would each keep their own
POSIX record locks, and closing either's file descriptor drops the other's locks with it (POSIX ``fcntl``
semantics). So a store uses one library only, for everything it reads and writes: apsw with the index,
stdlib sqlite3 (read-only) for the exact scan; and it is closed before anything else opens the file.

**The exact scan** (`Store.nearest` without the index): the current vectors streamed in chunks of
`_CHUNK` rows through one matrix product each, keeping the best `k` so far: memory is bounded by the chunk,
not by the checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from stream.errors import CheckpointError, ConfigError

from .reader import VECTOR_PAIRS, readonly_uri
from .schema import CHECKPOINT_TABLES
from .vector_scan import exact_nearest

__all__ = ["MAX_K", "Hit", "Pair", "Synced", "Store", "open_store", "index_problem", "index_name"]

MAX_K = 4096  # sqlite-vec's bound on k ("k value in knn query too large ... the limit is 4096"), for both
TIE = 6  # decimals of the score two engines' float32 arithmetic agree on: beyond them, ties go by rowid
_CHUNK = 4096  # vectors per step of the exact scan and per batch of index writes
_CACHE = "PRAGMA cache_size = -65536"  # KiB: 64 MB at most, taken as pages are read
_BUSY_MS = 10_000  # a run commits in short transactions; wait for them rather than fail


@dataclass(frozen=True, slots=True)
class Hit:
    """One snippet found: its embed record, the cosine similarity to the query, where and what it is, and the
    annotation embedded with it (the answer of the vector's ``annotation_id`` record; None: code alone)."""

    record_id: str
    score: float
    path: str
    qualname: str
    kind: str
    language: str
    start_line: int
    end_line: int
    code: str
    annotation: str | None


class Pair(NamedTuple):
    """A model and vector size the checkpoint holds vectors of, and how many (rows, not only current)."""

    model: str
    dimensions: int
    vectors: int


class Synced(NamedTuple):
    """What one `Index.sync` did: vectors added, removed and moved to another place; skipped: nothing had
    changed since the last sync, so nothing was read."""

    added: int
    removed: int
    moved: int
    skipped: bool


# --- queries ------------------------------------------------------------------------------------------------

_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
# Each place's newest occurrence among the records with a vector of this model and size: (vector, occurrence).
_CURRENT = """
SELECT vector_rowid, occurrence_rowid FROM (
    SELECT v.rowid AS vector_rowid, o.rowid AS occurrence_rowid,
           row_number() OVER (
               PARTITION BY o.path, o.qualname ORDER BY o.created_at DESC, o.occurrence_id DESC
           ) AS newest
    FROM occurrences AS o JOIN vectors AS v ON v.record_id = o.record_id
    WHERE v.model = ? AND v.dimensions = ?
) WHERE newest = 1
"""
# What a sync's result depends on: a new occurrence, a new vector, a vector gone, a place's earlier code back
# (`Checkpoint.touch_occurrences` makes its occurrence the newest: the newest time moves).
_STATE = """
SELECT (SELECT coalesce(max(rowid), 0) FROM occurrences), (SELECT coalesce(max(rowid), 0) FROM vectors),
       (SELECT count(*) FROM vectors WHERE model = ? AND dimensions = ?),
       (SELECT coalesce(max(created_at), 0) FROM occurrences)
"""
_VECTORS = "SELECT rowid, vector FROM vectors WHERE model = ? AND dimensions = ?"
_PLACE = "SELECT v.record_id, v.annotation_id, o.line FROM vectors v, occurrences o WHERE v.rowid = ? AND o.rowid = ?"
_ANNOTATION = "SELECT result FROM records WHERE record_id = ? AND status = 'done'"

_MARKERS = """
CREATE TABLE IF NOT EXISTS vector_index (name TEXT PRIMARY KEY, model TEXT NOT NULL, dimensions INTEGER NOT NULL,
    occurrences INTEGER NOT NULL, vectors INTEGER NOT NULL, count INTEGER NOT NULL, touched REAL NOT NULL)
"""
_MARKER = "SELECT occurrences, vectors, count, touched FROM vector_index WHERE name = ?"
_SET_MARKER = "INSERT OR REPLACE INTO vector_index VALUES (?, ?, ?, ?, ?, ?, ?)"
_VEC0 = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS {name} "
    "USING vec0(embedding float[{dims}] distance_metric=cosine, +occurrence integer)"
)
_INDEXED = "SELECT rowid, occurrence FROM {name}"
_ADD = (
    "INSERT INTO {name} (rowid, embedding, occurrence) SELECT rowid, vector, ? FROM vectors WHERE rowid = ?"
)
_REMOVE = "DELETE FROM {name} WHERE rowid = ?"
_PRESENT = "SELECT rowid FROM {name} WHERE rowid IN ({marks})"
_MOVE = "UPDATE {name} SET occurrence = ? WHERE rowid = ?"
_KNN = "SELECT rowid, distance, occurrence FROM {name} WHERE embedding MATCH ? AND k = ?"


def index_name(model: str, dimensions: int) -> str:
    """The ``vec0`` table of (model, dimensions): a name SQL can hold whatever the model is called."""
    return "vec_" + hashlib.sha256(f"{model}\0{dimensions}".encode()).hexdigest()[:16]


@functools.cache
def index_problem() -> str | None:
    """Why the sqlite-vec index cannot be used in this process (None: it can): apsw or sqlite-vec missing,
    or the extension refusing to load."""
    try:
        conn = _apsw_connect(":memory:")
    except ImportError as exc:
        return f"{exc.name or 'apsw or sqlite-vec'} is not installed"
    except Exception as exc:  # apsw's errors: the extension did not load
        return f"sqlite-vec did not load: {exc}"
    conn.close()
    return None


def _apsw_connect(path: str) -> Any:
    import apsw
    import sqlite_vec

    flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if path == ":memory:" else 0)
    conn = apsw.Connection(path, flags=flags)
    try:
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        conn.set_busy_timeout(_BUSY_MS)
        # vec0 keeps its vectors in chunk blobs of 1,024 (6 MB at 1536 dimensions): with SQLite's default
        # 2 MB page cache every insert rereads its chunk (the index build measured 4x slower).
        conn.execute(_CACHE)
    except BaseException:
        conn.close()
        raise
    return conn


def open_store(path: str | Path, engine: str | None = None) -> Store:
    """The checkpoint at `path` opened for search with `engine` (None: sqlite-vec when it loads and the file
    is writable, else exact). Raises ConfigError when there is no checkpoint there."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}")
    why = "asked for" if engine == "exact" else None
    if engine != "exact":
        why = index_problem() or (None if _writable(path) else "the checkpoint is not writable")
        if why is not None and engine == "sqlite-vec":
            raise ConfigError(f"cannot use the sqlite-vec index: {why}")
    try:
        if why is None:
            conn, engine = _apsw_connect(str(path)), "sqlite-vec"
        else:  # (used from one thread at a time, not always the one that opened it: anyio's worker threads)
            uri, timeout = readonly_uri(path), _BUSY_MS / 1000
            conn, engine = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False), "exact"
        tables = {row[0] for row in conn.execute(_TABLES)}
    except Exception as exc:  # sqlite3's or apsw's: not a database, unreadable
        raise ConfigError(f"cannot read checkpoint {path}: {exc}") from None
    store = Store(conn, engine, path, why)
    if not CHECKPOINT_TABLES <= tables:
        store.close()
        raise ConfigError(f"{path} is not a snipstream checkpoint (no records table)")
    store.has_vectors = "vectors" in tables
    return store


def _writable(path: Path) -> bool:
    """The index writes to the file, and WAL mode to the -wal and -shm files beside it."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


class Store:
    """An open checkpoint to search; one SQLite library behind it (see the module's docstring, "Locks").
    `engine` is ``sqlite-vec`` or ``exact``; `fallback` says why the index is not used, when it is not."""

    def __init__(self, conn: Any, engine: str, path: Path, fallback: str | None) -> None:
        self.conn, self.engine, self.path, self.fallback = conn, engine, path, fallback
        self.has_vectors = False
        self._synced: dict[Pair, Synced] = {}

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def pairs(self) -> list[Pair]:
        """The (model, dimensions) the checkpoint holds vectors of, the newest first ([] for none)."""
        if not self.has_vectors:
            return []
        return [Pair(*row) for row in self.conn.execute(VECTOR_PAIRS)]

    def current(self, pair: Pair) -> dict[int, int]:
        """The current vectors of `pair`: vector rowid → the rowid of its place's occurrence."""
        places: dict[int, int] = {}
        for vector, occurrence in self.conn.execute(_CURRENT, (pair.model, pair.dimensions)):
            if occurrence > places.get(vector, -1):  # current at two places: the one written last
                places[vector] = occurrence
        return places

    def sync(self, pair: Pair) -> Synced | None:
        """With the sqlite-vec engine, bring the index of `pair` up to date (once per store); None for the
        exact scan, which has no index. SQLite's errors (a lock held too long, a full disk) are raised as
        CheckpointError, as `nearest`'s."""
        if self.engine != "sqlite-vec":
            return None
        if pair not in self._synced:
            with self._errors():
                self._synced[pair] = Index(self, pair).sync()
        return self._synced[pair]

    @contextmanager
    def _errors(self) -> Iterator[None]:
        kinds: tuple[type[BaseException], ...] = (sqlite3.Error,)
        if self.engine == "sqlite-vec":
            import apsw

            kinds += (apsw.Error,)
        try:
            yield
        except kinds as exc:
            raise CheckpointError(f"cannot search checkpoint {self.path}: {exc}") from None

    def nearest(self, pair: Pair, query: bytes, k: int) -> list[Hit]:
        """The `k` current vectors of `pair` nearest to `query` (float32 bytes), best first (the index is
        synced first, unless `sync` did it already)."""
        self.sync(pair)
        with self._errors():
            found = (
                Index(self, pair).knn(query, k) if self.engine == "sqlite-vec" else self._scan(pair, query, k)
            )
            return [self._hit(vector, occurrence, score) for vector, occurrence, score in found]

    def _scan(self, pair: Pair, query: bytes, k: int) -> list[tuple[int, int, float]]:
        """The exact search over the current vectors (`sinks.vector_scan`)."""
        rows = self.conn.execute(_VECTORS, (pair.model, pair.dimensions))
        return exact_nearest(rows, self.current(pair), query, k, chunk=_CHUNK, tie=TIE)

    def _hit(self, vector: int, occurrence: int, score: float) -> Hit:
        record_id, annotation_id, line = next(iter(self.conn.execute(_PLACE, (vector, occurrence))))
        place = orjson.loads(line)
        return Hit(
            record_id=record_id,
            score=score,
            path=place["path"],
            qualname=place["qualname"],
            kind=place.get("kind", ""),
            language=place.get("language", ""),
            start_line=int(place.get("start_line") or 0),
            end_line=int(place.get("end_line") or 0),
            code=place.get("code", ""),
            annotation=self._annotation(annotation_id),
        )

    def _annotation(self, record_id: str | None) -> str | None:
        if record_id is None:
            return None
        for (result,) in self.conn.execute(_ANNOTATION, (record_id,)):
            text = orjson.loads(result).get("annotation")
            return text if isinstance(text, str) else None
        return None


@contextmanager
def _transaction(conn: Any, begin: str) -> Iterator[None]:
    """`begin` … COMMIT on an apsw connection (which never begins one itself), rolled back on error."""
    conn.execute(begin)
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Index:
    """The sqlite-vec index of one (model, dimensions) in a store opened with the ``sqlite-vec`` engine."""

    def __init__(self, store: Store, pair: Pair) -> None:
        assert store.engine == "sqlite-vec", "the index needs the sqlite-vec engine"
        self.store, self.pair, self.conn = store, pair, store.conn
        self.name = index_name(pair.model, pair.dimensions)

    def _state(self) -> tuple[int, int, int, float]:
        return tuple(next(iter(self.conn.execute(_STATE, (self.pair.model, self.pair.dimensions)))))

    def sync(self) -> Synced:
        """Bring the index up to the checkpoint's current vectors; skipped when nothing changed since the
        last sync. Written `_CHUNK` vectors a transaction: a run committing meanwhile waits for one chunk,
        never for a whole build (its busy timeout is seconds), and a sync interrupted half-way leaves an
        index the next one completes. Each chunk skips what another search's sync has added meanwhile."""
        if "touched" not in {row[1] for row in self.conn.execute("PRAGMA table_info(vector_index)")}:
            self.conn.execute("DROP TABLE IF EXISTS vector_index")  # an older layout: the markers are a cache
        self.conn.execute(_MARKERS)
        state = self._state()
        if tuple(next(iter(self.conn.execute(_MARKER, (self.name,))), ())) == state:
            return Synced(0, 0, 0, True)
        self.conn.execute(_VEC0.format(name=self.name, dims=self.pair.dimensions))
        with _transaction(self.conn, "BEGIN"):  # one snapshot of both
            current = self.store.current(self.pair)
            indexed = dict(self.conn.execute(_INDEXED.format(name=self.name)))
        removed = [(rowid,) for rowid in indexed.keys() - current.keys()]
        moved = [(current[r], r) for r in indexed.keys() & current.keys() if indexed[r] != current[r]]
        added = [(current[r], r) for r in sorted(current.keys() - indexed.keys())]
        inserted = 0
        for sql, rows in ((_REMOVE, removed), (_MOVE, moved), (_ADD, added)):
            for start in range(0, len(rows), _CHUNK):
                with _transaction(self.conn, "BEGIN IMMEDIATE"):
                    chunk = rows[start : start + _CHUNK]
                    if sql is _ADD:
                        chunk = self._absent(chunk)
                        inserted += len(chunk)
                    self.conn.executemany(sql.format(name=self.name), chunk)
        # The state read before the vectors: a commit in between makes the next search sync again.
        self.conn.execute(_SET_MARKER, (self.name, self.pair.model, self.pair.dimensions, *state))
        return Synced(inserted, len(removed), len(moved), False)

    def _absent(self, rows: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The (occurrence, vector) rows whose vector is not in the index yet."""
        marks = ",".join("?" * len(rows))
        present = {
            r
            for (r,) in self.conn.execute(_PRESENT.format(name=self.name, marks=marks), [r for _, r in rows])
        }
        return [row for row in rows if row[1] not in present]

    def knn(self, query: bytes, k: int) -> list[tuple[int, int, float]]:
        """(vector rowid, occurrence rowid, cosine similarity) of the `k` nearest, best first; a few more are
        asked for, so that ties at the last place are broken as the exact scan breaks them (`_top`)."""
        rows = self.conn.execute(_KNN.format(name=self.name), (query, min(MAX_K, k + 8)))
        found = [(rowid, occurrence, 1.0 - distance) for rowid, distance, occurrence in rows]
        return sorted(found, key=lambda f: (-round(f[2], TIE), f[0]))[:k]
