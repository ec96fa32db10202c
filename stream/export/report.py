"""What an export did: the `Report` its summary is rendered from, and the token-length statistics in it."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["Report", "Lengths"]


@dataclass
class Report:
    """What an export did. Answers are counted before they become examples, examples after."""

    fmt: str = ""
    answers: int = 0  # done answers read (each once, at its first place)
    places: int = 0  # places those answers occur in; the others are repeats, not exported again
    answers_exported: int = 0
    answers_skipped: Counter[str] = field(default_factory=Counter)
    written: dict[str, int] = field(default_factory=dict)  # split name (or "all") → examples written
    targets: dict[str, str] = field(default_factory=dict)  # split name → file
    examples_dropped: Counter[str] = field(default_factory=Counter)  # "too_long", "format_problems"
    problems: Counter[str] = field(default_factory=Counter)  # format problems found, by kind
    lengths: dict[str, float] = field(default_factory=dict)
    max_example_tokens: int = 0
    limit_source: str = ""  # where max_example_tokens comes from: the option, or the model's limit
    encoding: str = ""
    failed_answers: int = 0
    tasks: Counter[str] = field(default_factory=Counter)  # template → examples written
    models: Counter[str] = field(default_factory=Counter)  # model → answers exported
    flag_reasons: Counter[str] = field(default_factory=Counter)  # cleaning reason → answers left out with it
    flagged_at_export: int = 0  # answers without stored flags (answered before cleaning), checked on export
    trimmed: int = 0  # examples whose answer had whitespace trimmed off its ends
    removed: list[str] = field(default_factory=list)  # older files of an empty split, removed
    notes: list[str] = field(default_factory=list)
    output_closed: bool = False

    @property
    def examples_written(self) -> int:
        return sum(self.written.values())

    def empty_reason(self) -> str:
        """Why nothing was written (for an export that wrote no example), from the counts."""
        if not self.answers:
            return "no done answers in the checkpoint"
        parts = [f"{reason} {n:,}" for reason, n in self.answers_skipped.most_common()]
        parts += [f"{reason} {n:,}" for reason, n in self.examples_dropped.most_common()]
        return f"all {self.answers:,} answers were left out: " + ", ".join(parts)


class Lengths:
    """Token lengths as a histogram: exact percentiles in memory bounded by the number of distinct lengths."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.n = 0
        self.total = 0

    def add(self, n: int) -> None:
        self.counts[n] += 1
        self.n += 1
        self.total += n

    def percentile(self, q: float) -> int:
        rank = max(1, math.ceil(q * self.n))  # nearest rank
        seen = 0
        for value in sorted(self.counts):
            seen += self.counts[value]
            if seen >= rank:
                return value
        return 0

    def as_dict(self) -> dict[str, float]:
        if not self.n:
            return {}
        return {
            "min": min(self.counts),
            "mean": round(self.total / self.n, 1),
            "p95": self.percentile(0.95),
            "max": max(self.counts),
        }
