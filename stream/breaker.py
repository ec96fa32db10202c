"""The circuit breaker: a run that cannot succeed stops after a few requests and says why.

Every failed attempt is classified. *Systematic* failures repeat whatever is retried: the connection
refused, the host unknown, the TLS handshake failing, or the same 400 (same ``code`` and ``param``, or the
same message when the server gives neither). Everything else (5xx, timeouts, resets, broken streams,
429s, a context overflow, a 400 unlike the others) is *transient* or particular to one snippet: it
neither counts nor resets the count. An answer resets it.

The breaker trips (`CircuitOpen`, exit 3, one message naming the cause and the fix) when

- no request of the run has been answered yet and the last `FIRST` (8) failures were the same systematic
  one: with `--concurrency 16` the run stops after at most a few dozen requests, within seconds; or
- after answers, the same systematic failure has repeated `LATER` (50) times in a row over at least
  `WINDOW` (30) seconds: a server that went away for good, not one restarting.

401/403, 404 and an exhausted quota abort at once without it (`stream.errors`).
"""

from __future__ import annotations

import re
import time

from .errors import APIConnectionError, APIError, CircuitOpen

__all__ = ["Breaker", "FIRST", "LATER", "WINDOW"]

FIRST = 8
LATER = 50
WINDOW = 30.0

# The flag behind a refused parameter, for the message.
_FLAGS = {
    "model": "--model",
    "max_tokens": "--max-tokens",
    "max_completion_tokens": "--max-tokens",
    "temperature": "--temperature",
    "top_p": "--top-p",
    "stop": "--stop",
    "seed": "--seed",
    "reasoning_effort": "--reasoning-effort",
    "response_format": "--response-format",
    "messages": "--template / --api",
    "prompt": "--template / --api",
}


def signature(exc: APIError) -> str | None:
    """The systematic failure `exc` is an instance of, or None when it is transient."""
    if isinstance(exc, APIConnectionError):
        return f"connect:{exc.cause}" if exc.cause in ("refused", "dns", "tls") else None
    if exc.status == 400 and exc.reason == "http_400":
        if exc.code or exc.param:
            return f"http_400:{exc.code}:{exc.param}"
        return "http_400:" + re.sub(r"\d+", "#", str(exc))[:160]
    return None


class Breaker:
    """Counts systematic failures; `check()` raises `CircuitOpen` once it has tripped."""

    def __init__(self, url: str, *, first: int = FIRST, later: int = LATER, window: float = WINDOW) -> None:
        self.url = url
        self.first, self.later, self.window = first, later, window
        self.answered = 0
        self._sig: str | None = None
        self._count = 0
        self._since = 0.0
        self._last: APIError | None = None
        self.tripped: CircuitOpen | None = None

    def success(self) -> None:
        self.answered += 1
        self._sig, self._count = None, 0

    def failure(self, exc: APIError) -> None:
        """Record a failed attempt (or a snippet's final failure); trips the breaker when it is time."""
        sig = signature(exc)
        if sig is None or self.tripped is not None:
            return
        if sig != self._sig:
            self._sig, self._count, self._since = sig, 0, time.monotonic()
        self._count += 1
        self._last = exc
        if self.answered == 0:
            due = self._count >= self.first
        else:
            due = self._count >= self.later and time.monotonic() - self._since >= self.window
        if due:
            self.tripped = CircuitOpen(self._message(exc), status=exc.status)

    def check(self) -> None:
        if self.tripped is not None:
            raise self.tripped

    def _message(self, exc: APIError) -> str:
        n = self._count
        attempts = f"{n} attempts in a row" + (
            "" if self.answered == 0 else f", after {self.answered} answers"
        )
        if isinstance(exc, APIConnectionError):
            if exc.cause == "refused":
                return (
                    f"nothing is listening at {self.url}: connection refused ({attempts}). "
                    "Start the server, or fix --base-url."
                )
            if exc.cause == "dns":
                return f"the host of {self.url} cannot be resolved ({attempts}). Check --base-url."
            return (
                f"the TLS handshake with {self.url} fails ({attempts}): {exc}. Check that the URL's scheme "
                "and port are right (http or https), or the CA bundle (SSL_CERT_FILE)."
            )
        flag = _FLAGS.get((exc.param or "").split(".")[-1])
        fix = f"Check {flag}." if flag else "Check the options the message names."
        none = "none answered" if self.answered == 0 else f"after {self.answered} answers"
        return f"every request is refused with the same 400 ({n} in a row, {none}): {exc} {fix}"
