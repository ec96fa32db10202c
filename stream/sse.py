"""Server-sent events and answer bodies: bytes in, one `Completion` out (no I/O of its own).

`iter_sse` splits an event stream as the SSE spec says; `Assembler` folds streamed chunks (chat deltas or
legacy completion texts) into one answer; `parse_full` reads a non-streamed answer. An error object in a
200 (some servers report failures mid-stream that way) becomes a `StreamError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .errors import StreamError

__all__ = [
    "Completion",
    "iter_sse",
    "Assembler",
    "parse_full",
    "raise_for_error_object",
    "reasoning_tokens",
    "cached_tokens",
]


@dataclass(slots=True)
class Completion:
    """One answer, with the response metadata a record keeps."""

    text: str
    response_id: str | None = None
    model: str | None = None
    created: int | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    system_fingerprint: str | None = None
    attempts: int = 1
    latency_s: float = 0.0
    errors: list[str] = field(default_factory=list)


# --- SSE -------------------------------------------------------------------------------------------------


async def iter_sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[str | None, bytes]]:
    """Server-sent events as (event type, data bytes), straight from the body's byte chunks.

    Lines end at CR, LF or CRLF only, as SSE says; working on bytes keeps it so (``str.splitlines`` would
    also break at U+2028 or U+0085, which JSON strings may carry unescaped) and leaves decoding to
    orjson. Tolerates what real servers send: comment/keep-alive lines (``: ping``), ``event:``/``id:``/
    ``retry:`` fields, CRLF or lone CR, and a last event without its blank line.
    https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
    """
    data: list[bytes] = []
    event: str | None = None
    pending = b""
    async for chunk in chunks:
        if pending:
            chunk = pending + chunk
        hold = b""
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):  # maybe the first half of a CRLF split across chunks
                chunk, hold = chunk[:-1], b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        pending = lines.pop() + hold
        for line in lines:
            if not line:
                if data:
                    yield event, b"\n".join(data)
                data, event = [], None
            elif line[0] != 58:  # not a ":" comment line
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    data.append(value)
                elif name == b"event":
                    event = value.decode("utf-8", "replace")
    pending = pending.rstrip(b"\r")
    if pending and pending[0] != 58:
        name, _, value = pending.partition(b":")
        if name == b"data":
            data.append(value[1:] if value[:1] == b" " else value)
    if data:
        yield event, b"\n".join(data)


class Assembler:
    """Folds streamed chunks (chat deltas or completion texts) into one Completion."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.c = Completion(text="")
        self.done = False

    def feed(self, chunk: dict[str, Any]) -> None:
        raise_for_error_object(chunk)
        c = self.c
        c.response_id = c.response_id or chunk.get("id")
        c.model = c.model or chunk.get("model")
        c.created = c.created or chunk.get("created")
        c.system_fingerprint = c.system_fingerprint or chunk.get("system_fingerprint")
        if chunk.get("usage"):
            c.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            piece = (delta or {}).get("content") if delta is not None else choice.get("text")
            if piece:
                self.parts.append(piece)
            if choice.get("finish_reason"):
                c.finish_reason = choice["finish_reason"]

    def result(self) -> Completion:
        self.c.text = "".join(self.parts)
        return self.c


def raise_for_error_object(obj: dict[str, Any]) -> None:
    error = obj.get("error")
    if error:
        msg = error.get("message") if isinstance(error, dict) else str(error)
        raise StreamError(f"the API answered with an error object: {msg}")


def parse_full(obj: Any) -> Completion:
    if not isinstance(obj, dict):
        raise StreamError(f"the response is not a JSON object: {str(obj)[:80]!r}")
    raise_for_error_object(obj)
    choices = obj.get("choices") or []
    if not choices:
        raise StreamError("the response has no choices")
    choice = choices[0]
    message = choice.get("message")
    text = (message or {}).get("content") if message is not None else choice.get("text")
    return Completion(
        text=text or "",
        response_id=obj.get("id"),
        model=obj.get("model"),
        created=obj.get("created"),
        finish_reason=choice.get("finish_reason"),
        usage=obj.get("usage"),
        system_fingerprint=obj.get("system_fingerprint"),
    )


def reasoning_tokens(usage: dict[str, Any] | None) -> int:
    """``usage.completion_tokens_details.reasoning_tokens`` (OpenAI's reasoning models), else 0."""
    details = (usage or {}).get("completion_tokens_details") or {}
    value = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return value if isinstance(value, int) else 0


def cached_tokens(usage: dict[str, Any] | None) -> int:
    """``usage.prompt_tokens_details.cached_tokens`` (OpenAI's automatic prompt caching), else 0."""
    details = (usage or {}).get("prompt_tokens_details") or {}
    value = details.get("cached_tokens") if isinstance(details, dict) else None
    return value if isinstance(value, int) else 0
