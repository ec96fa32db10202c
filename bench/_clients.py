"""``python -m bench._clients KIND --url URL --bodies FILE``: the reference clients of the throughput
benchmark, each run in its own process. They send every body of FILE (one JSON request body per line,
exactly what snipstream sends, taken from its --dry-run) as a streamed chat completion and join the
answer's deltas; the last line of stdout is a JSON object with their figures.

* ``httpx``: the ceiling of snipstream's stack: `--clients` httpx.AsyncClients with
  concurrency/clients connections each, `--concurrency` workers pulling bodies from one iterator (worker i
  uses client i mod clients), SSE data lines parsed with orjson;
* ``openai``: the naive way: the official ``openai.AsyncOpenAI``, ``asyncio.Semaphore(concurrency)`` and
  one ``asyncio.gather`` over all requests, ``stream=True``;
* ``aiohttp``: one ``aiohttp.ClientSession`` with ``TCPConnector(limit=concurrency)``, workers as for
  httpx, SSE parsed likewise;
* ``httpx-aiohttp``: the ``httpx`` loop with each client over ``httpx_aiohttp.AiohttpTransport`` (one
  aiohttp session of concurrency/clients connections each): the ceiling of snipstream's default transport.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import orjson

T0 = time.perf_counter()


def _deltas(chunk: Any, parts: list[str]) -> None:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if delta:
            piece = delta.get("content")
            if piece:
                parts.append(piece)


class Tally:
    def __init__(self) -> None:
        self.ok = 0
        self.errors = 0
        self.chars = 0
        self.first_error = ""

    def good(self, text: str) -> None:
        if text:
            self.ok += 1
            self.chars += len(text)
        else:
            self.bad("empty answer")

    def bad(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what


async def _workers(
    n: int,
    bodies: list[dict[str, Any]],
    one: Callable[[int, dict[str, Any]], Coroutine[Any, Any, str]],
    tally: Tally,
) -> None:
    it: Iterator[dict[str, Any]] = iter(bodies)

    async def worker(i: int) -> None:
        for body in it:  # one shared iterator: next() never yields to the loop, so no body is sent twice
            try:
                tally.good(await one(i, body))
            except Exception as exc:
                tally.bad(f"{type(exc).__name__}: {exc}"[:200])

    await asyncio.gather(*(worker(i) for i in range(n)))


async def run_httpx(
    url: str,
    bodies: list[dict[str, Any]],
    concurrency: int,
    clients: int,
    tally: Tally,
    *,
    aiohttp: bool = False,
) -> None:
    import httpx

    per = max(1, math.ceil(concurrency / clients))
    # As snipstream's pool does: plain http loads no CA bundle (each client would load it, ~20 ms apiece).
    verify = not url.startswith("http://")
    pool = [
        httpx.AsyncClient(
            limits=httpx.Limits(max_connections=per, max_keepalive_connections=per),
            timeout=httpx.Timeout(60.0),
            trust_env=False,
            verify=verify,
            transport=_aiohttp_transport(per) if aiohttp else None,
        )
        for _ in range(clients)
    ]
    endpoint = url.rstrip("/") + "/chat/completions"
    headers = {"content-type": "application/json", "accept": "text/event-stream"}

    async def one(i: int, body: dict[str, Any]) -> str:
        parts: list[str] = []
        async with pool[i % clients].stream(
            "POST", endpoint, content=orjson.dumps(body), headers=headers
        ) as r:
            if r.status_code != 200:
                await r.aread()
                raise RuntimeError(f"HTTP {r.status_code}")
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    data = line[5:].strip()
                    if data != "[DONE]":
                        _deltas(orjson.loads(data), parts)
        return "".join(parts)

    try:
        await _workers(concurrency, bodies, one, tally)
    finally:
        for c in pool:
            await c.aclose()


def _aiohttp_transport(connections: int) -> Any:
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    # verify=False: the transport's own SSL context only serves a connector it makes itself; with a session
    # factory it is never used, and making it loads the CA bundle (~20 ms a client). The connector below
    # keeps aiohttp's default verified TLS, as snipstream's (stream/transports.py).
    return AiohttpTransport(
        verify=False,
        client=lambda: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections), trust_env=False
        ),
    )


async def run_httpx_aiohttp(
    url: str, bodies: list[dict[str, Any]], concurrency: int, clients: int, tally: Tally
) -> None:
    await run_httpx(url, bodies, concurrency, clients, tally, aiohttp=True)


async def run_aiohttp(
    url: str, bodies: list[dict[str, Any]], concurrency: int, clients: int, tally: Tally
) -> None:
    import aiohttp

    endpoint = url.rstrip("/") + "/chat/completions"
    headers = {"content-type": "application/json", "accept": "text/event-stream"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(i: int, body: dict[str, Any]) -> str:
            parts: list[str] = []
            async with session.post(endpoint, data=orjson.dumps(body), headers=headers) as r:
                if r.status != 200:
                    await r.read()
                    raise RuntimeError(f"HTTP {r.status}")
                async for line in r.content:  # split at b"\n"
                    if line.startswith(b"data:"):
                        data = line[5:].strip()
                        if data != b"[DONE]":
                            _deltas(orjson.loads(data), parts)
            return "".join(parts)

        await _workers(concurrency, bodies, one, tally)


async def run_openai(
    url: str, bodies: list[dict[str, Any]], concurrency: int, clients: int, tally: Tally
) -> None:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="x")
    sem = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any]) -> str:
        async with sem:
            stream = await client.chat.completions.create(**body)
            parts: list[str] = []
            async for chunk in stream:
                if chunk.choices:
                    piece = chunk.choices[0].delta.content
                    if piece:
                        parts.append(piece)
            return "".join(parts)

    try:
        results = await asyncio.gather(*(one(b) for b in bodies), return_exceptions=True)
    finally:
        await client.close()
    for r in results:
        if isinstance(r, BaseException):
            tally.bad(f"{type(r).__name__}: {r}"[:200])
        else:
            tally.good(r)


KINDS = {"httpx": run_httpx, "openai": run_openai, "aiohttp": run_aiohttp, "httpx-aiohttp": run_httpx_aiohttp}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._clients")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)
    with open(args.bodies, "rb") as f:
        bodies = [orjson.loads(line) for line in f if line.strip()]
    tally = Tally()
    started = time.perf_counter()
    asyncio.run(KINDS[args.kind](args.url, bodies, args.concurrency, args.clients, tally))
    phase = time.perf_counter() - started
    print(
        orjson.dumps(
            {
                "kind": args.kind,
                "ok": tally.ok,
                "errors": tally.errors,
                "chars": tally.chars,
                "phase_s": phase,
                "setup_s": started - T0,
                "first_error": tally.first_error,
            }
        ).decode()
    )
    return 0 if tally.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
