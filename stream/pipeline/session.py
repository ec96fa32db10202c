"""One run from start to end: open what it writes to, run the graph, close everything under a shield.

A real run opens the checkpoint, the NDJSON output (cut back to its last whole line after a crash) and the
plug-in sinks, emits what earlier runs left unemitted, then runs the graph with the workers. A dry run opens
the checkpoint read-only (to leave out what is done) and runs the graph with the dry route instead.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.abc import ObjectSendStream

from sinks import Sink, load_sink
from sinks.checkpoint import Checkpoint
from sinks.idset import DiskIdSet
from sinks.ndjson import NDJSONSink
from sinks.neardup import CheckpointGroups, ScratchGroups
from sinks.schema import KnownFile

from ..config import Config, is_loopback
from ..errors import SnipstreamError, unwrapped
from ..progress import show_progress
from ..walk import walk
from .asker import Asker
from .control import Control
from .counting import TokenCounter
from .dry import DryEmbedRoute, DryRoute
from .embedding import embed_pass
from .feed import Feed
from .gates import gates_for
from .graph import wire
from .ledger import Ledger
from .messages import Job, Outcome
from .neardups import Groups, NearDups
from .planner import Lookup, Planner, RealRoute, Route
from .resources import client_pool, raise_file_limit
from .summary import Summary
from .workers import Workers
from .writer import Writer

if TYPE_CHECKING:
    from ..pool import EndpointPool

__all__ = ["run", "Planning", "resumable_output"]


@contextlib.asynccontextmanager
async def resumable_output(
    ckpt: Checkpoint, target: str, err: Callable[[str], None]
) -> AsyncIterator[NDJSONSink]:
    """The NDJSON output of a checkpoint's records, cut back to the last offset the checkpoint knows as whole
    (a crash left a torn or unconfirmed line beyond it); used by a run and by `batch collect`."""
    sink = NDJSONSink(target)
    if sink.key is not None:
        sink.resume_offset = await ckpt.output_offset(sink.key)
    async with sink as out:
        for note in out.notes:
            err(f"note: {note}")
        if out.key is not None and sink.resume_offset is None:
            # Where this checkpoint's lines start, known before the first is written: a crash before the
            # first confirmation is then cut back to it like any other.
            await ckpt.mark_emitted([], out.key, out.offset)
        yield out


class Planning(Protocol):
    """Another destination for a real run's jobs (`batch submit`: batch files): no workers are started."""

    def route(
        self,
        ckpt: Checkpoint,
        body: Callable[..., Any],
        summary: Summary,
        outcomes: ObjectSendStream[Outcome],
    ) -> Route: ...

    def embed_route(self, ckpt: Checkpoint, summary: Summary, outcomes: ObjectSendStream[Outcome]) -> Route:
        """Where the embed pass's jobs go (``--task embed``)."""

    async def finish(self) -> None:
        """The graph is done: close what the route wrote (under a shield)."""


