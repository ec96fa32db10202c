"""Unit tests of stream.client: request bodies, SSE parsing, status handling and retries.

Every test talks to an `httpx.MockTransport` (no network). The pool's own clients are swapped for clients
on that transport that keep the pool's headers and timeouts, so what the handler sees is what a real server
would see.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import orjson
import pytest

from stream.client import ClientPool, Completion, RetryPolicy, build_body, iter_sse, parse_retry_after
from stream.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeout,
    AuthError,
    NotFoundError,
    RateLimited,
    StreamError,
)
from stream.limits import BudgetExceeded, Limits

KEY = "sk-SENTINEL-123"
KEY_ENV = "SNIP_TEST_API_KEY"
BASE = "http://api.test/v1"
CHAT_URL = BASE + "/chat/completions"
COMPLETIONS_URL = BASE + "/completions"
MODEL = "gpt-test"

META = {
    "id": "chatcmpl-42",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "gpt-test-0613",
    "system_fingerprint": "fp_abc123",
}
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
TEXT = "Hello, wörld 中文 🎉"  # 2-, 3- and 4-byte UTF-8 characters


def chat_body(stream: bool = True, **params: Any) -> dict[str, Any]:
    return build_body(
        api="chat",
        model=MODEL,
        system="Be brief.",
        user="def f(x):\n    return x\n",
        params=params,
        stream=stream,
    )


def completions_body(stream: bool = True) -> dict[str, Any]:
    return build_body(
        api="completions",
        model=MODEL,
        system="Be brief.",
        user="def f(x):\n    return x\n",
        params={},
        stream=stream,
    )


# --- chunks and SSE bodies ----------------------------------------------------------------------------------


def chat_chunk(
    content: str | None = None,
    finish: str | None = None,
    *,
    role: str | None = None,
    index: int = 0,
    usage: Any = None,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {**META, "choices": [{"index": index, "delta": delta, "finish_reason": finish}], "usage": usage}


def text_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        **META,
        "object": "text_completion",
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk() -> dict[str, Any]:
    return {**META, "choices": [], "usage": USAGE}


def typical_chunks() -> list[dict[str, Any]]:
    """What OpenAI sends with include_usage: a role chunk, content chunks, the finish, then the usage."""
    return [
        chat_chunk("", role="assistant"),
        chat_chunk("Hello, "),
        chat_chunk("wörld 中文"),
        chat_chunk(" 🎉"),
        chat_chunk(None, "stop"),
        usage_chunk(),
    ]


def sse(*events: dict[str, Any] | str, done: bool = True, eol: str = "\n") -> bytes:
    """An SSE body with one `data:` event per item (dicts are JSON-encoded), then `[DONE]`."""
    out = []
    for event in events:
        data = event if isinstance(event, str) else orjson.dumps(event).decode()
        out.append(f"data: {data}{eol}{eol}")
    if done:
        out.append(f"data: [DONE]{eol}{eol}")
    return "".join(out).encode()


def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i : i + size]

    return gen()


# --- scripted server ----------------------------------------------------------------------------------------

Step = Callable[[httpx.Request], httpx.Response]


def reply_sse(
    content: bytes | Callable[[], AsyncIterator[bytes]], status: int = 200, ctype: str = "text/event-stream"
) -> Step:
    def step(request: httpx.Request) -> httpx.Response:
        body = content() if callable(content) else content
        return httpx.Response(status, headers={"content-type": ctype}, content=body)

    return step


def reply_json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Step:
    def step(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, headers={"content-type": "application/json", **(headers or {})}, content=orjson.dumps(obj)
        )

    return step


def reply_raw(status: int, content: bytes, headers: dict[str, str] | None = None) -> Step:
    def step(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, content=content)

    return step


def fail(exc_type: type[httpx.TransportError], message: str = "boom") -> Step:
    def step(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return step


def broken_stream(exc_type: type[httpx.TransportError], prefix: bytes) -> Step:
    """A 200 SSE answer that sends `prefix` and then loses the connection."""

    async def gen() -> AsyncIterator[bytes]:
        yield prefix
        raise exc_type("connection lost")

    return reply_sse(gen)


class FakeAPI:
    """A MockTransport handler: request n gets step n (the last step repeats); requests are logged."""

    def __init__(self, *steps: Step) -> None:
        self.steps = steps
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        return step(request)

    @property
    def count(self) -> int:
        return len(self.requests)


def ok_stream() -> Step:
    return reply_sse(sse(*typical_chunks()))


def ok_json(text: str = "fine") -> Step:
    return reply_json(
        {
            **META,
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": USAGE,
        }
    )


@asynccontextmanager
async def pool_for(
    handler: FakeAPI, *, api: str = "chat", max_attempts: int = 3, api_key: str | None = KEY, **kw: Any
) -> AsyncIterator[ClientPool]:
    kw.setdefault("retry", RetryPolicy(max_attempts=max_attempts, base=0.001))
    pool = ClientPool(base_url=BASE, api_key=api_key, api_key_env=KEY_ENV, api=api, concurrency=1, **kw)
    originals = pool._clients
    pool._clients = [
        httpx.AsyncClient(transport=httpx.MockTransport(handler), headers=c.headers, timeout=c.timeout)
        for c in originals
    ]
    for c in originals:
        await c.aclose()
    async with pool:
        yield pool


async def complete(handler: FakeAPI, body: dict[str, Any] | None = None, **kw: Any) -> Completion:
    async with pool_for(handler, **kw) as pool:
        return await pool.complete(chat_body() if body is None else body, reserve_tokens=10)


async def failure(handler: FakeAPI, body: dict[str, Any] | None = None, **kw: Any) -> APIError:
    with pytest.raises(APIError) as info:
        await complete(handler, body, **kw)
    return info.value


def assert_typical(c: Completion) -> None:
    assert c.text == TEXT
    assert c.finish_reason == "stop"
    assert c.usage == USAGE
    assert (c.response_id, c.model, c.created, c.system_fingerprint) == (
        "chatcmpl-42",
        "gpt-test-0613",
        1_700_000_000,
        "fp_abc123",
    )


# --- build_body ---------------------------------------------------------------------------------------------


def test_build_body_chat_sends_system_then_user_message() -> None:
    body = build_body(api="chat", model="m", system="sys", user="code", params={}, stream=False)
    assert body == {
        "model": "m",
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "code"}],
    }


@pytest.mark.parametrize("system", [None, ""])
def test_build_body_chat_without_system_sends_only_the_user_message(system: str | None) -> None:
    body = build_body(api="chat", model="m", system=system, user="code", params={}, stream=False)
    assert body["messages"] == [{"role": "user", "content": "code"}]


def test_build_body_completions_joins_system_and_user_into_the_prompt() -> None:
    body = build_body(api="completions", model="m", system="sys", user="code", params={}, stream=False)
    assert body == {"model": "m", "prompt": "sys\n\ncode"}
    assert "messages" not in body
    alone = build_body(api="completions", model="m", system=None, user="code", params={}, stream=False)
    assert alone["prompt"] == "code"


def test_build_body_drops_none_and_empty_list_params_but_keeps_falsy_values() -> None:
    params = {"temperature": 0, "max_tokens": 64, "top_p": None, "stop": [], "seed": 0, "logprobs": False}
    body = build_body(api="chat", model="m", system=None, user="u", params=params, stream=False)
    assert body["temperature"] == 0 and body["seed"] == 0 and body["logprobs"] is False
    assert body["max_tokens"] == 64
    assert "top_p" not in body and "stop" not in body


def test_build_body_stream_asks_for_usage_in_the_stream() -> None:
    body = build_body(api="chat", model="m", system=None, user="u", params={}, stream=True)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    plain = build_body(api="chat", model="m", system=None, user="u", params={}, stream=False)
    assert "stream" not in plain and "stream_options" not in plain


# --- request shape ------------------------------------------------------------------------------------------


async def test_request_carries_bearer_key_json_content_type_and_the_body() -> None:
    api = FakeAPI(ok_stream())
    body = chat_body(temperature=0.2)
    await complete(api, body)
    (req,) = api.requests
    assert req.method == "POST"
    assert str(req.url) == CHAT_URL
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["content-type"] == "application/json"
    assert "text/event-stream" in req.headers["accept"]
    assert orjson.loads(req.content) == body


async def test_without_a_key_no_authorization_header_is_sent() -> None:
    api = FakeAPI(ok_stream())
    await complete(api, api_key=None)
    assert "authorization" not in api.requests[0].headers


async def test_completions_api_posts_to_completions_endpoint_and_trailing_slash_is_ignored() -> None:
    api = FakeAPI(reply_sse(sse(text_chunk("x", "stop"))))
    pool = ClientPool(base_url=BASE + "/", api_key=KEY, api_key_env=KEY_ENV, api="completions", concurrency=1)
    await pool.aclose()
    assert pool.url == COMPLETIONS_URL
    await complete(api, completions_body(), api="completions")
    assert str(api.requests[0].url) == COMPLETIONS_URL


# --- SSE tolerance ------------------------------------------------------------------------------------------


async def test_typical_chat_stream_assembles_text_finish_reason_usage_and_metadata() -> None:
    api = FakeAPI(ok_stream())
    c = await complete(api)
    assert_typical(c)
    assert c.attempts == 1 and c.errors == []
    assert api.count == 1


async def test_stream_ignores_comment_and_keepalive_lines() -> None:
    chunks = [orjson.dumps(c).decode() for c in typical_chunks()]
    raw = ": ping\n\n: OPENROUTER PROCESSING\n\n"
    for c in chunks:
        raw += f": keep-alive\ndata: {c}\n\n:\n\n"
    raw += ": ping\n\ndata: [DONE]\n\n"
    assert_typical(await complete(FakeAPI(reply_sse(raw.encode()))))


async def test_stream_ignores_event_id_and_retry_fields() -> None:
    raw = "retry: 3000\n\n"
    for i, c in enumerate(typical_chunks()):
        raw += f"event: message\nid: {i}\nretry: 1000\ndata: {orjson.dumps(c).decode()}\n\n"
    raw += "event: done\ndata: [DONE]\n\n"
    assert_typical(await complete(FakeAPI(reply_sse(raw.encode()))))


@pytest.mark.parametrize("eol", ["\r\n", "\r"], ids=["crlf", "bare_cr"])
async def test_stream_accepts_crlf_and_bare_cr_line_endings(eol: str) -> None:
    raw = sse(*typical_chunks(), eol=eol)
    assert_typical(await complete(FakeAPI(reply_sse(raw))))


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "bare_cr"])
@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
async def test_stream_reassembles_chunks_split_at_any_byte_boundary(size: int, eol: str) -> None:
    raw = sse(*typical_chunks(), eol=eol)
    c = await complete(FakeAPI(reply_sse(lambda: pieces(raw, size))))
    assert_typical(c)  # size 1 splits every multi-byte character and every CRLF pair


async def test_stream_split_inside_a_multibyte_character() -> None:
    raw = sse(chat_chunk("中"), chat_chunk("🎉", "stop"))
    cut = raw.index("中".encode()) + 1  # between the first and second byte of a 3-byte character
    cut2 = raw.index("🎉".encode()) + 3  # before the last byte of a 4-byte character
    parts = [raw[:cut], raw[cut:cut2], raw[cut2:]]

    async def gen() -> AsyncIterator[bytes]:
        for p in parts:
            yield p

    c = await complete(FakeAPI(reply_sse(gen)))
    assert c.text == "中🎉"
    assert "\ufffd" not in c.text


async def test_stream_first_chunk_with_empty_choices_is_skipped() -> None:
    first = {**META, "choices": [], "usage": None, "prompt_filter_results": [{"prompt_index": 0}]}
    c = await complete(FakeAPI(reply_sse(sse(first, chat_chunk("ok"), chat_chunk(None, "stop")))))
    assert c.text == "ok"
    assert c.finish_reason == "stop"
    assert c.response_id == "chatcmpl-42"


async def test_stream_usage_null_on_content_chunks_then_final_usage_chunk_with_empty_choices() -> None:
    raw = sse(
        chat_chunk("a", usage=None),
        chat_chunk("b", usage=None),
        chat_chunk(None, "length", usage=None),
        usage_chunk(),
    )
    c = await complete(FakeAPI(reply_sse(raw)))
    assert c.text == "ab"
    assert c.finish_reason == "length"
    assert c.usage == USAGE


async def test_stream_without_usage_leaves_usage_none() -> None:
    c = await complete(FakeAPI(reply_sse(sse(chat_chunk("a"), chat_chunk(None, "stop")))))
    assert c.text == "a"
    assert c.usage is None


async def test_stream_data_field_without_space_after_colon() -> None:
    raw = "".join(f"data:{orjson.dumps(c).decode()}\n\n" for c in typical_chunks()) + "data:[DONE]\n\n"
    assert_typical(await complete(FakeAPI(reply_sse(raw.encode()))))


async def test_stream_multiline_data_fields_are_joined_with_newlines() -> None:
    # one JSON chunk spread over three data: lines; joined with "\n" it is valid JSON again
    raw = (
        'data: {"id": "chatcmpl-42", "model": "gpt-test-0613",\n'
        'data:  "choices": [{"index": 0, "delta": {"content": "multi"},\n'
        'data:  "finish_reason": "stop"}]}\n'
        "\n"
        "data: [DONE]\n\n"
    )
    c = await complete(FakeAPI(reply_sse(raw.encode())))
    assert c.text == "multi"
    assert c.finish_reason == "stop"
    assert c.response_id == "chatcmpl-42"


async def test_stream_final_done_event_without_trailing_blank_line() -> None:
    raw = sse(*typical_chunks(), done=False) + b"data: [DONE]"
    assert_typical(await complete(FakeAPI(reply_sse(raw))))


async def test_stream_final_finish_chunk_without_trailing_blank_line_and_without_done() -> None:
    raw = sse(chat_chunk("end"), done=False) + b"data: " + orjson.dumps(chat_chunk(None, "stop"))
    api = FakeAPI(reply_sse(raw))
    c = await complete(api)
    assert c.text == "end"
    assert c.finish_reason == "stop"
    assert api.count == 1


async def test_stream_only_choice_index_0_is_kept() -> None:
    raw = sse(
        chat_chunk("zero"),
        chat_chunk("ONE", index=1),
        chat_chunk(None, "stop"),
        chat_chunk(None, "length", index=1),
    )
    c = await complete(FakeAPI(reply_sse(raw)))
    assert c.text == "zero"
    assert c.finish_reason == "stop"


async def test_iter_sse_yields_event_types_and_resets_them_per_event() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        body = b"event: error\r\ndata: x\r\n\r\n: c\ndata: y\rid: 3\ndata:y2\n\n\ndata: z"
        for i in range(0, len(body), 3):  # split anywhere, CRLF halves included
            yield body[i : i + 3]

    got = [e async for e in iter_sse(chunks())]
    assert got == [("error", b"x"), (None, b"y\ny2"), (None, b"z")]


# --- chat vs completions, streaming vs not ------------------------------------------------------------------


async def test_completions_stream_assembles_text_chunks() -> None:
    raw = sse(text_chunk("def "), text_chunk("f"), text_chunk("():", "stop"), usage_chunk())
    api = FakeAPI(reply_sse(raw))
    c = await complete(api, completions_body(), api="completions")
    assert c.text == "def f():"
    assert c.finish_reason == "stop"
    assert c.usage == USAGE
    assert c.response_id == "chatcmpl-42"


async def test_chat_non_streaming_json_reads_message_content() -> None:
    api = FakeAPI(ok_json(TEXT))
    c = await complete(api, chat_body(stream=False))
    assert_typical(c)
    assert api.count == 1
    assert "stream" not in orjson.loads(api.requests[0].content)


async def test_completions_non_streaming_json_reads_text() -> None:
    obj = {
        **META,
        "object": "text_completion",
        "choices": [{"index": 0, "text": "legacy text", "finish_reason": "length"}],
        "usage": USAGE,
    }
    c = await complete(FakeAPI(reply_json(obj)), completions_body(stream=False), api="completions")
    assert c.text == "legacy text"
    assert c.finish_reason == "length"
    assert c.usage == USAGE
    assert c.model == "gpt-test-0613"


async def test_server_ignoring_stream_true_and_answering_plain_json_is_accepted() -> None:
    api = FakeAPI(ok_json(TEXT))
    c = await complete(api, chat_body(stream=True))
    assert_typical(c)
    assert api.count == 1


async def test_non_streaming_null_content_gives_empty_text() -> None:
    obj = {
        **META,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}],
    }
    c = await complete(FakeAPI(reply_json(obj)), chat_body(stream=False))
    assert c.text == ""
    assert c.finish_reason == "stop"


# --- incomplete or broken streams ---------------------------------------------------------------------------


async def test_stream_ending_without_done_but_with_finish_reason_is_accepted() -> None:
    api = FakeAPI(reply_sse(sse(chat_chunk("whole"), chat_chunk(None, "stop"), usage_chunk(), done=False)))
    c = await complete(api)
    assert c.text == "whole"
    assert c.finish_reason == "stop"
    assert c.usage == USAGE
    assert api.count == 1 and c.attempts == 1


async def test_stream_ending_without_done_or_finish_reason_is_retried_then_succeeds() -> None:
    api = FakeAPI(reply_sse(sse(chat_chunk("trunc"), done=False)), ok_stream())
    c = await complete(api)
    assert_typical(c)  # nothing of the truncated first answer leaks into the result
    assert api.count == 2
    assert c.attempts == 2
    assert len(c.errors) == 1
    assert c.errors[0].startswith("attempt 1: stream_error:")
    assert "ended before the answer was complete" in c.errors[0]


async def test_truncated_stream_on_every_attempt_raises_stream_error_after_max_attempts() -> None:
    api = FakeAPI(reply_sse(sse(chat_chunk("trunc"), done=False)))
    exc = await failure(api, max_attempts=3)
    assert isinstance(exc, StreamError)
    assert api.count == 3
    assert exc.attempts == 3  # type: ignore[attr-defined]
    assert len(exc.history) == 3  # type: ignore[attr-defined]


async def test_malformed_json_chunk_is_a_stream_error_and_retried() -> None:
    api = FakeAPI(
        reply_sse(
            sse(chat_chunk("a"), '{"choices": [{"delta": {"content": "b"'),
        ),
        ok_stream(),
    )
    c = await complete(api)
    assert_typical(c)
    assert api.count == 2 and c.attempts == 2
    assert "malformed JSON chunk" in c.errors[0]


@pytest.mark.parametrize("exc_type", [httpx.ReadError, httpx.RemoteProtocolError])
async def test_connection_broken_mid_stream_is_retried(exc_type: type[httpx.TransportError]) -> None:
    api = FakeAPI(broken_stream(exc_type, sse(chat_chunk("partial"), done=False)[:-1]), ok_stream())
    c = await complete(api)
    assert_typical(c)
    assert api.count == 2 and c.attempts == 2
    assert c.errors[0].startswith("attempt 1: stream_error:")
    assert exc_type.__name__ in c.errors[0]


async def test_connection_broken_mid_stream_on_every_attempt_raises_stream_error() -> None:
    api = FakeAPI(broken_stream(httpx.RemoteProtocolError, b'data: {"choi'))
    exc = await failure(api, max_attempts=2)
    assert type(exc) is StreamError
    assert exc.attempts == 2 and api.count == 2  # type: ignore[attr-defined]


async def test_error_object_inside_the_stream_is_retried_and_recorded() -> None:
    err = {"error": {"message": "upstream model overloaded", "type": "server_error", "code": 502}}
    api = FakeAPI(reply_sse(sse(chat_chunk("par"), err)), ok_stream())
    c = await complete(api)
    assert_typical(c)
    assert api.count == 2 and c.attempts == 2
    assert "upstream model overloaded" in c.errors[0]
    assert c.errors[0].startswith("attempt 1: stream_error:")


async def test_error_event_inside_the_stream_is_retried_and_recorded() -> None:
    raw = b'event: error\ndata: {"message": "rate limit hit upstream"}\n\n'
    api = FakeAPI(reply_sse(raw), ok_stream())
    c = await complete(api)
    assert_typical(c)
    assert "rate limit hit upstream" in c.errors[0]


async def test_200_json_body_with_error_object_is_retried_and_recorded() -> None:
    api = FakeAPI(reply_json({"error": {"message": "the engine is currently overloaded"}}), ok_json(TEXT))
    c = await complete(api, chat_body(stream=False))
    assert_typical(c)
    assert api.count == 2 and c.attempts == 2
    assert "the engine is currently overloaded" in c.errors[0]


async def test_200_json_error_object_on_every_attempt_keeps_each_message_in_history() -> None:
    api = FakeAPI(reply_json({"error": {"message": "overloaded"}}))
    exc = await failure(api, chat_body(stream=False), max_attempts=3)
    assert isinstance(exc, StreamError)
    history = exc.history  # type: ignore[attr-defined]
    assert [h.split(":")[0] for h in history] == ["attempt 1", "attempt 2", "attempt 3"]
    assert all("overloaded" in h for h in history)


async def test_200_json_without_choices_is_a_stream_error() -> None:
    exc = await failure(FakeAPI(reply_json({**META, "choices": []})), chat_body(stream=False), max_attempts=1)
    assert isinstance(exc, StreamError)
    assert "no choices" in str(exc)


async def test_200_non_json_body_is_a_stream_error_and_retried() -> None:
    api = FakeAPI(reply_raw(200, b"<html>Bad gateway</html>", {"content-type": "text/html"}), ok_json(TEXT))
    c = await complete(api, chat_body(stream=False))
    assert c.text == TEXT
    assert c.attempts == 2
    assert "malformed JSON" in c.errors[0]


# --- HTTP statuses ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("echo", ["json", "text"])
async def test_auth_errors_fail_at_once_naming_url_and_env_var_but_never_the_key(
    status: int, echo: str
) -> None:
    message = f"Incorrect API key provided: {KEY}. You can find your API key at https://example/keys."
    step = (
        reply_json({"error": {"message": message, "code": "invalid_api_key"}}, status=status)
        if echo == "json"
        else reply_raw(status, message.encode(), {"content-type": "text/plain"})
    )
    api = FakeAPI(step)
    exc = await failure(api, max_attempts=5)
    assert type(exc) is AuthError
    assert exc.status == status
    assert api.count == 1
    assert exc.attempts == 1  # type: ignore[attr-defined]
    text = str(exc)
    assert CHAT_URL in text
    assert f"${KEY_ENV}" in text
    assert "Incorrect API key provided" in text
    for where in (text, repr(exc), *exc.history):  # type: ignore[attr-defined]
        assert KEY not in where
        assert "SENTINEL" not in where


async def test_404_fails_at_once_naming_the_model() -> None:
    api = FakeAPI(reply_json({"error": {"message": "The model `gpt-test` does not exist"}}, status=404))
    exc = await failure(api, max_attempts=5)
    assert type(exc) is NotFoundError
    assert exc.status == 404
    assert api.count == 1 and exc.attempts == 1  # type: ignore[attr-defined]
    assert repr(MODEL) in str(exc)
    assert BASE in str(exc)


@pytest.mark.parametrize("status", [400, 422])
async def test_other_4xx_fails_at_once_with_the_server_message(status: int) -> None:
    api = FakeAPI(reply_json({"error": {"message": "max_tokens is too large: 999999"}}, status=status))
    exc = await failure(api, max_attempts=5)
    assert type(exc) is APIStatusError
    assert exc.status == status
    assert not exc.retryable
    assert api.count == 1 and exc.attempts == 1  # type: ignore[attr-defined]
    assert "max_tokens is too large: 999999" in str(exc)
    assert exc.history == [f"attempt 1: http_{status}: {exc}"]  # type: ignore[attr-defined]


RETRYABLE = [408, 409, 429, 500, 502, 503]


@pytest.mark.parametrize("status", RETRYABLE)
async def test_retryable_status_is_retried_then_succeeds(status: int) -> None:
    api = FakeAPI(reply_json({"error": {"message": f"try later ({status})"}}, status=status), ok_stream())
    c = await complete(api)
    assert_typical(c)
    assert api.count == 2 and c.attempts == 2
    assert c.errors == [f"attempt 1: http_{status}: {status} from {CHAT_URL}: try later ({status})"]


@pytest.mark.parametrize("status", RETRYABLE)
async def test_retryable_status_on_every_attempt_raises_after_max_attempts_with_history(status: int) -> None:
    api = FakeAPI(reply_raw(status, b"", {"retry-after-ms": "1"}))
    exc = await failure(api, max_attempts=4)
    assert type(exc) is (RateLimited if status == 429 else APIStatusError)
    assert exc.status == status and exc.retryable
    # 429s are waited out (shared cool-down) up to 3 × --max-attempts before the snippet fails
    sent = 12 if status == 429 else 4
    assert api.count == sent
    assert exc.attempts == sent  # type: ignore[attr-defined]
    history = exc.history  # type: ignore[attr-defined]
    assert len(history) == sent
    for i, line in enumerate(history, 1):
        assert line.startswith(f"attempt {i}: http_{status}: {status} from {CHAT_URL}")
    assert "(empty body)" in str(exc)


async def test_pool_counts_every_attempt_and_calls_on_attempt() -> None:
    api = FakeAPI(reply_raw(503, b"busy"), reply_raw(503, b"busy"), ok_stream())
    calls: list[int] = []
    async with pool_for(api) as pool:
        c = await pool.complete(chat_body(), reserve_tokens=1, on_attempt=lambda: calls.append(1))
        assert pool.requests_sent == 3
    assert c.attempts == 3 and len(calls) == 3 and api.count == 3


# --- retry-after and backoff --------------------------------------------------------------------------------


def test_parse_retry_after_ms_wins_over_retry_after() -> None:
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5


@pytest.mark.parametrize("value, expected", [("7", 7.0), ("2.5", 2.5), ("0", 0.0), ("-3", 0.0)])
def test_parse_retry_after_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(httpx.Headers({"retry-after": value})) == expected


def test_parse_retry_after_http_date_in_the_future_gives_seconds_until_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = 1_800_000_000.0  # a whole second: HTTP dates have no fractions
    monkeypatch.setattr(time, "time", lambda: now)
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(httpx.Headers({"retry-after": date})) == 30.0


def test_parse_retry_after_http_date_in_the_past_gives_zero() -> None:
    assert parse_retry_after(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "abc", "retry-after": "4"}, 4.0),
        ({"retry-after-ms": "abc"}, None),
        ({"retry-after-ms": "-10"}, 0.0),
    ],
)
def test_parse_retry_after_missing_or_invalid(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers)) == expected


def test_delay_uses_the_server_retry_after_plus_small_jitter() -> None:
    policy = RetryPolicy(base=0.5)
    for attempt in (1, 5, 20):
        for _ in range(50):
            assert 2.0 <= policy.delay(attempt, 2.0) <= 2.0 + 0.05
    assert 0.0 <= policy.delay(1, 0.0) <= 0.05
    assert 600.0 <= policy.delay(1, 10_000.0) <= 600.05  # an absurd server value is capped


@pytest.mark.parametrize("base, cap", [(0.5, 30.0), (0.001, 30.0), (1.0, 5.0)])
def test_delay_without_server_value_is_exponential_with_jitter(base: float, cap: float) -> None:
    policy = RetryPolicy(base=base, cap=cap)
    for n in range(1, 12):
        full = min(cap, base * 2 ** (n - 1))
        samples = [policy.delay(n, None) for _ in range(200)]
        assert all(0.5 * full <= d <= 1.0 * full for d in samples)
        assert max(samples) - min(samples) > 0  # jittered, not lock-step


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the pool's back-off sleeps instead of sleeping."""
    recorded: list[float] = []

    async def fake_sleep(delay: float) -> None:
        recorded.append(delay)

    monkeypatch.setattr("stream.client.anyio.sleep", fake_sleep)
    return recorded


