"""``batch submit``: plan as a run does, write the batch input files, then upload them and create batches.

Planning is the run's own pipeline (walk, extract, filters, secrets, the checkpoint's look-up) with the
batch route (`stream.batch.lines`) in place of the workers, so the records, ids and dedup are a run's.
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
from ..pipeline.messages import Outcome
from ..pipeline.planner import Route
from ..pipeline.summary import Summary
from .api import BatchAPI
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
    lines: int = 0  # new request lines
    waiting: int = 0  # places that wait for a line already written
    written: list[str] = field(default_factory=list)  # files closed by this submit
    sent: list[str] = field(default_factory=list)  # files uploaded and made batches (resumed ones too)
    local: list[str] = field(default_factory=list)  # --batch-file-only: the files written for a runner


@dataclass(eq=False)
class _Planning:
    """The `stream.pipeline.Planning` of a submit: the batch route, and its files closed at the end."""

    cfg: Config
    chunker: Chunker | None = None
    route_: BatchRoute | None = None

    def route(
        self,
        ckpt: Checkpoint,
        body: Callable[..., Any],
        summary: Summary,
        outcomes: ObjectSendStream[Outcome],
    ) -> Route:
        cfg, store = self.cfg, BatchStore(ckpt)
        self.chunker = Chunker(
            store=store,
            folder=batch_folder(cfg),
            endpoint=batch_url(cfg.api),
            base_url=None if cfg.batch_file_only else cfg.base_url,
            max_lines=cfg.batch_max_requests,
            max_bytes=cfg.batch_max_bytes,
            local=bool(cfg.batch_file_only),
        )
        self.route_ = BatchRoute(
            store=store, chunks=self.chunker, summary=summary, body=body, outcomes=outcomes
        )
        return self.route_

    async def finish(self) -> None:
        if self.chunker is not None:
            await self.chunker.close()


async def submit(cfg: Config, *, err: Callable[[str], None]) -> Submitted:
    """Plan and write the batch files, then (unless file-only) send every file not yet sent."""
    from ..pipeline import run as run_pipeline
    from ..pipeline.setup import prepare

    setup = prepare(cfg, lambda _: None)
    async with Checkpoint(cfg.db) as ckpt:
        store = BatchStore(ckpt)
        for path in await store.discard_unwritten():
            with contextlib.suppress(OSError):
                Path(path).unlink()
        await store.put_tasks(
            (t.fingerprint, t.template.name, t.info, t.template.schema) for t in setup.tasks
        )
    planning = _Planning(cfg)
    summary = await run_pipeline(cfg, err=err, planning=planning)
    done = Submitted(summary)
    if planning.chunker is not None and planning.route_ is not None:
        done.lines = planning.chunker.lines_written
        done.waiting = planning.route_.waiting
        done.written = list(planning.chunker.closed)
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
