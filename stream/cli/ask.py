"""The ``snipstream ask`` subcommand: its parser and thin handler (the asking itself: `stream.ask`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..ask import DEFAULT_BUDGET, DEFAULT_K
from ..errors import ExitCode
from .epilogs import add_command, exit_table
from .options import add_db, config_from_args
from .options_ask import add_embed_model, add_endpoint, add_generation
from .options_run import add_retries
from .run import failed, say

__all__ = ["add_parser", "run", "ASK_EXITS"]

#: What each exit status of ``snipstream ask`` means.
ASK_EXITS = {
    ExitCode.OK: "answered (the answer and its sources on stdout)",
    ExitCode.USAGE: "usage or configuration error: no checkpoint at --db, no vectors of --embed-model in it "
    "(run snipstream run PATH --task embed first), a --context-budget too small for any snippet, ...",
    ExitCode.ABORTED: "the API failed the request (the message says how)",
    ExitCode.INTERNAL: "internal error (a bug: please report it with the traceback)",
    ExitCode.INTERRUPTED: "interrupted",
}

_DESCRIPTION = (
    "Answer a question about the code from the checkpoint's snippets: the snippets nearest to the question "
    "(as snipstream search finds them, by the vectors of snipstream run --task embed) go to the chat model "
    "as numbered sources, code and annotation, under a token budget; the model is told to answer from them "
    "alone, to cite them as path:start-end, and to say when they do not hold the answer. The answer streams "
    "to stdout, then a blank line, 'Sources:' and one path:start-end line per source given."
)
_EPILOG = """\
{exit_codes}
examples:
  snipstream ask "how are plugins loaded?"
  snipstream ask "where is the retry delay computed?" -k 4 --model gpt-4o
  snipstream ask "what does the writer commit first?" --json | jq -r .answer
"""


def add_parser(subparsers: Any) -> None:
    """Add the ``ask`` subcommand to `subparsers` (from ``ArgumentParser.add_subparsers``)."""
    summary = "answer a question from the checkpoint's snippets, citing them (needs --task embed's vectors)"
    p = add_command(
        subparsers, "ask", summary, _DESCRIPTION, _EPILOG.format(exit_codes=exit_table(ASK_EXITS))
    )
    p.add_argument("question", metavar="QUESTION", help="the question, in words")
    g = p.add_argument_group("sources")
    add_db(g)
    g.add_argument(
        "-k",
        type=int,
        default=DEFAULT_K,
        metavar="N",
        help="snippets to retrieve (default: %(default)s)",
    )
    g.add_argument(
        "--context-budget",
        type=int,
        default=DEFAULT_BUDGET,
        metavar="TOKENS",
        help="tokens the prompt may take (instructions, sources and question); the best snippets that "
        "fit are sent, the others left out (default: %(default)s)",
    )
    g.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document (question, answer, sources, model, usage) when done; nothing streamed",
    )
    for add_group in (add_endpoint, add_generation, add_retries):
        add_group(p)
    add_embed_model(p.add_argument_group("embeddings (the query's vector)"))
    # Config asks for a path to walk; ask walks nothing.
    p.set_defaults(paths=(".",))


def run(args: argparse.Namespace) -> int:
    """``snipstream ask``: the answer streamed (or --json), then its sources; 0 when answered."""
    import anyio
    import orjson

    from sinks.ndjson import detach_stdout

    from ..ask import AnswerStream, ask
    from ..search import require_vectors

    if args.context_budget < 1:
        say(f"snipstream: error: --context-budget must be at least 1, got {args.context_budget}")
        return ExitCode.USAGE
    stream = None if args.json else AnswerStream(sys.stdout, say)
    try:
        require_vectors(args.db)  # before the endpoint's settings: the advice to embed comes first
        cfg = config_from_args(args).resolve()
        answer = anyio.run(
            lambda: ask(cfg, args.question, k=args.k, budget=args.context_budget, stream=stream, note=say)
        )
        if args.json:
            sys.stdout.buffer.write(orjson.dumps(answer.document()) + b"\n")
        else:
            sys.stdout.write(answer.sources_text())
        sys.stdout.flush()
    except BrokenPipeError:  # the reader of stdout went away (ask ... | head)
        detach_stdout()
    except (Exception, KeyboardInterrupt) as exc:
        return failed(exc)
    return ExitCode.OK
