"""What a person watching the run sees on stderr: a progress line while it runs and a summary at the end."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

import anyio

if TYPE_CHECKING:
    from .pipeline.summary import Summary

__all__ = ["show_progress", "format_summary"]


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


def progress_line(s: Summary, elapsed: float) -> str:
    handled = s.annotated + s.embedded + s.reused + s.unchanged + sum(s.failed.values()) + s.would_send
    total = f"{s.snippets}" if s.walk_done else f"{s.snippets}+"
    rate = _rate(s.annotated, elapsed)
    parts = [f"{handled}/{total} snippets", f"{s.annotated} annotated", f"{rate:.1f}/s"]
    if s.embedded:
        parts.insert(2, f"{s.embedded} embedded")
    if s.failed:
        parts.append(f"{sum(s.failed.values())} failed")
    parts.append(f"tokens {s.prompt_tokens:,} in / {s.completion_tokens:,} out")
    if s.cost is not None:
        parts.append(f"${s.cost:,.4f}")
    if s.walk_done and rate > 0:
        remaining = max(0, s.snippets - handled)
        parts.append(f"ETA {_duration(remaining / rate)}")
    parts.append(_duration(elapsed))
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


async def show_progress(s: Summary, *, mode: str, interval: float, stream: TextIO | None = None) -> None:
    """Until cancelled: a self-rewriting line on a terminal, else a plain line every `interval` seconds."""
    stream = stream or sys.stderr
    if mode == "off":
        return
    tty = mode == "tty" or (mode == "auto" and stream.isatty())
    started = time.perf_counter()
    try:
        while True:
            await anyio.sleep(0.5 if tty else interval)
            line = progress_line(s, time.perf_counter() - started)
            if tty:
                stream.write("\r\x1b[K" + line)
            else:
                stream.write("progress: " + line + "\n")
            stream.flush()
    finally:
        if tty:
            stream.write("\r\x1b[K")
            stream.flush()


def _cached(s: Summary) -> str:
    """The prompt cache's share of the prompt tokens and what it saved (nothing when it served none)."""
    if not s.cached_tokens or not s.prompt_tokens:
        return ""
    saved = f", saving ${s.cache_saving:,.4f}" if s.cache_saving else ""
    share = s.cached_tokens / s.prompt_tokens
    return f" · prompt cache served {s.cached_tokens:,} ({share:.0%}) of the tokens in{saved}"


def _dry_run_lines(s: Summary, model: str, prices_date: str) -> list[str]:
    """The dry run's part of the summary: what would be sent, its tokens and estimated cost."""
    lines = []
    lines.append(
        f"dry run: {s.snippets} snippets in {s.files} files; {s.would_send} requests would be sent"
        f" ({s.snippets - s.would_send} already done or duplicates)"
    )
    lines.append(
        f"prompt tokens: {s.prompt_tokens:,} (counted with {s.encoding or '?'})"
        + (
            f"; about {s.cached_tokens:,} ({s.cached_tokens / s.prompt_tokens:.0%}) in prefixes a prompt "
            "cache would likely serve"
            if s.cached_tokens and s.prompt_tokens
            else ""
        )
    )
    if s.estimated_cost is not None:
        lines.append(
            f"estimated cost for {model}: up to ${s.estimated_cost:,.2f} "
            f"(prompt tokens + max_tokens per request; prices of {prices_date})"
        )
    else:
        lines.append(f"estimated cost: unknown for model {model!r} (not in the price table)")
    return lines


def _embed_lines(s: Summary) -> list[str]:
    """--task embed's vectors: how many, in how many requests, their tokens and cost."""
    if not s.embed_requests:
        return []
    per = s.embedded / s.embed_requests
    each = f"{per:.{0 if per >= 10 else 1}f} a request"
    cost = f" · cost ${s.embed_cost:,.4f}" if s.embed_cost is not None else ""
    return [
        f"embedded: {s.embedded} snippets in {s.embed_requests} requests ({each}) · {s.embed_tokens:,} tokens{cost}"
    ]


def _quality_lines(s: Summary) -> list[str]:
    """What the cleaning step marked and the judge scored among this run's new answers."""
    lines = []
    if s.flagged:
        lines.append("flagged by cleaning: " + ", ".join(f"{k} {v}" for k, v in s.flagged.most_common()))
    if s.scores:
        scores = " · ".join(
            f"{k}: {s.scores[k]}" for k in ("1", "2", "3", "4", "5", "unjudged") if s.scores[k]
        )
        lines.append(f"judge scores: {scores}; asked again after a low score: {s.judge_reasks}")
    return lines


def format_summary(s: Summary, *, model: str, dry_run: bool, prices_date: str = "") -> str:
    if not prices_date:
        from .prices import PRICES_DATE

        prices_date = PRICES_DATE
    lines = []
    if dry_run:
        lines += _dry_run_lines(s, model, prices_date)
    else:
        failed = sum(s.failed.values())
        lines.append(
            f"snippets: {s.snippets} in {s.files} files · annotated {s.annotated} · reused {s.reused} · "
            f"already done {s.unchanged} · failed {failed} · emitted {s.emitted + 0}"
            + (f" (incl. {s.backlog} from earlier runs)" if s.backlog else "")
        )
        lines.append(
            f"requests sent: {s.requests} · tokens: {s.prompt_tokens:,} in / "
            f"{s.completion_tokens:,} out"
            + (f" ({s.reasoning_tokens:,} reasoning)" if s.reasoning_tokens else "")
            + (f" · cost ${s.cost:,.4f} (prices of {prices_date})" if s.cost is not None else "")
            + _cached(s)
            + (
                f" ({s.usage_estimated} answers without usage, counted with {s.encoding})"
                if s.usage_estimated
                else ""
            )
        )
        lines += _embed_lines(s)
        if s.failed:
            lines.append("failed by reason: " + ", ".join(f"{k} {v}" for k, v in s.failed.most_common()))
    if len(s.endpoints) > 1:
        lines.append("requests by endpoint: " + ", ".join(f"{k} {v}" for k, v in s.endpoints.items()))
    lines += _quality_lines(s)
    if len(s.tasks) > 1:
        lines.append("annotated by task: " + ", ".join(f"{k} {v}" for k, v in s.tasks.most_common()))
    if s.skipped:
        lines.append("skipped files: " + ", ".join(f"{k} {v}" for k, v in s.skipped.most_common()))
    if s.filtered:
        lines.append("snippets left out: " + ", ".join(f"{k} {v}" for k, v in s.filtered.most_common()))
    if s.near_dup_groups:
        from .render import near_dup_line

        when = "by this dry run, not recorded" if dry_run else "this run"
        lines.append(near_dup_line(s.near_dup_groups, s.near_dup_members, s.near_dup_found, when))
    if s.secrets:
        lines.append(
            "secrets found (by kind; values never shown): "
            + ", ".join(f"{k} {v}" for k, v in s.secrets.most_common())
        )
    stopped = s.stopped
    if stopped and s.exit_code == 3 and ": " in stopped:  # the error itself was printed when it happened
        stopped = stopped.split(": ", 1)[0] + " (see the error above)"
    lines.append(f"elapsed: {s.elapsed:.1f}s" + (f" · stopped: {stopped}" if stopped else ""))
    return "\n".join(lines)
