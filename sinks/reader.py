"""The read-only side of the checkpoint: one synchronous reader (stdlib sqlite3) and every query of the reports.

`snipstream status`, `plan` and `export` read the checkpoint through `open_readonly`; the queries they need
are the methods of `Reader`, each returning named rows. Stored answers are read back by JSON path
(``json_extract``) in SQL, so a report never loads every result into Python.

The database is opened read-only (``mode=ro``) and the run's ``flock`` is never touched, so a report works
while a run holds the checkpoint: in WAL mode a reader sees the last committed state and never blocks the
writer. The path goes into a ``file:`` URI percent-encoded (`readonly_uri`): names with ``?``, ``#`` or ``%``
stay file names. Every SQLite error is raised as a ConfigError naming the checkpoint.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from stream.errors import ConfigError

from .neardup import GroupCounts, group_counts
from .schema import CHECKPOINT_TABLES

#: The (model, dimensions) pairs of the checkpoint's vectors and their counts, the most recently stored first.
VECTOR_PAIRS = (
    "SELECT model, dimensions, count(*) FROM vectors GROUP BY model, dimensions ORDER BY max(rowid) DESC"
)

__all__ = [
    "VECTOR_PAIRS",
    "open_readonly",
    "readonly_uri",
    "Reader",
    "RunRow",
    "TaskTotals",
    "Places",
    "FailureExample",
    "History",
    "Quality",
    "ExportPlace",
]


def readonly_uri(path: str | Path) -> str:
    """The ``file:`` URI that opens `path` read-only; as_uri() percent-encodes ``?``, ``#`` and ``%``."""
    return f"{Path(path).absolute().as_uri()}?mode=ro"


def open_readonly(path: str | Path) -> Reader:
    """Open a checkpoint read-only for reports; raises ConfigError when it is missing or not a checkpoint.

    No lock is taken: a run holding the checkpoint goes on writing while this reads its committed state.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path} (give its path with --db)")
    try:
        conn = sqlite3.connect(readonly_uri(path), uri=True, timeout=10.0)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open checkpoint {path}: {exc}") from None
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        conn.close()
        raise ConfigError(f"cannot read checkpoint {path}: {exc}") from None
    if not CHECKPOINT_TABLES <= tables:
        conn.close()
        raise ConfigError(f"{path} is not a snipstream checkpoint (no records table)")
    return Reader(conn, path)


# --- rows ---------------------------------------------------------------------------------------------------


class RunRow(NamedTuple):
    """One ``runs`` row; `config` and `summary` are the stored JSON blobs (None while unset)."""

    run_id: int
    started_at: float
    finished_at: float | None
    config: bytes | None
    summary: bytes | None


class TaskTotals(NamedTuple):
    """The answers of one (task fingerprint, model), summed from their stored results."""

    fingerprint: str
    model: str
    done: int
    failed: int
    truncated: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    usage_estimated: int
    template: str | None  # the template name stored with the results (failures do not carry one)


class Places(NamedTuple):
    """Places (NDJSON lines) in the checkpoint, and how many are committed but not yet written."""

    total: int
    unwritten: int


class FailureExample(NamedTuple):
    """A failure reason, how many records failed with it, and its first place (by path, qualname)."""

    reason: str
    count: int
    path: str
    qualname: str
    error: str | None  # every attempt's error, one per line


class Quality(NamedTuple):
    """The done answers' quality: the cleaning step's reasons and the judge's scores (`stream.clean`,
    `stream.judge`). Empty on a checkpoint last written before migration 0004 (the reader never migrates)."""

    checked: int  # answers the cleaning step looked at (records.flags set)
    flagged: int  # of those, answers with at least one reason
    reasons: dict[str, int]  # reason -> answers marked with it
    scores: dict[int, int]  # judge score 1-5 -> answers
    unjudged: int  # done answers with no score
    judge_tokens: dict[str, tuple[int, int, int]]  # model -> the judgments' prompt, completion, cached tokens


class History(NamedTuple):
    """Completion tokens per done answer of one task fingerprint: the mean, over this many answers."""

    mean: float
    answers: int


class ExportPlace(NamedTuple):
    """A place of a done answer in the export order; the first place of each answer carries its line and
    the answer's quality (``records.flags``, ``records.score``; both NULL in a checkpoint from before them)."""

    nth: int  # 1 for the answer's first place
    line: bytes | None  # the stored NDJSON line, only when nth == 1
    flags: str | None = None  # JSON array of cleaning reasons; None: not checked (or not the first place)
    score: int | None = None  # the judge's score 1-5; None: not judged


# --- queries ------------------------------------------------------------------------------------------------