async def test_pool_waits_what_the_server_asks_before_retrying(sleeps: list[float]) -> None:
    api = FakeAPI(
        reply_raw(503, b"slow down", {"retry-after-ms": "1500"}),
        reply_raw(503, b"slow down", {"retry-after": "3"}),
        ok_stream(),
    )
    c = await complete(api)
    assert c.attempts == 3
    assert len(sleeps) == 2
    assert 1.5 <= sleeps[0] <= 1.5 + 0.0001
    assert 3.0 <= sleeps[1] <= 3.0 + 0.0001


async def test_429_pauses_every_worker_for_the_servers_retry_time() -> None:
    """A 429 starts one shared cool-down: requests from all workers wait it out, then go."""
    api = FakeAPI(reply_raw(429, b"slow down", {"retry-after-ms": "300"}), ok_stream(), ok_stream())
    sent_at: list[float] = []  # when each request reached the server, on the loop's clock

    async def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append(anyio.current_time())
        return await api(request)

    async with pool_for(handler) as pool:  # type: ignore[arg-type]
        with anyio.fail_after(10):  # a safety net only
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: pool.complete(chat_body(), reserve_tokens=10, worker=0))
                while pool.limits.rate_limited == 0:  # until the 429 has come back and been seen
                    await anyio.sleep(0.001)
                tg.start_soon(lambda: pool.complete(chat_body(), reserve_tokens=10, worker=1))
    assert api.count == 3
    assert pool.limits.rate_limited == 1  # only the first request met a 429
    # both later requests, the second worker's too (it never saw a 429), went after the server's 300 ms
    assert min(sent_at[1:]) - sent_at[0] >= 0.3


