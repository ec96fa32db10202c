"""The export's quality gate: an answer's cleaning flags (stored, or checked now for an answer from before
cleaning) and its judge's score decide whether it is exported; what is left out is counted by reason."""

from __future__ import annotations

from typing import Any

import orjson

from ..clean import flags, flags_of_data
from ..errors import ExampleSkipped
from .report import Report

__all__ = ["QualityGate"]


class QualityGate:
    """``gate(rec, stored_flags, score)`` raises ExampleSkipped for an answer left out: ``flagged`` (unless
    `include_flagged`), ``score_below_N`` or ``not_judged`` (with `min_score`); counted in `report`."""

    def __init__(self, report: Report, *, include_flagged: bool, min_score: int | None) -> None:
        self.report = report
        self.include_flagged = include_flagged
        self.min_score = min_score

    def __call__(self, rec: dict[str, Any], stored: str | None, score: int | None) -> None:
        if not self.include_flagged:
            reasons = self._flags(rec, stored)
            if reasons:
                self.report.flag_reasons.update(reasons)
                raise ExampleSkipped("flagged")
        if self.min_score is not None:
            if score is None:
                raise ExampleSkipped("not_judged")
            if score < self.min_score:
                raise ExampleSkipped(f"score_below_{self.min_score}")

    def _flags(self, rec: dict[str, Any], stored: str | None) -> list[str]:
        """The stored reasons; for an answer stored before cleaning existed (NULL), `stream.clean`'s now,
        with the snippet's code as the prompt it may echo."""
        if stored is not None:
            try:
                reasons = orjson.loads(stored)
            except orjson.JSONDecodeError:
                return ["unreadable_flags"]
            return [str(r) for r in reasons] if isinstance(reasons, list) else ["unreadable_flags"]
        self.report.flagged_at_export += 1
        code = rec.get("code") if isinstance(rec.get("code"), str) else None
        if rec.get("data") is not None:
            return flags_of_data(rec["data"], prompt=code)
        annotation = rec.get("annotation")
        return flags(annotation, prompt=code) if isinstance(annotation, str) else []
