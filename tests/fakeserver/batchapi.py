"""The Files and Batch API endpoints of the fake server: `BatchAPI`, the knobs, counters and route lookup
`FakeOpenAI` gets (its Files routes are in `files`, the batches' life cycle in `batches`), and the Batch
routes ``POST/GET /v1/batches``, ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``
(https://platform.openai.com/docs/api-reference/batch)."""

from __future__ import annotations

import copy
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import parse_qs

from tests.fakeserver import files
from tests.fakeserver.batches import WINDOW_SECONDS, BatchState, Job, Pick, advance, cancel
from tests.fakeserver.batchlines import ENDPOINT_KINDS
from tests.fakeserver.files import cursor_page, parse_limit

if TYPE_CHECKING:
    from tests.fakeserver.routes import Exchange
    from tests.fakeserver.server import FakeOpenAI

#: The endpoints OpenAI runs batches for (``batch_create_params.py``); only `ENDPOINT_KINDS` run here
#: (chat, legacy completions and embeddings).
OPENAI_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
DEFAULT_MAX_FILE_BYTES = 200 * 1000 * 1000  # "up to 200 MB" (``batch_create_params.py``)
DEFAULT_MAX_REQUESTS = 50_000  # "up to 50,000 requests" (ibid.)
#: "/v1/embeddings batches are also restricted to a maximum of 50,000 embedding inputs across all requests in
#: the batch" (ibid., ``endpoint``)
DEFAULT_MAX_INPUTS = 50_000
Handler = Callable[..., Awaitable[bool]]


class BatchKnobs(TypedDict, total=False):
    """The keywords `FakeOpenAI` passes to `BatchAPI._init_batch_api` (see `BatchAPI` for each)."""

    batch_step_seconds: float
    batch_hold: bool
    batch_expire: Pick
    batch_line_errors: Pick
    upload_delay: float
    content_delay: float
    content_chunk_lines: int
    max_file_bytes: int
    max_batch_requests: int
    max_batch_inputs: int


