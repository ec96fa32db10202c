"""Talking to an OpenAI-compatible API: the client pool and retries.

Bodies are built by `stream.request`, event streams read by `stream.sse`, and httpx's exceptions and HTTP
statuses become ours in `stream.translate`, the one place they are translated.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import orjson

from .breaker import Breaker
from .embeddings import Embeddings
from .embeddings import parse as parse_embeddings
from .errors import (
    APIConnectionError,
    APIError,
    APITimeout,
    RateLimited,
    StreamError,
)
from .limits import Limits, Ticket
from .request import build_body
from .sse import Assembler, Completion, SSEParser, iter_sse, parse_full
from .translate import parse_retry_after, status_error, translate
from .transports import body_chunks, post

__all__ = ["Completion", "ClientPool", "RetryPolicy", "build_body", "iter_sse", "parse_retry_after"]


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
    clients keep that search short. `url` is where completions are posted (default: `base_url` plus the
    route of `api`; see `stream.endpoints.endpoint_url` for Azure's), `auth` the headers carrying the key
    (default ``Authorization: Bearer``). Every attempt's outcome is told to `breaker`. `transport_kind` says
    what carries the requests (``httpx`` or ``aiohttp``: `stream.transports`); `transport` replaces both (tests
    inject an `httpx.MockTransport`).
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
        url: str | None = None,
        embed_url: str | None = None,
        auth: dict[str, str] | None = None,
        breaker: Breaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        transport_kind: str = "httpx",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.endpoint = "/chat/completions" if api == "chat" else "/completions"
        self.url = url or self.base_url + self.endpoint
        self.embed_url = embed_url or self.base_url + "/embeddings"
        self.limits = limits or Limits()
        self.retry = retry
        self.request_timeout = request_timeout
        self.breaker = breaker or Breaker(self.base_url)
        n = clients or max(1, math.ceil(concurrency / 8))
        per_client = max(1, math.ceil(concurrency / n))
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if auth is not None:
            headers.update(auth)
        elif api_key:
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
                transport=transport or _transport(transport_kind, per_client, verify, trust_env),
            )
            for _ in range(n)
        ]
        self.requests_sent = 0
        self.server: str | None = None  # the first response's Server header (llama.cpp names itself)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            for client in self._clients:
                await client.aclose()

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def refund(self, completion: Completion, tokens: float) -> None:
        """The answer `completion` used `tokens` fewer than its request reserved (see `Limits.refund`)."""
        self.limits.refund(tokens)

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
        inputs: int = 0,
        on_text: Callable[[str], None] | None = None,
    ) -> Any:
        """Send one request, retrying what may succeed later: a completion, or with `inputs` (how many
        texts its ``input`` holds) an embeddings request, answered with `stream.embeddings.Embeddings`.
        Raises an APIError after the last attempt, with its ``attempts`` and ``history`` (one line per
        failed attempt). `on_text` hears a streamed answer's text piece by piece, every attempt's
        (`on_attempt` tells when one starts).

        429s wait out the shared cool-down (see `Limits`) and count against a separate, larger allowance
        (`RetryPolicy.max_rate_limited`), so a busy server slows a snippet down without failing it. A
        tripped circuit breaker raises `CircuitOpen` before the next attempt."""
        client = self._clients[worker % len(self._clients)]
        history: list[str] = []
        attempt = limited = 0  # requests sent; 429s among them
        while True:
            self.breaker.check()
            ticket = await self.limits.acquire(reserve_tokens)
            started = time.perf_counter()
            attempt += 1
            try:
                completion = await self._attempt(client, body, ticket, on_attempt, inputs, on_text)
            except APIError as exc:
                self._failed_attempt(exc, attempt, history, reserve_tokens, ticket)
                if isinstance(exc, RateLimited):
                    limited += 1
                    if limited < self.retry.rate_limit_allowance:
                        continue
                # --max-attempts bounds the errors other than 429 (those have their own allowance).
                if (
                    not exc.retryable
                    or attempt - limited >= self.retry.max_attempts
                    or isinstance(exc, RateLimited)
                ):
                    exc.attempts, exc.history = attempt, history
                    raise
                self.breaker.check()
                await anyio.sleep(self.retry.delay(attempt, exc.retry_after))
                continue
            self.limits.success()
            self.breaker.success()
            completion.attempts = attempt
            completion.errors = history
            completion.latency_s = time.perf_counter() - started
            return completion

    async def _attempt(
        self,
        client: httpx.AsyncClient,
        body: dict[str, Any],
        ticket: Ticket,
        on_attempt: Callable[[], None] | None,
        inputs: int = 0,
        on_text: Callable[[str], None] | None = None,
    ) -> Any:
        """One request, bounded by --request-timeout as a whole.

        One cancel scope serves both deadlines of an attempt: --request-timeout, and the second a server
        gets to end its body after [DONE] (`_read_events` brings the deadline forward then). Entering, arming
        and leaving a scope costs several µs; two a request, with anyio's ``fail_after`` wrapper around
        one, were ~5% of a fast run's CPU."""
        self.requests_sent += 1
        if on_attempt:
            on_attempt()
        acc = Assembler(on_text)
        with anyio.CancelScope(deadline=anyio.current_time() + self.request_timeout) as scope:
            if inputs:
                return await self._embed_once(client, body, ticket, inputs)
            return await self._once(client, body, ticket, acc, scope)
        if inputs:
            raise APITimeout(f"no embeddings within --request-timeout {self.request_timeout:g}s")
        # Only a deadline of this scope gets here (any other cancellation goes on up).
        if acc.done:  # the second after [DONE] ran out: the answer is whole
            return acc.result()
        raise APITimeout(f"no complete answer within --request-timeout {self.request_timeout:g}s")

    def _failed_attempt(
        self, exc: APIError, attempt: int, history: list[str], reserved: int, ticket: Ticket
    ) -> None:
        """Note a failed attempt (its message scrubbed of the key); a 429 starts the shared cool-down."""
        exc.args = (self.scrub(str(exc)),)
        history.append(f"attempt {attempt}: {exc.reason}: {exc}")
        if isinstance(exc, APIConnectionError):
            self.breaker.failure(exc)  # (4xx are told by the caller, which may learn from them)
        if isinstance(exc, RateLimited):
            self.limits.rate_limited_for(
                exc.retry_after, exc.headers, reserved=reserved, base=self.retry.base, ticket=ticket
            )

    async def get_json(self, url: str) -> Any:
        """GET a JSON document from the server (llama.cpp's ``/props``); None when there is none to have."""
        try:
            with translate():
                response = await self._clients[0].get(url)
                if response.status_code != 200:
                    return None
                return orjson.loads(response.content)
        except APIError:
            return None

    async def _embed_once(
        self, client: httpx.AsyncClient, body: dict[str, Any], ticket: Ticket, inputs: int
    ) -> Embeddings:
        """One embeddings request: a JSON answer, its vectors decoded (`stream.embeddings.parse`)."""
        with translate():
            response = await post(client, self.embed_url, orjson.dumps(body))
            try:
                content = await response.aread()
                self._answered(response, body, ticket, self.embed_url)
            finally:
                await response.aclose()
        try:
            doc = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise StreamError("the embeddings answer is not JSON") from None
        return parse_embeddings(doc, inputs)

    def _answered(self, response: httpx.Response, body: dict[str, Any], ticket: Ticket, url: str) -> None:
        """A response's headers read (the limiter, the server's name); an error status raised as ours."""
        if self.server is None:
            self.server = response.headers.get("server", "")
        if response.status_code != 429:  # a 429's headers are read by rate_limited_for
            self.limits.observe(response.headers, ticket)
        if response.status_code >= 400:
            raise status_error(
                response,
                body,
                url=url,
                base_url=self.base_url,
                api_key_env=self.api_key_env,
                scrub=self.scrub,
            )

    async def _once(
        self,
        client: httpx.AsyncClient,
        body: dict[str, Any],
        ticket: Ticket,
        acc: Assembler,
        scope: anyio.CancelScope,
    ) -> Completion:
        content = orjson.dumps(body)
        with translate():
            response = await post(client, self.url, content)  # (client.stream() costs more: see post)
            try:
                if response.status_code >= 400:
                    await response.aread()
                self._answered(response, body, ticket, self.url)
                if body.get("stream"):
                    ctype = response.headers.get("content-type", "")
                    if "text/event-stream" in ctype:
                        return await _read_stream(response, acc, scope)
                # Some servers ignore stream:true and answer with one JSON document; take it.
                return parse_full(orjson.loads(await response.aread()))
            finally:
                await response.aclose()


