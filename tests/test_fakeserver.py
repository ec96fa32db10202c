"""Tests of the loopback OpenAI-compatible test server, through a real httpx client."""

from __future__ import annotations

import asyncio
import hashlib
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fakeserver import (
    ALL_FAULTS,
    FakeOpenAI,
    LoggedRequest,
    Scripted,
    default_reply,
    format_duration,
    parse_duration,
)

ROOT = Path(__file__).resolve().parent.parent
CHAT = {
    "model": "gpt-test",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "def f(x):\n    return x * 2\n"},
    ],
}
PROMPT = "Be brief.\ndef f(x):\n    return x * 2\n"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(chunks=8) as srv:
        yield srv


@pytest.fixture
def client(server: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def sse_data(lines: Iterator[str]) -> list[str]:
    """The payloads of the `data:` lines of an SSE stream."""
    return [line[5:].strip() for line in lines if line.startswith("data:")]


def stream_chunks(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
    with client.stream("POST", path, json=body) as resp:
        return resp, sse_data(resp.iter_lines())


def stream_body(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "stream": True, "stream_options": {"include_usage": True}}


# ---- normal answers -------------------------------------------------------------------------------------


def test_chat_non_stream_fields(server: FakeOpenAI, client: httpx.Client) -> None:
    resp = client.post("/chat/completions", json=CHAT)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    data = resp.json()
    assert re.fullmatch(r"chatcmpl-\d+", data["id"])
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "gpt-test"
    assert data["system_fingerprint"] == "fp_fake"
    (choice,) = data["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    text = choice["message"]["content"]
    assert text == default_reply(PROMPT)
    assert text.startswith("Annotation " + hashlib.sha256(PROMPT.encode()).hexdigest()[:12] + ": ")
    assert data["usage"] == {
        "prompt_tokens": len(PROMPT.split()),
        "completion_tokens": 8,
        "total_tokens": len(PROMPT.split()) + 8,
    }


def test_chat_stream_assembles_same_text(client: httpx.Client) -> None:
    resp, chunks = stream_chunks(client, "/chat/completions", stream_body(CHAT))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert chunks[-1] == "[DONE]"
    objs = [orjson.loads(c) for c in chunks[:-1]]
    assert all(o["object"] == "chat.completion.chunk" and o["model"] == "gpt-test" for o in objs)
    assert len({o["id"] for o in objs}) == 1
    *content, final, usage = objs
    assert len(content) == 8
    assert content[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in content[1:])
    assert all(c["choices"][0]["finish_reason"] is None for c in content)
    assert all(o["usage"] is None for o in content + [final])
    assert final["choices"][0]["delta"] == {}
    assert final["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 8
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + 8
    streamed = "".join(c["choices"][0]["delta"]["content"] for c in content)
    plain = client.post("/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
    assert streamed == plain == default_reply(PROMPT)


def test_completions_endpoint_both_modes(server: FakeOpenAI, client: httpx.Client) -> None:
    body = {"model": "gpt-test", "prompt": "def g(): pass"}
    data = client.post("/completions", json=body).json()
    assert re.fullmatch(r"cmpl-\d+", data["id"])
    assert data["object"] == "text_completion"
    assert data["choices"][0]["text"] == default_reply("def g(): pass")
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["prompt_tokens"] == 3

    _, chunks = stream_chunks(client, "/completions", stream_body(body))
    assert chunks[-1] == "[DONE]"
    *content, final, usage = [orjson.loads(c) for c in chunks[:-1]]
    assert all(c["object"] == "text_completion" for c in content)
    assert "".join(c["choices"][0]["text"] for c in content) == data["choices"][0]["text"]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(content) == 8
    assert server.completions_for("completions") == 2
    assert server.completions_for("/v1/chat/completions") == 0


def test_usage_chunk_only_when_asked_and_enabled(server: FakeOpenAI, client: httpx.Client) -> None:
    # not requested by the client: no usage chunk, no "usage": null
    _, chunks = stream_chunks(client, "/chat/completions", {**CHAT, "stream": True})
    objs = [orjson.loads(c) for c in chunks[:-1]]
    assert all("usage" not in o for o in objs)
    assert objs[-1]["choices"][0]["finish_reason"] == "stop"
    # requested, but the server does not report usage
    server.include_usage = False
    _, chunks = stream_chunks(client, "/chat/completions", stream_body(CHAT))
    objs = [orjson.loads(c) for c in chunks[:-1]]
    assert chunks[-1] == "[DONE]"
    assert all("usage" not in o and o["choices"] for o in objs)
    assert "usage" not in client.post("/chat/completions", json=CHAT).json()


def test_max_tokens_cut_gives_length(client: httpx.Client) -> None:
    data = client.post("/chat/completions", json={**CHAT, "max_tokens": 3}).json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 3
    assert default_reply(PROMPT).startswith(data["choices"][0]["message"]["content"])
    assert len(data["choices"][0]["message"]["content"]) < len(default_reply(PROMPT))

    _, chunks = stream_chunks(client, "/chat/completions", stream_body({**CHAT, "max_tokens": 3}))
    *content, final, usage = [orjson.loads(c) for c in chunks[:-1]]
    assert len(content) == 3
    assert final["choices"][0]["finish_reason"] == "length"
    assert usage["usage"]["completion_tokens"] == 3
    # a limit the answer fits in is not a cut
    data = client.post("/chat/completions", json={**CHAT, "max_tokens": 8}).json()
    assert data["choices"][0]["finish_reason"] == "stop"


def test_custom_reply_and_tiny_replies() -> None:
    upper = FakeOpenAI(reply=lambda r: r.prompt_text.upper(), chunks=50)
    with upper as srv, httpx.Client(base_url=srv.url) as c:
        body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "ab"}]}]}
        _, chunks = stream_chunks(c, "/chat/completions", {**body, "stream": True})
        objs = [orjson.loads(x) for x in chunks[:-1]]
        assert [o["choices"][0]["delta"].get("content") for o in objs] == ["A", "B", None]
        srv.reply = lambda r: ""
        assert c.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"] == ""
        _, chunks = stream_chunks(c, "/chat/completions", {**body, "stream": True})
        first = orjson.loads(chunks[0])
        assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}

        def boom(r: LoggedRequest) -> str:
            raise ValueError("nope")

        srv.reply = boom
        resp = c.post("/chat/completions", json=body)
        assert resp.status_code == 500 and "nope" in resp.json()["error"]["message"]


