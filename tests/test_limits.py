"""The shared budgets: pacing, refunds, adaptation to rate-limit headers and to 429s."""

from __future__ import annotations

import anyio
import pytest

from stream.limits import BudgetExceeded, Limits, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1m30.5s", 90.5), ("2h0m0s", 7200.0), ("0.5", 0.5)],
)
def test_openai_reset_durations_are_read(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "1x", "s1"])
def test_unreadable_durations_are_none(text):
    assert parse_duration(text) is None


async def test_requests_are_paced_at_the_configured_rate():
    limits = Limits(rpm=600)  # 10/s, a burst of 10
    started = anyio.current_time()
    for _ in range(15):
        await limits.acquire(0)
    elapsed = anyio.current_time() - started
    assert 0.4 <= elapsed < 1.0  # 10 at once, then 5 more at 10/s


async def test_a_request_larger_than_the_minute_budget_fails_at_once():
    limits = Limits(tpm=1000)
    with anyio.fail_after(1):
        with pytest.raises(BudgetExceeded, match="1001 tokens"):
            await limits.acquire(1001)


async def test_a_request_larger_than_the_burst_goes_once_the_bucket_is_full():
    limits = Limits(tpm=6000)  # 100 tokens/s, so a 1 s bucket holds 100
    with anyio.fail_after(2):
        await limits.acquire(500)  # more than the bucket, less than the minute: goes, leaving a debt
    assert limits.tokens.level == pytest.approx(-400, abs=5)


async def test_unused_tokens_are_given_back():
    limits = Limits(tpm=6000)
    await limits.acquire(100)
    assert limits.tokens.level == pytest.approx(0, abs=2)
    limits.refund(80)
    assert limits.tokens.level == pytest.approx(80, abs=2)


async def test_limits_are_learned_from_headers_and_the_users_stay_a_ceiling():
    limits = Limits()
    ticket = await limits.acquire(10)
    limits.observe({"x-ratelimit-limit-requests": "3000", "x-ratelimit-limit-tokens": "300000"}, ticket)
    assert limits.requests.per_minute == 3000 and limits.tokens.per_minute == 300000
    capped = Limits(rpm=100)
    capped.observe({"x-ratelimit-limit-requests": "3000"})
    assert capped.requests.per_minute == 100


async def test_remaining_pulls_the_bucket_down_counting_requests_sent_since():
    limits = Limits(rpm=6000)  # a bucket of 100
    first = await limits.acquire(0)
    for _ in range(4):
        await limits.acquire(0)
    # The server had 50 left when it admitted the first; the 4 sent after it are not in that count.
    limits.observe({"x-ratelimit-remaining-requests": "50"}, first)
    assert limits.requests.level == pytest.approx(46, abs=0.5)


async def test_a_429_pauses_everyone_once_per_burst():
    limits = Limits()
    tickets = [await limits.acquire(0) for _ in range(3)]
    pause = limits.rate_limited_for(0.2, {}, reserved=0, base=0.01, ticket=tickets[0])
    assert 0.2 <= pause <= 0.23
    # 429s for requests sent before the cool-down started are the same signal: no longer pause
    again = limits.rate_limited_for(0.2, {}, reserved=0, base=0.01, ticket=tickets[2])
    assert again <= pause
    started = anyio.current_time()
    await limits.acquire(0)
    assert anyio.current_time() - started >= 0.15


async def test_without_headers_a_429_cuts_the_rate_and_successes_probe_back_up():
    limits = Limits(rpm=60_000)
    ticket = None
    for _ in range(50):
        ticket = await limits.acquire(0)
    for _ in range(30):
        limits.success()
    for _ in range(3):  # 3 of 33 answers were 429s: too many to be noise
        limits.rate_limited_for(0.001, {}, reserved=0, base=0.01)
    limits.rate_limited_for(0.001, {}, reserved=0, base=0.01, ticket=ticket)
    cut = limits.requests.per_minute
    assert cut is not None and cut < 60_000 * 0.75
    for _ in range(100):
        limits.success()
    assert cut < limits.requests.per_minute <= 60_000


async def test_a_stray_429_among_many_answers_does_not_cut_the_rate():
    limits = Limits(rpm=60_000)
    ticket = None
    for _ in range(50):
        ticket = await limits.acquire(0)
    for _ in range(49):
        limits.success()
    limits.rate_limited_for(0.001, {}, reserved=0, base=0.01, ticket=ticket)
    assert limits.requests.per_minute == 60_000
