"""Embeddings on the wire: the request body for ``POST /embeddings``, its limits, and the answer decoded.

As OpenAI documents the route (API reference, "Create embeddings":
https://platform.openai.com/docs/api-reference/embeddings/create; openai-python's
``types/embedding_create_params.py``): ``input`` is a string or an array of strings, at most 2,048 of them,
none empty, each at most 8,192 tokens, and at most 300,000 tokens summed over one request; ``model``;
``encoding_format`` ``"float"`` or ``"base64"``; ``dimensions`` ("only supported in text-embedding-3 and
later models"), sent only when asked for. We ask for base64, as openai-python's ``embeddings.create`` does
when its caller names no format: the float32 values little-endian, a third the size of the JSON numbers;
an answer of plain floats (a server that ignores the field) is read as well. vLLM, llama.cpp's server
(started with ``--embeddings``) and Ollama answer the same route under ``/v1``.

The answer (``types/create_embedding_response.py``): ``data`` items {``index``, ``embedding``}, ``model``,
``usage`` {``prompt_tokens``, ``total_tokens``}. Vectors are kept as float32 bytes from here to the
checkpoint (`sinks.schema.Vector`); nothing in between needs them as numbers.
"""

from __future__ import annotations

import base64
import struct
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import StreamError

if TYPE_CHECKING:
    from .model import Snippet

__all__ = [
    "EMBED_TASK",
    "MAX_INPUTS",
    "MAX_INPUT_TOKENS",
    "MAX_REQUEST_TOKENS",
    "EMBED_TEXTS",
    "Embeddings",
    "body",
    "parse",
    "text_of",
    "floats",
    "to_bytes",
]

EMBED_TASK = "embed"  # its name in --task, and its records' template name

MAX_INPUTS = 2048  # inputs one request may carry (OpenAI: "any array must be 2048 dimensions or less")
MAX_INPUT_TOKENS = 8192  # tokens one input may have
MAX_REQUEST_TOKENS = 300_000  # tokens summed over one request's inputs

#: What ``--embed-text`` may embed of a snippet: its code, its annotation, or both (the annotation when
#: the snippet has one, else the code alone).
EMBED_TEXTS = ("both", "code", "annotation")


@dataclass(slots=True)
class Embeddings:
    """One answer of the embeddings route: a float32 vector per input, in the inputs' order."""

    vectors: list[bytes]
    dimensions: int
    model: str | None
    usage: dict[str, Any]
    attempts: int = 1
    errors: list[str] = field(default_factory=list)
    latency_s: float = 0.0
    endpoint: str | None = None  # the name of the endpoint that answered (`stream.pool`)


def body(model: str, inputs: list[str], dimensions: int | None) -> dict[str, Any]:
    """The request for `inputs`, vectors asked for as base64."""
    out: dict[str, Any] = {"model": model, "input": inputs, "encoding_format": "base64"}
    if dimensions is not None:
        out["dimensions"] = dimensions
    return out


def parse(doc: Any, expected: int) -> Embeddings:
    """An answer's vectors as float32 bytes, ordered by ``index``. An answer that is not whole (fewer or
    more vectors than inputs, vectors of different sizes, an index out of place) raises `StreamError`, as a
    broken event stream does: the request is sent again."""
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or len(data) != expected:
        got = len(data) if isinstance(data, list) else "no"
        raise StreamError(f"the embeddings answer has {got} vectors for {expected} inputs")
    vectors: list[bytes | None] = [None] * expected
    for position, item in enumerate(data):
        index = item.get("index", position) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < expected or vectors[index] is not None:
            raise StreamError(f"the embeddings answer has a vector at index {index!r}")
        vectors[index] = _vector(item.get("embedding"))
    sizes = {len(v) for v in vectors if v is not None}
    if len(sizes) != 1 or 0 in sizes:
        raise StreamError("the embeddings answer has vectors of different sizes")
    usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}
    model = doc.get("model") if isinstance(doc.get("model"), str) else None
    return Embeddings([v for v in vectors if v is not None], sizes.pop() // 4, model, usage)


def _vector(value: Any) -> bytes:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise StreamError("an embedding is not valid base64") from None
        if len(raw) % 4:
            raise StreamError("a base64 embedding is not a whole number of float32 values")
        return raw if _LITTLE else to_bytes(floats(raw))
    if isinstance(value, list) and all(isinstance(x, int | float) for x in value):
        return to_bytes(value)
    raise StreamError("an embedding is neither base64 nor a list of numbers")


_LITTLE = struct.pack("=f", 1.0) == struct.pack("<f", 1.0)


def to_bytes(values: Any) -> bytes:
    """Numbers as float32 little-endian bytes (the stored form)."""
    arr = array("f", values)
    if not _LITTLE:
        arr.byteswap()
    return arr.tobytes()


def floats(raw: bytes) -> list[float]:
    """Stored float32 little-endian bytes as numbers."""
    arr = array("f")
    arr.frombytes(raw)
    if not _LITTLE:
        arr.byteswap()
    return arr.tolist()


def text_of(snippet: Snippet, annotation: str | None, mode: str) -> str | None:
    """What is embedded of `snippet` under ``--embed-text`` `mode` (None: nothing, for ``annotation`` when
    the snippet has none). ``both`` is the annotation, a blank line, then the code: a question asked in
    words meets the words first, and a vector of the code alone is made when there is no annotation."""
    code = snippet.code
    if mode == "code":
        return code
    note = annotation.strip() if annotation else ""
    if mode == "annotation":
        return note or None
    return f"{note}\n\n{code}" if note else code
