"""Planning: from a parsed file to what each of its snippets needs, per task.

For each file, one look-up in the checkpoint (memory stays flat however large the tree) says which places
are written already and which records are answered. Each new place then goes to the planner's route: in a
real run (`Route` here) an answered record becomes a `Reuse`, a record in flight gets the place attached,
and anything else becomes a `Job` for the workers; a dry run plugs in its own route (`stream.pipeline.dry`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import anyio
from anyio.abc import ObjectSendStream

from sinks.schema import FileRow

from ..context import Contexts
from ..model import Snippet, stable_hash
from ..scan import Scanned
from .counting import TokenCounter
from .ledger import Ledger
from .messages import FilesDone, Job, Outcome, Reuse, Task
from .neardups import NearDups
from .summary import Summary

__all__ = ["Planner", "Route", "RealRoute", "Lookup"]

Lookup = Callable[[list[str], list[str]], Awaitable[tuple[set[str], set[str]]]]
T = TypeVar("T")


class Route(Protocol):
    """Where a planned place goes: the one difference between a real run and a dry run."""

    async def begin_file(self, key: str, row: FileRow, record_ids: set[str]) -> None: ...

    async def answered(self, record_id: str, snippet: Snippet, occurrence_id: str, task: Task) -> None:
        """A new place of a record the checkpoint holds."""

    async def ask(self, job: Job) -> None:
        """A place whose record is not answered yet."""

    async def end_file(self, key: str) -> None: ...


@dataclass(eq=False, kw_only=True)
class Planner:
    tasks: list[Task]
    lookup: Lookup
    ledger: Ledger
    counter: TokenCounter
    summary: Summary
    max_prompt_tokens: int | None
    route: Route

    contexts: Contexts = field(default_factory=lambda: Contexts("none", 0))
    near_dups: NearDups | None = None  # groups near-duplicate code (None: --near-dup off)

    @staticmethod
    def ids(snippet: Snippet, task: Task, context: str = "") -> tuple[str, str]:
        """(record id, occurrence id): the record is the code asked one task (in one context, when the
        prompt carries one: the same code in two contexts is two questions); the occurrence its place."""
        extra = (context,) if context and task.template.uses_context else ()
        record_id = stable_hash(snippet.id, task.fingerprint, *task.template.location_key(snippet), *extra)
        return record_id, stable_hash(record_id, snippet.path, snippet.qualname)

    async def plan_file(self, item: Scanned) -> None:
        self.summary.files += 1
        self.summary.filtered.update(item.filtered)
        self.summary.secrets.update(item.secrets)
        if self.near_dups is not None:  # (with --near-dup ask-once, a group's later members leave here)
            item.snippets = await self.near_dups.select(item)
        planned = [
            (snippet, task, context, *self.ids(snippet, task, context))
            for snippet in item.snippets
            for context in (self._context(snippet, item),)
            for task in self.tasks
            if task.template.applies(snippet)
        ]
        committed = self.ledger.committed_since = set()
        done, seen = await self.lookup([p[3] for p in planned], [p[4] for p in planned])
        key = str(item.file.path)
        await self.route.begin_file(
            key, self.ledger.file_row(item.file, item.hash, len(planned)), {p[3] for p in planned}
        )
        for snippet, task, context, record_id, occurrence_id in planned:
            if occurrence_id in seen:
                self.summary.unchanged += 1
                continue
            seen.add(occurrence_id)  # the same definition twice in one file is one place
            self.summary.snippets += 1
            # Answers committed since the look-up began were missed by it and may have left `inflight`
            # already (planning this file's earlier snippets can wait on a full queue): without this
            # check the same code would be asked about a second time.
            if record_id in done or record_id in committed:
                await self.route.answered(record_id, snippet, occurrence_id, task)
            elif (job := await self._job(snippet, task, context, record_id, occurrence_id)) is not None:
                if context and item.context is not None and job.user.startswith(item.context.header):
                    # up to the start of the file part's last line: a tokenizer's pieces never span a line
                    # break followed by other text (a break followed by a break may be one piece)
                    job.head = item.context.header.rstrip("\n").rfind("\n") + 1
                await self.route.ask(job)
        await self.route.end_file(key)

    def _context(self, snippet: Snippet, item: Scanned) -> str:
        """The snippet's ``{context}`` (the same for each of its tasks; "" without --context)."""
        if not any(t.template.uses_context for t in self.tasks):
            return ""
        return self.contexts.of(snippet, item.context)

    async def _job(self, snippet: Snippet, task: Task, context: str, record_id: str, oid: str) -> Job | None:
        """The request for one place, or None when --max-prompt-tokens leaves it out."""
        system, user = task.template.render(snippet, context)
        job = Job(record_id, snippet, oid, None, system, user, task)
        if self.max_prompt_tokens is not None and await self.counter.prompt_of(job) > self.max_prompt_tokens:
            self.summary.filtered["too_many_tokens"] += 1
            return None
        return job


@dataclass(eq=False)
class RealRoute:
    """A real run's route: reuse what is answered, share what is in flight, ask the rest."""

    ledger: Ledger
    summary: Summary
    jobs: ObjectSendStream[Job]
    outcomes: ObjectSendStream[Outcome]
    _file: tuple[str, tuple[set[str], FileRow]] | None = field(default=None, init=False)

    async def begin_file(self, key: str, row: FileRow, record_ids: set[str]) -> None:
        self._file = (key, self.ledger.open_file(key, row))

    def _expect(self, occurrence_id: str) -> None:
        assert self._file is not None
        key, entry = self._file
        self.ledger.expect(entry, key, occurrence_id)

    async def answered(self, record_id: str, snippet: Snippet, occurrence_id: str, task: Task) -> None:
        self._expect(occurrence_id)
        self.summary.reused += 1
        await send(self.outcomes, Reuse(record_id, snippet, occurrence_id, task))

    async def ask(self, job: Job) -> None:
        self._expect(job.occurrence_id)
        waiting = self.ledger.inflight.get(job.record_id)
        if waiting is not None:  # the same code elsewhere is being asked about right now: share the answer
            waiting.append((job.snippet, job.occurrence_id))
            return
        self.ledger.inflight[job.record_id] = [(job.snippet, job.occurrence_id)]
        await send(self.jobs, job)

    async def end_file(self, key: str) -> None:
        assert self._file is not None
        row = self.ledger.close_file(key, self._file[1])
        self._file = None
        if row is not None:
            await send(self.outcomes, FilesDone([row]))


async def send(stream: ObjectSendStream[T], item: T) -> None:
    """`stream.send(item)` without its checkpoint when there is room (or a receiver waiting).

    anyio's ``send`` yields to the event loop before every item, even when the buffer has room: one whole
    turn of the loop per job. With a thousand streams in flight a turn takes ~10 ms, so a file of 50
    snippets took half a second to plan and the feed, not the server, capped the requests in flight (~250
    of 1,000). The planner yields anyway at each file's checkpoint look-up, and waits here when the
    buffer is full, as before."""
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        await stream.send(item)
