"""The ``snipstream export`` subcommand: its parser and handler (the export itself: `stream.export`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ConfigError, ExitCode, SinkError
from ..export.formats import DEFAULT_TOKENIZER_MODEL, FORMATS
from ..export.split import parse_split
from ..export.vectors import VECTORS
from .epilogs import add_command, exit_table
from .options import add_db

__all__ = ["add_parser", "run", "EXPORT_EXITS"]

#: What each exit status of ``snipstream export`` means.
EXPORT_EXITS = {
    ExitCode.OK: "exported (the summary on stderr says what was written and skipped)",
    ExitCode.FAILED: "nothing to write: every answer was left out (the message says why); no file was "
    "written or replaced",
    ExitCode.USAGE: "usage or configuration error: no checkpoint at --db, a missing output folder, a bad "
    "--split, a blank --system, no answers of --model, ...",
    ExitCode.ABORTED: "the output could not be written (a file being replaced is left as it was)",
    ExitCode.INTERRUPTED: "interrupted",
}

_DESCRIPTION = (
    "Write the done answers in the checkpoint as fine-tuning data: one example per answer\n"
    "(one per question for qa), each answer once even when its code occurs in several places.\n"
    "Examples are checked and their tokens counted; a summary goes to stderr. The checkpoint is\n"
    "only read, so a run may be using it at the same time."
)
_EPILOG = """\
tasks → examples (instruction / input → output):
  annotate    Explain <the code>: what it does, ... / the code → annotation
  explain     Explain <the section>. / the section → annotation
  summarize   Summarize <the section>. / the section → data.summary
  qa          one per pair: the question, asked after the code → the answer
  docstring   Write a docstring for <the code>. / the code → data.docstring
  instruct    data.problem → data.solution
  (custom)    only with --task NAME: as annotate/explain → annotation

splits:
  --split 0.9/0.1 -o data.jsonl writes data.train.jsonl and data.valid.jsonl; a file's examples
  all go to one split (stable hash of its path). 0.8/0.1/0.1 adds data.test.jsonl.

trainers:
  sharegpt (from: human/gpt) is for LLaMA-Factory and Axolotl. For TRL's SFTTrainer export
  openai-chat (messages) or prompt-completion; assistant_only_loss=True needs a chat template
  with {{% generation %}} markers.

{exit_codes}
examples:
  snipstream export --format openai-chat -o train.jsonl
  snipstream export --format sharegpt --split 0.9/0.1 -o data/code.jsonl --task annotate qa
  snipstream export --format jsonl -o - | jq .annotation
  snipstream export --format openai-chat -o train.jsonl --min-score 4 --ids train.ids.jsonl --card CARD.md
