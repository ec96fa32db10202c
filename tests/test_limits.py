"""The shared budgets: pacing, what is believed about refunds, adaptation to rate-limit headers and to 429s.

The limiter's clocks (`anyio.current_time`/`anyio.sleep` and `time.monotonic`, as `stream.limits` sees
them) run on a virtual clock here: a wait advances it by exactly the time asked, so pacing is asserted
exactly, without the wall clock.
"""

from __future__ import annotations

import types

import anyio
import pytest

import stream.limits
from stream.limits import BudgetExceeded, Limits, parse_duration

JITTER = stream.limits._JITTER_SECONDS  # the refill each request leaves in the bucket (0.1 s)


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(seconds, 1e-9)  # a real clock always moves on: float rounding cannot stall it
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    c = VirtualClock()
    fake_anyio = types.SimpleNamespace(current_time=c.time, sleep=c.sleep, Lock=anyio.Lock)
    monkeypatch.setattr(stream.limits, "anyio", fake_anyio)
    monkeypatch.setattr(stream.limits, "time", types.SimpleNamespace(monotonic=c.time))
    return c


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1m30.5s", 90.5), ("2h0m0s", 7200.0), ("0.5", 0.5)],
)
def test_openai_reset_durations_are_read(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "1x", "s1"])
def test_unreadable_durations_are_none(text):
    assert parse_duration(text) is None


async def test_requests_are_paced_at_the_configured_rate(clock):
    limits = Limits(rpm=600)  # 10/s, a burst of 10
    started = clock.now
    for _ in range(15):
        await limits.acquire(0)
    # 9 at once (each leaves JITTER s of refill in the bucket), then 6 more at 10/s, the first of them
    # once the bucket holds one request and the jitter reserve
    assert clock.now - started == pytest.approx(JITTER + 0.5)


async def test_tokens_are_paced_at_the_configured_rate(clock):
    limits = Limits(tpm=6000)  # 100 tokens/s, a bucket of 100
    started = clock.now
    for _ in range(7):
        await limits.acquire(50)
    # 1 from the full bucket (a second would leave less than JITTER s of refill), then one every 0.5 s
    assert clock.now - started == pytest.approx(JITTER + 2.5)


async def test_a_request_larger_than_the_minute_budget_fails_at_once(clock):
    limits = Limits(tpm=1000)
    with pytest.raises(BudgetExceeded, match="1001 tokens"):
        await limits.acquire(1001)
    assert clock.slept == []


async def test_a_request_larger_than_the_burst_goes_once_the_bucket_is_full(clock):
    limits = Limits(tpm=6000)  # 100 tokens/s, so a 1 s bucket holds 100
    await limits.acquire(500)  # more than the bucket, less than the minute: goes, leaving a debt
    assert clock.slept == []
    assert limits.tokens.level == pytest.approx(-400)
    await limits.acquire(500)  # waits until the bucket is full again: 5 s
    assert sum(clock.slept) == pytest.approx(5.0)


# ---- refunds: never on the answer's word --------------------------------------------------------------


async def test_unused_tokens_are_not_given_back_on_the_answers_word(clock):
    limits = Limits(tpm=6000)
    await limits.acquire(100)
    assert limits.tokens.level == pytest.approx(0)
    limits.refund(80)  # the answer used 20 of its 100
    assert limits.tokens.level == pytest.approx(0)  # OpenAI keeps the whole admission charge
    assert limits.refunds_withheld == 80
    started = clock.now
    await limits.acquire(100)
    assert clock.now - started == pytest.approx(1.0)  # a whole second, as if nothing had come back


async def test_an_answer_over_its_reservation_is_charged_at_once(clock):
    limits = Limits(tpm=6000)
    await limits.acquire(50)
    limits.refund(-30)  # it used 30 more than reserved
    assert limits.tokens.level == pytest.approx(20)
    assert limits.refunds_withheld == 0


async def test_a_refund_is_believed_once_the_servers_remaining_shows_it(clock):
    limits = Limits(tpm=6000)  # a bucket of 100
    first = await limits.acquire(60)
    second = await limits.acquire(30)
    limits.refund(40)  # the first answer used 20 of its 60: not believed yet
    assert limits.tokens.level == pytest.approx(10)
    # The server did give the 40 back before it admitted the second: 100 - 60 + 40 - 30 = 50 left.
    limits.observe({"x-ratelimit-limit-tokens": "6000", "x-ratelimit-remaining-tokens": "50"}, second)
    assert limits.tokens.level == pytest.approx(50)
    # The first answer's headers, arriving late, knew less (they were counted before the refund): the
    # newer count stands.
    limits.observe({"x-ratelimit-limit-tokens": "6000", "x-ratelimit-remaining-tokens": "40"}, first)
    assert limits.tokens.level == pytest.approx(50)
    # A server that keeps the charge says so too: the next count shows no refund, and wins.
    third = await limits.acquire(20)
    limits.observe({"x-ratelimit-limit-tokens": "6000", "x-ratelimit-remaining-tokens": "10"}, third)
    assert limits.tokens.level == pytest.approx(10)


async def test_remaining_sets_the_bucket_in_both_directions_capped_at_its_capacity(clock):
    limits = Limits(rpm=6000)  # a bucket of 100
    first = await limits.acquire(0)
    for _ in range(4):
        await limits.acquire(0)
    # The server had 50 left when it admitted the first; the 4 sent after it are not in that count.
    limits.observe({"x-ratelimit-remaining-requests": "50"}, first)
    assert limits.requests.level == pytest.approx(46)
    last = await limits.acquire(0)
    limits.observe({"x-ratelimit-remaining-requests": "90"}, last)  # it counted fewer than we did
    assert limits.requests.level == pytest.approx(90)
    limits.observe({"x-ratelimit-remaining-requests": "5000"}, last)  # a per-minute bucket: more than ours
    assert limits.requests.level == pytest.approx(100)


