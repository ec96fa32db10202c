"""The snipstream exception tree. Every error the program raises on purpose is one of these.

```
SnipstreamError
├── ConfigError            bad flags, template or missing key: message and exit 2 before any work
├── SourceError            unreadable, binary or unparsable file: recorded as skipped, the run goes on
├── BudgetExceeded         one request needs more tokens than --tpm allows a minute: it fails, never sent
├── StructuredError        a structured reply that is not JSON or not valid for its schema: re-asked
├── AnswerRejected         an answer that came but cannot be kept (empty, withheld, cut short): the snippet fails
├── ExampleSkipped         export: a stored answer that gives no training example (counted by reason)
├── APIError               anything the API did wrong; translated once, in stream.client
│   ├── AuthError          401/403: aborts the run
│   ├── NotFoundError      404: aborts the run (model or URL wrong)
│   ├── RateLimited        429: shared cool-down, retried
│   ├── QuotaExceeded      429 insufficient_quota: aborts the run (no retry can help)
│   ├── APIStatusError     other 4xx (this snippet fails) / 5xx (retried)
│   │   └── ContextOverflow  400: the prompt does not fit the model's context; not retried
│   ├── APITimeout         retried
│   ├── APIConnectionError retried
│   ├── StreamError        truncated or malformed SSE, or an error object in a 200: retried
│   └── CircuitOpen        every answer so far failed the same systematic way: aborts the run
├── SinkError              a sink could not write (disk full, broken pipe, ...)
└── CheckpointError        the SQLite checkpoint is unusable or locked
```

Messages never contain the API key: the key is only ever placed in request headers.

`ExitCode` is the one table of the process's exit statuses; every command returns one of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any

__all__ = [
    "ExitCode",
    "SnipstreamError",
    "ConfigError",
    "SourceError",
    "BudgetExceeded",
    "StructuredError",
    "AnswerRejected",
    "ExampleSkipped",
    "APIError",
    "AuthError",
    "NotFoundError",
    "RateLimited",
    "QuotaExceeded",
    "APIStatusError",
    "APITimeout",
    "APIConnectionError",
    "StreamError",
    "ContextOverflow",
    "CircuitOpen",
    "SinkError",
    "CheckpointError",
]


class ExitCode(IntEnum):
    """How a snipstream command ends; the CLI's epilog explains each to the user."""

    OK = 0  # everything done (or already done); also when the output pipe was closed early
    FAILED = 1  # finished, but some snippets failed (stored with their reasons) or --max-failures hit;
    #             export: finished with nothing to write (every answer left out; the message says why)
    USAGE = 2  # usage or configuration error, found before any request
    ABORTED = 3  # the API, the checkpoint or a sink made going on pointless
    INTERNAL = 70  # a bug (EX_SOFTWARE)
    INTERRUPTED = 130  # Ctrl-C / SIGTERM (128 + SIGINT)


class SnipstreamError(Exception):
    """Base class of every error snipstream raises on purpose."""


class ConfigError(SnipstreamError):
    """The configuration cannot work; reported before any request is sent."""


