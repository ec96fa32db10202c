"""The status report: what a checkpoint holds, collected into one JSON-able dict (rendered by `stream.render`).

The report (``snipstream status`` prints it as a table on stderr, or with ``--json`` as one JSON line):

- answers by task (template name and the first 8 characters of its fingerprint) and model: done, failed,
  truncated, prompt/completion tokens of the stored answers (the final attempt's usage; retried attempts
  are not in the checkpoint) and their cost from the dated price table in `stream.prices` (``n/a`` for a
  model it does not list);
- places (NDJSON lines) and how many are committed but not yet written;
- the most common failure reasons, each with an example place and its last error line;
- skipped files by reason (the latest reason recorded per file, over every run);
- the answers' quality: how many the cleaning step (`stream.clean`) marked, by reason, and the judge's
  score distribution (``--task judge``: answers per score 1-5, and unjudged) with the judgments' tokens;
- the number of runs, the requests they sent, and the last run's start, finish and summary.

How many snippets are *pending* cannot be known from the checkpoint alone: that takes a walk of the tree.
The report shows what the last run's summary says was left (failed, or not reached when it stopped early);
``snipstream run --dry-run`` counts what a run would send now.

The checkpoint is read through `sinks.reader` (read-only, no lock: it works while a run writes it). All
queries run in one read transaction, so the numbers agree with each other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from sinks.reader import Quality, Reader, RunRow, TaskTotals, open_readonly

from .clean import REASONS
from .prices import PRICES_DATE, estimate_cost

__all__ = ["status", "collect", "held_by_a_run"]

_TOP_FAILURES = 10
_TOTALS = (
    "done",
    "failed",
    "truncated",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "usage_estimated",
)


def status(db: str | Path) -> dict[str, Any]:
    """The report on the checkpoint `db`; raises ConfigError when there is no readable checkpoint there."""
    with open_readonly(db) as reader:
        return collect(reader, db=str(db), held=held_by_a_run(db))


def collect(reader: Reader, *, db: str = "", held: bool | None = None) -> dict[str, Any]:
    """Everything the report shows, as one JSON-able dict (the ``--json`` output)."""
    with reader.snapshot():  # one snapshot for every query below
        runs = reader.runs()
        tasks = _tasks(reader.task_totals(), _template_names(runs))
        places = reader.places()
        failures = [
            {
                "reason": f.reason,
                "count": f.count,
                "example": f"{f.path}:{f.qualname}",
                "error": _last_line(f.error),
            }
            for f in reader.failure_examples(_TOP_FAILURES)
        ]
        failure_reasons = reader.failure_reasons()
        skipped = reader.skips_by_reason()
        quality = _quality(reader.quality())
        near = reader.near_dups()
        vectors = reader.vector_pairs()
    last = _last_run(runs[-1]) if runs else None
    return {
        "db": db,
        "running": held,
        "tasks": tasks,
        "totals": _totals(tasks),
        "places": {"total": places.total, "unwritten": places.unwritten},
        "failures": failures,
        "failure_reasons": failure_reasons,
        "skipped": skipped,
        "quality": quality,
        "near_dups": None if near is None else {"groups": near.groups, "members": near.members},
        "vectors": [{"model": m, "dimensions": d, "count": n} for m, d, n in vectors],
        "runs": {
            "count": len(runs),
            "requests": sum(int(_loads(r.summary).get("requests") or 0) for r in runs),
            "last": last,
        },
        "pending": _pending(last),
        "prices_date": PRICES_DATE,
    }


def _config_tasks(config: dict[str, Any]) -> list[dict[str, Any]]:
    """A run's tasks as stored with it: ``tasks: [{name, fingerprint}]`` (or an older ``template: {...}``)."""
    tasks = config.get("tasks")
    if not isinstance(tasks, list):
        tasks = [config.get("template")]
    return [t for t in tasks if isinstance(t, dict) and t.get("fingerprint")]


def _template_names(runs: list[RunRow]) -> dict[str, str]:
    """Fingerprint → template name, from the runs' stored settings (failed records do not carry it)."""
    names: dict[str, str] = {}
    for run in runs:
        for task in _config_tasks(_loads(run.config)):
            names[str(task["fingerprint"])] = str(task.get("name") or "?")
    return names


