"""Text for people: the reports of ``status``, ``plan`` and ``export`` rendered as tables and summary lines.

The reports themselves are collected elsewhere (`stream.status`, `stream.plan`, `stream.export`) as dicts
or dataclasses, the same data ``--json`` prints; this module only turns them into text, with one table
helper for all three.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .export.report import Report

__all__ = ["table", "format_status", "format_plan", "format_export", "near_dup_line"]


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Collection[int] = (),
    total: Sequence[str] | None = None,
) -> list[str]:
    """Aligned columns, two spaces apart; the columns in `right` right-aligned. With a `total` row, rules of
    dashes set off the body: header, rule, rows, rule, total."""
    every = [header, *rows, *([total] if total is not None else [])]
    widths = [max(len(r[i]) for r in every) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    if total is None:
        return [line(row) for row in every]
    rule = "  ".join("-" * w for w in widths)
    return [line(header), rule, *map(line, rows), rule, line(total)]


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cost(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _counts(counts: dict[str, int], sep: str = ", ") -> str:
    return sep.join(f"{k} {v:,}" for k, v in counts.items())


# --- status -------------------------------------------------------------------------------------------------

_STATUS_HEADER = (
    "task",
    "model",
    "done",
    "failed",
    "truncated",
    "prompt tok",
    "completion tok",
    "reasoning",
    "cost",
)
_STATUS_COUNTS = ("done", "failed", "truncated", "prompt_tokens", "completion_tokens", "reasoning_tokens")


def format_status(s: dict[str, Any]) -> str:
    """The human report of `stream.status.collect`'s dict."""
    running = " · a run holds it now" if s["running"] else ""
    lines = [f"checkpoint: {s['db']} (read-only){running}", ""]
    lines += _status_tasks(s)
    lines += _status_places(s["places"])
    lines += _status_failures(s)
    lines += _status_quality(s["quality"])
    for v in s.get("vectors") or ():
        lines += [
            "",
            f"vectors: {v['count']:,} of {v['model']} ({v['dimensions']} dimensions; snipstream search, ask)",
        ]
    near = s.get("near_dups") or {}
    if near.get("groups"):
        lines += [
            "",
            f"near-duplicates: {near['groups']:,} groups, {near['members']:,} snippets besides each "
            "group's first (--near-dup ask-once asks only the first)",
        ]
    if s["skipped"]:
        lines += ["", "skipped files: " + _counts(s["skipped"], " · ")]
    lines += _status_runs(s["runs"], s["running"])
    lines.append(_status_pending(s["pending"]))
    return "\n".join(lines)


def _task_row(name: str, model: str, t: dict[str, Any]) -> list[str]:
    return [name, model, *(f"{t[key]:,}" for key in _STATUS_COUNTS), _cost(t["cost_usd"])]


def _status_tasks(s: dict[str, Any]) -> list[str]:
    tot = s["totals"]
    if s["tasks"]:
        rows = [_task_row(f"{t['template']} {t['fingerprint'][:8]}", t["model"], t) for t in s["tasks"]]
        lines = table(_STATUS_HEADER, [*rows, _task_row("total", "", tot)], right=range(2, 9))
    else:
        lines = ["no answers yet"]
    lines.append(
        f"tokens: usage of the stored answers (final attempts; completion includes reasoning, billed as output); "
        f"cost at list prices of {s['prices_date']}"
    )
    if tot["unpriced_models"]:
        lines.append("  n/a: model not in the price table (" + ", ".join(tot["unpriced_models"]) + ")")
    if n := tot["usage_estimated"]:
        lines.append(
            f"  {n:,} answer{'s' if n != 1 else ''} without usage from the API: tokens counted locally"
        )
    return lines


def _status_places(places: dict[str, int]) -> list[str]:
    return [
        "",
        f"places (NDJSON lines): {places['total']:,} · committed but not yet written: {places['unwritten']:,}"
        + (" (the next run writes them)" if places["unwritten"] else ""),
    ]


