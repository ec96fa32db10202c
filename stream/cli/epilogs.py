"""The help texts around the options: exit codes (rendered from `stream.errors.ExitCode`), the
environment and examples, the formatter that lays them out, and `add_command`, which gives every subcommand
that formatter."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Mapping
from typing import Any

from ..config import DEFAULT_BASE_URL
from ..errors import ExitCode

__all__ = ["RUN_EXITS", "RUN_EPILOG", "exit_table", "ParagraphFormatter", "add_command"]


class ParagraphFormatter(argparse.HelpFormatter):
    """Fills a one-line paragraph of a description or epilog to the terminal's width and keeps a paragraph
    of several lines (a table, a list of examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        filled = []
        for paragraph in text.split("\n\n"):
            if "\n" not in paragraph.strip("\n"):
                paragraph = super()._fill_text(paragraph, width, indent)
            filled.append(paragraph)
        return "\n\n".join(filled)


def add_command(
    commands: Any, name: str, summary: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """Add subcommand `name` to `commands` (from ``ArgumentParser.add_subparsers``) and return its parser:
    `summary` is its line in ``snipstream --help``; `description` and `epilog` frame its own ``--help``, laid
    out by `ParagraphFormatter`."""
    return commands.add_parser(
        name, help=summary, description=description, epilog=epilog, formatter_class=ParagraphFormatter
    )


#: What each exit status of ``snipstream run`` means.
RUN_EXITS: dict[ExitCode, str] = {
    ExitCode.OK: "every snippet annotated (or already done); also when the output pipe was closed early",
    ExitCode.FAILED: "finished, but some snippets failed (stored with their reasons; a rerun retries them)",
    ExitCode.USAGE: "usage or configuration error, found before any request",
    ExitCode.ABORTED: "run aborted: the API refused the key (401/403) or the model/URL (404), the account is "
    "out of quota, every request so far failed the same way (nothing listening, the same 400: see the "
    "message), or the checkpoint or output could not be written",
    ExitCode.INTERNAL: "internal error (a bug: please report it with the traceback)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C / SIGTERM); everything answered so far is kept, a rerun continues",
}


def exit_table(explanations: Mapping[ExitCode, str]) -> str:
    """An ``exit codes:`` section for an epilog: one row per status, its explanation wrapped beside it."""
    lines = ["exit codes:"]
    for code, text in explanations.items():
        lines += textwrap.wrap(
            text, width=104, initial_indent=f"  {int(code):<4} ", subsequent_indent=" " * 7
        )
    return "\n".join(lines) + "\n"


RUN_EPILOG = f"""\
environment:
  OPENAI_API_KEY    the API key (or the variable named by --api-key-env); not needed for loopback URLs
  OPENAI_BASE_URL   the API base URL when --base-url is not given (default {DEFAULT_BASE_URL})

{exit_table(RUN_EXITS)}
examples:
  snipstream run src/ -o annotations.ndjson
  snipstream run src/ | jq -r .annotation
  snipstream run src/ --dry-run -o /dev/null          # count prompts and tokens, estimate the cost
  snipstream run src/ --base-url http://127.0.0.1:8000/v1 --model qwen2.5-coder
  snipstream run src/ docs/ --task qa --task docstring -o dataset.ndjson
  snipstream plan src/ --model gpt-4o-mini           # what a run would cost, by language and kind
  snipstream status                                  # what the checkpoint holds
  snipstream export --format openai-chat --split 0.9/0.1 -o train.jsonl
"""