_TASK_TOTALS = """
SELECT task, model, sum(status = 'done'), sum(status = 'failed'),
       coalesce(sum(json_extract(j, '$.truncated')), 0),
       coalesce(sum(json_extract(j, '$.response.usage.prompt_tokens')), 0),
       coalesce(sum(json_extract(j, '$.response.usage.completion_tokens')), 0),
       coalesce(sum(json_extract(j, '$.response.usage.completion_tokens_details.reasoning_tokens')), 0),
       coalesce(sum(json_extract(j, '$.response.usage.prompt_tokens_details.cached_tokens')), 0),
       coalesce(sum(json_extract(j, '$.response.usage_estimated')), 0),
       max(json_extract(j, '$.task.template'))
FROM (SELECT task, model, status, CAST(result AS TEXT) AS j FROM records)
GROUP BY task, model
"""

_FLAG_REASONS = """
SELECT f.value, count(*) FROM records r, json_each(r.flags) f
WHERE r.status = 'done' AND r.flags IS NOT NULL GROUP BY f.value
"""
_FLAGGED = """
SELECT count(*), coalesce(sum(json_array_length(flags) > 0), 0) FROM records
WHERE status = 'done' AND flags IS NOT NULL
"""
_SCORES = "SELECT score, count(*) FROM records WHERE status = 'done' GROUP BY score"
_JUDGE_TOKENS = """
SELECT model, coalesce(sum(json_extract(j, '$.judge.usage.prompt_tokens')), 0),
       coalesce(sum(json_extract(j, '$.judge.usage.completion_tokens')), 0),
       coalesce(sum(json_extract(j, '$.judge.usage.prompt_tokens_details.cached_tokens')), 0)
FROM (SELECT model, CAST(result AS TEXT) AS j FROM records WHERE status = 'done')
WHERE json_extract(j, '$.judge') IS NOT NULL GROUP BY model
"""

_HISTORY = """
SELECT task, AVG(json_extract(CAST(result AS TEXT), '$.response.usage.completion_tokens')), COUNT(*)
FROM records WHERE status = 'done' AND task IN ({marks}) GROUP BY task
"""

# Every place of every done answer in the export order (path, start line), numbered per answer: the first
# (nth = 1) carries the line, the others only count. SQLite sorts, spilling to temporary files when large.
_EXPORT_PLACES = """
WITH places AS (
    SELECT o.occurrence_id AS oid, o.record_id AS rid, o.path AS path, o.qualname AS qualname,
           json_extract(CAST(o.line AS TEXT), '$.start_line') AS start_line
    FROM occurrences o JOIN records r ON r.record_id = o.record_id
    WHERE r.status = 'done' {models}
), ranked AS (
    SELECT oid, path, start_line, qualname,
           row_number() OVER (PARTITION BY rid ORDER BY path, start_line, qualname, oid) AS nth
    FROM places
)
SELECT ranked.nth, CASE WHEN ranked.nth = 1 THEN o.line END,
       CASE WHEN ranked.nth = 1 THEN {flags} END, CASE WHEN ranked.nth = 1 THEN {score} END
FROM ranked JOIN occurrences o ON o.occurrence_id = ranked.oid JOIN records r ON r.record_id = o.record_id
ORDER BY ranked.path, ranked.start_line, ranked.qualname, ranked.oid
"""

# Done answers per model, the most first: what --model can choose from.
_DONE_MODELS = (
    "SELECT model, count(*) FROM records WHERE status = 'done' GROUP BY model ORDER BY count(*) DESC, model"
)


