"""The graph: the stages wired by small memory object streams, in one task group.

```
feed (walk thread ─▶ planner) ──jobs──▶ workers (N) ──outcomes──▶ writer
         └──────────── reuse, skips, finished files, dry lines ──────▶ writer
```
Every stream is bounded (jobs: one per worker; outcomes: two per worker), so a slow API slows the walk and
memory stays flat. Each stage owns clones of the streams it uses and closes them when done, so the end of
the feed cascades: the workers' `async for` ends, then the writer's, which commits what is left.
A dry run is the same graph with no workers: its planner route writes request lines straight to the writer.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio
from anyio.abc import ObjectSendStream

from .control import Control
from .embedder import Embedder
from .feed import Feed
from .messages import Job, Outcome
from .workers import Workers
from .writer import Writer

__all__ = ["wire"]

MakeFeed = Callable[[ObjectSendStream[Job], ObjectSendStream[Outcome]], Feed]


async def wire(
    make_feed: MakeFeed, writer: Writer, workers: Workers | Embedder | None, control: Control
) -> None:
    """Run the graph until the feed is done and every outcome is written (or the run is stopped)."""
    count = workers.count if workers is not None else 0
    job_send, job_recv = anyio.create_memory_object_stream[Job](max(1, count))
    out_send, out_recv = anyio.create_memory_object_stream[Outcome](max(16, 2 * count))
    with fewer_collections():
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run, out_recv)
            tg.start_soon(_feed, make_feed, job_send, out_send.clone(), control)
            if workers is not None:
                tg.start_soon(workers.run, job_recv, out_send.clone())
            else:
                job_recv.close()
            out_send.close()


@contextmanager
def fewer_collections(young: int = 10_000) -> Iterator[None]:
    """While the graph runs, the cyclic garbage collector looks at the youngest objects every `young`
    allocations instead of every 700 (Python's default); the old thresholds come back afterwards.

    Every SSE event allocates a few containers (orjson's dicts and lists, the transport's buffers) that
    reference counting frees at once; the collector, counting allocations, still ran ~350 times in a run
    of 2,000 requests, for ~6% of its CPU. Garbage in reference cycles waits a little longer for it."""
    old = gc.get_threshold()
    if old[0]:  # (0: collection switched off; left so)
        gc.set_threshold(max(old[0], young), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)


async def _feed(
    make_feed: MakeFeed, jobs: ObjectSendStream[Job], outcomes: ObjectSendStream[Outcome], control: Control
) -> None:
    try:
        with control.feed_scope:
            async with jobs, outcomes:
                await make_feed(jobs, outcomes).run(outcomes)
    finally:
        jobs.close()
        outcomes.close()
