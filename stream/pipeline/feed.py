"""The feed: the walk (in a worker thread: walk, read, parse) handed to the planner in batches.

A parsed file goes to the loop at once; files decided by a stat (unchanged, skipped) go in batches, since
one hop to the event loop costs more than the stat (~0.1 ms a file: most of a no-op rerun).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from anyio.abc import ObjectSendStream

from ..scan import Scanned, Skipped, Unchanged
from .ledger import Ledger
from .messages import FilesDone, Outcome
from .planner import Planner
from .summary import Summary

if TYPE_CHECKING:
    from .embedding import EmbedPlanner

__all__ = ["Feed"]

WALK_BATCH = 256  # unchanged or skipped files handed from the walk thread to the loop at once, at most
Item = Scanned | Unchanged | Skipped


@dataclass(eq=False)
class Feed:
    scan: Callable[[], Iterator[Item]]
    planner: Planner | EmbedPlanner
    ledger: Ledger
    summary: Summary

    async def run(self, outcomes: ObjectSendStream[Outcome]) -> None:
        """Walk everything, planning each file; skips and finished files go to the writer as they come."""
        files_send, files_recv = anyio.create_memory_object_stream[list[Item]](16)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._walk, files_send)
            async with files_recv:
                async for items in files_recv:
                    for item in items:
                        if isinstance(item, Scanned):
                            await self.planner.plan_file(item)
                        elif isinstance(item, Unchanged):
                            await self._unchanged(item, outcomes)
                        else:
                            self.summary.skipped[item.reason] += 1
                            await outcomes.send(item)
        self.summary.walk_done = True

    async def _walk(self, send: ObjectSendStream[list[Item]]) -> None:
        async with send:
            try:
                await anyio.to_thread.run_sync(self._walk_thread, send, abandon_on_cancel=True)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    def _walk_thread(self, send: ObjectSendStream[list[Item]]) -> None:
        batch: list[Item] = []
        for item in self.scan():
            batch.append(item)
            if isinstance(item, Scanned) or len(batch) >= WALK_BATCH:
                anyio.from_thread.run(send.send, batch)
                batch = []
        if batch:
            anyio.from_thread.run(send.send, batch)

    async def _unchanged(self, item: Unchanged, outcomes: ObjectSendStream[Outcome]) -> None:
        known = item.known
        self.summary.files += 1
        if known.skip_reason:
            self.summary.skipped[known.skip_reason] += 1
        self.summary.snippets += known.snippets
        self.summary.unchanged += known.snippets
        if item.touched:  # same content, new mtime: the index row is refreshed
            row = self.ledger.file_row(
                item.file, known.hash, known.snippets, known.skip_reason, known.skip_detail
            )
            await outcomes.send(FilesDone([row]))
