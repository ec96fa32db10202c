"""Several endpoints as one pool: each request goes to an endpoint with budget, and moves when one fails.

`EndpointPool` offers the asker what it uses of a `ClientPool` (`complete`, `limits.counts_tokens`, `refund`,
`breaker.failure`, `server`, `get_json`, `scrub`, `aclose`, `requests_sent`) over one `ClientPool` per
endpoint, each with its own `Limits`, `Breaker`, clients and connections. Every answer names the endpoint
that gave it (`Completion.endpoint`), and so does every error (`APIError.endpoint`): a refund reaches the
limiter that was charged, a failure the breaker of the endpoint that failed.

Choosing. Among the endpoints in service, those whose limiter would send the request at once
(`Limits.delay`) share the work by smooth weighted round-robin (each gets its weight's share, interleaved,
as nginx balances upstreams); when each would make it wait, the one that would wait least takes it. A
single endpoint in service is taken without a look.

Moving. A request whose attempts on one endpoint all failed with errors worth retrying (a refused or reset
connection, a broken stream, 5xx, timeouts, 429s past their allowance) is sent again to an endpoint it has
not tried, its attempts and their reasons adding up. If the endpoint answered nothing while those attempts
were made, and another is in service, it is taken out for a rest (60 s, doubling up to 15 min): the
requests in flight on it are cancelled and sent elsewhere at once. A 401/403, a 404, an exhausted quota or
a tripped breaker takes an endpoint out for the run. Each is one note. With no endpoint in service a
resting one is woken early; when every endpoint is out for the run, the error that took the last one out
stops the run, as it would with one endpoint. A single endpoint never moves anything: its errors come out as
its `ClientPool` raised them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from .errors import APIError, AuthError, CircuitOpen, NotFoundError, QuotaExceeded, RateLimited

if TYPE_CHECKING:
    from .client import ClientPool
    from .sse import Completion

__all__ = ["EndpointPool", "Member"]

_REST, _MAX_REST = 60.0, 900.0  # seconds an endpoint that died is left out, doubling each time
_OUT_FOR_THE_RUN = (AuthError, NotFoundError, QuotaExceeded, CircuitOpen)


@dataclass(eq=False)
class Member:
    """One endpoint of the pool: its name, its own `ClientPool`, its weight, and whether it is in service."""

    name: str
    pool: ClientPool
    weight: float = 1.0
    model: str | None = None  # sent in place of the run's model (an endpoint's model=)
    current: float = 0.0  # the round-robin's running score
    out_until: float = 0.0  # when it is back in service (anyio's clock); inf: out for the run
    rest: float = _REST
    error: APIError | None = None  # what took it out
    inflight: set[anyio.CancelScope] = field(default_factory=set)

    @property
    def gone(self) -> bool:
        return self.out_until == math.inf

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        return (
            body if self.model is None or body.get("model") == self.model else {**body, "model": self.model}
        )


@dataclass
class _Trail:
    """One request's attempts on the endpoints it left, to add to what the last one says."""

    named: bool  # several endpoints: each line says which one
    attempts: int = 0
    history: list[str] = field(default_factory=list)
    last: APIError | None = None  # the latest failure that moved the request

    def line(self, name: str, text: str) -> str:
        return f"{name}: {text}" if self.named else text

    def left(self, name: str, exc: APIError) -> None:
        self.attempts += exc.attempts
        self.history += [self.line(name, h) for h in exc.history or [f"{exc.reason}: {exc}"]]
        self.last = exc

    def gave_up(self) -> APIError:
        """The latest failure, carrying every attempt: no endpoint in service is left to try."""
        assert self.last is not None  # (only a failure marks an endpoint tried)
        self.last.attempts, self.last.history = self.attempts, self.history
        return self.last

    def end(self, name: str, exc: APIError) -> APIError:
        """`exc`, the request's last failure, carrying every attempt the request made."""
        if self.named:
            self.left(name, exc)
            exc.attempts, exc.history = self.attempts, self.history
        return exc

    def answered(self, name: str, completion: Completion) -> Completion:
        completion.endpoint = name
        if self.attempts or self.history:
            completion.attempts += self.attempts
            completion.errors = self.history + [self.line(name, e) for e in completion.errors]
        return completion


