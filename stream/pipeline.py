"""The run: one task group wiring the stages with small memory object streams.

```
walk+extract (thread) ─▶ plan ─▶ workers (N, rate-limited) ─▶ writer (checkpoint, then NDJSON and sinks)
                           └──────── skips, reused answers, dry-run lines ───────▶ writer
```
Every stream is bounded, so a slow API slows the walk and memory stays flat. Shutdown: the first signal
stops the walk and lets in-flight requests finish within the grace period; the writer always drains and
commits what arrived, under a shield. A second signal cancels at once; the checkpoint stays consistent because
every write to it is one transaction.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from sinks import Sink, load_sink
from sinks.ndjson import NDJSONSink, detach_stdout
from sinks.sqlite import Checkpoint, Done, Failed

from .asker import Asker, cached_tokens, reasoning_tokens
from .config import Config, is_loopback
from .endpoints import auth_headers, endpoint_url, family_of
from .errors import (
    AuthError,
    CircuitOpen,
    ConfigError,
    NotFoundError,
    QuotaExceeded,
    SinkError,
    SnipstreamError,
)
from .extract import check_languages
from .filters import Selection
from .idset import DiskIdSet
from .limits import Limits
from .messages import Answered, Failure, Job, Task
from .model import Snippet, SourceFile, stable_hash
from .negotiate import ContextBudget
from .progress import show_progress
from .request import initial_shape
from .scan import EXTRACTOR_VERSION, Known, Scanned, Skipped, Unchanged, scan
from .tokens import Prices, Tokenizer, load_prices, load_tokenizer
from .walk import walk

if TYPE_CHECKING:
    from .client import ClientPool

__all__ = ["run", "Summary", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
_PLANNING = "<planning>"  # in a file's pending set while its snippets are still being planned
_BATCH = 256  # results committed per checkpoint transaction, at most
_WALK_BATCH = 256  # unchanged or skipped files handed from the walk thread to the loop at once, at most


@dataclass
class Summary:
    """What a run did. Counts are per run; `failed` and `skipped` are grouped by reason."""

    files: int = 0
    snippets: int = 0  # snippets to ask about, counted once per task that applies to them
    requests: int = 0  # HTTP requests sent, retries included
    annotated: int = 0  # new answers committed
    reused: int = 0  # new places of already answered code: emitted without a request
    unchanged: int = 0  # already answered and emitted: nothing to do
    backlog: int = 0  # emitted from the checkpoint before the walk (earlier runs' unemitted lines)
    emitted: int = 0  # NDJSON lines written
    would_send: int = 0  # dry run
    failed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # files, by reason
    filtered: Counter[str] = field(default_factory=Counter)  # snippets left out, by reason
    secrets: Counter[str] = field(default_factory=Counter)  # secrets found, by kind (never the secret)
    tasks: Counter[str] = field(default_factory=Counter)  # new answers by task
    # dry run: "task/language/kind" -> [requests, prompt tokens]
    plan: dict[str, list[int]] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0  # reasoning tokens included, as the API counts (and bills) them
    reasoning_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the provider served from its prompt cache (billed lower)
    usage_estimated: int = 0
    elapsed: float = 0.0
    encoding: str = ""
    estimated_cost: float | None = None
    cost: float | None = None  # spent so far, from usage and the price table (None: model not priced)
    walk_done: bool = False
    stopped: str | None = None  # why the run stopped early: "interrupted", "output closed", an error
    exit_code: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for name in ("failed", "skipped", "filtered", "secrets", "tasks"):
            data[name] = dict(data[name])
        return data


# --- messages between stages -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Reuse:
    record_id: str
    snippet: Snippet
    occurrence_id: str
    task: Task


@dataclass(slots=True)
class _FilesDone:
    """Rows for the file index: files whose snippets are all done (see `stream.scan`)."""

    rows: list[tuple[Any, ...]]


@dataclass(slots=True)
class _DryLine:
    line: bytes


_Outcome = Answered | Failure | _Reuse | Skipped | _FilesDone | _DryLine


def provenance(snippet: Snippet) -> dict[str, Any]:
    return {
        "path": snippet.path,
        "language": snippet.language,
        "kind": snippet.kind,
        "qualname": snippet.qualname,
        "parent": snippet.parent,
        "start_line": snippet.start_line,
        "end_line": snippet.end_line,
        "signature": snippet.signature,
        "docstring": snippet.docstring,
        "code": snippet.code,
    }


def _line(record_id: str, snippet: Snippet, result: dict[str, Any]) -> bytes:
    record = {
        "schema_version": SCHEMA_VERSION,
        "record_id": record_id,
        "snippet_id": snippet.id,
        **provenance(snippet),
        **result,
    }
    return orjson.dumps(record) + b"\n"


class _Run:
    def __init__(self, config: Config, summary: Summary, err: Callable[[str], None]) -> None:
        self.cfg = config
        self.summary = summary
        self.err = err
        params = {k: v for k, v in config.params.items() if v is not None}
        self.tasks = [
            Task(
                t,
                config.fingerprint(t),
                {
                    "template": t.name,
                    "fingerprint": config.fingerprint(t),
                    "api": config.api,
                    "model": config.model,
                    "params": params,
                },
            )
            for t in config.tasks
        ]
        self.selection = Selection(
            languages=check_languages(config.languages),
            min_lines=config.min_lines,
            max_lines=config.max_lines,
            skip_tests=config.skip_tests,
            keep_trivial=config.keep_trivial,
            keep_generated=config.keep_generated,
            on_secret=config.on_secret,
            # a doc section longer than the prompt may hold is cut at paragraphs (about 3 characters a token)
            doc_max_chars=min(6000, 3 * config.max_prompt_tokens) if config.max_prompt_tokens else 6000,
        )
        self.prices: Prices = load_prices(config.prices)
        self.price = self.prices.get(config.model)
        if config.max_cost is not None and self.price is None:
            raise ConfigError(
                f"--max-cost needs the price of {config.model!r}, which the price table does not list; "
                "give it with --prices FILE"
            )
        # What requests look like: from the endpoint and model tables, then rewritten by what servers refuse.
        self.shape, unsupported = initial_shape(
            kind=config.endpoint_kind,
            api=config.api,
            model=config.model,
            response_format=config.response_format,
        )
        for name in sorted(unsupported):
            if config.params.get(name) is not None and not config.quiet:
                flag = "--" + name.replace("_", "-")
                err(f"note: {config.model} does not take {flag} (only its default); not sending it")
        family = family_of(config.model)
        self.budget = ContextBudget(
            family.context if family else None, f"the published context of {family.name}" if family else ""
        )
        self.asker: Asker | None = None
        self.reserved_usd = 0.0  # --max-cost: what requests in flight may still cost
        # dry run: record ids counted, earlier files' on disk (`counted`) and the current file's in memory
        self.counted: DiskIdSet | None = None
        self.planned: set[str] = set()  # of the current file's records, those counted (by any file)
        self.planned_new: list[str] = []  # of those, the ones this file counted first
        self.inflight: dict[str, list[tuple[Snippet, str]]] = {}
        # The file index is per set of tasks and selection: any change looks at every file again.
        self.file_task = stable_hash(
            *sorted(t.fingerprint for t in self.tasks),
            orjson.dumps(config.selection, option=orjson.OPT_SORT_KEYS).decode(),
            EXTRACTOR_VERSION,
        )
        self.known: dict[str, Known] = {}
        # files whose lines are not all written yet: key -> (occurrence ids still to write, index row)
        self.file_pending: dict[str, tuple[set[str], tuple[Any, ...]]] = {}
        self.occurrence_file: dict[str, str] = {}
        self.files_ready: list[tuple[Any, ...]] = []
        self.stopping = False
        self.feed_scope = anyio.CancelScope()
        self.work_scope = anyio.CancelScope()
        self.deadline: float | None = None
        self.tokenizer: Tokenizer | None = None
        self.tokenizer_ready = anyio.Event()
        self.tokenizer_loading = False
        # Records committed since the planner's look-up for the file it is planning began (it may have
        # missed them): bounded by the work in flight, not by the tree.
        self.committed_since: set[str] = set()
        self.pool: ClientPool | None = None
        self.ckpt: Checkpoint | None = None  # written to (not in a dry run)
        self.reader: Checkpoint | None = None  # looked up
        self.out: NDJSONSink | None = None
        self.plugins: list[Sink] = []
        self.run_id: int | None = None

    # --- control -----------------------------------------------------------------------------------------

    def stop(self, why: str, *, exit_code: int, grace: float | None = None) -> None:
        """Stop taking new work; in-flight requests get `grace` seconds (default --grace) to finish."""
        if self.summary.stopped is None:
            self.summary.stopped = why
            self.summary.exit_code = exit_code
        self.stopping = True
        self.feed_scope.cancel()
        deadline = anyio.current_time() + (self.cfg.grace if grace is None else grace)
        self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)
        self.work_scope.deadline = self.deadline

    async def _watch_signals(self, outer: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if self.stopping and self.summary.stopped == "interrupted":
                    self.err("second interrupt: stopping now")
                    outer.cancel()
                    return
                name = signal.Signals(signum).name
                self.err(
                    f"{name}: finishing in-flight requests (up to {self.cfg.grace:g}s); "
                    "interrupt again to stop now"
                )
                self.stop("interrupted", exit_code=130)

    async def _load_tokenizer(self) -> None:
        try:
            self.tokenizer = await anyio.to_thread.run_sync(load_tokenizer, self.cfg.model)
        except Exception as exc:
            self.tokenizer = Tokenizer("chars/4", lambda t: (len(t) + 3) // 4, f"tokenizer failed: {exc}")
        self.summary.encoding = self.tokenizer.encoding
        if self.tokenizer.note and not self.cfg.quiet:
            self.err(f"note: {self.tokenizer.note}")
        self.tokenizer_ready.set()

    async def _tokens(self) -> Tokenizer:
        """The tokenizer, loaded on first use: runs that never count tokens (no --tpm, usage reported,
        nothing to send) do not pay the ~0.2 s it takes to load."""
        if not self.tokenizer_loading:
            self.tokenizer_loading = True
            await self._load_tokenizer()
        await self.tokenizer_ready.wait()
        assert self.tokenizer is not None
        return self.tokenizer

    # --- stages ------------------------------------------------------------------------------------------

    def _walk_thread(self, send: ObjectSendStream[list[Scanned | Unchanged | Skipped]]) -> None:
        """Runs in a worker thread: walk, read and parse, handing the results to the loop.

        A parsed file goes at once; files decided by a stat (unchanged, skipped) go in batches, since one
        hop to the event loop costs more than the stat (~0.1 ms a file: most of a no-op rerun)."""
        cfg = self.cfg
        batch: list[Scanned | Unchanged | Skipped] = []
        for item in scan(
            cfg.paths,
            excludes=cfg.excludes,
            default_excludes=cfg.default_excludes,
            max_file_bytes=cfg.max_file_bytes,
            known=self.known,
            jobs=cfg.jobs,
            selection=self.selection,
        ):
            batch.append(item)
            if isinstance(item, Scanned) or len(batch) >= _WALK_BATCH:
                anyio.from_thread.run(send.send, batch)
                batch = []
        if batch:
            anyio.from_thread.run(send.send, batch)

    async def _feed(self, jobs: ObjectSendStream[Job], outcomes: ObjectSendStream[_Outcome]) -> None:
        files_send, files_recv = anyio.create_memory_object_stream[list[Scanned | Unchanged | Skipped]](16)
        async with jobs, outcomes:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._walk, files_send)
                async with files_recv:
                    async for items in files_recv:
                        for item in items:
                            if isinstance(item, Scanned):
                                await self._plan_file(item, jobs, outcomes)
                            elif isinstance(item, Unchanged):
                                await self._unchanged(item, outcomes)
                            else:
                                self.summary.skipped[item.reason] += 1
                                if not self.cfg.dry_run:
                                    await outcomes.send(item)
            self.summary.walk_done = True

    def _file_row(self, file: SourceFile, digest: str, snippets: int, skip: Skipped | None = None) -> tuple:
        return (
            str(file.path),
            self.file_task,
            file.size,
            file.mtime_ns,
            digest,
            snippets,
            skip.reason if skip else None,
            skip.detail if skip else None,
        )

    async def _unchanged(self, item: Unchanged, outcomes: ObjectSendStream[_Outcome]) -> None:
        known = item.known
        self.summary.files += 1
        if known.skip_reason:
            self.summary.skipped[known.skip_reason] += 1
        self.summary.snippets += known.snippets
        self.summary.unchanged += known.snippets
        if item.touched and not self.cfg.dry_run:
            await outcomes.send(
                _FilesDone(
                    [
                        (
                            str(item.file.path),
                            self.file_task,
                            item.file.size,
                            item.file.mtime_ns,
                            known.hash,
                            known.snippets,
                            known.skip_reason,
                            known.skip_detail,
                        )
                    ]
                )
            )

    async def _plan_file(
        self, item: Scanned, jobs: ObjectSendStream[Job], outcomes: ObjectSendStream[_Outcome]
    ) -> None:
        self.summary.files += 1
        self.summary.filtered.update(item.filtered)
        self.summary.secrets.update(item.secrets)
        cfg = self.cfg
        planned = [
            (snippet, task, *self._ids(snippet, task))
            for snippet in item.snippets
            for task in self.tasks
            if task.template.applies(snippet)
        ]
        # One look-up per file instead of every id in memory: memory stays flat however large the tree.
        committed = self.committed_since = set()
        done, seen = await self._lookup([p[2] for p in planned], [p[3] for p in planned])
        if self.counted is not None and planned:
            self.planned = self.counted.which({p[2] for p in planned})
        key = str(item.file.path)
        # The file is finished once every place it holds is written. Register it before the first request
        # goes out (answers can come back while later snippets are still being planned); the marker keeps
        # it from counting as finished until planning is over.
        pending: set[str] = {_PLANNING}
        entry = (pending, self._file_row(item.file, item.hash, len(planned)))
        if not cfg.dry_run:
            self.file_pending[key] = entry
        for snippet, task, record_id, occurrence_id in planned:
            if occurrence_id in seen:
                self.summary.unchanged += 1
                continue
            seen.add(occurrence_id)  # the same definition twice in one file is one place
            pending.add(occurrence_id)
            self.occurrence_file[occurrence_id] = key
            # Answers committed since the look-up began were missed by it and may have left `inflight`
            # already (planning this file's earlier snippets can wait on a full queue): without this
            # check the same code would be asked about a second time.
            answered = record_id in done or record_id in committed
            if not await self._plan(snippet, task, record_id, occurrence_id, answered, jobs, outcomes):
                pending.discard(occurrence_id)
                self.occurrence_file.pop(occurrence_id, None)
        pending.discard(_PLANNING)
        if self.counted is not None and self.planned_new:
            self.counted.add(self.planned_new)
            self.planned_new = []
        if not pending and self.file_pending.get(key) is entry:  # (a failure removes the entry)
            del self.file_pending[key]
            await outcomes.send(_FilesDone([entry[1]]))

    @staticmethod
    def _ids(snippet: Snippet, task: Task) -> tuple[str, str]:
        record_id = stable_hash(snippet.id, task.fingerprint, *task.template.location_key(snippet))
        return record_id, stable_hash(record_id, snippet.path, snippet.qualname)

    async def _lookup(self, record_ids: list[str], occurrence_ids: list[str]) -> tuple[set[str], set[str]]:
        if self.reader is None or not record_ids:
            return set(), set()
        return await self.reader.lookup(record_ids, occurrence_ids)

    async def _walk(self, send: ObjectSendStream[list[Scanned | Unchanged | Skipped]]) -> None:
        async with send:
            try:
                await anyio.to_thread.run_sync(self._walk_thread, send, abandon_on_cancel=True)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    async def _plan(
        self,
        snippet: Snippet,
        task: Task,
        record_id: str,
        occurrence_id: str,
        answered: bool,
        jobs: ObjectSendStream[Job],
        outcomes: ObjectSendStream[_Outcome],
    ) -> bool:
        """Decide what one new place needs; True if a line is still to be written for it."""
        cfg = self.cfg
        self.summary.snippets += 1
        if answered and cfg.dry_run:
            return False
        if answered:
            self.summary.reused += 1
            await outcomes.send(_Reuse(record_id, snippet, occurrence_id, task))
            return True
        waiting = self.inflight.get(record_id)
        if waiting is not None:  # the same code elsewhere is being asked about right now: share the answer
            waiting.append((snippet, occurrence_id))
            return True
        system, user = task.template.render(snippet)
        job = Job(record_id, snippet, occurrence_id, None, system, user, task)
        if cfg.max_prompt_tokens is not None:
            job.prompt_tokens = await self._count_prompt(job)
            if job.prompt_tokens > cfg.max_prompt_tokens:
                self.summary.filtered["too_many_tokens"] += 1
                return False
        if cfg.dry_run:
            if record_id in self.planned:
                return False
            self.planned.add(record_id)
            self.planned_new.append(record_id)
            if job.prompt_tokens is None:
                job.prompt_tokens = await self._count_prompt(job)
            prompt_tokens = job.prompt_tokens
            self.summary.would_send += 1
            self.summary.prompt_tokens += prompt_tokens
            row = self.summary.plan.setdefault(
                f"{task.template.name}/{snippet.language}/{snippet.kind}", [0, 0]
            )
            row[0] += 1
            row[1] += prompt_tokens
            line = {
                "schema_version": SCHEMA_VERSION,
                "record_id": record_id,
                "snippet_id": snippet.id,
                **provenance(snippet),
                "task": task.info,
                "request": self._asker().body(job),
                "prompt_tokens": prompt_tokens,
            }
            await outcomes.send(_DryLine(orjson.dumps(line) + b"\n"))
            return False
        self.inflight[record_id] = [(snippet, occurrence_id)]
        await jobs.send(job)
        return True

    async def _worker(
        self, index: int, jobs: ObjectReceiveStream[Job], outcomes: ObjectSendStream[_Outcome]
    ) -> None:
        async with jobs, outcomes:
            async for job in jobs:
                if self.stopping:
                    break
                reserved = 0.0
                if self.cfg.max_cost is not None:
                    reserved = await self._reserve_cost(job)
                    if reserved < 0:
                        break
                try:
                    outcome = await self._asker().ask(index, job)
                except (AuthError, NotFoundError, QuotaExceeded, CircuitOpen) as exc:
                    if not self.stopping:  # one message, however many workers meet the same error
                        self.err(f"error: {exc}")
                    self.stop(f"{type(exc).__name__}: {exc}", exit_code=3, grace=0)
                    return
                finally:
                    self.reserved_usd -= reserved
                await outcomes.send(outcome)

    async def _reserve_cost(self, job: Job) -> float:
        """--max-cost: reserve what this request may cost at most, or stop taking work (-1) if the spend so
        far plus what requests in flight may cost would pass the limit with it."""
        assert self.price is not None and self.cfg.max_cost is not None
        if job.prompt_tokens is None:
            job.prompt_tokens = await self._count_prompt(job)
        worst = self.price.cost(job.prompt_tokens, self.cfg.max_tokens)
        spent = self.price.cost(self.summary.prompt_tokens, self.summary.completion_tokens)
        if spent + self.reserved_usd + worst > self.cfg.max_cost:
            if not self.stopping:
                self.err(
                    f"stopping: ${spent:.4f} spent and ${self.reserved_usd:.4f} in flight; the next request "
                    f"could pass --max-cost {self.cfg.max_cost:g} (a rerun goes on from here)"
                )
                self.stop(f"--max-cost {self.cfg.max_cost:g} reached", exit_code=0)
            return -1.0
        self.reserved_usd += worst
        return worst

    def _count_usage(self, usage: dict[str, Any] | None) -> None:
        usage = usage or {}
        self.summary.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.summary.completion_tokens += int(usage.get("completion_tokens") or 0)
        self.summary.reasoning_tokens += reasoning_tokens(usage)
        self.summary.cached_tokens += cached_tokens(usage)
        if self.price is not None:
            self.summary.cost = self.price.cost(
                self.summary.prompt_tokens, self.summary.completion_tokens, self.summary.cached_tokens
            )

    async def _count_prompt(self, job: Job) -> int:
        tok = await self._tokens()
        if self.cfg.api == "chat":
            return tok.count_chat(job.system, job.user)
        return tok.count(f"{job.system}\n\n{job.user}" if job.system else job.user)

    def _count_request(self) -> None:
        self.summary.requests += 1

    # --- writer ------------------------------------------------------------------------------------------

    async def _writer(self, outcomes: ObjectReceiveStream[_Outcome]) -> None:
        async with outcomes:
            while True:
                try:
                    batch = [await outcomes.receive()]
                except anyio.EndOfStream:
                    if self.files_ready and self.ckpt is not None:
                        with anyio.CancelScope(shield=True):
                            await self.ckpt.commit([], [], [], self.run_id, self.files_ready)
                        self.files_ready = []
                    return
                while len(batch) < _BATCH:
                    try:
                        batch.append(outcomes.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                # Whatever arrived is paid for: commit it even if the run is being cancelled.
                with anyio.CancelScope(shield=True):
                    await self._write_batch(batch)

    async def _write_batch(self, batch: list[_Outcome]) -> None:
        done: list[Done] = []
        failed: list[Failed] = []
        skips: list[tuple[str, str, str, str]] = []
        reuse: list[_Reuse] = []
        lines: list[tuple[str, bytes]] = []
        files, self.files_ready = self.files_ready, []
        answered: list[tuple[str, dict[str, Any], int, str]] = []
        for item in batch:
            if isinstance(item, Answered):
                job, result = item.job, await self._result(item)
                places = list(self.inflight.get(job.record_id) or [(job.snippet, job.occurrence_id)])
                answered.append((job.record_id, result, len(places), job.task.fingerprint))
                occ = [(oid, s.path, s.qualname, _line(job.record_id, s, result)) for s, oid in places]
                done.append(
                    Done(
                        job.record_id,
                        job.snippet.id,
                        job.task.fingerprint,
                        self.cfg.model,
                        orjson.dumps(result),
                        item.completion.attempts,
                        occ,
                    )
                )
                lines.extend((o[0], o[3]) for o in occ)
                self.summary.annotated += 1
                self.summary.tasks[job.task.template.name] += 1
            elif isinstance(item, Failure):
                job = item.job
                for _, oid in self.inflight.pop(job.record_id, None) or [(job.snippet, job.occurrence_id)]:
                    # this file is not finished: it will be parsed again by the next run
                    self.file_pending.pop(self.occurrence_file.pop(oid, ""), None)
                failed.append(
                    Failed(
                        job.record_id,
                        job.snippet.id,
                        job.task.fingerprint,
                        self.cfg.model,
                        item.reason,
                        item.error,
                        item.attempts,
                        job.snippet.path,
                        job.snippet.qualname,
                    )
                )
                self.summary.failed[item.reason] += 1
                limit = self.cfg.max_failures
                if limit and sum(self.summary.failed.values()) >= limit and not self.stopping:
                    self.err(f"stopping: {limit} snippets failed (--max-failures); a rerun retries them")
                    self.stop(f"--max-failures {limit} reached", exit_code=1)
            elif isinstance(item, Skipped):
                skips.append((item.key, item.path, item.reason, item.detail))
                if item.file is not None and item.hash is not None:
                    files.append(self._file_row(item.file, item.hash, 0, item))
            elif isinstance(item, _FilesDone):
                files.extend(item.rows)
            elif isinstance(item, _Reuse):
                reuse.append(item)
            else:
                lines.append(("", item.line))
        if self.ckpt is not None and (done or failed or skips or files):
            await self.ckpt.commit(done, failed, skips, self.run_id, files)
            self.committed_since.update(d.record_id for d in done)
        # Only now, with the answers committed, do they leave `inflight`: until this point the planner
        # attached other places of the same code to them; from now on it finds them in the checkpoint.
        late: list[Done] = []
        for record_id, result, used, fingerprint in answered:
            for s, oid in (self.inflight.pop(record_id, None) or [])[used:]:
                line = _line(record_id, s, result)
                late.append(
                    Done(
                        record_id,
                        s.id,
                        fingerprint,
                        self.cfg.model,
                        b"",
                        0,
                        [(oid, s.path, s.qualname, line)],
                    )
                )
                lines.append((oid, line))
        if late and self.ckpt is not None:
            await self.ckpt.add_occurrences(late)
        if reuse and self.ckpt is not None:
            lines.extend(await self._reuse(reuse))
        await self._emit(lines)

    async def _result(self, item: Answered) -> dict[str, Any]:
        c, job = item.completion, item.job
        usage = c.usage
        estimated = not usage
        if estimated:
            tok = await self._tokens()
            prompt = job.prompt_tokens
            if prompt is None:
                prompt = await self._count_prompt(job)
            completion_tokens = tok.count(c.text)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt + completion_tokens,
            }
            self.summary.usage_estimated += 1
        self._count_usage(usage)
        return {
            "task": job.task.info,
            "annotation": c.text,
            "data": item.data,
            "truncated": c.finish_reason == "length",
            "response": {
                "id": c.response_id,
                "model": c.model,
                "created": c.created,
                "finish_reason": c.finish_reason,
                "usage": usage,
                "usage_estimated": estimated,
                "system_fingerprint": c.system_fingerprint,
            },
            "attempts": c.attempts,
            "latency_s": round(c.latency_s, 4),
            "annotated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    async def _reuse(self, items: list[_Reuse]) -> list[tuple[str, bytes]]:
        assert self.ckpt is not None
        results = await self.ckpt.results([i.record_id for i in items])
        done: list[Done] = []
        lines: list[tuple[str, bytes]] = []
        for item in items:
            raw = results.get(item.record_id)
            if raw is None:  # cannot happen: ids come from committed records
                continue
            line = _line(item.record_id, item.snippet, orjson.loads(raw))
            done.append(
                Done(
                    item.record_id,
                    item.snippet.id,
                    item.task.fingerprint,
                    self.cfg.model,
                    raw,
                    0,
                    [(item.occurrence_id, item.snippet.path, item.snippet.qualname, line)],
                )
            )
            lines.append((item.occurrence_id, line))
        await self.ckpt.add_occurrences(done)
        return lines

    async def _emit(self, lines: list[tuple[str, bytes]]) -> None:
        """Write lines to every sink, then mark them emitted (with the file's new whole offset)."""
        out = self.out
        if not lines or out is None:
            return
        for _, line in lines:
            out.add_line(line)
        try:
            await out.flush()
            for sink in self.plugins:
                for _, line in lines:
                    await sink.write(orjson.loads(line))
                flush = getattr(sink, "flush", None)
                if flush is not None:
                    await flush()
        except BrokenPipeError:
            self.out = None
            detach_stdout()
            if self.summary.stopped is None:
                self.err("output closed (broken pipe): stopping; unwritten records stay in the checkpoint")
                self.stop("output closed", exit_code=0)
            return
        except SinkError as exc:
            self.out = None
            self.err(f"error: {exc}")
            self.stop(f"SinkError: {exc}", exit_code=3)
            return
        except Exception as exc:
            self.out = None
            self.err(f"error: sink failed: {type(exc).__name__}: {exc}")
            self.stop(f"sink failed: {type(exc).__name__}", exit_code=3)
            return
        self.summary.emitted += len(lines)
        if self.ckpt is not None and not self.cfg.dry_run:
            await self.ckpt.mark_emitted([oid for oid, _ in lines], out.key, out.offset)
            self._files_written([oid for oid, _ in lines])

    def _files_written(self, occurrence_ids: list[str]) -> None:
        """Files whose last line was just written join the index with the next commit."""
        for oid in occurrence_ids:
            key = self.occurrence_file.pop(oid, None)
            entry = self.file_pending.get(key) if key else None
            if entry is None:
                continue
            entry[0].discard(oid)
            if not entry[0]:
                del self.file_pending[key]  # type: ignore[arg-type]
                self.files_ready.append(entry[1])

    async def _emit_backlog(self) -> None:
        assert self.ckpt is not None
        source = self.ckpt.all_lines() if self.cfg.emit_all else self.ckpt.unemitted()
        async for rows in source:
            if self.out is None:
                break
            await self._emit(rows)
            self.summary.backlog += len(rows)

    # --- the run -----------------------------------------------------------------------------------------

    async def main(self) -> None:
        cfg = self.cfg
        # Bad --exclude globs raise ConfigError here, before any work.
        walk(cfg.paths, excludes=cfg.excludes)
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._watch_signals, outer.cancel_scope)
            if cfg.dry_run or cfg.tpm or cfg.max_cost or cfg.max_prompt_tokens:  # needed at once: load now
                outer.start_soon(self._tokens)
            if not cfg.quiet:
                outer.start_soon(
                    functools.partial(
                        show_progress, self.summary, mode=cfg.progress, interval=cfg.progress_interval
                    )
                )
            try:
                if cfg.dry_run:
                    await self._dry_run()
                else:
                    await self._real_run()
            finally:
                outer.cancel_scope.cancel()

    async def _dry_run(self) -> None:
        from pathlib import Path

        async with contextlib.AsyncExitStack() as stack:
            if Path(self.cfg.db).exists():  # what is done already would not be sent: leave it out
                try:
                    self.reader = await stack.enter_async_context(Checkpoint(self.cfg.db, readonly=True))
                    known = await self.reader.known_files(self.file_task)
                    self.known = {k: Known(*v) for k, v in known.items()}
                except SnipstreamError as exc:
                    self.err(f"note: not reading {self.cfg.db} ({exc})")
                    self.reader = None
            self.out = await stack.enter_async_context(NDJSONSink(self.cfg.output))
            self.counted = stack.enter_context(DiskIdSet())
            await self._graph(workers=0)
        if self.price is not None:
            self.summary.estimated_cost = self.price.cost(
                self.summary.prompt_tokens, self.summary.would_send * self.cfg.max_tokens
            )

    async def _real_run(self) -> None:
        cfg = self.cfg
        _raise_file_limit(cfg.concurrency + 256, self.err)
        if (
            cfg.api_key
            and cfg.base_url
            and cfg.base_url.startswith("http://")
            and not is_loopback(cfg.base_url)
        ):
            self.err(f"warning: sending the API key over plain http to {cfg.base_url}")
        plugins = [load_sink(spec) for spec in cfg.sinks]
        async with Checkpoint(cfg.db) as ckpt:
            self.ckpt = self.reader = ckpt
            self.known = {k: Known(*v) for k, v in (await ckpt.known_files(self.file_task)).items()}
            sink = NDJSONSink(cfg.output)
            if sink.key is not None:
                sink.resume_offset = await ckpt.output_offset(sink.key)
            async with sink as out:
                for note in out.notes:
                    self.err(f"note: {note}")
                if out.key is not None and sink.resume_offset is None:
                    # Where this checkpoint's lines start, known before the first is written: a crash
                    # before the first confirmation is then cut back to it like any other.
                    await ckpt.mark_emitted([], out.key, out.offset)
                self.out = out
                entered: list[Sink] = []
                try:
                    for plugin in plugins:
                        await plugin.__aenter__()
                        entered.append(plugin)
                    self.plugins = entered
                    self.run_id = await ckpt.start_run(cfg.public())
                    await self._emit_backlog()
                    if not self.stopping:
                        await self._graph(workers=cfg.concurrency)
                finally:
                    with anyio.CancelScope(shield=True):
                        if self.pool is not None:
                            await self.pool.aclose()
                        for plugin in reversed(entered):
                            await plugin.__aexit__(None, None, None)
                        self.summary.elapsed = time.perf_counter() - self.started
                        if self.summary.failed and self.summary.exit_code == 0:
                            self.summary.exit_code = 1  # as run() returns it: stored with the summary
                        await ckpt.finish_run(self.run_id or 0, self.summary.as_dict())

    def _client_pool(self) -> ClientPool:
        """The HTTP clients, made when the first request is about to go: a run with nothing to send (a
        rerun over a finished tree) neither imports httpx nor builds them."""
        if self.pool is None:
            from .breaker import Breaker
            from .client import ClientPool, RetryPolicy

            cfg = self.cfg
            self.pool = ClientPool(
                base_url=cfg.base_url or "",
                api_key=cfg.api_key,
                api_key_env=cfg.api_key_env,
                api=cfg.api,
                concurrency=cfg.concurrency,
                clients=cfg.clients,
                limits=Limits(rpm=cfg.rpm, tpm=cfg.tpm),
                retry=RetryPolicy(max_attempts=cfg.max_attempts, base=cfg.backoff),
                connect_timeout=cfg.connect_timeout,
                stall_timeout=cfg.stall_timeout,
                request_timeout=cfg.request_timeout,
                trust_env=not is_loopback(cfg.base_url or ""),
                url=endpoint_url(cfg.endpoint_kind, cfg.base_url or "", cfg.api, cfg.model, cfg.api_version),
                auth=auth_headers(cfg.endpoint_kind, cfg.api_key),
                breaker=Breaker(cfg.base_url or ""),
            )
        return self.pool

    def _asker(self) -> Asker:
        if self.asker is None:
            self.asker = Asker(
                self.cfg,
                shape=self.shape,
                budget=self.budget,
                pool=self._client_pool,
                count_prompt=self._count_prompt,
                count_text=self._count_text,
                count_usage=self._count_usage,
                count_request=self._count_request,
                note=self._note,
            )
        return self.asker

    def _note(self, message: str) -> None:
        if not self.cfg.quiet:
            self.err(message)

    async def _count_text(self, text: str) -> int:
        return (await self._tokens()).count(text)

    async def _graph(self, *, workers: int) -> None:
        job_send, job_recv = anyio.create_memory_object_stream[Job](max(1, workers))
        out_send, out_recv = anyio.create_memory_object_stream[_Outcome](max(16, 2 * workers))
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._writer, out_recv)
            tg.start_soon(self._feed_group, job_send, out_send.clone())
            tg.start_soon(self._worker_group, workers, job_recv, out_send.clone())
            out_send.close()

    async def _feed_group(self, jobs: ObjectSendStream[Job], outcomes: ObjectSendStream[_Outcome]) -> None:
        try:
            with self.feed_scope:
                await self._feed(jobs, outcomes)
        finally:
            jobs.close()
            outcomes.close()

    async def _worker_group(
        self, workers: int, jobs: ObjectReceiveStream[Job], outcomes: ObjectSendStream[_Outcome]
    ) -> None:
        with jobs, outcomes:
            async with anyio.create_task_group() as group:
                # stop() moves this deadline: in-flight requests get the grace period, then are cancelled.
                self.work_scope = group.cancel_scope
                if self.deadline is not None:
                    group.cancel_scope.deadline = self.deadline
                for index in range(workers):
                    group.start_soon(self._worker, index, jobs.clone(), outcomes.clone())

    started: float = 0.0