async def test_pool_backs_off_exponentially_without_server_hint(sleeps: list[float]) -> None:
    api = FakeAPI(reply_raw(500, b"oops"))
    exc = await failure(api, max_attempts=4)
    assert exc.attempts == 4  # type: ignore[attr-defined]
    assert len(sleeps) == 3  # no sleep after the last attempt
    for n, d in enumerate(sleeps, 1):
        full = 0.001 * 2 ** (n - 1)
        assert 0.5 * full <= d <= full


async def test_rate_limited_error_carries_retry_after() -> None:
    api = FakeAPI(reply_raw(429, b"{}", {"retry-after-ms": "2"}))
    exc = await failure(api, max_attempts=1)
    assert isinstance(exc, RateLimited)
    assert exc.retry_after == pytest.approx(0.002)


# --- timeouts and connection errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc_type", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.WriteTimeout, httpx.PoolTimeout]
)
async def test_transport_timeout_becomes_api_timeout_and_is_retried(
    exc_type: type[httpx.TransportError],
) -> None:
    api = FakeAPI(fail(exc_type), ok_stream())
    c = await complete(api)
    assert_typical(c)
    assert api.count == 2 and c.attempts == 2
    assert c.errors[0].startswith("attempt 1: timeout:")
    assert exc_type.__name__ in c.errors[0]


