"""A real loopback HTTP/1.1 server that speaks the OpenAI wire format, for tests and benchmarks.

`FakeOpenAI` runs its own asyncio event loop in a daemon thread, so one instance serves sync tests, async
tests (on any loop) and subprocesses alike::

    with FakeOpenAI(chunks=8) as server:
        httpx.post(f"{server.url}/chat/completions", json={"model": "m", "messages": [...]})
        assert server.completions_for("chat/completions") == 1

Endpoints (under ``/v1``): ``POST /chat/completions``, ``POST /completions`` (legacy), ``GET /models``;
``POST /embeddings`` (deterministic vectors, close for texts sharing words: `embed`, `EmbeddingLimits`);
OpenAI's Files API (``POST/GET /files``, ``GET/DELETE /files/{id}``, ``GET /files/{id}/content``) and Batch
API (``POST/GET /batches``, ``GET /batches/{id}``, ``POST /batches/{id}/cancel``), whose batches run their
lines through the same answers, on a clock of configurable steps (`BatchAPI`); anything else is a 404 with
an OpenAI-style error body. Streaming answers are Server-Sent Events in a
chunked body, shaped like OpenAI's (role in the first delta, a final chunk with ``finish_reason``, an
optional ``choices: []`` usage chunk, then ``data: [DONE]``).

Order of checks for every request: it is logged first (`FakeOpenAI.requests`), then ``latency`` is slept,
then the API key (401), the route (404), the JSON body (400), the model (404 ``model_not_found``); then,
for the completion and embedding endpoints only, the rate limiter (429 when ``rpm``/``tpm`` are set and a bucket lacks
room), then a scripted answer is consumed, else a random fault may be drawn (``fault_rate``), else the
normal answer is produced.

Rate limits follow OpenAI's conventions: two token buckets (requests, tokens) refilling continuously, 429s
with ``retry-after``/``retry-after-ms``, and ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``
headers (durations in OpenAI's format, see `format_duration`/`parse_duration`). Two documented behaviours
are modes: the accounting (`refund_unused`: OpenAI charges prompt + ``max_tokens`` at admission and gives
nothing back, the default; or the unused part is given back when the answer ends) and where the headers
go (`ratelimit_headers`: every answer, only 429s, or none). See `FakeOpenAI` for the providers' words.

HTTP parsing is a small strict HTTP/1.1 parser on asyncio streams (keep-alive, pipelining, chunked or
Content-Length request bodies, ``Expect: 100-continue``); JSON goes through orjson and stream chunks are
built from byte templates, so the per-request cost stays low. Stdlib + orjson only.

The package, by concern: `server` (`FakeOpenAI`: settings, state, counters), `routes` (one function per
endpoint, and the checks before them), `batchapi` (`BatchAPI`: the Files and Batch knobs, counters and
routes), `files` (the file store, multipart parsing, the Files routes), `batches` (a batch's life cycle),
`batchlines` (validating input lines, answering them), `faults` (`Scripted`, the random faults, faulty deliveries),
`ratelimits` (buckets, headers, the charges ledger), `replies` (`LoggedRequest`, `default_reply`, the
answers' JSON and SSE shapes), `http` (request parsing, response and SSE writing), `threaded` (the event
loop thread and connections), `cli` (`main`); provider modes are in `tests.providers`.

Run by hand: ``python -m tests.fakeserver --port 8000 [--latency S] [--chunks N] ...`` prints its URL on
stderr and serves until Ctrl-C (or SIGTERM).
"""

from tests.fakeserver.batchapi import BatchAPI
from tests.fakeserver.cli import main
from tests.fakeserver.embeddings import EmbeddingLimits, decode_base64, embed, embedding_inputs
from tests.fakeserver.faults import ALL_FAULTS, Scripted
from tests.fakeserver.ratelimits import format_duration, parse_duration
from tests.fakeserver.replies import LoggedRequest, default_reply, schema_instance
from tests.fakeserver.server import FakeOpenAI

__all__ = [
    "ALL_FAULTS",
    "BatchAPI",
    "EmbeddingLimits",
    "decode_base64",
    "embed",
    "embedding_inputs",
    "LoggedRequest",
    "Scripted",
    "FakeOpenAI",
    "default_reply",
    "schema_instance",
    "format_duration",
    "parse_duration",
    "main",
]
