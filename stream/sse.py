"""Server-sent events and answer bodies: bytes in, one `Completion` out (no I/O of its own).

`iter_sse` splits an event stream as the SSE spec says; `Assembler` folds streamed chunks (chat deltas or
legacy completion texts) into one answer; `parse_full` reads a non-streamed answer. An error object in a
200 (some servers report failures mid-stream that way) becomes a `StreamError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import StreamError

__all__ = [
    "Completion",
    "SSEParser",
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
    endpoint: str | None = None  # the name of the endpoint that answered (`stream.pool`)


# --- SSE -------------------------------------------------------------------------------------------------


class SSEParser:
    """An event stream parsed as its bytes arrive: `feed` each chunk, get the events it completed.

    Lines end at CR, LF or CRLF only, as SSE says; working on bytes keeps it so (``str.splitlines`` would
    also break at U+2028 or U+0085, which JSON strings may carry unescaped) and leaves decoding to
    orjson. Tolerates what real servers send: comment/keep-alive lines (``: ping``), ``event:``/``id:``/
    ``retry:`` fields, CRLF or lone CR, and a last event without its blank line (`finish`).
    https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

    The fast path: between events (no event begun in an earlier chunk), a chunk is cut at its blank lines
    (``\n\n``) in one C call, and a frame that is one ``data:`` line, which is what OpenAI-compatible servers
    send for every chunk, becomes an event without going line by line through Python. Every other frame
    (several lines, ``event:``, comments) and whatever follows the chunk's last blank line take the line by
    line path, whose state carries over to the next chunk. A chunk that is exactly one such event (a slow
    stream's: one event per TCP segment) is recognised before any of that. At 100 events per second per
    stream, Python work per line was a large share of a busy client's CPU.
    """

    __slots__ = ("_data", "_event", "_pending")

    def __init__(self) -> None:
        self._data: list[bytes] = []
        self._event: str | None = None
        self._pending = b""  # the start of a line not yet ended (and a held CR)

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        """The events `chunk` completes, as (event type, data bytes)."""
        if (  # a slow stream's usual chunk: exactly one ``data: ...`` line and its blank line (4 C calls)
            chunk[:6] == b"data: "
            and chunk.find(b"\n") == len(chunk) - 2
            and chunk[-1:] == b"\n"
            and not (self._pending or self._data or self._event is not None)
            and b"\r" not in chunk
        ):
            return [(None, chunk[6:-2])]
        if self._pending:
            chunk = self._pending + chunk
        hold = b""
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):  # maybe the first half of a CRLF split across chunks
                chunk, hold = chunk[:-1], b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        out: list[tuple[str | None, bytes]] = []
        if self._data or self._event is not None:  # an event begun earlier: finish it line by line
            lines = chunk.split(b"\n")
        else:
            frames = chunk.split(b"\n\n")
            lines = frames.pop().split(b"\n")  # after the last blank line: no event ended there
            for frame in frames:
                if frame[:5] == b"data:" and b"\n" not in frame:
                    out.append((None, frame[6:] if frame[5:6] == b" " else frame[5:]))
                elif frame:
                    self._lines(frame.split(b"\n"), out)
                    self._dispatch(out)  # the blank line that ended the frame
        self._pending = lines.pop() + hold
        self._lines(lines, out)
        return out

    def finish(self) -> list[tuple[str | None, bytes]]:
        """At the end of the body: the last event, when the server left out its blank line."""
        pending, self._pending = self._pending.rstrip(b"\r"), b""
        out: list[tuple[str | None, bytes]] = []
        if pending:
            self._lines([pending], out)
        self._dispatch(out)
        return out

    def _lines(self, lines: list[bytes], out: list[tuple[str | None, bytes]]) -> None:
        for line in lines:
            if not line:
                self._dispatch(out)
            elif line[0] != 58:  # not a ":" comment line
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    self._data.append(value)
                elif name == b"event":
                    self._event = value.decode("utf-8", "replace")

    def _dispatch(self, out: list[tuple[str | None, bytes]]) -> None:
        if self._data:
            out.append((self._event, b"\n".join(self._data)))
            self._data = []
        self._event = None


async def iter_sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[str | None, bytes]]:
    """Server-sent events as (event type, data bytes), straight from the body's byte chunks (`SSEParser`)."""
    parser = SSEParser()
    async for chunk in chunks:
        for item in parser.feed(chunk):
            yield item
    for item in parser.finish():
        yield item


class Assembler:
    """Folds streamed chunks (chat deltas or completion texts) into one Completion.

    `feed` runs once per event: the response metadata is looked up only until every field has been seen
    (the first chunk normally carries them all), not in every chunk. `on_text` hears each piece of the
    answer's text as it arrives (``snipstream ask`` prints it)."""

    def __init__(self, on_text: Callable[[str], None] | None = None) -> None:
        self.on_text = on_text
        self.parts: list[str] = []
        self.c = Completion(text="")
        self.done = False
        self._meta = False  # every metadata field known

    def event(self, event: str | None, data: bytes) -> bool:
        """One SSE event of the answer (ignored once [DONE] was seen). True for the [DONE] that ends it.

        Raises StreamError for a malformed JSON chunk, an ``event: error`` and an error object."""
        if self.done:
            return False
        if data[:1] != b"{" and data.strip() == b"[DONE]":  # a chunk is an object: no strip() for those
            self.done = True
            return True
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise StreamError(
                f"malformed JSON chunk in the stream: {data[:80].decode('utf-8', 'replace')!r}"
            ) from None
        if event == "error":
            raise_for_error_object(
                chunk if isinstance(chunk, dict) and "error" in chunk else {"error": chunk or "error event"}
            )
        if isinstance(chunk, dict):
            self.feed(chunk)
        return False

    def feed(self, chunk: dict[str, Any]) -> None:
        if chunk.get("error"):
            raise_for_error_object(chunk)
        c = self.c
        if not self._meta:
            self._metadata(chunk)
        usage = chunk.get("usage")
        if usage:
            c.usage = usage
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            piece = (delta or {}).get("content") if delta is not None else choice.get("text")
            if piece:
                self.parts.append(piece)
                if self.on_text is not None:
                    self.on_text(piece)
            finish = choice.get("finish_reason")
            if finish:
                c.finish_reason = finish

    def _metadata(self, chunk: dict[str, Any]) -> None:
        c = self.c
        c.response_id = c.response_id or chunk.get("id")
        c.model = c.model or chunk.get("model")
        c.created = c.created or chunk.get("created")
        c.system_fingerprint = c.system_fingerprint or chunk.get("system_fingerprint")
        self._meta = bool(c.response_id and c.model and c.created and c.system_fingerprint)

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