def _raise_file_limit(needed: int, err: Callable[[str], None]) -> None:
    """Each request in flight holds a socket: lift the soft open-files limit (often 1024) if it is short."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < needed:
        err(
            f"warning: only {target} files may be open at once; --concurrency {needed - 256} may hit that limit"
        )


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


async def run(config: Config, *, err: Callable[[str], None] | None = None) -> Summary:
    """Run the whole job for a resolved `Config` and return its summary (see `Summary`).

    Human messages go to `err` (stderr by default); NDJSON goes to ``config.output``.
    """
    summary = Summary()
    err = err or (lambda msg: print(msg, file=sys.stderr, flush=True))
    runner = _Run(config, summary, err)
    runner.started = time.perf_counter()
    try:
        await runner.main()
    except BaseExceptionGroup as group:
        # Task groups wrap what a stage raised; callers want our error itself, not the group.
        leaves = _leaves(group)
        ours = next((e for e in leaves if isinstance(e, SnipstreamError)), None)
        if ours is not None:
            raise ours from None
        if len(leaves) == 1 and not isinstance(leaves[0], Exception):
            raise leaves[0] from None
        raise
    summary.elapsed = time.perf_counter() - runner.started
    if summary.failed and summary.exit_code == 0:
        summary.exit_code = 1
    return summary