class BatchAPI:
    """OpenAI's Files and Batch APIs (`files`, `batches`, this module), for `FakeOpenAI`.

    Knobs (constructor keywords of `FakeOpenAI` and plain attributes; a batch reads them when it is
    created, except `upload_delay`/`content_delay`/`content_chunk_lines`/`max_file_bytes`, read per request):

    * `batch_step_seconds` (0.05): how long a batch stays validating, in_progress, finalizing and
      cancelling (0: no time at all; a batch is then finished when first read).
    * `batch_hold` (False): batches stay in_progress (their lines all answered after the step) until
      `release_batches`.
    * `batch_expire` (0.0): lines that never get done, so the batch ends ``expired`` with them in its error
      file (``batch_expired``) and the others in its output file: a fraction (exactly ceil(f x lines) of
      them, drawn with the seed) or ``callable(custom_id) -> bool``.
    * `batch_line_errors` (0.0): lines answered with an HTTP error: a fraction (those get 500) or
      ``callable(custom_id) -> status or None``; they go to the error file (``response.status_code`` and
      an OpenAI error body, ``error`` null) and count as failed. A line picked by both knobs expires.
    * `upload_delay` (0.0): seconds between storing an upload (it is in `uploads` and ``GET /v1/files``
      from then on) and answering it.
    * `content_delay` (0.0) and `content_chunk_lines` (100): ``GET /v1/files/{id}/content`` sends that
      many lines at a time with that pause between pieces.
    * `max_file_bytes` (200 MB) and `max_batch_requests` (50,000): OpenAI's per-batch limits, on uploads
      with purpose ``batch`` (400) and on the lines of a batch (it fails with ``too_many_tasks``). A body
      over `http.MAX_BODY` (64 MiB) is refused by the HTTP parser first (413), whatever this limit is.
    * `max_batch_inputs` (50,000): the embedding inputs an ``/v1/embeddings`` batch may carry over all its
      lines (it fails with ``too_many_tasks``, `batchlines.validate`).

    Cancelling (``POST /v1/batches/{id}/cancel``) works while validating or in_progress: ``cancelling`` for
    a step, then ``cancelled``, the lines done in the output file and the others in the error file
    (``batch_cancelled``); a batch finalizing or ended answers 409.

    Lines are processed in an order shuffled with ``random.Random(f"{seed}/{n}")`` for the server's n-th
    batch (from 0), which is also the order of the output file; the fractions draw from it too.

    Counters and state: `uploads`, `batches_created`, `batch_lines_answered`, `batch`, `file_content`;
    `release_batches`.
    """

    batch_step_seconds: float
    batch_hold: bool
    batch_expire: Pick
    batch_line_errors: Pick
    upload_delay: float
    content_delay: float
    content_chunk_lines: int
    max_file_bytes: int
    max_batch_requests: int
    max_batch_inputs: int
    seed: int
    _batches: BatchState

    def _init_batch_api(
        self,
        *,
        batch_step_seconds: float = 0.05,
        batch_hold: bool = False,
        batch_expire: Pick = 0.0,
        batch_line_errors: Pick = 0.0,
        upload_delay: float = 0.0,
        content_delay: float = 0.0,
        content_chunk_lines: int = 100,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_batch_requests: int = DEFAULT_MAX_REQUESTS,
        max_batch_inputs: int = DEFAULT_MAX_INPUTS,
    ) -> None:
        self.batch_step_seconds, self.batch_hold = batch_step_seconds, batch_hold
        self.batch_expire, self.batch_line_errors = batch_expire, batch_line_errors
        self.upload_delay, self.content_delay = upload_delay, content_delay
        self.content_chunk_lines = content_chunk_lines
        self.max_file_bytes, self.max_batch_requests = max_file_bytes, max_batch_requests
        self.max_batch_inputs = max_batch_inputs
        self._batches = BatchState()  # the files, batches and their counters

    @property
    def uploads(self) -> list[dict[str, Any]]:
        """Every upload, oldest first: ``{"id", "filename", "purpose", "bytes", "custom_ids"}`` (the
        ``custom_id`` of each line that is a JSON object with one, in file order)."""
        with self._batches.files.lock:
            return copy.deepcopy(self._batches.uploads)

    @property
    def batches_created(self) -> list[str]:
        """The ids of the batches created (``POST /v1/batches`` answered 200), oldest first."""
        with self._batches.files.lock:
            return list(self._batches.jobs)

    @property
    def batch_lines_answered(self) -> int:
        """How many batch lines have been answered (successes and line errors, not expired or cancelled)."""
        with self._batches.files.lock:
            return self._batches.answered

    def batch(self, batch_id: str) -> dict[str, Any]:
        """The Batch object as ``GET /v1/batches/{id}`` would answer it now (KeyError when unknown)."""
        with self._batches.files.lock:
            job = self._batches.jobs[batch_id]
            advance(self._as_server, job, time.monotonic())
            return copy.deepcopy(job.obj)

    def file_content(self, file_id: str) -> bytes:
        """The bytes of a file (an upload, or a batch's output or error file); KeyError when unknown."""
        stored = self._batches.files.get(file_id)
        if stored is None:
            raise KeyError(file_id)
        return stored.data

    def release_batches(self, batch_id: str | None = None) -> int:
        """Let held batches (`batch_hold`) leave in_progress, now or once their step is over; only
        `batch_id` when given. Returns how many were released."""
        now, released = time.monotonic(), 0
        with self._batches.files.lock:
            for job in self._batches.jobs.values():
                if job.held and job.released_at is None and batch_id in (None, job.obj["id"]):
                    advance(self._as_server, job, now)
                    job.released_at = now
                    released += 1
        return released

    def _batch_route(self, method: str, path: str) -> Callable[[Exchange], Awaitable[bool]] | None:
        """The handler of a Files or Batch API request, or None (`routes.dispatch` asks after `ROUTES`)."""
        for verb, pattern, handler in _ROUTES:
            if verb == method and (match := pattern.fullmatch(path)) is not None:
                args = match.groups()
                return lambda ex: handler(ex, *args)
        return None

    @property
    def _as_server(self) -> FakeOpenAI:
        return self  # type: ignore[return-value]


# ---- the batch routes -----------------------------------------------------------------------------------


async def create(ex: Exchange) -> bool:
    """``POST /v1/batches`` (https://platform.openai.com/docs/api-reference/batch/create): 400 for a bad
    request (missing fields, an endpoint or window not supported, bad metadata, an unknown file or one
    not uploaded for ``batch``); else the new Batch object, ``validating``."""
    server, body = ex.server, None if ex.bad_json else ex.req.body
    if body is None:
        return await ex.error(400, "The request body must be a JSON object.", None)
    problem = _create_problem(server, body)
    if problem is not None:
        message, code, param = problem
        return await ex.error(400, message, code, param=param)
    now, wall = time.monotonic(), time.time()
    batch_id = f"batch_{uuid.uuid4().hex[:24]}"
    stored = server._batches.files.get(body["input_file_id"])
    assert stored is not None
    with server._batches.files.lock:
        number = len(server._batches.jobs)  # the n-th batch of a server with a given seed is shuffled alike
    job = Job(
        _new_batch(batch_id, body, int(wall)),
        stored.data,
        step=server.batch_step_seconds,
        held=server.batch_hold,
        expire=server.batch_expire,
        line_errors=server.batch_line_errors,
        max_requests=server.max_batch_requests,
        max_inputs=server.max_batch_inputs,
        rng=random.Random(f"{server.seed}/{number}"),
        born=now,
        wall=wall,
        phase_at=now,
    )
    with server._batches.files.lock:
        server._batches.jobs[batch_id] = job
        obj = copy.deepcopy(job.obj)
    return await ex.json(200, obj, server._current_ratelimit_headers())


def _new_batch(batch_id: str, body: dict[str, Any], now: int) -> dict[str, Any]:
    """A new Batch object with every documented field (``batch.py``), ``expires_at`` a window away."""
    return {
        "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
        "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
        "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": now,
        "in_progress_at": None, "expires_at": now + WINDOW_SECONDS, "finalizing_at": None,
        "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
        "cancelled_at": None, "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": body.get("metadata"), "model": None, "usage": None,
    }  # fmt: skip


