"""One job's request, from the planned prompt to an answer or a failure with its reason.

Layered like httpx's send path, each step one concern calling the next:

```
ask            the context gate: a prompt that cannot fit the model is not sent (too_long_for_model);
│              with --task judge, the accepted answer is then judged (`stream.pipeline.judging`)
└ _structured  a structured task's reply parsed against its schema, asked once more when it does not parse
  └ _whole     an empty answer is a failure (reasoning_used_budget, truncated, empty_answer);
               --retry-truncated asks once more with twice the tokens
    └ _negotiated  a 400 that teaches something rewrites the run's shape and resends (stream.negotiate);
                   a context overflow teaches the context size
      └ EndpointPool.complete  which endpoint; moved to another when one fails or is taken out (stream.pool)
        └ ClientPool.complete   retries, rate limits, the circuit breaker (stream.client)
```
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import (
    AnswerRejected,
    APIConnectionError,
    APIError,
    AuthError,
    BudgetExceeded,
    CircuitOpen,
    ContextOverflow,
    NotFoundError,
    QuotaExceeded,
    StructuredError,
)
from ..judge import TEMPLATE as JUDGE_TEMPLATE
from ..negotiate import ContextBudget, FormatLadder, lesson_from
from ..prompt import parse_structured
from ..request import Shape, build_body, reask
from ..sse import reasoning_tokens
from .counting import TokenCounter
from .judging import Judging
from .messages import Answered, Failure, Job, Task

if TYPE_CHECKING:
    from ..config import Config
    from ..pool import EndpointPool
    from ..sse import Completion

__all__ = ["Asker"]

_LESSONS = 4  # rewrites one job may make before its 400 counts as a failure


@dataclass(slots=True)
class Trace:
    """What one job's attempts have been so far."""

    max_tokens: int
    attempts: int = 0
    history: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        self.history.append(f"attempt {self.attempts}: {line}")

    def failed(self, exc: APIError) -> None:
        self.attempts += exc.attempts
        self.history += exc.history or [f"{exc.reason}: {exc}"]


