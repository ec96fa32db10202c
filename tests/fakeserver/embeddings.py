"""``POST /v1/embeddings``: OpenAI's Embeddings API, answered with deterministic bag-of-words vectors in which
texts sharing words are close (`embed`), so search can be tested without a model.

The wire format, as OpenAI documents it (API reference, "Create embeddings":
https://platform.openai.com/docs/api-reference/embeddings/create) and as openai-python types it:

* request (``src/openai/types/embedding_create_params.py``, ``EmbeddingCreateParams``): ``input`` (required)
  is a string, an array of strings, an array of integers (one token array) or an array of integer arrays;
  ``model`` (required); ``encoding_format`` ``"float"`` or ``"base64"``; ``dimensions`` (the size of the
  output vectors, "Only supported in text-embedding-3 and later models"); ``user``. The docstring of
  ``input`` states the limits this route enforces: an input "cannot be an empty string", "any array must be
  2048 dimensions or less", at most 8192 tokens per input, and "a maximum of 300,000 tokens summed across
  all inputs in a single request".
* response (``src/openai/types/create_embedding_response.py``, ``CreateEmbeddingResponse``): ``object``
  ``"list"``, ``data``, ``model``, ``usage`` {``prompt_tokens``, ``total_tokens``}; each item of ``data``
  (``src/openai/types/embedding.py``, ``Embedding``) is {``object``: ``"embedding"``, ``index``,
  ``embedding``}. With ``encoding_format: "base64"`` ``embedding`` is a string: the vector's float32 values,
  little-endian, base64-encoded; openai-python reads it back that way (``lib/_parsing/_embeddings.py``,
  ``parse_embedding_response``: ``base64.b64decode`` into an ``array("f")`` or a float32 numpy buffer), and
  its ``embeddings.create`` asks for base64 when the caller names no format.

Errors are 400s in OpenAI's error shape. The wording of two follows answers OpenAI has been seen to give:
an input over the per-input limit ("Invalid 'input': maximum context length is 8192 tokens.",
neo4j-labs/agent-memory#104) and a request over the summed limit (type and code ``max_tokens_per_request``,
"Requested N tokens, max 300000 tokens per request", assafelovic/gpt-researcher#1500).

The request goes through the same checks as a completion (`routes.invalid`: the JSON body, ``model``, a model
the server does not serve), then the same admission (`FakeOpenAI._admit`): it costs its prompt tokens (there
is no completion to reserve for), may be refused with a 429, takes a scripted answer or draws a random fault
like a completion. Faults on a JSON answer go out as `faults.json_delivery` says; ``"cut"`` answers with the
first half of the vectors only. Tokens are whitespace-separated words (as for completions); a token array
counts its integers.

Batch lines with ``url`` ``/v1/embeddings`` (`tests.fakeserver.batchlines`) are answered by `answer_body`:
the same checks and vectors, without admission (a batch's requests are not rate limited one by one).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from tests.fakeserver import faults
from tests.fakeserver.ratelimits import Charge
from tests.fakeserver.replies import error_body
from tests.fakeserver.routes import admit, answered_early, invalid_body

if TYPE_CHECKING:
    from tests.fakeserver.routes import Exchange
    from tests.fakeserver.server import Admission, FakeOpenAI

DEFAULT_DIMENSIONS = 1536  # text-embedding-3-small's and text-embedding-ada-002's vector size
SPREAD = 4  # the signed coordinates each word adds to
_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits: `load_plugins(x)` is "load", "plugins", "x"

#: One input as the route sees it: its words (a token array's tokens as ``"#<id>"``) and its token count.
Input = tuple[list[str], int]


@dataclass(frozen=True, slots=True)
class EmbeddingLimits:
    """The documented limits of one request (see the module docstring): inputs per request, tokens per
    input, tokens summed over the inputs. `FakeOpenAI.embedding_limits` may set smaller ones, as other
    servers have (a client's batching can then be tested at small sizes). `oversize` is how an input over
    `input_tokens` is refused: ``"openai"`` (a 400, as above) or ``"llamacpp"``: llama.cpp's server refuses an
    input longer than its physical batch (``-ub``, 512 by default) with a **500** ``server_error``, "input (N
    tokens) is too large to process. increase the physical batch size (current batch size: M)" (its
    ``tools/server`` embeddings handler; seen here from llama-server 0.3.36's build, `bench/realserver.py`,
    started with ``--embeddings --pooling mean``)."""

    inputs: int = 2048
    input_tokens: int = 8192
    request_tokens: int = 300_000
    oversize: str = "openai"


# ---- the vectors ----------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """The words of `text` as the vectors see them: lower-cased runs of letters and digits."""
    return _WORD.findall(text.lower())


@functools.lru_cache(maxsize=65536)
def _features(word: str, dimensions: int) -> tuple[tuple[int, float], ...]:
    """The `SPREAD` (coordinate, ±1) pairs of one word: from its BLAKE2b digest, so stable across runs."""
    digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=4 * SPREAD).digest()
    out = []
    for i in range(SPREAD):
        value = int.from_bytes(digest[4 * i : 4 * i + 4], "little")
        out.append((value % dimensions, -1.0 if value >> 31 else 1.0))
    return tuple(out)


def embed(text: str | list[str], dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The vector the server answers for `text` (or for a list of words): every word adds ±1 at `SPREAD`
    hashed coordinates, once per occurrence, and the sum is L2-normalised and rounded to float32 (the
    precision of a base64 answer). The dot product of two vectors (their cosine) therefore grows with the
    words the texts share; a text without words is embedded as the one word ``text`` itself."""
    tokens = words(text) if isinstance(text, str) else text
    if not tokens:
        tokens = [text if isinstance(text, str) else ""]
    vec = [0.0] * dimensions
    for token in tokens:
        for index, sign in _features(token, dimensions):
            vec[index] += sign
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:  # every word cancelled out (possible with very few dimensions)
        vec[0], norm = 1.0, 1.0
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in vec))
    return list(struct.unpack(f"<{dimensions}f", packed))