async def test_transport_timeout_on_every_attempt_raises_api_timeout() -> None:
    api = FakeAPI(fail(httpx.ReadTimeout))
    exc = await failure(api, max_attempts=3)
    assert type(exc) is APITimeout
    assert exc.attempts == 3 and api.count == 3  # type: ignore[attr-defined]
    assert exc.__cause__ is None and exc.__suppress_context__


async def test_stalled_stream_hits_request_timeout_and_raises_api_timeout() -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield sse(chat_chunk("half"), done=False)
        await anyio.sleep(5)  # waited out (no timeout), this attempt would be answered
        yield sse(chat_chunk(None, "stop"))

    api = FakeAPI(reply_sse(stalls))
    exc = await failure(api, max_attempts=2, request_timeout=0.05)
    assert type(exc) is APITimeout
    assert exc.attempts == 2 and api.count == 2  # type: ignore[attr-defined]
    assert all("within --request-timeout 0.05s" in h for h in exc.history)  # type: ignore[attr-defined]


async def test_stalled_stream_then_good_answer_succeeds() -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b": ping\n\n"
        await anyio.sleep(5)  # waited out (no timeout), this attempt would end as a cut stream
        yield b""

    api = FakeAPI(reply_sse(stalls), ok_stream())
    c = await complete(api, request_timeout=0.05)
    assert_typical(c)
    assert c.attempts == 2
    assert c.errors[0].startswith("attempt 1: timeout:")


