"""The workers: N tasks taking jobs, passing them through the gates and the asker, sending the outcomes on.

An error that makes going on pointless (the key refused, the model missing, no quota, the breaker open) stops
the run at once with one message, however many workers meet it; what is in flight is not recorded as failed.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from ..errors import AuthError, CircuitOpen, ExitCode, NotFoundError, QuotaExceeded
from .asker import Asker
from .control import Control
from .gates import Gate
from .messages import Answered, Failure, Job, Outcome

__all__ = ["Workers"]

_ABORTING = (AuthError, NotFoundError, QuotaExceeded, CircuitOpen)


@dataclass(eq=False)
class Workers:
    count: int
    asker: Asker
    gates: list[Gate]
    control: Control

    async def run(self, jobs: ObjectReceiveStream[Job], outcomes: ObjectSendStream[Outcome]) -> None:
        with jobs, outcomes:
            async with anyio.create_task_group() as group:
                # stop() moves this deadline: in-flight requests get the grace period, then are cancelled.
                self.control.bind_workers(group.cancel_scope)
                for index in range(self.count):
                    group.start_soon(self._worker, index, jobs.clone(), outcomes.clone())

    async def _worker(
        self, index: int, jobs: ObjectReceiveStream[Job], outcomes: ObjectSendStream[Outcome]
    ) -> None:
        async with jobs, outcomes:
            async for job in jobs:
                if self.control.stopping or not await self._admit(job):
                    break
                outcome: Answered | Failure | None = None
                try:
                    outcome = await self.asker.ask(index, job)
                except _ABORTING as exc:
                    if not self.control.stopping:  # one message, however many workers meet the same error
                        self.control.err(f"error: {exc}")
                    self.control.stop(f"{type(exc).__name__}: {exc}", exit_code=ExitCode.ABORTED, grace=0)
                    return
                finally:
                    for gate in self.gates:
                        gate.settle(job, outcome)
                await outcomes.send(outcome)

    async def _admit(self, job: Job) -> bool:
        for gate in self.gates:
            if not await gate.admit(job):
                for earlier in self.gates[: self.gates.index(gate)]:
                    earlier.settle(job, None)
                return False
        return True