def _tasks(rows: list[TaskTotals], names: dict[str, str]) -> list[dict[str, Any]]:
    tasks = [
        {
            "template": row.template or names.get(row.fingerprint) or "?",
            "fingerprint": row.fingerprint,
            "model": row.model,
            "done": row.done,
            "failed": row.failed,
            "truncated": row.truncated,
            "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens,  # reasoning tokens included, as they are billed
            "reasoning_tokens": row.reasoning_tokens,
            "cached_tokens": row.cached_tokens,
            "usage_estimated": row.usage_estimated,
            "cost_usd": estimate_cost(row.model, row.prompt_tokens, row.completion_tokens, row.cached_tokens),
        }
        for row in rows
    ]
    return sorted(tasks, key=lambda t: (t["template"], t["model"], t["fingerprint"]))


def _totals(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {key: sum(t[key] for t in tasks) for key in _TOTALS}
    priced = [t["cost_usd"] for t in tasks if t["cost_usd"] is not None]
    totals["cost_usd"] = sum(priced) if priced else None
    totals["unpriced_models"] = sorted({t["model"] for t in tasks if t["cost_usd"] is None})
    return totals


def _quality(q: Quality) -> dict[str, Any]:
    """Cleaning: answers checked and flagged, by reason (in `stream.clean.REASONS` order); the judge: answers
    per score (every score 1-5 shown) and unjudged, and what the judgments cost by model."""
    reasons = {r: q.reasons[r] for r in REASONS if r in q.reasons}
    reasons.update({r: n for r, n in sorted(q.reasons.items()) if r not in reasons})
    tokens = [
        (model, p, c, cached, estimate_cost(model, p, c, cached))
        for model, (p, c, cached) in q.judge_tokens.items()
    ]
    priced = [t[4] for t in tokens if t[4] is not None]
    return {
        "checked": q.checked,
        "flagged": q.flagged,
        "flags": reasons,
        "judged": sum(q.scores.values()),
        "scores": {str(score): q.scores.get(score, 0) for score in range(1, 6)},
        "unjudged": q.unjudged,
        "judge_prompt_tokens": sum(t[1] for t in tokens),
        "judge_completion_tokens": sum(t[2] for t in tokens),
        "judge_cost_usd": sum(priced) if priced else None,
    }


def _last_run(run: RunRow) -> dict[str, Any]:
    """The last run, with its settings and summary."""
    config = _loads(run.config)
    return {
        "run_id": run.run_id,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "model": config.get("model"),
        "tasks": [str(t.get("name") or "?") for t in _config_tasks(config)],
        "paths": config.get("paths"),
        "summary": _loads(run.summary) or None,
    }


def _loads(blob: bytes | None) -> dict[str, Any]:
    if not blob:
        return {}
    try:
        data = orjson.loads(blob)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _pending(last: dict[str, Any] | None) -> dict[str, Any]:
    """What the last run's summary says it left unanswered; the checkpoint alone cannot know more."""
    note = "not knowable from the checkpoint alone (it needs a walk); `snipstream run --dry-run` counts it"
    summary = (last or {}).get("summary")
    if not summary:
        return {"known": False, "note": note}
    failed = sum((summary.get("failed") or {}).values())
    handled = sum(int(summary.get(k) or 0) for k in ("annotated", "reused", "unchanged")) + failed
    return {
        "known": False,
        "note": note,
        "last_run_failed": failed,
        "last_run_not_reached": max(0, int(summary.get("snippets") or 0) - handled),
        "last_run_walk_done": bool(summary.get("walk_done")),
    }


def _last_line(text: str | None) -> str | None:
    if not text:
        return None
    line = text.strip().splitlines()[-1] if text.strip() else ""
    return line if len(line) <= 160 else line[:157] + "..."


def held_by_a_run(path: str | Path) -> bool | None:
    """Whether some process holds a ``flock`` on the checkpoint (a run in progress), read from /proc/locks.

    Looking is all it does: taking the lock to test it could make a run starting at that moment fail.
    None where /proc/locks is not available (not Linux).
    """
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    device = (os.major(st.st_dev), os.minor(st.st_dev))
    return any(_locks(line, st.st_ino, device) for line in lines)


def _locks(line: str, inode: int, device: tuple[int, int]) -> bool:
    """Whether this /proc/locks line is a held flock on the file (`inode` on `device`)."""
    fields = line.split()
    # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF" (a "->" marks a waiter, one field more)
    if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
        return False
    try:
        major, minor, number = fields[5].split(":")
        return int(number) == inode and (int(major, 16), int(minor, 16)) == device
    except ValueError:
        return False
