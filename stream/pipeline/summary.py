"""What a run did: the counters every stage adds to, shown by the progress line and the final summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..sse import cached_tokens, reasoning_tokens

if TYPE_CHECKING:
    from ..prices import Price

__all__ = ["Summary"]


@dataclass
class Summary:
    """What a run did. Counts are per run; `failed` and `skipped` are grouped by reason."""

    files: int = 0
    snippets: int = 0  # snippets to ask about, counted once per task that applies to them
    requests: int = 0  # HTTP requests sent, retries included
    annotated: int = 0  # new answers committed
    reused: int = 0  # new places of already answered code: emitted without a request
    unchanged: int = 0  # already answered and emitted: nothing to do
    backlog: int = 0  # emitted from the checkpoint before the walk (earlier runs' unemitted lines)
    emitted: int = 0  # NDJSON lines written
    would_send: int = 0  # dry run
    failed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # files, by reason
    filtered: Counter[str] = field(default_factory=Counter)  # snippets left out, by reason
    secrets: Counter[str] = field(default_factory=Counter)  # secrets found, by kind (never the secret)
    # near-duplicate groups (stream.pipeline.neardups) in the checkpoint after this run (a dry run: the
    # checkpoint's and this run's): groups with a later member, those members, and how many this run found
    near_dup_groups: int = 0
    near_dup_members: int = 0
    near_dup_found: int = 0
    tasks: Counter[str] = field(default_factory=Counter)  # new answers by task
    endpoints: Counter[str] = field(default_factory=Counter)  # requests sent (retries included) by endpoint
    flagged: Counter[str] = field(default_factory=Counter)  # new answers the cleaning step marked, by reason
    scores: Counter[str] = field(default_factory=Counter)  # new answers by judge score ("1".."5", "unjudged")
    judge_reasks: int = 0  # answers asked again after a low score, and answered
    # --task embed (stream.pipeline.embedder): new vectors, the requests that carried them, their tokens
    embedded: int = 0
    embed_requests: int = 0
    embed_tokens: int = 0
    embed_cost: float | None = None  # of embed_tokens at --embed-model's price (None: not in the table)
    # dry run: "task/language/kind" -> [requests, prompt tokens]
    plan: dict[str, list[int]] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0  # reasoning tokens included, as the API counts (and bills) them
    reasoning_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the provider served from its prompt cache (billed lower)
    usage_estimated: int = 0
    elapsed: float = 0.0
    encoding: str = ""
    estimated_cost: float | None = None
    cost: float | None = None  # spent so far, from usage and the price table (None: model not priced)
    cache_saving: float | None = None  # of which the prompt cache saved (cached tokens at the cached rate)
    walk_done: bool = False
    stopped: str | None = None  # why the run stopped early: "interrupted", "output closed", an error
    exit_code: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for name in ("failed", "skipped", "filtered", "secrets", "tasks", "endpoints", "flagged", "scores"):
            data[name] = dict(data[name])
        return data

    def add_usage(self, usage: dict[str, Any] | None, price: Price | None) -> None:
        """Count one answer's ``usage`` (paid for, whether or not the answer is kept)."""
        usage = usage or {}
        self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.completion_tokens += int(usage.get("completion_tokens") or 0)
        self.reasoning_tokens += reasoning_tokens(usage)
        self.cached_tokens += cached_tokens(usage)
        if price is not None:
            self.cost = price.cost(self.prompt_tokens, self.completion_tokens, self.cached_tokens)
            self.cache_saving = price.cost(self.prompt_tokens, self.completion_tokens) - self.cost

    def spent(self, price: Price) -> float:
        return price.cost(self.prompt_tokens, self.completion_tokens)

    def finish(self) -> None:
        """A run that finished with failures exits 1, unless something already set a code."""
        if self.failed and self.exit_code == 0:
            self.exit_code = 1
