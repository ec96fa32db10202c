"""A real loopback HTTP/1.1 server that speaks the OpenAI wire format, for tests and benchmarks.

`FakeOpenAI` runs its own asyncio event loop in a daemon thread, so one instance serves sync tests, async
tests (on any loop) and subprocesses alike::

    with FakeOpenAI(chunks=8) as server:
        httpx.post(f"{server.url}/chat/completions", json={"model": "m", "messages": [...]})
        assert server.completions_for("chat/completions") == 1

Endpoints (under ``/v1``): ``POST /chat/completions``, ``POST /completions`` (legacy), ``GET /models``;
anything else is a 404 with an OpenAI-style error body. Streaming answers are Server-Sent Events in a
chunked body, shaped like OpenAI's (role in the first delta, a final chunk with ``finish_reason``, an
optional ``choices: []`` usage chunk, then ``data: [DONE]``).

Order of checks for every request: it is logged first (`FakeOpenAI.requests`), then ``latency`` is slept,
then the API key (401), the route (404), the JSON body (400), the model (404 ``model_not_found``); then,
for the completion endpoints only, the rate limiter (429 when ``rpm``/``tpm`` are set and a bucket lacks
room), then a scripted answer is consumed, else a random fault may be drawn (``fault_rate``), else the
normal answer is produced.

Rate limits follow OpenAI's conventions: two token buckets (requests, tokens) refilling continuously, 429s
with ``retry-after``/``retry-after-ms``, and ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``
headers (durations in OpenAI's format, see `format_duration`/`parse_duration`). Two documented behaviours
are modes: the accounting (`refund_unused`: OpenAI charges prompt + ``max_tokens`` at admission and gives
nothing back, the default; or the unused part is given back when the answer ends) and where the headers
go (`ratelimit_headers`: every answer, only 429s, or none). See `FakeOpenAI` for the providers' words.

HTTP parsing is a small strict HTTP/1.1 parser on asyncio streams (keep-alive, pipelining, chunked or
Content-Length request bodies, ``Expect: 100-continue``); JSON goes through orjson and stream chunks are
built from byte templates, so the per-request cost stays low. Stdlib + orjson only.

Run by hand: ``python -m tests.fakeserver --port 8000 [--latency S] [--chunks N] ...`` prints its URL on
stderr and serves until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import math
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson

__all__ = [
    "ALL_FAULTS",
    "LoggedRequest",
    "Scripted",
    "FakeOpenAI",
    "default_reply",
    "schema_instance",
    "format_duration",
    "parse_duration",
    "main",
]

#: The fault classes `FakeOpenAI(fault_rate=...)` draws from (uniformly). A 400 is deliberately absent: it
#: is a permanent failure, not a transient one (script it with ``Scripted(status=400)``).
ALL_FAULTS: tuple[str, ...] = (
    "429",
    "500",
    "502",
    "503",
    "error_200",
    "reset",
    "cut",
    "malformed",
    "stall",
    "slow",
)

_HEAD_LIMIT = 64 * 1024  # request line + headers
_MAX_BODY = 64 * 1024 * 1024
_DEFAULT_MODEL = "fake-model"
_DEFAULT_MAX_TOKENS = 16  # what a request without max_tokens reserves from the token bucket
_FAULT_RETRY_MS = 5  # the retry-after-ms of an injected "429" fault
_SLOW_DELAY = 0.02  # the extra delay per chunk of an injected "slow" fault
_FILLER = (
    "this snippet takes its inputs, does the work its name describes and returns the result to its caller."
)


# --------------------------------------------------------------------------------------------------------
# public values


@dataclass(slots=True)
class LoggedRequest:
    """One request as the server received it (logged before it is answered).

    `path` has no query string; `headers` names are lower-case (repeated headers joined with ``", "``);
    `body` is the parsed JSON body when it was a JSON object, else None; `time` is ``time.monotonic()``
    when the request had been read completely. `status` is the HTTP status answered (0 until the answer
    is decided; it is set before the response is written, so it is final once the client has it).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    time: float
    status: int = 0
    query: str = ""  # the query string, without the "?"

    @property
    def prompt_text(self) -> str:
        """The user text: for chat, every message's text content joined with ``"\\n"`` (list-of-parts
        content contributes its ``text`` parts); for legacy completions, ``prompt`` (a list of strings
        joined with ``"\\n"``); ``""`` when there is none."""
        return _prompt_text(self.body)


