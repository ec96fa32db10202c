"""Option groups for how a run goes: cost, when to stop early, throughput, retries, output, progress."""

from __future__ import annotations

import argparse

from ..config import PROGRESS_MODES
from .options import DEFAULTS, add_db

__all__ = ["add_cost", "add_stopping", "add_throughput", "add_retries", "add_output", "add_behaviour"]


def add_cost(parser: argparse.ArgumentParser) -> None:
    """The price table the cost estimates use."""
    g = parser.add_argument_group("cost")
    g.add_argument(
        "--prices",
        default=DEFAULTS.prices,
        metavar="FILE",
        help='TOML price table overriding the built-in one: date = "...", [models] "name" = '
        "{ input = USD, output = USD } per million tokens",
    )


def add_stopping(parser: argparse.ArgumentParser) -> None:
    """Limits that end a run cleanly before it is done (a rerun goes on)."""
    g = parser.add_argument_group("stopping early")
    g.add_argument(
        "--max-cost",
        type=float,
        default=DEFAULTS.max_cost,
        metavar="USD",
        help="stop taking new requests once the spend so far plus what requests in flight may cost "
        "(prompt + --max-tokens each) would pass USD; finishes cleanly, a rerun goes on",
    )
    g.add_argument(
        "--max-failures",
        type=int,
        default=DEFAULTS.max_failures,
        metavar="N",
        help="stop cleanly (resumable) once N snippets have failed in this run",
    )


def add_throughput(parser: argparse.ArgumentParser) -> None:
    """How many requests are in flight, over how many clients, at what rate."""
    g = parser.add_argument_group("throughput")
    g.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULTS.concurrency,
        metavar="N",
        help="requests in flight at once (default: %(default)s)",
    )
    g.add_argument(
        "--clients",
        type=int,
        default=DEFAULTS.clients,
        metavar="N",
        help="HTTP clients in the pool; 0 = one per 8 concurrent requests (default: %(default)s)",
    )
    g.add_argument("--rpm", type=float, default=DEFAULTS.rpm, metavar="N", help="most requests per minute")
    g.add_argument(
        "--tpm",
        type=float,
        default=DEFAULTS.tpm,
        metavar="N",
        help="most tokens per minute (a request reserves its prompt tokens + --max-tokens)",
    )


def add_retries(parser: argparse.ArgumentParser) -> None:
    """Retries of failed and truncated answers, and the timeouts that end an attempt."""
    g = parser.add_argument_group("retries and timeouts")
    g.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULTS.max_attempts,
        metavar="N",
        help="attempts per snippet for retryable errors: 408, 409, 429, 5xx, timeouts, broken "
        "connections or streams (default: %(default)s)",
    )
    g.add_argument(
        "--backoff",
        type=float,
        default=DEFAULTS.backoff,
        metavar="S",
        help="first retry delay in seconds, doubled each attempt, with jitter; a server's "
        "retry-after wins (default: %(default)s)",
    )
    g.add_argument(
        "--retry-truncated",
        action="store_true",
        default=DEFAULTS.retry_truncated,
        help="when an answer stops at --max-tokens (finish_reason length), ask once more with twice "
        "the tokens",
    )
    for flag, default, what in (
        ("--connect-timeout", DEFAULTS.connect_timeout, "seconds to connect"),
        (
            "--stall-timeout",
            DEFAULTS.stall_timeout,
            "seconds without a byte from the server before the attempt is abandoned and retried",
        ),
        ("--request-timeout", DEFAULTS.request_timeout, "seconds for one whole attempt"),
    ):
        g.add_argument(flag, type=float, default=default, metavar="S", help=f"{what} (default: %(default)s)")


def add_output(parser: argparse.ArgumentParser) -> None:
    """Where records go: the NDJSON file, the checkpoint, other sinks; or nowhere (--dry-run)."""
    g = parser.add_argument_group("output")
    g.add_argument(
        "-o",
        "--output",
        default=DEFAULTS.output,
        metavar="FILE",
        help="NDJSON output file, appended to across runs; - for stdout (default: %(default)s)",
    )
    add_db(g)
    g.add_argument(
        "--sink",
        dest="sinks",
        action="append",
        default=list(DEFAULTS.sinks),
        metavar="SPEC",
        help="also send records to this sink: a registered name, an entry point in the "
        "'snipstream.sinks' group, or module:Class (repeatable)",
    )
    g.add_argument(
        "--emit-all",
        action="store_true",
        default=DEFAULTS.emit_all,
        help="first write every record already in the checkpoint again",
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        default=DEFAULTS.dry_run,
        help="walk, extract, render and count tokens; send nothing, write the requests that would "
        "be sent as NDJSON and estimate the cost",
    )


def add_behaviour(parser: argparse.ArgumentParser) -> None:
    """Shutting down on a signal, and what is said on stderr meanwhile."""
    g = parser.add_argument_group("behaviour")
    g.add_argument(
        "--grace",
        type=float,
        default=DEFAULTS.grace,
        metavar="S",
        help="on Ctrl-C/SIGTERM, seconds in-flight requests get to finish (default: %(default)s)",
    )
    g.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        default=DEFAULTS.progress,
        help="progress on stderr: a live line on a terminal, plain periodic lines otherwise "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--progress-interval",
        type=float,
        default=DEFAULTS.progress_interval,
        metavar="S",
        help="seconds between plain progress lines (default: %(default)s)",
    )
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=DEFAULTS.quiet,
        help="no progress, notes or summary; errors only",
    )
