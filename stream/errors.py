"""The snipstream exception tree. Every error the program raises on purpose is one of these.

```
SnipstreamError
├── ConfigError            bad flags, template or missing key: message and exit 2 before any work
├── SourceError            unreadable, binary or unparsable file: recorded as skipped, the run goes on
├── APIError               anything the API did wrong; translated once, in stream.client
│   ├── AuthError          401/403: aborts the run
│   ├── NotFoundError      404: aborts the run (model or URL wrong)
│   ├── RateLimited        429: shared cool-down, retried
│   ├── QuotaExceeded      429 insufficient_quota: aborts the run (no retry can help)
│   ├── APIStatusError     other 4xx (this snippet fails) / 5xx (retried)
│   ├── APITimeout         retried
│   ├── APIConnectionError retried
│   └── StreamError        truncated or malformed SSE, or an error object in a 200: retried
├── SinkError              a sink could not write (disk full, broken pipe, ...)
└── CheckpointError        the SQLite checkpoint is unusable or locked
```

Messages never contain the API key: the key is only ever placed in request headers.
"""

from __future__ import annotations

__all__ = [
    "SnipstreamError",
    "ConfigError",
    "SourceError",
    "APIError",
    "AuthError",
    "NotFoundError",
    "RateLimited",
    "QuotaExceeded",
    "APIStatusError",
    "APITimeout",
    "APIConnectionError",
    "StreamError",
    "SinkError",
    "CheckpointError",
]


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


class APIError(SnipstreamError):
    """The API did not give a usable answer.

    `retryable` says whether another attempt may succeed; `retry_after` is the server's hint in seconds.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.headers = headers or {}  # the response's x-ratelimit-* headers, when there was a response

    @property
    def reason(self) -> str:
        """A short key used to group failures in the summary."""
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

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after, headers=headers)
        self.retryable = status is not None and (status >= 500 or status in (408, 409))


class APITimeout(APIError):
    retryable = True

    @property
    def reason(self) -> str:
        return "timeout"


class APIConnectionError(APIError):
    retryable = True

    @property
    def reason(self) -> str:
        return "connection_error"


class StreamError(APIError):
    retryable = True

    @property
    def reason(self) -> str:
        return "stream_error"


class SinkError(SnipstreamError):
    """A sink could not be opened or written."""


class CheckpointError(SnipstreamError):
    """The checkpoint database is unusable (locked by another run, corrupt, or not writable)."""