async def test_limits_are_learned_from_headers_and_the_users_stay_a_ceiling(clock):
    limits = Limits()
    ticket = await limits.acquire(10)
    limits.observe({"x-ratelimit-limit-requests": "3000", "x-ratelimit-limit-tokens": "300000"}, ticket)
    assert limits.requests.per_minute == 3000 and limits.tokens.per_minute == 300000
    assert limits.counts_tokens
    capped = Limits(rpm=100)
    capped.observe({"x-ratelimit-limit-requests": "3000"})
    assert capped.requests.per_minute == 100


# ---- 429s ---------------------------------------------------------------------------------------------


async def test_a_429_pauses_everyone_once_per_burst(clock):
    limits = Limits()
    tickets = [await limits.acquire(0) for _ in range(3)]
    pause = limits.rate_limited_for(0.2, {}, reserved=0, base=0.01, ticket=tickets[0])
    assert 0.2 <= pause <= 0.22  # the server's time, and up to 10% of jitter
    # 429s for requests sent before the cool-down started are the same signal: no longer pause
    again = limits.rate_limited_for(0.2, {}, reserved=0, base=0.01, ticket=tickets[2])
    assert again <= pause + 1e-9
    assert limits.rate_limited == 2
    started = clock.now
    await limits.acquire(0)
    assert clock.now - started == pytest.approx(pause)


async def test_a_429_gives_the_reservation_back_only_when_its_headers_show_it(clock):
    limits = Limits(tpm=6000)
    ticket = await limits.acquire(100)
    limits.rate_limited_for(0.01, {}, reserved=100, base=0.01, ticket=ticket)
    assert limits.tokens.level == pytest.approx(0)  # the server said nothing: still taken
    limits = Limits(tpm=6000)
    ticket = await limits.acquire(100)
    headers = {"x-ratelimit-limit-tokens": "6000", "x-ratelimit-remaining-tokens": "100"}  # it took nothing
    limits.rate_limited_for(0.01, headers, reserved=100, base=0.01, ticket=ticket)
    assert limits.tokens.level == pytest.approx(100)


async def test_without_headers_a_429_cuts_the_rate_and_successes_add_it_back_step_by_step(clock):
    limits = Limits(rpm=60_000)
    ticket = None
    for _ in range(50):
        ticket = await limits.acquire(0)
        clock.now += 0.01  # 100 requests/s: the rate the 429s answer
    for _ in range(30):
        limits.success()
    for _ in range(3):  # 3 of 33 answers were 429s: too many to be noise
        limits.rate_limited_for(0.001, {}, reserved=0, base=0.01)
    limits.rate_limited_for(0.001, {}, reserved=0, base=0.01, ticket=ticket)
    cut = limits.requests.per_minute
    assert cut is not None and cut < 6000 * 0.75  # 70% of the 6,000/min that met the 429s
    rates = [cut]
    for _ in range(100):
        limits.success()
        rates.append(limits.requests.per_minute)
    steps = {round(b - a, 6) for a, b in zip(rates, rates[1:])}
    assert len(steps) == 1 and steps.pop() > 0  # additive: the same step every time, not a percentage
    assert cut < rates[-1] <= 60_000


async def test_a_stray_429_among_many_answers_does_not_cut_the_rate(clock):
    limits = Limits(rpm=60_000)
    ticket = None
    for _ in range(50):
        ticket = await limits.acquire(0)
    for _ in range(49):
        limits.success()
    limits.rate_limited_for(0.001, {}, reserved=0, base=0.01, ticket=ticket)
    assert limits.requests.per_minute == 60_000


# ---- against a server that keeps the charge ------------------------------------------------------------


class KeepsTheCharge:
    """A server's token bucket as OpenAI describes it: prompt + max_tokens at admission, nothing back.
    It runs on the same virtual clock and answers with OpenAI's headers."""

    def __init__(self, clock: VirtualClock, tpm: float) -> None:
        self.clock, self.rate, self.cap = clock, tpm / 60, tpm / 60
        self.level, self.stamp = self.cap, clock.now
        self.admitted = self.refused = 0

    def admit(self, cost: int) -> tuple[bool, dict[str, str]]:
        self.level = min(self.cap, self.level + (self.clock.now - self.stamp) * self.rate)
        self.stamp = self.clock.now
        ok = self.level >= cost
        if ok:
            self.level -= cost
            self.admitted += 1
        else:
            self.refused += 1
        return ok, {
            "x-ratelimit-limit-tokens": str(int(self.rate * 60)),
            "x-ratelimit-remaining-tokens": str(max(0, int(self.level))),
        }


@pytest.mark.parametrize("headers", [True, False], ids=["headers", "no-headers"])
async def test_a_server_that_keeps_the_charge_is_never_overrun(clock, headers):
    # Each request reserves 20 + 100 tokens and its answer uses 20 of the 100: a limiter that gave the
    # unused 80 back would send 2.5 times what this server admits.
    server = KeepsTheCharge(clock, tpm=60_000)  # 1,000 tokens/s, a bucket of 1,000
    limits = Limits(tpm=60_000)
    for _ in range(100):
        ticket = await limits.acquire(120)
        ok, answer_headers = server.admit(120)
        assert ok, f"refused after {server.admitted} admissions"
        if headers:
            limits.observe(answer_headers, ticket)
        limits.refund(80)
    assert server.refused == 0
    assert clock.now - 1000.0 == pytest.approx(99 * 120 / 1000 - 1.0 + 0.12, abs=0.2)  # at its pace
