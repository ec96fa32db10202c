"""Where the HTTP layer's failures become ours: httpx exceptions and HTTP statuses into `stream.errors`.

This is the one boundary (like httpx's own ``map_httpcore_exceptions``): the rest of the program only sees
`APIError` subclasses, each raised ``from None`` so no httpx traceback (or header) leaks into messages.
"""

from __future__ import annotations

import email.utils
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

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
from .negotiate import overflow_numbers

__all__ = ["translate", "status_error", "error_message", "parse_retry_after"]


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


def error_message(content: bytes, scrub: Callable[[str], str]) -> tuple[str, dict[str, Any]]:
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
def translate() -> Iterator[None]:
    """The one place httpx's exceptions become ours."""
    try:
        yield
    except httpx.TransportError as exc:
        raise _transport_error(exc) from None
    except httpx.DecodingError as exc:
        raise StreamError(f"the response body could not be decoded ({exc})") from None
    except orjson.JSONDecodeError as exc:
        raise StreamError(f"malformed JSON from the API ({exc})") from None


def _transport_error(exc: httpx.TransportError) -> APIError:
    """httpx's transport errors as ours, whichever transport raised them."""
    aiohttp_kind = _aiohttp_kind(exc)
    if aiohttp_kind == "connect":
        return APIConnectionError(f"cannot reach the API ({exc})", cause=_connect_cause(exc))
    if aiohttp_kind == "broken":
        return StreamError(f"the connection broke mid-response ({type(exc.__cause__).__name__})")
    if isinstance(exc, httpx.ReadTimeout):
        return APITimeout("ReadTimeout: the API sent nothing for --stall-timeout seconds (stalled)")
    if isinstance(exc, httpx.TimeoutException):
        return APITimeout(f"{type(exc).__name__}: the API did not answer in time")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return StreamError(f"the connection broke mid-response ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return APIConnectionError(
            f"cannot reach the API ({type(exc).__name__}: {exc})", cause=_connect_cause(exc)
        )
    return APIConnectionError(f"cannot reach the API ({type(exc).__name__}: {exc})")


def _aiohttp_kind(exc: httpx.TransportError) -> str | None:
    """What an aiohttp error behind an httpx one was, where httpx-aiohttp's mapping is too coarse: it turns
    every ``aiohttp.ClientConnectionError`` into ``httpx.ConnectTimeout``, so a refused connection, a failed
    TLS handshake or a server that closed the connection all look like a timeout. ``connect``: the
    connection could not be made (``ClientConnectorError``: refused, DNS, TLS); ``broken``: it broke before
    or during the answer (``ServerDisconnectedError``, a reset while sending); None: the httpx error stands."""
    cause = exc.__cause__
    if cause is None or not type(cause).__module__.startswith("aiohttp") or isinstance(cause, TimeoutError):
        return None
    import aiohttp

    if isinstance(cause, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(cause, aiohttp.ClientConnectionError):
        return "broken"
    return None


def status_error(
    response: httpx.Response,
    body: dict[str, Any],
    *,
    url: str,
    base_url: str,
    api_key_env: str,
    scrub: Callable[[str], str],
) -> APIError:
    """The error an HTTP status of 400 or more stands for, in the server's own words (key scrubbed)."""
    status = response.status_code
    msg, obj = error_message(response.content, scrub)
    retry_after = parse_retry_after(response.headers)
    where = f"{status} from {url}"
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
        return AuthError(f"{where}: {msg} (check the key in ${api_key_env} and --base-url)", **context)
    if status == 404:
        return NotFoundError(
            f"{where}: {msg} (is model {body.get('model')!r} served at {base_url}?)", **context
        )
    if status == 429:
        if b"insufficient_quota" in response.content:
            return QuotaExceeded(
                f"{where}: {msg} (the account behind ${api_key_env} is out of quota)", **context
            )
        return RateLimited(f"{where}: {msg}", retry_after=retry_after, headers=headers, **context)
    overflow = overflow_numbers(status, obj, msg)
    if overflow is not None:
        limit, prompt = overflow
        return ContextOverflow(f"{where}: {msg}", limit=limit, prompt_tokens=prompt, **context)
    return APIStatusError(f"{where}: {msg}", retry_after=retry_after, headers=headers, **context)
