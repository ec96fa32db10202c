"""Talking to an OpenAI-compatible API: the client pool, SSE parsing, retries (bodies: `stream.request`).

httpx exceptions and HTTP statuses are translated into `stream.errors` here and nowhere else
(`_translate`), so the rest of the program only sees `APIError` subclasses.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import orjson

from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeout,
    AuthError,
    NotFoundError,
    QuotaExceeded,
    RateLimited,
    StreamError,
)
from .limits import Limits, Ticket
from .request import build_body

__all__ = ["Completion", "ClientPool", "RetryPolicy", "build_body", "iter_sse", "parse_retry_after"]


@dataclass(slots=True)
class Completion:
    """One answer, with the response metadata a record keeps."""

    text: str
    response_id: str | None = None
    model: str | None = None
    created: int | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    system_fingerprint: str | None = None
    attempts: int = 1
    latency_s: float = 0.0
    errors: list[str] = field(default_factory=list)


# --- SSE -------------------------------------------------------------------------------------------------


async def iter_sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[str | None, bytes]]:
    """Server-sent events as (event type, data bytes), straight from the body's byte chunks.

    Lines end at CR, LF or CRLF only, as SSE says; working on bytes keeps it so (``str.splitlines`` would
    also break at U+2028 or U+0085, which JSON strings may carry unescaped) and leaves decoding to
    orjson. Tolerates what real servers send: comment/keep-alive lines (``: ping``), ``event:``/``id:``/
    ``retry:`` fields, CRLF or lone CR, and a last event without its blank line.
    https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
    """
    data: list[bytes] = []
    event: str | None = None
    pending = b""
    async for chunk in chunks:
        if pending:
            chunk = pending + chunk
        hold = b""
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):  # maybe the first half of a CRLF split across chunks
                chunk, hold = chunk[:-1], b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        pending = lines.pop() + hold
        for line in lines:
            if not line:
                if data:
                    yield event, b"\n".join(data)
                data, event = [], None
            elif line[0] != 58:  # not a ":" comment line
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    data.append(value)
                elif name == b"event":
                    event = value.decode("utf-8", "replace")
    pending = pending.rstrip(b"\r")
    if pending and pending[0] != 58:
        name, _, value = pending.partition(b":")
        if name == b"data":
            data.append(value[1:] if value[:1] == b" " else value)
    if data:
        yield event, b"\n".join(data)


class _Assembler:
    """Folds streamed chunks (chat deltas or completion texts) into one Completion."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.c = Completion(text="")
        self.done = False

    def feed(self, chunk: dict[str, Any]) -> None:
        _raise_for_error_object(chunk)
        c = self.c
        c.response_id = c.response_id or chunk.get("id")
        c.model = c.model or chunk.get("model")
        c.created = c.created or chunk.get("created")
        c.system_fingerprint = c.system_fingerprint or chunk.get("system_fingerprint")
        if chunk.get("usage"):
            c.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            piece = (delta or {}).get("content") if delta is not None else choice.get("text")
            if piece:
                self.parts.append(piece)
            if choice.get("finish_reason"):
                c.finish_reason = choice["finish_reason"]

    def result(self) -> Completion:
        self.c.text = "".join(self.parts)
        return self.c


def _raise_for_error_object(obj: dict[str, Any]) -> None:
    error = obj.get("error")
    if error:
        msg = error.get("message") if isinstance(error, dict) else str(error)
        raise StreamError(f"the API answered with an error object: {msg}")


def _parse_full(obj: Any) -> Completion:
    if not isinstance(obj, dict):
        raise StreamError(f"the response is not a JSON object: {str(obj)[:80]!r}")
    _raise_for_error_object(obj)
    choices = obj.get("choices") or []
    if not choices:
        raise StreamError("the response has no choices")
    choice = choices[0]
    message = choice.get("message")
    text = (message or {}).get("content") if message is not None else choice.get("text")
    return Completion(
        text=text or "",
        response_id=obj.get("id"),
        model=obj.get("model"),
        created=obj.get("created"),
        finish_reason=choice.get("finish_reason"),
        usage=obj.get("usage"),
        system_fingerprint=obj.get("system_fingerprint"),
    )


