"""The typed values that travel between the run's stages (planner → workers → writer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .model import Snippet
from .prompt import Template

if TYPE_CHECKING:
    from .sse import Completion

__all__ = ["Task", "Job", "Answered", "Failure"]


@dataclass(slots=True)
class Task:
    """One task of the run: its template, fingerprint and the ``task`` object its records carry."""

    template: Template
    fingerprint: str
    info: dict[str, Any]


@dataclass(slots=True)
class Job:
    """One request to make: a snippet asked one task (the asker builds each attempt's body from the run's
    current shape, `stream.request.Shape`)."""

    record_id: str
    snippet: Snippet
    occurrence_id: str
    prompt_tokens: int | None
    system: str | None
    user: str
    task: Task


@dataclass(slots=True)
class Answered:
    job: Job
    completion: Completion
    data: Any = None  # the parsed reply of a structured task


@dataclass(slots=True)
class Failure:
    job: Job
    reason: str
    error: str
    attempts: int
