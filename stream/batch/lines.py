"""Batch input files: the planner's jobs written as request lines, split at the provider's limits.

A line is OpenAI's batch request (https://platform.openai.com/docs/api-reference/batch/request-input):
``custom_id`` (the record id), ``method``, ``url`` (the endpoint) and ``body`` (the request a run would
stream, without ``stream``). A file holds at most ``--batch-max-requests`` lines and
``--batch-max-bytes`` bytes (OpenAI: 50,000 requests and 200 MB, https://platform.openai.com/docs/guides/batch),
and a file of embeddings lines at most `max_inputs` inputs over all its lines (`stream.batch.embed_lines`).
Lines and the places waiting for them reach the checkpoint as they are written, while the file is still
``writing``: a crash before it is closed discards it whole, and its records are planned again.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import orjson
from anyio.abc import ObjectSendStream

from sinks.batches import BatchStore, InputRow, LineRow, PlaceRow
from sinks.schema import FileRow

from ..model import Snippet
from ..pipeline.messages import Job, Outcome, Reuse, Task
from ..pipeline.summary import Summary

__all__ = ["Chunker", "BatchRoute", "batch_url", "snippet_blob", "snippet_from"]

_ROWS = 500  # lines and places stored per transaction, at most


def batch_url(api: str) -> str:
    """The batch's endpoint for the run's API (the ``url`` of each line and the batch's ``endpoint``)."""
    return "/v1/chat/completions" if api == "chat" else "/v1/completions"


def snippet_blob(snippet: Snippet) -> bytes:
    return orjson.dumps(snippet)


def snippet_from(blob: bytes) -> Snippet:
    fields = orjson.loads(blob)
    fields.pop("trivial", None)
    return Snippet(**fields)


@dataclass(eq=False, kw_only=True)
class Chunker:
    """Writes request lines into files of at most `max_lines` lines and `max_bytes` bytes under `folder`."""

    store: BatchStore
    folder: Path
    endpoint: str
    base_url: str | None
    max_lines: int
    max_bytes: int
    local: bool  # file-only: closed files are ``local``, for a runner; else ``written``, to upload
    max_inputs: int | None = None  # embedding inputs a file may carry over all its lines (None: no limit)
    prefix: str = "snipstream"  # of the files' names
    closed: list[str] = field(default_factory=list)  # the names of the files closed so far
    lines_written: int = 0
    inputs_written: int = 0  # embedding inputs, over all lines
    _name: str | None = field(default=None, init=False)
    _out: IO[bytes] | None = field(default=None, init=False)
    _lines: int = field(default=0, init=False)
    _bytes: int = field(default=0, init=False)
    _inputs: int = field(default=0, init=False)
    _ids: set[str] = field(default_factory=set, init=False)  # the records of the open file
    _rows: list[LineRow] = field(default_factory=list, init=False)
    _places: list[PlaceRow] = field(default_factory=list, init=False)
    _input_rows: list[InputRow] = field(default_factory=list, init=False)
    _stamp: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"), init=False)

    def holds(self, record_id: str) -> bool:
        return record_id in self._ids

    async def add(self, record_id: str, task: str, body: dict[str, Any], place: PlaceRow) -> None:
        """A request line of one record: its custom_id is the record id."""
        name, number = await self._write(lambda _name, _line: record_id, body, 0)
        self._ids.add(record_id)
        self._rows.append(LineRow(record_id, name, number, task))
        await self.place(place)

    async def add_inputs(
        self,
        custom_id: Callable[[str, int], str],
        body: dict[str, Any],
        task: str,
        inputs: Sequence[tuple[str, int, bool, str | None]],
    ) -> None:
        """An embeddings line of many records ((record id, tokens, cut, annotation id) each, in the order of
        ``body["input"]``); its custom_id is made from the file's name and the line's number."""
        name, number = await self._write(custom_id, body, len(inputs))
        for position, (record_id, tokens, cut, annotation_id) in enumerate(inputs):
            self._ids.add(record_id)
            self._rows.append(LineRow(record_id, name, number, task))
            self._input_rows.append(InputRow(record_id, name, position, tokens, cut, annotation_id))
        self.inputs_written += len(inputs)
        if len(self._rows) >= _ROWS:
            await self.store_rows()

    async def _write(
        self, custom_id: Callable[[str, int], str], body: dict[str, Any], inputs: int
    ) -> tuple[str, int]:
        """One line written, in a new file when the open one is full: (the file's name, the line's number)."""
        if self._out is None:
            await self._open()
        line = self._line(custom_id, body)
        if self._lines and (
            self._lines >= self.max_lines
            or self._bytes + len(line) > self.max_bytes
            or (self.max_inputs is not None and self._inputs + inputs > self.max_inputs)
        ):
            await self.close()
            await self._open()
            line = self._line(custom_id, body)
        assert self._out is not None and self._name is not None
        self._out.write(line)
        self._lines += 1
        self._bytes += len(line)
        self._inputs += inputs
        self.lines_written += 1
        return self._name, self._lines

    def _line(self, custom_id: Callable[[str, int], str], body: dict[str, Any]) -> bytes:
        assert self._name is not None
        request = {
            "custom_id": custom_id(self._name, self._lines + 1),
            "method": "POST",
            "url": self.endpoint,
        }
        return orjson.dumps({**request, "body": body}) + b"\n"

    async def place(self, place: PlaceRow) -> None:
        """A place waiting for a record's answer (its line is in this file or an earlier one)."""
        self._places.append(place)
        if len(self._places) >= _ROWS or len(self._rows) >= _ROWS:
            await self.store_rows()

    async def store_rows(self) -> None:
        if self._rows or self._places:
            rows, places, inputs = self._rows, self._places, self._input_rows
            self._rows, self._places, self._input_rows = [], [], []
            await self.store.add(rows, places, inputs)

    async def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{self.prefix}-{self._stamp}-{len(self.closed) + 1:04d}-{secrets.token_hex(4)}.jsonl"
        path = self.folder / name
        await self.store.new_file(name, str(path), self.base_url, self.endpoint)
        self._name, self._out = name, open(path, "wb")
        self._lines = self._bytes = self._inputs = 0
        self._ids = set()

    async def close(self) -> None:
        """Finish the open file: its lines on disk (fsync), then stored, then the file marked written."""
        await self.store_rows()
        if self._out is None or self._name is None:
            return
        out, name, self._out = self._out, self._name, None
        await anyio.to_thread.run_sync(_sync_close, out)
        await self.store.update(
            name, state="local" if self.local else "written", lines=self._lines, bytes=self._bytes
        )
        self.closed.append(name)


def _sync_close(out: IO[bytes]) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()


@dataclass(eq=False, kw_only=True)
class BatchRoute:
    """The planner's route in `batch submit`: a new record becomes a line; another place of a record
    already in a batch waits for the same line; an answered one is reused as in a run."""

    store: BatchStore
    chunks: Chunker
    summary: Summary
    body: Callable[..., dict[str, Any]]  # Asker.body: the request a run would send now
    outcomes: ObjectSendStream[Outcome]
    waiting: int = 0  # places attached to a line already written
    _pending: set[str] = field(default_factory=set, init=False)
    _reasks: dict[str, Any] = field(default_factory=dict, init=False)

    async def begin_file(self, key: str, row: FileRow, record_ids: set[str]) -> None:
        ids = list(record_ids)
        self._pending = await self.store.pending(ids) if ids else set()
        self._reasks = await self.store.reasks(ids) if ids else {}

    async def answered(self, record_id: str, snippet: Snippet, occurrence_id: str, task: Task) -> None:
        self.summary.reused += 1
        await self.outcomes.send(Reuse(record_id, snippet, occurrence_id, task))

    async def ask(self, job: Job) -> None:
        place = PlaceRow(job.occurrence_id, job.record_id, snippet_blob(job.snippet))
        if job.record_id in self._pending or self.chunks.holds(job.record_id):
            self.waiting += 1
            await self.chunks.place(place)
            return
        self._pending.add(job.record_id)
        followup = self._reasks.get(job.record_id)
        body = self.body(job, followup=tuple(followup) if followup else ())
        body.pop("stream", None)
        body.pop("stream_options", None)
        await self.chunks.add(job.record_id, job.task.fingerprint, body, place)

    async def end_file(self, key: str) -> None:
        """Nothing joins the file index: the file's answers are still to come."""
