"""Both transports behave alike: the same answers, timeouts, stall detection, TLS, proxies and errors.

Each test runs the client pool over httpx's own transport and over aiohttp's (httpx-aiohttp), against the
loopback fake server or a port with nothing behind it. The end-to-end suites run the CLI, whose default is
aiohttp; `test_a_run_over_either_transport_gives_the_same_records` runs one tree over both.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from stream.client import ClientPool, RetryPolicy
from stream.errors import APIConnectionError, APITimeout, StreamError
from tests.fakeserver import FakeOpenAI, Scripted
from tests.helpers import read_ndjson, run_args, snipstream

TRANSPORTS = ("aiohttp", "httpx")
BODY = {
    "model": "m",
    "messages": [{"role": "user", "content": "say hi"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}


def pool(url: str, transport: str, **kw) -> ClientPool:
    kw.setdefault("retry", RetryPolicy(max_attempts=1, base=0.01))
    kw.setdefault("trust_env", False)
    return ClientPool(
        base_url=url,
        api_key=None,
        api_key_env="OPENAI_API_KEY",
        api="chat",
        concurrency=2,
        transport_kind=transport,
        **kw,
    )


@contextlib.contextmanager
def not_tls() -> Iterator[int]:
    """A port that answers a TLS ClientHello with plain HTTP, as a server without TLS does."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(timeout=5)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_streamed_answer_comes_back_whole_with_its_usage_and_server_header(transport: str) -> None:
    with FakeOpenAI(chunks=5) as srv:
        async with pool(srv.url, transport) as p:
            c = await p.complete(BODY, reserve_tokens=0)
    assert c.text and c.finish_reason == "stop"
    assert c.usage and c.usage["completion_tokens"] > 0
    assert p.server is not None
    assert srv.requests[0].body == BODY


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_stalled_stream_is_a_timeout_after_the_stall_timeout(transport: str) -> None:
    with FakeOpenAI(chunks=5) as srv:
        srv.script(Scripted(stall=5.0))
        async with pool(srv.url, transport, stall_timeout=0.3) as p:
            with pytest.raises(APITimeout, match="stalled"):
                await p.complete(BODY, reserve_tokens=0)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_request_timeout_bounds_the_whole_answer(transport: str) -> None:
    with FakeOpenAI(
        chunks=50, chunk_delay=0.05
    ) as srv:  # 2.5 s of events, each well within the stall timeout
        async with pool(srv.url, transport, request_timeout=0.5) as p:
            with pytest.raises(APITimeout, match="request-timeout"):
                await p.complete(BODY, reserve_tokens=0)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_refused_connection_is_a_connection_error_the_breaker_counts(transport: str) -> None:
    async with pool(f"http://127.0.0.1:{closed_port()}/v1", transport) as p:
        with pytest.raises(APIConnectionError) as caught:
            await p.complete(BODY, reserve_tokens=0)
    assert caught.value.cause == "refused"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_failed_tls_handshake_is_a_connection_error_of_cause_tls(transport: str) -> None:
    with not_tls() as port:
        async with pool(f"https://127.0.0.1:{port}/v1", transport) as p:
            with pytest.raises(APIConnectionError) as caught:
                await p.complete(BODY, reserve_tokens=0)
    assert caught.value.cause == "tls"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_connection_cut_mid_stream_is_a_stream_error(transport: str) -> None:
    with FakeOpenAI(chunks=6) as srv:
        srv.script(Scripted(cut_after_chunks=2))
        async with pool(srv.url, transport) as p:
            with pytest.raises(StreamError):
                await p.complete(BODY, reserve_tokens=0)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_proxy_from_the_environment_carries_the_request(transport: str, monkeypatch) -> None:
    # The fake server takes absolute-form targets, as a forwarding HTTP proxy receives them (RFC 9112 3.2.2).
    with FakeOpenAI(chunks=3) as proxy:
        for name in (
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "http_proxy",
        ):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url.rsplit("/v1", 1)[0])
        async with pool("http://api.snipstream.invalid/v1", transport, trust_env=True) as p:
            c = await p.complete(BODY, reserve_tokens=0)
    assert c.text
    assert proxy.requests[0].headers["host"] == "api.snipstream.invalid"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_without_trust_env_the_proxy_variables_are_ignored(transport: str, monkeypatch) -> None:
    with FakeOpenAI(chunks=3) as srv:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
        async with pool(srv.url, transport, trust_env=False) as p:
            assert (await p.complete(BODY, reserve_tokens=0)).text


