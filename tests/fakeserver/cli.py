"""``python -m tests.fakeserver``: the fake server on the command line (`main`)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from tests.fakeserver.faults import ALL_FAULTS
from tests.providers import MODE_NAMES, modes_from_names


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.fakeserver``: serve until Ctrl-C/SIGTERM; the URL is the first line on stderr."""
    from tests import fakeserver  # the server is built by this name (bench._server puts its own there)

    args = _parser(fakeserver.__doc__ or "").parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    server = fakeserver.FakeOpenAI(
        chunks=args.chunks,
        latency=args.latency,
        chunk_delay=args.chunk_delay,
        include_usage=not args.no_usage,
        api_key=args.api_key,
        model=args.model,
        sse_extras=args.sse_extras,
        host=args.host,
        port=args.port,
        verbose=args.verbose,
        rpm=args.rpm,
        tpm=args.tpm,
        burst_seconds=args.burst_seconds,
        ratelimit_headers="none" if args.no_ratelimit_headers else args.ratelimit_headers,
        refund_unused=args.refund_unused,
        fault_rate=args.fault_rate,
        faults=[f for f in args.faults.split(",") if f],
        seed=args.seed,
        stall_seconds=args.stall_seconds,
        finish_reason=args.finish_reason,
        provider=modes_from_names(args.provider, n_ctx=args.n_ctx, key=args.api_key),
        batch_step_seconds=args.batch_step_seconds,
        batch_expire=args.batch_expire,
        batch_line_errors=args.batch_line_errors,
        upload_delay=args.upload_delay,
        content_delay=args.content_delay,
        content_chunk_lines=args.content_chunk_lines,
        max_file_bytes=args.max_file_bytes,
        max_batch_requests=args.max_batch_requests,
    )
    server.start()
    try:
        print(server.url, file=sys.stderr, flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.fakeserver", description=doc.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 = any free port (default 8000)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each response starts")
    parser.add_argument("--chunks", type=int, default=20, help="pieces per answer (default 20)")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between stream events")
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    parser.add_argument("--model", default=None, help="accept only this model")
    parser.add_argument("--no-usage", action="store_true", help="never report token usage")
    parser.add_argument("--sse-extras", action="store_true", help="comments, event lines, CRLF in streams")
    parser.add_argument("-v", "--verbose", action="store_true", help="print one line per request")
    _add_limits(parser)
    _add_faults(parser)
    _add_batches(parser)
    parser.add_argument(
        "--provider",
        action="append",
        default=[],
        choices=MODE_NAMES,
        help="behave as a provider documents (repeatable; see tests/providers.py); azure takes --api-key "
        "as its api-key header",
    )
    parser.add_argument("--n-ctx", type=int, default=4096, help="context size of the context-* modes")
    return parser


def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpm", type=float, default=None, help="enforce this many requests per minute")
    parser.add_argument("--tpm", type=float, default=None, help="enforce this many tokens per minute")
    parser.add_argument(
        "--burst-seconds",
        type=float,
        default=1.0,
        help="seconds of refill the rate-limit buckets hold (default 1)",
    )
    parser.add_argument(
        "--ratelimit-headers",
        choices=("all", "429", "none"),
        default="all",
        help="where x-ratelimit-* headers go: every response (default), only 429s, or nowhere",
    )
    parser.add_argument(
        "--no-ratelimit-headers",
        action="store_true",
        help="send no x-ratelimit-* headers (= --ratelimit-headers none)",
    )
    parser.add_argument(
        "--refund-unused",
        action="store_true",
        help="give the unused part of max_tokens back to the token bucket when an answer ends "
        "(default: OpenAI's accounting, the admission charge stands)",
    )


def _add_faults(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a random fault")
    parser.add_argument(
        "--faults", default=",".join(ALL_FAULTS), help="comma-separated faults to draw from (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument("--stall-seconds", type=float, default=2.0, help="pause of the 'stall' fault")
    parser.add_argument("--finish-reason", default=None, help="force this finish_reason on every answer")


def _add_batches(parser: argparse.ArgumentParser) -> None:
    """The Files and Batch API knobs (`tests.fakeserver.batchapi.BatchAPI`)."""
    group = parser.add_argument_group("batches", "the Files and Batch APIs (/v1/files, /v1/batches)")
    group.add_argument(
        "--batch-step-seconds",
        type=float,
        default=0.05,
        help="seconds a batch spends validating, in_progress, finalizing (default 0.05)",
    )
    group.add_argument(
        "--batch-expire",
        type=float,
        default=0.0,
        help="fraction of each batch's lines left undone: it expires",
    )
    group.add_argument(
        "--batch-line-errors",
        type=float,
        default=0.0,
        help="fraction of each batch's lines answered with a 500",
    )
    group.add_argument("--upload-delay", type=float, default=0.0, help="seconds before answering an upload")
    group.add_argument(
        "--content-delay", type=float, default=0.0, help="seconds between pieces of a file's content"
    )
    group.add_argument(
        "--content-chunk-lines",
        type=int,
        default=100,
        help="lines per piece of a file's content (default 100)",
    )
    group.add_argument(
        "--max-file-bytes", type=int, default=200_000_000, help="largest batch upload (default 200 MB)"
    )
    group.add_argument(
        "--max-batch-requests", type=int, default=50_000, help="most lines in a batch (default 50,000)"
    )
