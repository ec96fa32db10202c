"""The life cycle of a fake batch: `Job` (a Batch object and what drives it), `BatchState` (every file,
batch and counter of a server), `advance` (bring a batch up to the present) and `cancel`.

The life cycle is the Batch guide's (https://platform.openai.com/docs/guides/batch, the status table of
"Checking the status of a batch"): validating -> in_progress -> finalizing -> completed; validating ->
failed (the input file did not validate); in_progress -> expired (lines were left undone when the window
ran out); validating or in_progress -> cancelling -> cancelled. Fields as in openai-python
``src/openai/types/batch.py``, ``batch_request_counts.py``, ``batch_usage.py``.

Time is evaluated lazily: no task runs in the background; whatever reads a batch (the routes of
`batchapi`, `BatchAPI.batch`) first brings it up to the present. Each phase lasts the batch's step; a
transition happens at the moment its phase ran out, whenever it is observed, so the timestamps are those of
an uninterrupted run. While in_progress the lines are answered in the (shuffled) order of processing,
evenly over the step, so a batch polled or cancelled midway has part of its lines done.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from tests.fakeserver.batchlines import Line, answer, not_run, validate
from tests.fakeserver.files import FileStore, jsonl

if TYPE_CHECKING:
    from tests.fakeserver.server import FakeOpenAI

WINDOW_SECONDS = 24 * 3600  # "24h", the only completion window (``batch_create_params.py``)
#: How a knob picks lines: a fraction of them, or a predicate of the custom_id (`BatchAPI`).
Pick = float | Callable[[str], Any]


@dataclass(slots=True)
class Job:
    """One batch: the Batch object as served (`obj`) and what drives it. The knobs are read when the
    batch is created; `born`/`wall` are ``time.monotonic()``/``time.time()`` then, `phase_at` the monotonic
    start of the current phase. `todo` are the indices of `lines` in processing order, `skipped` those
    that never get done (`BatchAPI.batch_expire`), `forced` the statuses of `BatchAPI.batch_line_errors`."""

    obj: dict[str, Any]
    data: bytes
    step: float
    held: bool
    expire: Pick
    line_errors: Pick
    max_requests: int
    max_inputs: int  # embedding inputs over the lines of an /v1/embeddings batch
    rng: random.Random
    born: float
    wall: float
    phase_at: float
    released_at: float | None = None
    lines: list[Line] = field(default_factory=list)
    todo: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    forced: dict[int, int] = field(default_factory=dict)
    done: int = 0
    outputs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def stamp(self, t: float) -> int:
        """The Unix time (seconds) of monotonic time `t`."""
        return int(self.wall + (t - self.born))


@dataclass(slots=True)
class BatchState:
    """The files, the batches (oldest first) and the counters; `files.lock` guards all of it."""

    files: FileStore = field(default_factory=FileStore)
    jobs: dict[str, Job] = field(default_factory=dict)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    answered: int = 0

    def note_upload(self, obj: dict[str, Any], data: bytes) -> None:
        """Record an upload for `BatchAPI.uploads` (the custom_ids of the lines that have one)."""
        ids = []
        for raw in data.splitlines():
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
                ids.append(line["custom_id"])
        with self.files.lock:
            self.uploads.append(
                {k: obj[k] for k in ("id", "filename", "purpose", "bytes")} | {"custom_ids": ids}
            )


# ---- the state machine ----------------------------------------------------------------------------------


def advance(server: FakeOpenAI, job: Job, now: float) -> None:
    """Bring `job` up to monotonic time `now` (call with the store's lock held)."""
    while True:
        status, end = job.obj["status"], job.phase_at + job.step
        if status == "validating" and now >= end:
            _validated(job, end)
        elif status == "in_progress":
            until = _work_ends(job)
            _work(server, job, min(now, until))
            if now < until:
                return
            _worked(server, job, until)
        elif status in ("finalizing", "cancelling") and now >= end:
            _finished(server, job, end)
        else:
            return


def _validated(job: Job, t: float) -> None:
    obj = job.obj
    lines, errors = validate(job.data, obj["endpoint"], job.max_requests, job.max_inputs)
    if errors:
        obj.update(status="failed", failed_at=job.stamp(t), errors={"object": "list", "data": errors})
        return
    job.lines, job.phase_at = lines, t
    ids = [line.custom_id for line in lines]
    skipped = set(_pick(job.expire, ids, job.rng))
    job.skipped = [i for i in range(len(lines)) if i in skipped]
    job.todo = [i for i in range(len(lines)) if i not in skipped]
    job.rng.shuffle(job.todo)  # the guide warns that output lines need not follow the input's order
    job.forced = {i: status for i, status in _line_errors(job.line_errors, ids, job.rng) if i not in skipped}
    obj.update(
        status="in_progress",
        in_progress_at=job.stamp(t),
        model=lines[0].body["model"],
        request_counts={"total": len(lines), "completed": 0, "failed": 0},
        usage={
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
    )


def _pick(knob: Pick, ids: list[str], rng: random.Random) -> list[int]:
    """The indices a knob picks: those whose custom_id the predicate accepts, or ceil(fraction x n) of
    them chosen with `rng` (so any fraction above 0 picks at least one line)."""
    if callable(knob):
        return [i for i, custom_id in enumerate(ids) if knob(custom_id)]
    count = min(len(ids), math.ceil(max(0.0, float(knob)) * len(ids)))
    return sorted(rng.sample(range(len(ids)), count)) if count else []


def _line_errors(knob: Pick, ids: list[str], rng: random.Random) -> list[tuple[int, int]]:
    """(index, status) of the lines `BatchAPI.batch_line_errors` fails: the predicate's status, or 500."""
    if not callable(knob):
        return [(i, 500) for i in _pick(knob, ids, rng)]
    return [(i, int(status)) for i, custom_id in enumerate(ids) if (status := knob(custom_id))]


def _work_ends(job: Job) -> float:
    """When the in_progress phase ends: after the step, or once released if the batch is held."""
    if job.held and job.released_at is None:
        return math.inf
    return max(job.phase_at + job.step, job.released_at or 0.0)


def _work(server: FakeOpenAI, job: Job, t: float) -> None:
    """Answer the lines due by time `t`: evenly over the step, all of them once it is over."""
    total = len(job.todo)
    over = job.step <= 0 or t >= job.phase_at + job.step  # (not `elapsed >= step`: floats)
    target = total if over else int(total * (t - job.phase_at) / job.step)
    counts, usage = job.obj["request_counts"], job.obj["usage"]
    while job.done < target:
        index = job.todo[job.done]
        answered = answer(server, job.obj["endpoint"], job.lines[index], job.forced.get(index))
        job.done += 1
        server._batches.answered += 1
        (job.outputs if answered.ok else job.errors).append(answered.line)
        counts["completed" if answered.ok else "failed"] += 1
        if answered.usage is not None:
            usage["input_tokens"] += answered.usage["prompt_tokens"]
            usage["output_tokens"] += answered.usage["completion_tokens"]
            usage["total_tokens"] += answered.usage["total_tokens"]


def _worked(server: FakeOpenAI, job: Job, t: float) -> None:
    """The in_progress phase is over: expired when some lines were never done (the guide's "Batch
    expiration": the done lines are in the output file, the others in the error file), else finalizing."""
    if job.skipped:
        job.errors += [not_run(job.lines[i].custom_id, expired=True) for i in job.skipped]
        _write_files(server, job)
        job.obj.update(status="expired", expired_at=job.stamp(t))
    else:
        job.phase_at = t
        job.obj.update(status="finalizing", finalizing_at=job.stamp(t))


def _finished(server: FakeOpenAI, job: Job, t: float) -> None:
    if job.obj["status"] == "finalizing":
        _write_files(server, job)
        job.obj.update(status="completed", completed_at=job.stamp(t))
        return
    undone = job.todo[job.done :] + job.skipped
    job.errors += [not_run(job.lines[i].custom_id, expired=False) for i in undone]
    _write_files(server, job)
    job.obj.update(status="cancelled", cancelled_at=job.stamp(t))


def _write_files(server: FakeOpenAI, job: Job) -> None:
    """The output and error files (purpose ``batch_output``), each only when it has lines: a batch whose
    every request failed has ``output_file_id`` null (as OpenAI reports, ProjectTech4DevAI/kaapi-backend#723)."""
    store, batch_id = server._batches.files, job.obj["id"]
    for key, lines, suffix in (
        ("output_file_id", job.outputs, "output"),
        ("error_file_id", job.errors, "error"),
    ):
        if lines:
            job.obj[key] = store.add(jsonl(lines), f"{batch_id}_{suffix}.jsonl", "batch_output")["id"]


def cancel(server: FakeOpenAI, job: Job, now: float) -> bool:
    """Start cancelling: ``cancelling``, then ``cancelled`` a step later, the lines done so far in the
    output file (the docstring of ``batches.cancel`` in openai-python ``src/openai/resources/batches.py``:
    a cancelled batch is ``cancelling`` for up to 10 minutes, then ``cancelled`` with its partial results,
    if any, in the output file); the lines not run go to the error file (`batchlines.not_run`). False when
    the batch has ended (or is finalizing); cancelling one that is cancelling or cancelled changes nothing."""
    advance(server, job, now)
    status = job.obj["status"]
    if status in ("validating", "in_progress"):
        job.phase_at = now
        job.obj.update(status="cancelling", cancelling_at=job.stamp(now))
    return status in ("validating", "in_progress", "cancelling", "cancelled")