async def test_connect_error_is_api_connection_error_and_retried() -> None:
    api = FakeAPI(fail(httpx.ConnectError, "Name or service not known"), ok_stream())
    c = await complete(api)
    assert_typical(c)
    assert c.errors[0].startswith("attempt 1: connection_error:")
    assert "Name or service not known" in c.errors[0]
    exc = await failure(FakeAPI(fail(httpx.ConnectError)), max_attempts=2)
    assert type(exc) is APIConnectionError and exc.attempts == 2  # type: ignore[attr-defined]


# --- token budget -------------------------------------------------------------------------------------------


async def test_reservation_larger_than_tpm_raises_budget_exceeded_at_once() -> None:
    limits = Limits(tpm=100)
    with anyio.fail_after(2):
        with pytest.raises(BudgetExceeded, match="101"):
            await limits.acquire(101)


async def test_reservation_equal_to_tpm_fits() -> None:
    limits = Limits(tpm=100, rpm=10)
    with anyio.fail_after(2):
        await limits.acquire(100)


async def test_pool_with_oversized_reservation_sends_nothing() -> None:
    api = FakeAPI(ok_stream())
    async with pool_for(api, limits=Limits(tpm=50)) as pool:
        with anyio.fail_after(2):
            with pytest.raises(BudgetExceeded):
                await pool.complete(chat_body(), reserve_tokens=51)
        assert pool.requests_sent == 0
    assert api.count == 0


