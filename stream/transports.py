"""What carries the client pool's requests under httpx's API: httpx's own transport, or aiohttp's.

httpx stays the client (the request, response and error API everything else is written against); only the
HTTP/1.1 engine underneath changes. With ``--transport aiohttp`` each client of the pool gets an
`httpx_aiohttp.AiohttpTransport` over its own `aiohttp.ClientSession`, made on the first request inside the
running event loop. It is the transport the OpenAI SDK itself offers: "For improved concurrency performance, you
may also use `aiohttp` as the HTTPX transport" (openai-python's README, "With aiohttp": ``DefaultAioHttpClient``,
a vendored httpx-aiohttp). What the two must agree on is set here, the same for both:

- connections: the pool's per-client limit (``TCPConnector(limit=...)`` / ``httpx.Limits``);
- TLS: verified with httpx's context (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` from the environment),
  made once and shared by the pool's clients; plain http loads no CA bundle;
- proxies: ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` from the environment when `trust_env` (aiohttp's
  ``trust_env``; httpx also reads ``ALL_PROXY``, aiohttp does not);
- timeouts: passed per request by httpx's ``Timeout`` (connect, read = the stall timeout); the transport maps
  them to aiohttp's ``sock_connect``/``sock_read``. aiohttp has no write timeout.

Errors: httpx-aiohttp re-raises aiohttp's exceptions as httpx's, ``from`` the original; `stream.translate`
reads that original where the mapping is too coarse (a refused connection arrives as ``ConnectTimeout``).

The short ways, for CPU per request and per event (issue 11): `post` hands a request built as the client
would build it straight to the client's transport (``client.stream()`` cost more than the transport
itself), and `body_chunks` reads an httpx-aiohttp body straight from aiohttp (four async iterators less per
chunk). Both touch private names of httpx / httpx-aiohttp, fall back to the public way when those are gone,
and are pinned by tests/test_transport.py.
"""

from __future__ import annotations

import os
import ssl
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["aiohttp_transport", "body_chunks", "post"]

_SSL_CONTEXTS: dict[tuple[bool, str | None, str | None], ssl.SSLContext] = {}
_URLS: dict[str, httpx.URL] = {}  # the pool's completion URLs, parsed once
# each client's request headers per URL, before Content-Length (see `_request`)
_TEMPLATES: weakref.WeakKeyDictionary[httpx.AsyncClient, dict[str, httpx.Headers]] = (
    weakref.WeakKeyDictionary()
)


def aiohttp_transport(*, connections: int, verify: bool, trust_env: bool) -> httpx.AsyncBaseTransport:
    """One client's transport over aiohttp, with at most `connections` connections."""
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    ssl_context: ssl.SSLContext | bool = _ssl_context(trust_env) if verify else False

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections, ssl=ssl_context)
        return aiohttp.ClientSession(connector=connector, trust_env=trust_env)

    # verify=False: AiohttpTransport's own SSL context only serves the connector it would make itself; ours
    # (`session`) has its own. Left at its default it loads the CA bundle once per client (~20-40 ms of
    # blocked event loop each: seconds for the 125 clients of --concurrency 1000).
    return AiohttpTransport(verify=False, client=session)


def _ssl_context(trust_env: bool) -> ssl.SSLContext:
    """httpx's verified TLS context (certifi, or SSL_CERT_FILE/SSL_CERT_DIR with `trust_env`), made once and
    shared by every client of a pool (an SSLContext may serve many connections): loading the CA bundle
    takes ~20 ms, once per client before."""
    env = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")) if trust_env else (None, None)
    key = (trust_env, *env)
    context = _SSL_CONTEXTS.get(key)
    if context is None:
        context = _SSL_CONTEXTS[key] = httpx.create_ssl_context(trust_env=trust_env)
    return context


