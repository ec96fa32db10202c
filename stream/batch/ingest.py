"""Batch results into records: each output or error line through the run's own writer, exactly once.

A result line is OpenAI's batch output (https://platform.openai.com/docs/api-reference/batch/request-output,
which vLLM's ``run-batch`` writes too): ``custom_id`` (our record id), ``response`` (``status_code``,
``request_id``, ``body``: the completion object) and ``error`` (``code``, ``message``: e.g.
``batch_expired``, ``batch_cancelled``). Lines come in any order ("The output line order may not match the
input line order", https://platform.openai.com/docs/guides/batch): each is matched by ``custom_id``.

A record the checkpoint holds as done is passed over (a collect interrupted after committing it); the rest
become `Answered` or `Failure` outcomes for `stream.pipeline.writer.Writer`, which commits before it
writes and marks what it wrote, as in a streamed run. Structured replies are validated as the asker
validates them; one that does not validate is failed and re-asked by the next submit (once).

An embeddings line (``custom_id`` from `stream.batch.embed_lines.embed_id`) answers many records: its
``response.body`` is the embeddings answer (base64 or floats, `stream.embeddings.parse`), a vector per input
in the order the checkpoint holds (``batch_inputs``), each record an `Embedded` with its share of the line's
usage (`stream.pipeline.embedder.share`, as in a streamed run); an error line or a status other than 200
fails each of its records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from sinks.batches import BatchStore
from sinks.checkpoint import Checkpoint

from .. import embeddings
from ..errors import StreamError, StructuredError
from ..pipeline.embedder import EmbedInput, share
from ..pipeline.messages import Answered, Embedded, Failure, Job, Outcome, Task
from ..pipeline.writer import Writer
from ..prompt import Template, parse_structured
from ..request import reask
from ..sse import Completion, parse_full
from .embed_lines import embed_line_of
from .lines import snippet_from

__all__ = ["Ingest", "BLOCK", "task_models"]

BLOCK = 256  # result lines committed together, at most (the writer's batch)


@dataclass(eq=False, kw_only=True)
class Ingest:
    """Feeds result lines to the writer in blocks; counts what it saw."""

    ckpt: Checkpoint
    store: BatchStore
    writer: Writer
    tasks: dict[str, Task]  # by fingerprint, rebuilt from the checkpoint's batch_tasks
    seen: int = 0
    unknown: int = 0  # custom ids that are no line of ours
    bad: int = 0  # lines that are not JSON objects
    ids: set[str] = field(default_factory=set)  # the records of the lines ingested
    _block: list[dict[str, Any]] = field(default_factory=list)
    _embeds: list[dict[str, Any]] = field(default_factory=list)  # embeddings lines of the block

    @staticmethod
    async def make_tasks(store: BatchStore) -> dict[str, Task]:
        tasks = {}
        for fp, (name, info, schema) in (await store.tasks()).items():
            tasks[fp] = Task(Template(name=name, user="", schema=schema), fp, info)
        return tasks

    async def line(self, raw: bytes) -> None:
        self.seen += 1
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("custom_id"), str):
            self.bad += 1
            return
        await self.line_obj(obj)

    async def line_obj(self, obj: dict[str, Any]) -> None:
        embedded = embed_line_of(obj["custom_id"]) is not None
        (self._embeds if embedded else self._block).append(obj)
        if len(self._block) + len(self._embeds) >= BLOCK:
            await self.flush()

    async def flush(self) -> None:
        embeds, self._embeds = self._embeds, []
        if embeds:
            await self.writer.write(await self._embed_outcomes(embeds))
        block, self._block = self._block, []
        if not block:
            return
        ids = [o["custom_id"] for o in block]
        done, _ = await self.ckpt.lookup(ids, [])
        places = await self.store.places([i for i in ids if i not in done])
        tasks = await self.store.line_tasks(list(places))
        reasks = await self.store.reasks(list(places))
        outcomes: list[Outcome] = []
        new_reasks: list[tuple[str, Any]] = []
        cleared: list[str] = []
        for obj in block:
            rid = obj["custom_id"]
            if rid in done:  # committed by an interrupted collect, or a line answered twice
                continue
            task = self.tasks.get(tasks.get(rid, ""))
            if rid not in places or task is None:
                self.unknown += 1
                continue
            done.add(rid)  # the same id twice in one block is one answer
            self.ids.add(rid)
            snippets = [(snippet_from(blob), oid) for oid, blob in places[rid]]
            self.writer.ledger.inflight[rid] = snippets
            job = Job(rid, snippets[0][0], snippets[0][1], None, None, "", task)
            outcome, followup = self._outcome(job, obj, rid in reasks)
            if rid in reasks:
                cleared.append(rid)
            if followup is not None:
                new_reasks.append((rid, followup))
            outcomes.append(outcome)
        await self.writer.write(outcomes)
        if cleared:
            await self.store.clear_reasks(cleared)
        if new_reasks:
            await self.store.set_reasks(new_reasks)

    def _outcome(self, job: Job, obj: dict[str, Any], reasked: bool) -> tuple[Outcome, Any]:
        """The line's outcome, and the re-ask to store when a structured reply did not validate."""
        body, failed = _body(obj)
        if failed is not None:
            return Failure(job, *failed, 1), None
        try:
            completion = parse_full(body)
        except StreamError as exc:
            return Failure(job, exc.reason, str(exc), 1), None
        return self._answer(job, completion, reasked)

    async def _embed_outcomes(self, objs: list[dict[str, Any]]) -> list[Outcome]:
        """The records of embeddings lines not yet done, each with its vector (or its failure)."""
        outcomes: list[Outcome] = []
        taken: set[str] = set()  # a line answered twice in one block is answered once
        for obj in objs:
            where = embed_line_of(obj["custom_id"])
            inputs = await self.store.line_inputs(*where) if where is not None else []
            ids = [i.record_id for i in inputs]
            places = await self.store.places(ids) if ids else {}
            task = self.tasks.get((await self.store.line_tasks(ids[:1])).get(ids[0], "")) if ids else None
            if not ids or task is None or any(r not in places for r in ids):
                self.unknown += 1
                continue
            self.ids.update(ids)
            done, _ = await self.ckpt.lookup(ids, [])
            if all(r in done or r in taken for r in ids):  # committed by an interrupted collect
                continue
            items, snippets = [], {}
            for i in inputs:
                snippets[i.record_id] = [(snippet_from(blob), oid) for oid, blob in places[i.record_id]]
                (snippet, oid), *_ = snippets[i.record_id]
                job = Job(i.record_id, snippet, oid, None, None, "", task, annotation_id=i.annotation_id)
                items.append(EmbedInput(job, i.tokens, i.truncated))
            skip = done | taken
            new = [o for o in self._vectors(obj, items) if o.job.record_id not in skip]
            for outcome in new:
                taken.add(outcome.job.record_id)
                self.writer.ledger.inflight[outcome.job.record_id] = snippets[outcome.job.record_id]
            vectors = [o for o in new if isinstance(o, Embedded)]
            if vectors:
                self.writer.summary.embed_requests += 1
                self.writer.summary.embed_tokens += sum(int(v.usage["prompt_tokens"]) for v in vectors)
            outcomes += new
        return outcomes

    def _vectors(self, obj: dict[str, Any], items: list[EmbedInput]) -> list[Embedded | Failure]:
        """An embeddings line's outcome for each of its inputs."""
        body, failed = _body(obj)
        if failed is None:
            try:
                answer = embeddings.parse(body, len(items))
            except StreamError as exc:
                failed = (exc.reason, str(exc))
        if failed is not None:
            return [Failure(i.job, *failed, 1) for i in items]
        return [*share(answer, items, sum(i.tokens for i in items))]

    def _answer(self, job: Job, c: Completion, reasked: bool) -> tuple[Outcome, Any]:
        price = self.writer.price
        if c.finish_reason == "content_filter":
            self.writer.summary.add_usage(c.usage, price)
            return Failure(job, "content_filter", "content_filter: the API withheld the answer", 1), None
        if not c.text.strip():
            self.writer.summary.add_usage(c.usage, price)
            reason = "truncated" if c.finish_reason == "length" else "empty_answer"
            return Failure(job, reason, f"{reason}: no text (finish_reason {c.finish_reason})", 1), None
        schema = job.task.template.schema
        data = None
        if schema is not None:
            try:
                data = parse_structured(c.text, schema)
            except StructuredError as exc:
                self.writer.summary.add_usage(c.usage, price)
                again = None if reasked or c.finish_reason == "length" else list(reask(c.text, str(exc)))
                return Failure(job, exc.reason, f"{exc.reason}: {exc}", 1), again
        return Answered(job, c, data), None


def task_models(infos: Iterable[dict[str, Any]], default: str) -> tuple[str, str | None]:
    """The models of a checkpoint's batch tasks (their ``info``): the one answering (`default` when only the
    embed task was submitted) and the embedding model (None: no embed task)."""
    answering, embedding = None, None
    for info in infos:
        model = str(info.get("model") or default)
        if info.get("template") == embeddings.EMBED_TASK:
            embedding = embedding or model
        else:
            answering = answering or model
    return answering or default, embedding


def _body(obj: dict[str, Any]) -> tuple[Any, tuple[str, str] | None]:
    """A result line's response body, or (reason, message) of its failure: an error line (expired,
    cancelled), a line without a response, or a status other than 200."""
    response, error = obj.get("response"), obj.get("error")
    if isinstance(error, dict) and error:
        code = str(error.get("code") or "batch_error")
        return None, (code, f"{code}: {error.get('message') or ''}".strip())
    if not isinstance(response, dict):
        return None, ("batch_error", "the result line has neither a response nor an error")
    status, body = response.get("status_code"), response.get("body")
    if status != 200:
        return None, (f"http_{status}", f"{status} in the batch: {_error_message(body)}")
    return body, None


def _error_message(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or error)
    return str(error or body)[:200]
