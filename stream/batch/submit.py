"""``batch submit``: plan as a run does, write the batch input files, then upload them and create batches.

Planning is the run's own pipeline (walk, extract, filters, secrets, the checkpoint's look-up) with the
batch route (`stream.batch.lines`) in place of the workers, so the records, ids and dedup are a run's; with
``--task embed``, the embed pass's route (`stream.batch.embed_lines`) writes embeddings lines to files of
their own (a batch has one endpoint).
Then each closed file is sent, one step at a time, each step's id stored before the next (see
`sinks.batches` for the states): an interrupted submit is resumed by the next one, which looks an upload
up by its file name and a batch by its input file id before it uploads or creates again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anyio.abc import ObjectSendStream

from sinks.batches import BatchStore
from sinks.checkpoint import Checkpoint

from ..config import Config
from ..pipeline.counting import TokenCounter
from ..pipeline.messages import Outcome
from ..pipeline.planner import Route
from ..pipeline.summary import Summary
from .api import BatchAPI
from .embed_lines import EMBEDDINGS_URL, MAX_BATCH_INPUTS, EmbedRoute
from .lines import BatchRoute, Chunker, batch_url

__all__ = ["submit", "Submitted", "batch_folder", "send"]


def batch_folder(cfg: Config) -> Path:
    """Where input files are written: ``--batch-file-only DIR``, else beside the checkpoint."""
    if cfg.batch_file_only:
        return Path(cfg.batch_file_only)
    db = Path(cfg.db)
    return db.with_name(db.name + ".batches")


@dataclass
class Submitted:
    """What a submit did: the run's summary, the lines written and the files sent."""

    summary: Summary
    lines: int = 0  # new request lines (an embeddings line counts once)
    inputs: int = 0  # of those, the texts the new embeddings lines carry
    waiting: int = 0  # places that wait for a line already written
    written: list[str] = field(default_factory=list)  # files closed by this submit
    sent: list[str] = field(default_factory=list)  # files uploaded and made batches (resumed ones too)
    local: list[str] = field(default_factory=list)  # --batch-file-only: the files written for a runner


@dataclass(eq=False)
class _Planning:
    """The `stream.pipeline.Planning` of a submit: the batch routes, and their files closed at the end."""

    cfg: Config
    chunker: Chunker | None = None
    route_: BatchRoute | None = None
    embed_chunker: Chunker | None = None
    embed_route_: EmbedRoute | None = None

    def route(
        self,
        ckpt: Checkpoint,
        body: Callable[..., Any],
        summary: Summary,
        outcomes: ObjectSendStream[Outcome],
    ) -> Route:
        store = BatchStore(ckpt)
        self.chunker = self._chunker(store, batch_url(self.cfg.api))
        self.route_ = BatchRoute(
            store=store, chunks=self.chunker, summary=summary, body=body, outcomes=outcomes
        )
        return self.route_

    def embed_route(self, ckpt: Checkpoint, summary: Summary, outcomes: ObjectSendStream[Outcome]) -> Route:
        cfg, store = self.cfg, BatchStore(ckpt)
        self.embed_chunker = self._chunker(store, EMBEDDINGS_URL, MAX_BATCH_INPUTS, "snipstream-embed")
        self.embed_route_ = EmbedRoute(
            store=store,
            chunks=self.embed_chunker,
            summary=summary,
            # counted as the run's embedder counts (the run's model and API: `pipeline.session`)
            counter=TokenCounter(cfg.model, cfg.api, summary, lambda _: None),
            outcomes=outcomes,
            model=cfg.embed_model,
            dimensions=cfg.dimensions,
            batch=cfg.embed_batch,
            batch_tokens=cfg.embed_batch_tokens,
        )
        return self.embed_route_

    def _chunker(
        self, store: BatchStore, endpoint: str, max_inputs: int | None = None, prefix: str = "snipstream"
    ) -> Chunker:
        cfg = self.cfg
        return Chunker(
            store=store,
            folder=batch_folder(cfg),
            endpoint=endpoint,
            base_url=None if cfg.batch_file_only else cfg.base_url,
            max_lines=cfg.batch_max_requests,
            max_bytes=cfg.batch_max_bytes,
            local=bool(cfg.batch_file_only),
            max_inputs=max_inputs,
            prefix=prefix,
        )

    async def finish(self) -> None:
        if self.embed_route_ is not None:
            await self.embed_route_.flush()
        for chunker in (self.chunker, self.embed_chunker):
            if chunker is not None:
                await chunker.close()

    def report(self, done: Submitted) -> None:
        """What the routes wrote, into `done`."""
        for chunker in (self.chunker, self.embed_chunker):
            if chunker is not None:
                done.lines += chunker.lines_written
                done.inputs += chunker.inputs_written
                done.written += chunker.closed
        for route in (self.route_, self.embed_route_):
            if route is not None:
                done.waiting += route.waiting


async def submit(cfg: Config, *, err: Callable[[str], None]) -> Submitted:
    """Plan and write the batch files, then (unless file-only) send every file not yet sent."""
    from ..pipeline import run as run_pipeline
    from ..pipeline.embedding import embed_task
    from ..pipeline.setup import prepare

    setup = prepare(cfg, lambda _: None)
    tasks = [*setup.tasks, *([embed_task(cfg)] if cfg.embed else [])]
    async with Checkpoint(cfg.db) as ckpt:
        store = BatchStore(ckpt)
        for path in await store.discard_unwritten():
            with contextlib.suppress(OSError):
                Path(path).unlink()
        await store.put_tasks((t.fingerprint, t.template.name, t.info, t.template.schema) for t in tasks)
    planning = _Planning(cfg)
    summary = await run_pipeline(cfg, err=err, planning=planning)
    done = Submitted(summary)
    planning.report(done)
    if cfg.batch_file_only:
        done.local = [str(batch_folder(cfg) / name) for name in done.written]
    elif summary.stopped is None:
        async with Checkpoint(cfg.db) as ckpt, BatchAPI(cfg) as api:
            done.sent = await send(BatchStore(ckpt), api, err)
    return done


async def send(store: BatchStore, api: BatchAPI, note: Callable[[str], None]) -> list[str]:
    """Upload every written file and create its batch, storing each id before the next step."""
    sent = []
    for f in await store.files("written", "uploading", "uploaded", "creating"):
        file_id = f.file_id
        if f.state in ("written", "uploading"):
            found = await api.find_file(f.name) if f.state == "uploading" else None
            if found is None:
                await store.update(f.name, state="uploading")
                found = await api.upload(Path(f.path), f.name)
            else:
                note(f"note: {f.name} was uploaded by an earlier submit ({found.get('id')}); not again")
            file_id = str(found["id"])
            await store.update(f.name, state="uploaded", file_id=file_id)
        assert file_id is not None
        batch = await api.find_batch(file_id) if f.state == "creating" else None
        if batch is None:
            await store.update(f.name, state="creating")
            batch = await api.create(file_id, f.endpoint, {"snipstream_file": f.name})
        else:
            note(f"note: the batch of {f.name} was created by an earlier submit ({batch.get('id')})")
        await store.update(
            f.name,
            state="submitted",
            batch_id=str(batch["id"]),
            status=batch.get("status"),
            counts=batch.get("request_counts"),
        )
        sent.append(f.name)
    return sent
