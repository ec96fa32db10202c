"""What carries the client pool's requests under httpx's API: httpx's own transport, or aiohttp's.

httpx stays the client (the request, response and error API everything else is written against); only the
HTTP/1.1 engine underneath changes. With ``--transport aiohttp`` each client of the pool gets an
`httpx_aiohttp.AiohttpTransport` over its own `aiohttp.ClientSession`, made on the first request inside the
running event loop. It is the transport the OpenAI SDK itself offers: "For improved concurrency performance, you
may also use `aiohttp` as the HTTPX transport" (openai-python's README, "With aiohttp": ``DefaultAioHttpClient``,
a vendored httpx-aiohttp). What the two must agree on is set here, the same for both:

- connections: the pool's per-client limit (``TCPConnector(limit=...)`` / ``httpx.Limits``);
- TLS: verified with httpx's context (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` from the environment);
  plain http loads no CA bundle;
- proxies: ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` from the environment when `trust_env` (aiohttp's
  ``trust_env``; httpx also reads ``ALL_PROXY``, aiohttp does not);
- timeouts: passed per request by httpx's ``Timeout`` (connect, read = the stall timeout); the transport maps
  them to aiohttp's ``sock_connect``/``sock_read``. aiohttp has no write timeout.

Errors: httpx-aiohttp re-raises aiohttp's exceptions as httpx's, ``from`` the original; `stream.translate`
reads that original where the mapping is too coarse (a refused connection arrives as ``ConnectTimeout``).
"""

from __future__ import annotations

import httpx

__all__ = ["aiohttp_transport"]


def aiohttp_transport(*, connections: int, verify: bool, trust_env: bool) -> httpx.AsyncBaseTransport:
    """One client's transport over aiohttp, with at most `connections` connections."""
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    ssl_context = httpx.create_ssl_context(trust_env=trust_env) if verify else False

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections, ssl=ssl_context)
        return aiohttp.ClientSession(connector=connector, trust_env=trust_env)

    return AiohttpTransport(client=session)
