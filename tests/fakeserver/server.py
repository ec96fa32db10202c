"""`FakeOpenAI`: the server's settings, state and public counters; each request is logged, then answered by
`routes.dispatch`."""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Unpack

import orjson

from tests.fakeserver import http, routes
from tests.fakeserver.batchapi import BatchAPI, BatchKnobs
from tests.fakeserver.embeddings import DEFAULT_DIMENSIONS, EmbeddingLimits
from tests.fakeserver.faults import ALL_FAULTS, Scripted, checked_faults, draw
from tests.fakeserver.ratelimits import Accounts, check_limits, headers_mode
from tests.fakeserver.replies import LoggedRequest, default_reply, error_body
from tests.fakeserver.threaded import LoopbackServer


class FakeOpenAI(BatchAPI, LoopbackServer):
    """A loopback OpenAI-compatible server running in a background thread with its own event loop.

    `reply(request) -> str` gives the answer text (default: `default_reply`); it runs on the server's loop
    thread, so keep it fast. The reply is split into `chunks` pieces (one piece = one token for
    ``max_tokens`` and usage). `latency` is slept before every response starts, `chunk_delay` between
    stream events. `include_usage=False` makes the server never report usage (no usage chunk, no ``usage``
    field). `api_key` requires ``Authorization: Bearer <api_key>``; `model` rejects other models with 404.
    `sse_extras` adds a ``: keep-alive`` comment, an ``event: message`` line, a leading ``choices: []``
    chunk and CRLF line endings to streams. `host`/`port` choose the address (port 0 = ephemeral);
    `verbose` prints one line per request to stderr.

    Rate limits: `rpm`/`tpm` (None = unlimited) are enforced with two token buckets that refill
    continuously at ``rpm/60`` and ``tpm/60`` per second and hold `burst_seconds` of refill (at least one
    request), starting full. A completion request is admitted only when both have room; it takes 1 request
    and ``prompt_tokens + max_tokens`` tokens (``max_completion_tokens``/``max_tokens`` from the body,
    `DEFAULT_MAX_TOKENS` = 16 when absent; prompt tokens = whitespace-separated words of the prompt text).
    A request needing more tokens than the bucket holds is admitted once the bucket is full and leaves it
    in debt. Otherwise: 429 with an OpenAI-style body (``type`` ``"requests"`` or ``"tokens"``, code
    ``rate_limit_exceeded``), ``retry-after`` (whole seconds, rounded up) and ``retry-after-ms`` (the wait
    until both buckets have room, rounded up to a whole ms); nothing is deducted.

    Accounting, `refund_unused`: what happens to the reservation when the answer has been written.

    * ``False`` (the default, OpenAI's documented behaviour): the admission charge stands; nothing comes
      back when the answer is shorter than ``max_tokens`` (an answer that outgrew the default reservation
      of a request without ``max_tokens`` is still charged the excess). OpenAI's rate-limit guide
      (https://platform.openai.com/docs/guides/rate-limits, "Reduce the max_tokens to match the size of
      your completions"): "Your rate limit is calculated as the maximum of max_tokens and the estimated
      number of tokens based on the character count of your request. Try to set the max_tokens value as
      close to your expected response size as possible." Its help centre
      (https://help.openai.com/en/articles/6891753-rate-limit-advice): "Usage needs are estimated from
      this value" (``max_tokens``). Azure OpenAI (https://learn.microsoft.com/azure/ai-services/openai/
      how-to/quota): TPM limits are "based on the maximum tokens estimated to be processed when the
      request is received", from the prompt, ``max_tokens`` and ``best_of``, and differ from "the token
      count used for billing, which is computed after all processing is completed". This server charges
      the prompt and ``max_tokens`` added up, the reading Azure's list gives.
    * ``True``: ``max_tokens - completion_tokens`` goes back to the token bucket just before the answer's
      last bytes are written (so a client holding the whole answer sees it in `stats` and in the next
      response's headers). Servers that settle on the real usage work this way: OpenAI's own Realtime API
      (``rate_limits.updated``: tokens are "reserved" for the output when a response is created, "which
      is then adjusted accordingly once the Response is completed"), and LiteLLM's proxy, whose limiter
      adds ``usage.total_tokens`` to a key's count after a successful call
      (``litellm/proxy/hooks/parallel_request_limiter.py``).

    Headers, `ratelimit_headers` (when a limit is set): ``"all"`` (or ``True``, the default) puts
    ``x-ratelimit-limit-*`` (the per-minute limits), ``x-ratelimit-remaining-*`` (bucket level after this
    request's deduction, floored, never negative) and ``x-ratelimit-reset-*`` (time until the bucket is
    full again, `format_duration`) on every response, for each bucket whose limit is set, as OpenAI
    documents; ``"429"`` only on 429s (a proxy or a provider that says nothing until it refuses);
    ``"none"`` (or ``False``) never (vLLM and llama.cpp's servers enforce no per-minute limits and send
    no such headers; the retry time of a 429 is then all a client learns).

    Faults: each completion request that is admitted and not answered by a scripted answer is hit with
    probability `fault_rate` by one fault drawn uniformly from `faults` (see `ALL_FAULTS`), with
    ``random.Random(seed)``, so a sequential run is reproducible. `stall_seconds` is the pause of the
    ``"stall"`` fault. `finish_reason` forces that finish reason on every generated answer.

    Provider behaviours: `provider` is a mode or a list of modes from `tests.providers` (OpenAI's
    reasoning-model rules, Azure's URLs and header, llama.cpp's refusal of grammars, context windows),
    each documented there with the provider's own words.

    Embeddings (``/v1/embeddings``, `tests.fakeserver.embeddings`): `embedding_dimensions` is the vectors'
    size without ``dimensions`` (and the largest ``dimensions`` taken), `embedding_limits` the request
    limits (`EmbeddingLimits`: OpenAI's documented 2048 inputs, 8192 tokens each, 300,000 in all).

    Files and Batch APIs (``/v1/files``, ``/v1/batches``): the `batch_knobs` and the counters are
    `BatchAPI`'s (`batch_step_seconds`, `batch_hold`, `batch_expire`, `batch_line_errors`, `upload_delay`,
    `content_delay`, `content_chunk_lines`, `max_file_bytes`, `max_batch_requests`).

    Counters: `stats`, `reset_stats()`; for batches `uploads`, `batches_created`, `batch_lines_answered`,
    `batch(id)`, `file_content(id)`.

    Settings are plain attributes and may be changed while the server runs (read per request); changing
    `rpm`, `tpm` or `burst_seconds` starts fresh, full buckets.
    """

    _label = "FakeOpenAI"

    def __init__(
        self,
        *,
        reply: Callable[[LoggedRequest], str] | None = None,
        chunks: int = 20,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        include_usage: bool = True,
        api_key: str | None = None,
        model: str | None = None,
        sse_extras: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        rpm: float | None = None,
        tpm: float | None = None,
        burst_seconds: float = 1.0,
        ratelimit_headers: bool | str = "all",
        refund_unused: bool = False,
        fault_rate: float = 0.0,
        faults: Sequence[str] = ALL_FAULTS,
        seed: int = 0,
        stall_seconds: float = 2.0,
        finish_reason: str | None = None,
        provider: Any = (),
        embedding_dimensions: int = DEFAULT_DIMENSIONS,
        embedding_limits: EmbeddingLimits | None = None,
        **batch_knobs: Unpack[BatchKnobs],
    ) -> None:
        check_limits(rpm, tpm, burst_seconds, ratelimit_headers)
        self.faults: tuple[str, ...] = checked_faults(fault_rate, faults)
        super().__init__(host, port)
        self.reply: Callable[[LoggedRequest], str] = reply or default_reply
        self.chunks = chunks
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.include_usage = include_usage
        self.api_key = api_key
        self.model = model
        self.sse_extras = sse_extras
        self.verbose = verbose
        self.rpm = rpm
        self.tpm = tpm
        self.burst_seconds = burst_seconds
        self.ratelimit_headers = ratelimit_headers
        self.refund_unused = refund_unused
        self.fault_rate = fault_rate
        self.seed = seed
        self.stall_seconds = stall_seconds
        self.finish_reason = finish_reason
        self.provider: tuple[Any, ...] = (
            tuple(provider) if isinstance(provider, list | tuple) else (provider,)
        )
        self.embedding_dimensions = embedding_dimensions
        self.embedding_limits = embedding_limits or EmbeddingLimits()
        self._rng = random.Random(seed)
        self._accounts = Accounts()  # the buckets and the counters of `stats` and `charges`
        self._lock = threading.Lock()
        self._log: list[LoggedRequest] = []
        self._scripts: deque[Scripted] = deque()
        self._ids = itertools.count(1)
        self._init_batch_api(**batch_knobs)

    # ---- public state -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[LoggedRequest]:
        """A snapshot copy of every request received so far, in arrival order."""
        with self._lock:
            return list(self._log)

    @property
    def scripted_pending(self) -> int:
        """How many scripted answers are still waiting to be consumed."""
        with self._lock:
            return len(self._scripts)

    def script(self, *answers: Scripted) -> None:
        """Queue canned answers; each completion request consumes the oldest one before normal answers."""
        with self._lock:
            self._scripts.extend(answers)

    def completions_for(self, path: str) -> int:
        """How many logged requests hit `path`: ``"/v1/chat/completions"``, ``"chat/completions"`` and
        ``"/chat/completions"`` are the same endpoint (``"completions"`` is only the legacy one)."""
        if not path.startswith("/v1/"):
            path = "/v1/" + path.lstrip("/")
        with self._lock:
            return sum(1 for r in self._log if r.path == path)

    def clear(self) -> None:
        """Forget the logged requests and any unconsumed scripted answers."""
        with self._lock:
            self._log.clear()
            self._scripts.clear()

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters since start (or `reset_stats`):

        * ``admitted``: completion requests that passed the rate limiter and were charged (whatever the
          answer: scripted answers and injected faults count, except 429s, which are never charged);
        * ``rejected_429``: completion requests the rate limiter answered with 429 (injected or scripted
          429s are not counted here; ``LoggedRequest.status`` shows every 429);
        * ``tokens_charged``: tokens the token bucket was charged, net of refunds: prompt + reservation
          per admitted answer, or with `refund_unused` prompt + completion tokens per finished answer
          (prompt + reservation while it is in flight); counted even without a ``tpm`` limit;
        * ``first_admit``/``last_done``: ``time.monotonic()`` of the first admission and of the end of the
          latest finished admitted answer (None until then): the achieved rate is about
          ``admitted / (last_done - first_admit)``;
        * ``faults``: injected random faults, fault name -> count.
        """
        with self._lock:
            return self._accounts.stats()

    @property
    def charges(self) -> list[tuple[float, int, int]]:
        """The server's own account of its rate-limit buckets since start (or `reset_stats`), recorded
        while `rpm` or `tpm` is set: one ``(time.monotonic(), requests, tokens)`` entry per admission
        (``1, prompt + reservation``) and per refund or excess charge when an answer ends (``0, -refund``).
        Sums over a time window are what the server counted against its limits in that window."""
        with self._lock:
            return list(self._accounts.ledger)

    def reset_stats(self) -> None:
        """Zero the counters of `stats` and `charges` (the buckets, the log and the fault random sequence
        are kept)."""
        with self._lock:
            self._accounts.reset()

    # ---- answering ----------------------------------------------------------------------------------

    async def _respond(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        raw: bytes,
        writer: asyncio.StreamWriter,
        keep: bool,
    ) -> bool:
        """Answer one request; returns whether the connection may serve another one."""
        path, _, query = target.partition("?")
        data: Any = None
        bad_json = False
        if raw:
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                bad_json = True
        body = data if isinstance(data, dict) else None
        req = LoggedRequest(method, path, headers, body, time.monotonic(), query=query)
        with self._lock:
            self._log.append(req)
        if self.verbose:
            print(f"fakeserver: {method} {target}", file=sys.stderr, flush=True)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        return await routes.dispatch(routes.Exchange(self, writer, keep, req, path, headers, bad_json, raw))

    def _admit(self, cost: int) -> Admission:
        """The rate limiter, the scripted answer and the random fault of a completion request costing
        `cost` tokens, decided together, atomically: a request that must wait takes nothing; else it takes
        the oldest scripted answer, or may draw a fault, and is charged unless it is answered with a 429."""
        limited = self.rpm is not None or self.tpm is not None
        adm = Admission(headers_mode(self.ratelimit_headers))
        accounts = self._accounts
        with self._lock:
            now = time.monotonic() if limited or accounts.first_admit is None else 0.0
            if limited:
                accounts.sync(self.rpm, self.tpm, self.burst_seconds, now)
                adm.wait, adm.which = accounts.wait(cost)
            if not adm.wait:
                adm.scripted = self._scripts.popleft() if self._scripts else None
                if adm.scripted is None:
                    adm.fault, adm.reset_after = draw(self._rng, self.fault_rate, self.faults)
                    if adm.fault is not None:
                        accounts.fault_counts[adm.fault] = accounts.fault_counts.get(adm.fault, 0) + 1
                if adm.fault != "429" and not adm.scripted_429:
                    adm.charged = True
                    accounts.charge(cost, now, limited)
            if limited and adm.headers_mode != "none":
                adm.rl = accounts.headers()
        return adm

    def _finish(self, refund: int) -> None:
        """An admitted answer is over (see `Accounts.finish`); runs on the loop thread."""
        self._accounts.finish(
            refund, time.monotonic(), refund_unused=self.refund_unused, rpm=self.rpm, tpm=self.tpm
        )

    def _current_ratelimit_headers(self) -> dict[str, str] | None:
        """The x-ratelimit-* headers for a response that takes nothing from the buckets (None unless they
        go on every response)."""
        if headers_mode(self.ratelimit_headers) != "all" or (self.rpm is None and self.tpm is None):
            return None
        with self._lock:
            self._accounts.sync(self.rpm, self.tpm, self.burst_seconds, time.monotonic())
            return self._accounts.headers()

    async def _refuse(self, writer: asyncio.StreamWriter, status: int, message: str) -> None:
        await self._send_error(writer, status, message, None, keep=False)

    async def _send_error(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        message: str,
        code: str | None,
        *,
        keep: bool,
        param: str | None = None,
        log: LoggedRequest | None = None,
        headers: dict[str, str] | None = None,
    ) -> bool:
        type_ = "server_error" if status >= 500 else "invalid_request_error"
        if headers is None:
            headers = self._current_ratelimit_headers()
        return await self._send_json(
            writer, status, error_body(message, type_, code, param), keep, headers, log=log
        )

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: bytes | dict[str, Any],
        keep: bool,
        headers: dict[str, str] | None = None,
        *,
        log: LoggedRequest | None = None,
    ) -> bool:
        if log is not None:
            log.status = status
        return await http.write_json(writer, status, payload, keep, headers)


@dataclass(slots=True)
class Admission:
    """What `FakeOpenAI._admit` decided for one completion request: wait this long (429, `which` bucket),
    or go on with this scripted answer or fault (`reset_after`: the events a ``"reset"`` lets out), charged
    or not; `rl` the rate-limit headers for its answer, `headers_mode` where they go."""

    headers_mode: str
    wait: float = 0.0
    which: str = ""
    scripted: Scripted | None = None
    fault: str | None = None
    reset_after: int = 0
    charged: bool = False
    rl: dict[str, str] = field(default_factory=dict)

    @property
    def scripted_429(self) -> bool:
        return self.scripted is not None and self.scripted.status == 429
