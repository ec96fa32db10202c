"""The embed pass (``--task embed``): after the other tasks, each snippet's text planned as an embed job.

A second walk of the same tree, with its own file index key: an unchanged file whose vectors are all made is
not parsed again. Per file, one look-up finds the annotations (`Config.annotation_tasks`: the first that
applies and is answered; `stream.embeddings.text_of` joins it with the code under ``--embed-text``), and a
second which embed records are done. An embed record is the snippet's embedded text under the embedding model
and size: a changed function or a new annotation makes a new record (and vector); the same text is never
embedded twice. Its jobs go to the route of a real run (`RealRoute`: reuse, share what is in flight, ask),
whose jobs stream leads to the embedder (`stream.pipeline.embedder`).

A file with a snippet whose annotation is missing (not answered yet, or failed) is indexed under a key that
never matches (`WAITING`): the next run looks at it again, and embeds the annotation when it is there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson
from anyio.abc import ObjectSendStream

from sinks.schema import FileRow

from .. import embeddings
from ..config import Config
from ..context import Contexts
from ..model import Snippet, stable_hash
from ..prompt import Template
from ..scan import EXTRACTOR_VERSION, Scanned
from .control import Control
from .counting import TokenCounter
from .embedder import Embedder
from .feed import Feed
from .graph import wire
from .ledger import Ledger
from .messages import Current, Job, Outcome, Task
from .planner import Planner, RealRoute, Route
from .setup import Setup
from .summary import Summary
from .writer import Writer

if TYPE_CHECKING:
    from sinks.checkpoint import Checkpoint

    from ..pool import EndpointPool

__all__ = ["EmbedPlanner", "embed_pass", "embed_task", "annotation_tasks", "embed_file_task", "WAITING"]

WAITING = ":waiting"  # appended to the file index key of a file with an annotation still to come
Results = Callable[[list[str]], Awaitable[dict[str, bytes]]]
Lookup = Callable[[list[str], list[str]], Awaitable[tuple[set[str], set[str]]]]

#: The embed task as a template: it applies to code and doc sections alike; it is never rendered.
EMBED_TEMPLATE = Template(name=embeddings.EMBED_TASK, user="{code}", applies_to=frozenset({"code", "doc"}))


def embed_task(cfg: Config) -> Task:
    """The embed task of a run: its fingerprint is the embedding model, the vectors' size and what is
    embedded; its records carry `info`."""
    info = {
        "template": embeddings.EMBED_TASK,
        "api": "embeddings",
        "model": cfg.embed_model,
        "dimensions": cfg.dimensions,
        "text": cfg.embed_text,
    }
    fingerprint = stable_hash("embed", cfg.embed_model, str(cfg.dimensions), cfg.embed_text)
    return Task(EMBED_TEMPLATE, fingerprint, {**info, "fingerprint": fingerprint})


def annotation_tasks(cfg: Config) -> list[Task]:
    """The tasks whose answers are embedded with the code (`Config.annotation_tasks`)."""
    return [Task(t, cfg.fingerprint(t), {}) for t in cfg.annotation_tasks]


def embed_file_task(task: Task, annotations: list[Task], selection: dict[str, object]) -> str:
    """The embed pass's file index key: the embed task, the annotations' tasks and the selection."""
    return stable_hash(
        "embed",
        task.fingerprint,
        *(t.fingerprint for t in annotations),
        orjson.dumps(selection, option=orjson.OPT_SORT_KEYS).decode(),
        EXTRACTOR_VERSION,
    )


@dataclass(eq=False, kw_only=True)
class EmbedPlanner:
    task: Task
    annotations: list[Task]
    mode: str  # --embed-text
    results: Results  # stored results of done records
    lookup: Lookup  # (done records, written places) among these ids
    ledger: Ledger
    summary: Summary  # the pass's own (its walk counts files a second time)
    route: Route
    contexts: Contexts = field(default_factory=lambda: Contexts("none", 0))
    current: Callable[[Current], Awaitable[None]] | None = None  # sends `Current` to the writer

    async def plan_file(self, item: Scanned) -> None:
        self.summary.files += 1
        notes = await self._annotations(item)
        planned: list[tuple[Snippet, str, str, str | None]] = []  # snippet, text, record id, annotation id
        waiting = False
        for snippet in item.snippets:
            found = notes.get(snippet.id)
            if found is None and self.mode != "code":
                waiting = True
            text = embeddings.text_of(snippet, found[1] if found else None, self.mode)
            if text is None:  # --embed-text annotation, and none yet
                self.summary.filtered["no_annotation"] += 1
                continue
            record_id = stable_hash(snippet.id, self.task.fingerprint, text)
            planned.append((snippet, text, record_id, found[0] if found and self.mode != "code" else None))
        ids = [(p[2], stable_hash(p[2], p[0].path, p[0].qualname)) for p in planned]
        committed = self.ledger.committed_since = set()  # (as in `Planner.plan_file`)
        done, seen = await self.lookup([r for r, _ in ids], [o for _, o in ids])
        key = str(item.file.path)
        row = self.ledger.file_row(item.file, item.hash, len(planned))
        if waiting:
            row = FileRow(row.file, row.task + WAITING, row.known)
        await self.route.begin_file(key, row, {r for r, _ in ids})
        again: list[str] = []
        for (snippet, text, record_id, annotation_id), (_, occurrence_id) in zip(planned, ids, strict=True):
            if occurrence_id in seen:
                self.summary.unchanged += 1
                again.append(occurrence_id)
                continue
            seen.add(occurrence_id)
            self.summary.snippets += 1
            if record_id in done or record_id in committed:
                await self.route.answered(record_id, snippet, occurrence_id, self.task)
                continue
            job = Job(
                record_id, snippet, occurrence_id, None, None, text, self.task, annotation_id=annotation_id
            )
            await self.route.ask(job)
        if again and self.current is not None:  # (the file changed: some of its places may be back)
            await self.current(Current(again))
        await self.route.end_file(key)

    async def _annotations(self, item: Scanned) -> dict[str, tuple[str, str]]:
        """Each snippet's annotation: snippet id → (record id, answer text), from the first annotation task
        that applies and is answered."""
        if self.mode == "code":
            return {}
        wanted: dict[str, list[str]] = {}
        for snippet in item.snippets:
            context = None
            for task in self.annotations:
                if task.template.applies(snippet):
                    if context is None and task.template.uses_context:
                        context = self.contexts.of(snippet, item.context)
                    wanted.setdefault(snippet.id, []).append(Planner.ids(snippet, task, context or "")[0])
        stored = await self.results([r for ids in wanted.values() for r in ids])
        out: dict[str, tuple[str, str]] = {}
        for snippet_id, ids in wanted.items():
            for record_id in ids:
                raw = stored.get(record_id)
                text = orjson.loads(raw).get("annotation") if raw is not None else None
                if isinstance(text, str) and text.strip():
                    out[snippet_id] = (record_id, text)
                    break
        return out


async def embed_pass(
    cfg: Config,
    ckpt: Checkpoint | None,
    writer: Writer,
    setup: Setup,
    summary: Summary,
    control: Control,
    pool: Callable[[], EndpointPool],
    counter: TokenCounter,
    route: Callable[[ObjectSendStream[Job], ObjectSendStream[Outcome]], Route] | None = None,
) -> None:
    """The pass, after the other tasks: the tree walked again (the pass counts only what it plans; with
    embed alone its walk is the run's), each snippet's text embedded by the embedder; with `route`, the
    jobs go there instead (`batch submit`'s, a dry run's), and no embedder runs. A dry run may have no
    checkpoint to read (`ckpt` None): then nothing is done yet."""
    task, notes = embed_task(cfg), annotation_tasks(cfg)
    ledger = writer.ledger = Ledger(embed_file_task(task, notes, cfg.selection))
    known = await ckpt.known_files(ledger.file_task) if ckpt is not None else {}
    walked = Summary()
    results, lookup = (ckpt.results, ckpt.lookup) if ckpt is not None else (_no_results, _no_lookup)

    def make(jobs: ObjectSendStream[Job], outcomes: ObjectSendStream[Outcome]) -> Feed:
        planner = EmbedPlanner(
            task=task,
            annotations=notes,
            mode=cfg.embed_text,
            results=results,
            lookup=lookup,
            ledger=ledger,
            summary=walked,
            route=route(jobs, outcomes) if route else RealRoute(ledger, summary, jobs, outcomes),
            contexts=setup.contexts,
            current=outcomes.send,
        )
        return Feed(setup.scanner(cfg, known), planner, ledger, walked)

    embedder = (
        None
        if route
        else Embedder(
            count=cfg.concurrency,
            pool=pool,
            counter=counter,
            summary=summary,
            control=control,
            model=cfg.embed_model,
            dimensions=cfg.dimensions,
            batch=cfg.embed_batch,
            batch_tokens=cfg.embed_batch_tokens,
        )
    )
    control.next_pass()
    await wire(make, writer, embedder, control)
    summary.snippets += walked.snippets
    summary.unchanged += walked.unchanged
    summary.filtered.update({k: v for k, v in walked.filtered.items() if k == "no_annotation"})
    if not cfg.tasks:
        summary.files += walked.files
        summary.skipped.update(walked.skipped)


async def _no_results(record_ids: list[str]) -> dict[str, bytes]:
    return {}


async def _no_lookup(record_ids: list[str], occurrence_ids: list[str]) -> tuple[set[str], set[str]]:
    return set(), set()