@dataclass(slots=True)
class Scripted:
    """One canned answer; scripted answers are consumed FIFO by completion requests before normal answers.

    * ``status != 200`` or ``body is not None``: the answer is exactly ``status`` + ``headers`` + ``body``
      (a dict is JSON-encoded; ``None`` with an error status becomes a default OpenAI error body for that
      status). ``content-type`` defaults to ``application/json``; headers given here override defaults.
    * ``status == 200`` and ``body is None``: the normal generated answer, with ``headers`` added and the
      fault modes below applied.

    Fault modes (generated answers only):

    * `cut_after_chunks`: stream: send N SSE ``data:`` events, then close the connection mid-body (no
      ``[DONE]``, no chunked terminator). Non-stream: send the headers and half of the body, then close.
    * `malformed_chunk`: stream: one ``data: {not json`` event mid-stream (the stream otherwise completes).
      Non-stream: the body is ``{not json``.
    * `stall`: stream: after the first event, send nothing for this many seconds. Non-stream: the same
      pause between the response headers and the body.
    * `finish_reason`: report this finish reason (e.g. ``"length"``, ``"content_filter"``) instead of the
      computed one; ``"content_filter"`` also cuts the content to its first half (possibly empty).

    A scripted answer is never hit by a random fault. Under a rate limit it is charged like any admitted
    request (a scripted 429 costs nothing).
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | dict[str, Any] | None = None
    cut_after_chunks: int | None = None
    malformed_chunk: bool = False
    stall: float = 0.0
    finish_reason: str | None = None


def default_reply(req: LoggedRequest | str) -> str:
    """The default answer text: ``"Annotation " + sha256(prompt_text)[:12] + ": " + filler words``.

    Accepts a `LoggedRequest` or the prompt text itself, so tests can compute the expected answer for a
    prompt. The filler is fixed, so the text is long enough to be split into ~100 chunks.

    A request for structured output gets JSON instead, like a server that enforces the schema: a
    request with ``response_format`` ``json_schema`` gets an instance of that schema; with
    ``json_object``, or none, but a prompt ending in "... matching this schema:" and a schema (as
    snipstream's structured tasks write), an instance of the prompt's schema. Strings in it are
    ``"<field> <digest>"``.
    """
    text = req if isinstance(req, str) else req.prompt_text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    schema = None if isinstance(req, str) else _requested_schema(req.body, text)
    if schema is not None:
        return orjson.dumps(schema_instance(schema, digest)).decode()
    return f"Annotation {digest}: {_FILLER}"


_SCHEMA_IN_PROMPT = re.compile(r"matching this schema:\n(\{.*\})\s*\Z", re.S)


def _requested_schema(body: dict[str, Any] | None, prompt: str) -> dict[str, Any] | None:
    fmt = (body or {}).get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return schema
    m = _SCHEMA_IN_PROMPT.search(prompt)
    if m is None:
        return None
    try:
        schema = orjson.loads(m.group(1))
    except orjson.JSONDecodeError:
        return None
    return schema if isinstance(schema, dict) else None


def schema_instance(schema: dict[str, Any], digest: str, name: str = "value") -> Any:
    """A small value valid for `schema` (the subset of JSON Schema structured tasks use)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {key: schema_instance(sub, digest, key) for key, sub in props.items()}
    if kind == "array":
        count = max(2, int(schema.get("minItems", 0)))
        return [schema_instance(schema.get("items", {"type": "string"}), digest, name) for _ in range(count)]
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    return f"{name} {digest}"


def format_duration(seconds: float) -> str:
    """A duration in OpenAI's ``x-ratelimit-reset-*`` format (Go's ``time.Duration`` style, at millisecond
    resolution, rounded up): ``0s``, ``20ms``, ``1s``, ``8.64s``, ``1m30.5s``, ``6m0s``, ``2h0m0s``.
    Negative or NaN durations are ``0s``."""
    if not seconds > 0:
        return "0s"
    if math.isinf(seconds):
        raise ValueError("cannot format an infinite duration")
    ms = math.ceil(seconds * 1000 - 1e-6)  # up, but float noise (0.020000000000000004 s) stays 20ms
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, frac = divmod(rest, 1000)
    sec = f"{secs}.{frac:03d}".rstrip("0") if frac else str(secs)
    if hours:
        return f"{hours}h{minutes}m{sec}s"
    if minutes:
        return f"{minutes}m{sec}s"
    return f"{sec}s"


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|\u00b5s|\u03bcs|ns)")
_DURATION_FULL = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:h|ms|m|s|us|\u00b5s|\u03bcs|ns))+")
_DURATION_UNIT = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ns": 1e-9,
}


def parse_duration(text: str) -> float:
    """Seconds from an OpenAI/Go duration (``20ms``, ``1m30.5s``, ``2h0m0s``, ``500us``) or a plain number of
    seconds; raises ValueError for anything else."""
    t = text.strip()
    if _DURATION_FULL.fullmatch(t):
        return sum(float(value) * _DURATION_UNIT[unit] for value, unit in _DURATION_PART.findall(t))
    try:
        value = float(t)
    except ValueError:
        raise ValueError(f"not a duration: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a duration: {text!r}")
    return value


# --------------------------------------------------------------------------------------------------------
# helpers


class _Bucket:
    """A continuously refilling token bucket of `per_minute` (None = unlimited), holding `burst` seconds of
    refill (at least `minimum`). It may go into debt: an amount larger than the capacity is taken once the
    bucket is full, so such a request waits for the budget rather than forever."""

    __slots__ = ("per_minute", "burst", "rate", "capacity", "level", "stamp", "minimum")

    def __init__(self, minimum: float) -> None:
        self.minimum = minimum
        self.per_minute: float | None = None
        self.burst = 0.0
        self.rate = self.capacity = self.level = self.stamp = 0.0

    def sync(self, per_minute: float | None, burst: float, now: float) -> None:
        """Refill up to `now`; a changed limit starts a fresh, full bucket."""
        if per_minute != self.per_minute or burst != self.burst:
            self.per_minute, self.burst = per_minute, burst
            if per_minute is not None:
                self.rate = per_minute / 60.0
                self.capacity = max(self.minimum, self.rate * burst)
                self.level = self.capacity
        elif per_minute is not None:
            level = self.level + (now - self.stamp) * self.rate
            self.level = level if level < self.capacity else self.capacity
        self.stamp = now

    def wait(self, amount: float) -> float:
        """Seconds until `amount` can be taken (0 if now)."""
        need = amount if amount < self.capacity else self.capacity
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def give_back(self, amount: float, now: float) -> None:
        level = self.level + (now - self.stamp) * self.rate + amount
        self.level = level if level < self.capacity else self.capacity
        self.stamp = now

    def remaining(self) -> str:
        return str(int(self.level)) if self.level > 0 else "0"

    def reset(self) -> str:
        return format_duration((self.capacity - self.level) / self.rate)

    def limit(self) -> str:
        assert self.per_minute is not None
        return str(round(self.per_minute))


def _prompt_text(body: dict[str, Any] | None) -> str:
    if not isinstance(body, dict):
        return ""
    messages = body.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.append(
                    "".join(
                        p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
                    )
                )
        return "\n".join(parts)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    return ""


