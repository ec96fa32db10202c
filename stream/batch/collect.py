"""``batch status``, ``collect`` and ``cancel``: the provider's batches followed, their results written.

`collect` opens what a run opens (the checkpoint, the NDJSON output cut back to its last whole line, and
the backlog of lines committed but not written by an interrupted collect), then ingests each finished
batch's output and error files (`stream.batch.ingest`). When a batch is over, every line of its input file
is accounted for: a line with no result (the batch failed validation, expired or was cancelled before it
ran) is recorded as failed with the batch's status as its reason, and the next submit asks it again. Only
then is the file marked collected. `--from FILE` ingests a local runner's output (``vllm run-batch``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from sinks.batches import SETTLED, TERMINAL, BatchFile, BatchStore
from sinks.checkpoint import Checkpoint

from ..config import Config
from ..errors import ConfigError
from ..pipeline.control import Control
from ..pipeline.counting import TokenCounter
from ..pipeline.ledger import Ledger
from ..pipeline.session import resumable_output
from ..pipeline.summary import Summary
from ..pipeline.writer import Writer
from ..prices import load_prices
from .api import BatchAPI, api_config, line_error
from .ingest import Ingest, task_models

__all__ = ["collect", "refresh", "cancel", "Collected"]


@dataclass
class Collected:
    summary: Summary
    collected: list[str] = field(default_factory=list)  # files whose batches were collected
    waiting: list[BatchFile] = field(default_factory=list)  # batches still running
    line_errors: list[str] = field(default_factory=list)  # a failed batch's errors, as the provider gave them
    unknown: int = 0  # result lines whose custom_id is no line of this checkpoint
    bad: int = 0  # result lines that are not JSON objects with a custom_id


async def refresh(store: BatchStore, api: BatchAPI) -> list[BatchFile]:
    """Ask the provider about every submitted batch still running; store what it says; every file."""
    for f in await store.files("submitted"):
        if f.status in TERMINAL or f.batch_id is None:
            continue
        batch = await api.get(f.batch_id)
        await store.update(
            f.name,
            status=batch.get("status"),
            counts=batch.get("request_counts") or None,
            output_file_id=batch.get("output_file_id"),
            error_file_id=batch.get("error_file_id"),
            errors=batch.get("errors") or None,
        )
    return await store.files()


async def cancel(store: BatchStore, api: BatchAPI, ids: set[str]) -> list[tuple[str, str]]:
    """Cancel the running batches (or those in `ids`); (batch id, status now) of each."""
    done = []
    for f in await refresh(store, api):
        if f.state != "submitted" or f.status in TERMINAL or f.batch_id is None:
            continue
        if ids and f.batch_id not in ids:
            continue
        batch = await api.cancel(f.batch_id)
        await store.update(f.name, status=batch.get("status"))
        done.append((f.batch_id, str(batch.get("status"))))
    return done


async def collect(
    cfg: Config,
    *,
    err: Callable[[str], None],
    source: str | None = None,
    wait: bool = False,
    poll: float = 10.0,
) -> Collected:
    if not Path(cfg.db).is_file():
        raise ConfigError(f"no checkpoint at {cfg.db} (give its path with --db)")
    summary = Summary()
    started = time.perf_counter()
    done = Collected(summary)
    async with Checkpoint(cfg.db) as ckpt:
        store = BatchStore(ckpt)
        tasks = await Ingest.make_tasks(store)
        if not tasks:
            raise ConfigError(f"{cfg.db} holds no batch: run `snipstream batch submit` first")
        model, embed_model = task_models((t.info for t in tasks.values()), cfg.model)
        prices = load_prices(cfg.prices)
        price, embed_price = prices.get(model), prices.get(embed_model) if embed_model else None
        async with resumable_output(ckpt, cfg.output, err) as out:
            counter = TokenCounter(model, cfg.api, summary, lambda _: None)
            writer = Writer(
                ckpt=ckpt,
                out=out,
                plugins=[],
                ledger=Ledger(""),
                control=Control(summary, grace=cfg.grace, err=err),
                counter=counter,
                summary=summary,
                model=model,
                price=price.for_batch() if price else None,
            )
            writer.run_id = await ckpt.start_run({**cfg.public(), "command": "batch collect"})
            try:
                await writer.emit_backlog(emit_all=False)
                ingest = Ingest(ckpt=ckpt, store=store, writer=writer, tasks=tasks)
                if source is not None:
                    await _from_file(Path(source), store, ingest, done)
                else:
                    async with BatchAPI(api_config(cfg, await store.files())) as api:
                        await _from_api(store, api, ingest, done, wait=wait, poll=poll)
                done.unknown, done.bad = ingest.unknown, ingest.bad
            finally:
                with anyio.CancelScope(shield=True):
                    if embed_price is not None:  # the vectors at the Batch API's price
                        summary.embed_cost = embed_price.for_batch().cost(summary.embed_tokens, 0)
                    summary.elapsed = time.perf_counter() - started
                    summary.finish()
                    await ckpt.finish_run(writer.run_id or 0, summary.as_dict())
    return done


async def _from_file(path: Path, store: BatchStore, ingest: Ingest, done: Collected) -> None:
    """A local runner's output file: its lines, then each input file it answered marked collected."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ConfigError(f"cannot read --from {path}: {exc.strerror or exc}") from None
    with f:
        for raw in f:
            if raw.strip():
                await ingest.line(raw)
    await ingest.flush()
    local = {b.name: b for b in await store.files("local")}
    for name in sorted(await store.names_of(sorted(ingest.ids))):
        if name in local:
            await _settle(local[name], "missing", store, ingest, done)


async def _from_api(
    store: BatchStore, api: BatchAPI, ingest: Ingest, done: Collected, *, wait: bool, poll: float
) -> None:
    while True:
        files = await refresh(store, api)
        for f in files:
            if f.state == "submitted" and f.status in TERMINAL:
                for file_id in (f.output_file_id, f.error_file_id):
                    if file_id:
                        async for raw in api.content(file_id):
                            await ingest.line(raw)
                await ingest.flush()
                await _settle(f, str(f.status), store, ingest, done)
        done.waiting = [f for f in await store.files("submitted")]
        if not wait or not done.waiting:
            return
        await anyio.sleep(poll)


async def _settle(f: BatchFile, status: str, store: BatchStore, ingest: Ingest, done: Collected) -> None:
    """Every line of a finished batch accounted for, then the file marked collected."""
    errors = {e.get("line"): e for e in ((f.errors or {}).get("data") or []) if isinstance(e, dict)}
    done.line_errors += [f"{f.batch_id}: {line_error(e)}" for e in errors.values()]
    lines = await store.lines_of(f.name)
    finished, _ = await ingest.ckpt.lookup(list(lines), [])
    for rid, row in sorted(lines.items(), key=lambda kv: kv[1].line):
        if rid in finished or rid in ingest.ids:
            continue
        error = errors.get(row.line) or errors.get(None) or {}
        message = error.get("message") or f"no result for this line: the batch is {status}"
        await ingest.line_obj({"custom_id": rid, "error": {"code": f"batch_{status}", "message": message}})
    await ingest.flush()
    await store.update(f.name, state=SETTLED)
    if f.base_url is not None:  # an uploaded file: the provider holds it; a runner's input is the user's
        with contextlib.suppress(OSError):
            Path(f.path).unlink()
    done.collected.append(f.name)
