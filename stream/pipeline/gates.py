"""Gates a job passes through before and after it is asked: the run's budgets, as small strategies.

Each gate may refuse a job before it is asked (`admit` returns False and the worker stops taking work) and
is told of every outcome (`settle`). The per-request limits (requests and tokens a minute, the shared
cool-down after a 429, the circuit breaker) are the client pool's gates, passed on every attempt
(`stream.limits`, `stream.breaker`).

- `CostGate` (--max-cost): a job is admitted only if what was spent plus the worst case of every request in
  flight, this one included, stays within the budget.
- `FailureGate` (--max-failures): the run stops once that many snippets have failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..errors import ExitCode
from ..prices import Price
from .control import Control
from .counting import TokenCounter
from .messages import Answered, Failure, Job
from .summary import Summary

__all__ = ["Gate", "CostGate", "FailureGate", "gates_for"]


class Gate(Protocol):
    async def admit(self, job: Job) -> bool: ...

    def settle(self, job: Job, outcome: Answered | Failure | None) -> None:
        """After the job, asked (an outcome) or not (None: the run is stopping)."""


@dataclass(eq=False, kw_only=True)
class CostGate:
    limit: float
    price: Price
    max_tokens: int
    counter: TokenCounter
    summary: Summary
    control: Control
    reserved: float = 0.0  # what requests in flight may still cost
    _held: dict[int, float] = field(default_factory=dict)

    async def admit(self, job: Job) -> bool:
        worst = self.price.cost(await self.counter.prompt_of(job), self.max_tokens)
        spent = self.summary.spent(self.price)
        if spent + self.reserved + worst > self.limit:
            if not self.control.stopping:
                self.control.err(
                    f"stopping: ${spent:.4f} spent and ${self.reserved:.4f} in flight; the next request "
                    f"could pass --max-cost {self.limit:g} (a rerun goes on from here)"
                )
                self.control.stop(f"--max-cost {self.limit:g} reached", exit_code=ExitCode.OK)
            return False
        self.reserved += worst
        self._held[id(job)] = worst
        return True

    def settle(self, job: Job, outcome: Answered | Failure | None) -> None:
        self.reserved -= self._held.pop(id(job), 0.0)


@dataclass(eq=False)
class FailureGate:
    limit: int
    control: Control
    failures: int = 0

    async def admit(self, job: Job) -> bool:
        return True

    def settle(self, job: Job, outcome: Answered | Failure | None) -> None:
        if not isinstance(outcome, Failure):
            return
        self.failures += 1
        if self.failures >= self.limit and not self.control.stopping:
            self.control.err(f"stopping: {self.limit} snippets failed (--max-failures); a rerun retries them")
            self.control.stop(f"--max-failures {self.limit} reached", exit_code=ExitCode.FAILED)


def gates_for(
    *,
    max_cost: float | None,
    max_failures: int | None,
    price: Price | None,
    max_tokens: int,
    counter: TokenCounter,
    summary: Summary,
    control: Control,
) -> list[Gate]:
    """The run's gates from its options (a budget that is not set is no gate)."""
    gates: list[Gate] = []
    if max_cost is not None and price is not None:
        gates.append(
            CostGate(
                limit=max_cost,
                price=price,
                max_tokens=max_tokens,
                counter=counter,
                summary=summary,
                control=control,
            )
        )
    if max_failures:
        gates.append(FailureGate(max_failures, control))
    return gates
