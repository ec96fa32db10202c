"""Request and token budgets shared by all workers.

Budgets are per minute, as API providers state them, and enforced with aiolimiter's leaky bucket. A request
reserves its prompt tokens plus ``max_tokens`` before it is sent (the most it can cost); a reservation larger
than the whole budget can never fit, so it fails at once rather than waiting forever.
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter

__all__ = ["Limits", "BudgetExceeded"]


class BudgetExceeded(Exception):
    """A single request needs more tokens than the per-minute budget allows."""


class Limits:
    def __init__(self, *, rpm: float | None = None, tpm: float | None = None) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._requests = AsyncLimiter(rpm, 60) if rpm else None
        self._tokens = AsyncLimiter(tpm, 60) if tpm else None

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of `tokens` tokens fits both budgets."""
        if self._tokens is not None:
            if tokens > self._tokens.max_rate:
                raise BudgetExceeded(f"request needs {tokens} tokens but --tpm is {self.tpm:g}")
            await self._tokens.acquire(tokens)
        if self._requests is not None:
            await self._requests.acquire()
