"""``snipstream status``: what a checkpoint holds, read without disturbing a run that is writing it.

The report (a table on stderr, or ``--json``: one JSON line on stdout):

- answers by task (template name and the first 8 characters of its fingerprint) and model: done, failed,
  truncated, prompt/completion tokens of the stored answers (the final attempt's usage; retried attempts
  are not in the checkpoint) and their cost from the dated price table in `stream.tokens` (``n/a`` for a
  model it does not list);
- places (NDJSON lines) and how many are committed but not yet written;
- the most common failure reasons, each with an example place and its last error line;
- skipped files by reason (the latest reason recorded per file, over every run);
- the number of runs, the requests they sent, and the last run's start, finish and summary.

How many snippets are *pending* cannot be known from the checkpoint alone: that takes a walk of the tree.
The report shows what the last run's summary says was left (failed, or not reached when it stopped early);
``snipstream run --dry-run`` counts what a run would send now.

The database is opened read-only (``mode=ro``) and the run's ``flock`` is never touched, so ``status``
works while a run holds the checkpoint: in WAL mode a reader sees the last committed state and never
blocks the writer. All queries run in one read transaction, so the numbers agree with each other.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError
from .tokens import PRICES_DATE, estimate_cost

__all__ = ["add_parser", "run", "collect", "format_status", "open_readonly"]

EXIT_OK, EXIT_USAGE = 0, 2
_TOP_FAILURES = 10


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """Open a checkpoint read-only for reports; raises ConfigError when it is missing or not a checkpoint.

    No lock is taken: a run holding the checkpoint goes on writing while this reads its committed state.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path} (give its path with --db)")
    try:
        # as_uri() percent-encodes the path: names with '?', '#' or '%' stay file names.
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open checkpoint {path}: {exc}") from None
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        conn.close()
        raise ConfigError(f"cannot read checkpoint {path}: {exc}") from None
    if not {"records", "occurrences", "runs", "skips"} <= tables:
        conn.close()
        raise ConfigError(f"{path} is not a snipstream checkpoint (no records table)")
    return conn


# --- collecting --------------------------------------------------------------------------------------------


def collect(conn: sqlite3.Connection, *, db: str = "", held: bool | None = None) -> dict[str, Any]:
    """Everything the report shows, as one JSON-able dict (the ``--json`` output)."""
    conn.execute("BEGIN")  # one snapshot for every query below
    try:
        names = _template_names(conn)
        tasks = _tasks(conn, names)
        places, unwritten = conn.execute(
            "SELECT count(*), coalesce(sum(emitted = 0), 0) FROM occurrences"
        ).fetchone()
        failures = []
        for reason, count in conn.execute(
            "SELECT reason, count(*) FROM records WHERE status = 'failed' GROUP BY reason "
            "ORDER BY count(*) DESC, reason LIMIT ?",
            (_TOP_FAILURES,),
        ).fetchall():
            # the example is the first place with that reason: stable from one report to the next
            path, qualname, error = conn.execute(
                "SELECT path, qualname, error FROM records WHERE status = 'failed' AND reason = ? "
                "ORDER BY path, qualname LIMIT 1",
                (reason,),
            ).fetchone()
            failures.append(
                {
                    "reason": reason,
                    "count": count,
                    "example": f"{path}:{qualname}",
                    "error": _last_line(error),
                }
            )
        failure_reasons = conn.execute(
            "SELECT count(DISTINCT reason) FROM records WHERE status = 'failed'"
        ).fetchone()[0]
        skipped = dict(
            conn.execute("SELECT reason, count(*) FROM skips GROUP BY reason ORDER BY count(*) DESC, reason")
        )
        runs, requests, last = _runs(conn)
    finally:
        conn.rollback()
    totals = _totals(tasks)
    return {
        "db": db,
        "running": held,
        "tasks": tasks,
        "totals": totals,
        "places": {"total": places, "unwritten": unwritten},
        "failures": failures,
        "failure_reasons": failure_reasons,
        "skipped": skipped,
        "runs": {"count": runs, "requests": requests, "last": last},
        "pending": _pending(last),
        "prices_date": PRICES_DATE,
    }


def _config_tasks(config: dict[str, Any]) -> list[dict[str, Any]]:
    """A run's tasks as stored with it: ``tasks: [{name, fingerprint}]`` (or an older ``template: {...}``)."""
    tasks = config.get("tasks")
    if not isinstance(tasks, list):
        tasks = [config.get("template")]
    return [t for t in tasks if isinstance(t, dict) and t.get("fingerprint")]


def _template_names(conn: sqlite3.Connection) -> dict[str, str]:
    """Fingerprint → template name, from the runs' stored settings (failed records do not carry it)."""
    names: dict[str, str] = {}
    for (config,) in conn.execute("SELECT config FROM runs WHERE config IS NOT NULL ORDER BY run_id"):
        for task in _config_tasks(_loads(config)):
            names[str(task["fingerprint"])] = str(task.get("name") or "?")
    return names