def _create_problem(server: FakeOpenAI, body: dict[str, Any]) -> tuple[str, str | None, str] | None:
    """(message, code, param) of the 400 for a bad ``POST /v1/batches`` body, or None."""
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(name), str):
            return f"Missing required parameter: '{name}'.", "missing_required_parameter", name
    endpoint = body["endpoint"]
    if endpoint not in ENDPOINT_KINDS:
        served = ", ".join(ENDPOINT_KINDS)
        if endpoint in OPENAI_ENDPOINTS:
            return f"This server runs batches for {served} only, not {endpoint}.", "invalid_value", "endpoint"
        message = f"Invalid value: '{endpoint}'. Supported values are: {', '.join(OPENAI_ENDPOINTS)}."
        return message, "invalid_value", "endpoint"
    if body["completion_window"] != "24h":
        window = body["completion_window"]
        return (
            f"Invalid value: '{window}'. Supported values are: '24h'.",
            "invalid_value",
            "completion_window",
        )
    if not _good_metadata(body.get("metadata")):
        message = (
            "'metadata' must be an object of at most 16 string values (keys up to 64 characters, values 512)."
        )
        return message, "invalid_value", "metadata"
    stored = server._batches.files.get(body["input_file_id"])
    if stored is None:
        return (
            f"Invalid 'input_file_id': no file has the id '{body['input_file_id']}'.",
            None,
            "input_file_id",
        )
    if stored.obj["purpose"] != "batch":
        message = f"The input file must be uploaded with purpose 'batch', not '{stored.obj['purpose']}'."
        return message, None, "input_file_id"
    return None


def _good_metadata(metadata: Any) -> bool:
    """Metadata as ``batch_create_params.py`` allows it: 16 pairs, keys up to 64 characters, values 512."""
    if metadata is None:
        return True
    if not isinstance(metadata, dict) or len(metadata) > 16:
        return False
    pairs = metadata.items()
    return all(isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512 for k, v in pairs)


async def retrieve(ex: Exchange, batch_id: str) -> bool:
    """``GET /v1/batches/{id}`` (https://platform.openai.com/docs/api-reference/batch/retrieve)."""
    try:
        obj = ex.server.batch(batch_id)
    except KeyError:
        return await _not_found(ex, batch_id)
    return await ex.json(200, obj, ex.server._current_ratelimit_headers())


async def listing(ex: Exchange) -> bool:
    """``GET /v1/batches``: newest first, ``limit`` 1..100 (default 20) after the ``after`` id
    (``batch_list_params.py``; https://platform.openai.com/docs/api-reference/batch/list)."""
    server = ex.server
    params = {k: v[-1] for k, v in parse_qs(ex.req.query).items()}
    limit = parse_limit(params.get("limit"), 20, 100)
    if limit is None:
        message = "Invalid 'limit': expected an integer between 1 and 100."
        return await ex.error(400, message, "invalid_value", param="limit")
    now = time.monotonic()
    with server._batches.files.lock:
        jobs = list(server._batches.jobs.values())[::-1]
        for job in jobs:
            advance(server, job, now)
        page = cursor_page([copy.deepcopy(job.obj) for job in jobs], params.get("after"), limit)
    return await ex.json(200, page, server._current_ratelimit_headers())


async def cancel_batch(ex: Exchange, batch_id: str) -> bool:
    """``POST /v1/batches/{id}/cancel`` (https://platform.openai.com/docs/api-reference/batch/cancel):
    the Batch object, ``cancelling``; 409 when it has already ended."""
    server = ex.server
    with server._batches.files.lock:
        job = server._batches.jobs.get(batch_id)
        ok = job is not None and cancel(server, job, time.monotonic())
        obj = copy.deepcopy(job.obj) if job is not None else None
    if obj is None:
        return await _not_found(ex, batch_id)
    if not ok:
        return await ex.error(409, f"Cannot cancel a batch with status '{obj['status']}'.", None)
    return await ex.json(200, obj, server._current_ratelimit_headers())


async def _not_found(ex: Exchange, batch_id: str) -> bool:
    return await ex.error(404, f"No batch found with id '{batch_id}'.", None, param="batch_id")


_ROUTES: tuple[tuple[str, re.Pattern[str], Handler], ...] = tuple(
    (verb, re.compile(pattern), handler)
    for verb, pattern, handler in (
        ("POST", r"/v1/files", files.upload),
        ("GET", r"/v1/files", files.listing),
        ("GET", r"/v1/files/([^/]+)", files.retrieve),
        ("DELETE", r"/v1/files/([^/]+)", files.delete),
        ("GET", r"/v1/files/([^/]+)/content", files.content),
        ("POST", r"/v1/batches", create),
        ("GET", r"/v1/batches", listing),
        ("GET", r"/v1/batches/([^/]+)", retrieve),
        ("POST", r"/v1/batches/([^/]+)/cancel", cancel_batch),
    )
)