def _status_failures(s: dict[str, Any]) -> list[str]:
    if not s["failures"]:
        return []
    more = s["failure_reasons"] - len(s["failures"])
    head = "failures by reason (a rerun retries them):" + (f" top {len(s['failures'])}" if more else "")
    rows = [
        [f["reason"], f"{f['count']:,}", f"e.g. {f['example']}" + (f": {f['error']}" if f["error"] else "")]
        for f in s["failures"]
    ]
    return ["", head, *("  " + line for line in table(["reason", "count", "example"], rows, right={1})[1:])]


def _status_quality(q: dict[str, Any]) -> list[str]:
    """Cleaning by reason, and the judge's score distribution (when anything was judged)."""
    lines = [""]
    if q["checked"]:
        marked = (": " + _counts(q["flags"], " · ")) if q["flags"] else ""
        lines.append(f"cleaning: {q['checked']:,} answers checked, {q['flagged']:,} flagged{marked}")
    else:
        lines.append("cleaning: no answer checked yet (answers stored before cleaning existed are not)")
    if not q["judged"]:
        return [*lines, "judge scores: none yet (snipstream run --task judge scores new answers)"]
    scores = "  ".join(f"{score}: {n:,}" for score, n in q["scores"].items())
    cost = "" if q["judge_cost_usd"] is None else f", {_cost(q['judge_cost_usd'])}"
    return [
        *lines,
        f"judge scores: {scores}  unjudged: {q['unjudged']:,}",
        f"  judgments: {q['judge_prompt_tokens']:,} prompt + {q['judge_completion_tokens']:,} completion "
        f"tokens{cost} (not in the table above)",
    ]


def _status_runs(runs: dict[str, Any], running: bool | None) -> list[str]:
    lines = ["", f"runs: {runs['count']:,} · requests sent: {runs['requests']:,}"]
    last = runs["last"]
    if last is None:
        return lines
    if last["finished_at"] is None:
        state = "running now" if running else "not finished: still running, or stopped by a crash"
        finished = f"({state})"
    else:
        finished = f"finished {_when(last['finished_at'])} ({last['finished_at'] - last['started_at']:.1f}s)"
    what = f" · model {last['model']}" if last.get("model") else ""
    if last.get("tasks"):
        what += f", tasks {', '.join(last['tasks'])}"
    lines.append(f"last run #{last['run_id']}: started {_when(last['started_at'])}, {finished}{what}")
    if last.get("summary"):
        lines += _run_summary(last["summary"])
    return lines


def _run_summary(summary: dict[str, Any]) -> list[str]:
    failed = sum((summary.get("failed") or {}).values())
    lines = [
        f"  snippets {summary.get('snippets', 0):,} in {summary.get('files', 0):,} files · annotated "
        f"{summary.get('annotated', 0):,} · reused {summary.get('reused', 0):,} · already done "
        f"{summary.get('unchanged', 0):,} · failed {failed:,} · emitted {summary.get('emitted', 0):,}",
        f"  requests {summary.get('requests', 0):,} · tokens {summary.get('prompt_tokens', 0):,} in / "
        f"{summary.get('completion_tokens', 0):,} out · {summary.get('elapsed', 0):.1f}s"
        # (not the stored exit_code: the run sets it after storing its summary)
        + (f" · stopped: {summary['stopped']}" if summary.get("stopped") else ""),
    ]
    extra = [
        f"{label} {sum(summary[key].values()):,}"
        for key, label in (("filtered", "snippets filtered out"), ("secrets", "secrets found"))
        if isinstance(summary.get(key), dict) and summary[key]
    ]
    if extra:
        lines.append("  " + " · ".join(extra))
    return lines


def _status_pending(pending: dict[str, Any]) -> str:
    text = f"pending: {pending['note']}"
    if "last_run_failed" in pending:
        text += (
            f"; as of the last run: {pending['last_run_failed']:,} failed, "
            f"{pending['last_run_not_reached']:,} not reached"
        )
        if not pending["last_run_walk_done"]:
            text += ", and its walk did not finish (the rest of the tree is unknown)"
    return text


