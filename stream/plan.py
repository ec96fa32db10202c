"""``snipstream plan``: the dry run as a report of what a run would send and what it would cost.

Expected output tokens per request come from the checkpoint's answers for the same task (same fingerprint:
template, model and parameters) when it has some, else from half of ``--max-tokens``. `plan_report`
collects the report (the ``--json`` output); `stream.render.format_plan` makes the table of it.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from sinks.reader import History, open_readonly

from .config import Config
from .errors import ConfigError
from .prices import Price, load_prices
from .render import format_plan

__all__ = ["plan", "plan_report", "DEFAULT_OUTPUT_SHARE"]

DEFAULT_OUTPUT_SHARE = 0.5  # of --max-tokens, for a task without answers in the checkpoint


async def plan(config: Config, as_json: bool = False) -> int:
    """Print the plan (a table on stderr, or with `as_json` one JSON line on stdout); the dry run's exit code."""
    report, exit_code = await plan_report(config)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(report) + b"\n")
        sys.stdout.flush()
    else:
        print(format_plan(report), file=sys.stderr, flush=True)
    return exit_code


async def plan_report(config: Config) -> tuple[dict[str, Any], int]:
    """Run the dry run of `config` and price it: (the report, the dry run's exit code)."""
    from .pipeline import run

    summary = await run(config)
    prices = load_prices(config.prices)
    price = prices.get(config.model)
    rows = _rows(config, {k: v for k, v in summary.plan.items() if not k.startswith("embed/")}, price)
    report = {
        "model": config.model,
        "encoding": summary.encoding,
        "prices": {"date": prices.date, "source": prices.source, "known": price is not None},
        "files": summary.files,
        "already_done": summary.unchanged + summary.reused,
        "skipped_files": dict(summary.skipped),
        "filtered": dict(summary.filtered),
        "secrets": dict(summary.secrets),
        # near-duplicate groups (--near-dup): the checkpoint's and this plan's, and how many the plan found
        "near_dups": {
            "groups": summary.near_dup_groups,
            "members": summary.near_dup_members,
            "found": summary.near_dup_found,
        },
        "rows": rows,
        # --task embed: the texts a run would embed, the requests they would take (the embedder's rule),
        # their tokens and cost at --embed-model's price (None: not in the table); not in "total"
        "embeddings": {
            "model": config.embed_model,
            "texts": summary.embedded,
            "requests": summary.embed_requests,
            "tokens": summary.embed_tokens,
            "cost_usd": summary.embed_cost,
        }
        if config.embed
        else None,
        "total": {
            "requests": sum(r["requests"] for r in rows),
            "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
            "cached_tokens": sum(r["cached_tokens"] for r in rows),
            "output_tokens": sum(r["output_tokens"] for r in rows),
            "cost_usd": None if price is None else sum(r["cost_usd"] for r in rows),
            "uncached_cost_usd": None if price is None else sum(r["uncached_cost_usd"] for r in rows),
            # the same requests through `snipstream batch submit` (the Batch API's price)
            "batch_cost_usd": None
            if price is None
            else sum(
                price.for_batch().cost(r["prompt_tokens"], r["output_tokens"], r["cached_tokens"])
                for r in rows
            ),
        },
    }
    return report, summary.exit_code


def _rows(config: Config, plan: dict[str, list[int]], price: Price | None) -> list[dict[str, Any]]:
    """One row per task/language/kind of the dry run: requests, tokens (cached: an estimate,
    `stream.pipeline.prefixes`), expected output and cost."""
    by_task = {t.name: config.fingerprint(t) for t in config.asked_tasks}
    history = _history(config.db, set(by_task.values()))
    rows: list[dict[str, Any]] = []
    for key in sorted(plan):
        task, language, kind = key.split("/", 2)
        requests, prompt_tokens, cached_tokens = plan[key]
        past = history.get(by_task[task])
        per_answer = past.mean if past else DEFAULT_OUTPUT_SHARE * config.max_tokens
        output_tokens = round(per_answer * requests)
        rows.append(
            {
                "task": task,
                "language": language,
                "kind": kind,
                "requests": requests,
                "prompt_tokens": prompt_tokens,
                "cached_tokens": cached_tokens,
                "output_tokens": output_tokens,
                "output_from": f"{past.answers} past answers"
                if past
                else f"{DEFAULT_OUTPUT_SHARE:g} x max_tokens",
                "cost_usd": None
                if price is None
                else price.cost(prompt_tokens, output_tokens, cached_tokens),
                "uncached_cost_usd": None if price is None else price.cost(prompt_tokens, output_tokens),
            }
        )
    return rows


def _history(db: str, fingerprints: set[str]) -> dict[str, History]:
    """Mean completion tokens per answer, and how many answers, by task fingerprint ({} without a
    readable checkpoint: the plan then assumes half of --max-tokens)."""
    if not fingerprints:
        return {}
    try:
        with open_readonly(db) as reader:
            return reader.completion_history(fingerprints)
    except ConfigError:
        return {}