def _tasks(conn: sqlite3.Connection, names: dict[str, str]) -> list[dict[str, Any]]:
    rows = conn.execute(
        """
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
    ).fetchall()
    tasks = []
    for (
        fingerprint,
        model,
        done,
        failed,
        truncated,
        prompt,
        completion,
        reasoning,
        cached,
        estimated,
        template,
    ) in rows:
        tasks.append(
            {
                "template": template or names.get(fingerprint) or "?",
                "fingerprint": fingerprint,
                "model": model,
                "done": done,
                "failed": failed,
                "truncated": truncated,
                "prompt_tokens": prompt,
                "completion_tokens": completion,  # reasoning tokens included, as they are billed
                "reasoning_tokens": reasoning,
                "cached_tokens": cached,
                "usage_estimated": estimated,
                "cost_usd": estimate_cost(model, prompt, completion, cached),
            }
        )
    return sorted(tasks, key=lambda t: (t["template"], t["model"], t["fingerprint"]))


def _totals(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {
        key: sum(t[key] for t in tasks)
        for key in (
            "done",
            "failed",
            "truncated",
            "prompt_tokens",
            "completion_tokens",
            "reasoning_tokens",
            "cached_tokens",
            "usage_estimated",
        )
    }
    priced = [t["cost_usd"] for t in tasks if t["cost_usd"] is not None]
    totals["cost_usd"] = sum(priced) if priced else None
    totals["unpriced_models"] = sorted({t["model"] for t in tasks if t["cost_usd"] is None})
    return totals


def _runs(conn: sqlite3.Connection) -> tuple[int, int, dict[str, Any] | None]:
    """The number of runs, the requests they sent, and the last run (with its settings and summary)."""
    count = requests = 0
    last: tuple[Any, ...] | None = None
    for row in conn.execute(
        "SELECT run_id, started_at, finished_at, config, summary FROM runs ORDER BY run_id"
    ):
        count += 1
        requests += int(_loads(row[4]).get("requests") or 0)
        last = row
    if last is None:
        return count, requests, None
    run_id, started, finished, config_blob, summary_blob = last
    config = _loads(config_blob)
    return (
        count,
        requests,
        {
            "run_id": run_id,
            "started_at": started,
            "finished_at": finished,
            "model": config.get("model"),
            "tasks": [str(t.get("name") or "?") for t in _config_tasks(config)],
            "paths": config.get("paths"),
            "summary": _loads(summary_blob) or None,
        },
    )


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
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF" (a "->" marks a waiter, one field more)
        if "->" in fields:
            continue
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            if int(inode) == st.st_ino and (int(major, 16), int(minor, 16)) == (
                os.major(st.st_dev),
                os.minor(st.st_dev),
            ):
                return True
        except ValueError:
            continue
    return False


# --- formatting ---------------------------------------------------------------------------------------------


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cost(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return out


def format_status(s: dict[str, Any]) -> str:
    """The human report."""
    lines: list[str] = []
    running = {True: " · a run holds it now", False: "", None: ""}[s["running"]]
    lines.append(f"checkpoint: {s['db']} (read-only){running}")
    lines.append("")
    header = [
        "task",
        "model",
        "done",
        "failed",
        "truncated",
        "prompt tok",
        "completion tok",
        "reasoning",
        "cost",
    ]
    rows = [
        [
            f"{t['template']} {t['fingerprint'][:8]}",
            t["model"],
            f"{t['done']:,}",
            f"{t['failed']:,}",
            f"{t['truncated']:,}",
            f"{t['prompt_tokens']:,}",
            f"{t['completion_tokens']:,}",
            f"{t['reasoning_tokens']:,}",
            _cost(t["cost_usd"]),
        ]
        for t in s["tasks"]
    ]
    tot = s["totals"]
    rows.append(
        [
            "total",
            "",
            f"{tot['done']:,}",
            f"{tot['failed']:,}",
            f"{tot['truncated']:,}",
            f"{tot['prompt_tokens']:,}",
            f"{tot['completion_tokens']:,}",
            f"{tot['reasoning_tokens']:,}",
            _cost(tot["cost_usd"]),
        ]
    )
    if s["tasks"]:
        lines.extend(_table(header, rows, right={2, 3, 4, 5, 6, 7, 8}))
    else:
        lines.append("no answers yet")
    lines.append(
        f"tokens: usage of the stored answers (final attempts; completion includes reasoning, billed as output); "
        f"cost at list prices of {s['prices_date']}"
    )
    if tot["unpriced_models"]:
        lines.append("  n/a: model not in the price table (" + ", ".join(tot["unpriced_models"]) + ")")
    if tot["usage_estimated"]:
        n = tot["usage_estimated"]
        lines.append(
            f"  {n:,} answer{'s' if n != 1 else ''} without usage from the API: tokens counted locally"
        )
    places = s["places"]
    lines.append("")
    lines.append(
        f"places (NDJSON lines): {places['total']:,} · committed but not yet written: {places['unwritten']:,}"
        + (" (the next run writes them)" if places["unwritten"] else "")
    )
    if s["failures"]:
        more = s["failure_reasons"] - len(s["failures"])
        lines.append("")
        lines.append(
            "failures by reason (a rerun retries them):" + (f" top {len(s['failures'])}" if more else "")
        )
        rows = [
            [
                f["reason"],
                f"{f['count']:,}",
                f"e.g. {f['example']}" + (f": {f['error']}" if f["error"] else ""),
            ]
            for f in s["failures"]
        ]
        lines.extend("  " + line for line in _table(["reason", "count", "example"], rows, right={1})[1:])
    if s["skipped"]:
        lines.append("")
        lines.append("skipped files: " + " · ".join(f"{k} {v:,}" for k, v in s["skipped"].items()))
    runs = s["runs"]
    lines.append("")
    lines.append(f"runs: {runs['count']:,} · requests sent: {runs['requests']:,}")
    last = runs["last"]
    if last is not None:
        if last["finished_at"] is None:
            state = "running now" if s["running"] else "not finished: still running, or stopped by a crash"
            finished = f"({state})"
        else:
            finished = (
                f"finished {_when(last['finished_at'])} ({last['finished_at'] - last['started_at']:.1f}s)"
            )
        what = f" · model {last['model']}" if last.get("model") else ""
        if last.get("tasks"):
            what += f", tasks {', '.join(last['tasks'])}"
        lines.append(f"last run #{last['run_id']}: started {_when(last['started_at'])}, {finished}{what}")
        summary = last.get("summary")
        if summary:
            failed = sum((summary.get("failed") or {}).values())
            lines.append(
                f"  snippets {summary.get('snippets', 0):,} in {summary.get('files', 0):,} files · annotated "
                f"{summary.get('annotated', 0):,} · reused {summary.get('reused', 0):,} · already done "
                f"{summary.get('unchanged', 0):,} · failed {failed:,} · emitted {summary.get('emitted', 0):,}"
            )
            lines.append(
                f"  requests {summary.get('requests', 0):,} · tokens {summary.get('prompt_tokens', 0):,} in / "
                f"{summary.get('completion_tokens', 0):,} out · {summary.get('elapsed', 0):.1f}s"
                # (not the stored exit_code: the run sets it after storing its summary)
                + (f" · stopped: {summary['stopped']}" if summary.get("stopped") else "")
            )
            extra = [
                f"{label} {sum(summary[key].values()):,}"
                for key, label in (("filtered", "snippets filtered out"), ("secrets", "secrets found"))
                if isinstance(summary.get(key), dict) and summary[key]
            ]
            if extra:
                lines.append("  " + " · ".join(extra))
    pending = s["pending"]
    text = f"pending: {pending['note']}"
    if "last_run_failed" in pending:
        text += (
            f"; as of the last run: {pending['last_run_failed']:,} failed, "
            f"{pending['last_run_not_reached']:,} not reached"
        )
        if not pending["last_run_walk_done"]:
            text += ", and its walk did not finish (the rest of the tree is unknown)"
    lines.append(text)
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    """Add the ``status`` subcommand to `subparsers` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "status",
        help="show what a checkpoint holds: answers, failures, tokens, cost, runs",
        description="Report what a checkpoint holds: done and failed answers by task and model, the tokens "
        "and estimated cost of the stored answers, the most common failure reasons, skipped files, and the "
        "last run. The checkpoint is opened read-only and no lock is taken, so this works while a run is "
        "writing it.",
        epilog="Pending snippets are not counted: that needs a walk of the tree (snipstream run --dry-run "
        "shows what a run would send). Exit codes: 0 ok, 2 no checkpoint at --db or not a snipstream "
        "checkpoint.",
    )
    p.add_argument(
        "--db", default="snipstream.db", metavar="FILE", help="SQLite checkpoint (default: %(default)s)"
    )
    p.add_argument(
        "--json", action="store_true", help="print the report as one JSON object instead of a table"
    )


def run(args: argparse.Namespace) -> int:
    """Print the status of ``args.db`` (a table on stderr, or with --json one JSON line on stdout); 0 on
    success, 2 when there is no readable checkpoint."""
    try:
        conn = open_readonly(args.db)
    except ConfigError as exc:
        print(f"snipstream: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    try:
        report = collect(conn, db=str(args.db), held=held_by_a_run(args.db))
    except sqlite3.Error as exc:
        print(f"snipstream: error: cannot read checkpoint {args.db}: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    finally:
        conn.close()
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report) + b"\n")  # one line: stdout stays NDJSON
        sys.stdout.flush()
    else:
        print(format_status(report), file=sys.stderr, flush=True)  # for people: stderr, like all reports
    return EXIT_OK
