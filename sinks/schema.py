"""The checkpoint's schema: its tables, as named append-only migrations, and the typed rows written to them.

Tables (created by the migrations in `MIGRATIONS`, each recorded by name in ``migrations`` when applied):

- ``records``: one row per paid-for answer, keyed by record id (snippet id + task fingerprint); status
  ``done`` with the result, or ``failed`` with the reason and every attempt's error.
- ``occurrences``: one row per place a record's snippet was found (record id + path + qualname), holding
  the exact NDJSON line and whether it has been emitted.
- ``outputs``: for each output file, the byte offset up to which every line is known whole and emitted.
- ``skips``: files passed over, with the reason. ``runs``: one row per run with its summary.
- ``files``: per task, files whose snippets were all done (or that were skipped for their content), with
  size, mtime and content hash, so an unchanged file is not parsed again.
- Batch mode (`stream.batch`): ``batch_files`` (one row per batch input file: its local path, state, and the
  provider's file and batch ids once known), ``batch_lines`` (which record went into which file, at which
  line), ``batch_places`` (the places waiting for a record's answer, with their snippet), ``batch_tasks``
  (what a record's task is, for collecting without the run's options) and ``batch_reasks`` (a structured
  reply that did not validate, re-asked by the next submit).
- Quality (0004): ``records.flags``, the cleaning step's reasons as a JSON array, and ``records.score``, the
  judge's score.
- Embeddings (0006): ``vectors`` (one float32 vector per embed record, with its model and dimension, and the
  annotation embedded with the code), read by `sinks.vectors` and indexed there with sqlite-vec.
- Near-duplicates (0005): ``near_dup_snippets`` (each grouped snippet's group, and whether it is the group's
  first) and ``near_dup_bands`` (LSH band key → group), written and read by `sinks.neardup`.
- Batch embeddings (0007): ``batch_inputs`` (each record of an embeddings batch line: its position in the
  line's inputs, its tokens, whether it was cut, the annotation embedded).

A migration, once released, is never edited: a change to the schema is a new migration at the end.

The rows are NamedTuples where callers unpack them as tuples (a file's index entry, a skip, a place) and
frozen dataclasses for the answers (`Done`, `Failed`), which are only read by attribute.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "MIGRATIONS",
    "MIGRATIONS_TABLE",
    "CHECKPOINT_TABLES",
    "pending_migrations",
    "statements",
    "Occurrence",
    "Done",
    "Vector",
    "Failed",
    "SkipRow",
    "FileRow",
    "KnownFile",
]

#: The table that records which migrations were applied (name → time).
MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"

#: (name, SQL script), in the order they are applied. Append only.
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
    (
        "0003_batches",
        """
        CREATE TABLE batch_files (
            name TEXT PRIMARY KEY,
            path TEXT NOT NULL,
            state TEXT NOT NULL,
            lines INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0,
            base_url TEXT,
            endpoint TEXT NOT NULL,
            file_id TEXT,
            batch_id TEXT,
            status TEXT,
            output_file_id TEXT,
            error_file_id TEXT,
            counts BLOB,
            errors BLOB,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE batch_lines (
            record_id TEXT NOT NULL,
            name TEXT NOT NULL REFERENCES batch_files(name),
            line INTEGER NOT NULL,
            task TEXT NOT NULL,
            PRIMARY KEY (record_id, name)
        );
        CREATE INDEX batch_lines_name ON batch_lines(name, line);
        CREATE TABLE batch_places (
            occurrence_id TEXT PRIMARY KEY,
            record_id TEXT NOT NULL,
            snippet BLOB NOT NULL
        );
        CREATE INDEX batch_places_record ON batch_places(record_id);
        CREATE TABLE batch_tasks (
            fingerprint TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            info BLOB NOT NULL,
            schema BLOB
        );
        CREATE TABLE batch_reasks (
            record_id TEXT PRIMARY KEY,
            followup BLOB NOT NULL
        )
        """,
    ),
    (
        # The answer's quality (`stream.clean`, `stream.judge`): ``flags`` is the cleaning step's verdict, a
        # JSON array of reasons (``[]``: clean; NULL: answered before cleaning existed, checked on export);
        # ``score`` is the judge's score 1-5 (NULL: not judged). The judge's finding is in the result blob.
        "0004_quality",
        """
        ALTER TABLE records ADD COLUMN flags TEXT;
        ALTER TABLE records ADD COLUMN score INTEGER
        """,
    ),
    (
        # Near-duplicate code (`stream.neardup`, `sinks.neardup`): one ``near_dup_snippets`` row per distinct
        # snippet big enough to group, with its group and whether it is the group's first in walk order
        # (``first = 1``: the one asked under --near-dup ask-once); ``near_dup_bands`` maps the LSH band keys
        # of each group's first snippet to the group, looked up per file.
        "0005_near_dups",
        """
        CREATE TABLE near_dup_snippets (
            snippet_id TEXT PRIMARY KEY,
            grp INTEGER NOT NULL,
            first INTEGER NOT NULL,
            path TEXT NOT NULL,
            qualname TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX near_dup_members ON near_dup_snippets(grp) WHERE first = 0;
        CREATE TABLE near_dup_bands (
            key INTEGER PRIMARY KEY,
            grp INTEGER NOT NULL
        )
        """,
    ),
    (
        # Embeddings (``--task embed``, `stream.embeddings`): one ``vectors`` row per embed record, its vector
        # as float32 little-endian (``dimensions`` × 4 bytes) with the model that made it; ``annotation_id``
        # is the record whose answer was embedded with the code (NULL: the code alone). The rowid is the
        # vector index's key (`sinks.vectors`). ``occurrences_place`` finds a place's newest record.
        "0006_vectors",
        """
        CREATE TABLE vectors (
            record_id TEXT NOT NULL UNIQUE REFERENCES records(record_id),
            snippet_id TEXT NOT NULL,
            model TEXT NOT NULL,
            dimensions INTEGER NOT NULL,
            vector BLOB NOT NULL,
            annotation_id TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX vectors_model ON vectors(model, dimensions);
        CREATE INDEX occurrences_place ON occurrences(path, qualname, created_at)
        """,
    ),
    (
        # Batch mode's embeddings lines (`stream.batch.embed_lines`): a line carries many records, each with a
        # ``batch_lines`` row (the same line number); ``batch_inputs`` holds each one's place in the line's
        # ``input`` array (``position``, from 0), its token count (its share of the line's usage), whether its
        # text was cut to the per-input limit, and the annotation embedded with the code (NULL: the code alone).
        "0007_batch_inputs",
        """
        CREATE TABLE batch_inputs (
            record_id TEXT NOT NULL,
            name TEXT NOT NULL REFERENCES batch_files(name),
            position INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            truncated INTEGER NOT NULL,
            annotation_id TEXT,
            PRIMARY KEY (record_id, name)
        )
        """,
    ),
]

#: The tables every checkpoint has since the first migration: what makes a database a checkpoint.
CHECKPOINT_TABLES = frozenset({"records", "occurrences", "runs", "skips"})


def pending_migrations(applied: Collection[str]) -> list[tuple[str, str]]:
    """The migrations not yet applied, in order."""
    return [(name, sql) for name, sql in MIGRATIONS if name not in applied]


def statements(script: str) -> list[str]:
    """A migration's script as its single statements (no statement of the schema holds a ``;``)."""
    return [s for s in script.split(";") if s.strip()]


# --- rows ---------------------------------------------------------------------------------------------------


class Occurrence(NamedTuple):
    """One place of an answer: the ``occurrences`` row without its record id, emitted flag and time."""

    occurrence_id: str
    path: str
    qualname: str
    line: bytes  # the exact NDJSON line, newline included


@dataclass(frozen=True, slots=True)
class Done:
    """A successful answer and the line(s) it produces."""

    record_id: str
    snippet_id: str
    task: str
    model: str
    result: bytes  # orjson of the annotation and response metadata, reused for new occurrences
    attempts: int
    occurrences: Sequence[Occurrence]
    flags: str | None = None  # the cleaning reasons as a JSON array (``[]``: clean; None: not checked)
    score: int | None = None  # the judge's score 1-5 (None: not judged)
    vector: Vector | None = None  # an embed record's vector (`--task embed`)


class Vector(NamedTuple):
    """An embed record's vector as stored: its model, size, float32 bytes, and the annotation embedded."""

    model: str
    dimensions: int
    data: bytes  # float32 little-endian, dimensions × 4 bytes
    annotation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """An answer that could not be had, with the reason and every attempt's error."""

    record_id: str
    snippet_id: str
    task: str
    model: str
    reason: str
    error: str  # every attempt's reason, one per line
    attempts: int
    path: str
    qualname: str


class SkipRow(NamedTuple):
    """A file passed over: the ``skips`` row without its run id."""

    file: str  # the file's absolute path (or the argument, for a walk-level skip): the key
    path: str  # as shown, relative to the root it was found under
    reason: str
    detail: str


class KnownFile(NamedTuple):
    """What the ``files`` index remembers of one file for one task."""

    size: int
    mtime_ns: int
    hash: str
    snippets: int
    skip_reason: str | None = None
    skip_detail: str | None = None


class FileRow(NamedTuple):
    """One ``files`` row as written: the file and task it is keyed by, and what is known of the file."""

    file: str
    task: str
    known: KnownFile

    def params(self) -> tuple[Any, ...]:
        """The row's columns, in the order of the table."""
        return (self.file, self.task, *self.known)
