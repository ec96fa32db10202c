"""The dataset card (``--card FILE``): a Markdown page saying what an export holds and how it was made, with
the licence and source fields left for the dataset's owner. Written only when asked for."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .. import __version__
from .report import Report

__all__ = ["render_card", "TODO"]

TODO = "TODO (the dataset's owner fills this in)"

_CONSUMERS = {
    "openai-chat": "OpenAI fine-tuning; TRL's SFTTrainer (conversational `messages`)",
    "sharegpt": "LLaMA-Factory (`formatting: sharegpt`); Axolotl (`type: chat_template`, roles from `from`)",
    "alpaca": "LLaMA-Factory (`formatting: alpaca`) and other instruction-tuning tools",
    "prompt-completion": "TRL's SFTTrainer (standard prompt-completion; loss on the completion)",
    "jsonl": "the snipstream records as stored (not a training format)",
}


def _table(header: tuple[str, str], counts: Mapping[str, int]) -> list[str]:
    rows = [f"| {name or '(none)'} | {n:,} |" for name, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    return [f"| {header[0]} | {header[1]} |", "| --- | ---: |", *(rows or ["| (none) | 0 |"])]


def _splits(r: Report) -> list[str]:
    return [
        f"- {name}: {n:,} examples" + (f" in `{r.targets[name]}`" if name in r.targets else " (stdout)")
        for name, n in r.written.items()
    ]


def _left_out(r: Report) -> list[str]:
    counts = {**dict(r.answers_skipped), **{f"example {k}": v for k, v in r.examples_dropped.items()}}
    lines = ["## Left out", "", *_table(("reason", "answers"), counts)]
    if r.flag_reasons:
        reasons = ", ".join(f"{k} {v:,}" for k, v in r.flag_reasons.most_common())
        lines += ["", f"Cleaning reasons of the flagged answers (an answer may have several): {reasons}."]
    if r.flagged_at_export:
        lines.append(f"{r.flagged_at_export:,} answers from before cleaning were checked at export.")
    if r.trimmed:
        lines.append(f"{r.trimmed:,} answers had whitespace trimmed off their ends.")
    return lines


def _options(settings: Mapping[str, Any]) -> list[str]:
    return ["## How it was made", "", *(f"- {key}: {value}" for key, value in settings.items())]


def render_card(r: Report, settings: Mapping[str, Any]) -> str:
    """The card of export report `r`; `settings` are the options used, in the words to show them."""
    lengths = ", ".join(f"{k} {v:,}" for k, v in r.lengths.items()) or "not counted"
    lines = [
        "# Dataset card",
        "",
        f"Made with snipstream {__version__} on {datetime.now(UTC):%Y-%m-%d}: fine-tuning examples from "
        "answers a model gave about source code, one per answer (one per question for qa).",
        "",
        "## Contents",
        "",
        f"- format: `{r.fmt}`, for {_CONSUMERS.get(r.fmt, r.fmt)}",
        f"- examples: {r.examples_written:,}, from {r.answers_exported:,} answers",
        *_splits(r),
        f"- tokens per example ({r.encoding or 'not counted'}): {lengths}",
        "",
        "### Examples per task",
        "",
        *_table(("task", "examples"), r.tasks),
        "",
        "### Models that answered",
        "",
        *_table(("model", "answers"), r.models),
        "",
        *_options(settings),
        "",
        *_left_out(r),
        "",
        "## Source and licence",
        "",
        f"- Source code the examples were made from (repository, commit): {TODO}",
        f"- Licence of that source code: {TODO}",
        f"- Licence of this dataset: {TODO}",
        f"- Terms of the model provider for using its outputs as training data: {TODO}",
        f"- Maintainer and contact: {TODO}",
        "",
    ]
    return "\n".join(lines)
