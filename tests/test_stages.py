"""The run's stages (`stream.pipeline`) in process, one or a few tests each.

Each stage is built as `stream.pipeline.session` builds it, from a resolved `Config` and `prepare`, and
joined to the test by anyio memory object streams. What it touches is real: a `Checkpoint` and an
`NDJSONSink` in `tmp_path`, `Snippet`s, a `DiskIdSet`, and a `ClientPool` over an `httpx.MockTransport`.
Tokens are counted as whitespace words (`WordCounter`), so counts are exact and nothing is downloaded.
Nothing waits on time: a test hands a stage its input, closes the stream, and reads what came out.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from sinks.checkpoint import Checkpoint, Done
from sinks.idset import DiskIdSet
from sinks.ndjson import NDJSONSink
from sinks.reader import FailureExample, open_readonly
from sinks.schema import KnownFile, Occurrence
from stream import record
from stream.client import ClientPool, RetryPolicy
from stream.config import Config
from stream.errors import ExitCode
from stream.model import Snippet, SourceFile
from stream.pipeline.asker import Asker
from stream.pipeline.control import Control
from stream.pipeline.counting import TokenCounter
from stream.pipeline.dry import DryRoute
from stream.pipeline.feed import WALK_BATCH, Feed
from stream.pipeline.gates import CostGate, FailureGate
from stream.pipeline.ledger import Ledger
from stream.pipeline.messages import Answered, DryLine, Failure, FilesDone, Job, Outcome, Reuse
from stream.pipeline.planner import Lookup, Planner, RealRoute, Route
from stream.pipeline.setup import prepare
from stream.pipeline.summary import Summary
from stream.pipeline.workers import Workers
from stream.pipeline.writer import Writer
from stream.prices import Price
from stream.prompt import TASKS
from stream.scan import Scanned, Skipped, Unchanged
from stream.sse import Completion
from stream.tokens import Tokenizer

BASE = "http://127.0.0.1:9/v1"  # loopback: no API key needed; nothing listens (the transport is mocked)
USAGE = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
WORDS = Tokenizer("words", lambda text: len(text.split()))


class WordCounter(TokenCounter):
    """The run's token counter, counting whitespace-separated words: exact, instant and offline."""

    async def tokenizer(self) -> Tokenizer:
        return WORDS


async def nothing_done(record_ids: list[str], occurrence_ids: list[str]) -> tuple[set[str], set[str]]:
    return set(), set()


class Rig:
    """One run's shared objects, made as `_Session` makes them; each stage is built from them on demand.
    `said` is everything the run told the user (Control's `err` and the notes)."""

    def __init__(self, tmp_path: Path, **options: Any) -> None:
        self.root, self.db, self.out = tmp_path, tmp_path / "ckpt.db", tmp_path / "out.ndjson"
        self.cfg = Config(
            (str(tmp_path),), base_url=BASE, model="m", tasks=(TASKS["annotate"],), output=str(self.out),
            db=str(self.db), quiet=True, max_attempts=2, backoff=0.001, **options,
        ).resolve(env={})  # fmt: skip
        self.said: list[str] = []
        self.summary = Summary()
        self.setup = prepare(self.cfg, self.said.append)
        self.task = self.setup.tasks[0]
        self.control = Control(self.summary, grace=self.cfg.grace, err=self.said.append)
        self.ledger = Ledger(self.setup.file_task)
        self.counter = WordCounter(self.cfg.model, self.cfg.api, self.summary, self.said.append)
        self.common = dict(ledger=self.ledger, counter=self.counter, summary=self.summary)

    def planner(self, route: Route, lookup: Lookup = nothing_done) -> Planner:
        return Planner(tasks=self.setup.tasks, lookup=lookup, max_prompt_tokens=self.cfg.max_prompt_tokens,
                       route=route, **self.common)  # fmt: skip

    def real(self, jobs: Pipe, outcomes: Pipe, lookup: Lookup = nothing_done) -> Planner:
        return self.planner(RealRoute(self.ledger, self.summary, jobs.send, outcomes.send), lookup)

    def writer(self, ckpt: Checkpoint | None, out: NDJSONSink, plugins: list[Any] | None = None) -> Writer:
        return Writer(ckpt=ckpt, out=out, plugins=plugins or [], control=self.control, model=self.cfg.model,
                      price=self.setup.price, **self.common)  # fmt: skip

    def asker(self, pool: ClientPool | None = None) -> Asker:
        def count_request() -> None:
            self.summary.requests += 1

        return Asker(
            cfg=self.cfg, shape=self.setup.shape, budget=self.setup.budget, pool=lambda: pool,  # type: ignore
            counter=self.counter, count_request=count_request, note=self.said.append,
            count_usage=functools.partial(self.summary.add_usage, price=self.setup.price),
        )  # fmt: skip

    def scanned(self, rel: str, *snippets: Snippet) -> Scanned:
        file = SourceFile(self.root / rel, rel, 40, 1)
        return Scanned(file, list(snippets), f"hash:{rel}", Counter(), Counter())

    def job(self, s: Snippet) -> Job:
        record_id, occurrence_id = Planner.ids(s, self.task)
        system, user = self.task.template.render(s)
        return Job(record_id, s, occurrence_id, None, system, user, self.task)


