"""The dry run's route: each record that would be sent is counted, priced and written as a request line.

Nothing is asked and nothing is written to the checkpoint. A record is counted once however many places
hold its code: the ids counted by earlier files live in a temporary on-disk set (memory stays flat), the
current file's in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anyio.abc import ObjectSendStream

from sinks.idset import DiskIdSet
from sinks.schema import FileRow

from ..model import Snippet
from ..record import dry_line
from .counting import TokenCounter
from .messages import DryLine, Job, Outcome, Task
from .prefixes import PrefixCache
from .summary import Summary

__all__ = ["DryRoute", "DryEmbedRoute"]


@dataclass(eq=False, kw_only=True)
class DryRoute:
    counted: DiskIdSet
    counter: TokenCounter
    summary: Summary
    body: Callable[[Job], dict[str, Any]]
    outcomes: ObjectSendStream[Outcome]
    planned: set[str] = field(
        default_factory=set
    )  # of the current file's records, those counted (by any file)
    planned_new: list[str] = field(default_factory=list)  # of those, the ones this file counted first
    prefixes: PrefixCache = field(default_factory=PrefixCache)  # what a prompt cache would likely serve

    async def begin_file(self, key: str, row: FileRow, record_ids: set[str]) -> None:
        self.planned = self.counted.which(record_ids) if record_ids else set()

    async def answered(self, record_id: str, snippet: Snippet, occurrence_id: str, task: Task) -> None:
        """Done already: a run would not send it."""

    async def ask(self, job: Job) -> None:
        if job.record_id in self.planned:
            return
        self.planned.add(job.record_id)
        self.planned_new.append(job.record_id)
        prompt_tokens = await self.counter.prompt_of(job)
        summary, snippet = self.summary, job.snippet
        summary.would_send += 1
        summary.prompt_tokens += prompt_tokens
        cached = self.prefixes.cached(f"{job.system or ''}\n{job.user}", prompt_tokens)
        summary.cached_tokens += cached
        row = summary.plan.setdefault(
            f"{job.task.template.name}/{snippet.language}/{snippet.kind}", [0, 0, 0]
        )
        row[0] += 1
        row[1] += prompt_tokens
        row[2] += cached
        line = dry_line(job.record_id, snippet, job.task.info, self.body(job), prompt_tokens)
        await self.outcomes.send(DryLine(line))

    async def end_file(self, key: str) -> None:
        if self.planned_new:
            self.counted.add(self.planned_new)
            self.planned_new = []


@dataclass(eq=False, kw_only=True)
class DryEmbedRoute(DryRoute):
    """The dry run's route for the embed pass: each text counted once, and the requests it would take
    estimated by the embedder's own rule (`Embedder`: full at ``--embed-batch`` texts or
    ``--embed-batch-tokens`` tokens); its line is the input it would send."""

    batch: int
    batch_tokens: int
    _inputs: int = 0  # in the request being filled
    _tokens: int = 0

    async def ask(self, job: Job) -> None:
        if job.record_id in self.planned:
            return
        self.planned.add(job.record_id)
        self.planned_new.append(job.record_id)
        tokens = max(1, await self.counter.text(job.user))
        s, snippet = self.summary, job.snippet
        if not self._inputs or self._inputs >= self.batch or self._tokens + tokens > self.batch_tokens:
            s.embed_requests += 1
            self._inputs = self._tokens = 0
        self._inputs += 1
        self._tokens += tokens
        s.embedded += 1  # (in a dry run: texts that would be embedded)
        s.embed_tokens += tokens
        row = s.plan.setdefault(f"{job.task.template.name}/{snippet.language}/{snippet.kind}", [0, 0, 0])
        row[0] += 1
        row[1] += tokens
        request = {"model": job.task.info["model"], "input": job.user}
        await self.outcomes.send(DryLine(dry_line(job.record_id, snippet, job.task.info, request, tokens)))