# --- plan ---------------------------------------------------------------------------------------------------

_PLAN_HEADER = ("task", "language", "kind", "requests", "prompt tok", "output tok", "cost USD")


def _plan_row(first: Sequence[str], r: dict[str, Any]) -> list[str]:
    cost = "n/a" if r["cost_usd"] is None else f"{r['cost_usd']:.4f}"
    return [*first, f"{r['requests']:,}", f"{r['prompt_tokens']:,}", f"{r['output_tokens']:,}", cost]


def format_plan(report: dict[str, Any]) -> str:
    """The human table of `stream.plan.plan_report`'s dict: requests, tokens and cost by task/language/kind."""
    body = [_plan_row((r["task"], r["language"], r["kind"]), r) for r in report["rows"]]
    total = _plan_row(("total", "", ""), report["total"])
    lines = table(_PLAN_HEADER, body, right=range(3, 7), total=total)
    p = report["prices"]
    lines.append("")
    lines.append(
        f"model {report['model']}; tokens counted with {report['encoding'] or 'n/a'}; prices of {p['date']} "
        f"({p['source']})"
        + ("" if p["known"] else f": no price for {report['model']}, give one with --prices")
    )
    sums = report["total"]
    if sums.get("cached_tokens") and sums["prompt_tokens"]:
        share = sums["cached_tokens"] / sums["prompt_tokens"]
        saved = (
            ""
            if sums.get("uncached_cost_usd") is None
            else f", saving about ${sums['uncached_cost_usd'] - sums['cost_usd']:,.4f} (in the cost above)"
        )
        lines.append(
            f"prompt cache: about {share:.0%} of prompt tokens ({sums['cached_tokens']:,}) share a prefix "
            f"of 1,024+ tokens with a recent prompt and would be billed at the cached rate{saved}"
        )
    batch = sums.get("batch_cost_usd")
    if batch is not None and report["rows"]:
        lines.append(f"through the Batch API (snipstream batch submit): ${batch:,.4f}")
    embeds = report.get("embeddings")
    if embeds:
        cost = f", ${embeds['cost_usd']:,.4f}" if embeds["cost_usd"] is not None else " (model not priced)"
        lines.append(
            f"embeddings ({embeds['model']}): {embeds['texts']:,} texts in ~{embeds['requests']:,} requests, "
            f"{embeds['tokens']:,} tokens{cost}"
        )
    sources = sorted({r["output_from"] for r in report["rows"]})
    if sources:
        lines.append(f"expected output tokens from: {', '.join(sources)}")
    lines.append(
        f"{report['files']:,} files; {report['already_done']:,} snippets already done in the checkpoint"
    )
    for label, counts in (
        ("skipped files", report["skipped_files"]),
        ("left out", report["filtered"]),
        ("secrets found", report["secrets"]),
    ):
        if counts:
            lines.append(f"{label}: " + _counts(dict(sorted(counts.items()))))
    near = report.get("near_dups") or {}
    if near.get("groups"):
        lines.append(
            near_dup_line(near["groups"], near["members"], near["found"], "by this plan, not recorded")
        )
    return "\n".join(lines)


def near_dup_line(groups: int, members: int, found: int, when: str) -> str:
    """The groups of near-duplicate code, as the plan and a run's summary show them."""
    return (
        f"near-duplicates: {groups:,} group{'s' if groups != 1 else ''}, {members:,} snippet"
        f"{'s' if members != 1 else ''} besides each group's first ({found:,} found {when})"
    )


# --- batch status -------------------------------------------------------------------------------------------

_BATCH_HEADER = ["file", "batch", "status", "lines", "completed", "failed", "inputs"]


