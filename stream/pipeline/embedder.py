"""The embedder: embed jobs gathered into requests of many inputs, sent N at a time, a vector per job out.

In the embed pass the embedder stands where the workers stand (`graph.wire` takes either). A request takes
jobs in arrival order until it holds ``--embed-batch`` texts or ``--embed-batch-tokens`` tokens, or no job
has come for a moment (`LINGER`); `count` requests are in flight at once. The pool gives each request the
completions' limits (rpm: one request; tpm: its tokens), retries, breaker and endpoint moves
(`stream.pool`).

A text over the per-input limit is cut to it (OpenAI's 8,192 tokens). A server that refuses an input as too
long and says its limit and its count (llama.cpp does, for inputs over its physical batch) teaches a smaller
one: the refused input is cut and sent again, and later inputs are cut before they go; such a record says
``truncated``. A request the server refuses as a whole (a 400) is split in halves until the input it refuses
is alone, and only that one fails; but when that input is refused before any request was answered (and not
for its length), the server refuses the request itself (a parameter, the model), and the run stops saying
so. An error that makes going on pointless stops the run, as in the workers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from .. import embeddings
from ..errors import APIError, AuthError, CircuitOpen, ContextOverflow, ExitCode, NotFoundError, QuotaExceeded
from ..negotiate import ContextBudget
from .control import Control
from .counting import TokenCounter
from .messages import Embedded, Failure, Job, Outcome
from .summary import Summary

if TYPE_CHECKING:
    from ..pool import EndpointPool
    from ..prices import Price

__all__ = ["Embedder", "EmbedInput", "LINGER", "fit", "share", "spent"]

LINGER = 0.25  # seconds a part-filled request waits for more jobs before it goes
_ABORTING = (AuthError, NotFoundError, QuotaExceeded, CircuitOpen)
_MARGIN = 0.95  # of MAX_INPUT_TOKENS: our count (the run's tokenizer) may differ a little from the server's


class _Refused(Exception):
    """The server refused an embeddings request of one input before it answered any: it refuses them all."""


@dataclass(slots=True)
class EmbedInput:
    """One input of a request: its job, its token count, whether its text was cut to the per-input limit."""

    job: Job
    tokens: int
    truncated: bool = False


#: The per-input limit in our tokens, until a server says less (OpenAI's, with our margin).
DEFAULT_INPUT_LIMIT = int(embeddings.MAX_INPUT_TOKENS * _MARGIN)


async def fit(counter: TokenCounter, job: Job, limit: int = DEFAULT_INPUT_LIMIT) -> EmbedInput:
    """The job's text counted, and cut to `limit` tokens (ours) when it is over (OpenAI's limit: rare, a
    whole module; a local server's, learned from its refusal, may be much less: `Embedder`)."""
    tokens = await counter.text(job.user)
    truncated = False
    while tokens > limit:
        job.user = job.user[: int(len(job.user) * limit / tokens * 0.98)]
        tokens = await counter.text(job.user)
        truncated = True
    return EmbedInput(job, max(1, tokens), truncated)


def spent(answer: embeddings.Embeddings, total: int) -> int:
    """The tokens a request used, as the server reports them (`total`, our count, when it does not)."""
    return int(answer.usage.get("prompt_tokens") or answer.usage.get("total_tokens") or total)


def share(answer: embeddings.Embeddings, items: list[EmbedInput], total: int) -> list[Embedded]:
    """A vector per input of one request (in batch mode, of one line), with its share of the request's
    usage by its token count (`total`: theirs summed)."""
    used = spent(answer, total)
    out = []
    for item, vector in zip(items, answer.vectors, strict=True):
        part = round(used * item.tokens / total)
        out.append(
            Embedded(
                job=item.job,
                vector=vector,
                dimensions=answer.dimensions,
                model=answer.model,
                usage={"prompt_tokens": part, "total_tokens": part},
                request_inputs=len(items),
                attempts=answer.attempts,
                latency_s=answer.latency_s,
                endpoint=answer.endpoint,
                truncated=item.truncated,
            )
        )
    return out