def test_models_and_unknown_paths(client: httpx.Client) -> None:
    data = client.get("/models").json()
    assert data["object"] == "list" and data["data"][0]["id"]
    for method, path in [("GET", "/nope"), ("POST", "/moderations"), ("GET", "/chat/completions")]:
        resp = client.request(method, path)
        assert resp.status_code == 404
        err = resp.json()["error"]
        assert err["type"] == "invalid_request_error" and err["message"] and "code" in err


def test_bad_bodies_are_400(client: httpx.Client) -> None:
    resp = client.post("/chat/completions", content=b"{oops", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    assert client.post("/chat/completions", json={"model": "m"}).status_code == 400
    assert client.post("/chat/completions", json={"messages": CHAT["messages"]}).status_code == 400


# ---- auth and model checks --------------------------------------------------------------------------------


def test_api_key_required() -> None:
    with FakeOpenAI(api_key="sk-right") as srv, httpx.Client(base_url=srv.url) as c:
        wrong = c.post("/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-wrong-1234"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        assert "sk-wrong" not in wrong.text and "1234" not in wrong.text
        assert c.post("/chat/completions", json=CHAT).status_code == 401
        assert c.get("/models").status_code == 401
        ok = c.post("/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-right"})
        assert ok.status_code == 200
        assert len(srv.requests) == 4


def test_wrong_model_404() -> None:
    with FakeOpenAI(model="gpt-test") as srv, httpx.Client(base_url=srv.url) as c:
        resp = c.post("/chat/completions", json={**CHAT, "model": "gpt-other"})
        assert resp.status_code == 404
        assert resp.json()["error"]["code"] == "model_not_found"
        assert c.post("/chat/completions", json=CHAT).status_code == 200
        assert c.get("/models").json()["data"][0]["id"] == "gpt-test"


# ---- scripted answers and faults ----------------------------------------------------------------------


def test_scripted_429_then_normal(server: FakeOpenAI, client: httpx.Client) -> None:
    server.script(Scripted(status=429, headers={"Retry-After": "0.5"}))
    assert server.scripted_pending == 1
    assert client.get("/models").status_code == 200  # scripted answers are for completions only
    first = client.post("/chat/completions", json=CHAT)
    assert first.status_code == 429
    assert first.headers["retry-after"] == "0.5"
    assert first.json()["error"]["code"] == "rate_limit_exceeded"
    second = client.post("/chat/completions", json=CHAT)
    assert second.status_code == 200
    assert second.json()["choices"][0]["message"]["content"] == default_reply(PROMPT)
    assert server.completions_for("chat/completions") == 2
    assert server.scripted_pending == 0


def test_scripted_bodies_fifo(server: FakeOpenAI, client: httpx.Client) -> None:
    server.script(
        Scripted(status=500),
        Scripted(status=200, body={"custom": True}),
        Scripted(status=400, body=b"plain", headers={"content-type": "text/plain"}),
        Scripted(status=503),
    )
    r1 = client.post("/chat/completions", json=stream_body(CHAT))
    assert r1.status_code == 500 and r1.json()["error"]["type"] == "server_error"
    assert client.post("/chat/completions", json=CHAT).json() == {"custom": True}
    r3 = client.post("/completions", json={"model": "m", "prompt": "x"})
    assert (r3.status_code, r3.text, r3.headers["content-type"]) == (400, "plain", "text/plain")
    assert client.post("/chat/completions", json=CHAT).status_code == 503
    assert client.post("/chat/completions", json=CHAT).status_code == 200
    server.script(Scripted(status=500))
    server.clear()
    assert server.requests == [] and server.scripted_pending == 0


def test_cut_after_chunks_gives_incomplete_stream(server: FakeOpenAI, client: httpx.Client) -> None:
    server.script(Scripted(cut_after_chunks=3))
    lines: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", "/chat/completions", json=stream_body(CHAT)) as resp:
            assert resp.status_code == 200
            for line in resp.iter_lines():
                lines.append(line)
    data = sse_data(iter(lines))
    assert "[DONE]" not in data
    assert len(data) <= 3
    # the server is fine afterwards, on a new connection
    assert client.post("/chat/completions", json=CHAT).status_code == 200


def test_cut_non_stream_body(server: FakeOpenAI, client: httpx.Client) -> None:
    server.script(Scripted(cut_after_chunks=0))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/chat/completions", json=CHAT)


def test_malformed_chunk_mid_stream(server: FakeOpenAI, client: httpx.Client) -> None:
    server.script(Scripted(malformed_chunk=True, headers={"x-extra": "1"}))
    resp, chunks = stream_chunks(client, "/chat/completions", stream_body(CHAT))
    assert resp.headers["x-extra"] == "1"
    assert "{not json" in chunks
    assert chunks.index("{not json") not in (0, len(chunks) - 1)
    assert chunks[-1] == "[DONE]"
    server.script(Scripted(malformed_chunk=True))
    resp = client.post("/chat/completions", json=CHAT)
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()


def test_stall_pauses_after_first_chunk(server: FakeOpenAI, client: httpx.Client) -> None:
    server.script(Scripted(stall=0.4))
    times: list[float] = []
    with client.stream("POST", "/chat/completions", json=stream_body(CHAT)) as resp:
        for line in resp.iter_lines():
            if line.startswith("data:"):
                times.append(time.monotonic())
    assert times[1] - times[0] >= 0.3
    assert times[-1] - times[1] < 0.3
    server.script(Scripted(stall=0.2))
    with pytest.raises(httpx.ReadTimeout):
        client.post("/chat/completions", json=stream_body(CHAT), timeout=httpx.Timeout(5, read=0.05))
    server.script(Scripted(stall=0.3))
    start = time.monotonic()
    assert client.post("/chat/completions", json=CHAT).json()["choices"][0]["finish_reason"] == "stop"
    assert time.monotonic() - start >= 0.25


def test_latency_and_chunk_delay() -> None:
    with FakeOpenAI(chunks=4, latency=0.2, chunk_delay=0.05) as srv, httpx.Client(base_url=srv.url) as c:
        start = time.monotonic()
        _, chunks = stream_chunks(c, "/chat/completions", stream_body(CHAT))
        elapsed = time.monotonic() - start
        assert chunks[-1] == "[DONE]"
        assert elapsed >= 0.2 + 6 * 0.05 * 0.8


def test_sse_extras() -> None:
    with FakeOpenAI(chunks=5, sse_extras=True) as srv, httpx.Client(base_url=srv.url) as c:
        with c.stream("POST", "/chat/completions", json=stream_body(CHAT)) as resp:
            raw = resp.read()
        assert b": keep-alive\r\n" in raw
        assert b"event: message\r\n" in raw
        assert raw.endswith(b"data: [DONE]\r\n\r\n")
        assert raw.replace(b"\r\n", b"").count(b"\n") == 0  # CRLF everywhere
        chunks = sse_data(iter(raw.decode().split("\r\n")))
        objs = [orjson.loads(x) for x in chunks[:-1]]
        assert objs[0]["choices"] == [] and "usage" in objs[0] and objs[0]["usage"] is None
        text = "".join(o["choices"][0]["delta"].get("content", "") for o in objs if o["choices"])
        assert text == default_reply(PROMPT)
        assert objs[-1]["usage"]["completion_tokens"] == 5


# ---- request log ------------------------------------------------------------------------------------------


def test_request_log_records_bodies(server: FakeOpenAI, client: httpx.Client) -> None:
    before = time.monotonic()
    client.post("/chat/completions", json={**CHAT, "temperature": 0.2}, headers={"X-Trace": "t1"})
    client.post("/completions", json={"model": "m", "prompt": ["a b", "c"]})
    client.get("/models?limit=1")
    log = server.requests
    assert [(r.method, r.path) for r in log] == [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("GET", "/v1/models"),
    ]
    assert log[0].body == {**CHAT, "temperature": 0.2}
    assert log[0].headers["x-trace"] == "t1"
    assert all(k == k.lower() for k in log[0].headers)
    assert log[0].prompt_text == PROMPT
    assert log[1].prompt_text == "a b\nc"
    assert log[2].body is None and log[2].prompt_text == ""
    assert before <= log[0].time <= log[1].time <= time.monotonic()
    assert server.completions_for("chat/completions") == 1
    log.clear()  # a copy
    assert len(server.requests) == 3


def test_keep_alive_pipelining_and_chunked_request_body(server: FakeOpenAI) -> None:
    body = orjson.dumps({"model": "m", "prompt": "hello world"})
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    requests = (
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        + b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked
        + b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(requests)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 4
    assert received.count(default_reply("hello world").encode()) == 2
    assert [r.body for r in server.requests][1:3] == [orjson.loads(body)] * 2


def test_malformed_http_gets_400(server: FakeOpenAI) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 400 ")


def test_stop_with_open_and_stalled_connections() -> None:
    srv = FakeOpenAI(chunks=4).start()
    idle = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    busy = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        srv.script(Scripted(stall=30))
        body = orjson.dumps(stream_body(CHAT))
        busy.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        assert busy.recv(65536).startswith(b"HTTP/1.1 200 OK")
        start = time.monotonic()
        srv.stop()
        assert time.monotonic() - start < 5
        srv.stop()  # idempotent
        with pytest.raises(RuntimeError):
            srv.url
        srv.start()  # restartable
        with httpx.Client(base_url=srv.url) as c:
            assert c.get("/models").status_code == 200
        srv.stop()
    finally:
        idle.close()
        busy.close()


# ---- concurrency, subprocesses ------------------------------------------------------------------------


async def test_200_concurrent_streams() -> None:
    with FakeOpenAI(chunks=10, chunk_delay=0.01) as srv:
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        async with httpx.AsyncClient(base_url=srv.url, limits=limits, timeout=30) as client:

            async def one(i: int) -> str:
                body = {
                    "model": "m",
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": f"snippet {i}"}],
                }
                parts: list[str] = []
                done = False
                async with client.stream("POST", "/chat/completions", json=body) as resp:
                    assert resp.status_code == 200
                    async for line in resp.aiter_lines():
                        done = done or line == "data: [DONE]"
                        if line.startswith("data:") and line != "data: [DONE]":
                            obj = orjson.loads(line[5:])
                            if obj["choices"]:
                                parts.append(obj["choices"][0]["delta"].get("content") or "")
                    assert done
                return "".join(parts)

            start = time.monotonic()
            texts = await asyncio.gather(*(one(i) for i in range(200)))
            elapsed = time.monotonic() - start
        assert texts == [default_reply(f"snippet {i}") for i in range(200)]
        assert srv.completions_for("chat/completions") == 200
        assert elapsed < 10


@contextmanager
def served_by_cli(*args: str) -> Iterator[str]:
    """``python -m tests.fakeserver ARGS`` in a subprocess: yields its URL (the first stderr line); on leaving,
    Ctrl-C must stop it with exit 0."""
    with subprocess.Popen(
        [sys.executable, "-m", "tests.fakeserver", "--port", "0", *args],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            yield proc.stderr.readline().strip()
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0


def test_cli_subprocess() -> None:
    with served_by_cli("--chunks", "3", "--rpm", "6000") as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
        with httpx.Client(base_url=url) as c:
            resp, chunks = stream_chunks(c, "/chat/completions", stream_body(CHAT))
        assert len(chunks) == 3 + 3  # content, final, usage, [DONE]
        assert resp.headers["x-ratelimit-limit-requests"] == "6000"


# ---- rate limits ------------------------------------------------------------------------------------------

PROMPT_TOKENS = len(PROMPT.split())  # the server counts whitespace-separated words


def ratelimit(resp: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.startswith("x-ratelimit-") or k.startswith("retry-")}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0.0),
        ("20ms", 0.02),
        ("1s", 1.0),
        ("8.64s", 8.64),
        ("1m30.5s", 90.5),
        ("6m0s", 360.0),
        ("2h0m0s", 7200.0),
        ("1h0m0.001s", 3600.001),
    ],
)
def test_duration_format_round_trips(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert format_duration(seconds) == text
    assert format_duration(parse_duration(text)) == text


def test_duration_edge_cases() -> None:
    assert format_duration(-1) == "0s"
    assert format_duration(float("nan")) == "0s"
    assert format_duration(0.0004) == "1ms"  # rounded up: never tells a client to come back too early
    assert format_duration(0.0201) == "21ms"
    assert format_duration(0.1 + 0.2 - 0.3 + 0.02) == "20ms"  # float noise is not rounded up
    assert format_duration(59.9999) == "1m0s"
    assert parse_duration("500us") == parse_duration("500\u00b5s") == pytest.approx(0.0005)
    assert parse_duration("1.5") == 1.5
    for bad in ["", "s", "1x", "abc", "-1s", "1s 2s", "inf"]:
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_rpm_enforced_then_admitted_after_retry_after() -> None:
    with FakeOpenAI(chunks=8, rpm=600, burst_seconds=1.0) as srv, httpx.Client(base_url=srv.url) as c:
        start = time.monotonic()
        responses = [c.post("/chat/completions", json=CHAT) for _ in range(14)]
        elapsed = time.monotonic() - start
        statuses = [r.status_code for r in responses]
        assert statuses[:10] == [200] * 10  # the bucket starts full: 600/min * 1 s = 10 requests
        assert 429 in statuses[10:]
        assert statuses.count(200) <= 10 + elapsed * 10 + 1
        first = ratelimit(responses[0])
        assert first["x-ratelimit-limit-requests"] == "600"
        assert first["x-ratelimit-remaining-requests"] == "9"
        assert 0.09 <= parse_duration(first["x-ratelimit-reset-requests"]) <= 0.11
        assert not any(k.endswith("-tokens") for k in first)  # no tpm: no token headers
        assert int(responses[9].headers["x-ratelimit-remaining-requests"]) <= elapsed * 10

        rejected = responses[statuses.index(429)]
        err = rejected.json()["error"]
        assert (err["type"], err["code"]) == ("requests", "rate_limit_exceeded")
        assert "requests per min (RPM): Limit 600" in err["message"]
        wait_ms = int(rejected.headers["retry-after-ms"])
        assert 0 < wait_ms <= 100
        assert rejected.headers["retry-after"] == "1"  # whole seconds, rounded up
        assert rejected.headers["x-ratelimit-remaining-requests"] == "0"
        assert parse_duration(rejected.headers["x-ratelimit-reset-requests"]) <= 1.0

        last = responses[-1]
        if last.status_code == 429:
            time.sleep(int(last.headers["retry-after-ms"]) / 1000)
            assert c.post("/chat/completions", json=CHAT).status_code == 200

        log = srv.requests
        assert [r.status for r in log[:14]] == statuses
        stats = srv.stats
        assert stats["admitted"] == sum(1 for r in log if r.status == 200)
        assert stats["rejected_429"] == sum(1 for r in log if r.status == 429) == statuses.count(429)
        assert stats["faults"] == {}


def test_tpm_enforced_with_refund() -> None:
    # 1200 tokens/min = 20/s; burst 5 s = 100 tokens. Each request reserves 8 + 40 = 48 tokens and uses
    # 8 + 8 (chunks=8), so 32 come back when the answer is complete.
    with (
        FakeOpenAI(chunks=8, tpm=1200, burst_seconds=5, refund_unused=True) as srv,
        httpx.Client(base_url=srv.url) as c,
    ):
        body = {**CHAT, "max_tokens": 40}
        remaining = []
        for i in range(4):
            if i % 2:
                resp, chunks = stream_chunks(c, "/chat/completions", stream_body(body))
                assert chunks[-1] == "[DONE]"
            else:
                resp = c.post("/chat/completions", json=body)
            assert resp.status_code == 200
            assert resp.headers["x-ratelimit-limit-tokens"] == "1200"
            assert "x-ratelimit-limit-requests" not in resp.headers
            remaining.append(int(resp.headers["x-ratelimit-remaining-tokens"]))
        # without the refund the second answer would have left 100 - 2 * 48 = 4
        for got, expected in zip(remaining, [52, 36, 20, 4]):
            assert expected <= got <= expected + 3
        rejected = c.post("/chat/completions", json=body)  # 36 left, 48 needed
        assert rejected.status_code == 429
        assert rejected.json()["error"]["type"] == "tokens"
        assert "Requested 48" in rejected.json()["error"]["message"]
        wait_ms = int(rejected.headers["retry-after-ms"])
        assert 300 <= wait_ms <= 600  # (48 - 36) / 20 s
        assert 36 <= int(rejected.headers["x-ratelimit-remaining-tokens"]) <= 42  # nothing was taken
        time.sleep(wait_ms / 1000)
        ok = c.post("/chat/completions", json=body)
        assert ok.status_code == 200
        assert int(ok.headers["x-ratelimit-remaining-tokens"]) <= 3

        stats = srv.stats
        assert stats["admitted"] == 5 and stats["rejected_429"] == 1
        assert stats["tokens_charged"] == 5 * (PROMPT_TOKENS + 8)
        assert stats["first_admit"] is not None and stats["last_done"] is not None
        assert stats["first_admit"] < stats["last_done"] <= time.monotonic()
        srv.reset_stats()
        assert srv.stats == {
            "admitted": 0,
            "rejected_429": 0,
            "tokens_charged": 0,
            "first_admit": None,
            "last_done": None,
            "faults": {},
        }


def test_token_reservation_defaults_and_reset_header() -> None:
    # 600 tokens/min = 10/s, 10 s burst = 100 tokens
    with (
        FakeOpenAI(chunks=8, tpm=600, burst_seconds=10, refund_unused=True) as srv,
        httpx.Client(base_url=srv.url) as c,
    ):
        resp = c.post("/chat/completions", json=CHAT)  # no max_tokens: 16 reserved
        assert int(resp.headers["x-ratelimit-remaining-tokens"]) == 100 - PROMPT_TOKENS - 16
        assert resp.headers["x-ratelimit-reset-tokens"] == "2.4s"  # 24 tokens at 10/s
        resp = c.post("/chat/completions", json={**CHAT, "max_completion_tokens": 2})
        assert resp.json()["usage"]["completion_tokens"] == 2
        # first answer gave back 16 - 8; this one reserved 8 + 2
        assert 100 - 24 + 8 - 10 <= int(resp.headers["x-ratelimit-remaining-tokens"]) <= 100 - 24 + 8 - 10 + 2
        assert srv.stats["tokens_charged"] == (PROMPT_TOKENS + 8) + (PROMPT_TOKENS + 2)


def test_oversized_request_waits_for_a_full_bucket() -> None:
    # 600 tokens/min = 10/s, so the bucket holds 10 tokens; a request of 8 + 16 goes when it is full
    with FakeOpenAI(chunks=8, tpm=600, refund_unused=True) as srv, httpx.Client(base_url=srv.url) as c:
        first = c.post("/chat/completions", json=CHAT)
        assert first.status_code == 200
        assert first.headers["x-ratelimit-remaining-tokens"] == "0"
        second = c.post("/chat/completions", json=CHAT)
        assert second.status_code == 429
        # in debt by 8 + 16 - 10 - 8 (refund) = 6: back to full in (6 + 10) / 10 s
        assert 1300 <= int(second.headers["retry-after-ms"]) <= 1600
        assert second.headers["retry-after"] == "2"


def test_rejected_request_costs_nothing() -> None:
    # 60/min with a 1 s burst: the bucket holds one request (the minimum)
    with FakeOpenAI(chunks=8, rpm=60, tpm=600_000) as srv, httpx.Client(base_url=srv.url) as c:
        ok = c.post("/chat/completions", json=CHAT)
        assert ok.headers["x-ratelimit-remaining-requests"] == "0"
        tokens_after_ok = int(ok.headers["x-ratelimit-remaining-tokens"])
        for _ in range(3):
            rejected = c.post("/chat/completions", json=CHAT)
            assert rejected.status_code == 429 and rejected.json()["error"]["type"] == "requests"
            assert int(rejected.headers["x-ratelimit-remaining-tokens"]) >= tokens_after_ok
            assert 500 <= int(rejected.headers["retry-after-ms"]) <= 1000
        assert srv.stats["admitted"] == 1 and srv.stats["rejected_429"] == 3
        assert srv.stats["tokens_charged"] == PROMPT_TOKENS + 16  # the one admission's charge, unrefunded


def test_ratelimit_headers_on_every_response_or_none() -> None:
    with FakeOpenAI(rpm=600, tpm=60_000, api_key="k") as srv, httpx.Client(base_url=srv.url) as c:
        auth = {"authorization": "Bearer k"}
        for resp in [
            c.get("/models", headers=auth),
            c.get("/nope", headers=auth),
            c.get("/models"),
            c.post("/chat/completions", json={"model": "m"}, headers=auth),
        ]:
            assert resp.status_code in (200, 400, 401, 404)
            assert resp.headers["x-ratelimit-limit-requests"] == "600"
            assert resp.headers["x-ratelimit-limit-tokens"] == "60000"
            assert resp.headers["x-ratelimit-remaining-requests"] == "10"  # none of these is charged
        srv.script(Scripted(status=500), Scripted(status=429, headers={"retry-after-ms": "7"}))
        assert (
            c.post("/chat/completions", json=CHAT, headers=auth).headers["x-ratelimit-remaining-requests"]
            == "9"
        )  # a scripted answer is charged ...
        scripted_429 = c.post("/chat/completions", json=CHAT, headers=auth)
        assert scripted_429.headers["retry-after-ms"] == "7"
        assert scripted_429.headers["x-ratelimit-remaining-requests"] == "9"  # ... but never a 429
        assert srv.stats["admitted"] == 1
    with FakeOpenAI(rpm=60, ratelimit_headers=False) as srv, httpx.Client(base_url=srv.url) as c:
        ok, rejected = c.post("/chat/completions", json=CHAT), c.post("/chat/completions", json=CHAT)
        assert (ok.status_code, rejected.status_code) == (200, 429)
        assert not any(k.startswith("x-ratelimit") for k in [*ok.headers, *rejected.headers])
        assert rejected.headers["retry-after"] == "1" and int(rejected.headers["retry-after-ms"]) > 0
    with FakeOpenAI() as srv, httpx.Client(base_url=srv.url) as c:
        assert not any(k.startswith("x-ratelimit") for k in c.post("/chat/completions", json=CHAT).headers)
        assert srv.stats["admitted"] == 1  # counted without limits too


def test_by_default_the_admission_charge_stands() -> None:
    # OpenAI's accounting: prompt + max_tokens at admission, nothing back for a shorter answer.
    # 1200 tokens/min = 20/s; burst 5 s = 100 tokens; each request reserves 8 + 40 = 48 and uses 8 + 8.
    with FakeOpenAI(chunks=8, tpm=1200, burst_seconds=5) as srv, httpx.Client(base_url=srv.url) as c:
        body = {**CHAT, "max_tokens": 40}
        first = c.post("/chat/completions", json=body)
        resp, chunks = stream_chunks(c, "/chat/completions", stream_body(body))
        assert (first.status_code, resp.status_code, chunks[-1]) == (200, 200, "[DONE]")
        assert first.json()["usage"]["completion_tokens"] == 8
        assert 52 <= int(first.headers["x-ratelimit-remaining-tokens"]) <= 54
        assert int(resp.headers["x-ratelimit-remaining-tokens"]) <= 4 + 3  # with a refund it would be 36
        rejected = c.post("/chat/completions", json=body)
        assert rejected.status_code == 429 and rejected.json()["error"]["type"] == "tokens"
        assert int(rejected.headers["x-ratelimit-remaining-tokens"]) < 48
        assert srv.stats["tokens_charged"] == 2 * (PROMPT_TOKENS + 40)
        assert [(r, t) for _, r, t in srv.charges] == [(1, PROMPT_TOKENS + 40)] * 2


def test_charges_log_admissions_and_refunds_in_order() -> None:
    with (
        FakeOpenAI(chunks=8, rpm=600, tpm=60_000, refund_unused=True) as srv,
        httpx.Client(base_url=srv.url) as c,
    ):
        c.post("/chat/completions", json={**CHAT, "max_tokens": 40})
        c.post("/chat/completions", json={**CHAT, "max_tokens": 4})  # cut at 4 tokens: nothing to give back
        log = srv.charges
        assert [(r, t) for _, r, t in log] == [(1, PROMPT_TOKENS + 40), (0, -32), (1, PROMPT_TOKENS + 4)]
        assert [t for t, _, _ in log] == sorted(t for t, _, _ in log)
        assert sum(t for _, _, t in log) == srv.stats["tokens_charged"] == 2 * PROMPT_TOKENS + 8 + 4
        srv.reset_stats()
        assert srv.charges == []
    with FakeOpenAI(chunks=8) as srv, httpx.Client(base_url=srv.url) as c:
        c.post("/chat/completions", json=CHAT)
        assert srv.charges == []  # no limit, no account (the stats still count)


def test_ratelimit_headers_only_on_429s() -> None:
    with FakeOpenAI(rpm=60, tpm=60_000, ratelimit_headers="429") as srv, httpx.Client(base_url=srv.url) as c:
        models, ok = c.get("/models"), c.post("/chat/completions", json=CHAT)
        srv.script(Scripted(status=429, headers={"retry-after-ms": "7"}))
        scripted_429 = c.post("/chat/completions", json=CHAT)
        rejected = c.post("/chat/completions", json=CHAT)
        assert (ok.status_code, scripted_429.status_code, rejected.status_code) == (200, 429, 429)
        for resp in (models, ok):
            assert not any(k.startswith("x-ratelimit") for k in resp.headers)
        for resp in (scripted_429, rejected):
            assert resp.headers["x-ratelimit-limit-requests"] == "60"
            assert resp.headers["x-ratelimit-remaining-requests"] == "0"
            assert resp.headers["x-ratelimit-limit-tokens"] == "60000"
        assert int(rejected.headers["retry-after-ms"]) > 0
    for mode, expected in ((True, True), ("all", True), (False, False), ("none", False)):
        with FakeOpenAI(rpm=60, ratelimit_headers=mode) as srv, httpx.Client(base_url=srv.url) as c:
            resp = c.post("/chat/completions", json=CHAT)
            assert ("x-ratelimit-limit-requests" in resp.headers) is expected, mode


def test_cli_rate_limit_modes() -> None:
    args = ["--chunks", "3", "--tpm", "600", "--ratelimit-headers", "429", "--refund-unused"]
    with served_by_cli(*args) as url:
        with httpx.Client(base_url=url) as c:
            ok, refused = c.post("/chat/completions", json=CHAT), c.post("/chat/completions", json=CHAT)
        assert (ok.status_code, refused.status_code) == (200, 429)
        assert not any(k.startswith("x-ratelimit") for k in ok.headers)
        assert refused.headers["x-ratelimit-limit-tokens"] == "600"


def test_bad_settings_rejected() -> None:
    for kwargs in [
        {"rpm": 0},
        {"tpm": -1},
        {"burst_seconds": 0},
        {"ratelimit_headers": "some"},
        {"fault_rate": 1.5},
        {"fault_rate": 0.5, "faults": ["400"]},
        {"faults": ["nope"]},
    ]:
        with pytest.raises(ValueError):
            FakeOpenAI(**kwargs)  # type: ignore[arg-type]


async def test_request_log_and_statuses_under_concurrency() -> None:
    with FakeOpenAI(chunks=4, rpm=600) as srv:
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(base_url=srv.url, limits=limits, timeout=10) as client:

            async def one(i: int) -> tuple[str, int]:
                if i % 10 == 9:
                    return f"/v1/nope{i}", (await client.get(f"/nope{i}")).status_code
                body = {"model": "m", "messages": [{"role": "user", "content": f"snippet {i}"}]}
                return f"snippet {i}", (await client.post("/chat/completions", json=body)).status_code

            results = dict(await asyncio.gather(*(one(i) for i in range(100))))
        log = srv.requests
        assert len(log) == 100
        logged = {r.prompt_text or r.path: r.status for r in log}
        assert logged == results
        assert sorted(set(results.values())) == [200, 404, 429]
        assert list(results.values()).count(200) >= 10
        assert srv.stats["admitted"] == list(results.values()).count(200)
        assert srv.stats["rejected_429"] == list(results.values()).count(429)
        assert all(a.time <= b.time for a, b in zip(log, log[1:]))


# ---- random faults ----------------------------------------------------------------------------------------


def test_fault_names() -> None:
    answered_wrong = {"429", "500", "502", "503", "error_200"}  # an error status, or an error in a 200
    delivered_wrong = {"reset", "cut", "malformed", "stall", "slow"}  # the answer breaks off, or is late
    assert set(ALL_FAULTS) == answered_wrong | delivered_wrong
    assert "400" not in ALL_FAULTS


def read_stream(client: httpx.Client, body: dict[str, Any]) -> tuple[int, list[str], BaseException | None]:
    """Status, data payloads and the exception (if the stream broke) of one streamed request."""
    lines: list[str] = []
    status = 0
    try:
        with client.stream("POST", "/chat/completions", json=body) as resp:
            status = resp.status_code
            for line in resp.iter_lines():
                lines.append(line)
    except httpx.TransportError as exc:
        return status, sse_data(iter(lines)), exc
    return status, sse_data(iter(lines)), None


@pytest.mark.parametrize("fault", ALL_FAULTS)
def test_each_fault_class(fault: str) -> None:
    with (
        FakeOpenAI(chunks=8, fault_rate=1.0, faults=[fault], stall_seconds=0.3) as srv,
        httpx.Client(base_url=srv.url, timeout=5) as c,
    ):
        start = time.monotonic()
        status, data, exc = read_stream(c, stream_body(CHAT))
        stream_time = time.monotonic() - start
        objs = [orjson.loads(d) for d in data if d not in ("[DONE]", "{not json")] if fault != "reset" else []
        if fault in ("429", "500", "502", "503"):
            assert exc is None and status == int(fault)
        elif fault == "error_200":
            assert exc is None and status == 200
            assert len(data) == 1 and "error" in orjson.loads(data[0])
        elif fault == "reset":
            assert isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError))
            assert 1 <= len(data) <= 2 and "[DONE]" not in data
        elif fault == "cut":
            assert exc is None and status == 200
            assert "[DONE]" not in data
            assert all(o["choices"] and o["choices"][0]["finish_reason"] is None for o in objs)
            text = "".join(o["choices"][0]["delta"]["content"] for o in objs)
            assert text == default_reply(PROMPT)  # all the content, but no ending
        else:
            assert exc is None and status == 200 and data[-1] == "[DONE]"
            assert objs[-2]["choices"][0]["finish_reason"] == "stop"
            assert ("{not json" in data) == (fault == "malformed")
            if fault == "slow":
                assert stream_time >= 11 * 0.02 * 0.9  # 8 content + final + usage + [DONE]
            if fault == "stall":
                assert stream_time >= 0.28

        start = time.monotonic()
        if fault == "reset":
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                c.post("/chat/completions", json=CHAT)
        else:
            resp = c.post("/chat/completions", json=CHAT)
            plain_time = time.monotonic() - start
            if fault == "429":
                assert resp.status_code == 429
                assert resp.json()["error"]["code"] == "rate_limit_exceeded"
                assert 0 < int(resp.headers["retry-after-ms"]) <= 50
                assert resp.headers["retry-after"] == "1"
                assert resp.headers["x-ratelimit-remaining-requests"] == "0"
                assert parse_duration(resp.headers["x-ratelimit-reset-requests"]) <= 0.05
            elif fault in ("500", "502", "503"):
                assert resp.status_code == int(fault) and resp.json()["error"]["type"] == "server_error"
            elif fault == "error_200":
                assert resp.status_code == 200 and set(resp.json()) == {"error"}
            elif fault == "malformed":
                with pytest.raises(ValueError):
                    resp.json()
            elif fault == "cut":
                choice = resp.json()["choices"][0]
                assert choice["finish_reason"] is None
                assert default_reply(PROMPT).startswith(choice["message"]["content"])
                assert choice["message"]["content"] != default_reply(PROMPT)
            else:
                assert resp.json()["choices"][0]["finish_reason"] == "stop"
                assert plain_time >= {"stall": 0.28, "slow": 0.018}[fault]
        assert srv.stats["faults"] == {fault: 2}
        assert srv.stats["admitted"] == (0 if fault == "429" else 2)
        assert [r.status for r in srv.requests] == [int(fault) if fault[0].isdigit() else 200] * 2
        # the server is fine afterwards
        srv.fault_rate = 0.0
        assert c.post("/chat/completions", json=CHAT).status_code == 200


