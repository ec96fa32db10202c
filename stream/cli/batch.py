"""The ``snipstream batch`` subcommands (submit, status, collect, cancel): their parsers and thin handlers
over `stream.batch`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

import anyio

from ..errors import ConfigError, ExitCode
from .epilogs import add_command
from .options import add_db, add_option, config_from_args
from .options_ask import add_embedding, add_endpoint, add_generation, add_tasks
from .options_run import add_behaviour, add_cost, add_output_file, add_retries
from .options_walk import add_filters, add_sources
from .run import failed, say

__all__ = ["add_parser", "run"]

_DESCRIPTION = (
    "Send the work through the provider's Batch API instead of streaming it: half the price, a separate and "
    "larger rate limit, results within 24 hours. `submit` plans exactly as `run` does and uploads the "
    "requests; `status` shows each batch; `collect` writes the records as `run` would (-o FILE or stdout); "
    "`cancel` stops what is still running. Every file and batch id is kept in the checkpoint, so an "
    "interrupted command is simply run again."
)
_SUBMIT = (
    "Walk, extract and plan as `snipstream run` does (the same records, ids, filters, secrets and dedup "
    "against the checkpoint), write the requests as OpenAI batch JSONL split at the provider's limits, "
    "upload each file (purpose=batch) and create its batch (completion_window 24h). Requests that failed or "
    "expired in a collected batch are sent again; requests in a batch still running are not."
)


def add_parser(commands: Any) -> None:
    """Add ``batch`` and its subcommands to `commands` (from ``ArgumentParser.add_subparsers``)."""
    p = add_command(
        commands, "batch", "the provider's Batch API: submit, status, collect, cancel", _DESCRIPTION
    )
    sub = p.add_subparsers(dest="batch_command", metavar="STEP", required=True)
    s = add_command(sub, "submit", "plan as run does and submit the requests as batches", _SUBMIT)
    for add_group in (
        add_sources,
        add_filters,
        add_tasks,
        add_embedding,
        add_endpoint,
        add_generation,
        add_cost,
        add_retries,
    ):
        add_group(s)
    g = s.add_argument_group("batch files")
    add_option(g, "batch_max_requests", help="requests per batch file, at most (default: %(default)s)")
    add_option(
        g, "batch_max_bytes", metavar="BYTES", help="bytes per batch file, at most (default: %(default)s)"
    )
    add_option(
        g,
        "batch_file_only",
        metavar="DIR",
        help="write the batch JSONL into DIR for a local runner (vllm run-batch -i FILE -o OUT) and upload "
        "nothing; ingest its output with `batch collect --from OUT`",
    )
    _output(s)
    add_behaviour(s)

    st = add_command(sub, "status", "each batch's state, request counts and cost at the batch price", "")
    add_endpoint(st)
    add_cost(st)
    _checkpoint(st)
    st.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")

    c = add_command(sub, "collect", "write the records of finished batches as NDJSON", "")
    add_endpoint(c)
    add_cost(c)
    _output(c)
    c.add_argument("--from", dest="source", metavar="FILE", help="ingest a local runner's output file")
    c.add_argument(
        "--wait", action="store_true", help="wait for running batches and collect them as they end"
    )
    c.add_argument("--poll", type=float, default=30.0, metavar="S", help="seconds between polls with --wait")
    add_behaviour(c)

    x = add_command(sub, "cancel", "cancel running batches (all, or the ids given)", "")
    x.add_argument("batch_ids", nargs="*", metavar="BATCH_ID")
    add_endpoint(x)
    _checkpoint(x)


def _output(p: argparse.ArgumentParser) -> None:
    add_output_file(p.add_argument_group("output"))


def _checkpoint(p: argparse.ArgumentParser) -> None:
    add_db(p.add_argument_group("checkpoint"))


def run(args: argparse.Namespace) -> int:
    """``snipstream batch STEP``: run the step, print its report on stderr; the exit code."""
    try:
        cfg = replace(config_from_args(args), batch=True).resolve()
        if cfg.several_endpoints:
            raise ConfigError(
                "batch mode sends to one endpoint (its batches live there): give --base-url and --api-key-env, "
                "not --endpoint/--endpoints"
            )
        return _STEPS[args.batch_command](cfg, args)
    except (Exception, KeyboardInterrupt) as exc:
        return failed(exc)


def _submit(cfg: Any, args: argparse.Namespace) -> int:
    from ..batch.submit import submit

    if cfg.max_cost is not None:
        raise ConfigError("--max-cost is for streamed runs; `snipstream plan` prices a batch beforehand")
    done = anyio.run(lambda: submit(cfg, err=say))
    s = done.summary
    tell = (lambda _: None) if cfg.quiet else say
    tell(
        f"batch submit: {done.lines:,} new requests in {len(done.written)} file(s)"
        + (f" ({done.inputs:,} texts to embed)" if done.inputs else "")
        + f"; {done.waiting:,} more "
        f"places wait for requests already sent; {s.reused:,} reused, {s.unchanged:,} unchanged"
    )
    for path in done.local:
        tell(f"wrote {path}")
    for name in done.sent:
        tell(f"submitted {name}")
    if s.stopped:
        say(f"stopped: {s.stopped}; run the same command again to resume")
    return s.exit_code


def _status(cfg: Any, args: argparse.Namespace) -> int:
    import orjson

    from ..batch.report import batch_status
    from ..render import format_batch_status

    report = anyio.run(batch_status, cfg)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report) + b"\n")
        sys.stdout.flush()
    else:
        say(format_batch_status(report))
    return ExitCode.OK


def _collect(cfg: Any, args: argparse.Namespace) -> int:
    from ..batch.collect import collect

    done = anyio.run(lambda: collect(cfg, err=say, source=args.source, wait=args.wait, poll=args.poll))
    s = done.summary
    tell = (lambda _: None) if cfg.quiet else say
    tell(
        f"batch collect: {s.annotated:,} answers"
        + (f", {s.embedded:,} vectors" if s.embedded else "")
        + f", {sum(s.failed.values()):,} failed"
        + (f" ({', '.join(f'{k} {v:,}' for k, v in s.failed.most_common())})" if s.failed else "")
        + f"; {s.emitted:,} lines written; {len(done.collected)} batch(es) collected"
        + (f"; cost at the batch price ${s.cost:,.4f}" if s.cost is not None else "")
        + (f"; embeddings ${s.embed_cost:,.4f}" if s.embed_cost is not None and s.embedded else "")
    )
    if done.unknown or done.bad:
        say(
            f"warning: {done.unknown:,} result lines name no request of {cfg.db} and {done.bad:,} are not "
            "result lines; they were left out"
        )
    for line in done.line_errors[:20]:
        say(f"  {line}")
    if done.waiting:
        tell(f"{len(done.waiting)} batch(es) still running: collect again later (or --wait)")
    return s.exit_code


def _cancel(cfg: Any, args: argparse.Namespace) -> int:
    from pathlib import Path

    from sinks.batches import BatchStore
    from sinks.checkpoint import Checkpoint

    from ..batch.api import BatchAPI, api_config
    from ..batch.collect import cancel

    if not Path(cfg.db).is_file():
        raise ConfigError(f"no checkpoint at {cfg.db} (give its path with --db)")

    async def main() -> list[tuple[str, str]]:
        async with Checkpoint(cfg.db) as ckpt:
            store = BatchStore(ckpt)
            async with BatchAPI(api_config(cfg, await store.files())) as api:
                return await cancel(store, api, set(args.batch_ids))

    for batch_id, status in anyio.run(main):
        say(f"{batch_id}: {status}")
    return ExitCode.OK


_STEPS = {"submit": _submit, "status": _status, "collect": _collect, "cancel": _cancel}
