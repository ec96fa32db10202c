"""Option groups for how a run goes: cost, when to stop early, throughput, retries, output, progress."""

from __future__ import annotations

import argparse

from ..config import PROGRESS_MODES, TRANSPORTS
from .options import add_db, add_option

__all__ = [
    "add_cost",
    "add_stopping",
    "add_throughput",
    "add_retries",
    "add_output",
    "add_output_file",
    "add_behaviour",
]


def add_cost(parser: argparse.ArgumentParser) -> None:
    """The price table the cost estimates use."""
    g = parser.add_argument_group("cost")
    add_option(
        g,
        "prices",
        metavar="FILE",
        help='TOML price table overriding the built-in one: date = "...", [models] "name" = '
        "{ input = USD, output = USD } per million tokens (optionally cached_input, and batch_input/"
        "batch_output for the Batch API, else half the list price)",
    )


def add_stopping(parser: argparse.ArgumentParser) -> None:
    """Limits that end a run cleanly before it is done (a rerun goes on)."""
    g = parser.add_argument_group("stopping early")
    add_option(
        g,
        "max_cost",
        metavar="USD",
        help="stop taking new requests once the spend so far plus what requests in flight may cost "
        "(prompt + --max-tokens each) would pass USD; finishes cleanly, a rerun goes on",
    )
    add_option(g, "max_failures", help="stop cleanly (resumable) once N snippets have failed in this run")


def add_throughput(parser: argparse.ArgumentParser) -> None:
    """How many requests are in flight, over how many clients, at what rate."""
    g = parser.add_argument_group("throughput")
    add_option(g, "concurrency", help="requests in flight at once (default: %(default)s)")
    add_option(
        g,
        "clients",
        help="HTTP clients in the pool; 0 = one per 8 concurrent requests (default: %(default)s)",
    )
    add_option(
        g,
        "transport",
        choices=TRANSPORTS,
        help="what carries httpx's requests: aiohttp (httpx-aiohttp, several times less CPU per streamed "
        "answer) or httpx's own (default: %(default)s)",
    )
    add_option(g, "rpm", metavar="N", help="most requests per minute")
    add_option(
        g,
        "tpm",
        metavar="N",
        help="most tokens per minute (a request reserves its prompt tokens + --max-tokens)",
    )


def add_retries(parser: argparse.ArgumentParser) -> None:
    """Retries of failed and truncated answers, and the timeouts that end an attempt."""
    g = parser.add_argument_group("retries and timeouts")
    add_option(
        g,
        "max_attempts",
        help="attempts per snippet for retryable errors: 408, 409, 429, 5xx, timeouts, broken "
        "connections or streams (default: %(default)s)",
    )
    add_option(
        g,
        "backoff",
        metavar="S",
        help="first retry delay in seconds, doubled each attempt, with jitter; a server's "
        "retry-after wins (default: %(default)s)",
    )
    add_option(
        g,
        "retry_truncated",
        help="when an answer stops at --max-tokens (finish_reason length), ask once more with twice "
        "the tokens",
    )
    add_option(g, "connect_timeout", metavar="S", help="seconds to connect (default: %(default)s)")
    add_option(
        g,
        "stall_timeout",
        metavar="S",
        help="seconds without a byte from the server before the attempt is abandoned and retried "
        "(default: %(default)s)",
    )
    add_option(g, "request_timeout", metavar="S", help="seconds for one whole attempt (default: %(default)s)")


def add_output(parser: argparse.ArgumentParser) -> None:
    """Where records go: the NDJSON file, the checkpoint, other sinks; or nowhere (--dry-run)."""
    g = parser.add_argument_group("output")
    add_output_file(g)
    add_option(
        g,
        "sinks",
        "--sink",
        metavar="SPEC",
        help="also send records to this sink: a registered name, an entry point in the "
        "'snipstream.sinks' group, or module:Class (repeatable)",
    )
    add_option(g, "emit_all", help="first write every record already in the checkpoint again")
    add_option(
        g,
        "dry_run",
        help="walk, extract, render and count tokens; send nothing, write the requests that would "
        "be sent as NDJSON and estimate the cost",
    )


def add_output_file(g: argparse._ActionsContainer) -> None:
    """``-o FILE`` and ``--db FILE``: where records and the checkpoint go (run, batch submit and collect)."""
    add_option(
        g,
        "output",
        "-o",
        "--output",
        metavar="FILE",
        help="NDJSON output file, appended to across runs; - for stdout (default: %(default)s)",
    )
    add_db(g)


def add_behaviour(parser: argparse.ArgumentParser) -> None:
    """Shutting down on a signal, and what is said on stderr meanwhile."""
    g = parser.add_argument_group("behaviour")
    add_option(
        g,
        "grace",
        metavar="S",
        help="on Ctrl-C/SIGTERM, seconds in-flight requests get to finish (default: %(default)s)",
    )
    add_option(
        g,
        "progress",
        choices=PROGRESS_MODES,
        help="progress on stderr: a live line on a terminal, plain periodic lines otherwise "
        "(default: %(default)s)",
    )
    add_option(
        g,
        "progress_interval",
        metavar="S",
        help="seconds between plain progress lines (default: %(default)s)",
    )
    add_option(g, "quiet", "-q", "--quiet", help="no progress, notes or summary; errors only")