class SourceError(SnipstreamError):
    """A file that cannot be used. `reason` is a short stable key (e.g. ``syntax_error``), `detail` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class BudgetExceeded(SnipstreamError):
    """A single request needs more tokens than the per-minute budget allows: it can never be sent."""


class StructuredError(SnipstreamError, ValueError):
    """A structured reply that is not JSON, or not valid for the task's schema. `reason` is
    ``invalid_json`` or ``schema_mismatch``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class AnswerRejected(SnipstreamError):
    """An answer that came but cannot be kept; `reason` is the failure's key (``empty_answer``,
    ``truncated``, ``content_filter``, ``reasoning_used_budget``, ``invalid_json``, ``schema_mismatch``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ExampleSkipped(SnipstreamError):
    """A stored answer that gives no training example; `reason` is the key it is counted under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class APIError(SnipstreamError):
    """The API did not give a usable answer.

    `retryable` says whether another attempt may succeed; `retry_after` is the server's hint in seconds.
    `code` and `param` are the error body's own fields when it had them (OpenAI's error object:
    ``{"error": {"message", "type", "param", "code"}}``); `detail` is the parsed error object itself.
    `attempts` and `history` (one line per failed attempt) are set by the client pool when it gives up;
    `endpoint` is the name of the endpoint that answered so (`stream.pool`), when one did.
    """

    retryable: bool = False
    fixed_reason: str | None = None  # the reason of errors whose key does not depend on a status

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        code: str | None = None,
        param: str | None = None,
        detail: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.headers = headers or {}  # the response's x-ratelimit-* headers, when there was a response
        self.code = code
        self.param = param
        self.detail = detail or {}
        self.attempts = 1
        self.history: list[str] = []
        self.endpoint: str | None = None

    @property
    def reason(self) -> str:
        """A short key used to group failures in the summary."""
        if self.fixed_reason is not None:
            return self.fixed_reason
        return f"http_{self.status}" if self.status else type(self).__name__


class AuthError(APIError):
    """401/403: the key or URL is wrong; no other request can succeed."""


class NotFoundError(APIError):
    """404: the model or the base URL is wrong; no other request can succeed."""


class RateLimited(APIError):
    retryable = True


class QuotaExceeded(APIError):
    """429 with ``insufficient_quota``: the account is out of credit; waiting does not help."""


class APIStatusError(APIError):
    """Any other HTTP error status; 5xx, 408 and 409 are retried, other 4xx fail the snippet."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message, **context)
        status = self.status
        self.retryable = status is not None and (status >= 500 or status in (408, 409))


class ContextOverflow(APIStatusError):
    """The prompt (with room for the answer) is longer than the model's context; asking again cannot help.

    `limit` is the context size the server named, `prompt_tokens` its count of this prompt, when it said."""

    fixed_reason = "context_overflow"

    def __init__(
        self, message: str, *, limit: int | None = None, prompt_tokens: int | None = None, **context: Any
    ) -> None:
        super().__init__(message, **context)
        self.retryable = False  # (also when a server says it with a 500: llama.cpp's embeddings do)
        self.limit = limit
        self.prompt_tokens = prompt_tokens


class APITimeout(APIError):
    retryable = True
    fixed_reason = "timeout"


class APIConnectionError(APIError):
    """No answer could be had from the server. `cause` says how it failed when the connection could not be
    made at all: ``refused`` (nothing listening), ``dns`` (no such host), ``tls`` (handshake failed), else
    ``other``; the circuit breaker treats the first three as systematic."""

    retryable = True
    fixed_reason = "connection_error"

    def __init__(self, message: str, *, cause: str = "other", **context: Any) -> None:
        super().__init__(message, **context)
        self.cause = cause


class StreamError(APIError):
    retryable = True
    fixed_reason = "stream_error"


class CircuitOpen(APIError):
    """The circuit breaker tripped (see `stream.breaker`): the message names the cause and the fix."""

    fixed_reason = "circuit_open"


class SinkError(SnipstreamError):
    """A sink could not be opened or written."""


class CheckpointError(SnipstreamError):
    """The checkpoint database is unusable (locked by another run, corrupt, or not writable)."""


@contextmanager
def unwrapped() -> Iterator[None]:
    """Task groups wrap what a task raised in an exception group: raise our error itself (the first
    `SnipstreamError` among the group's leaves), or the one leaf when there is only one."""
    try:
        yield
    except BaseExceptionGroup as group:
        found = _leaves(group)
        ours = next((e for e in found if isinstance(e, SnipstreamError)), None)
        if ours is not None:
            raise ours from None
        if len(found) == 1:
            raise found[0] from None
        raise


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    return [
        leaf for e in group.exceptions for leaf in (_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    ]
