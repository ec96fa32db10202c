"""HTTP/1.1 on asyncio streams: a small strict request parser (keep-alive, pipelining, chunked or
Content-Length bodies, ``Expect: 100-continue``) and the response writers (a whole body, an SSE stream in a
chunked body, a TCP reset)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson

HEAD_LIMIT = 64 * 1024  # request line + headers
MAX_BODY = 64 * 1024 * 1024
TERMINATOR = b"0\r\n\r\n"
NO_BODY_STATUSES = frozenset({204, 304})

#: A parsed request: method (None for stray CRLFs between requests), target, headers, keep-alive, body.
Request = tuple[Any, str, dict[str, str], bool, bytes]


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---- reading --------------------------------------------------------------------------------------------


async def read_request(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request:
    """The request whose head (request line and headers, up to the blank line) is `head`, body read."""
    parsed = parse_head(head)
    if parsed is None:
        return None, "", {}, True, b""
    method, target, version, headers = parsed
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.1":
        keep = "close" not in connection
    else:
        keep = "keep-alive" in connection
    body, reusable = await read_body(headers, reader, writer)
    return method, target, headers, keep and reusable, body


def parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]] | None:
    """(method, target, version, headers) of a request head; None when it is only CRLFs. Header names are
    lower-cased and repeated headers joined with ``", "``; an absolute-form target becomes its path."""
    text = head.decode("latin-1").lstrip("\r\n")
    if not text.strip():
        return None
    request_line, _, rest = text[:-4].partition("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[0].isalpha():
        raise BadRequest(400, "Malformed request line.")
    method, target, version = parts
    headers: dict[str, str] = {}
    if rest:
        for line in rest.split("\r\n"):
            name, sep, value = line.partition(":")
            if not sep or not name or name[-1] in " \t" or name[0] in " \t":
                raise BadRequest(400, "Malformed header line.")
            name = name.lower()
            value = value.strip(" \t")
            if name in headers:
                headers[name] += ", " + value
            else:
                headers[name] = value
    if target.startswith(("http://", "https://")):  # absolute-form
        target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
    return method, target, version, headers


async def read_body(
    headers: dict[str, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[bytes, bool]:
    """The body, and whether the connection may serve another request after it (not when a chunked body
    also has a Content-Length)."""
    te = headers.get("transfer-encoding")
    if te is not None:
        if te.strip().lower() != "chunked":
            raise BadRequest(501, "Unsupported transfer-encoding.")
        maybe_continue(headers, writer)
        return await read_chunked(reader), "content-length" not in headers
    cl = headers.get("content-length")
    if cl is None:
        return b"", True
    values = {v.strip() for v in cl.split(",")}
    if len(values) != 1 or not (n := values.pop()).isdigit():
        raise BadRequest(400, "Invalid content-length.")
    size = int(n)
    if size > MAX_BODY:
        raise BadRequest(413, "Request body too large.")
    if not size:
        return b"", True
    maybe_continue(headers, writer)
    return await reader.readexactly(size), True


def maybe_continue(headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadRequest(400, "Malformed chunk size.") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY:
            raise BadRequest(413, "Request body too large.")
        data = await reader.readexactly(size + 2)
        if data[-2:] != b"\r\n":
            raise BadRequest(400, "Malformed chunk.")
        parts.append(data[:-2])


# ---- writing --------------------------------------------------------------------------------------------


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked transfer-encoded body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def response_head(status: int, headers: dict[str, str], keep: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason(status)}"]
    lines.extend(f"{k}: {v}" for k, v in headers.items() if k != "connection")
    if not keep:
        lines.append("connection: close")
    elif "connection" in headers:
        lines.append(f"connection: {headers['connection']}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


async def write_json(
    writer: asyncio.StreamWriter,
    status: int,
    payload: bytes | dict[str, Any],
    keep: bool,
    headers: dict[str, str] | None = None,
) -> bool:
    """A whole response: `payload` (a dict is JSON-encoded) as ``application/json`` unless `headers` say
    otherwise; no body for 1xx, 204 and 304. Returns `keep`."""
    if not isinstance(payload, bytes):
        payload = orjson.dumps(payload)
    all_headers = {"content-type": "application/json"}
    if headers:
        all_headers |= headers
    all_headers.pop("transfer-encoding", None)
    if status in NO_BODY_STATUSES or 100 <= status < 200:
        payload = b""
        all_headers.pop("content-length", None)
    else:
        all_headers["content-length"] = str(len(payload))
    writer.write(response_head(status, all_headers, keep) + payload)
    await writer.drain()
    return keep


def _nothing() -> None:
    pass


async def write_stream(
    writer: asyncio.StreamWriter,
    events: list[bytes],
    headers: dict[str, str],
    keep: bool,
    *,
    nl: bytes,
    delay: float = 0.0,
    slow: float = 0.0,
    stall: float = 0.0,
    ending: str = "",
    settle: Callable[[], None] = _nothing,
) -> bool:
    """Send SSE `events` as a chunked 200, `delay` seconds apart (and before the end of the body). `slow`
    is more delay: before the headers, and added to `delay` before every event, the first one too. `stall`
    pauses after the first event. `ending`: ``""`` = ``data: [DONE]`` + terminator; ``"clean"`` =
    terminator without [DONE]; ``"fin"`` = close, no terminator (the body never ends); ``"rst"`` = abort
    the connection with a TCP reset. `settle` is called just before the last bytes are written."""
    base = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
    head = response_head(200, base | headers | {"transfer-encoding": "chunked"}, keep)
    done = b"" if ending else chunk(b"data: [DONE]" + nl + nl)
    delay += slow
    if delay <= 0 and not stall and ending in ("", "clean"):
        settle()
        writer.write(head + b"".join([chunk(e) for e in events]) + done + TERMINATOR)
        await writer.drain()
        return keep
    if slow:
        await asyncio.sleep(slow)
    writer.write(head)
    await writer.drain()
    last = len(events) - 1
    for i, event in enumerate(events):
        if (i or slow) and delay > 0:
            await asyncio.sleep(delay)
        if i == last and ending in ("fin", "rst"):
            settle()
        writer.write(chunk(event))
        await writer.drain()
        if i == 0 and stall:
            await asyncio.sleep(stall)
    settle()
    if ending == "fin":
        writer.close()  # FIN after the buffered data: the chunked body never ends
        return False
    if ending == "rst":
        await reset(writer)
        return False
    if delay > 0:
        await asyncio.sleep(delay)
    writer.write(done + TERMINATOR)
    await writer.drain()
    return keep


async def reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP RST once what was written has left the process."""
    transport = writer.transport
    for _ in range(200):
        if transport.is_closing() or transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.005)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()