"""


def add_parser(subparsers: Any) -> None:
    """Add the ``export`` subcommand to `subparsers` (from ``ArgumentParser.add_subparsers``)."""
    summary = "write the checkpoint's answers as fine-tuning data (OpenAI chat, ShareGPT, Alpaca, ...)"
    epilog = _EPILOG.format(exit_codes=exit_table(EXPORT_EXITS))
    p = add_command(subparsers, "export", summary, _DESCRIPTION, epilog)
    add_db(p)
    p.add_argument(
        "--format",
        required=True,
        choices=(*FORMATS, VECTORS),
        help="openai-chat: {messages}; sharegpt: {conversations}; alpaca: {instruction, input, output}; "
        "prompt-completion: {prompt, completion} (TRL); jsonl: the records as stored; vectors: the "
        "current vectors of --task embed as one Parquet file (id, path, start_line, end_line, qualname, "
        "language, kind, text, model, vector), for a vector database; --model picks the embedding model",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="output file, replaced when complete; - for stdout (not with --split)",
    )
    p.add_argument(
        "--split",
        type=_split_arg,
        default=None,
        metavar="TRAIN/VALID[/TEST]",
        help="split by a stable hash of each file's path, e.g. 0.9/0.1: writes FILE's stem + .train.jsonl, "
        ".valid.jsonl (and .test.jsonl)",
    )
    _add_selection(p)
    _add_examples(p)
    _add_provenance(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no summary; errors only")


def _add_selection(p: argparse.ArgumentParser) -> None:
    """Which answers are exported: by task, by model, truncated or not."""
    g = p.add_argument_group("selection")
    g.add_argument(
        "--task",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="only answers of these tasks: template names (annotate, qa, ..., or a custom template's) or "
        "fingerprint prefixes of 6+ characters (default: every built-in task)",
    )
    g.add_argument(
        "--model", action="extend", nargs="+", default=[], metavar="NAME", help="only answers of these models"
    )
    g.add_argument(
        "--include-truncated",
        action="store_true",
        help="also export answers cut at max_tokens (truncated: true), left out by default",
    )
    g.add_argument(
        "--include-flagged",
        action="store_true",
        help="also export answers the cleaning step flagged (replacement or control characters, too short, "
        "repetitive, echoing the prompt, refusing), left out by default",
    )
    g.add_argument(
        "--min-score",
        type=int,
        default=None,
        metavar="N",
        help="only answers the judge scored N (1-5) or more; unjudged answers are left out too",
    )


def _add_examples(p: argparse.ArgumentParser) -> None:
    """How each training example is made: its system message and its length limit."""
    g = p.add_argument_group("training examples")
    g.add_argument(
        "--system",
        default=None,
        metavar="TEXT",
        help="a system message for every example (alpaca: a system field; prompt-completion: before the prompt)",
    )
    g.add_argument(
        "--max-example-tokens",
        type=int,
        default=None,
        metavar="N",
        help="drop examples longer than this, counted as a chat conversation; 0 = no limit "
        "(default: the tokenizer model's documented fine-tuning limit per example, 65536 for gpt-4o-mini)",
    )
    g.add_argument(
        "--tokenizer-model",
        default=DEFAULT_TOKENIZER_MODEL,
        metavar="NAME",
        help="count tokens with this model's tiktoken encoding, or cl100k_base offline (default: %(default)s)",
    )


def _add_provenance(p: argparse.ArgumentParser) -> None:
    """What is written beside the examples, only when asked for."""
    g = p.add_argument_group("beside the examples")
    g.add_argument(
        "--ids",
        default=None,
        metavar="FILE",
        help="write a sidecar: one JSON line per example, in the same order (its line, split and file when "
        "splitting, record_id, path, qualname, start_line, end_line)",
    )
    g.add_argument(
        "--card",
        default=None,
        metavar="FILE",
        help="write a dataset card (Markdown): counts per task, split and model, the options used, what was "
        "left out and why, and licence/source fields for you to fill in",
    )


def _split_arg(text: str) -> tuple[float, ...]:
    try:
        return parse_split(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Run ``snipstream export`` for parsed `args`: 0 done, 1 nothing to write, 2 usage/configuration error,
    3 output failed."""
    from sinks.ndjson import detach_stdout

    if args.format == VECTORS:
        return _vectors(args)
    from ..export.run import export
    from ..render import format_export

    try:
        report = export(
            args.db,
            args.format,
            args.output,
            split=args.split,
            tasks=tuple(args.task),
            models=tuple(args.model),
            include_truncated=args.include_truncated,
            include_flagged=args.include_flagged,
            min_score=args.min_score,
            max_example_tokens=args.max_example_tokens,
            system=args.system,
            tokenizer_model=args.tokenizer_model,
            ids=args.ids,
            card=args.card,
        )
    except (ConfigError, SinkError, KeyboardInterrupt) as exc:
        return _failed(exc)
    if report.output_closed:
        detach_stdout()
    if not args.quiet:
        _say(format_export(report))
    if not report.examples_written and not report.output_closed:
        _say(f"snipstream: error: nothing exported ({report.empty_reason()}); no file was written")
        return ExitCode.FAILED
    return ExitCode.OK


def _failed(exc: ConfigError | SinkError | KeyboardInterrupt) -> int:
    """What an export that stopped says, and its exit code (no output file was replaced: see `Outputs`)."""
    if isinstance(exc, ConfigError):
        _say(f"snipstream: error: {exc}")
        return ExitCode.USAGE
    if isinstance(exc, SinkError):
        _say(f"snipstream: SinkError: {exc}")
        return ExitCode.ABORTED
    _say("snipstream: interrupted (no output file was replaced)")
    return ExitCode.INTERRUPTED


#: The options of the training formats that a vectors export has no use for.
_NOT_FOR_VECTORS = (
    "split",
    "task",
    "include_truncated",
    "include_flagged",
    "min_score",
    "system",
    "max_example_tokens",
    "ids",
    "card",
)


def _vectors(args: argparse.Namespace) -> int:
    """``export --format vectors`` (`stream.export.vectors`): 0 written, 1 no vectors, 2 usage, 3 output."""
    from ..export.vectors import export_vectors

    given = [f"--{dest.replace('_', '-')}" for dest in _NOT_FOR_VECTORS if getattr(args, dest)]
    if given:
        _say(f"snipstream: error: {', '.join(given)} do not apply to --format vectors")
        return ExitCode.USAGE
    try:
        report = export_vectors(args.db, args.output, models=tuple(args.model))
    except (ConfigError, SinkError, KeyboardInterrupt) as exc:
        return _failed(exc)
    if report.empty_reason:
        _say(f"snipstream: error: nothing exported ({report.empty_reason}); no file was written")
        return ExitCode.FAILED
    if not args.quiet:
        _say(report.text())
    return ExitCode.OK


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