def _split(text: str, n: int) -> list[str]:
    """`text` in min(n, len(text)) non-empty pieces of near-equal length (n < 1 counts as 1)."""
    size = len(text)
    if size == 0:
        return []
    n = min(max(n, 1), size)
    q, r = divmod(size, n)
    pieces = []
    i = 0
    for k in range(n):
        j = i + q + (k < r)
        pieces.append(text[i:j])
        i = j
    return pieces


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to perform this request.", "invalid_request_error", "forbidden"),
    404: ("The requested resource does not exist.", "invalid_request_error", "not_found"),
    408: ("Request timed out.", "invalid_request_error", "timeout"),
    409: ("Conflict.", "invalid_request_error", "conflict"),
    413: ("Request too large.", "invalid_request_error", "request_too_large"),
    422: ("Unprocessable request.", "invalid_request_error", None),
    429: ("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


def _default_error(status: int) -> dict[str, Any]:
    message, type_, code = _DEFAULT_ERRORS.get(
        status, (_reason(status) + ".", "server_error" if status >= 500 else "invalid_request_error", None)
    )
    return _error_body(message, type_, code)


def _chunk(data: bytes) -> bytes:
    """One chunk of a chunked transfer-encoded body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


_TERMINATOR = b"0\r\n\r\n"
_HEADER_MODES = {True: "all", False: "none", "all": "all", "429": "429", "none": "none"}


def _headers_mode(value: bool | str) -> str:
    """`FakeOpenAI.ratelimit_headers` as one of ``"all"``, ``"429"``, ``"none"`` (a bool is accepted:
    True = all, False = none)."""
    try:
        return _HEADER_MODES[value]
    except (KeyError, TypeError):
        raise ValueError(f"ratelimit_headers must be 'all', '429', 'none' or a bool, not {value!r}") from None


_ROUTES = {
    ("POST", "/v1/chat/completions"): "chat",
    ("POST", "/v1/completions"): "text",
    ("GET", "/v1/models"): "models",
}
_NO_BODY_STATUSES = frozenset({204, 304})


class _Charge:
    """The settlement of an admitted answer that is written over time; `settle` calls `_finish` once,
    just before the last bytes of the answer are written (so a client that has the whole answer also sees
    any refund, see `FakeOpenAI.refund_unused`, in `stats` and in the next response's headers)."""

    __slots__ = ("server", "refund", "settled")

    def __init__(self, server: FakeOpenAI, refund: int) -> None:
        self.server = server
        self.refund = refund
        self.settled = False

    def settle(self) -> None:
        if not self.settled:
            self.settled = True
            self.server._finish(self.refund)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------------------------------------
# the server


class FakeOpenAI:
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
    `_DEFAULT_MAX_TOKENS` = 16 when absent; prompt tokens = whitespace-separated words of the prompt text).
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

    Counters: `stats`, `reset_stats()`.

    Settings are plain attributes and may be changed while the server runs (read per request); changing
    `rpm`, `tpm` or `burst_seconds` starts fresh, full buckets.
    """

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
    ) -> None:
        for name, limit in (("rpm", rpm), ("tpm", tpm)):
            if limit is not None and not limit > 0:
                raise ValueError(f"{name} must be positive or None, not {limit!r}")
        if not burst_seconds > 0:
            raise ValueError(f"burst_seconds must be positive, not {burst_seconds!r}")
        _headers_mode(ratelimit_headers)  # raises on an unknown mode
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], not {fault_rate!r}")
        faults = tuple(faults)
        unknown = [f for f in faults if f not in ALL_FAULTS]
        if unknown or (fault_rate > 0 and not faults):
            raise ValueError(f"unknown fault(s) {unknown!r}; choose from {ALL_FAULTS!r}")
        self.reply: Callable[[LoggedRequest], str] = reply or default_reply
        self.chunks = chunks
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.include_usage = include_usage
        self.api_key = api_key
        self.model = model
        self.sse_extras = sse_extras
        self.host = host
        self.verbose = verbose
        self.rpm = rpm
        self.tpm = tpm
        self.burst_seconds = burst_seconds
        self.ratelimit_headers = ratelimit_headers
        self.refund_unused = refund_unused
        self.fault_rate = fault_rate
        self.faults: tuple[str, ...] = faults
        self.seed = seed
        self.stall_seconds = stall_seconds
        self.finish_reason = finish_reason
        self.provider: tuple[Any, ...] = tuple(provider) if isinstance(provider, list | tuple) else (provider,)
        self._rng = random.Random(seed)
        self._rb = _Bucket(1.0)  # requests
        self._tb = _Bucket(1.0)  # tokens
        self._admitted = 0
        self._rejected = 0
        self._tokens_charged = 0  # gross: reservations at admission (minus the baseline, see reset_stats)
        self._refunded = 0  # given back since start (written on the loop thread only)
        # (monotonic time, requests, tokens) taken from (or, negative, given back to) the buckets, while a
        # limit is set: the server's own account, for measuring the rate it was held to (`charges`)
        self._ledger: list[tuple[float, int, int]] = []
        self._first_admit: float | None = None
        self._last_done: float | None = None
        self._fault_counts: dict[str, int] = {}
        self._want_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._log: list[LoggedRequest] = []
        self._scripts: deque[Scripted] = deque()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # ---- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        """Bind and start serving; returns self once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI is already running")
        self._closing = False
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                try:
                    self._server = loop.run_until_complete(
                        asyncio.start_server(
                            self._handle, self.host, self._want_port, limit=_HEAD_LIMIT, backlog=4096
                        )
                    )
                    self._port = self._server.sockets[0].getsockname()[1]
                except BaseException as exc:  # reported to start()
                    failure.append(exc)
                    return
                ready.set()
                loop.run_forever()
            finally:
                try:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.run_until_complete(loop.shutdown_default_executor())
                finally:
                    asyncio.set_event_loop(None)
                    loop.close()
                    ready.set()

        thread = threading.Thread(target=run, name="FakeOpenAI", daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            self._loop = self._thread = self._server = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving: close the listener and every connection (in-flight answers are cut), then end
        the loop thread. Idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            if not loop.is_closed():
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=30)
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            self._thread = self._loop = self._server = None
            self._port = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        me = asyncio.current_task()
        cancelled: set[asyncio.Task[Any]] = set()
        for _ in range(1000):
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()
            for task in list(self._tasks):
                if task not in cancelled:
                    cancelled.add(task)
                    task.cancel()
            pending = [t for t in asyncio.all_tasks() if t is not me]
            if not pending and not self._writers:
                break
            if pending:
                await asyncio.wait(pending, timeout=0.02)
            else:
                await asyncio.sleep(0)
        if self._server is not None:
            await self._server.wait_closed()
        for _ in range(3):  # let the transports' scheduled connection_lost callbacks close the sockets
            await asyncio.sleep(0)

    # ---- public state -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (only while running)."""
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not running; call start() first")
        return self._port

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
            return {
                "admitted": self._admitted,
                "rejected_429": self._rejected,
                "tokens_charged": self._tokens_charged - self._refunded,
                "first_admit": self._first_admit,
                "last_done": self._last_done,
                "faults": dict(self._fault_counts),
            }

    @property
    def charges(self) -> list[tuple[float, int, int]]:
        """The server's own account of its rate-limit buckets since start (or `reset_stats`), recorded
        while `rpm` or `tpm` is set: one ``(time.monotonic(), requests, tokens)`` entry per admission
        (``1, prompt + reservation``) and per refund or excess charge when an answer ends (``0, -refund``).
        Sums over a time window are what the server counted against its limits in that window."""
        with self._lock:
            return list(self._ledger)

    def reset_stats(self) -> None:
        """Zero the counters of `stats` and `charges` (the buckets, the log and the fault random sequence
        are kept)."""
        with self._lock:
            self._admitted = self._rejected = 0
            self._tokens_charged = self._refunded  # so that tokens_charged - refunded starts at 0
            self._first_admit = self._last_done = None
            self._fault_counts = {}
            self._ledger = []

    # ---- connection handling ------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (Exception, asyncio.CancelledError):
            # client went away, bad request framing, shutdown, ...: the connection just ends.
            # (Never propagate: asyncio's client_connected_cb callback would log it as unhandled.)
            pass
        finally:
            self._tasks.discard(task)
            transport = writer.transport
            if not transport.is_closing():
                transport.close()
            if transport.get_write_buffer_size() == 0:
                self._writers.discard(writer)
            # else: still flushing to a slow reader; stop() aborts it if it is still there.

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # EOF between requests (or mid-head: nothing sensible to answer)
            except asyncio.LimitOverrunError:
                await self._send_error(writer, 431, "Request header fields too large.", None, keep=False)
                return
            try:
                method, target, headers, keep, body = await self._read_request(head, reader, writer)
            except _BadRequest as exc:
                await self._send_error(writer, exc.status, exc.message, None, keep=False)
                return
            if method is None:
                continue  # stray CRLFs between requests
            keep = await self._respond(method, target, headers, body, writer, keep)
            if not keep:
                return

    async def _read_request(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Any, str, dict[str, str], bool, bytes]:
        text = head.decode("latin-1").lstrip("\r\n")
        if not text.strip():
            return None, "", {}, True, b""
        request_line, _, rest = text[:-4].partition("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[0].isalpha():
            raise _BadRequest(400, "Malformed request line.")
        method, target, version = parts
        headers: dict[str, str] = {}
        if rest:
            for line in rest.split("\r\n"):
                name, sep, value = line.partition(":")
                if not sep or not name or name[-1] in " \t" or name[0] in " \t":
                    raise _BadRequest(400, "Malformed header line.")
                name = name.lower()
                value = value.strip(" \t")
                if name in headers:
                    headers[name] += ", " + value
                else:
                    headers[name] = value
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            keep = "close" not in connection
        else:
            keep = "keep-alive" in connection

        te = headers.get("transfer-encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise _BadRequest(501, "Unsupported transfer-encoding.")
            if "content-length" in headers:
                keep = False
            self._maybe_continue(headers, writer)
            body = await self._read_chunked(reader)
        else:
            cl = headers.get("content-length")
            if cl is None:
                body = b""
            else:
                values = {v.strip() for v in cl.split(",")}
                if len(values) != 1 or not (n := values.pop()).isdigit():
                    raise _BadRequest(400, "Invalid content-length.")
                size = int(n)
                if size > _MAX_BODY:
                    raise _BadRequest(413, "Request body too large.")
                if size:
                    self._maybe_continue(headers, writer)
                    body = await reader.readexactly(size)
                else:
                    body = b""
        if target.startswith(("http://", "https://")):  # absolute-form
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        return method, target, headers, keep, body

    @staticmethod
    def _maybe_continue(headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line[:-2].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _BadRequest(400, "Malformed chunk size.") from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > _MAX_BODY:
                raise _BadRequest(413, "Request body too large.")
            data = await reader.readexactly(size + 2)
            if data[-2:] != b"\r\n":
                raise _BadRequest(400, "Malformed chunk.")
            parts.append(data[:-2])

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
        path = target.partition("?")[0]
        data: Any = None
        bad_json = False
        if raw:
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                bad_json = True
        body = data if isinstance(data, dict) else None
        req = LoggedRequest(method, path, headers, body, time.monotonic(), query=target.partition("?")[2])
        with self._lock:
            self._log.append(req)
        if self.verbose:
            print(f"fakeserver: {method} {target}", file=sys.stderr, flush=True)
        if self.latency > 0:
            await asyncio.sleep(self.latency)

        for mode in self.provider:  # provider modes (tests/providers.py) may route or refuse first
            routed = mode.route(method, path, req.query, headers)
            if not isinstance(routed, tuple):
                req.status = routed.status
                return await self._send_json(writer, routed.status, routed.body, keep, None)
            path, headers = routed

        if self.api_key is not None and not self._authorized(headers):
            if "authorization" in headers:
                message = (
                    "Incorrect API key provided. You can find your API key at "
                    "https://platform.openai.com/account/api-keys."
                )
            else:
                message = (
                    "You didn't provide an API key. You need to provide your API key in an Authorization "
                    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                )
            return await self._send_error(writer, 401, message, "invalid_api_key", keep=keep, log=req)

        kind = _ROUTES.get((method, path))
        if kind is None:
            return await self._send_error(
                writer, 404, f"Invalid URL ({method} {path})", "unknown_url", keep=keep, log=req
            )
        if kind == "models":
            model_obj = {
                "id": self.model or _DEFAULT_MODEL,
                "object": "model",
                "created": 1700000000,
                "owned_by": "fakeserver",
            }
            return await self._send_json(
                writer,
                200,
                {"object": "list", "data": [model_obj]},
                keep,
                self._current_ratelimit_headers(),
                log=req,
            )

        # completion endpoints
        if bad_json or body is None:
            return await self._send_error(
                writer,
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The OpenAI API expects a JSON payload.)",
                None,
                keep=keep,
                log=req,
            )
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return await self._send_error(
                writer, 400, "You must provide a model parameter.", None, keep=keep, param="model", log=req
            )
        if kind == "chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return await self._send_error(
                    writer,
                    400,
                    "'messages' is a required property and must be a non-empty array.",
                    None,
                    keep=keep,
                    param="messages",
                    log=req,
                )
        else:
            prompt = body.get("prompt", "")
            if not isinstance(prompt, (str, list)):
                return await self._send_error(
                    writer,
                    400,
                    "'prompt' must be a string or an array of strings.",
                    None,
                    keep=keep,
                    param="prompt",
                    log=req,
                )
        if self.model is not None and model != self.model:
            return await self._send_error(
                writer,
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "model_not_found",
                keep=keep,
                param="model",
                log=req,
            )

        # rate limiter, scripted answer, random fault: decided together, atomically
        prompt_tokens = len(req.prompt_text.split())
        for mode in self.provider:  # a 400 the provider gives before admitting the request
            refusal = mode.refuse(kind, body, prompt_tokens)
            if refusal is not None:
                req.status = refusal.status
                return await self._send_json(
                    writer, refusal.status, refusal.body, keep, self._current_ratelimit_headers()
                )
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
            max_tokens = None
        reserve = _DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        cost = prompt_tokens + reserve
        limited = self.rpm is not None or self.tpm is not None
        rl: dict[str, str] = {}
        scripted: Scripted | None = None
        fault: str | None = None
        reset_after = 0
        wait = 0.0
        which = ""
        charged = False
        headers_mode = _headers_mode(self.ratelimit_headers)
        with self._lock:
            now = time.monotonic() if limited or self._first_admit is None else 0.0
            if limited:
                rb, tb = self._rb, self._tb
                rb.sync(self.rpm, self.burst_seconds, now)
                tb.sync(self.tpm, self.burst_seconds, now)
                wait_r = rb.wait(1) if rb.per_minute is not None else 0.0
                wait_t = tb.wait(cost) if tb.per_minute is not None else 0.0
                if wait_r > 0 or wait_t > 0:
                    wait, which = (wait_r, "requests") if wait_r >= wait_t else (wait_t, "tokens")
                    self._rejected += 1
            if not wait:
                scripted = self._scripts.popleft() if self._scripts else None
                if scripted is None and self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                    fault = self._rng.choice(self.faults)
                    self._fault_counts[fault] = self._fault_counts.get(fault, 0) + 1
                    if fault == "reset":
                        reset_after = self._rng.randint(1, 2)
                if fault != "429" and (scripted is None or scripted.status != 429):
                    charged = True
                    if limited:
                        if rb.per_minute is not None:
                            rb.level -= 1
                        if tb.per_minute is not None:
                            tb.level -= cost
                        self._ledger.append((now, 1, cost))
                    self._admitted += 1
                    self._tokens_charged += cost
                    if self._first_admit is None:
                        self._first_admit = now
            if limited and headers_mode != "none":
                rl = self._ratelimit_headers()
        if wait:
            return await self._send_rate_limited(writer, req, model, which, wait, cost, rl, keep)
        if fault == "429":
            return await self._send_fault_429(writer, req, rl, keep)
        if headers_mode == "429" and (scripted is None or scripted.status != 429):
            rl = {}  # the headers go on refusals only

        # An admitted answer settles its charge (`_finish`: with `refund_unused`, `reserve - completion`
        # tokens go back) right before its last bytes are written: inline when it is written at once,
        # else through a `_Charge` (`charge`).
        completion = 0
        charge: _Charge | None = None
        try:
            extra_headers: dict[str, str] = rl
            if scripted is not None:
                if scripted.headers:
                    extra_headers = rl | {k.lower(): v for k, v in scripted.headers.items()}
                if "close" in extra_headers.get("connection", "").lower():
                    keep = False
                if scripted.status != 200 or scripted.body is not None:
                    req.status = scripted.status
                    if charged:
                        charged = False
                        self._finish(reserve)
                    return await self._send_scripted(writer, scripted, extra_headers, keep)
            if fault is not None and fault[0] == "5":
                req.status = status = int(fault)
                if charged:
                    charged = False
                    self._finish(reserve)
                return await self._send_json(writer, status, _default_error(status), keep, rl)
            stream = body.get("stream") is True
            if fault == "error_200":
                req.status = 200
                if charged:
                    charged = False
                    self._finish(reserve)
                return await self._send_error_200(writer, stream, rl, keep)

            try:
                text = self.reply(req)
                if not isinstance(text, str):
                    raise TypeError(f"reply() returned {type(text).__name__}, not str")
            except Exception as exc:
                if charged:
                    charged = False
                    self._finish(reserve)
                return await self._send_error(
                    writer, 500, f"fakeserver reply() failed: {exc!r}", None, keep=keep, log=req, headers=rl
                )

            pieces = _split(text, self.chunks)
            finish: str | None = "stop"
            if max_tokens is not None and len(pieces) > max_tokens:
                pieces = pieces[:max_tokens]
                finish = "length"
            forced = (scripted.finish_reason if scripted is not None else None) or self.finish_reason
            if forced:
                finish = forced
                if forced == "content_filter":
                    pieces = pieces[: len(pieces) // 2]
            if fault == "cut" and not stream:
                pieces = pieces[: len(pieces) // 2]
                finish = None
            completion = len(pieces)
            usage: dict[str, Any] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            }
            for mode in self.provider:  # e.g. reasoning tokens spent out of the answer's budget
                pieces, finish, usage = mode.shape(body, pieces, finish, usage)
                completion = usage["completion_tokens"]
            if fault == "reset":
                completion = min(completion, reset_after) if stream else 0  # what gets out
            if charged and (scripted is not None or fault is not None or (stream and self.chunk_delay > 0)):
                charged = False
                charge = _Charge(self, reserve - completion)
            n = next(self._ids)
            rid = f"chatcmpl-{n}" if kind == "chat" else f"cmpl-{n}"
            created = int(time.time())
            headers_out = {"x-request-id": f"req_{n}"}
            if extra_headers:
                headers_out |= extra_headers
            req.status = 200

            if stream:
                options = body.get("stream_options")
                want_usage = (
                    self.include_usage and isinstance(options, dict) and options.get("include_usage") is True
                )
                events = self._stream_events(
                    kind, rid, created, model, pieces, finish or "stop", usage if want_usage else None
                )
                if scripted is None and fault is None:
                    if charged:
                        charged = False
                        self._finish(reserve - completion)
                    return await self._send_stream(writer, events, headers_out, keep, charge=charge)
                if scripted is not None:
                    return await self._send_stream(
                        writer,
                        events,
                        headers_out,
                        keep,
                        malformed=scripted.malformed_chunk,
                        cut=scripted.cut_after_chunks,
                        stall=scripted.stall,
                        charge=charge,
                    )
                if fault == "reset":
                    return await self._send_stream(
                        writer, events, headers_out, keep, cut=reset_after, ending="rst", charge=charge
                    )
                if fault == "cut":
                    tail = 2 if want_usage else 1  # the finish_reason chunk (and the usage chunk)
                    return await self._send_stream(
                        writer,
                        events,
                        headers_out,
                        keep,
                        cut=len(events) - tail,
                        ending="clean",
                        charge=charge,
                    )
                return await self._send_stream(
                    writer,
                    events,
                    headers_out,
                    keep,
                    malformed=fault == "malformed",
                    stall=self.stall_seconds if fault == "stall" else 0.0,
                    slow=fault == "slow",
                    charge=charge,
                )

            if kind == "chat":
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(pieces), "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
                obj = "chat.completion"
            else:
                choice = {"text": "".join(pieces), "index": 0, "logprobs": None, "finish_reason": finish}
                obj = "text_completion"
            answer: dict[str, Any] = {
                "id": rid,
                "object": obj,
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [choice],
            }
            if self.include_usage:
                answer["usage"] = usage
            payload = orjson.dumps(answer)
            if scripted is None and fault in (None, "cut"):
                if charged:
                    charged = False
                    self._finish(reserve - completion)
                elif charge is not None:
                    charge.settle()
                return await self._send_json(writer, 200, payload, keep, headers_out)
            if scripted is not None:
                cut = scripted.cut_after_chunks is not None
                return await self._send_faulty_json(
                    writer,
                    payload,
                    headers_out,
                    keep,
                    malformed=scripted.malformed_chunk,
                    stall=scripted.stall,
                    ending="fin" if cut else "",
                    charge=charge,
                )
            return await self._send_faulty_json(
                writer,
                payload,
                headers_out,
                keep,
                malformed=fault == "malformed",
                stall=self.stall_seconds if fault == "stall" else 0.0,
                slow=fault == "slow",
                ending="rst" if fault == "reset" else "",
                charge=charge,
            )
        finally:  # the client went away mid-answer, or an unexpected error
            if charged:
                self._finish(reserve - completion)
            elif charge is not None:
                charge.settle()

    def _finish(self, refund: int) -> None:
        """An admitted answer is over: `refund` is its reservation minus what it used. With
        `refund_unused` the unused part goes back to the token bucket; without it (OpenAI's accounting)
        the admission charge stands. An excess (negative `refund`: an answer longer than the default
        reservation of a request without ``max_tokens``) is charged either way.

        Runs on the loop thread, without the lock: the buckets are only touched on the loop thread, and
        `_refunded` is only written here (`reset_stats` moves a baseline instead of zeroing it)."""
        now = time.monotonic()
        self._last_done = now
        if refund < 0 or (refund and self.refund_unused):
            self._refunded += refund
            tb = self._tb
            if tb.per_minute is not None and tb.per_minute == self.tpm:
                tb.give_back(refund, now)
            if self.rpm is not None or self.tpm is not None:
                self._ledger.append((now, 0, -refund))

    def _ratelimit_headers(self) -> dict[str, str]:
        """The x-ratelimit-* headers for the buckets as they are (call with the lock held, after sync)."""
        rb, tb = self._rb, self._tb
        h: dict[str, str] = {}
        if rb.per_minute is not None:
            h["x-ratelimit-limit-requests"] = rb.limit()
        if tb.per_minute is not None:
            h["x-ratelimit-limit-tokens"] = tb.limit()
        if rb.per_minute is not None:
            h["x-ratelimit-remaining-requests"] = rb.remaining()
        if tb.per_minute is not None:
            h["x-ratelimit-remaining-tokens"] = tb.remaining()
        if rb.per_minute is not None:
            h["x-ratelimit-reset-requests"] = rb.reset()
        if tb.per_minute is not None:
            h["x-ratelimit-reset-tokens"] = tb.reset()
        return h

    def _current_ratelimit_headers(self) -> dict[str, str] | None:
        """The x-ratelimit-* headers for a response that takes nothing from the buckets (None unless they
        go on every response)."""
        if _headers_mode(self.ratelimit_headers) != "all" or (self.rpm is None and self.tpm is None):
            return None
        with self._lock:
            now = time.monotonic()
            self._rb.sync(self.rpm, self.burst_seconds, now)
            self._tb.sync(self.tpm, self.burst_seconds, now)
            return self._ratelimit_headers()

    async def _send_rate_limited(
        self,
        writer: asyncio.StreamWriter,
        req: LoggedRequest,
        model: str,
        which: str,
        wait: float,
        cost: int,
        rl: dict[str, str],
        keep: bool,
    ) -> bool:
        bucket = self._rb if which == "requests" else self._tb
        limit = bucket.limit()
        used = max(0, round(bucket.capacity - bucket.level))
        kind = "requests per min (RPM)" if which == "requests" else "tokens per min (TPM)"
        message = (
            f"Rate limit reached for {model} in organization org-fakeserver on {kind}: Limit {limit}, "
            f"Used {used}, Requested {1 if which == 'requests' else cost}. Please try again in "
            f"{format_duration(wait)}. Visit https://platform.openai.com/account/rate-limits to learn more."
        )
        ms = max(1, math.ceil(wait * 1000 - 1e-6))
        headers = {"retry-after": str(math.ceil(ms / 1000)), "retry-after-ms": str(ms)} | rl
        req.status = 429
        return await self._send_json(
            writer, 429, _error_body(message, which, "rate_limit_exceeded"), keep, headers
        )

    async def _send_fault_429(
        self, writer: asyncio.StreamWriter, req: LoggedRequest, rl: dict[str, str], keep: bool
    ) -> bool:
        headers = {"retry-after": "1", "retry-after-ms": str(_FAULT_RETRY_MS)}
        if _headers_mode(self.ratelimit_headers) != "none":
            headers |= rl
            headers["x-ratelimit-remaining-requests"] = "0"
            headers["x-ratelimit-reset-requests"] = format_duration(_FAULT_RETRY_MS / 1000)
        req.status = 429
        return await self._send_json(writer, 429, _default_error(429), keep, headers)

    async def _send_error_200(
        self, writer: asyncio.StreamWriter, stream: bool, headers: dict[str, str], keep: bool
    ) -> bool:
        """A 200 whose body is an error object; for a stream, one ``data: {"error": ...}`` event, then the
        body ends (no [DONE])."""
        error = orjson.dumps(_default_error(500))
        if not stream:
            return await self._send_json(writer, 200, error, keep, headers)
        nl = b"\r\n" if self.sse_extras else b"\n"
        return await self._send_stream(writer, [b"data: " + error + nl + nl], headers, keep, ending="clean")

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        assert self.api_key is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("latin-1"), self.api_key.encode("utf-8")
        )

    def _stream_events(
        self,
        kind: str,
        rid: str,
        created: int,
        model: str,
        pieces: list[str],
        finish: str,
        usage: dict[str, int] | None,
    ) -> list[bytes]:
        """The SSE events of one streamed answer, [DONE] excluded; each item holds exactly one data line."""
        extras = self.sse_extras
        nl = b"\r\n" if extras else b"\n"
        end = nl + nl
        obj = b"chat.completion.chunk" if kind == "chat" else b"text_completion"
        head = (
            b'data: {"id":"%s","object":"%s","created":%d,"model":%s,'
            b'"system_fingerprint":"fp_fake","choices":'
        ) % (rid.encode(), obj, created, orjson.dumps(model))
        tail = (b',"usage":null}' if usage is not None else b"}") + end
        events: list[bytes] = []
        if extras:
            events.append(b": keep-alive" + end + head + b"[]" + tail)
        if kind == "chat":
            first = b'[{"index":0,"delta":{"role":"assistant","content":'
            pre = b'[{"index":0,"delta":{"content":'
            post = b'},"logprobs":null,"finish_reason":null}]'
            if not pieces:
                events.append(head + first + b'""' + post + tail)
            for i, piece in enumerate(pieces):
                events.append(head + (pre if i else first) + orjson.dumps(piece) + post + tail)
            final = b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":"%s"}]' % finish.encode()
        else:
            pre = b'[{"text":'
            post = b',"index":0,"logprobs":null,"finish_reason":null}]'
            for piece in pieces:
                events.append(head + pre + orjson.dumps(piece) + post + tail)
            final = b'[{"text":"","index":0,"logprobs":null,"finish_reason":"%s"}]' % finish.encode()
        events.append(head + final + tail)
        if usage is not None:
            events.append(head + b'[],"usage":' + orjson.dumps(usage) + b"}" + end)
        if extras:
            first_content = 1
            events[first_content] = b"event: message" + nl + events[first_content]
            middle = len(events) // 2
            if middle > first_content:
                events[middle] = b": keep-alive" + end + events[middle]
        return events

    async def _send_stream(
        self,
        writer: asyncio.StreamWriter,
        events: list[bytes],
        headers: dict[str, str],
        keep: bool,
        *,
        malformed: bool = False,
        cut: int | None = None,
        stall: float = 0.0,
        slow: bool = False,
        ending: str = "",
        charge: _Charge | None = None,
    ) -> bool:
        """Send SSE `events` as a chunked 200. `malformed` inserts a ``data: {not json`` event mid-stream;
        `cut` keeps only the first N events; `stall` pauses after the first event; `slow` delays every
        event (and [DONE]) by 20 ms more. `ending`: ``""`` = ``data: [DONE]`` + terminator, or only
        ``"fin"`` (after `cut`: close, no terminator) when `cut` is given; ``"clean"`` = terminator without
        [DONE]; ``"rst"`` = abort the connection with a TCP reset. `charge` is settled just before the
        last bytes are written."""
        nl = b"\r\n" if self.sse_extras else b"\n"
        if malformed:
            events.insert(max(1, len(events) // 2), b"data: {not json" + nl + nl)
        if cut is not None:
            events = events[: max(cut, 0)]
            if not ending:
                ending = "fin"
        base = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        head = self._head(200, base | headers | {"transfer-encoding": "chunked"}, keep)
        done = b"" if ending else _chunk(b"data: [DONE]" + nl + nl)
        delay = self.chunk_delay
        if slow:
            delay += _SLOW_DELAY
        if delay <= 0 and not stall and ending in ("", "clean"):
            if charge is not None:
                charge.settle()
            writer.write(head + b"".join([_chunk(e) for e in events]) + done + _TERMINATOR)
            await writer.drain()
            return keep
        if slow:
            await asyncio.sleep(_SLOW_DELAY)
        writer.write(head)
        await writer.drain()
        last = len(events) - 1
        for i, event in enumerate(events):
            if (i or slow) and delay > 0:
                await asyncio.sleep(delay)
            if i == last and ending in ("fin", "rst") and charge is not None:
                charge.settle()
            writer.write(_chunk(event))
            await writer.drain()
            if i == 0 and stall:
                await asyncio.sleep(stall)
        if charge is not None:
            charge.settle()
        if ending == "fin":
            writer.close()  # FIN after the buffered data: the chunked body never ends
            return False
        if ending == "rst":
            await self._reset(writer)
            return False
        if delay > 0:
            await asyncio.sleep(delay)
        writer.write(done + _TERMINATOR)
        await writer.drain()
        return keep

    async def _send_faulty_json(
        self,
        writer: asyncio.StreamWriter,
        payload: bytes,
        headers: dict[str, str],
        keep: bool,
        *,
        malformed: bool = False,
        stall: float = 0.0,
        slow: bool = False,
        ending: str = "",
        charge: _Charge | None = None,
    ) -> bool:
        """A non-stream 200: `malformed` makes the body ``{not json``; `stall` pauses between the headers
        and the body; `slow` delays the answer by 20 ms; `ending` ``"fin"``/``"rst"`` sends half the body,
        then closes the connection (FIN) or resets it (RST)."""
        if malformed:
            payload = b"{not json"
        if slow:
            await asyncio.sleep(_SLOW_DELAY)
        if not ending and not stall:
            if charge is not None:
                charge.settle()
            return await self._send_json(writer, 200, payload, keep, headers)
        all_headers = {"content-type": "application/json"} | headers | {"content-length": str(len(payload))}
        writer.write(self._head(200, all_headers, keep))
        await writer.drain()
        if stall:
            await asyncio.sleep(stall)
        if charge is not None:
            charge.settle()
        if ending:
            writer.write(payload[: len(payload) // 2])
            await writer.drain()
            if ending == "rst":
                await self._reset(writer)
            else:
                writer.close()
            return False
        writer.write(payload)
        await writer.drain()
        return keep

    @staticmethod
    async def _reset(writer: asyncio.StreamWriter) -> None:
        """Abort the connection with a TCP RST once what was written has left the process."""
        transport = writer.transport
        for _ in range(200):
            if transport.is_closing() or transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.005)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()

    async def _send_scripted(
        self, writer: asyncio.StreamWriter, scripted: Scripted, headers: dict[str, str], keep: bool
    ) -> bool:
        body = scripted.body
        if body is None:
            payload = b"" if scripted.status < 300 else orjson.dumps(_default_error(scripted.status))
        elif isinstance(body, (bytes, bytearray, memoryview)):
            payload = bytes(body)
        else:
            payload = orjson.dumps(body)
        return await self._send_json(writer, scripted.status, payload, keep, headers)

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
            writer, status, _error_body(message, type_, code, param), keep, headers, log=log
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
        if not isinstance(payload, bytes):
            payload = orjson.dumps(payload)
        all_headers = {"content-type": "application/json"}
        if headers:
            all_headers |= headers
        all_headers.pop("transfer-encoding", None)
        if status in _NO_BODY_STATUSES or 100 <= status < 200:
            payload = b""
            all_headers.pop("content-length", None)
        else:
            all_headers["content-length"] = str(len(payload))
        writer.write(self._head(status, all_headers, keep) + payload)
        await writer.drain()
        return keep

    @staticmethod
    def _head(status: int, headers: dict[str, str], keep: bool) -> bytes:
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines.extend(f"{k}: {v}" for k, v in headers.items() if k != "connection")
        if not keep:
            lines.append("connection: close")
        elif "connection" in headers:
            lines.append(f"connection: {headers['connection']}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


# --------------------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.fakeserver``: serve until Ctrl-C/SIGTERM; the URL is the first line on stderr."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakeserver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 = any free port (default 8000)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each response starts")
    parser.add_argument("--chunks", type=int, default=20, help="pieces per answer (default 20)")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between stream events")
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    parser.add_argument("--model", default=None, help="accept only this model")
    parser.add_argument("--no-usage", action="store_true", help="never report token usage")
    parser.add_argument("--sse-extras", action="store_true", help="comments, event lines, CRLF in streams")
    parser.add_argument("-v", "--verbose", action="store_true", help="print one line per request")
    parser.add_argument("--rpm", type=float, default=None, help="enforce this many requests per minute")
    parser.add_argument("--tpm", type=float, default=None, help="enforce this many tokens per minute")
    parser.add_argument(
        "--burst-seconds",
        type=float,
        default=1.0,
        help="seconds of refill the rate-limit buckets hold (default 1)",
    )
    parser.add_argument(
        "--ratelimit-headers",
        choices=("all", "429", "none"),
        default="all",
        help="where x-ratelimit-* headers go: every response (default), only 429s, or nowhere",
    )
    parser.add_argument(
        "--no-ratelimit-headers",
        action="store_true",
        help="send no x-ratelimit-* headers (= --ratelimit-headers none)",
    )
    parser.add_argument(
        "--refund-unused",
        action="store_true",
        help="give the unused part of max_tokens back to the token bucket when an answer ends "
        "(default: OpenAI's accounting, the admission charge stands)",
    )
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a random fault")
    parser.add_argument(
        "--faults", default=",".join(ALL_FAULTS), help="comma-separated faults to draw from (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument("--stall-seconds", type=float, default=2.0, help="pause of the 'stall' fault")
    parser.add_argument("--finish-reason", default=None, help="force this finish_reason on every answer")
    from tests.providers import MODE_NAMES, modes_from_names

    parser.add_argument(
        "--provider",
        action="append",
        default=[],
        choices=MODE_NAMES,
        help="behave as a provider documents (repeatable; see tests/providers.py); azure takes --api-key "
        "as its api-key header",
    )
    parser.add_argument("--n-ctx", type=int, default=4096, help="context size of the context-* modes")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    server = FakeOpenAI(
        chunks=args.chunks,
        latency=args.latency,
        chunk_delay=args.chunk_delay,
        include_usage=not args.no_usage,
        api_key=args.api_key,
        model=args.model,
        sse_extras=args.sse_extras,
        host=args.host,
        port=args.port,
        verbose=args.verbose,
        rpm=args.rpm,
        tpm=args.tpm,
        burst_seconds=args.burst_seconds,
        ratelimit_headers="none" if args.no_ratelimit_headers else args.ratelimit_headers,
        refund_unused=args.refund_unused,
        fault_rate=args.fault_rate,
        faults=[f for f in args.faults.split(",") if f],
        seed=args.seed,
        stall_seconds=args.stall_seconds,
        finish_reason=args.finish_reason,
        provider=modes_from_names(args.provider, n_ctx=args.n_ctx, key=args.api_key),
    )
    server.start()
    try:
        print(server.url, file=sys.stderr, flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