class Reader:
    """A checkpoint open read-only (from `open_readonly`); ``with`` closes it. Use `snapshot()` around
    several queries whose numbers must agree with each other."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every query inside sees the same committed state."""
        with self._reading():
            self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.rollback()

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot read checkpoint {self.path}: {exc}") from None

    # --- status ------------------------------------------------------------------------------------------

    def runs(self) -> list[RunRow]:
        """Every run, oldest first."""
        with self._reading():
            sql = "SELECT run_id, started_at, finished_at, config, summary FROM runs ORDER BY run_id"
            return [RunRow(*row) for row in self.conn.execute(sql)]

    def task_totals(self) -> list[TaskTotals]:
        """Done and failed answers, and the token usage stored with them, by task fingerprint and model."""
        with self._reading():
            return [TaskTotals(*row) for row in self.conn.execute(_TASK_TOTALS)]

    def places(self) -> Places:
        with self._reading():
            sql = "SELECT count(*), coalesce(sum(emitted = 0), 0) FROM occurrences"
            return Places(*self.conn.execute(sql).fetchone())

    def failure_examples(self, limit: int) -> list[FailureExample]:
        """The `limit` most common failure reasons, each with its first place: stable from run to run."""
        out = []
        with self._reading():
            reasons = self.conn.execute(
                "SELECT reason, count(*) FROM records WHERE status = 'failed' GROUP BY reason "
                "ORDER BY count(*) DESC, reason LIMIT ?",
                (limit,),
            ).fetchall()
            for reason, count in reasons:
                path, qualname, error = self.conn.execute(
                    "SELECT path, qualname, error FROM records WHERE status = 'failed' AND reason = ? "
                    "ORDER BY path, qualname LIMIT 1",
                    (reason,),
                ).fetchone()
                out.append(FailureExample(reason, count, path, qualname, error))
        return out

    def failure_reasons(self) -> int:
        """How many distinct failure reasons there are."""
        with self._reading():
            sql = "SELECT count(DISTINCT reason) FROM records WHERE status = 'failed'"
            return int(self.conn.execute(sql).fetchone()[0])

    def skips_by_reason(self) -> dict[str, int]:
        """Skipped files by reason (the latest reason per file), the most common first."""
        with self._reading():
            sql = "SELECT reason, count(*) FROM skips GROUP BY reason ORDER BY count(*) DESC, reason"
            return dict(self.conn.execute(sql).fetchall())

    def near_dups(self) -> GroupCounts | None:
        """Groups of near-duplicate code and their later members (None before migration 0005)."""
        with self._reading():
            return group_counts(self.conn)

    def vector_pairs(self) -> list[tuple[str, int, int]]:
        """(model, dimensions, vectors) of `--task embed`'s vectors, newest first ([] before migration 0006)."""
        with self._reading():
            if not self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'vectors'").fetchone():
                return []
            return [tuple(row) for row in self.conn.execute(VECTOR_PAIRS)]

    def quality(self) -> Quality:
        """Cleaning reasons and judge scores of the done answers, and the judgments' tokens by model."""
        columns = self._record_columns()
        if not {"flags", "score"} <= columns:  # (a checkpoint from before migration 0004)
            with self._reading():
                done = self.conn.execute("SELECT count(*) FROM records WHERE status = 'done'").fetchone()[0]
            return Quality(0, 0, {}, {}, int(done), {})
        with self._reading():
            checked, flagged = self.conn.execute(_FLAGGED).fetchone()
            reasons = dict(self.conn.execute(_FLAG_REASONS).fetchall())
            scores = dict(self.conn.execute(_SCORES).fetchall())
            rows = self.conn.execute(_JUDGE_TOKENS).fetchall()
        tokens = {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in rows}
        unjudged = int(scores.pop(None, 0))
        return Quality(int(checked), int(flagged), reasons, scores, unjudged, tokens)

    # --- plan --------------------------------------------------------------------------------------------

    def completion_history(self, fingerprints: Collection[str]) -> dict[str, History]:
        """Mean completion tokens per done answer, and how many answers, by task fingerprint."""
        if not fingerprints:
            return {}
        sql = _HISTORY.format(marks=",".join("?" * len(fingerprints)))
        with self._reading():
            rows = self.conn.execute(sql, sorted(fingerprints)).fetchall()
        return {task: History(float(mean), int(count)) for task, mean, count in rows if mean is not None}

    # --- export ------------------------------------------------------------------------------------------

    def failed_count(self) -> int:
        """How many records failed (they have no answer to export)."""
        with self._reading():
            sql = "SELECT count(*) FROM records WHERE status = 'failed'"
            return int(self.conn.execute(sql).fetchone()[0])

    def done_models(self) -> dict[str, int]:
        """Done answers per model (the model asked), the most common first."""
        with self._reading():
            return dict(self.conn.execute(_DONE_MODELS).fetchall())

    def _record_columns(self) -> set[str]:
        with self._reading():
            return {row[1] for row in self.conn.execute("PRAGMA table_info(records)")}

    def export_places(self, models: Sequence[str] = ()) -> Iterator[ExportPlace]:
        """Every place of every done answer (of these models, when given) in the export order: path, start
        line, qualname. Streamed: SQLite sorts, spilling to disk, so memory does not grow with the table.

        A checkpoint last written before the quality columns (migration 0004) reads them as NULL: the
        reader never migrates, so it works on a checkpoint a run of an older version still holds."""
        where = f"AND r.model IN ({','.join('?' * len(models))})" if models else ""
        columns = self._record_columns()
        sql = _EXPORT_PLACES.format(
            models=where,
            flags="r.flags" if "flags" in columns else "NULL",
            score="r.score" if "score" in columns else "NULL",
        )
        with self._reading():
            for row in self.conn.execute(sql, tuple(models)):
                yield ExportPlace(*row)
