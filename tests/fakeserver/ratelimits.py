"""Rate limits as OpenAI documents them (`FakeOpenAI`'s docstring quotes the providers): two continuously
refilling token buckets (requests, tokens), durations in OpenAI's format, the ``x-ratelimit-*`` headers and
the 429 answer, and the server's own account of what it charged and gave back (`Accounts`, `Charge`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from tests.fakeserver.replies import error_body

DEFAULT_MAX_TOKENS = 16  # what a request without max_tokens reserves from the token bucket


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


_HEADER_MODES = {True: "all", False: "none", "all": "all", "429": "429", "none": "none"}


def headers_mode(value: bool | str) -> str:
    """`FakeOpenAI.ratelimit_headers` as one of ``"all"``, ``"429"``, ``"none"`` (a bool is accepted:
    True = all, False = none)."""
    try:
        return _HEADER_MODES[value]
    except (KeyError, TypeError):
        raise ValueError(f"ratelimit_headers must be 'all', '429', 'none' or a bool, not {value!r}") from None


def check_limits(rpm: float | None, tpm: float | None, burst_seconds: float, headers: bool | str) -> None:
    """Raise ValueError for settings `FakeOpenAI` cannot take."""
    for name, limit in (("rpm", rpm), ("tpm", tpm)):
        if limit is not None and not limit > 0:
            raise ValueError(f"{name} must be positive or None, not {limit!r}")
    if not burst_seconds > 0:
        raise ValueError(f"burst_seconds must be positive, not {burst_seconds!r}")
    headers_mode(headers)  # raises on an unknown mode


class Bucket:
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


class Accounts:
    """The server's two buckets and its counters (`FakeOpenAI.stats`, `FakeOpenAI.charges`). Touched with
    the server's lock held, except `finish` (see there)."""

    def __init__(self) -> None:
        self.requests = Bucket(1.0)
        self.tokens = Bucket(1.0)
        self.admitted = 0
        self.rejected = 0
        self.tokens_charged = 0  # gross: reservations at admission (minus the baseline, see reset)
        self.refunded = 0  # given back since start (written on the loop thread only)
        # (monotonic time, requests, tokens) taken from (or, negative, given back to) the buckets, while a
        # limit is set: the server's own account, for measuring the rate it was held to (`charges`)
        self.ledger: list[tuple[float, int, int]] = []
        self.first_admit: float | None = None
        self.last_done: float | None = None
        self.fault_counts: dict[str, int] = {}

    def sync(self, rpm: float | None, tpm: float | None, burst: float, now: float) -> None:
        self.requests.sync(rpm, burst, now)
        self.tokens.sync(tpm, burst, now)

    def bucket(self, which: str) -> Bucket:
        """The ``"requests"`` or the ``"tokens"`` bucket."""
        return self.requests if which == "requests" else self.tokens

    def wait(self, cost: int) -> tuple[float, str]:
        """(seconds until both buckets have room for a request of `cost` tokens, the bucket that is
        waited for: ``"requests"`` or ``"tokens"``); ``(0.0, "")`` when there is room. A wait is counted
        as a rejection."""
        rb, tb = self.requests, self.tokens
        wait_r = rb.wait(1) if rb.per_minute is not None else 0.0
        wait_t = tb.wait(cost) if tb.per_minute is not None else 0.0
        if wait_r > 0 or wait_t > 0:
            self.rejected += 1
            return (wait_r, "requests") if wait_r >= wait_t else (wait_t, "tokens")
        return 0.0, ""

    def charge(self, cost: int, now: float, limited: bool) -> None:
        """Admit a request: 1 request and `cost` tokens out of the buckets (in the ledger while `limited`)."""
        if limited:
            if self.requests.per_minute is not None:
                self.requests.level -= 1
            if self.tokens.per_minute is not None:
                self.tokens.level -= cost
            self.ledger.append((now, 1, cost))
        self.admitted += 1
        self.tokens_charged += cost
        if self.first_admit is None:
            self.first_admit = now

    def finish(
        self, refund: int, now: float, *, refund_unused: bool, rpm: float | None, tpm: float | None
    ) -> None:
        """An admitted answer is over: `refund` is its reservation minus what it used. With
        `refund_unused` the unused part goes back to the token bucket; without it (OpenAI's accounting)
        the admission charge stands. An excess (negative `refund`: an answer longer than the default
        reservation of a request without ``max_tokens``) is charged either way.

        Runs on the loop thread, without the lock: the buckets are only touched on the loop thread, and
        `refunded` is only written here (`reset` moves a baseline instead of zeroing it)."""
        self.last_done = now
        if refund < 0 or (refund and refund_unused):
            self.refunded += refund
            tb = self.tokens
            if tb.per_minute is not None and tb.per_minute == tpm:
                tb.give_back(refund, now)
            if rpm is not None or tpm is not None:
                self.ledger.append((now, 0, -refund))

    def headers(self) -> dict[str, str]:
        """The x-ratelimit-* headers for the buckets as they are (after `sync`): limits, then remaining,
        then resets, each for the requests, then the tokens, when that bucket's limit is set."""
        named = [
            (n, b)
            for n, b in (("requests", self.requests), ("tokens", self.tokens))
            if b.per_minute is not None
        ]
        return {
            f"x-ratelimit-{field}-{name}": value(bucket)
            for field, value in (
                ("limit", Bucket.limit),
                ("remaining", Bucket.remaining),
                ("reset", Bucket.reset),
            )
            for name, bucket in named
        }

    def stats(self) -> dict[str, Any]:
        return {
            "admitted": self.admitted,
            "rejected_429": self.rejected,
            "tokens_charged": self.tokens_charged - self.refunded,
            "first_admit": self.first_admit,
            "last_done": self.last_done,
            "faults": dict(self.fault_counts),
        }

    def reset(self) -> None:
        """Zero the counters and the ledger (the buckets are kept)."""
        self.admitted = self.rejected = 0
        self.tokens_charged = self.refunded  # so that tokens_charged - refunded starts at 0
        self.first_admit = self.last_done = None
        self.fault_counts = {}
        self.ledger = []


class Charge:
    """The settlement of an admitted answer: `settle` calls `finish(refund)` once, just before the last
    bytes of the answer are written (so a client that has the whole answer also sees any refund, see
    `FakeOpenAI.refund_unused`, in `stats` and in the next response's headers), or when the answer ends
    early. `refund` is the reservation until the answer's length is known, then the reservation minus the
    completion tokens. A request that was not charged (`admitted` false) has nothing to settle."""

    __slots__ = ("finish", "refund", "settled")

    def __init__(self, finish: Callable[[int], None], refund: int, *, admitted: bool = True) -> None:
        self.finish = finish
        self.refund = refund
        self.settled = not admitted

    def settle(self) -> None:
        if not self.settled:
            self.settled = True
            self.finish(self.refund)


def rate_limited(
    bucket: Bucket, model: str, which: str, wait: float, cost: int, rl: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The 429 (body, headers) for a request that must wait `wait` seconds for `bucket` (`which` is
    ``"requests"`` or ``"tokens"``), worded as OpenAI's, with ``retry-after`` (whole seconds, rounded up)
    and ``retry-after-ms`` before the `rl` headers."""
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
    return error_body(message, which, "rate_limit_exceeded"), headers
