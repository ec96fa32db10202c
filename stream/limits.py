"""Request and token budgets shared by all workers, held to the server's own account of them.

Budgets are token buckets that refill continuously (per minute, as providers state limits) and hold about
one second of budget, since providers enforce per-minute limits over short windows: "60,000
requests/minute may be enforced as 1,000 requests/second" (https://help.openai.com/en/articles/6891753).

What a request costs. A request reserves its prompt tokens plus ``max_tokens`` before it is sent, at least
what OpenAI counts when it admits the request: "Your rate limit is calculated as the maximum of max_tokens
and the estimated number of tokens based on the character count of your request. Try to set the
max_tokens value as close to your expected response size as possible."
(https://platform.openai.com/docs/guides/rate-limits); Azure OpenAI's TPM limit is "based on the maximum
tokens estimated to be processed when the request is received" (prompt, ``max_tokens``, ``best_of``), not on
the billed count "computed after all processing is completed"
(https://learn.microsoft.com/azure/ai-services/openai/how-to/quota). Nothing comes back from such a
server when the answer is shorter. Others do settle on the real usage (OpenAI's Realtime API adjusts its
reservation "once the Response is completed"; LiteLLM's proxy counts ``usage.total_tokens`` after the
call). A client cannot tell the two apart from the answer, so the unused part (`Limits.refund`) is never
given back on trust: the only evidence that a server returned it is the server's own
``x-ratelimit-remaining-tokens``.

The server's count is the truth. Three sources set the budget, the lowest winning: the user's
``--rpm``/``--tpm`` (a ceiling), the server's ``x-ratelimit-limit-*`` headers, and its
``x-ratelimit-remaining-*`` headers, which set our bucket to what the server says is left, down *or up*
(minus what we sent after the request they answer; the bucket then refills at the limit's rate, so
``reset-*`` adds nothing; `parse_duration` reads it for tools that want it). Against a server that keeps
the whole charge that is exact; against one that refunds, its next headers show the refund and we use it.
With no headers at all we keep the whole charge (conservative: a refunding server is then used below its
limit, never over it). Each request also leaves a tenth of a second of refill in the bucket
(`_JITTER_SECONDS`), so requests that reach the server closer together than they were sent find room.

A 429 starts one shared cool-down: every worker waits until the server's retry time instead of each
retrying on its own; the pause grows while 429s repeat and shrinks again with successes. When the server
sends no limit headers and 429s become a real share of the answers, the request rate is cut to 70% and
raised again by a fixed step per answer (additive increase, multiplicative decrease: AIMD).

These buckets are not aiolimiter's: its `AsyncLimiter` has a rate fixed at construction and a level only its
own `acquire` moves, so neither the server's headers nor AIMD could steer it (README, "Dependencies").
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import anyio

from .errors import BudgetExceeded

__all__ = ["Limits", "Ticket", "BudgetExceeded", "parse_duration"]

_BURST_SECONDS = 1.0
# What a request leaves in the bucket, in seconds of refill: requests sent 1/rate apart can reach the
# server closer together than that (one waits on a busy connection, the next does not), and a server
# held at exactly zero refuses the early one. Kept in the server's bucket, this costs no throughput.
_JITTER_SECONDS = 0.1
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
        """Seconds until `amount` can be taken, leaving `_JITTER_SECONDS` of refill behind. A request
        larger than the bucket may go once it is full (leaving a debt), so it waits for the budget rather
        than forever."""
        if not self.per_minute:
            return 0.0
        need = min(amount + self.rate * _JITTER_SECONDS, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def set_limit(self, per_minute: float) -> None:
        limit = min(per_minute, self.ceiling) if self.ceiling else per_minute
        if limit != self.per_minute:
            was_unlimited = not self.per_minute
            self.per_minute = limit
            self.level = self.capacity if was_unlimited else min(self.level, self.capacity)


@dataclass(frozen=True, slots=True)
class Ticket:
    """What `Limits.acquire` handed out: the running totals of requests and tokens sent, this one included."""

    requests: int = 0
    tokens: int = 0


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
        self._sent = Ticket()
        self._episode = -1  # requests sent when the last cool-down began
        self._probing = False  # the request rate was learned from 429s, not set or told
        self._probe_step = 0.0  # requests/min added per answer while probing
        self._newest_seen = 0  # the newest request whose answer's remaining-* headers were applied
        self.refunds_withheld = 0  # unused tokens answers reported, never given back on their word
        self._send_times: deque[float] = deque(maxlen=4096)
        self._outcomes: deque[tuple[float, bool]] = deque(maxlen=4096)  # (time, was a 429)

    @property
    def counts_tokens(self) -> bool:
        """Whether reservations matter (a token budget is known), so prompts must be counted."""
        return bool(self.tokens.per_minute)

    async def acquire(self, tokens: int) -> Ticket:
        """Wait until one request of `tokens` tokens fits both budgets and no cool-down is running.

        Waiters are served first come, first served (anyio's Lock is fair)."""
        tpm = self.tokens.per_minute
        if tpm and tokens > tpm:
            raise BudgetExceeded(f"the request needs {tokens} tokens but the budget is {tpm:g} tokens/minute")
        if not (self.requests.per_minute or tpm or self._pause_until):
            # Nothing to enforce (yet): skip the lock, the per-request cost of an unlimited run.
            self._sent = Ticket(self._sent.requests + 1, self._sent.tokens + tokens)
            self._send_times.append(time.monotonic())
            return self._sent
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
            self._sent = Ticket(self._sent.requests + 1, self._sent.tokens + tokens)
            self._send_times.append(time.monotonic())
            return self._sent

    def delay(self, tokens: int) -> float:
        """Seconds `acquire(tokens)` would wait if called now (0: it would go at once; inf: it never fits);
        takes nothing. Waiters already queued make it wait too. Lets a pool of endpoints prefer one with room."""
        tpm = self.tokens.per_minute
        if tpm and tokens > tpm:
            return math.inf
        now = anyio.current_time()
        self.requests.refill(now)
        self.tokens.refill(now)
        wait = max(self._pause_until - now, self.requests.wait_for(1), self.tokens.wait_for(tokens))
        return max(wait, 1e-3) if self._lock.locked() else max(wait, 0.0)

    def refund(self, tokens: float) -> None:
        """An answer's usage came in `tokens` under its reservation (negative: over it).

        An excess is taken at once: a charge is always believed. What went unused is *not* given back:
        OpenAI keeps the whole admission charge, and a server that does return it says so in its next
        ``x-ratelimit-remaining-tokens``, which `observe` takes as the level. Until then it is only
        counted (`refunds_withheld`)."""
        if not tokens or not self.tokens.per_minute:
            return
        if tokens < 0:
            self.tokens.refill(anyio.current_time())
            self.tokens.level += tokens
        else:
            self.refunds_withheld += int(tokens)

    def observe(self, headers: Mapping[str, str], ticket: Ticket | None = None) -> None:
        """Adapt to the ``x-ratelimit-*`` headers of the response to the request `ticket` (any status).

        The server's ``remaining`` was counted when it admitted that request; what we sent after it was
        not in that count yet, so it is taken off, and our bucket is set to the rest, down or up (capped
        at its capacity): down when the server charged more than we reckoned (a prompt it counts longer,
        an answer over its reservation), up when it charged less or gave tokens back. The refill between
        the server's count and now is not credited, which errs on the safe side. The ``remaining`` of an
        answer to an older request than the newest already applied is left out (it knows less)."""
        if not self.adapt or (
            "x-ratelimit-limit-requests" not in headers
            and "x-ratelimit-remaining-requests" not in headers
            and "x-ratelimit-limit-tokens" not in headers
            and "x-ratelimit-remaining-tokens" not in headers
        ):
            return
        now = anyio.current_time()
        later = (
            Ticket()
            if ticket is None
            else Ticket(self._sent.requests - ticket.requests, self._sent.tokens - ticket.tokens)
        )
        # An answer to an older request than one already heard from (a long prompt's first byte comes
        # late) knows less: the newer count holds every charge it held, and every refund since.
        stale = ticket is not None and ticket.requests < self._newest_seen
        if ticket is not None and not stale:
            self._newest_seen = ticket.requests
        for bucket, kind, sent_since in (
            (self.requests, "requests", later.requests),
            (self.tokens, "tokens", later.tokens),
        ):
            limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
            if limit and limit > 0:
                bucket.refill(now)
                bucket.set_limit(limit)
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            if remaining is not None and bucket.per_minute and not stale:
                bucket.refill(now)
                # The server's count is the truth; answers sent since were already taken from ours.
                bucket.level = min(bucket.capacity, remaining - sent_since)

    def success(self) -> None:
        """An answer came back: relax the cool-down's growth and, if 429s taught us the rate, probe upward."""
        if self._strikes:
            self._strikes -= 1
        self._outcomes.append((time.monotonic(), False))
        bucket = self.requests
        if self._probing and bucket.per_minute:
            # Additive increase (a fixed step per answer: 0.2% of the rate before the last cut, so 150
            # answers climb back from the cut to it), multiplicative decrease on 429 (to 70%): the AIMD
            # rule that lets TCP find a link's capacity, used here to find a limit no header tells us.
            ceiling = bucket.ceiling or math.inf
            bucket.per_minute = min(ceiling, bucket.per_minute + self._probe_step)

    def rate_limited_for(
        self,
        retry_after: float | None,
        headers: Mapping[str, str],
        *,
        reserved: int,
        base: float,
        ticket: Ticket | None = None,
    ) -> float:
        """A 429: start (or extend) the shared cool-down. Returns it.

        The 429's own ``remaining`` headers (when it has them) set the budgets, which gives the refused
        request's reservation back if the server did not count it; without them it stays taken (the
        server said nothing, and the cool-down follows anyway). `reserved` is kept for callers.

        429s for requests sent before the current cool-down began are one signal, not many. For a new
        one: the server's retry time is trusted at first, and only 429s that keep coming add a growing
        pause of our own (up to 32 × `base`); when the server sends no limit headers, the request rate
        is also cut to 70% (and probed back up by `success`)."""
        self.rate_limited += 1
        self.observe(headers, ticket)
        now = anyio.current_time()
        self._outcomes.append((time.monotonic(), True))
        if ticket is not None and ticket.requests <= self._episode:
            return max(0.0, self._pause_until - now)
        self._episode = self._sent.requests
        self.requests.level = min(self.requests.level, 0.0)
        if "x-ratelimit-limit-requests" not in headers and "x-ratelimit-limit-tokens" not in headers:
            self._slow_down(now)
        self._strikes += 1
        grown = (
            0.0 if self._strikes == 1 and retry_after is not None else base * 2 ** min(self._strikes - 1, 5)
        )
        pause = max(retry_after if retry_after is not None else 0.0, grown)
        pause *= random.uniform(1.0, 1.1)  # so the workers do not all come back in the same instant
        self._pause_until = max(self._pause_until, now + pause)
        return pause

    def _slow_down(self, now: float) -> None:
        bucket = self.requests
        recent = self._recent_rate(now)
        if recent is None:  # a few lone requests cannot be what overran a limit: waiting is enough
            return
        mono = time.monotonic()
        window = [hit for t, hit in self._outcomes if mono - t <= 2.0]
        if len(window) < 20 or sum(window) < 0.05 * len(window):
            # A stray 429 among many answers is noise (a busy backend, a fault), not our rate: sending
            # faster than a limit makes a good share of answers 429s.
            return
        current = min(bucket.per_minute or math.inf, recent * 60)
        bucket.refill(now)
        bucket.per_minute = max(60.0, current * 0.7)
        self._probe_step = 0.002 * current
        bucket.level = min(bucket.level, 0.0)
        self._probing = True

    def _recent_rate(self, now: float) -> float | None:
        """Requests per second sent over the last two seconds (the rate that just met a 429), or None
        when there were too few to tell."""
        mono = time.monotonic()
        recent = [t for t in self._send_times if mono - t <= 2.0]
        if len(recent) < 8:
            return None
        return len(recent) / max(mono - recent[0], 0.1)  # one clock: the send times are monotonic


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