def test_a_run_over_either_transport_gives_the_same_records(tree, tmp_path) -> None:
    answers = {}
    for transport in TRANSPORTS:
        with FakeOpenAI() as srv:
            out = tmp_path / f"{transport}.ndjson"
            args = run_args(
                srv, tree, "-o", out, "--db", tmp_path / f"{transport}.db", "--transport", transport
            )
            r = snipstream(*args, cwd=tmp_path)
            assert r.code == 0, r.stderr
        answers[transport] = sorted((x["record_id"], x["annotation"]) for x in read_ndjson(out))
    assert answers["aiohttp"] == answers["httpx"] and answers["httpx"]


def test_the_transport_is_recorded_with_the_run(tree, tmp_path) -> None:
    import sqlite3

    import orjson

    with FakeOpenAI() as srv:
        r = snipstream(
            *run_args(srv, tree, "-o", tmp_path / "o.ndjson", "--transport", "httpx"), cwd=tmp_path
        )
    assert r.code == 0, r.stderr
    with sqlite3.connect(tmp_path / "snipstream.db") as conn:
        (config,) = conn.execute("SELECT config FROM runs").fetchone()
    assert orjson.loads(config)["transport"] == "httpx"


# --- the short ways (stream.transports): asserted, so that a release renaming what they use fails here ---


async def test_over_aiohttp_the_body_is_read_straight_from_aiohttp_and_the_request_skips_client_stream(
    monkeypatch,
) -> None:
    import httpx

    from stream import transports

    taken: list[str] = []
    chunks = transports._aiohttp_chunks
    monkeypatch.setattr(
        transports, "_aiohttp_chunks", lambda content: taken.append("aiohttp") or chunks(content)
    )

    def no_stream(*args, **kwargs):
        raise AssertionError("client.stream() was used")

    monkeypatch.setattr(httpx.AsyncClient, "stream", no_stream)
    with FakeOpenAI(chunks=5) as srv:
        async with pool(srv.url, "aiohttp") as p:
            c = await p.complete(BODY, reserve_tokens=0)
            c2 = await p.complete(BODY, reserve_tokens=0)  # the connection was reused and still works
    assert c.text and c.text == c2.text and c.finish_reason == "stop"
    assert taken == ["aiohttp", "aiohttp"]


async def test_the_clients_of_an_https_pool_share_one_tls_context_and_load_no_other() -> None:
    import ssl

    p = pool("https://api.snipstream.invalid/v1", "aiohttp", clients=3)
    transports = [c._transport for c in p._clients]
    # httpx-aiohttp's own context serves only a connector it makes itself: not loaded (no CA bundle)
    assert all(t.ssl_context.verify_mode == ssl.CERT_NONE for t in transports)
    sessions = [t.client() for t in transports]  # the session factories (run on first request)
    try:
        contexts = {id(s.connector._ssl) for s in sessions}
        assert len(contexts) == 1
        assert sessions[0].connector._ssl.verify_mode == ssl.CERT_REQUIRED  # TLS stays verified
    finally:
        for s in sessions:
            await s.close()
        await p.aclose()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/v1/chat/completions", "https://api.example.com/v1/x"])
def test_a_request_from_the_header_template_is_the_one_the_client_would_build(url: str) -> None:
    import httpx

    from stream.transports import _request

    client = httpx.AsyncClient(headers={"content-type": "application/json", "authorization": "Bearer k"})
    for body in (b"{}", b'{"model": "m"}' * 40):  # the template is reused: Content-Length is each body's
        ours, theirs = (
            _request(client, url, httpx.URL(url), body),
            client.build_request("POST", url, content=body),
        )
        assert sorted(ours.headers.multi_items()) == sorted(theirs.headers.multi_items())
        assert (ours.method, ours.url, ours.content) == (theirs.method, theirs.url, theirs.content)
