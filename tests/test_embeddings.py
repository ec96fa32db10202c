"""Unit tests of `stream.embeddings`: the request body and the answer as OpenAI documents them (base64 or
floats, ordered by ``index``), and what is embedded of a snippet under each ``--embed-text``."""

from __future__ import annotations

import base64
import struct

import pytest

from stream.embeddings import body, floats, parse, text_of, to_bytes
from stream.errors import StreamError
from stream.model import Snippet


def b64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def answer(*embeddings: object, indexes: list[int] | None = None) -> dict:
    idx = indexes if indexes is not None else list(range(len(embeddings)))
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in zip(idx, embeddings)],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 5, "total_tokens": 5},
    }


def test_body_asks_for_base64_and_sends_dimensions_only_when_given() -> None:
    assert body("m", ["a", "b"], None) == {"model": "m", "input": ["a", "b"], "encoding_format": "base64"}
    assert body("m", ["a"], 256)["dimensions"] == 256


def test_base64_and_float_answers_decode_to_the_same_vectors() -> None:
    one, two = [0.5, -0.25, 1.0], [0.0, 0.125, -1.5]
    from_b64 = parse(answer(b64(one), b64(two)), 2)
    from_floats = parse(answer(one, two), 2)
    assert from_b64.vectors == from_floats.vectors
    assert [floats(v) for v in from_b64.vectors] == [one, two]
    assert from_b64.dimensions == 3 and from_b64.usage["prompt_tokens"] == 5


def test_vectors_are_put_in_input_order_by_index() -> None:
    got = parse(answer([2.0], [1.0], indexes=[1, 0]), 2)
    assert [floats(v) for v in got.vectors] == [[1.0], [2.0]]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (answer([1.0]), 2),  # fewer vectors than inputs (an answer cut short)
        (answer([1.0], [2.0], indexes=[0, 0]), 2),  # the same index twice
        (answer([1.0], [2.0, 3.0]), 2),  # vectors of different sizes
        (answer("not base64!"), 1),
        (answer(base64.b64encode(b"abc").decode()), 1),  # not a whole float32
        ({"error": "nope"}, 1),
    ],
)
def test_an_answer_that_is_not_whole_is_a_stream_error(doc: dict, expected: int) -> None:
    with pytest.raises(StreamError):
        parse(doc, expected)


def test_stored_bytes_are_float32_little_endian() -> None:
    assert to_bytes([1.0, -2.0]) == struct.pack("<2f", 1.0, -2.0)


def snippet(code: str = "def f():\n    return 1\n") -> Snippet:
    return Snippet(
        path="a.py",
        language="python",
        kind="function",
        qualname="f",
        parent=None,
        start_line=1,
        end_line=2,
        code=code,
        docstring=None,
        signature="def f()",
    )


def test_text_of_each_mode() -> None:
    s = snippet()
    assert text_of(s, "Returns one.", "both") == "Returns one.\n\n" + s.code
    assert text_of(s, None, "both") == s.code  # no annotation yet: the code alone
    assert text_of(s, "  ", "both") == s.code
    assert text_of(s, "Returns one.", "code") == s.code
    assert text_of(s, "Returns one.", "annotation") == "Returns one."
    assert text_of(s, None, "annotation") is None