# --- regressions: bugs these tests found, since fixed ----------------------------------------------


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\u0085"], ids=["LS", "PS", "NEL"])
async def test_stream_content_with_unicode_line_separators_is_kept(char: str) -> None:
    chunk = orjson.dumps(chat_chunk(f"a{char}b", "stop"))
    assert char.encode() in chunk  # orjson (like most servers) does not escape these
    c = await complete(FakeAPI(reply_sse(b"data: " + chunk + b"\n\ndata: [DONE]\n\n")), max_attempts=1)
    assert c.text == f"a{char}b"


@pytest.mark.parametrize("obj", [[], None, "Internal error"], ids=["list", "null", "string"])
async def test_non_object_json_body_is_a_stream_error(obj: Any) -> None:
    exc = await failure(FakeAPI(reply_json(obj)), chat_body(stream=False), max_attempts=1)
    assert isinstance(exc, StreamError)


async def test_error_event_with_string_data_is_a_stream_error() -> None:
    raw = b'event: error\ndata: "upstream error"\n\n'
    exc = await failure(FakeAPI(reply_sse(raw)), max_attempts=1)
    assert isinstance(exc, StreamError)
    assert "upstream error" in str(exc)


async def test_undecodable_compressed_body_is_an_api_error() -> None:
    api = FakeAPI(
        reply_raw(200, b"this is not gzip", {"content-type": "application/json", "content-encoding": "gzip"})
    )
    exc = await failure(api, chat_body(stream=False), max_attempts=1)
    assert isinstance(exc, APIError)