@pytest.fixture
async def r(tmp_path: Path) -> Rig:  # async: a Control is made in an event loop
    return Rig(tmp_path)


def snippet(name: str, *, path: str = "pkg/a.py", code: str | None = None) -> Snippet:
    code = code or f"def {name}(x):\n    return x + 1\n"
    return Snippet(path, "python", "function", name, 1, code.count("\n"), code, None, f"def {name}(x)", None)


def completion(text: str = "It adds one.") -> Completion:
    return Completion(text, "resp-1", "m", 1, "stop", dict(USAGE))


class Pipe:
    """Both ends of a memory object stream, closed on leaving the block; `items()` takes what is buffered."""

    def __init__(self, size: int = 1024) -> None:
        self.send, self.recv = anyio.create_memory_object_stream[Any](size)

    def __enter__(self) -> Pipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.send.close()
        self.recv.close()

    def items(self) -> list[Any]:
        out = []
        while True:
            try:
                out.append(self.recv.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                return out


async def planned_jobs(r: Rig, *items: Scanned) -> list[Job]:
    """Plan `items` through the real route: the jobs it sent (it must send no other outcome)."""
    with Pipe() as jobs, Pipe() as outcomes:
        planner = r.real(jobs, outcomes)
        for item in items:
            await planner.plan_file(item)
        assert outcomes.items() == []
        return jobs.items()


async def run_writer(writer: Writer, *items: Outcome) -> None:
    """The writer's whole run over `items`: they arrive, the stream ends, it commits what is left."""
    with Pipe() as outcomes:
        for item in items:
            await outcomes.send.send(item)
        outcomes.send.close()
        await writer.run(outcomes.recv)


async def unemitted(ckpt: Checkpoint) -> list[str]:
    return [oid async for rows in ckpt.unemitted() for oid, _ in rows]


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


class WatchedNDJSON(NDJSONSink):
    """The real NDJSON file sink, awaiting `before_write` each time a batch is about to reach the file."""

    def __init__(self, target: Path, before_write: Callable[[], Awaitable[None]]) -> None:
        super().__init__(str(target))
        self.before_write = before_write

    async def flush(self) -> None:
        await self.before_write()
        await super().flush()


class HookedCheckpoint(Checkpoint):
    """The real checkpoint, awaiting `before_commit` (once) as the next commit is about to start."""

    before_commit: Callable[[], Awaitable[None]] | None = None

    async def commit(self, *args: Any, **kw: Any) -> None:
        hook, self.before_commit = self.before_commit, None
        if hook is not None:
            await hook()
        await super().commit(*args, **kw)


class BrokenSink(NDJSONSink):
    """A plug-in sink whose `write` raises."""

    async def write(self, record: dict[str, Any]) -> None:
        raise RuntimeError("disk on fire")


# --- planner + RealRoute ------------------------------------------------------------------------------------
async def test_planner_reuses_an_answered_record_and_finishes_a_file_already_written(r: Rig) -> None:
    first, elsewhere = snippet("f"), snippet("f", path="pkg/b.py")
    job, written = r.job(first), r.scanned("pkg/a.py", first)
    raw = orjson.dumps(record.answer(r.task.info, completion(), None, USAGE, estimated=False))
    place = Occurrence(
        job.occurrence_id, "pkg/a.py", "f", record.line(job.record_id, first, orjson.loads(raw))
    )
    done = Done(job.record_id, first.id, r.task.fingerprint, "m", raw, 1, [place])
    async with Checkpoint(r.db) as ckpt:
        await ckpt.commit([done], [], [], None)
        with Pipe() as jobs, Pipe() as outcomes:
            planner = r.real(jobs, outcomes, ckpt.lookup)
            await planner.plan_file(r.scanned("pkg/b.py", elsewhere))
            await planner.plan_file(written)  # its one place is written: nothing to do, the file is done
            assert jobs.items() == []
            reuse, files_done = outcomes.items()
    assert isinstance(reuse, Reuse)
    assert (reuse.record_id, reuse.snippet.path) == (job.record_id, "pkg/b.py")
    assert files_done == FilesDone([r.ledger.file_row(written.file, written.hash, 1)])
    assert (r.summary.reused, r.summary.snippets, r.summary.unchanged) == (1, 1, 1)


async def test_planner_asks_once_for_code_in_flight_and_attaches_the_second_place(r: Rig) -> None:
    a, b = snippet("f"), snippet("f", path="pkg/b.py")
    [job] = await planned_jobs(r, r.scanned("pkg/a.py", a), r.scanned("pkg/b.py", b))
    assert job.snippet is a
    assert r.ledger.inflight == {job.record_id: [(a, job.occurrence_id), (b, r.job(b).occurrence_id)]}
    assert r.summary.snippets == 2


async def test_planning_a_file_takes_no_turn_of_the_event_loop_per_job_while_there_is_room(r: Rig) -> None:
    # A turn of a loop busy with a thousand streams takes ~10 ms: one per job capped the requests in
    # flight at what the planner could hand out (~100 a second). It waits only when the buffer is full.
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await anyio.lowlevel.checkpoint()
            turns += 1

    names = [f"f{i}" for i in range(50)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(count_turns)
        await anyio.lowlevel.checkpoint()
        jobs = await planned_jobs(r, r.scanned("pkg/a.py", *(snippet(n) for n in names)))
        tg.cancel_scope.cancel()
    assert [j.snippet.qualname for j in jobs] == names
    assert turns <= 5, turns


async def test_the_planner_waits_for_room_when_the_job_buffer_is_full(r: Rig) -> None:
    names = [f"f{i}" for i in range(5)]
    got: list[str] = []
    with Pipe(size=1) as jobs, Pipe() as outcomes:
        planner = r.real(jobs, outcomes)
        async with anyio.create_task_group() as tg:
            tg.start_soon(planner.plan_file, r.scanned("pkg/a.py", *(snippet(n) for n in names)))
            for _ in names:
                got.append((await jobs.recv.receive()).snippet.qualname)
    assert got == names


def test_the_graph_collects_young_garbage_less_often_and_restores_the_thresholds() -> None:
    import gc

    from stream.pipeline.graph import fewer_collections

    before = gc.get_threshold()
    with fewer_collections(young=12_345):
        assert gc.get_threshold() == (max(before[0], 12_345), *before[1:])
    assert gc.get_threshold() == before


async def test_max_prompt_tokens_leaves_a_long_prompt_out_as_too_many_tokens(tmp_path: Path) -> None:
    r = Rig(tmp_path, max_prompt_tokens=80)
    short = snippet("short")
    long = snippet("long", code="def long(x):\n" + "    x = x + 1  # one more step\n" * 20 + "    return x\n")
    assert await r.counter.prompt(r.job(short)) <= 80 < await r.counter.prompt(r.job(long))
    [job] = await planned_jobs(r, r.scanned("pkg/a.py", long, short))
    assert job.snippet is short
    assert r.summary.filtered == Counter({"too_many_tokens": 1})


# --- DryRoute -----------------------------------------------------------------------------------------------
async def test_dry_route_writes_one_line_per_distinct_record_and_counts_its_tokens(tmp_path: Path) -> None:
    r = Rig(tmp_path, dry_run=True)
    x, y, z, w = (snippet(n) for n in "xyzw")
    b = [snippet("x", path="pkg/b.py"), snippet("z", path="pkg/b.py"), snippet("w", path="pkg/b.py")]
    b.append(snippet("z_twin", path="pkg/b.py", code=z.code))  # the same code twice in one file: one record

    async def lookup(record_ids: list[str], occurrence_ids: list[str]) -> tuple[set[str], set[str]]:
        return {r.job(w).record_id}, set()  # w is answered already

    asker = r.asker()
    with DiskIdSet() as counted, Pipe() as outcomes:
        route = DryRoute(counted=counted, counter=r.counter, summary=r.summary, body=asker.body,
                         outcomes=outcomes.send)  # fmt: skip
        await r.planner(route, lookup).plan_file(r.scanned("pkg/a.py", x, y))
        await r.planner(route, lookup).plan_file(r.scanned("pkg/b.py", *b))
        out = outcomes.items()
    assert all(isinstance(o, DryLine) for o in out)
    got = [orjson.loads(o.line) for o in out]
    expected = [r.job(s) for s in (x, y, z)]
    tokens = [WORDS.count_chat(j.system, j.user) for j in expected]
    assert [g["record_id"] for g in got] == [j.record_id for j in expected]
    assert [g["prompt_tokens"] for g in got] == tokens
    assert got[0]["request"] == asker.body(expected[0])
    assert (r.summary.would_send, r.summary.prompt_tokens) == (3, sum(tokens))
    assert r.summary.plan == {"annotate/python/function": [3, sum(tokens), 0]}


# --- writer -------------------------------------------------------------------------------------------------
async def test_writer_commits_an_answer_before_its_line_reaches_the_file_then_marks_it(r: Rig) -> None:
    item = r.scanned("pkg/a.py", snippet("f"))
    [job] = await planned_jobs(r, item)
    at_write: list[tuple[set[str], list[str], int]] = []
    async with Checkpoint(r.db) as ckpt:

        async def before_write() -> None:  # what the checkpoint holds as the line is about to be written
            stored = await ckpt.results([job.record_id])
            at_write.append((set(stored), await unemitted(ckpt), len(lines(r.out))))

        async with WatchedNDJSON(r.out, before_write) as out:
            await run_writer(r.writer(ckpt, out), Answered(job, completion()))
            assert at_write == [({job.record_id}, [job.occurrence_id], 0)]
            assert await unemitted(ckpt) == []
            assert await ckpt.output_offset(str(r.out.resolve())) == r.out.stat().st_size
            known = await ckpt.known_files(r.setup.file_task)
    [line] = lines(r.out)
    assert (line["record_id"], line["annotation"]) == (job.record_id, "It adds one.")
    assert line["response"]["usage"] == USAGE
    assert str(item.file.path) in known  # its last line written: the file joined the index
    assert r.ledger.inflight == {}
    assert (r.summary.annotated, r.summary.emitted, r.summary.prompt_tokens) == (1, 1, 11)


async def test_places_attached_to_a_record_in_flight_each_get_a_line_of_the_one_answer(r: Rig) -> None:
    a, b, c = (r.scanned(f"pkg/{n}.py", snippet("f", path=f"pkg/{n}.py")) for n in "abc")
    with Pipe() as jobs, Pipe() as outcomes:
        planner = r.real(jobs, outcomes)
        await planner.plan_file(a)
        await planner.plan_file(b)  # attached while the job is out
        [job] = jobs.items()
        async with HookedCheckpoint(r.db) as ckpt, NDJSONSink(str(r.out)) as out:
            planner.lookup = ckpt.lookup

            async def late() -> None:  # planned after the writer took the answer's places, before its commit
                await planner.plan_file(c)

            ckpt.before_commit = late
            await r.writer(ckpt, out).write([Answered(job, completion())])
            assert jobs.items() == []  # c was attached too, not asked again
            assert await unemitted(ckpt) == []
            stored = await ckpt.results([job.record_id])
            _, seen = await ckpt.lookup([], [r.job(f.snippets[0]).occurrence_id for f in (a, b, c)])
    got = lines(r.out)
    assert sorted(g["path"] for g in got) == ["pkg/a.py", "pkg/b.py", "pkg/c.py"]
    assert {(g["record_id"], g["annotation"]) for g in got} == {(job.record_id, "It adds one.")}
    assert list(stored) == [job.record_id] and len(seen) == 3
    assert r.ledger.inflight == {} and (r.summary.annotated, r.summary.emitted) == (1, 3)


async def test_a_failure_is_stored_with_its_reason_and_drops_its_file_from_the_ledger(r: Rig) -> None:
    item = r.scanned("pkg/a.py", snippet("f"))
    [job] = await planned_jobs(r, item)
    key = str(item.file.path)
    assert key in r.ledger._pending
    async with Checkpoint(r.db) as ckpt, NDJSONSink(str(r.out)) as out:
        await run_writer(r.writer(ckpt, out), Failure(job, "http_400", "attempt 1: http_400: no", 1))
        known = await ckpt.known_files(r.setup.file_task)
    with open_readonly(r.db) as reader:
        failures = reader.failure_examples(5)
    assert failures == [FailureExample("http_400", 1, "pkg/a.py", "f", "attempt 1: http_400: no")]
    assert key not in r.ledger._pending and key not in known  # parsed again by the next run
    assert r.ledger.inflight == {} and lines(r.out) == []
    assert r.summary.failed == Counter({"http_400": 1})


async def test_a_sink_that_raises_stops_the_run_aborted_and_leaves_lines_unemitted(r: Rig) -> None:
    f, g = snippet("f"), snippet("g", path="pkg/b.py")
    job_f, job_g = await planned_jobs(r, r.scanned("pkg/a.py", f), r.scanned("pkg/b.py", g))
    async with Checkpoint(r.db) as ckpt, NDJSONSink(str(r.out)) as out:
        writer = r.writer(ckpt, out, [BrokenSink()])
        await writer.write([Answered(job_f, completion())])
        await writer.write([Answered(job_g, completion())])  # committed, but written nowhere
        assert sorted(await unemitted(ckpt)) == sorted([job_f.occurrence_id, job_g.occurrence_id])
        assert len(await ckpt.results([job_f.record_id, job_g.record_id])) == 2
    assert r.control.stopping
    assert (r.summary.stopped, r.summary.exit_code) == ("sink failed: RuntimeError", ExitCode.ABORTED)
    assert r.said == ["error: sink failed: RuntimeError: disk on fire"]
    assert [line["record_id"] for line in lines(r.out)] == [job_f.record_id]
    assert r.summary.emitted == 0


# --- gates --------------------------------------------------------------------------------------------------
def cost_gate(r: Rig, limit: float) -> CostGate:
    price = Price(1_000_000.0, 1_000_000.0)  # a dollar a token
    return CostGate(
        limit=limit, price=price, max_tokens=50, counter=r.counter, summary=r.summary, control=r.control
    )


def priced_job(r: Rig, name: str) -> Job:
    job = r.job(snippet(name))
    job.prompt_tokens = 100  # worst case: 100 + 50 tokens, $150
    return job


async def test_cost_gate_refuses_a_job_whose_worst_case_passes_the_budget_and_stops_ok(r: Rig) -> None:
    gate = cost_gate(r, 200)
    assert await gate.admit(priced_job(r, "a"))  # $0 + $150 ≤ $200
    assert not await gate.admit(priced_job(r, "b"))  # $150 in flight + $150 > $200
    assert not await gate.admit(priced_job(r, "c"))
    assert r.control.stopping
    assert (r.summary.stopped, r.summary.exit_code) == ("--max-cost 200 reached", ExitCode.OK)
    assert len(r.said) == 1 and r.said[0].startswith("stopping: $0.0000 spent and $150.0000 in flight")


async def test_cost_gate_releases_a_reservation_on_settle_and_counts_what_was_spent(r: Rig) -> None:
    gate = cost_gate(r, 200)
    first = priced_job(r, "a")
    assert await gate.admit(first)
    gate.settle(first, Answered(first, completion()))
    assert gate.reserved == 0
    second = priced_job(r, "b")
    assert await gate.admit(second)  # refused if the first still held its $150
    gate.settle(second, None)
    assert not r.control.stopping
    r.summary.add_usage({"prompt_tokens": 60, "completion_tokens": 0}, None)  # $60 spent
    assert not await gate.admit(priced_job(r, "c"))  # $60 + $150 > $200


async def test_failure_gate_stops_the_run_failed_at_the_limit(r: Rig) -> None:
    gate = FailureGate(2, r.control)
    job = r.job(snippet("f"))
    gate.settle(job, Answered(job, completion()))
    gate.settle(job, None)
    gate.settle(job, Failure(job, "http_400", "no", 1))
    assert not r.control.stopping
    gate.settle(job, Failure(job, "http_400", "no", 1))
    assert (r.summary.stopped, r.summary.exit_code) == ("--max-failures 2 reached", ExitCode.FAILED)
    gate.settle(job, Failure(job, "http_400", "no", 1))
    assert len(r.said) == 1


# --- workers + asker + client pool over a MockTransport -----------------------------------------------------
def sse_answer(*pieces: str) -> httpx.Response:
    """OpenAI's streamed chat answer: chat.completion.chunk deltas, the finish, the usage, then [DONE]."""
    meta = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "m-1"}
    deltas = [{"role": "assistant", "content": ""}, *({"content": p} for p in pieces)]
    chunks = [{**meta, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append({**meta, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({**meta, "choices": [], "usage": USAGE})
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)


def api_error(status: int, message: str, **fields: Any) -> httpx.Response:
    error = {"message": message, "type": "invalid_request_error", **fields}
    return httpx.Response(status, json={"error": error})


class FakeAPI(httpx.MockTransport):
    """A mock transport answering each request with `respond(body)`; it keeps the bodies it got."""

    def __init__(self, respond: Callable[[dict[str, Any]], httpx.Response]) -> None:
        self.bodies: list[dict[str, Any]] = []

        def handle(request: httpx.Request) -> httpx.Response:
            self.bodies.append(orjson.loads(request.content))
            return respond(self.bodies[-1])

        super().__init__(handle)


async def work(r: Rig, api: FakeAPI, jobs: list[Job], *, workers: int = 1) -> list[Any]:
    """`workers` workers over `jobs` to the end, as the graph runs them: the outcomes they sent."""
    cfg = r.cfg
    retry = RetryPolicy(max_attempts=cfg.max_attempts, base=cfg.backoff)
    async with ClientPool(base_url=BASE, api_key=None, api_key_env="OPENAI_API_KEY", api=cfg.api,
                          concurrency=workers, retry=retry, transport=api) as pool:  # fmt: skip
        with Pipe() as job_pipe, Pipe() as outcomes:
            for job in jobs:
                await job_pipe.send.send(job)
            job_pipe.send.close()
            with anyio.fail_after(10):  # a safety net only
                await Workers(workers, r.asker(pool), [], r.control).run(job_pipe.recv, outcomes.send)
            return outcomes.items()


async def test_a_streamed_answer_comes_out_answered_with_its_text_and_usage(r: Rig) -> None:
    api = FakeAPI(lambda body: sse_answer("It ", "adds ", "one."))
    job = r.job(snippet("f"))
    [answered] = await work(r, api, [job])
    assert isinstance(answered, Answered) and answered.job is job
    c = answered.completion
    assert (c.text, c.usage, c.finish_reason, c.response_id) == ("It adds one.", USAGE, "stop", "chatcmpl-7")
    [body] = api.bodies
    assert body["stream"] is True and body["messages"] == [{"role": "user", "content": job.user}]
    assert body["max_tokens"] == 512 and r.summary.requests == 1


async def test_a_401_stops_the_run_aborted_with_one_message_and_records_nothing(r: Rig) -> None:
    api = FakeAPI(lambda body: api_error(401, "Incorrect API key provided.", code="invalid_api_key"))
    outcomes = await work(r, api, [r.job(snippet(n)) for n in "abcd"], workers=2)
    assert outcomes == []  # what was in flight is not recorded as failed
    assert 1 <= len(api.bodies) <= 2  # no worker takes another job once stopping
    assert r.summary.exit_code == ExitCode.ABORTED and (r.summary.stopped or "").startswith("AuthError: 401")
    assert len(r.said) == 1 and r.said[0].startswith("error: 401 from")


async def test_a_stop_lets_the_request_in_flight_finish_and_no_worker_takes_a_new_job(r: Rig) -> None:
    def respond(body: dict[str, Any]) -> httpx.Response:
        r.control.stop("interrupted", exit_code=ExitCode.INTERRUPTED)  # Ctrl-C while the first is out
        return sse_answer("Fine.")

    api = FakeAPI(respond)
    outcomes = await work(r, api, [r.job(snippet(n)) for n in "abcd"], workers=2)
    assert [type(o) for o in outcomes] == [Answered] and len(api.bodies) == 1  # (within its grace)
    assert (r.summary.stopped, r.summary.exit_code) == ("interrupted", ExitCode.INTERRUPTED)


UNSUPPORTED_MAX_TOKENS = (
    "Unsupported parameter: 'max_tokens' is not supported with this model. "
    "Use 'max_completion_tokens' instead."
)


async def test_a_400_refusing_max_tokens_is_resent_as_max_completion_tokens_from_then_on(r: Rig) -> None:
    def respond(body: dict[str, Any]) -> httpx.Response:
        if "max_tokens" in body:
            return api_error(400, UNSUPPORTED_MAX_TOKENS, param="max_tokens", code="unsupported_parameter")
        return sse_answer("Fine.")

    api = FakeAPI(respond)
    outcomes = await work(r, api, [r.job(snippet("f")), r.job(snippet("g"))])
    assert [type(o) for o in outcomes] == [Answered, Answered]
    sent = [(b.get("max_tokens"), b.get("max_completion_tokens")) for b in api.bodies]
    assert sent == [(512, None), (None, 512), (None, 512)]  # the second job is sent the learned way at once
    assert [o.completion.attempts for o in outcomes] == [2, 1]
    assert r.setup.shape.token_param == "max_completion_tokens"
    assert len(r.said) == 1 and "max_completion_tokens from now on" in r.said[0]
    assert r.summary.requests == 3 and not r.control.stopping


# --- control ------------------------------------------------------------------------------------------------
async def test_stop_keeps_the_first_reason_and_exit_code_and_cancels_the_feed(r: Rig) -> None:
    with anyio.fail_after(10), r.control.feed_scope:  # (fail_after: a safety net only)
        r.control.stop("--max-cost 1 reached", exit_code=ExitCode.OK)
        r.control.stop("AuthError: 401", exit_code=ExitCode.ABORTED, grace=0)
        await anyio.sleep_forever()  # cancelled at once: the feed gets no grace
    assert r.control.feed_scope.cancelled_caught and r.control.stopping
    assert (r.summary.stopped, r.summary.exit_code) == ("--max-cost 1 reached", ExitCode.OK)


async def test_stop_moves_the_workers_scope_deadline_to_the_earliest_grace(r: Rig) -> None:
    r.control.stop("interrupted", exit_code=ExitCode.INTERRUPTED)
    with anyio.fail_after(10):  # a safety net only
        with anyio.CancelScope() as scope:
            r.control.bind_workers(scope)  # bound after the stop: it gets the deadline too
            assert 0 < scope.deadline - anyio.current_time() <= 10
            r.control.stop("AuthError: 401", exit_code=ExitCode.ABORTED, grace=0)
            assert scope.deadline <= anyio.current_time()
            r.control.stop("later", exit_code=ExitCode.OK, grace=30)  # a later, longer grace moves nothing
            assert scope.deadline <= anyio.current_time()
            await anyio.sleep_forever()
    assert scope.cancelled_caught


# --- feed ---------------------------------------------------------------------------------------------------
async def test_feed_hands_the_walk_to_the_planner_and_writer_in_order(r: Rig) -> None:
    reused, asked = snippet("f"), snippet("g", path="pkg/b.py")
    skips = [Skipped(f"/src/bin{i}.py", f"bin{i}.py", "binary", "NUL bytes") for i in range(WALK_BATCH + 44)]
    touched, big = (SourceFile(r.root / n, n, 10, 2) for n in ("t.py", "big.py"))
    items = [
        *skips,  # more than one batch
        Unchanged(touched, KnownFile(10, 1, "ht", 3), touched=True),
        Unchanged(big, KnownFile(10, 2, "hb", 0, "too_large", "2 MB"), touched=False),
        r.scanned("pkg/a.py", reused),
        r.scanned("pkg/b.py", asked),
    ]

    async def lookup(record_ids: list[str], occurrence_ids: list[str]) -> tuple[set[str], set[str]]:
        return {r.job(reused).record_id} & set(record_ids), set()

    def scan() -> Iterator[Any]:
        yield from items

    with Pipe() as jobs, Pipe() as outcomes:
        feed = Feed(scan, r.real(jobs, outcomes, lookup), r.ledger, r.summary)
        assert not r.summary.walk_done
        await feed.run(outcomes.send)
        out, [job] = outcomes.items(), jobs.items()
    assert out[: len(skips)] == skips
    assert out[len(skips)] == FilesDone([r.ledger.file_row(touched, "ht", 3, None, None)])
    [reuse] = out[len(skips) + 1 :]
    assert isinstance(reuse, Reuse) and reuse.snippet is reused
    assert job.snippet is asked
    assert r.summary.walk_done
    assert (r.summary.files, r.summary.unchanged, r.summary.snippets, r.summary.reused) == (4, 3, 5, 1)
    assert r.summary.skipped == Counter({"binary": len(skips), "too_large": 1})
