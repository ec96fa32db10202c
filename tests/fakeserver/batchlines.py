"""The lines of a batch: validating an input file (the errors that fail a batch, with 1-based line
numbers), and answering one request line the way the completion endpoints answer it (the lines of the
output and error files).

Input lines are ``{custom_id, method, url, body}`` (API reference, "The request input object",
https://platform.openai.com/docs/api-reference/batch/request-input). Output and error lines are
``{id, custom_id, response, error}`` ("The request output object",
https://platform.openai.com/docs/api-reference/batch/request-output; vLLM's ``run-batch`` writes the same
shape, vllm-project/vllm ``vllm/entrypoints/openai/run_batch.py``).

An ``/v1/embeddings`` batch (one of the endpoints ``batch_create_params.py`` lists) has lines whose body is
an embeddings request, answered as ``POST /v1/embeddings`` answers it (`embeddings.answer_body`); OpenAI
restricts such a batch "to a maximum of 50,000 embedding inputs across all requests in the batch" (the
docstring of ``endpoint`` in openai-python ``src/openai/types/batch_create_params.py``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from tests.fakeserver import embeddings
from tests.fakeserver.replies import LoggedRequest, answer_object, default_error, error_body
from tests.fakeserver.routes import generate, invalid_body, requested_max_tokens

if TYPE_CHECKING:
    from tests.fakeserver.server import FakeOpenAI

#: The endpoints this server runs batches for, and the kind of answer each gets. OpenAI takes more
#: (``endpoint`` in openai-python ``src/openai/types/batch_create_params.py``); they are refused here.
ENDPOINT_KINDS = {"/v1/chat/completions": "chat", "/v1/completions": "text", "/v1/embeddings": "embeddings"}
#: The message OpenAI's Batch guide shows for a request a batch expired before running
#: (https://platform.openai.com/docs/guides/batch, "Batch expiration").
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
CANCELLED_MESSAGE = "This request was not run: the batch was cancelled first."


@dataclass(frozen=True, slots=True)
class Line:
    """A valid input line: its 1-based line number in the file, ``custom_id`` and ``body``."""

    number: int
    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answered:
    """One answered line: the output or error file line, whether it succeeded, its usage (None when the
    request failed or the server reports none)."""

    line: dict[str, Any]
    ok: bool
    usage: dict[str, Any] | None


def batch_error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict[str, Any]:
    """One entry of a failed batch's ``errors.data`` (``BatchError`` in openai-python
    ``src/openai/types/batch_error.py``: ``code``, ``message``, ``param``, ``line``)."""
    return {"code": code, "message": message, "param": param, "line": line}


# ---- validation -----------------------------------------------------------------------------------------


def validate(
    data: bytes, endpoint: str, max_requests: int, max_inputs: int
) -> tuple[list[Line], list[dict[str, Any]]]:
    """The lines of an input file, or the errors that fail the batch. Any error fails it: the guide's status
    table (https://platform.openai.com/docs/guides/batch) has a batch go ``failed`` when its input file
    does not pass validation, and nothing of it is run. Blank lines are skipped but counted in line numbers.

    Codes: ``empty_file``; ``too_many_tasks`` (more than `max_requests` lines; the guide's "Rate limits"
    allow 50,000 requests per batch); and per line ``invalid_json_line``, ``invalid_request`` (not an
    object, or a field of the wrong type), ``missing_required_parameter``, ``invalid_value`` (a ``method``
    other than POST, the only one the request input object allows), ``url_mismatch`` (``url`` is not the
    batch's endpoint), ``duplicate_custom_id`` (the guide requires a unique ``custom_id`` per request),
    ``model_mismatch`` (the guide allows one model per input file). The codes are those upstream reports
    (listed in stdapi-ai/stdapi.ai#240, with the observed shape ``BatchError(code="invalid_json_line",
    line=1, ...)``); the messages are this server's own. An embeddings batch with more than `max_inputs`
    inputs over its lines fails too: OpenAI documents that limit, not how it is enforced, so this server
    enforces it at validation, as the limit on requests, with ``too_many_tasks`` and a message of its own.
    """
    raws = [(n, raw) for n, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]
    if not raws:
        return [], [batch_error("empty_file", "The input file has no requests.")]
    if len(raws) > max_requests:
        message = f"The input file has {len(raws)} requests; a batch may have at most {max_requests}."
        return [], [batch_error("too_many_tasks", message)]
    lines: list[Line] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in raws:
        checked = check_line(number, raw, endpoint, seen, lines[0].body["model"] if lines else None)
        if isinstance(checked, Line):
            seen.add(checked.custom_id)
            lines.append(checked)
        else:
            errors.append(checked)
    inputs = sum(len(embeddings.embedding_inputs(line.body) or [0]) for line in lines)
    if ENDPOINT_KINDS.get(endpoint) == "embeddings" and inputs > max_inputs:
        message = (
            f"The batch has {inputs} embedding inputs over its requests; it may have at most {max_inputs}."
        )
        errors.append(batch_error("too_many_tasks", message))
    return lines, errors


def check_line(
    number: int, raw: bytes, endpoint: str, seen: set[str], model: str | None
) -> Line | dict[str, Any]:
    """The `Line` of one input line, or its first error (`model`: the first valid line's model)."""
    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return batch_error("invalid_json_line", "This line is not valid JSON.", number)
    if not isinstance(request, dict):
        return batch_error("invalid_request", "Each line must be a JSON object.", number)
    for name in ("custom_id", "method", "url", "body"):
        if name not in request:
            return batch_error(
                "missing_required_parameter", f"Missing required parameter: '{name}'.", number, name
            )
    custom_id, method, url, body = (request[k] for k in ("custom_id", "method", "url", "body"))
    if not isinstance(custom_id, str) or not custom_id:
        return batch_error("invalid_request", "'custom_id' must be a non-empty string.", number, "custom_id")
    if method != "POST":
        return batch_error(
            "invalid_value", f"Invalid method {method!r}: only POST is supported.", number, "method"
        )
    if url != endpoint:
        message = f"The url {url!r} is not the batch's endpoint {endpoint!r}."
        return batch_error("url_mismatch", message, number, "url")
    if not isinstance(body, dict):
        return batch_error("invalid_request", "'body' must be a JSON object.", number, "body")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return batch_error(
            "missing_required_parameter", "Missing required parameter: 'model'.", number, "body.model"
        )
    if custom_id in seen:
        message = f"The custom_id {custom_id!r} is used by an earlier line; each must be unique in a batch."
        return batch_error("duplicate_custom_id", message, number, "custom_id")
    if model is not None and body["model"] != model:
        message = f"This line's model {body['model']!r} is not the batch's model {model!r}."
        return batch_error("model_mismatch", message, number, "body.model")
    return Line(number, custom_id, body)


# ---- answers --------------------------------------------------------------------------------------------


def answer(server: FakeOpenAI, endpoint: str, line: Line, forced: int | None) -> Answered:
    """Answer one line as ``POST endpoint`` with ``stream`` false would be (the same checks, text, usage and
    ids: `routes.invalid_body`, the provider modes' refusals, `FakeOpenAI.reply`, `routes.generate`); rate
    limits, scripted answers and random faults do not apply (the guide's "Rate limits": batch limits are a
    pool of their own, apart from the per-model ones). `forced`: answer with this error status instead
    (`FakeOpenAI.batch_line_errors`).

    A request that fails with an HTTP error goes to the error file with ``response.status_code`` and the
    error object as ``response.body``, ``error`` null: the request output object reserves ``error`` for
    failures that are not HTTP errors, and a real error file holds such lines (openai/openai-openapi#302:
    a 400 ``context_length_exceeded`` line with ``response.body.error`` and ``error: null``)."""
    from tests.fakeserver.server import Admission  # not at the top: server.py imports batchapi, then us

    kind, body = ENDPOINT_KINDS[endpoint], line.body
    n = next(server._ids)
    if forced is not None:
        return _failed(line, n, forced, default_error(forced))
    if kind == "embeddings":
        return _embedded(server, line, n)
    problem = invalid_body(server, body, kind)
    if problem is not None:
        status, message, code, param = problem
        return _failed(line, n, status, error_body(message, "invalid_request_error", code, param))
    req = LoggedRequest("POST", endpoint, {}, body, time.monotonic())
    prompt_tokens = len(req.prompt_text.split())
    for mode in server.provider:
        refusal = mode.refuse(kind, body, prompt_tokens)
        if refusal is not None:
            return _failed(line, n, refusal.status, refusal.body)
    try:
        text = server.reply(req)
        if not isinstance(text, str):
            raise TypeError(f"reply() returned {type(text).__name__}, not str")
    except Exception as exc:
        return _failed(line, n, 500, error_body(f"fakeserver reply() failed: {exc!r}", "server_error", None))
    max_tokens = requested_max_tokens(body)
    pieces, finish, usage = generate(server, body, text, Admission("none"), False, max_tokens, prompt_tokens)
    usage_out = usage if server.include_usage else None
    rid = f"chatcmpl-{n}" if kind == "chat" else f"cmpl-{n}"
    obj = answer_object(kind, rid, int(time.time()), body["model"], pieces, finish, usage_out)
    response = {"status_code": 200, "request_id": f"req_{n}", "body": obj}
    return Answered(_output_line(line.custom_id, response, None), True, usage_out)


def _embedded(server: FakeOpenAI, line: Line, n: int) -> Answered:
    """An embeddings line, answered as ``POST /v1/embeddings`` (its vectors, or its 400): the embeddings
    answer is the response body; the batch's usage counts its tokens as input."""
    status, body, tokens = embeddings.answer_body(server, line.body)
    if status != 200:
        return _failed(line, n, status, body)
    response = {"status_code": 200, "request_id": f"req_{n}", "body": body}
    usage = {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}
    return Answered(_output_line(line.custom_id, response, None), True, usage)


def _failed(line: Line, n: int, status: int, body: dict[str, Any]) -> Answered:
    response = {"status_code": status, "request_id": f"req_{n}", "body": body}
    return Answered(_output_line(line.custom_id, response, None), False, None)


def not_run(custom_id: str, *, expired: bool) -> dict[str, Any]:
    """The error file line of a request the batch never ran: ``response`` null and ``error`` code
    ``batch_expired`` with the guide's message (https://platform.openai.com/docs/guides/batch, "Batch
    expiration"); for a cancelled batch, code ``batch_cancelled`` (OpenAI's docs say only that a cancelled
    batch keeps its partial results in the output file; the error line follows the expired one)."""
    if expired:
        return _output_line(custom_id, None, {"code": "batch_expired", "message": EXPIRED_MESSAGE})
    return _output_line(custom_id, None, {"code": "batch_cancelled", "message": CANCELLED_MESSAGE})


def _output_line(
    custom_id: str, response: dict[str, Any] | None, error: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": f"batch_req_{uuid.uuid4().hex[:24]}",
        "custom_id": custom_id,
        "response": response,
        "error": error,
    }