@dataclass(eq=False, kw_only=True)
class Asker:
    """Asks jobs through the client pool, keeping the run's shape and context budget up to date."""

    cfg: Config
    shape: Shape
    budget: ContextBudget
    pool: Callable[[], EndpointPool]  # made on first use: a run with nothing to send never builds one
    counter: TokenCounter
    count_usage: Callable[[dict[str, Any] | None], None]
    count_request: Callable[[], None]
    note: Callable[[str], None]
    _probe: anyio.Lock = field(default_factory=anyio.Lock, init=False)
    _probed: bool = field(default=True, init=False)
    _known: bool = field(default=False, init=False)
    _judging: Judging | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # llama.cpp's context size is asked for at once when the kind says so, else once an answer's
        # ``Server: llama.cpp`` header shows it (a generic loopback URL often is one)
        self._probed = self.cfg.endpoint_kind not in ("llamacpp", "generic")
        self._known = self.cfg.endpoint_kind == "llamacpp"
        if self.cfg.judge:
            self._judging = self._judge()

    def _judge(self) -> Judging:
        """The run's judge: the same endpoint and model, asked through this asker's own path."""
        cfg = self.cfg
        fingerprint = cfg.fingerprint(JUDGE_TEMPLATE)
        info = {"template": JUDGE_TEMPLATE.name, "fingerprint": fingerprint, "model": cfg.model}
        return Judging(
            task=Task(JUDGE_TEMPLATE, fingerprint, info),
            below=cfg.judge_reask_below,
            reasks=cfg.judge_reasks,
            ask=self._structured,
            too_long=self._too_long,
            new_trace=lambda: Trace(cfg.max_tokens),
            counter=self.counter,
            count_usage=self.count_usage,
            note=self.note,
        )

    def body(
        self, job: Job, *, max_tokens: int | None = None, fmt: str | None = None, followup: tuple = ()
    ) -> dict[str, Any]:
        """The body for `job` as the run's shape says now (`fmt` overrides its response format)."""
        cfg = self.cfg
        params = (
            cfg.params if max_tokens in (None, cfg.max_tokens) else {**cfg.params, "max_tokens": max_tokens}
        )
        shape = self.shape if fmt is None else replace(self.shape, response_format=fmt)
        template = job.task.template
        return build_body(
            api=cfg.api,
            model=cfg.model,
            system=job.system,
            user=job.user,
            params=params,
            stream=cfg.stream,
            shape=shape,
            schema=template.schema,
            schema_name=template.name,
            followup=followup,
        )

    async def ask(self, index: int, job: Job) -> Answered | Failure:
        """One job, all its attempts: an answer, or a failure with every attempt's reason.

        Aborting errors (401/403, 404, quota, a tripped breaker) are raised: the run stops."""
        trace = Trace(self.cfg.max_tokens)
        if not self._probed and (self._known or (self.pool().server or "").startswith("llama.cpp")):
            await self._props()
        try:
            too_long = await self._too_long(job)
            if too_long is not None:
                return Failure(job, "too_long_for_model", too_long, 0)
            answered = await self._structured(index, job, trace)
        except AnswerRejected as end:
            return Failure(job, end.reason, "\n".join(trace.history), trace.attempts)
        except (AuthError, NotFoundError, QuotaExceeded, CircuitOpen):
            raise
        except APIError as exc:
            trace.failed(exc)
            if not isinstance(exc, APIConnectionError):  # (the pool told the breaker of each of those)
                self.pool().breaker.failure(exc)
            return Failure(job, exc.reason, "\n".join(trace.history), trace.attempts)
        except BudgetExceeded as exc:
            return Failure(job, "exceeds_tpm", str(exc), trace.attempts)
        if self._judging is not None:  # (it keeps the answer whatever happens to the judge's requests)
            answered = await self._judging.judged(index, job, trace, answered)
        return answered

    async def _props(self) -> None:
        """llama.cpp's server tells its context size at ``GET /props`` (``default_generation_settings.n_ctx``,
        per slot); asked once: before the first request with ``--endpoint-kind llamacpp``, else after the
        first answer that names the server."""
        async with self._probe:  # the other workers wait here until it is known
            if self._probed:
                return
            base = (self.cfg.base_url or "").rstrip("/")
            root = base[: -len("/v1")] if base.endswith("/v1") else base
            props = await self.pool().get_json(root + "/props")
            self._probed = True
            settings = props.get("default_generation_settings") if isinstance(props, dict) else None
            n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
            if isinstance(n_ctx, int) and self.budget.learn_limit(n_ctx, "llama.cpp's /props"):
                self.note(f"note: the server's context holds {n_ctx} tokens (llama.cpp's /props)")

    async def _too_long(self, job: Job) -> str | None:
        budget = self.budget
        size = len(job.user.encode()) + len((job.system or "").encode())
        if not budget.may_not_fit(size):
            return None
        if job.prompt_tokens is None:
            job.prompt_tokens = await self.counter.prompt(job)
        if not budget.too_long(job.prompt_tokens):
            return None
        return (
            f"too_long_for_model: the prompt is about {round(job.prompt_tokens * budget.ratio)} tokens and the "
            f"model's context holds {budget.limit} ({budget.source}); not sent"
        )

    async def _structured(self, index: int, job: Job, trace: Trace, base: tuple = ()) -> Answered:
        """The answer, parsed for a structured task; `base`: follow-up messages (a judge's re-ask)."""
        schema = job.task.template.schema
        followup: tuple[dict[str, str], ...] = base
        while True:
            completion = await self._whole(index, job, trace, followup)
            data = None
            if schema is not None:
                try:
                    data = parse_structured(completion.text, schema)
                except StructuredError as exc:
                    trace.note(f"{exc.reason}: {exc}")
                    self.count_usage(completion.usage)  # paid for, though not the answer kept
                    if completion.finish_reason == "length":  # asking again would stop short again
                        trace.history.append(
                            f"the answer stopped at {trace.max_tokens} tokens, before its JSON was complete"
                        )
                        raise AnswerRejected("truncated") from None
                    if followup != base:
                        raise AnswerRejected(exc.reason) from None
                    followup = base + reask(completion.text, str(exc))
                    continue
            completion.attempts, completion.errors = trace.attempts, trace.history
            return Answered(job, completion, data)

    async def _whole(self, index: int, job: Job, trace: Trace, followup: tuple) -> Completion:
        cfg = self.cfg
        while True:
            completion = await self._negotiated(index, job, trace, followup)
            finish = completion.finish_reason
            if finish == "content_filter":
                trace.note("content_filter: the API withheld the answer")
                raise AnswerRejected("content_filter")
            if finish == "length" and cfg.retry_truncated and trace.max_tokens == cfg.max_tokens:
                trace.note(f"truncated at {trace.max_tokens} tokens; asking with {2 * trace.max_tokens}")
                self.count_usage(completion.usage)
                trace.max_tokens *= 2
                continue
            if completion.text.strip():
                return completion
            self.count_usage(completion.usage)
            reasoning = reasoning_tokens(completion.usage)
            if finish == "length" and reasoning:
                trace.note(
                    f"reasoning_used_budget: the model spent {reasoning} of its {trace.max_tokens} tokens "
                    "reasoning and had none left for the answer (raise --max-tokens or lower --reasoning-effort)"
                )
                raise AnswerRejected("reasoning_used_budget")
            if finish == "length":
                trace.note(f"truncated: the answer was empty when it stopped at {trace.max_tokens} tokens")
                raise AnswerRejected("truncated")
            trace.note(f"empty_answer: the API answered with no text (finish_reason {finish})")
            raise AnswerRejected("empty_answer")

    async def _negotiated(self, index: int, job: Job, trace: Trace, followup: tuple) -> Completion:
        pool = self.pool()
        limits = pool.limits
        if job.prompt_tokens is None and limits.counts_tokens:
            job.prompt_tokens = await self.counter.prompt(job)
        ladder = FormatLadder(self.shape, enabled=self.cfg.response_format == "auto")
        learned: set[Any] = set()
        refused: APIError | None = None  # the last 400 that sent this job down the format ladder
        while True:
            body = self.body(job, max_tokens=trace.max_tokens, fmt=ladder.tried, followup=followup)
            reserve = (job.prompt_tokens or 0) + trace.max_tokens
            try:
                completion = await pool.complete(
                    body, reserve_tokens=reserve, worker=index, on_attempt=self.count_request
                )
            except ContextOverflow as exc:
                await self._learn_context(job, exc)
                raise
            except APIError as exc:
                if exc.status != 400:
                    raise
                lesson = lesson_from(exc, body)
                if lesson is not None and lesson not in learned and len(learned) < _LESSONS:
                    learned.add(lesson)
                    trace.failed(exc)
                    if lesson.apply(self.shape):
                        self.note(
                            f"note: the API refused a parameter ({exc}); {lesson.describe()} from now on"
                        )
                    continue
                sent = (body.get("response_format") or {}).get("type")
                if ladder.step(sent) is not None:
                    trace.failed(exc)
                    refused = exc
                    continue
                raise
            trace.attempts += completion.attempts
            trace.history += completion.errors
            level = ladder.confirm()
            if level is not None:
                self.note(
                    f"note: the API refused response_format with 400s ({refused}) and answered {level}: "
                    f"now sending {level} for structured tasks"
                )
            used = (completion.usage or {}).get("total_tokens")
            if used is None and limits.counts_tokens:
                used = (job.prompt_tokens or 0) + await self.counter.text(completion.text)
            if used is not None:  # (to the limiter of the endpoint that answered)
                pool.refund(completion, reserve - int(used))
            prompt_used = (completion.usage or {}).get("prompt_tokens")
            if job.prompt_tokens and isinstance(prompt_used, int):
                self.budget.calibrate(job.prompt_tokens, prompt_used)
            return completion

    async def _learn_context(self, job: Job, exc: ContextOverflow) -> None:
        if exc.prompt_tokens is not None:
            if job.prompt_tokens is None:
                job.prompt_tokens = await self.counter.prompt(job)
            self.budget.calibrate(job.prompt_tokens, exc.prompt_tokens)
        if self.budget.learn_limit(exc.limit, "the server's context-overflow error"):
            self.note(
                f"note: the endpoint's context holds {exc.limit} tokens (from its error); longer prompts are "
                "left out as too_long_for_model"
            )
