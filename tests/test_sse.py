"""Unit tests of stream.sse's fast paths: `SSEParser` (frames cut at blank lines, one-line `data:` frames
taken whole) against a line-by-line reading of the spec, whatever the chunking; `Assembler.event`.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
"""

from __future__ import annotations

import re

import orjson
import pytest

from stream.errors import StreamError
from stream.sse import Assembler, SSEParser


def reference(body: bytes) -> list[tuple[str | None, bytes]]:
    """The spec, read literally and slowly: lines end at CRLF, LF or CR; a blank line dispatches; and, as
    snipstream tolerates, the end of the body dispatches a last event left without its blank line."""
    events: list[tuple[str | None, bytes]] = []
    data: list[bytes] = []
    event: str | None = None
    lines = re.split(rb"\r\n|\n|\r", body)
    tail = lines.pop()  # the body's last line, without its end
    for line in [*lines, tail, b""]:
        if not line:
            if data:
                events.append((event, b"\n".join(data)))
            data, event = [], None
        elif not line.startswith(b":"):
            name, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode()
    return events


def parse(chunks: list[bytes]) -> list[tuple[str | None, bytes]]:
    parser = SSEParser()
    out = [item for chunk in chunks for item in parser.feed(chunk)]
    return out + parser.finish()


CHUNK = orjson.dumps({"choices": [{"index": 0, "delta": {"content": "a\u2028b"}}]})
BODIES = {
    "openai": b"".join(b"data: " + CHUNK + b"\n\n" for _ in range(3)) + b"data: [DONE]\n\n",
    "crlf": b"data: " + CHUNK + b"\r\n\r\ndata: [DONE]\r\n\r\n",
    "lone cr": b"data: x\r\rdata: y\r\r",
    "no space": b"data:" + CHUNK + b"\n\ndata:[DONE]\n\n",
    "comments": b": ping\n\n: keep-alive\ndata: x\n\n:\n\ndata: y\n\n",
    "multi-line": b"data: a\ndata: b\n\ndata: c\n\n",
    "event types": b"event: error\ndata: e\n\ndata: plain\n\nevent: message\ndata: m\n\n",
    "other fields": b"id: 7\nretry: 100\ndata: x\n\nid: 8\n\n",
    "blank lines": b"\n\n\ndata: x\n\n\n\n\ndata: y\n\n\n",
    "empty data": b"data\n\ndata:\n\ndata: \n\n",
    "no final blank": b"data: x\n\ndata: y",
    "no final blank crlf": b"data: x\r\n\r\ndata: y\r\n",
    "event without data": b"event: ping\n\ndata: x\n\n",
    "mixed": b"data: a\n\n: c\ndata: b\n\nevent: e\ndata: c\ndata: d\n\ndata: " + CHUNK + b"\n\n",
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_a_whole_body_in_one_chunk_gives_the_events_the_spec_gives(name: str) -> None:
    body = BODIES[name]
    assert parse([body]) == reference(body)


@pytest.mark.parametrize("name", sorted(BODIES))
def test_the_events_are_the_same_wherever_the_body_is_cut_in_two(name: str) -> None:
    body = BODIES[name]
    want = reference(body)
    for cut in range(len(body) + 1):
        assert parse([body[:cut], body[cut:]]) == want, cut


@pytest.mark.parametrize("name", sorted(BODIES))
def test_the_events_are_the_same_one_byte_at_a_time_and_cut_in_three(name: str) -> None:
    body = BODIES[name]
    want = reference(body)
    assert parse([body[i : i + 1] for i in range(len(body))]) == want
    step = max(1, len(body) // 17)
    for a in range(0, len(body), step):
        for b in range(a, len(body), step):
            assert parse([body[:a], body[a:b], body[b:]]) == want, (a, b)


def test_events_come_out_of_the_chunk_that_completes_them() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\ndata: b\n") == [(None, b"a")]
    assert parser.feed(b"\n") == [(None, b"b")]
    assert parser.feed(b"data: c\r") == []
    assert parser.feed(b"\n\r\n") == [(None, b"c")]  # a CRLF cut between its CR and its LF is one line end
    assert parser.finish() == []


def test_json_keeps_u2028_and_nel_unsplit() -> None:
    data = '{"t": "a\u2028b\u0085c"}'.encode()
    assert parse([b"data: " + data + b"\n\n"]) == [(None, data)]


# --- Assembler.event ---------------------------------------------------------------------------------------


def test_done_ends_the_answer_once_padded_or_not_and_later_events_are_ignored() -> None:
    acc = Assembler()
    assert not acc.event(None, b'{"choices":[{"index":0,"delta":{"content":"hi"}}]}')
    assert acc.event(None, b" [DONE] ")
    assert not acc.event(None, b"[DONE]")
    assert not acc.event(None, b"not json either")  # after [DONE]: ignored
    assert acc.done and acc.result().text == "hi"


def test_a_malformed_chunk_an_error_event_and_an_error_object_are_stream_errors() -> None:
    with pytest.raises(StreamError, match="malformed JSON chunk"):
        Assembler().event(None, b"{not json")
    with pytest.raises(StreamError, match="overloaded"):
        Assembler().event("error", b'{"error": {"message": "overloaded"}}')
    with pytest.raises(StreamError, match="error event"):
        Assembler().event("error", b"null")
    with pytest.raises(StreamError, match="quota"):
        Assembler().event(None, b'{"error": "quota"}')


def test_metadata_comes_from_the_first_chunk_that_has_each_field() -> None:
    acc = Assembler()
    acc.event(None, b'{"id": "r1", "choices": []}')
    acc.event(None, b'{"id": "r2", "model": "m", "created": 5, "system_fingerprint": "fp", "choices": []}')
    acc.event(None, b'{"id": "r3", "model": "other", "usage": {"total_tokens": 3}, "choices": []}')
    c = acc.result()
    assert (c.response_id, c.model, c.created, c.system_fingerprint) == ("r1", "m", 5, "fp")
    assert c.usage == {"total_tokens": 3}