async def post(client: httpx.AsyncClient, url: str, content: bytes) -> httpx.Response:
    """POST `content` to `url` as `client` would, straight to its transport; the body is left to read
    (`body_chunks`, ``aread``) and the caller closes the response (``aclose``).

    ``client.stream()`` spends more per request than the transport itself does (its URL merge, the
    auth and redirect flows, a urllib request built for the cookie jar even when no cookie was ever set,
    the response's wrappers): here the request is built with the client's own headers, cookies and
    timeouts and handed to the transport the client would pick (``_transport_for_url``: a proxy from the
    environment, or the pool's transport). What the client does that this leaves out: no redirects (the
    pool's clients do not follow them anyway), no auth flow (the key is a header), no event hooks, no
    ``response.elapsed``. Cookies a server sets are kept and sent back, as by the client. Should a
    release of httpx rename the private method, the client's own ``send`` is used."""
    target = _URLS.get(url)
    if target is None:
        target = _URLS[url] = httpx.URL(url)
    cookies = client.cookies
    if cookies:
        request = httpx.Request(
            "POST",
            target,
            headers=client.headers,
            content=content,
            cookies=cookies,
            extensions={"timeout": client.timeout.as_dict()},
        )
    else:
        request = _request(client, url, target, content)
    pick = getattr(client, "_transport_for_url", None)
    if pick is None:
        return await client.send(request, stream=True)
    response = await pick(target).handle_async_request(request)
    response.request = request
    if "set-cookie" in response.headers:
        cookies.extract_cookies(response)
    return response


def _request(client: httpx.AsyncClient, url: str, target: httpx.URL, content: bytes) -> httpx.Request:
    """The request ``httpx.Request(..., content=...)`` makes (the client's headers, then Host and
    Content-Length), from headers prepared once per client and URL: a third of the time (~10 µs, not 33),
    most of which went to finding the headers it adds among those it was given, one by one."""
    templates = _TEMPLATES.setdefault(client, {})
    template = templates.get(url)
    if template is None:
        template = templates[url] = httpx.Headers(client.headers)
        template["Host"] = target.netloc.decode("ascii")
    headers = httpx.Headers(template)
    headers["Content-Length"] = str(len(content))
    extensions = {"timeout": client.timeout.as_dict()}
    request = httpx.Request(
        "POST", target, headers=headers, stream=httpx.ByteStream(content), extensions=extensions
    )
    request.read()  # a body in memory, as content= leaves it (the transport sends request.content)
    return request


def body_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body of a streamed `response` as its bytes arrive, by the shortest way to them.

    Over httpx-aiohttp a chunk otherwise passes through four async iterators (aiohttp's ``iter_chunked``,
    httpx-aiohttp's stream, httpx's client-bound stream, ``aiter_raw``/``aiter_bytes``) before it is
    parsed; for an event stream that is one chunk per SSE event, most of a slow stream's client CPU. Here
    the aiohttp response's content is read directly (``readany``: whatever has arrived, at once), with
    httpx-aiohttp's own mapping of aiohttp's errors to httpx's, so `stream.translate` sees the same errors,
    stall timeouts (aiohttp's ``sock_read``) included. Only for a body without content coding (httpx
    decodes gzip and the like; aiohttp is told not to): otherwise, and over any other transport, httpx's
    ``aiter_bytes``.
    """
    coding = response.headers.get("content-encoding", "identity").strip().lower()
    content = _aiohttp_content(response) if coding in ("identity", "") else None
    return response.aiter_bytes() if content is None else _aiohttp_chunks(content)


def _aiohttp_content(response: httpx.Response) -> Any:
    """The ``aiohttp.StreamReader`` of an httpx-aiohttp response, or None for any other transport's.

    httpx wraps the transport's stream in its ``BoundAsyncStream`` (``_stream``); httpx-aiohttp's stream
    holds the aiohttp response (``_aiohttp_response``). Both names are private: when a release renames
    them this gives None and the body is read through httpx's iterators, as before
    (tests/test_transport.py checks that the direct way is the one taken)."""
    stream = getattr(response.stream, "_stream", response.stream)
    raw = getattr(stream, "_aiohttp_response", None)
    return getattr(raw, "content", None)


async def _aiohttp_chunks(content: Any) -> AsyncIterator[bytes]:
    from httpx_aiohttp.transport import map_aiohttp_exceptions

    with map_aiohttp_exceptions():
        while chunk := await content.readany():
            yield chunk
