"""Request and token budgets shared by all workers, adapted from the server's own rate-limit headers.

Budgets are token buckets that refill continuously (per minute, as providers state limits) and hold about
one second of budget, since providers enforce per-minute limits over short windows
(https://platform.openai.com/docs/guides/rate-limits). A request reserves its prompt tokens plus
``max_tokens`` before it is sent; when the answer reports its usage, the unused part is given back.

Three sources set the budget, the lowest winning: the user's ``--rpm``/``--tpm`` (a ceiling), the server's
``x-ratelimit-limit-*`` headers, and its ``x-ratelimit-remaining-*``/``reset-*`` headers, which pull our
bucket down to what the server says is left. A 429 starts one shared cool-down: every worker waits until
the server's retry time instead of each retrying on its own; the pause grows while 429s repeat and shrinks
again with successes.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping

import anyio

__all__ = ["Limits", "BudgetExceeded", "parse_duration"]

_BURST_SECONDS = 1.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float | None:
    """OpenAI's reset durations (``1s``, ``6m0s``, ``20ms``, ``1m30.5s``) in seconds; None if unreadable."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        return None
    return sum(float(value) * _UNIT[unit] for value, unit in parts)


class BudgetExceeded(Exception):
    """A single request needs more tokens than the per-minute budget allows: it can never be sent."""


class _Bucket:
    """A continuously refilling bucket. `rate` is per second; None means unlimited."""

    def __init__(self, per_minute: float | None) -> None:
        self.ceiling = per_minute  # the user's limit, never exceeded
        self.per_minute = per_minute
        self.level = self.capacity
        self.stamp = anyio.current_time()

    @property
    def rate(self) -> float:
        return (self.per_minute or 0.0) / 60.0

    @property
    def capacity(self) -> float:
        if not self.per_minute:
            return math.inf
        return max(1.0, self.rate * _BURST_SECONDS)

    def refill(self, now: float) -> None:
        if self.per_minute:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` can be taken. A request larger than the bucket may go once it is full
        (leaving a debt), so it waits for the budget rather than forever."""
        if not self.per_minute:
            return 0.0
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def set_limit(self, per_minute: float) -> None:
        limit = min(per_minute, self.ceiling) if self.ceiling else per_minute
        if limit != self.per_minute:
            was_unlimited = not self.per_minute
            self.per_minute = limit
            self.level = self.capacity if was_unlimited else min(self.level, self.capacity)


class Limits:
    """The shared budgets. ``await acquire(tokens)`` before each request; tell it what came back."""

    def __init__(self, *, rpm: float | None = None, tpm: float | None = None, adapt: bool = True) -> None:
        self.requests = _Bucket(rpm)
        self.tokens = _Bucket(tpm)
        self.adapt = adapt
        self._lock = anyio.Lock()
        self._pause_until = 0.0
        self._strikes = 0  # consecutive 429s, for the growing cool-down
        self.rate_limited = 0

    @property
    def counts_tokens(self) -> bool:
        """Whether reservations matter (a token budget is known), so prompts must be counted."""
        return bool(self.tokens.per_minute)

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of `tokens` tokens fits both budgets and no cool-down is running.

        Waiters are served first come, first served (anyio's Lock is fair)."""
        tpm = self.tokens.per_minute
        if tpm and tokens > tpm:
            raise BudgetExceeded(f"the request needs {tokens} tokens but the budget is {tpm:g} tokens/minute")
        async with self._lock:
            while True:
                now = anyio.current_time()
                self.requests.refill(now)
                self.tokens.refill(now)
                wait = max(self._pause_until - now, self.requests.wait_for(1), self.tokens.wait_for(tokens))
                if wait <= 0:
                    break
                await anyio.sleep(wait)
            self.requests.level -= 1
            self.tokens.level -= tokens

    def refund(self, tokens: float) -> None:
        """Give back what a request reserved but did not use (its usage came in under the reservation)."""
        if tokens > 0 and self.tokens.per_minute:
            self.tokens.refill(anyio.current_time())
            self.tokens.level = min(self.tokens.capacity, self.tokens.level + tokens)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Adapt to a response's ``x-ratelimit-*`` headers (any status)."""
        if not self.adapt:
            return
        now = anyio.current_time()
        for bucket, kind in ((self.requests, "requests"), (self.tokens, "tokens")):
            limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
            if limit and limit > 0:
                bucket.refill(now)
                bucket.set_limit(limit)
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            if remaining is not None and bucket.per_minute:
                bucket.refill(now)
                # The server's count is the truth; other answers in flight were already taken from ours.
                bucket.level = min(bucket.level, remaining)

    def success(self) -> None:
        if self._strikes:
            self._strikes -= 1

    def rate_limited_for(self, retry_after: float | None, headers: Mapping[str, str], *,
                         reserved: int, base: float) -> float:
        """A 429: the reservation was not charged; start (or extend) the shared cool-down. Returns it."""
        self.rate_limited += 1
        self.refund(reserved)
        self.observe(headers)
        self.requests.level = min(self.requests.level, 0.0)
        self._strikes += 1
        grown = base * 2 ** min(self._strikes - 1, 5)  # at most 32 × --backoff unless the server asks more
        pause = max(retry_after if retry_after is not None else 0.0, grown)
        pause *= random.uniform(1.0, 1.1)  # so the workers do not all come back in the same instant
        self._pause_until = max(self._pause_until, anyio.current_time() + pause)
        return pause


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