class _Session:
    def __init__(
        self,
        config: Config,
        summary: Summary,
        err: Callable[[str], None],
        planning: Planning | None = None,
    ) -> None:
        from .setup import prepare

        self.planning = planning
        self.cfg = config
        self.summary = summary
        self.err = err
        self.setup = prepare(config, self.note)
        self.control = Control(summary, grace=config.grace, err=err)
        self.counter = TokenCounter(config.model, config.api, summary, self.note)
        self.ledger = Ledger(self.setup.file_task)
        self.known: dict[str, KnownFile] = {}
        self.near_dups: NearDups | None = None  # the planner's near-duplicate step (None: --near-dup off)
        self._pool: EndpointPool | None = None
        self._asker: Asker | None = None

    def note(self, message: str) -> None:
        if not self.cfg.quiet:
            self.err(message)

    async def main(self) -> None:
        cfg = self.cfg
        walk(cfg.paths, excludes=cfg.excludes)  # bad --exclude globs raise ConfigError here, before any work
        async with anyio.create_task_group() as outer:
            outer.start_soon(self.control.watch_signals, outer.cancel_scope)
            tpm = any(e.tpm for e in cfg.endpoints)
            if cfg.dry_run or tpm or cfg.max_cost or cfg.max_prompt_tokens:  # needed at once: load now
                outer.start_soon(self.counter.tokenizer)
            if not cfg.quiet:
                show = functools.partial(
                    show_progress, self.summary, mode=cfg.progress, interval=cfg.progress_interval
                )
                outer.start_soon(show)
            try:
                await (self._dry_run() if cfg.dry_run else self._real_run())
            finally:
                outer.cancel_scope.cancel()

    # --- the two kinds of run ----------------------------------------------------------------------------

    async def _dry_run(self) -> None:
        cfg, setup = self.cfg, self.setup
        async with contextlib.AsyncExitStack() as stack:
            reader = None
            if Path(cfg.db).exists():  # what is done already would not be sent: leave it out
                try:
                    reader = await stack.enter_async_context(Checkpoint(cfg.db, readonly=True))
                    self.known = await reader.known_files(setup.file_task)
                except SnipstreamError as exc:
                    self.err(f"note: not reading {cfg.db} ({exc})")
                    reader = None
            out = await stack.enter_async_context(NDJSONSink(cfg.output))
            counted = stack.enter_context(DiskIdSet())
            if cfg.near_dup != "off":  # the checkpoint's groups, and this run's in a temporary database
                await self._group(stack.enter_context(ScratchGroups(reader)))
            writer = self._writer(None, out, [])

            def route(jobs: ObjectSendStream[Job], outcomes: ObjectSendStream[Outcome]) -> Route:
                return DryRoute(
                    counted=counted,
                    counter=self.counter,
                    summary=self.summary,
                    body=self.asker().body,
                    outcomes=outcomes,
                )

            if cfg.tasks:
                await wire(self._feed(reader, route), writer, None, self.control)

            await self._embed(
                reader, writer, functools.partial(_dry_embeds, cfg, counted, self.counter, self.summary)
            )
        embed_price = setup.prices.get(cfg.embed_model) if cfg.embed else None
        if embed_price is not None:
            self.summary.embed_cost = embed_price.cost(self.summary.embed_tokens, 0)
        if setup.price is not None:
            self.summary.estimated_cost = setup.price.cost(
                self.summary.prompt_tokens,
                self.summary.would_send * cfg.max_tokens,
                self.summary.cached_tokens,
            )

    async def _real_run(self) -> None:
        cfg = self.cfg
        raise_file_limit(cfg.concurrency + 256, self.err)
        for e in cfg.endpoints:
            if e.key and e.url.startswith("http://") and not is_loopback(e.url):
                self.err(f"warning: sending the API key over plain http to {e.url}")
        plugins = [load_sink(spec) for spec in cfg.sinks]
        async with Checkpoint(cfg.db) as ckpt:
            self.known = await ckpt.known_files(self.setup.file_task)
            if cfg.near_dup != "off":
                await self._group(CheckpointGroups(ckpt))
            async with resumable_output(ckpt, cfg.output, self.err) as out:
                await self._with_plugins(ckpt, out, plugins)

    async def _with_plugins(self, ckpt: Checkpoint, out: NDJSONSink, plugins: list[Sink]) -> None:
        cfg, summary = self.cfg, self.summary
        entered: list[Sink] = []
        writer = self._writer(ckpt, out, entered)
        try:
            for plugin in plugins:
                await plugin.__aenter__()
                entered.append(plugin)
            writer.run_id = await ckpt.start_run(cfg.public())
            await writer.emit_backlog(emit_all=cfg.emit_all)
            if self.control.stopping:
                pass
            elif self.planning is None:
                if cfg.tasks:
                    await wire(self._feed(ckpt, self._real_route), writer, self._workers(), self.control)
                await self._embed(ckpt, writer, None)
            else:
                planning, body = self.planning, self.asker().body

                def route(jobs: ObjectSendStream[Job], outcomes: ObjectSendStream[Outcome]) -> Route:
                    return planning.route(ckpt, body, self.summary, outcomes)

                def embed_route(jobs: ObjectSendStream[Job], outcomes: ObjectSendStream[Outcome]) -> Route:
                    return planning.embed_route(ckpt, self.summary, outcomes)

                try:
                    if cfg.tasks:
                        await wire(self._feed(ckpt, route), writer, None, self.control)
                    await self._embed(ckpt, writer, embed_route)
                finally:
                    with anyio.CancelScope(shield=True):
                        await planning.finish()
        finally:
            with anyio.CancelScope(shield=True):
                if self._pool is not None:
                    summary.endpoints.update(self._pool.requests_by_endpoint())
                    await self._pool.aclose()
                for plugin in reversed(entered):
                    await plugin.__aexit__(None, None, None)
                summary.elapsed = time.perf_counter() - self.started
                summary.finish()  # as run() returns it: stored with the summary
                await ckpt.finish_run(writer.run_id or 0, summary.as_dict())

    async def _embed(
        self, ckpt: Checkpoint | None, writer: Writer, route: Callable[..., Route] | None
    ) -> None:
        """--task embed's pass, after the other tasks (`stream.pipeline.embedding`); `route`: where its jobs
        go instead of the embedder (`batch submit`)."""
        if self.cfg.embed and not self.control.stopping:
            await embed_pass(
                self.cfg, ckpt, writer, self.setup, self.summary, self.control, self.pool, self.counter, route
            )

    # --- the stages -------------------------------------------------------------------------------------

    def _real_route(self, jobs: ObjectSendStream[Job], outcomes: ObjectSendStream[Outcome]) -> Route:
        return RealRoute(self.ledger, self.summary, jobs, outcomes)

    def _feed(self, reader: Checkpoint | None, route: Callable[..., Route]) -> Callable[..., Feed]:
        async def lookup(record_ids: list[str], occurrence_ids: list[str]) -> tuple[set[str], set[str]]:
            if reader is None or not record_ids:
                return set(), set()
            return await reader.lookup(record_ids, occurrence_ids)

        def make(jobs: ObjectSendStream[Job], outcomes: ObjectSendStream[Outcome]) -> Feed:
            planner = self._planner(lookup, route(jobs, outcomes))
            return Feed(self.setup.scanner(self.cfg, self.known), planner, self.ledger, self.summary)

        return make

    def _planner(self, lookup: Lookup, route: Route) -> Planner:
        return Planner(
            tasks=self.setup.tasks,
            lookup=lookup,
            ledger=self.ledger,
            counter=self.counter,
            summary=self.summary,
            max_prompt_tokens=self.cfg.max_prompt_tokens,
            route=route,
            contexts=self.setup.contexts,
            near_dups=self.near_dups,
        )

    async def _group(self, groups: Groups) -> None:
        """The near-duplicate step (`stream.pipeline.neardups`) over `groups`, with the counts so far."""
        ask_once = self.cfg.near_dup == "ask-once"
        self.near_dups = await NearDups.open(groups, ask_once=ask_once, summary=self.summary)

    def _writer(self, ckpt: Checkpoint | None, out: NDJSONSink, plugins: list[Sink]) -> Writer:
        return Writer(
            ckpt=ckpt,
            out=out,
            plugins=plugins,
            ledger=self.ledger,
            control=self.control,
            counter=self.counter,
            summary=self.summary,
            model=self.cfg.model,
            price=self.setup.price,
        )

    def _workers(self) -> Workers:
        cfg = self.cfg
        gates = gates_for(
            max_cost=cfg.max_cost,
            max_failures=cfg.max_failures,
            price=self.setup.price,
            max_tokens=cfg.max_tokens,
            counter=self.counter,
            summary=self.summary,
            control=self.control,
        )
        return Workers(cfg.concurrency, self.asker(), gates, self.control)

    def pool(self) -> EndpointPool:
        """The HTTP clients, made when the first request is about to go: a run with nothing to send (a
        rerun over a finished tree) neither imports httpx nor builds them."""
        if self._pool is None:
            self._pool = client_pool(self.cfg, self.note)
        return self._pool

    def asker(self) -> Asker:
        if self._asker is None:
            self._asker = Asker(
                cfg=self.cfg,
                shape=self.setup.shape,
                budget=self.setup.budget,
                pool=self.pool,
                counter=self.counter,
                count_usage=functools.partial(self.summary.add_usage, price=self.setup.price),
                count_request=self._count_request,
                note=self.note,
            )
        return self._asker

    def _count_request(self) -> None:
        self.summary.requests += 1

    started: float = 0.0


def _dry_embeds(
    cfg: Config,
    counted: DiskIdSet,
    counter: TokenCounter,
    summary: Summary,
    jobs: ObjectSendStream[Job],
    outcomes: ObjectSendStream[Outcome],
) -> Route:
    """A dry run's route for the embed pass."""
    return DryEmbedRoute(
        counted=counted,
        counter=counter,
        summary=summary,
        body=dict,
        outcomes=outcomes,
        batch=cfg.embed_batch,
        batch_tokens=cfg.embed_batch_tokens,
    )


async def run(
    config: Config, *, err: Callable[[str], None] | None = None, planning: Planning | None = None
) -> Summary:
    """Run the whole job for a resolved `Config` and return its summary (see `Summary`).

    Human messages go to `err` (stderr by default); NDJSON goes to ``config.output``. With `planning`,
    the jobs go to its route instead of the workers (`stream.batch`).
    """
    summary = Summary()
    err = err or (lambda msg: print(msg, file=sys.stderr, flush=True))
    session = _Session(config, summary, err, planning)
    session.started = time.perf_counter()
    with unwrapped():  # (task groups wrap what a stage raised: callers want our error itself)
        await session.main()
    summary.elapsed = time.perf_counter() - session.started
    summary.finish()
    return summary
