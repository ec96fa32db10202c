"""The ``snipstream run`` and ``snipstream plan`` subcommands: their parsers (from the option groups) and
thin handlers that build a Config and hand it to `stream.pipeline` or `stream.plan`."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any

import anyio

from ..errors import ConfigError, ExitCode, SnipstreamError
from .epilogs import RUN_EPILOG, add_command
from .options import add_db, config_from_args
from .options_ask import add_embedding, add_endpoint, add_generation, add_tasks
from .options_run import add_behaviour, add_cost, add_output, add_retries, add_stopping, add_throughput
from .options_walk import add_filters, add_sources

__all__ = ["add_run_parser", "add_plan_parser", "RUN_GROUPS", "PLAN_GROUPS", "run", "plan", "failed", "say"]

#: The option groups of each command, in the order --help lists them. A plan sends nothing and writes no
#: records, so it leaves out throughput, retries and output, and gets Config's defaults for those.
PLAN_GROUPS = (add_sources, add_filters, add_tasks, add_embedding, add_endpoint, add_generation, add_cost)
RUN_GROUPS = (*PLAN_GROUPS, add_stopping, add_throughput, add_retries, add_output, add_behaviour)

_RUN_DESCRIPTION = (
    "Annotate every function, class, method and doc section under PATHs and write one NDJSON record per "
    "snippet and task. Records go to stdout (or -o FILE); progress and the summary go to stderr. A SQLite "
    "checkpoint (--db) makes reruns resume: nothing already answered is requested again."
)
_PLAN_DESCRIPTION = (
    "Walk and extract as a run would, render every prompt and count its tokens, and print a table to stderr: "
    "requests, prompt tokens, expected output tokens and cost by task, language and kind. Expected output "
    "tokens come from the answers in the checkpoint (--db) when it has some for the task, else half of "
    "--max-tokens. Work the checkpoint has done already is left out. With --json, the same figures go to "
    "stdout as one JSON object."
)


def add_run_parser(commands: Any) -> None:
    """Add ``run`` to `commands` (from ``ArgumentParser.add_subparsers``)."""
    summary = "annotate every function, class, method and doc section under PATHs"
    p = add_command(commands, "run", summary, _RUN_DESCRIPTION, RUN_EPILOG)
    for add_group in RUN_GROUPS:
        add_group(p)


def add_plan_parser(commands: Any) -> None:
    """Add ``plan`` to `commands` (from ``ArgumentParser.add_subparsers``)."""
    summary = "what a run would send and cost, by task, language and kind (sends nothing)"
    p = add_command(commands, "plan", summary, _PLAN_DESCRIPTION)
    for add_group in PLAN_GROUPS:
        add_group(p)
    g = p.add_argument_group("checkpoint and report")
    add_db(g)
    g.add_argument("--json", action="store_true", help="print the plan to stdout as one JSON object")
    p.set_defaults(output="/dev/null", dry_run=True)  # what makes it a plan: nothing sent, no records


def run(args: argparse.Namespace) -> int:
    """``snipstream run``: annotate, print the summary (unless --quiet); the summary's exit code."""
    from ..pipeline import run as run_pipeline

    try:
        config = config_from_args(args).resolve()
        summary = anyio.run(run_pipeline, config)
    except (Exception, KeyboardInterrupt) as exc:
        return failed(exc)
    if not config.quiet:
        from ..prices import load_prices
        from ..progress import format_summary

        prices = load_prices(config.prices)
        say(format_summary(summary, model=config.model, dry_run=config.dry_run, prices_date=prices.date))
    return summary.exit_code


def plan(args: argparse.Namespace) -> int:
    """``snipstream plan``: print what a run would send and cost."""
    from ..plan import plan as make_plan

    try:
        return anyio.run(make_plan, config_from_args(args).resolve(), args.json)
    except (Exception, KeyboardInterrupt) as exc:
        return failed(exc)


def failed(exc: BaseException) -> ExitCode:
    """Report why a run or plan ended early, and the exit code that says so."""
    if isinstance(exc, ConfigError):
        say(f"snipstream: error: {exc}")
        return ExitCode.USAGE
    if isinstance(exc, SnipstreamError):
        say(f"snipstream: {type(exc).__name__}: {exc}")
        return ExitCode.ABORTED
    if isinstance(exc, KeyboardInterrupt):
        say("snipstream: interrupted")
        return ExitCode.INTERRUPTED
    say("snipstream: internal error, please report this:\n" + "".join(traceback.format_exception(exc)))
    return ExitCode.INTERNAL


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