async def _read_stream(response: httpx.Response, acc: Assembler, scope: anyio.CancelScope) -> Completion:
    """A streamed answer read whole into `acc`."""
    await _read_events(response, acc, scope)
    result = acc.result()
    # A server may close without [DONE]; the answer is whole only if it said why it finished.
    if not acc.done and result.finish_reason is None:
        raise StreamError("the stream ended before the answer was complete")
    return result


async def _read_events(response: httpx.Response, acc: Assembler, scope: anyio.CancelScope) -> None:
    """The body's events into `acc`, parsed chunk by chunk as they arrive (`SSEParser`), the bytes
    taken by the shortest way the transport has (`body_chunks`).

    After [DONE] the body is read to its end (normally just the chunked terminator), so the connection
    can be reused; a server that holds the stream open afterwards gets one second (the attempt's
    `scope` ends then, see `_attempt`)."""
    parser = SSEParser()
    async for chunk in body_chunks(response):
        for event, data in parser.feed(chunk):
            if acc.event(event, data):
                scope.deadline = min(scope.deadline, anyio.current_time() + 1.0)
    for event, data in parser.finish():
        acc.event(event, data)


def _transport(kind: str, connections: int, verify: bool, trust_env: bool) -> httpx.AsyncBaseTransport | None:
    if kind == "httpx":
        return None  # httpx builds its own from the client's limits, verify and trust_env
    from .transports import aiohttp_transport

    return aiohttp_transport(connections=connections, verify=verify, trust_env=trust_env)
