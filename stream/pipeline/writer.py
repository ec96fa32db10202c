"""The writer: commit each batch of outcomes to the checkpoint, then write their lines, then mark them.

The order is the exactly-once guarantee (see DESIGN.md, "Checkpoint"): an answer is committed before its
line is written, and a line is marked emitted (with the output's new whole offset) once it is fully
written. Whatever reaches the writer is paid for, so a batch is written under a shield even when the run is
being cancelled. In a dry run there is no checkpoint: only the request lines are written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from anyio.abc import ObjectReceiveStream

from sinks import Sink
from sinks.checkpoint import Checkpoint
from sinks.ndjson import NDJSONSink, detach_stdout
from sinks.schema import Done, Failed, FileRow, Occurrence, SkipRow, Vector

from .. import clean, record
from ..errors import ExitCode, SinkError
from ..prices import Price
from ..scan import Skipped
from .control import Control
from .counting import TokenCounter
from .ledger import Ledger
from .messages import Answered, Current, DryLine, Embedded, Failure, FilesDone, Job, Outcome, Reuse
from .summary import Summary

__all__ = ["Writer"]

BATCH = 256  # outcomes committed per checkpoint transaction, at most
Line = tuple[str, bytes]  # (occurrence id, NDJSON line); a dry line has no occurrence


@dataclass
class _Batch:
    """One batch of outcomes, sorted into what the checkpoint and the outputs get."""

    done: list[Done] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    skips: list[SkipRow] = field(default_factory=list)
    files: list[FileRow] = field(default_factory=list)
    reuse: list[Reuse] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    # (record id, stored answer, places written with it): places attached later get lines too
    answered: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)


@dataclass(eq=False, kw_only=True)
class Writer:
    ckpt: Checkpoint | None  # None in a dry run: only lines are written
    out: NDJSONSink | None  # None once the output failed
    plugins: list[Sink]
    ledger: Ledger
    control: Control
    counter: TokenCounter
    summary: Summary
    model: str
    price: Price | None
    run_id: int | None = None

    async def run(self, outcomes: ObjectReceiveStream[Outcome]) -> None:
        async with outcomes:
            while True:
                try:
                    batch = [await outcomes.receive()]
                except anyio.EndOfStream:
                    files = self.ledger.take_ready()
                    if files and self.ckpt is not None:
                        with anyio.CancelScope(shield=True):
                            await self.ckpt.commit([], [], [], self.run_id, files)
                    return
                while len(batch) < BATCH:
                    try:
                        batch.append(outcomes.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                # Whatever arrived is paid for: commit it even if the run is being cancelled.
                with anyio.CancelScope(shield=True):
                    await self.write(batch)

    async def write(self, items: list[Outcome]) -> None:
        batch = _Batch(files=self.ledger.take_ready())
        for item in items:
            if isinstance(item, Answered):
                await self._answered(item, batch)
            elif isinstance(item, Embedded):
                self._embedded(item, batch)
            elif isinstance(item, Failure):
                self._failure(item, batch)
            elif isinstance(item, Skipped):
                batch.skips.append(SkipRow(item.key, item.path, item.reason, item.detail))
                if item.file is not None and item.hash is not None:
                    batch.files.append(
                        self.ledger.file_row(item.file, item.hash, 0, item.reason, item.detail)
                    )
            elif isinstance(item, FilesDone):
                batch.files.extend(item.rows)
            elif isinstance(item, Reuse):
                batch.reuse.append(item)
            elif isinstance(item, DryLine):
                batch.lines.append(("", item.line))
            elif isinstance(item, Current) and self.ckpt is not None:
                await self.ckpt.touch_occurrences(item.occurrence_ids)
        if self.ckpt is not None:
            await self._commit(batch)
        await self.emit(batch.lines)

    async def _answered(self, item: Answered, batch: _Batch) -> None:
        job = item.job
        result = await self._result(item)
        occ = self._places(job, result, batch)
        raw = orjson.dumps(result)
        attempts = item.completion.attempts
        batch.done.append(
            Done(
                record_id=job.record_id,
                snippet_id=job.snippet.id,
                task=job.task.fingerprint,
                model=self.model,
                result=raw,
                attempts=attempts,
                occurrences=occ,
                flags=orjson.dumps(result["flags"]).decode(),
                score=item.judgment.score if item.judgment is not None else None,
            )
        )
        batch.lines.extend((o.occurrence_id, o.line) for o in occ)
        self.summary.annotated += 1
        self.summary.tasks[job.task.template.name] += 1
        self.summary.flagged.update(result["flags"])
        if item.judgment is not None:
            self.summary.scores[str(item.judgment.score or "unjudged")] += 1
            self.summary.judge_reasks += sum(r.get("reask") == "answered" for r in item.judgment.reasks)

    def _embedded(self, item: Embedded, batch: _Batch) -> None:
        """An embed job's vector: its record (without the vector) on every place, the vector stored with it."""
        job = item.job
        task = job.task.info
        result = record.embedding(task, item, text=task["text"], annotation_id=job.annotation_id)
        occ = self._places(job, result, batch)
        vector = Vector(task["model"], item.dimensions, item.vector, job.annotation_id)
        batch.done.append(
            Done(
                record_id=job.record_id,
                snippet_id=job.snippet.id,
                task=job.task.fingerprint,
                model=task["model"],
                result=orjson.dumps(result),
                attempts=item.attempts,
                occurrences=occ,
                vector=vector,
            )
        )
        batch.lines.extend((o.occurrence_id, o.line) for o in occ)
        self.summary.embedded += 1
        self.summary.tasks[job.task.template.name] += 1

    def _places(self, job: Job, result: dict[str, Any], batch: _Batch) -> list[Occurrence]:
        """A new answer's lines: its job's place and the places attached while it was in flight (those
        attached later get theirs after the commit, `_commit`)."""
        places = list(self.ledger.inflight.get(job.record_id) or [(job.snippet, job.occurrence_id)])
        batch.answered.append((job.record_id, result, len(places)))
        return [
            Occurrence(oid, s.path, s.qualname, record.line(job.record_id, s, result)) for s, oid in places
        ]

    def _failure(self, item: Failure, batch: _Batch) -> None:
        job, snippet = item.job, item.job.snippet
        self.ledger.failed(job.record_id, (snippet, job.occurrence_id))
        batch.failed.append(
            Failed(
                job.record_id,
                snippet.id,
                job.task.fingerprint,
                self.model,
                item.reason,
                item.error,
                item.attempts,
                snippet.path,
                snippet.qualname,
            )
        )
        self.summary.failed[item.reason] += 1

    async def _commit(self, batch: _Batch) -> None:
        assert self.ckpt is not None
        if batch.done or batch.failed or batch.skips or batch.files:
            await self.ckpt.commit(batch.done, batch.failed, batch.skips, self.run_id, batch.files)
            self.ledger.committed_since.update(d.record_id for d in batch.done)
        # Only now, with the answers committed, do they leave `inflight`: until this point the planner
        # attached other places of the same code to them; from now on it finds them in the checkpoint.
        late: list[tuple[str, Occurrence]] = []
        for record_id, result, used in batch.answered:
            for snippet, oid in (self.ledger.inflight.pop(record_id, None) or [])[used:]:
                line = record.line(record_id, snippet, result)
                late.append((record_id, Occurrence(oid, snippet.path, snippet.qualname, line)))
                batch.lines.append((oid, line))
        if late:
            await self.ckpt.add_occurrences(late)
        if batch.reuse:
            batch.lines.extend(await self._reuse(batch.reuse))

    async def _result(self, item: Answered) -> dict[str, Any]:
        """The stored answer; usage the API did not report is estimated with the tokenizer (and flagged)."""
        c, job = item.completion, item.job
        usage = c.usage
        estimated = not usage
        if estimated:
            prompt = await self.counter.prompt_of(job)
            completion_tokens = await self.counter.text(c.text)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt + completion_tokens,
            }
            self.summary.usage_estimated += 1
        self.summary.add_usage(usage, self.price)
        judge = item.judgment.as_record() if item.judgment is not None else None
        return record.answer(
            job.task.info, c, item.data, usage or {}, estimated=estimated, flags=_flags(item), judge=judge
        )

    async def _reuse(self, items: list[Reuse]) -> list[Line]:
        assert self.ckpt is not None
        results = await self.ckpt.results([i.record_id for i in items])
        places: list[tuple[str, Occurrence]] = []
        lines: list[Line] = []
        for item in items:
            raw = results.get(item.record_id)
            if raw is None:  # cannot happen: ids come from committed records
                continue
            s = item.snippet
            line = record.line(item.record_id, s, orjson.loads(raw))
            places.append((item.record_id, Occurrence(item.occurrence_id, s.path, s.qualname, line)))
            lines.append((item.occurrence_id, line))
        await self.ckpt.add_occurrences(places)
        return lines

    async def emit(self, lines: list[Line]) -> None:
        """Write lines to every sink, then mark them emitted (with the file's new whole offset)."""
        out = self.out
        if not lines or out is None:
            return
        for _, line in lines:
            out.add_line(line)
        try:
            await out.flush()
            await self._plugins(lines)
        except BrokenPipeError:
            self._lost(
                "output closed",
                "output closed (broken pipe): stopping; unwritten records stay in the checkpoint",
                ExitCode.OK,
            )
            detach_stdout()
            return
        except SinkError as exc:
            self._lost(f"SinkError: {exc}", f"error: {exc}", ExitCode.ABORTED)
            return
        except Exception as exc:
            self._lost(
                f"sink failed: {type(exc).__name__}",
                f"error: sink failed: {type(exc).__name__}: {exc}",
                ExitCode.ABORTED,
            )
            return
        self.summary.emitted += len(lines)
        if self.ckpt is not None:
            written = [oid for oid, _ in lines]
            await self.ckpt.mark_emitted(written, out.key, out.offset)
            self.ledger.written(written)

    async def _plugins(self, lines: list[Line]) -> None:
        for sink in self.plugins:
            for _, line in lines:
                await sink.write(orjson.loads(line))
            flush = getattr(sink, "flush", None)  # optional in the Sink protocol
            if flush is not None:
                await flush()

    def _lost(self, why: str, message: str, code: ExitCode) -> None:
        """An output failed: write nothing more; the lines stay in the checkpoint for a rerun."""
        self.out = None
        if self.summary.stopped is None or code != ExitCode.OK:
            self.control.err(message)
        self.control.stop(why, exit_code=code)

    async def emit_backlog(self, *, emit_all: bool) -> None:
        """Earlier runs' lines not yet emitted (or, with --emit-all, every line) before the walk begins."""
        assert self.ckpt is not None
        source = self.ckpt.all_lines() if emit_all else self.ckpt.unemitted()
        async for rows in source:
            if self.out is None:
                break
            await self.emit(rows)
            self.summary.backlog += len(rows)


def _flags(item: Answered) -> list[str]:
    """The cleaning step (`stream.clean`) on a new answer, against the prompt it was asked with: a
    structured task's text fields, else the answer's text."""
    if item.job.task.template.schema is not None and item.data is not None:
        return clean.flags_of_data(item.data, prompt=item.job.user)
    return clean.flags(item.completion.text, prompt=item.job.user)
