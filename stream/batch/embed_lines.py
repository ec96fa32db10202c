"""The embed pass's batch route: embed jobs gathered into ``/v1/embeddings`` request lines of many inputs.

A line is a request the embedder would stream (`stream.embeddings.body`): it takes jobs in planning order
until it holds ``--embed-batch`` texts or ``--embed-batch-tokens`` tokens, each text counted and, past the
per-input limit, cut as the embedder does (`stream.pipeline.embedder.fit`). The lines go to files of their
own: a batch has one ``endpoint`` and every line's ``url`` must be it, and OpenAI restricts
``/v1/embeddings`` batches "to a maximum of 50,000 embedding inputs across all requests in the batch"
(``endpoint`` in openai-python ``src/openai/types/batch_create_params.py``; API reference, "Create batch",
https://platform.openai.com/docs/api-reference/batch/create), so a file holds at most `MAX_BATCH_INPUTS`.
vLLM's ``run-batch`` takes the same lines (``BatchRequestInput`` in vllm-project/vllm
``vllm/entrypoints/openai/run_batch.py`` reads a ``/v1/embeddings`` line's body as an embeddings request).

A server that refuses a line (a 400: an input it will not take) fails all of its inputs; unlike the streamed
embedder, which splits such a request in halves at once, the next submit asks each refused record in a line
of its own, so only the input refused fails again.

A line's ``custom_id`` names its file and line (`embed_id`); its records, in the order of its inputs, are
in the checkpoint before the file is closed (`sinks.batches`: ``batch_lines`` and ``batch_inputs``, with
each one's tokens and the annotation embedded), so `batch collect` gives each input's vector to its record.

What is embedded is what the checkpoint holds now: a snippet whose annotation is in a batch not yet
collected is embedded as its code alone; once the annotation is collected, the next submit embeds the
annotated text as a new record (`stream.pipeline.embedding`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anyio.abc import ObjectSendStream

from sinks.batches import BatchStore, PlaceRow
from sinks.schema import FileRow

from .. import embeddings
from ..model import Snippet
from ..pipeline.counting import TokenCounter
from ..pipeline.embedder import EmbedInput, fit
from ..pipeline.messages import Job, Outcome, Reuse, Task
from ..pipeline.summary import Summary
from .lines import Chunker, snippet_blob

__all__ = ["EmbedRoute", "EMBEDDINGS_URL", "MAX_BATCH_INPUTS", "embed_id", "embed_line_of"]

EMBEDDINGS_URL = "/v1/embeddings"  # the batch's endpoint and each line's url
MAX_BATCH_INPUTS = 50_000  # embedding inputs one batch may carry over all its lines (see above)
_PREFIX = "embed:"


def embed_id(name: str, line: int) -> str:
    """The ``custom_id`` of an embeddings line: its file's name and its (1-based) line number."""
    return f"{_PREFIX}{name}:{line}"


def embed_line_of(custom_id: str) -> tuple[str, int] | None:
    """(file name, line number) of an embeddings line's ``custom_id``; None for any other id."""
    if not custom_id.startswith(_PREFIX):
        return None
    name, _, number = custom_id[len(_PREFIX) :].rpartition(":")
    return (name, int(number)) if name and number.isdigit() else None


@dataclass(eq=False, kw_only=True)
class EmbedRoute:
    """The planner's route in the embed pass of `batch submit`: a new record joins the line being filled;
    another place of a record already in a line waits for it; an embedded one is reused as in a run."""

    store: BatchStore
    chunks: Chunker  # its own files (endpoint `EMBEDDINGS_URL`, at most `MAX_BATCH_INPUTS` inputs each)
    summary: Summary
    counter: TokenCounter
    outcomes: ObjectSendStream[Outcome]
    model: str  # --embed-model
    dimensions: int | None
    batch: int  # inputs per line, at most
    batch_tokens: int  # tokens per line, at most
    waiting: int = 0  # places attached to a line already written or being filled
    _pending: set[str] = field(default_factory=set, init=False)
    _refused: set[str] = field(default_factory=set, init=False)  # refused before: each alone in a line
    _line: list[EmbedInput] = field(default_factory=list, init=False)  # the line being filled
    _tokens: int = field(default=0, init=False)
    _places: list[PlaceRow] = field(default_factory=list, init=False)  # the places of its records
    _held: set[str] = field(default_factory=set, init=False)  # its records

    async def begin_file(self, key: str, row: FileRow, record_ids: set[str]) -> None:
        ids = list(record_ids)
        self._pending = await self.store.pending(ids) if ids else set()
        self._refused = await self.store.refused(ids) if ids else set()

    async def answered(self, record_id: str, snippet: Snippet, occurrence_id: str, task: Task) -> None:
        self.summary.reused += 1
        await self.outcomes.send(Reuse(record_id, snippet, occurrence_id, task))

    async def ask(self, job: Job) -> None:
        place = PlaceRow(job.occurrence_id, job.record_id, snippet_blob(job.snippet))
        if job.record_id in self._held:
            self.waiting += 1
            self._places.append(place)
            return
        if job.record_id in self._pending or self.chunks.holds(job.record_id):
            self.waiting += 1
            await self.chunks.place(place)
            return
        item = await fit(self.counter, job)
        alone = job.record_id in self._refused
        full = len(self._line) >= self.batch or self._tokens + item.tokens > self.batch_tokens
        if self._line and (alone or full):
            await self.flush()
        self._line.append(item)
        self._tokens += item.tokens
        self._held.add(job.record_id)
        self._places.append(place)
        if alone:
            await self.flush()

    async def end_file(self, key: str) -> None:
        """Nothing joins the file index: the file's vectors are still to come."""

    async def flush(self) -> None:
        """Write the line being filled (at the end of the pass too: `stream.batch.submit`)."""
        if not self._line:
            return
        line, places = self._line, self._places
        self._line, self._places, self._tokens, self._held = [], [], 0, set()
        body = embeddings.body(self.model, [i.job.user for i in line], self.dimensions)
        inputs = [(i.job.record_id, i.tokens, i.truncated, i.job.annotation_id) for i in line]
        await self.chunks.add_inputs(embed_id, body, line[0].job.task.fingerprint, inputs)
        for place in places:
            await self.chunks.place(place)
