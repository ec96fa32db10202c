"""The record: the one shape of an NDJSON line, built here and nowhere else.

A line is the provenance of a snippet (where the code is, what it is, the code itself), the task that was
asked, and either the answer with the API's response metadata or, in a dry run, the request that would be
sent. The README documents the fields; `SCHEMA_VERSION` changes when they change incompatibly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .model import Snippet
    from .pipeline.messages import Embedded
    from .sse import Completion

__all__ = ["SCHEMA_VERSION", "provenance", "line", "answer", "embedding", "dry_line"]

SCHEMA_VERSION = 1


def provenance(snippet: Snippet) -> dict[str, Any]:
    """Where the code is and what it is: the same for every task asked about it."""
    return {
        "path": snippet.path,
        "language": snippet.language,
        "kind": snippet.kind,
        "qualname": snippet.qualname,
        "parent": snippet.parent,
        "start_line": snippet.start_line,
        "end_line": snippet.end_line,
        "signature": snippet.signature,
        "docstring": snippet.docstring,
        "code": snippet.code,
    }


def line(record_id: str, snippet: Snippet, result: dict[str, Any]) -> bytes:
    """One NDJSON line: ids and provenance, then `result` (an `answer`, stored in the checkpoint)."""
    record = {
        "schema_version": SCHEMA_VERSION,
        "record_id": record_id,
        "snippet_id": snippet.id,
        **provenance(snippet),
        **result,
    }
    return orjson.dumps(record) + b"\n"


def answer(
    task: dict[str, Any],
    completion: Completion,
    data: Any,
    usage: dict[str, Any],
    *,
    estimated: bool,
    flags: Sequence[str] = (),
    judge: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The part of a record that comes from the API: the checkpoint stores it once per record id, and
    every place of the same code gets its own line from it (`line`). `flags` are the cleaning step's
    reasons (`stream.clean`); `judge`, with ``--task judge``, the judgment (`stream.judge`)."""
    c = completion
    out = {
        "task": task,
        "annotation": c.text,
        "data": data,
        "truncated": c.finish_reason == "length",
        "flags": list(flags),
        "response": {
            "id": c.response_id,
            "model": c.model,
            "created": c.created,
            "finish_reason": c.finish_reason,
            "usage": usage,
            "usage_estimated": estimated,
            "system_fingerprint": c.system_fingerprint,
            "endpoint": c.endpoint,  # the name of the endpoint that answered (never its URL or key)
        },
        "attempts": c.attempts,
        "latency_s": round(c.latency_s, 4),
        "annotated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if judge is not None:
        out["judge"] = judge
    return out


def embedding(task: dict[str, Any], e: Embedded, *, text: str, annotation_id: str | None) -> dict[str, Any]:
    """An embed record's part from the API (``--task embed``): what was embedded and how, without the
    vector itself (it is in the checkpoint as float32: `export --format vectors` writes it out)."""
    return {
        "task": task,
        "embedding": {
            "model": task.get("model"),
            "dimensions": e.dimensions,
            "text": text,  # --embed-text
            "annotation_id": annotation_id,  # the record whose answer was embedded with the code
            "truncated": e.truncated,
        },
        "response": {
            "model": e.model,
            "usage": e.usage,  # this input's share of the request's (by its token count)
            "request_inputs": e.request_inputs,
            "endpoint": e.endpoint,
        },
        "attempts": e.attempts,
        "latency_s": round(e.latency_s, 4),
        "annotated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def dry_line(
    record_id: str, snippet: Snippet, task: dict[str, Any], request: dict[str, Any], prompt_tokens: int
) -> bytes:
    """A dry run's line: the request that would be sent in place of the answer."""
    return line(record_id, snippet, {"task": task, "request": request, "prompt_tokens": prompt_tokens})
