"""The endpoints: `dispatch` runs the checks every request goes through (provider routing, the API key,
the route), then the route's function: `models`, `chat_completions`, `completions`, `embeddings` (in
`embeddings`; the Files and Batch routes are found by `BatchAPI._batch_route`, in `batchapi`). A completion is
validated, refused by a provider mode or not, admitted by the rate limiter (`FakeOpenAI._admit`, which also
takes a scripted answer or draws a fault), then answered: `answer`."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from tests.fakeserver import faults
from tests.fakeserver.ratelimits import DEFAULT_MAX_TOKENS, Charge, rate_limited
from tests.fakeserver.replies import LoggedRequest, answer_object, default_error, split, stream_events

if TYPE_CHECKING:
    from tests.fakeserver.server import Admission, FakeOpenAI

DEFAULT_MODEL = "fake-model"


@dataclass(slots=True)
class Exchange:
    """One request being answered: `path` and `headers` as provider routing left them."""

    server: FakeOpenAI
    writer: asyncio.StreamWriter
    keep: bool
    req: LoggedRequest
    path: str
    headers: dict[str, str]
    bad_json: bool
    raw: bytes = b""  # the request body as received (the Files API reads multipart bodies)

    async def json(
        self, status: int, payload: bytes | dict[str, Any], headers: dict[str, str] | None
    ) -> bool:
        return await self.server._send_json(self.writer, status, payload, self.keep, headers, log=self.req)

    async def error(
        self,
        status: int,
        message: str,
        code: str | None,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> bool:
        return await self.server._send_error(
            self.writer, status, message, code, keep=self.keep, param=param, log=self.req, headers=headers
        )

    @property
    def nl(self) -> bytes:
        """The line ending of SSE events (CRLF with `FakeOpenAI.sse_extras`)."""
        return b"\r\n" if self.server.sse_extras else b"\n"


async def dispatch(ex: Exchange) -> bool:
    """Answer one logged request; returns whether the connection may serve another one."""
    server, method = ex.server, ex.req.method
    for mode in server.provider:  # provider modes (tests/providers.py) may route or refuse first
        routed = mode.route(method, ex.path, ex.req.query, ex.headers)
        if not isinstance(routed, tuple):
            return await ex.json(routed.status, routed.body, None)
        ex.path, ex.headers = routed
    if server.api_key is not None and not _authorized(server.api_key, ex.headers):
        if "authorization" in ex.headers:
            message = (
                "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
        else:
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        return await ex.error(401, message, "invalid_api_key")
    route = ROUTES.get((method, ex.path)) or server._batch_route(method, ex.path)  # Files, Batches
    if route is None:
        return await ex.error(404, f"Invalid URL ({method} {ex.path})", "unknown_url")
    return await route(ex)


def _authorized(api_key: str, headers: dict[str, str]) -> bool:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode("latin-1"), api_key.encode("utf-8")
    )


# ---- the routes -----------------------------------------------------------------------------------------


async def models(ex: Exchange) -> bool:
    """``GET /v1/models``: the one model the server takes (`FakeOpenAI.model`, or ``fake-model``)."""
    server = ex.server
    model_obj = {
        "id": server.model or DEFAULT_MODEL,
        "object": "model",
        "created": 1700000000,
        "owned_by": "fakeserver",
    }
    return await ex.json(200, {"object": "list", "data": [model_obj]}, server._current_ratelimit_headers())


async def chat_completions(ex: Exchange) -> bool:
    """``POST /v1/chat/completions``."""
    return await completion(ex, "chat")


async def completions(ex: Exchange) -> bool:
    """``POST /v1/completions`` (legacy)."""
    return await completion(ex, "text")


async def embeddings(ex: Exchange) -> bool:
    """``POST /v1/embeddings`` (`tests.fakeserver.embeddings`)."""
    from tests.fakeserver import embeddings as route  # not at the top: it imports this module

    return await route.create(ex)


ROUTES: dict[tuple[str, str], Callable[[Exchange], Awaitable[bool]]] = {
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/completions"): completions,
    ("POST", "/v1/embeddings"): embeddings,
    ("GET", "/v1/models"): models,
}


# ---- completions ----------------------------------------------------------------------------------------


def invalid(ex: Exchange, kind: str) -> tuple[int, str, str | None, str | None] | None:
    """(status, message, code, param) of the error for a completion body that cannot be answered (JSON,
    ``model``, ``messages`` or ``prompt``, then a model the server does not serve), or None."""
    return invalid_body(ex.server, None if ex.bad_json else ex.req.body, kind)


def invalid_body(
    server: FakeOpenAI, body: dict[str, Any] | None, kind: str
) -> tuple[int, str, str | None, str | None] | None:
    """`invalid` for a body (None: not a JSON object); batch lines are checked with it too."""
    if body is None:
        message = (
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        )
        return 400, message, None, None
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return 400, "You must provide a model parameter.", None, "model"
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, "'messages' is a required property and must be a non-empty array.", None, "messages"
    elif not isinstance(body.get("prompt", ""), (str, list)):
        return 400, "'prompt' must be a string or an array of strings.", None, "prompt"
    if server.model is not None and model != server.model:
        message = f"The model `{model}` does not exist or you do not have access to it."
        return 404, message, "model_not_found", "model"
    return None


async def completion(ex: Exchange, kind: str) -> bool:
    """A completion request (`kind` ``"chat"`` or ``"text"``), up to its admission."""
    problem = invalid(ex, kind)
    if problem is not None:
        status, message, code, param = problem
        return await ex.error(status, message, code, param=param)
    server, body = ex.server, ex.req.body
    assert body is not None
    prompt_tokens = len(ex.req.prompt_text.split())
    for mode in server.provider:  # a 400 the provider gives before admitting the request
        refusal = mode.refuse(kind, body, prompt_tokens)
        if refusal is not None:
            return await ex.json(refusal.status, refusal.body, server._current_ratelimit_headers())
    max_tokens = requested_max_tokens(body)
    reserve = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    adm = await admit(ex, prompt_tokens + reserve)
    if isinstance(adm, bool):  # refused with a 429, answered
        return adm
    # An admitted answer settles its charge (`FakeOpenAI._finish`: with `refund_unused`, `reserve -
    # completion` tokens go back) right before its last bytes are written, or when it ends early.
    charge = Charge(server._finish, reserve, admitted=adm.charged)
    try:
        return await answer(ex, kind, adm, charge, max_tokens, prompt_tokens)
    finally:  # the client went away mid-answer, or an unexpected error
        charge.settle()


async def admit(ex: Exchange, cost: int) -> Admission | bool:
    """The server's admission of a request costing `cost` tokens, or, when it was refused with a 429 (its
    rate limits, or an injected 429), what answering that refusal returned."""
    server, body = ex.server, ex.req.body
    assert body is not None
    adm = server._admit(cost)
    if adm.wait:
        bucket = server._accounts.bucket(adm.which)
        refusal_body, headers = rate_limited(bucket, body["model"], adm.which, adm.wait, cost, adm.rl)
        return await ex.json(429, refusal_body, headers)
    if adm.fault == "429":
        return await ex.json(429, default_error(429), faults.fault_429_headers(adm.rl, adm.headers_mode))
    if adm.headers_mode == "429" and not adm.scripted_429:
        adm.rl = {}  # the headers go on refusals only
    return adm


def requested_max_tokens(body: dict[str, Any]) -> int | None:
    """``max_completion_tokens``, else ``max_tokens``, when it is a non-negative integer; else None."""
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        return None
    return max_tokens


async def answer(
    ex: Exchange, kind: str, adm: Admission, charge: Charge, max_tokens: int | None, prompt_tokens: int
) -> bool:
    """An admitted request's answer: scripted, an injected error, or generated (`deliver`)."""
    server, req, fault = ex.server, ex.req, adm.fault
    assert req.body is not None
    stream = req.body.get("stream") is True
    answered, extra_headers = await answered_early(ex, adm, charge, stream=stream, delay=server.chunk_delay)
    if answered is not None:
        return answered
    try:
        text = server.reply(req)
        if not isinstance(text, str):
            raise TypeError(f"reply() returned {type(text).__name__}, not str")
    except Exception as exc:
        charge.settle()
        return await ex.error(500, f"fakeserver reply() failed: {exc!r}", None, headers=adm.rl)
    pieces, finish, usage = generate(server, req.body, text, adm, stream, max_tokens, prompt_tokens)
    completion_tokens = usage["completion_tokens"]
    if fault == "reset":
        completion_tokens = min(completion_tokens, adm.reset_after) if stream else 0  # what gets out
    charge.refund -= completion_tokens
    return await deliver(ex, kind, adm, charge, extra_headers, stream, pieces, finish, usage)


