"""The command line: the ``snipstream`` parser and its dispatch to one thin handler per subcommand.

Flags become a Config in `stream.cli.options` (declared once per concern in ``options_*``); each
subcommand's parser and handler live in `stream.cli.run` (run, plan), `stream.cli.status` and
`stream.cli.export`. Heavy libraries (httpx, tree-sitter, tiktoken) are imported by the handlers that need
them, so ``status`` and ``export`` start without them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from . import ask, batch, export, search, status
from . import run as run_cmd
from .options import config_from_args

__all__ = ["main", "entry", "build_parser", "config_from_args"]

_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": run_cmd.run,
    "plan": run_cmd.plan,
    "status": status.run,
    "export": export.run,
    "batch": batch.run,
    "ask": ask.run,
    "search": search.run,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``snipstream`` parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="snipstream",
        description="Turn a codebase into an LLM-annotated dataset: walk a source tree, cut it into snippets, "
        "annotate each through an OpenAI-compatible API and stream NDJSON records, resumably.",
    )
    parser.add_argument("--version", action="version", version=f"snipstream {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run_cmd.add_run_parser(commands)
    run_cmd.add_plan_parser(commands)
    status.add_parser(commands)
    export.add_parser(commands)
    batch.add_parser(commands)
    ask.add_parser(commands)
    search.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: the process's arguments), run the subcommand, return its exit code."""
    args = build_parser().parse_args(argv)
    return _HANDLERS[args.command](args)


def entry() -> None:
    """The ``snipstream`` console script."""
    sys.exit(int(main()))