class _Limits:
    """What the asker asks of the limits: whether prompts must be counted (some endpoint has a token budget)."""

    def __init__(self, members: list[Member]) -> None:
        self._members = members

    @property
    def counts_tokens(self) -> bool:
        return any(m.pool.limits.counts_tokens for m in self._members)


class _Breakers:
    """The breakers as one: a failure is told to the breaker of the endpoint that failed."""

    def __init__(self, pool: EndpointPool) -> None:
        self._pool = pool

    def failure(self, exc: APIError) -> None:
        self._pool.member(exc.endpoint).pool.breaker.failure(exc)

    def check(self) -> None:
        if all(m.gone for m in self._pool.members) and self._pool.last_error is not None:
            raise self._pool.last_error


class EndpointPool:
    """The run's endpoints as one client pool (see the module's docstring)."""

    def __init__(self, members: list[Member], *, note: Callable[[str], None] | None = None) -> None:
        if not members:
            raise ValueError("an endpoint pool needs at least one endpoint")
        self.members = members
        self._named = {m.name: m for m in members}
        self._note = note or (lambda message: None)
        self.limits = _Limits(members)
        self.breaker = _Breakers(self)
        self.last_error: APIError | None = None  # what took the latest endpoint out for the run

    # --- what the asker reads ----------------------------------------------------------------------------

    @property
    def server(self) -> str | None:
        """The first ``Server`` header any endpoint answered with (a named one first)."""
        seen = [m.pool.server for m in self.members if m.pool.server is not None]
        return next((s for s in seen if s), seen[0] if seen else None)

    @property
    def requests_sent(self) -> int:
        return sum(m.pool.requests_sent for m in self.members)

    def requests_by_endpoint(self) -> dict[str, int]:
        return {m.name: m.pool.requests_sent for m in self.members}

    def member(self, name: str | None) -> Member:
        return self._named.get(name or "", self.members[0])

    def refund(self, completion: Completion, tokens: float) -> None:
        """Unused reservation goes back to the limiter of the endpoint that answered (`Limits.refund`)."""
        self.member(completion.endpoint).pool.refund(completion, tokens)

    def scrub(self, text: str) -> str:
        for m in self.members:
            text = m.pool.scrub(text)
        return text

    async def get_json(self, url: str) -> Any:
        """GET from the endpoint `url` is on (llama.cpp's ``/props``), else from the first."""
        on = [m for m in self.members if url.startswith(_root(m.pool.base_url))]
        return await (on[0] if on else self.members[0]).pool.get_json(url)

    async def aclose(self) -> None:
        for m in self.members:
            await m.pool.aclose()

    async def __aenter__(self) -> EndpointPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- sending -----------------------------------------------------------------------------------------

    async def complete(
        self,
        body: dict[str, Any],
        *,
        reserve_tokens: int,
        worker: int = 0,
        on_attempt: Callable[[], None] | None = None,
        inputs: int = 0,
        on_text: Callable[[str], None] | None = None,
    ) -> Any:
        """Send one request (with `inputs`, an embeddings request: `ClientPool.complete`) to an endpoint
        with budget; move it when that endpoint fails it in a way another may not (see the module's
        docstring). Raises what the last endpoint raised, with every attempt. `on_text`: as for
        `ClientPool.complete`."""
        tried: set[str] = set()
        trail = _Trail(named=len(self.members) > 1)
        while True:
            member = self._choose(reserve_tokens, tried)
            if member is None:  # every endpoint in service has failed this request
                raise trail.gave_up()
            answered = member.pool.breaker.answered
            try:
                completion = await self._send(
                    member, body, reserve_tokens, worker, on_attempt, inputs, on_text
                )
            except APIError as exc:
                exc.endpoint = member.name
                if isinstance(exc, _OUT_FOR_THE_RUN):
                    self._take_out(member, exc, for_good=True)
                    if all(m.gone for m in self.members):
                        raise
                    trail.history.append(trail.line(member.name, f"{exc.reason}: taken out; sent elsewhere"))
                    continue
                if not self._moves(member, exc, answered, tried):
                    raise trail.end(member.name, exc) from None
                trail.left(member.name, exc)
                tried.add(member.name)
                continue
            if completion is None:
                trail.history.append(
                    trail.line(member.name, "taken out with this request in flight; sent elsewhere")
                )
                continue
            return trail.answered(member.name, completion)

    async def _send(
        self,
        member: Member,
        body: dict[str, Any],
        reserve_tokens: int,
        worker: int,
        on_attempt: Callable[[], None] | None,
        inputs: int = 0,
        on_text: Callable[[str], None] | None = None,
    ) -> Any:
        """The request on `member`; None when `member` was taken out while it was in flight. An endpoint's
        model (``model=``) stands in for the run's chat model, not for the embedding model."""
        scope = anyio.CancelScope()
        member.inflight.add(scope)
        try:
            with scope:
                return await member.pool.complete(
                    body if inputs else member.body(body),
                    reserve_tokens=reserve_tokens,
                    worker=worker,
                    on_attempt=on_attempt,
                    inputs=inputs,
                    on_text=on_text,
                )
        finally:
            member.inflight.discard(scope)
        return None

    def _moves(self, member: Member, exc: APIError, answered: int, tried: set[str]) -> bool:
        """Whether the request `exc` ended goes to another endpoint; takes `member` out for a rest when it
        answered nothing meanwhile. A failure of the request itself (a 400, an overflow) stays."""
        if not exc.retryable:
            return False
        now = anyio.current_time()
        if not any(m.out_until <= now and m is not member and m.name not in tried for m in self.members):
            return False
        if not isinstance(exc, RateLimited) and member.pool.breaker.answered == answered:
            self._take_out(member, exc, for_good=False)
        return True

    def _choose(self, tokens: int, tried: set[str]) -> Member | None:
        """The endpoint for a request of `tokens`, among those in service it has not tried; None if none.
        Raises the last endpoint's error when every one is out for the run."""
        now = anyio.current_time()
        for m in self.members:
            tripped = m.pool.breaker.tripped
            if tripped is not None and not m.gone:
                tripped.endpoint = m.name
                self._take_out(m, tripped, for_good=True)
            elif m.error is not None and not m.gone and m.out_until <= now:
                m.error = None
                self._note(f"note: endpoint {m.name} is back in service after a rest")
        left = [m for m in self.members if not m.gone]
        if not left:
            assert self.last_error is not None
            raise self.last_error
        choice = [m for m in left if m.out_until <= now and m.name not in tried]
        if not choice:
            resting = [m for m in left if m.name not in tried]
            if not resting or any(m.out_until <= now for m in left):
                return None
            woken = min(resting, key=lambda m: m.out_until)
            woken.out_until, woken.error = now, None
            self._note(f"note: endpoint {woken.name} is back in service early: no other endpoint is")
            choice = [woken]
        if len(choice) == 1:
            return choice[0]
        waits = [(m.pool.limits.delay(tokens), m) for m in choice]
        ready = [m for wait, m in waits if wait <= 0]
        if ready:
            return self._weighted(ready)
        return min(waits, key=lambda wm: (wm[0], -wm[1].weight))[1]

    @staticmethod
    def _weighted(ready: list[Member]) -> Member:
        """Smooth weighted round-robin: each raises its score by its weight, the highest is chosen and
        lowered by the total, so over time each is chosen its weight's share, interleaved."""
        total = sum(m.weight for m in ready)
        for m in ready:
            m.current += m.weight
        best = max(ready, key=lambda m: m.current)
        best.current -= total
        return best

    def _take_out(self, member: Member, exc: APIError, *, for_good: bool) -> None:
        """Out of service, for the run or for a rest; the requests in flight on it go elsewhere."""
        now = anyio.current_time()
        if member.gone or (not for_good and member.out_until > now):
            return  # already out (several requests met the same failure)
        member.error = exc
        if for_good:
            member.out_until = math.inf
            self.last_error = exc
            how = "for the run"
        else:
            member.out_until = now + member.rest
            how = f"for {member.rest:g}s"
            member.rest = min(2 * member.rest, _MAX_REST)
        in_service = [m.name for m in self.members if m.out_until <= now]
        if len(self.members) > 1:
            rest = f"in service: {', '.join(in_service)}" if in_service else "no endpoint is left in service"
            self._note(f"note: endpoint {member.name} is out {how} ({exc.reason}: {exc}); {rest}")
        if in_service:
            for scope in list(member.inflight):
                scope.cancel()


def _root(base_url: str) -> str:
    """A base URL without its ``/v1``: where llama.cpp serves ``/props``."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base
