"""The ``snipstream status`` subcommand: its parser and handler (the report itself: `stream.status`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ConfigError, ExitCode
from .epilogs import add_command, exit_table
from .options import add_db

__all__ = ["add_parser", "run", "STATUS_EXITS"]

#: What each exit status of ``snipstream status`` means.
STATUS_EXITS = {
    ExitCode.OK: "the report was printed",
    ExitCode.USAGE: "no checkpoint at --db, or not a snipstream checkpoint",
}

_DESCRIPTION = (
    "Report what a checkpoint holds: done and failed answers by task and model, the tokens and estimated cost "
    "of the stored answers, the most common failure reasons, skipped files, and the last run. The checkpoint "
    "is opened read-only and no lock is taken, so this works while a run is writing it."
)
_PENDING = (
    "Pending snippets are not counted: that needs a walk of the tree (snipstream run --dry-run shows what a "
    "run would send)."
)


def add_parser(subparsers: Any) -> None:
    """Add the ``status`` subcommand to `subparsers` (from ``ArgumentParser.add_subparsers``)."""
    summary = "show what a checkpoint holds: answers, failures, tokens, cost, runs"
    epilog = f"{_PENDING}\n\n{exit_table(STATUS_EXITS)}"
    p = add_command(subparsers, "status", summary, _DESCRIPTION, epilog)
    add_db(p)
    p.add_argument(
        "--json", action="store_true", help="print the report as one JSON object instead of a table"
    )


def run(args: argparse.Namespace) -> int:
    """Print the status of ``args.db`` (a table on stderr, or with --json one JSON line on stdout); 0 on
    success, 2 when there is no readable checkpoint."""
    import orjson

    from ..render import format_status
    from ..status import status

    try:
        report = status(args.db)
    except ConfigError as exc:  # no checkpoint there, not one, or unreadable
        print(f"snipstream: error: {exc}", file=sys.stderr, flush=True)
        return ExitCode.USAGE
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report) + b"\n")  # one line: stdout stays NDJSON
        sys.stdout.flush()
    else:
        print(format_status(report), file=sys.stderr, flush=True)  # for people: stderr, like all reports
    return ExitCode.OK
