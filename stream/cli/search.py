"""The ``snipstream search`` subcommand: its parser and thin handler (the search itself: `stream.search`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sinks.vectors import MAX_K

from ..errors import ExitCode
from ..search import DEFAULT_K
from .epilogs import add_command, exit_table
from .options import add_db, config_from_args
from .options_ask import add_embed_model, add_endpoint
from .options_run import add_retries
from .run import failed, say

__all__ = ["add_parser", "run", "SEARCH_EXITS"]

#: What each exit status of ``snipstream search`` means.
SEARCH_EXITS = {
    ExitCode.OK: "the nearest snippets were printed",
    ExitCode.USAGE: "usage or configuration error: no checkpoint at --db, no vectors (of --embed-model) in "
    "it (run snipstream run --task embed PATH first), -k out of range, ...",
    ExitCode.ABORTED: "the API failed the query's embeddings request, or the checkpoint could not be read",
    ExitCode.INTERNAL: "internal error (a bug: please report it with the traceback)",
    ExitCode.INTERRUPTED: "interrupted",
}

_DESCRIPTION = (
    "Find the snippets nearest to a question: it is embedded with the model of the checkpoint's vectors "
    "(those of snipstream run --task embed), and the snippets whose current vector is nearest by cosine "
    "similarity are printed to stdout, best first: path:start-end, qualname and score, then the first lines "
    "of the annotation. The checkpoint's sqlite-vec index is brought up to date first (where sqlite-vec "
    "cannot be loaded, every vector is scanned exactly); which was used is said on stderr. The vectors "
    "searched are those of --embed-model (and --dimensions); without the flag, when the checkpoint has none "
    "of the default model, its newest vectors, whatever their model."
)
_EPILOG = """\
{exit_codes}
examples:
  snipstream search "how are plugins loaded?"
  snipstream search "where is the retry delay computed?" -k 3 --db work.db
  snipstream search "what does the writer commit first?" --json | jq -r '.hits[].path'
"""


def add_parser(subparsers: Any) -> None:
    """Add the ``search`` subcommand to `subparsers` (from ``ArgumentParser.add_subparsers``)."""
    summary = "the snippets nearest to a question, by the checkpoint's vectors (needs --task embed's)"
    epilog = _EPILOG.format(exit_codes=exit_table(SEARCH_EXITS))
    p = add_command(subparsers, "search", summary, _DESCRIPTION, epilog)
    p.add_argument("query", metavar="QUERY", help="the question, in words")
    g = p.add_argument_group("search")
    add_db(g)
    g.add_argument(
        "-k",
        type=int,
        default=DEFAULT_K,
        metavar="N",
        help=f"snippets to show, 1 to {MAX_K} (default: %(default)s)",
    )
    g.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document (query, model, dimensions, index, hits with their code and annotation)",
    )
    g.add_argument(
        "--exact",
        action="store_true",
        help="scan every vector exactly instead of using the sqlite-vec index (same results, slower)",
    )
    for add_group in (add_endpoint, add_retries):
        add_group(p)
    add_embed_model(p.add_argument_group("embeddings (the query's vector)"))
    p.set_defaults(paths=(".",))  # Config asks for a path to walk; search walks nothing


def run(args: argparse.Namespace) -> int:
    """``snipstream search``: the hits on stdout (text, or --json one document); 0 when printed."""
    import anyio
    import orjson

    from sinks.ndjson import detach_stdout

    from ..search import describe, render, require_vectors, search

    try:
        require_vectors(args.db)  # before the endpoint's settings: the advice to embed comes first
        cfg = config_from_args(args).resolve()
        found = anyio.run(lambda: search(cfg, args.query, args.k, exact=args.exact))
        say(describe(found))
        if args.json:
            sys.stdout.buffer.write(orjson.dumps(found) + b"\n")
        else:
            sys.stdout.write(render(found) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the reader of stdout went away (search ... | head)
        detach_stdout()
    except (Exception, KeyboardInterrupt) as exc:
        return failed(exc)
    return ExitCode.OK