@dataclass(eq=False, kw_only=True)
class Embedder:
    count: int  # requests in flight at once
    pool: Callable[[], EndpointPool]
    counter: TokenCounter
    summary: Summary
    control: Control
    model: str
    dimensions: int | None
    batch: int  # inputs per request, at most
    batch_tokens: int  # tokens per request, at most
    price: Price | None = None  # --embed-model's (None: not in the price table)
    # the per-input limit as the server has told it (`ContextOverflow`), and its tokens ÷ ours
    budget: ContextBudget = field(
        default_factory=lambda: ContextBudget(embeddings.MAX_INPUT_TOKENS, "OpenAI")
    )
    _answered: int = field(default=0, init=False)  # requests answered so far

    async def run(self, jobs: ObjectReceiveStream[Job], outcomes: ObjectSendStream[Outcome]) -> None:
        send, receive = anyio.create_memory_object_stream[list[EmbedInput]](self.count)
        with jobs, outcomes:
            async with anyio.create_task_group() as group:
                self.control.bind_workers(group.cancel_scope)
                for index in range(self.count):
                    group.start_soon(self._sender, index, receive.clone(), outcomes.clone())
                receive.close()
                async with send:
                    await self._gather(jobs, send)

    async def _gather(
        self, jobs: ObjectReceiveStream[Job], requests: ObjectSendStream[list[EmbedInput]]
    ) -> None:
        """Jobs into requests, each sent when full, when its jobs stop coming for a moment, or at the end."""
        pending: list[EmbedInput] = []
        tokens = 0
        while not self.control.stopping:
            job = None
            with anyio.move_on_after(LINGER if pending else None):
                try:
                    job = await jobs.receive()
                except anyio.EndOfStream:
                    break
            if job is None:  # nothing came for a moment: send what there is
                await requests.send(pending)
                pending, tokens = [], 0
                continue
            item = await fit(self.counter, job, self._input_limit())
            if pending and (len(pending) >= self.batch or tokens + item.tokens > self.batch_tokens):
                await requests.send(pending)
                pending, tokens = [], 0
            pending.append(item)
            tokens += item.tokens
        if pending and not self.control.stopping:
            await requests.send(pending)

    async def _sender(
        self, index: int, requests: ObjectReceiveStream[list[EmbedInput]], outcomes: ObjectSendStream[Outcome]
    ) -> None:
        async with requests, outcomes:
            async for items in requests:
                if self.control.stopping:
                    break
                try:
                    for outcome in await self._embed(index, items):
                        await outcomes.send(outcome)
                except (*_ABORTING, _Refused) as exc:
                    if not self.control.stopping:
                        self.control.err(f"error: {exc}")
                    self.control.stop(f"{type(exc).__name__}: {exc}", exit_code=ExitCode.ABORTED, grace=0)
                    return

    async def _embed(self, index: int, items: list[EmbedInput]) -> list[Embedded | Failure]:
        """One request for `items`; a 400 for the whole is split in halves to find the input it refuses."""
        limit = self._input_limit()
        items = [
            i if i.tokens <= limit else await fit(self.counter, i.job, limit) for i in items
        ]  # (learnt since)
        body = embeddings.body(self.model, [i.job.user for i in items], self.dimensions)
        total = sum(i.tokens for i in items)
        try:
            answer = await self.pool().complete(
                body, reserve_tokens=total, worker=index, inputs=len(items), on_attempt=self._counted
            )
        except _ABORTING:
            raise
        except APIError as exc:
            if isinstance(exc, ContextOverflow) and self._learn(items, exc):
                return await self._embed(index, items)  # (cut to what the server said, at the top)
            if len(items) > 1 and not exc.retryable:
                half = len(items) // 2
                return [*await self._embed(index, items[:half]), *await self._embed(index, items[half:])]
            if not exc.retryable and not self._answered and not isinstance(exc, ContextOverflow):
                raise _Refused(f"the embeddings request is refused ({self.model}): {exc}") from exc
            return [self._failure(i, exc) for i in items]
        self._answered += 1
        return self._share(answer, items, total)

    def _input_limit(self) -> int:
        """The per-input limit in our tokens: the server's, over its tokens per one of ours, with a margin."""
        assert self.budget.limit is not None
        return max(1, int(self.budget.limit / self.budget.ratio * _MARGIN))

    def _learn(self, items: list[EmbedInput], exc: ContextOverflow) -> bool:
        """What a refusal of an input as too long says: the server's limit, and its count of that input
        against ours (llama.cpp says both; the input is not named, so it is taken to be the longest by our
        count, which can only make the ratio smaller than the truth). True when some of `items` are over the
        limit (now, or since another request taught it) and will be cut: then they are sent again, and every
        later input is cut before it goes. Each time round an input is shorter, so this ends."""
        self.budget.learn_limit(exc.limit, "the server")
        self.budget.calibrate(max(i.tokens for i in items), exc.prompt_tokens)
        limit = self._input_limit()
        return any(i.tokens > limit for i in items)

    def _counted(self) -> None:
        self.summary.requests += 1
        self.summary.embed_requests += 1

    def _share(
        self, answer: embeddings.Embeddings, items: list[EmbedInput], total: int
    ) -> list[Embedded | Failure]:
        """A vector per job, with its share of the request's usage (by its token count)."""
        self.summary.embed_tokens += spent(answer, total)
        if self.price is not None:
            self.summary.embed_cost = self.price.cost(self.summary.embed_tokens, 0)
        return [*share(answer, items, total)]

    @staticmethod
    def _failure(item: EmbedInput, exc: APIError) -> Failure:
        history = getattr(exc, "history", None) or [f"{exc.reason}: {exc}"]
        return Failure(item.job, exc.reason, "\n".join(history), getattr(exc, "attempts", 1) or 1)