def encode_base64(vector: list[float]) -> str:
    """`vector` as ``encoding_format: "base64"`` carries it: float32, little-endian, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def decode_base64(data: str) -> list[float]:
    """The floats of a base64 embedding (for tests)."""
    raw = base64.b64decode(data)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# ---- the request ----------------------------------------------------------------------------------------


def embedding_inputs(body: dict[str, Any] | None) -> list[str | list[int]] | None:
    """The inputs of an embeddings request body, one per vector (a lone string or token array is one), or
    None when ``input`` has none of the documented shapes. Tests read a logged request's inputs with it."""
    value = (body or {}).get("input")
    if isinstance(value, str) or _token_array(value):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value) or all(_token_array(v) for v in value):
            return list(value)
    return None


def _token_array(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def _parsed(items: list[str | list[int]]) -> list[Input]:
    return [
        (words(item), len(item.split())) if isinstance(item, str) else ([f"#{t}" for t in item], len(item))
        for item in items
    ]


def _problem(
    body: dict[str, Any], limits: EmbeddingLimits, native: int
) -> tuple[list[Input], int, str, tuple[str, str, str | None, str | None] | None]:
    """(the inputs, dimensions, encoding format, and (message, type, code, param) of a 400, or None)."""
    items = embedding_inputs(body)
    dims, fmt = body.get("dimensions", native), body.get("encoding_format") or "float"
    bad = "invalid_request_error"
    if items is None:
        message = "'input' must be a string, an array of strings, or an array of token arrays, and not empty."
        return [], dims, fmt, (message, bad, None, "input")
    if any(item == "" or item == [] for item in items):
        return (
            [],
            dims,
            fmt,
            ("'input' cannot be an empty string or an empty token array.", bad, None, "input"),
        )
    if len(items) > limits.inputs:
        message = f"Invalid 'input': an array must be {limits.inputs} dimensions or less, not {len(items)}."
        return [], dims, fmt, (message, bad, None, "input")
    if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= native:
        message = f"'dimensions' must be an integer from 1 to {native}, not {dims!r}."
        return [], dims, fmt, (message, bad, None, "dimensions")
    if fmt not in ("float", "base64"):
        message = f"'encoding_format' must be 'float' or 'base64', not {fmt!r}."
        return [], dims, fmt, (message, bad, None, "encoding_format")
    inputs = _parsed(items)
    if any(count > limits.input_tokens for _, count in inputs):
        message = f"Invalid 'input': maximum context length is {limits.input_tokens} tokens."
        return inputs, dims, fmt, (message, bad, None, None)
    total = sum(count for _, count in inputs)
    if total > limits.request_tokens:
        message = f"Requested {total} tokens, max {limits.request_tokens} tokens per request"
        return inputs, dims, fmt, (message, "max_tokens_per_request", "max_tokens_per_request", None)
    return inputs, dims, fmt, None


def answer_object(model: str, vectors: list[list[float]], fmt: str, prompt_tokens: int) -> dict[str, Any]:
    """A ``CreateEmbeddingResponse``: one ``embedding`` object per vector, in input order."""
    data = [
        {"object": "embedding", "index": i, "embedding": encode_base64(v) if fmt == "base64" else v}
        for i, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


def vectors_of(inputs: list[Input], dims: int) -> list[list[float]]:
    """The vector of each input (`embed`)."""
    return [embed(tokens, dims) for tokens, _ in inputs]


def check(
    server: FakeOpenAI, body: dict[str, Any] | None
) -> tuple[list[Input], int, str, tuple[int, dict[str, Any]] | None]:
    """An embeddings body checked as the route checks it (`routes.invalid_body`: the JSON body, ``model``, a
    model the server does not serve; then `_problem`): (the inputs, dimensions, encoding format, and the
    (status, error body) refusing it, or None)."""
    problem = invalid_body(server, body, "embeddings")
    if problem is not None:
        status, message, code, param = problem
        return [], 0, "float", (status, error_body(message, "invalid_request_error", code, param))
    assert body is not None
    inputs, dims, fmt, bad = _problem(body, server.embedding_limits, server.embedding_dimensions)
    if bad is not None:
        limits = server.embedding_limits
        big = max((count for _, count in inputs), default=0)
        if limits.oversize == "llamacpp" and big > limits.input_tokens:
            message = (
                f"input ({big} tokens) is too large to process. increase the physical batch size "
                f"(current batch size: {limits.input_tokens})"
            )
            return (
                inputs,
                dims,
                fmt,
                (500, {"error": {"code": 500, "message": message, "type": "server_error"}}),
            )
        message, type_, code, param = bad
        return inputs, dims, fmt, (400, error_body(message, type_, code, param))
    return inputs, dims, fmt, None


def answer_body(server: FakeOpenAI, body: dict[str, Any] | None) -> tuple[int, dict[str, Any], int]:
    """A request answered as the route answers it, without admission, scripts or faults: (status, JSON
    body, prompt tokens: 0 when refused)."""
    inputs, dims, fmt, refused = check(server, body)
    if refused is not None:
        return *refused, 0
    assert body is not None
    tokens = sum(count for _, count in inputs)
    return 200, answer_object(body["model"], vectors_of(inputs, dims), fmt, tokens), tokens


# ---- the route ------------------------------------------------------------------------------------------


async def create(ex: Exchange) -> bool:
    """``POST /v1/embeddings``: checked (`check`), admitted (`FakeOpenAI._admit`, costing the prompt
    tokens), then answered (`_answer`)."""
    server = ex.server
    inputs, dims, fmt, refused = check(server, None if ex.bad_json else ex.req.body)
    if refused is not None:
        status, error = refused
        return await ex.json(status, error, server._current_ratelimit_headers())
    adm = await admit(ex, sum(count for _, count in inputs))
    if isinstance(adm, bool):  # refused with a 429, answered
        return adm
    charge = Charge(server._finish, 0, admitted=adm.charged)  # nothing reserved, nothing to give back
    try:
        return await _answer(ex, adm, charge, inputs, dims, fmt)
    finally:
        charge.settle()


async def _answer(
    ex: Exchange, adm: Admission, charge: Charge, inputs: list[Input], dims: int, fmt: str
) -> bool:
    """An admitted request's answer: scripted, an injected error, or the vectors."""
    server, body = ex.server, ex.req.body
    assert body is not None
    scripted, fault = adm.scripted, adm.fault
    answered, headers = await answered_early(ex, adm, charge, stream=False, delay=0.0)
    if answered is not None:
        return answered
    vectors = vectors_of(inputs, dims)
    if fault == "cut":
        vectors = vectors[: len(vectors) // 2]
    tokens = sum(count for _, count in inputs)
    payload = orjson.dumps(answer_object(body["model"], vectors, fmt, tokens))
    headers = {"x-request-id": f"req_{next(server._ids)}"} | headers
    ex.req.status = 200
    how = faults.json_delivery(scripted, fault, server.stall_seconds)
    return await faults.send_json(ex.writer, payload, headers, ex.keep, how, settle=charge.settle)
