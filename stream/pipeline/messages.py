"""The typed values that travel between the run's stages.

```
feed ──Scanned/Unchanged/Skipped──▶ planner ──Job──▶ workers ──Answered/Failure──▶ writer
                                        └──── Reuse, FilesDone, DryLine, Skipped ─────▶ writer
```
The embed pass (`stream.pipeline.embedding`) sends its jobs to the embedder instead of the workers, which
answers each with an `Embedded` (or a `Failure`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sinks.schema import FileRow

from ..model import Snippet
from ..prompt import Template
from ..scan import Skipped

if TYPE_CHECKING:
    from ..judge import Judgment
    from ..sse import Completion

__all__ = [
    "Task",
    "Job",
    "Answered",
    "Embedded",
    "Failure",
    "Reuse",
    "FilesDone",
    "Current",
    "DryLine",
    "Outcome",
]


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
    head: int = 0  # characters at the start of `user` every prompt of the file shares (counted once a file)
    annotation_id: str | None = None  # an embed job: the record whose answer `user` holds with the code


@dataclass(slots=True)
class Answered:
    job: Job
    completion: Completion
    data: Any = None  # the parsed reply of a structured task
    judgment: Judgment | None = None  # with --task judge: what the judge said of it (`stream.judge`)


@dataclass(slots=True)
class Embedded:
    """An embed job's vector, from one request of several inputs (`stream.pipeline.embedder`)."""

    job: Job
    vector: bytes  # float32 little-endian
    dimensions: int
    model: str | None  # the model the server says made it
    usage: dict[str, Any]  # this input's share of the request's usage
    request_inputs: int  # how many inputs the request carried
    attempts: int
    latency_s: float
    endpoint: str | None
    truncated: bool = False  # the text was cut to the per-input limit


@dataclass(slots=True)
class Failure:
    job: Job
    reason: str
    error: str
    attempts: int


@dataclass(slots=True)
class Reuse:
    """A new place of code already answered: its line is made from the stored answer, without a request."""

    record_id: str
    snippet: Snippet
    occurrence_id: str
    task: Task


@dataclass(slots=True)
class FilesDone:
    """Rows for the file index: files whose snippets are all done (see `stream.scan`)."""

    rows: list[FileRow]


@dataclass(slots=True)
class Current:
    """Places written before that are the code at their place again (a function edited, then put back):
    they become their place's newest, as search reads it (`sinks.vectors`)."""

    occurrence_ids: list[str]


@dataclass(slots=True)
class DryLine:
    """A dry run's line: the request that would be sent."""

    line: bytes


Outcome = Answered | Embedded | Failure | Reuse | Skipped | FilesDone | Current | DryLine
