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
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fakeserver import FakeOpenAI, LoggedRequest, Scripted, default_reply

ROOT = Path(__file__).resolve().parent.parent
CHAT = {"model": "gpt-test", "messages": [{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "def f(x):\n    return x * 2\n"}]}
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
    assert data["usage"] == {"prompt_tokens": len(PROMPT.split()), "completion_tokens": 8,
                             "total_tokens": len(PROMPT.split()) + 8}


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
    for method, path in [("GET", "/nope"), ("POST", "/embeddings"), ("GET", "/chat/completions")]:
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
        ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("GET", "/v1/models")]
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
        + b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
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
        busy.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
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
                body = {"model": "m", "stream": True, "stream_options": {"include_usage": True},
                        "messages": [{"role": "user", "content": f"snippet {i}"}]}
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


def test_cli_subprocess() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "tests.fakeserver", "--port", "0", "--chunks", "3"],
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            url = proc.stderr.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
            with httpx.Client(base_url=url) as c:
                _, chunks = stream_chunks(c, "/chat/completions", stream_body(CHAT))
            assert len(chunks) == 3 + 3  # content, final, usage, [DONE]
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