async def answered_early(
    ex: Exchange, adm: Admission, charge: Charge, *, stream: bool, delay: float
) -> tuple[bool | None, dict[str, str]]:
    """What an admitted request gets before any answer is made: a canned scripted answer, an injected 5xx,
    or a 200 carrying an error (then what sending it returned); else None. And the headers to answer with
    (the rate-limit headers, and a scripted answer's own)."""
    scripted, fault = adm.scripted, adm.fault
    headers = adm.rl
    if scripted is not None:
        if scripted.headers:
            headers = adm.rl | {k.lower(): v for k, v in scripted.headers.items()}
        if "close" in headers.get("connection", "").lower():
            ex.keep = False
        if scripted.canned:
            charge.settle()
            return await ex.json(scripted.status, scripted.payload(), headers), headers
    if fault is not None and fault[0] == "5":
        charge.settle()
        return await ex.json(int(fault), default_error(int(fault)), adm.rl), headers
    if fault == "error_200":
        ex.req.status = 200
        charge.settle()
        sent = await faults.send_error_200(ex.writer, stream, adm.rl, ex.keep, nl=ex.nl, delay=delay)
        return sent, headers
    return None, headers


async def deliver(
    ex: Exchange,
    kind: str,
    adm: Admission,
    charge: Charge,
    headers: dict[str, str],
    stream: bool,
    pieces: list[str],
    finish: str | None,
    usage: dict[str, Any],
) -> bool:
    """Send a generated answer, as a scripted fault mode or a random fault says (`faults.Delivery`)."""
    server, body = ex.server, ex.req.body
    assert body is not None
    n = next(server._ids)
    rid = f"chatcmpl-{n}" if kind == "chat" else f"cmpl-{n}"
    created = int(time.time())
    headers_out = {"x-request-id": f"req_{n}"}
    if headers:
        headers_out |= headers
    ex.req.status = 200
    if not stream:
        obj = answer_object(
            kind, rid, created, body["model"], pieces, finish, usage if server.include_usage else None
        )
        how = faults.json_delivery(adm.scripted, adm.fault, server.stall_seconds)
        return await faults.send_json(
            ex.writer, orjson.dumps(obj), headers_out, ex.keep, how, settle=charge.settle
        )
    options = body.get("stream_options")
    want_usage = server.include_usage and isinstance(options, dict) and options.get("include_usage") is True
    events = stream_events(
        kind,
        rid,
        created,
        body["model"],
        pieces,
        finish or "stop",
        usage if want_usage else None,
        server.sse_extras,
    )
    how = faults.stream_delivery(
        adm.scripted, adm.fault, server.stall_seconds, adm.reset_after, len(events), want_usage
    )
    return await faults.send_stream(
        ex.writer, events, headers_out, ex.keep, how, nl=ex.nl, delay=server.chunk_delay, settle=charge.settle
    )


def generate(
    server: FakeOpenAI,
    body: dict[str, Any],
    text: str,
    adm: Admission,
    stream: bool,
    max_tokens: int | None,
    prompt_tokens: int,
) -> tuple[list[str], str | None, dict[str, Any]]:
    """(pieces, finish reason, usage) of a generated answer: `text` in `chunks` pieces, one token each,
    cut to ``max_tokens``; a forced finish reason, a non-stream ``"cut"`` fault and the provider modes
    applied."""
    pieces = split(text, server.chunks)
    finish: str | None = "stop"
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces = pieces[:max_tokens]
        finish = "length"
    forced = (adm.scripted.finish_reason if adm.scripted is not None else None) or server.finish_reason
    if forced:
        finish = forced
        if forced == "content_filter":
            pieces = pieces[: len(pieces) // 2]
    if adm.fault == "cut" and not stream:
        pieces = pieces[: len(pieces) // 2]
        finish = None
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(pieces),
        "total_tokens": prompt_tokens + len(pieces),
    }
    for mode in server.provider:  # e.g. reasoning tokens spent out of the answer's budget
        pieces, finish, usage = mode.shape(body, pieces, finish, usage)
    return pieces, finish, usage