async def test_truncated_error_body_does_not_leak_a_key_prefix() -> None:
    api = FakeAPI(reply_raw(401, b"x" * 290 + b" " + KEY.encode() + b" is not valid"))
    exc = await failure(api, max_attempts=1)
    assert isinstance(exc, AuthError)
    assert KEY[:6] not in str(exc)


# --- one cancel scope per attempt; the request sent straight to the client's transport ---------------------


class _HeldOpen(httpx.AsyncByteStream):
    """A body that sends `data` and then never ends (a server holding the stream open after [DONE])."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data
        await anyio.sleep(30)


def held_open(data: bytes) -> Step:
    def step(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_HeldOpen(data))

    return step


async def test_a_stream_held_open_after_done_is_whole_after_one_second() -> None:
    started = time.perf_counter()
    c = await complete(FakeAPI(held_open(sse(*typical_chunks()))), max_attempts=1)
    assert_typical(c)
    assert 0.9 < time.perf_counter() - started < 5


async def test_the_request_timeout_running_out_after_done_still_gives_the_whole_answer() -> None:
    # [DONE] was read: the answer is whole, whichever deadline of the attempt ends the body.
    c = await complete(FakeAPI(held_open(sse(*typical_chunks()))), max_attempts=1, request_timeout=0.3)
    assert_typical(c)


async def test_the_request_timeout_before_done_is_a_timeout() -> None:
    api = FakeAPI(held_open(sse(*typical_chunks(), done=False)[:-40]))
    exc = await failure(api, max_attempts=1, request_timeout=0.3)
    assert isinstance(exc, APITimeout) and "request-timeout" in str(exc)


async def test_cookies_a_server_sets_are_sent_back_as_the_client_would() -> None:
    def with_cookie(request: httpx.Request) -> httpx.Response:
        response = ok_stream()(request)
        response.headers["set-cookie"] = "lb=node-7; Path=/"
        return response

    api = FakeAPI(with_cookie, ok_stream())
    async with pool_for(api) as pool:
        for _ in range(2):
            assert_typical(await pool.complete(chat_body(), reserve_tokens=10))
    assert "cookie" not in api.requests[0].headers
    assert api.requests[1].headers["cookie"] == "lb=node-7"
    assert api.requests[1].headers["authorization"] == f"Bearer {KEY}"  # the client's own headers
