"""``snipstream plan``: the dry run as a table of what a run would send and what it would cost.

Expected output tokens per request come from the checkpoint's answers for the same task (same fingerprint:
template, model and parameters) when it has some, else from half of ``--max-tokens``.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import orjson

from .config import Config
from .tokens import load_prices

__all__ = ["plan", "DEFAULT_OUTPUT_SHARE"]

DEFAULT_OUTPUT_SHARE = 0.5  # of --max-tokens, for a task without answers in the checkpoint


async def plan(config: Config, as_json: bool = False) -> int:
    from .pipeline import run

    summary = await run(config)
    prices = load_prices(config.prices)
    price = prices.get(config.model)
    by_task = {t.name: config.fingerprint(t) for t in config.tasks}
    history = _history(config.db, set(by_task.values()))
    rows: list[dict[str, Any]] = []
    for key in sorted(summary.plan):
        task, language, kind = key.split("/", 2)
        requests, prompt_tokens = summary.plan[key]
        past = history.get(by_task[task])
        per_answer = past[0] if past else DEFAULT_OUTPUT_SHARE * config.max_tokens
        output_tokens = round(per_answer * requests)
        rows.append(
            {
                "task": task,
                "language": language,
                "kind": kind,
                "requests": requests,
                "prompt_tokens": prompt_tokens,
                "output_tokens": output_tokens,
                "output_from": f"{past[1]} past answers"
                if past
                else f"{DEFAULT_OUTPUT_SHARE:g} x max_tokens",
                "cost_usd": None if price is None else price.cost(prompt_tokens, output_tokens),
            }
        )
    totals = {
        "requests": sum(r["requests"] for r in rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "output_tokens": sum(r["output_tokens"] for r in rows),
        "cost_usd": None if price is None else sum(r["cost_usd"] for r in rows),
    }
    report = {
        "model": config.model,
        "encoding": summary.encoding,
        "prices": {"date": prices.date, "source": prices.source, "known": price is not None},
        "files": summary.files,
        "already_done": summary.unchanged + summary.reused,
        "skipped_files": dict(summary.skipped),
        "filtered": dict(summary.filtered),
        "secrets": dict(summary.secrets),
        "rows": rows,
        "total": totals,
    }
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(report) + b"\n")
        sys.stdout.flush()
    else:
        print(format_plan(report), file=sys.stderr, flush=True)
    return summary.exit_code


def _history(db: str, fingerprints: set[str]) -> dict[str, tuple[float, int]]:
    """Mean completion tokens per answer, and how many answers, by task fingerprint."""
    if not fingerprints or not Path(db).is_file():
        return {}
    try:
        conn = sqlite3.connect(f"file:{Path(db).resolve()}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    out: dict[str, tuple[float, int]] = {}
    try:
        marks = ",".join("?" * len(fingerprints))
        sql = (
            "SELECT task, AVG(json_extract(CAST(result AS TEXT), '$.response.usage.completion_tokens')), "
            f"COUNT(*) FROM records WHERE status = 'done' AND task IN ({marks}) GROUP BY task"
        )
        for task, mean, count in conn.execute(sql, sorted(fingerprints)):
            if mean is not None:
                out[task] = (float(mean), int(count))
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
    return out


def format_plan(report: dict[str, Any]) -> str:
    head = ("task", "language", "kind", "requests", "prompt tok", "output tok", "cost USD")
    body = [
        (
            r["task"],
            r["language"],
            r["kind"],
            f"{r['requests']:,}",
            f"{r['prompt_tokens']:,}",
            f"{r['output_tokens']:,}",
            "n/a" if r["cost_usd"] is None else f"{r['cost_usd']:.4f}",
        )
        for r in report["rows"]
    ]
    t = report["total"]
    total = (
        "total",
        "",
        "",
        f"{t['requests']:,}",
        f"{t['prompt_tokens']:,}",
        f"{t['output_tokens']:,}",
        "n/a" if t["cost_usd"] is None else f"{t['cost_usd']:.4f}",
    )
    widths = [max(len(row[i]) for row in [head, *body, total]) for i in range(len(head))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    lines = [fmt(head), rule, *map(fmt, body), rule, fmt(total)]
    p = report["prices"]
    lines.append("")
    lines.append(
        f"model {report['model']}; tokens counted with {report['encoding'] or 'n/a'}; prices of {p['date']} "
        f"({p['source']})"
        + ("" if p["known"] else f": no price for {report['model']}, give one with --prices")
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
            lines.append(f"{label}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    return "\n".join(lines)