def test_scripted_answers_are_never_faulted() -> None:
    with FakeOpenAI(chunks=8, fault_rate=1.0, faults=["500"]) as srv, httpx.Client(base_url=srv.url) as c:
        srv.script(Scripted(), Scripted(status=503))
        assert c.post("/chat/completions", json=CHAT).status_code == 200
        assert c.post("/chat/completions", json=CHAT).status_code == 503
        assert c.post("/chat/completions", json=CHAT).status_code == 500
        assert c.get("/models").status_code == 200  # completions only
        assert srv.stats["faults"] == {"500": 1}


def fault_run(seed: int, n: int = 40) -> tuple[list[tuple[Any, ...]], dict[str, int], list[int]]:
    with (
        FakeOpenAI(chunks=4, fault_rate=0.5, seed=seed, stall_seconds=0.01) as srv,
        httpx.Client(base_url=srv.url, timeout=5) as c,
    ):
        outcomes: list[tuple[Any, ...]] = []
        for i in range(n):
            if i % 2:
                status, data, exc = read_stream(c, stream_body(CHAT))
                outcomes.append(
                    (status, type(exc).__name__ if exc else None, "[DONE]" in data, "{not json" in data)
                )
            else:
                try:
                    resp = c.post("/chat/completions", json=CHAT)
                    outcomes.append((resp.status_code, resp.content[:12]))
                except httpx.TransportError as exc:
                    outcomes.append((type(exc).__name__,))
        return outcomes, srv.stats["faults"], [r.status for r in srv.requests]


