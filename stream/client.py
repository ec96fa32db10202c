"""Talking to an OpenAI-compatible API: the client pool and retries (bodies: `stream.request`; SSE: `stream.sse`).

httpx exceptions and HTTP statuses are translated into `stream.errors` here and nowhere else
(`_translate`), so the rest of the program only sees `APIError` subclasses.
"""

from __future__ import annotations

import email.utils
import math
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import orjson

from .breaker import Breaker
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeout,
    AuthError,
    ContextOverflow,
    NotFoundError,
    QuotaExceeded,
    RateLimited,
    StreamError,
)
from .limits import Limits, Ticket
from .negotiate import overflow_numbers
from .request import build_body
from .sse import Assembler, Completion, iter_sse, parse_full, raise_for_error_object

__all__ = ["Completion", "ClientPool", "RetryPolicy", "build_body", "iter_sse", "parse_retry_after"]


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


def _error_message(content: bytes, scrub: Callable[[str], str]) -> tuple[str, dict[str, Any]]:
    """The server's own words about an error, with the key scrubbed out *before* anything is cut short
    (cutting first could leave a prefix of the key behind), and the error object itself (``{}`` when the
    body had none): OpenAI's ``{"error": {"message", "type", "param", "code"}}``, which llama.cpp, vLLM and
    LiteLLM imitate (llama.cpp adds ``n_ctx``/``n_prompt_tokens``; some put the status in ``code``)."""
    try:
        obj = orjson.loads(content)
    except orjson.JSONDecodeError:
        return scrub(content.decode("utf-8", "replace")).strip()[:300] or "(empty body)", {}
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        return scrub(str(err.get("message") or err))[:1000], err
    if isinstance(obj, dict) and "message" in obj:  # FastAPI-style servers put it at the top
        return scrub(str(obj["message"]))[:1000], obj
    return scrub(str(err or obj))[:300], {}


def _connect_cause(exc: BaseException) -> str:
    """How a connection could not be made: refused, dns, tls or other (from the exception's chain)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError):
            return "refused"
        if isinstance(seen, socket.gaierror):
            return "dns"
        if isinstance(seen, ssl.SSLError):
            return "tls"
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()
    if "connection refused" in text or "errno 111" in text:
        return "refused"
    if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
        return "dns"
    if "ssl" in text or "certificate" in text:
        return "tls"
    return "other"


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
    except httpx.ConnectError as exc:
        raise APIConnectionError(
            f"cannot reach the API ({type(exc).__name__}: {exc})", cause=_connect_cause(exc)
        ) from None
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
    clients keep that search short. `url` is where completions are posted (default: `base_url` plus the
    route of `api`; see `stream.endpoints.endpoint_url` for Azure's), `auth` the headers carrying the key
    (default ``Authorization: Bearer``). Every attempt's outcome is told to `breaker`.
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
        auth: dict[str, str] | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.endpoint = "/chat/completions" if api == "chat" else "/completions"
        self.url = url or self.base_url + self.endpoint
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
        with its ``attempts`` and ``history`` (one line per failed attempt).

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
                if isinstance(exc, APIConnectionError):
                    self.breaker.failure(exc)  # (4xx are told by the caller, which may learn from them)
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

    async def get_json(self, url: str) -> Any:
        """GET a JSON document from the server (llama.cpp's ``/props``); None when there is none to have."""
        try:
            with _translate():
                response = await self._clients[0].get(url)
                if response.status_code != 200:
                    return None
                return orjson.loads(response.content)
        except APIError:
            return None

    async def _once(self, client: httpx.AsyncClient, body: dict[str, Any], ticket: Ticket) -> Completion:
        content = orjson.dumps(body)
        with _translate():
            async with client.stream("POST", self.url, content=content) as response:
                if self.server is None:
                    self.server = response.headers.get("server", "")
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
                return parse_full(orjson.loads(await response.aread()))

    async def _read_stream(self, response: httpx.Response) -> Completion:
        acc = Assembler()
        # After [DONE] the body is read to its end (normally just the chunked terminator), so httpx can
        # reuse the connection; a server that holds the stream open afterwards gets one second.
        with anyio.CancelScope() as tail:
            await self._read_events(response, acc, tail)
        result = acc.result()
        # A server may close without [DONE]; the answer is whole only if it said why it finished.
        if not acc.done and result.finish_reason is None:
            raise StreamError("the stream ended before the answer was complete")
        return result

    async def _read_events(self, response: httpx.Response, acc: Assembler, tail: anyio.CancelScope) -> None:
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
                raise_for_error_object(
                    chunk
                    if isinstance(chunk, dict) and "error" in chunk
                    else {"error": chunk or "error event"}
                )
            if isinstance(chunk, dict):
                acc.feed(chunk)

    def _status_error(self, response: httpx.Response, body: dict[str, Any]) -> APIError:
        status = response.status_code
        msg, obj = _error_message(response.content, self.scrub)
        retry_after = parse_retry_after(response.headers)
        where = f"{status} from {self.url}"
        headers = {k: v for k, v in response.headers.items() if k.startswith("x-ratelimit-")}
        code = obj.get("code")
        param = obj.get("param")
        context: dict[str, Any] = {
            "status": status,
            "code": str(code) if code is not None and not isinstance(code, int) else None,
            "param": param if isinstance(param, str) else None,
            "detail": obj,
        }
        if status in (401, 403):
            return AuthError(
                f"{where}: {msg} (check the key in ${self.api_key_env} and --base-url)", **context
            )
        if status == 404:
            return NotFoundError(
                f"{where}: {msg} (is model {body.get('model')!r} served at {self.base_url}?)", **context
            )
        if status == 429:
            if b"insufficient_quota" in response.content:
                return QuotaExceeded(
                    f"{where}: {msg} (the account behind ${self.api_key_env} is out of quota)", **context
                )
            return RateLimited(f"{where}: {msg}", retry_after=retry_after, headers=headers, **context)
        overflow = overflow_numbers(status, obj, msg)
        if overflow is not None:
            limit, prompt = overflow
            return ContextOverflow(f"{where}: {msg}", limit=limit, prompt_tokens=prompt, **context)
        return APIStatusError(f"{where}: {msg}", retry_after=retry_after, headers=headers, **context)