def format_batch_status(r: dict[str, Any]) -> str:
    """The human table of `stream.batch.report.batch_status`'s dict."""
    body = [
        [
            b["file"],
            b["batch_id"] or "-",
            b["status"],
            f"{b['lines']:,}",
            f"{b['request_counts'].get('completed', 0):,}",
            f"{b['request_counts'].get('failed', 0):,}",
            f"{b['inputs']:,}" if b.get("inputs") else "-",
        ]
        for b in r["batches"]
    ]
    lines = table(_BATCH_HEADER, body, right=range(3, 7)) if body else ["no batches in this checkpoint"]
    for b in r["batches"]:
        lines += [f"{b['batch_id']}: {e}" for e in b["errors"][:20]]
    lines.append("")
    lines.append(
        f"answered through batches: {r['answered']:,} ({r['prompt_tokens']:,} prompt and "
        f"{r['completion_tokens']:,} completion tokens); model {r['model']}"
    )
    if r["cost_usd"] is not None:
        lines.append(
            f"cost at the Batch API's price: {_cost(r['cost_usd'])} (list price: {_cost(r['list_cost_usd'])})"
        )
    if r.get("embedded"):
        lines.append(
            f"embedded through batches: {r['embedded']:,} ({r['embed_tokens']:,} tokens, {r['embed_model']}), "
            f"cost {_cost(r['embed_cost_usd'])} (list price: {_cost(r['embed_list_cost_usd'])})"
        )
    return "\n".join(lines)


# --- export -------------------------------------------------------------------------------------------------


def format_export(r: Report) -> str:
    """The summary of an export (`stream.export.Report`), printed on stderr."""
    where = ", ".join(
        f"{name} {r.written[name]:,}" + (f" → {r.targets[name]}" if name in r.targets else "")
        for name in r.written
    )
    lines = [
        f"export ({r.fmt}): examples written: {where}"
        + (" (output closed early)" if r.output_closed else ""),
        f"answers: {r.answers:,} read ({r.places:,} places; each answer once, at its first place), "
        f"{r.answers_exported:,} exported"
        + (
            f"; {r.failed_answers:,} failed answers in the checkpoint have no text"
            if r.failed_answers
            else ""
        ),
    ]
    if r.answers_skipped:
        lines.append("answers skipped: " + _counts(dict(r.answers_skipped.most_common())))
    lines += _export_quality(r)
    if r.lengths:
        lim = r.max_example_tokens
        lines.append(
            f"tokens per example ({r.encoding}): min {r.lengths['min']:,} · mean {r.lengths['mean']:,} · "
            f"p95 {r.lengths['p95']:,} · max {r.lengths['max']:,}"
            + (
                f"; {r.examples_dropped['too_long']:,} over --max-example-tokens {lim:,}, dropped"
                if lim
                else ""
            )
        )
    if r.fmt != "jsonl":
        limit = f"{r.max_example_tokens:,}" if r.max_example_tokens else "none"
        lines.append(f"max tokens per example: {limit} ({r.limit_source})")
    if r.fmt != "jsonl":
        checked = sum(r.written.values()) + sum(r.examples_dropped.values())
        found = r.examples_dropped["format_problems"]
        text = f"format check ({r.fmt}): {checked:,} examples, {found:,} with problems"
        if found:
            text += " (not written): " + _counts(dict(r.problems.most_common()))
        lines.append(text)
    lines.extend(f"removed {path}: an older file of a split that is empty now" for path in r.removed)
    lines.extend(f"note: {note}" for note in r.notes)
    return "\n".join(lines)


def _export_quality(r: Report) -> list[str]:
    """What the cleaning flags and the judge's scores left out, and the answers' trimming."""
    lines = []
    if r.flag_reasons:
        lines.append(
            f"flagged by cleaning, left out: answers {r.answers_skipped['flagged']:,} ("
            + _counts(dict(r.flag_reasons.most_common()))
            + "; --include-flagged exports them)"
        )
    if r.flagged_at_export:
        lines.append(f"  {r.flagged_at_export:,} answers from before cleaning were checked now")
    if r.trimmed:
        lines.append(f"answers trimmed of surrounding whitespace: {r.trimmed:,}")
    return lines