def test_fault_mix_is_reproducible() -> None:
    first, second, other = fault_run(1234), fault_run(1234), fault_run(99)
    assert first == second
    assert first[1] == second[1] and sum(first[1].values()) > 5  # some faults, of several kinds
    assert len(first[1]) >= 4
    assert other[0] != first[0]


# ---- finish_reason ----------------------------------------------------------------------------------------


def test_finish_reason_scripted(server: FakeOpenAI, client: httpx.Client) -> None:
    server.script(
        Scripted(finish_reason="length"),
        Scripted(finish_reason="content_filter"),
        Scripted(finish_reason="length"),
    )
    data = client.post("/chat/completions", json=CHAT).json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["choices"][0]["message"]["content"] == default_reply(PROMPT)
    data = client.post("/completions", json={"model": "m", "prompt": PROMPT}).json()
    assert data["choices"][0]["finish_reason"] == "content_filter"
    assert default_reply(PROMPT).startswith(data["choices"][0]["text"])
    assert data["usage"]["completion_tokens"] == 4  # half of the 8 pieces
    _, chunks = stream_chunks(client, "/chat/completions", stream_body(CHAT))
    *content, final, usage = [orjson.loads(c) for c in chunks[:-1]]
    assert chunks[-1] == "[DONE]" and len(content) == 8
    assert final["choices"][0]["finish_reason"] == "length"
    # scripted answers are used up: normal again
    assert client.post("/chat/completions", json=CHAT).json()["choices"][0]["finish_reason"] == "stop"


def test_finish_reason_global() -> None:
    with FakeOpenAI(chunks=8, finish_reason="content_filter") as srv, httpx.Client(base_url=srv.url) as c:
        _, chunks = stream_chunks(c, "/chat/completions", stream_body(CHAT))
        *content, final, usage = [orjson.loads(x) for x in chunks[:-1]]
        assert final["choices"][0]["finish_reason"] == "content_filter"
        text = "".join(x["choices"][0]["delta"]["content"] for x in content)
        assert default_reply(PROMPT).startswith(text) and len(text) < len(default_reply(PROMPT))
        assert usage["usage"]["completion_tokens"] == 4
        srv.script(Scripted(finish_reason="stop"))  # a scripted finish reason wins
        assert c.post("/chat/completions", json=CHAT).json()["choices"][0]["finish_reason"] == "stop"
        srv.finish_reason = "length"
        data = c.post("/chat/completions", json=CHAT).json()
        assert data["choices"][0]["finish_reason"] == "length"
        assert data["choices"][0]["message"]["content"] == default_reply(PROMPT)