# --- errors ----------------------------------------------------------------------------------------------


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI), or ``retry-after`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _error_message(content: bytes, scrub: Callable[[str], str]) -> str:
    """The server's own words about an error, with the key scrubbed out *before* anything is cut short
    (cutting first could leave a prefix of the key behind)."""
    try:
        obj = orjson.loads(content)
    except orjson.JSONDecodeError:
        return scrub(content.decode("utf-8", "replace")).strip()[:300] or "(empty body)"
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        return scrub(str(err.get("message") or err))[:1000]
    return scrub(str(err or obj))[:300]


@contextmanager
def _translate() -> Iterator[None]:
    """The one place httpx's exceptions become ours."""
    try:
        yield
    except httpx.ReadTimeout:
        raise APITimeout("ReadTimeout: the API sent nothing for --stall-timeout seconds (stalled)") from None
    except httpx.TimeoutException as exc:
        raise APITimeout(f"{type(exc).__name__}: the API did not answer in time") from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise StreamError(f"the connection broke mid-response ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise APIConnectionError(f"cannot reach the API ({type(exc).__name__}: {exc})") from None
    except httpx.DecodingError as exc:
        raise StreamError(f"the response body could not be decoded ({exc})") from None
    except orjson.JSONDecodeError as exc:
        raise StreamError(f"malformed JSON from the API ({exc})") from None


# --- retries ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter; a server's retry-after wins when it gives one.

    Jitter spreads retries of many workers so they do not return in lock-step:
    https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
    """

    max_attempts: int = 6
    base: float = 0.5
    cap: float = 30.0
    max_rate_limited: int | None = None  # 429s one request may wait out; default 3 × max_attempts

    @property
    def rate_limit_allowance(self) -> int:
        return self.max_rate_limited or 3 * self.max_attempts

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, 600.0) + random.uniform(0, 0.1 * self.base)
        return random.uniform(0.5, 1.0) * min(self.cap, self.base * 2 ** (attempt - 1))


class ClientPool:
    """A few `httpx.AsyncClient`s, each with a small connection limit, shared round-robin by the workers.

    One client with hundreds of connections spends its time searching its own pool; several small
    clients keep that search short.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        api_key_env: str,
        api: str,
        concurrency: int,
        clients: int = 0,
        limits: Limits | None = None,
        retry: RetryPolicy = RetryPolicy(),
        connect_timeout: float = 10.0,
        stall_timeout: float = 60.0,
        request_timeout: float = 600.0,
        trust_env: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.endpoint = "/chat/completions" if api == "chat" else "/completions"
        self.url = self.base_url + self.endpoint
        self.limits = limits or Limits()
        self.retry = retry
        self.request_timeout = request_timeout
        n = clients or max(1, math.ceil(concurrency / 8))
        per_client = max(1, math.ceil(concurrency / n))
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._key = api_key
        timeout = httpx.Timeout(connect=connect_timeout, read=stall_timeout, write=30.0, pool=None)
        # Each client loads the CA bundle (~20 ms); plain http never uses it, and TLS stays verified.
        verify: bool = not self.base_url.startswith("http://")
        self._clients = [
            httpx.AsyncClient(
                headers=headers,
                timeout=timeout,
                limits=httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client),
                trust_env=trust_env,
                verify=verify,
            )
            for _ in range(n)
        ]
        self.requests_sent = 0

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            for client in self._clients:
                await client.aclose()

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def scrub(self, text: str) -> str:
        """Remove the key from text that came back from a server (some echo part of it)."""
        return text.replace(self._key, "***") if self._key else text

    async def complete(
        self,
        body: dict[str, Any],
        *,
        reserve_tokens: int,
        worker: int = 0,
        on_attempt: Callable[[], None] | None = None,
    ) -> Completion:
        """Send one request, retrying what may succeed later. Raises an APIError after the last attempt,
        with ``attempts`` and ``history`` (one line per failed attempt) set on it.

        429s wait out the shared cool-down (see `Limits`) and count against a separate, larger allowance
        (`RetryPolicy.max_rate_limited`), so a busy server slows a snippet down without failing it."""
        client = self._clients[worker % len(self._clients)]
        history: list[str] = []
        attempt = limited = 0  # requests sent; 429s among them
        while True:
            ticket = await self.limits.acquire(reserve_tokens)
            started = time.perf_counter()
            attempt += 1
            try:
                self.requests_sent += 1
                if on_attempt:
                    on_attempt()
                try:
                    with anyio.fail_after(self.request_timeout):
                        completion = await self._once(client, body, ticket)
                except TimeoutError:
                    raise APITimeout(
                        f"no complete answer within --request-timeout {self.request_timeout:g}s"
                    ) from None
            except APIError as exc:
                exc.args = (self.scrub(str(exc)),)
                history.append(f"attempt {attempt}: {exc.reason}: {exc}")
                if isinstance(exc, RateLimited):
                    limited += 1
                    self.limits.rate_limited_for(
                        exc.retry_after,
                        exc.headers,
                        reserved=reserve_tokens,
                        base=self.retry.base,
                        ticket=ticket,
                    )
                    if limited < self.retry.rate_limit_allowance:
                        continue
                # --max-attempts bounds the errors other than 429 (those have their own allowance).
                if (
                    not exc.retryable
                    or attempt - limited >= self.retry.max_attempts
                    or isinstance(exc, RateLimited)
                ):
                    exc.attempts = attempt  # type: ignore[attr-defined]
                    exc.history = history  # type: ignore[attr-defined]
                    raise
                await anyio.sleep(self.retry.delay(attempt, exc.retry_after))
                continue
            self.limits.success()
            completion.attempts = attempt
            completion.errors = history
            completion.latency_s = time.perf_counter() - started
            return completion

    async def _once(self, client: httpx.AsyncClient, body: dict[str, Any], ticket: Ticket) -> Completion:
        content = orjson.dumps(body)
        with _translate():
            async with client.stream("POST", self.url, content=content) as response:
                if response.status_code != 429:  # a 429's headers are read by rate_limited_for
                    self.limits.observe(response.headers, ticket)
                if response.status_code >= 400:
                    await response.aread()
                    raise self._status_error(response, body)
                if body.get("stream"):
                    ctype = response.headers.get("content-type", "")
                    if "text/event-stream" in ctype:
                        return await self._read_stream(response)
                # Some servers ignore stream:true and answer with one JSON document; take it.
                return _parse_full(orjson.loads(await response.aread()))

    async def _read_stream(self, response: httpx.Response) -> Completion:
        acc = _Assembler()
        # After [DONE] the body is read to its end (normally just the chunked terminator), so httpx can
        # reuse the connection; a server that holds the stream open afterwards gets one second.
        with anyio.CancelScope() as tail:
            await self._read_events(response, acc, tail)
        result = acc.result()
        # A server may close without [DONE]; the answer is whole only if it said why it finished.
        if not acc.done and result.finish_reason is None:
            raise StreamError("the stream ended before the answer was complete")
        return result

    async def _read_events(self, response: httpx.Response, acc: _Assembler, tail: anyio.CancelScope) -> None:
        async for event, data in iter_sse(response.aiter_bytes()):
            if acc.done:
                continue
            if data.strip() == b"[DONE]":
                acc.done = True
                tail.deadline = anyio.current_time() + 1.0
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise StreamError(
                    f"malformed JSON chunk in the stream: {data[:80].decode('utf-8', 'replace')!r}"
                ) from None
            if event == "error":
                _raise_for_error_object(
                    chunk
                    if isinstance(chunk, dict) and "error" in chunk
                    else {"error": chunk or "error event"}
                )
            if isinstance(chunk, dict):
                acc.feed(chunk)

    def _status_error(self, response: httpx.Response, body: dict[str, Any]) -> APIError:
        status = response.status_code
        msg = _error_message(response.content, self.scrub)
        retry_after = parse_retry_after(response.headers)
        where = f"{status} from {self.url}"
        headers = {k: v for k, v in response.headers.items() if k.startswith("x-ratelimit-")}
        if status in (401, 403):
            return AuthError(
                f"{where}: {msg} (check the key in ${self.api_key_env} and --base-url)", status=status
            )
        if status == 404:
            return NotFoundError(
                f"{where}: {msg} (is model {body.get('model')!r} served at {self.base_url}?)", status=status
            )
        if status == 429:
            if b"insufficient_quota" in response.content:
                return QuotaExceeded(
                    f"{where}: {msg} (the account behind ${self.api_key_env} is out of quota)", status=status
                )
            return RateLimited(f"{where}: {msg}", status=status, retry_after=retry_after, headers=headers)
        return APIStatusError(f"{where}: {msg}", status=status, retry_after=retry_after, headers=headers)
