"""The judge step of a job (``--task judge``): an accepted answer scored, a low score asked once more.

Runs inside the job, after the asker accepted the task's answer and before the outcome goes to the writer,
so a record is committed once, with its judgment:

```
judged     the answer judged; while its score is below --judge-reask-below (at most --judge-reasks times)
│          the task is asked again with the judge's finding as a follow-up, and the new answer judged
└ _judge   the judge request (`stream.judge`) through the asker's own path: the context gate, the schema
           re-ask, truncation, 400 lessons, the endpoint pool and its retries
```

Whatever was paid for is kept: a judge request that fails (after its retries) leaves the answer unjudged,
with the reason in ``judge.unjudged``; a re-ask that fails keeps the earlier answer and its judgment. Every
judge answer's usage is counted in the run's tokens and cost, as is each answer a re-ask replaced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import (
    AnswerRejected,
    APIError,
    AuthError,
    BudgetExceeded,
    CircuitOpen,
    NotFoundError,
    QuotaExceeded,
)
from ..judge import Judgment, followup, judgment_of, render
from .counting import TokenCounter
from .messages import Answered, Job, Task

if TYPE_CHECKING:
    from .asker import Trace

__all__ = ["Judging"]

_ABORTING = (AuthError, NotFoundError, QuotaExceeded, CircuitOpen)
# what a failed request raises out of the asker's path (the aborting ones are caught first)
_FAILED = (AnswerRejected, APIError, BudgetExceeded)

#: The task's path with a follow-up: (worker index, job, its trace, follow-up messages) → the answer.
Ask = Callable[[int, Job, "Trace", tuple[dict[str, str], ...]], Awaitable[Answered]]


@dataclass(eq=False, kw_only=True)
class Judging:
    """The judge of one run: its task (template, fingerprint) and when a low score asks again."""

    task: Task
    below: int  # --judge-reask-below: a score under it is asked again (0: never)
    reasks: int  # --judge-reasks: how many times, at most, per record
    ask: Ask
    too_long: Callable[[Job], Awaitable[str | None]]
    new_trace: Callable[[], Trace]
    counter: TokenCounter
    count_usage: Callable[[dict[str, Any] | None], None]
    note: Callable[[str], None]

    async def judged(self, index: int, job: Job, trace: Trace, answered: Answered) -> Answered:
        """`answered` (or the answer of a re-ask) with its judgment."""
        judgment = await self._judge(index, job, answered)
        history: list[dict[str, Any]] = []
        for _ in range(self.reasks if self.below > 0 else 0):
            if not judgment.low(self.below):
                break
            step = {"score": judgment.score, "error": judgment.error}
            trace.note(f"judge: score {judgment.score} ({judgment.error or 'no error named'}); asked again")
            try:
                again = await self.ask(index, job, trace, followup(answered.completion.text, judgment))
            except _ABORTING as exc:
                history.append({**step, "reask": f"not answered: {type(exc).__name__}: {exc}"})
                break
            except _FAILED as exc:
                if isinstance(exc, APIError):
                    trace.failed(exc)
                history.append({**step, "reask": f"failed: {_reason(exc)} (the earlier answer is kept)"})
                break
            self.count_usage(answered.completion.usage)  # the replaced answer was paid for
            history.append({**step, "reask": "answered"})
            answered = again
            judgment = await self._judge(index, job, answered)
        judgment.reasks = history
        answered.completion.attempts = trace.attempts
        answered.judgment = judgment
        return answered

    async def _judge(self, index: int, job: Job, answered: Answered) -> Judgment:
        system, user = render(job.user, answered.completion.text)
        ask = Job(job.record_id, job.snippet, job.occurrence_id, None, system, user, self.task)
        trace = self.new_trace()
        try:
            too_long = await self.too_long(ask)
            if too_long is not None:
                return Judgment(None, unjudged=too_long)
            reply = await self.ask(index, ask, trace, ())
        except _ABORTING as exc:
            self.note(f"note: a judge request was refused ({exc}); the answer is kept unjudged")
            return Judgment(None, attempts=trace.attempts, unjudged=f"{type(exc).__name__}: {exc}")
        except _FAILED as exc:
            if isinstance(exc, APIError):
                trace.failed(exc)
            detail = trace.history[-1] if trace.history else str(exc)
            return Judgment(None, attempts=trace.attempts, unjudged=f"{_reason(exc)}: {detail}")
        c = reply.completion
        usage = c.usage
        if not usage:  # counted locally, as the writer does for an answer
            prompt, text = await self.counter.prompt(ask), await self.counter.text(c.text)
            usage = {"prompt_tokens": prompt, "completion_tokens": text, "total_tokens": prompt + text}
        self.count_usage(usage)
        return judgment_of(reply.data, model=c.model, usage=usage, attempts=trace.attempts)


def _reason(exc: AnswerRejected | APIError | BudgetExceeded) -> str:
    return "exceeds_tpm" if isinstance(exc, BudgetExceeded) else exc.reason
