"""A real loopback HTTP/1.1 server that speaks the OpenAI wire format, for tests and benchmarks.

`FakeOpenAI` runs its own asyncio event loop in a daemon thread, so one instance serves sync tests, async
tests (on any loop) and subprocesses alike::

    with FakeOpenAI(chunks=8) as server:
        httpx.post(f"{server.url}/chat/completions", json={"model": "m", "messages": [...]})
        assert server.completions_for("chat/completions") == 1

Endpoints (under ``/v1``): ``POST /chat/completions``, ``POST /completions`` (legacy), ``GET /models``;
anything else is a 404 with an OpenAI-style error body. Streaming answers are Server-Sent Events in a
chunked body, shaped like OpenAI's (role in the first delta, a final chunk with ``finish_reason``, an
optional ``choices: []`` usage chunk, then ``data: [DONE]``).

Order of checks for every request: it is logged first (`FakeOpenAI.requests`), then ``latency`` is slept,
then the API key (401), the route (404), the JSON body (400), the model (404 ``model_not_found``); only
then is a scripted answer consumed (completion endpoints only), else the normal answer is produced.

HTTP parsing is a small strict HTTP/1.1 parser on asyncio streams (keep-alive, pipelining, chunked or
Content-Length request bodies, ``Expect: 100-continue``); JSON goes through orjson and stream chunks are
built from byte templates, so the per-request cost stays low. Stdlib + orjson only.

Run by hand: ``python -m tests.fakeserver --port 8000 [--latency S] [--chunks N] ...`` prints its URL on
stderr and serves until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson

__all__ = ["LoggedRequest", "Scripted", "FakeOpenAI", "default_reply", "main"]

_HEAD_LIMIT = 64 * 1024  # request line + headers
_MAX_BODY = 64 * 1024 * 1024
_DEFAULT_MODEL = "fake-model"
_FILLER = (
    "this snippet takes its inputs, does the work its name describes and returns the result to its caller."
)


# --------------------------------------------------------------------------------------------------------
# public values


@dataclass(slots=True)
class LoggedRequest:
    """One request as the server received it (logged before it is answered).

    `path` has no query string; `headers` names are lower-case (repeated headers joined with ``", "``);
    `body` is the parsed JSON body when it was a JSON object, else None; `time` is ``time.monotonic()``
    when the request had been read completely.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    time: float

    @property
    def prompt_text(self) -> str:
        """The user text: for chat, every message's text content joined with ``"\\n"`` (list-of-parts
        content contributes its ``text`` parts); for legacy completions, ``prompt`` (a list of strings
        joined with ``"\\n"``); ``""`` when there is none."""
        return _prompt_text(self.body)


@dataclass(slots=True)
class Scripted:
    """One canned answer; scripted answers are consumed FIFO by completion requests before normal answers.

    * ``status != 200`` or ``body is not None``: the answer is exactly ``status`` + ``headers`` + ``body``
      (a dict is JSON-encoded; ``None`` with an error status becomes a default OpenAI error body for that
      status). ``content-type`` defaults to ``application/json``; headers given here override defaults.
    * ``status == 200`` and ``body is None``: the normal generated answer, with ``headers`` added and the
      fault modes below applied.

    Fault modes (generated answers only):

    * `cut_after_chunks`: stream: send N SSE ``data:`` events, then close the connection mid-body (no
      ``[DONE]``, no chunked terminator). Non-stream: send the headers and half of the body, then close.
    * `malformed_chunk`: stream: one ``data: {not json`` event mid-stream (the stream otherwise completes).
      Non-stream: the body is ``{not json``.
    * `stall`: stream: after the first event, send nothing for this many seconds. Non-stream: the same
      pause between the response headers and the body.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | dict[str, Any] | None = None
    cut_after_chunks: int | None = None
    malformed_chunk: bool = False
    stall: float = 0.0


def default_reply(req: LoggedRequest | str) -> str:
    """The default answer text: ``"Annotation " + sha256(prompt_text)[:12] + ": " + filler words``.

    Accepts a `LoggedRequest` or the prompt text itself, so tests can compute the expected answer for a
    prompt. The filler is fixed, so the text is long enough to be split into ~100 chunks.
    """
    text = req if isinstance(req, str) else req.prompt_text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"Annotation {digest}: {_FILLER}"


# --------------------------------------------------------------------------------------------------------
# helpers


def _prompt_text(body: dict[str, Any] | None) -> str:
    if not isinstance(body, dict):
        return ""
    messages = body.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.append(
                    "".join(
                        p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
                    )
                )
        return "\n".join(parts)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    return ""


def _split(text: str, n: int) -> list[str]:
    """`text` in min(n, len(text)) non-empty pieces of near-equal length (n < 1 counts as 1)."""
    size = len(text)
    if size == 0:
        return []
    n = min(max(n, 1), size)
    q, r = divmod(size, n)
    pieces = []
    i = 0
    for k in range(n):
        j = i + q + (k < r)
        pieces.append(text[i:j])
        i = j
    return pieces


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to perform this request.", "invalid_request_error", "forbidden"),
    404: ("The requested resource does not exist.", "invalid_request_error", "not_found"),
    408: ("Request timed out.", "invalid_request_error", "timeout"),
    409: ("Conflict.", "invalid_request_error", "conflict"),
    413: ("Request too large.", "invalid_request_error", "request_too_large"),
    422: ("Unprocessable request.", "invalid_request_error", None),
    429: ("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


def _default_error(status: int) -> dict[str, Any]:
    message, type_, code = _DEFAULT_ERRORS.get(
        status, (_reason(status) + ".", "server_error" if status >= 500 else "invalid_request_error", None)
    )
    return _error_body(message, type_, code)


def _chunk(data: bytes) -> bytes:
    """One chunk of a chunked transfer-encoded body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


_TERMINATOR = b"0\r\n\r\n"
_ROUTES = {
    ("POST", "/v1/chat/completions"): "chat",
    ("POST", "/v1/completions"): "text",
    ("GET", "/v1/models"): "models",
}
_NO_BODY_STATUSES = frozenset({204, 304})


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------------------------------------
# the server


class FakeOpenAI:
    """A loopback OpenAI-compatible server running in a background thread with its own event loop.

    `reply(request) -> str` gives the answer text (default: `default_reply`); it runs on the server's loop
    thread, so keep it fast. The reply is split into `chunks` pieces (one piece = one token for
    ``max_tokens`` and usage). `latency` is slept before every response starts, `chunk_delay` between
    stream events. `include_usage=False` makes the server never report usage (no usage chunk, no ``usage``
    field). `api_key` requires ``Authorization: Bearer <api_key>``; `model` rejects other models with 404.
    `sse_extras` adds a ``: keep-alive`` comment, an ``event: message`` line, a leading ``choices: []``
    chunk and CRLF line endings to streams. `host`/`port` choose the address (port 0 = ephemeral);
    `verbose` prints one line per request to stderr.

    Settings are plain attributes and may be changed while the server runs (read per request).
    """

    def __init__(
        self,
        *,
        reply: Callable[[LoggedRequest], str] | None = None,
        chunks: int = 20,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        include_usage: bool = True,
        api_key: str | None = None,
        model: str | None = None,
        sse_extras: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.reply: Callable[[LoggedRequest], str] = reply or default_reply
        self.chunks = chunks
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.include_usage = include_usage
        self.api_key = api_key
        self.model = model
        self.sse_extras = sse_extras
        self.host = host
        self.verbose = verbose
        self._want_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._log: list[LoggedRequest] = []
        self._scripts: deque[Scripted] = deque()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # ---- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        """Bind and start serving; returns self once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI is already running")
        self._closing = False
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                try:
                    self._server = loop.run_until_complete(
                        asyncio.start_server(
                            self._handle, self.host, self._want_port, limit=_HEAD_LIMIT, backlog=4096
                        )
                    )
                    self._port = self._server.sockets[0].getsockname()[1]
                except BaseException as exc:  # reported to start()
                    failure.append(exc)
                    return
                ready.set()
                loop.run_forever()
            finally:
                try:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.run_until_complete(loop.shutdown_default_executor())
                finally:
                    asyncio.set_event_loop(None)
                    loop.close()
                    ready.set()

        thread = threading.Thread(target=run, name="FakeOpenAI", daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            self._loop = self._thread = self._server = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving: close the listener and every connection (in-flight answers are cut), then end
        the loop thread. Idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            if not loop.is_closed():
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=30)
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            self._thread = self._loop = self._server = None
            self._port = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        me = asyncio.current_task()
        cancelled: set[asyncio.Task[Any]] = set()
        for _ in range(1000):
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()
            for task in list(self._tasks):
                if task not in cancelled:
                    cancelled.add(task)
                    task.cancel()
            pending = [t for t in asyncio.all_tasks() if t is not me]
            if not pending and not self._writers:
                break
            if pending:
                await asyncio.wait(pending, timeout=0.02)
            else:
                await asyncio.sleep(0)
        if self._server is not None:
            await self._server.wait_closed()
        for _ in range(3):  # let the transports' scheduled connection_lost callbacks close the sockets
            await asyncio.sleep(0)

    # ---- public state -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (only while running)."""
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """The API base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[LoggedRequest]:
        """A snapshot copy of every request received so far, in arrival order."""
        with self._lock:
            return list(self._log)

    @property
    def scripted_pending(self) -> int:
        """How many scripted answers are still waiting to be consumed."""
        with self._lock:
            return len(self._scripts)

    def script(self, *answers: Scripted) -> None:
        """Queue canned answers; each completion request consumes the oldest one before normal answers."""
        with self._lock:
            self._scripts.extend(answers)

    def completions_for(self, path: str) -> int:
        """How many logged requests hit `path`: ``"/v1/chat/completions"``, ``"chat/completions"`` and
        ``"/chat/completions"`` are the same endpoint (``"completions"`` is only the legacy one)."""
        if not path.startswith("/v1/"):
            path = "/v1/" + path.lstrip("/")
        with self._lock:
            return sum(1 for r in self._log if r.path == path)

    def clear(self) -> None:
        """Forget the logged requests and any unconsumed scripted answers."""
        with self._lock:
            self._log.clear()
            self._scripts.clear()

    # ---- connection handling ------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (Exception, asyncio.CancelledError):
            # client went away, bad request framing, shutdown, ...: the connection just ends.
            # (Never propagate: asyncio's client_connected_cb callback would log it as unhandled.)
            pass
        finally:
            self._tasks.discard(task)
            transport = writer.transport
            if not transport.is_closing():
                transport.close()
            if transport.get_write_buffer_size() == 0:
                self._writers.discard(writer)
            # else: still flushing to a slow reader; stop() aborts it if it is still there.

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # EOF between requests (or mid-head: nothing sensible to answer)
            except asyncio.LimitOverrunError:
                await self._send_error(writer, 431, "Request header fields too large.", None, keep=False)
                return
            try:
                method, target, headers, keep, body = await self._read_request(head, reader, writer)
            except _BadRequest as exc:
                await self._send_error(writer, exc.status, exc.message, None, keep=False)
                return
            if method is None:
                continue  # stray CRLFs between requests
            keep = await self._respond(method, target, headers, body, writer, keep)
            if not keep:
                return

    async def _read_request(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Any, str, dict[str, str], bool, bytes]:
        text = head.decode("latin-1").lstrip("\r\n")
        if not text.strip():
            return None, "", {}, True, b""
        request_line, _, rest = text[:-4].partition("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[0].isalpha():
            raise _BadRequest(400, "Malformed request line.")
        method, target, version = parts
        headers: dict[str, str] = {}
        if rest:
            for line in rest.split("\r\n"):
                name, sep, value = line.partition(":")
                if not sep or not name or name[-1] in " \t" or name[0] in " \t":
                    raise _BadRequest(400, "Malformed header line.")
                name = name.lower()
                value = value.strip(" \t")
                if name in headers:
                    headers[name] += ", " + value
                else:
                    headers[name] = value
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            keep = "close" not in connection
        else:
            keep = "keep-alive" in connection

        te = headers.get("transfer-encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise _BadRequest(501, "Unsupported transfer-encoding.")
            if "content-length" in headers:
                keep = False
            self._maybe_continue(headers, writer)
            body = await self._read_chunked(reader)
        else:
            cl = headers.get("content-length")
            if cl is None:
                body = b""
            else:
                values = {v.strip() for v in cl.split(",")}
                if len(values) != 1 or not (n := values.pop()).isdigit():
                    raise _BadRequest(400, "Invalid content-length.")
                size = int(n)
                if size > _MAX_BODY:
                    raise _BadRequest(413, "Request body too large.")
                if size:
                    self._maybe_continue(headers, writer)
                    body = await reader.readexactly(size)
                else:
                    body = b""
        if target.startswith(("http://", "https://")):  # absolute-form
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        return method, target, headers, keep, body

    @staticmethod
    def _maybe_continue(headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line[:-2].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _BadRequest(400, "Malformed chunk size.") from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > _MAX_BODY:
                raise _BadRequest(413, "Request body too large.")
            data = await reader.readexactly(size + 2)
            if data[-2:] != b"\r\n":
                raise _BadRequest(400, "Malformed chunk.")
            parts.append(data[:-2])

    # ---- answering ----------------------------------------------------------------------------------

    async def _respond(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        raw: bytes,
        writer: asyncio.StreamWriter,
        keep: bool,
    ) -> bool:
        """Answer one request; returns whether the connection may serve another one."""
        path = target.partition("?")[0]
        data: Any = None
        bad_json = False
        if raw:
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                bad_json = True
        body = data if isinstance(data, dict) else None
        req = LoggedRequest(method, path, headers, body, time.monotonic())
        with self._lock:
            self._log.append(req)
        if self.verbose:
            print(f"fakeserver: {method} {target}", file=sys.stderr, flush=True)
        if self.latency > 0:
            await asyncio.sleep(self.latency)

        if self.api_key is not None and not self._authorized(headers):
            if "authorization" in headers:
                message = (
                    "Incorrect API key provided. You can find your API key at "
                    "https://platform.openai.com/account/api-keys."
                )
            else:
                message = (
                    "You didn't provide an API key. You need to provide your API key in an Authorization "
                    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                )
            return await self._send_error(writer, 401, message, "invalid_api_key", keep=keep)

        kind = _ROUTES.get((method, path))
        if kind is None:
            return await self._send_error(
                writer, 404, f"Invalid URL ({method} {path})", "unknown_url", keep=keep
            )
        if kind == "models":
            model_obj = {"id": self.model or _DEFAULT_MODEL, "object": "model", "created": 1700000000,
                         "owned_by": "fakeserver"}
            return await self._send_json(writer, 200, {"object": "list", "data": [model_obj]}, keep)

        # completion endpoints
        if bad_json or body is None:
            return await self._send_error(
                writer, 400,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The OpenAI API expects a JSON payload.)",
                None, keep=keep,
            )
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return await self._send_error(writer, 400, "You must provide a model parameter.", None,
                                          keep=keep, param="model")
        if kind == "chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return await self._send_error(writer, 400, "'messages' is a required property and must be "
                                              "a non-empty array.", None, keep=keep, param="messages")
        else:
            prompt = body.get("prompt", "")
            if not isinstance(prompt, (str, list)):
                return await self._send_error(writer, 400, "'prompt' must be a string or an array of "
                                              "strings.", None, keep=keep, param="prompt")
        if self.model is not None and model != self.model:
            return await self._send_error(
                writer, 404, f"The model `{model}` does not exist or you do not have access to it.",
                "model_not_found", keep=keep, param="model",
            )

        with self._lock:
            scripted = self._scripts.popleft() if self._scripts else None
        extra_headers: dict[str, str] = {}
        if scripted is not None:
            extra_headers = {k.lower(): v for k, v in scripted.headers.items()}
            if "close" in extra_headers.get("connection", "").lower():
                keep = False
            if scripted.status != 200 or scripted.body is not None:
                return await self._send_scripted(writer, scripted, extra_headers, keep)

        try:
            text = self.reply(req)
            if not isinstance(text, str):
                raise TypeError(f"reply() returned {type(text).__name__}, not str")
        except Exception as exc:
            return await self._send_error(writer, 500, f"fakeserver reply() failed: {exc!r}", None, keep=keep)

        pieces = _split(text, self.chunks)
        finish = "stop"
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and len(pieces) > max_tokens >= 0:
            pieces = pieces[:max_tokens]
            finish = "length"
        prompt_tokens = len(req.prompt_text.split())
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces),
                 "total_tokens": prompt_tokens + len(pieces)}
        n = next(self._ids)
        rid = f"chatcmpl-{n}" if kind == "chat" else f"cmpl-{n}"
        created = int(time.time())
        headers_out = {"x-request-id": f"req_{n}"}

        if body.get("stream") is True:
            options = body.get("stream_options")
            want_usage = (
                self.include_usage and isinstance(options, dict) and options.get("include_usage") is True
            )
            events = self._stream_events(
                kind, rid, created, model, pieces, finish, usage if want_usage else None
            )
            return await self._send_stream(writer, events, headers_out | extra_headers, scripted, keep)

        if kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(pieces), "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
            obj = "chat.completion"
        else:
            choice = {"text": "".join(pieces), "index": 0, "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        answer: dict[str, Any] = {"id": rid, "object": obj, "created": created, "model": model,
                                  "system_fingerprint": "fp_fake", "choices": [choice]}
        if self.include_usage:
            answer["usage"] = usage
        payload = orjson.dumps(answer)
        if scripted is None:
            return await self._send_json(writer, 200, payload, keep, headers_out)
        return await self._send_faulty_json(writer, payload, headers_out | extra_headers, scripted, keep)

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        assert self.api_key is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("latin-1"), self.api_key.encode("utf-8")
        )

    def _stream_events(
        self,
        kind: str,
        rid: str,
        created: int,
        model: str,
        pieces: list[str],
        finish: str,
        usage: dict[str, int] | None,
    ) -> list[bytes]:
        """The SSE events of one streamed answer, [DONE] excluded; each item holds exactly one data line."""
        extras = self.sse_extras
        nl = b"\r\n" if extras else b"\n"
        end = nl + nl
        obj = b"chat.completion.chunk" if kind == "chat" else b"text_completion"
        head = (
            b'data: {"id":"%s","object":"%s","created":%d,"model":%s,'
            b'"system_fingerprint":"fp_fake","choices":'
        ) % (
            rid.encode(), obj, created, orjson.dumps(model))
        tail = (b',"usage":null}' if usage is not None else b"}") + end
        events: list[bytes] = []
        if extras:
            events.append(b": keep-alive" + end + head + b"[]" + tail)
        if kind == "chat":
            first = b'[{"index":0,"delta":{"role":"assistant","content":'
            pre = b'[{"index":0,"delta":{"content":'
            post = b'},"logprobs":null,"finish_reason":null}]'
            if not pieces:
                events.append(head + first + b'""' + post + tail)
            for i, piece in enumerate(pieces):
                events.append(head + (pre if i else first) + orjson.dumps(piece) + post + tail)
            final = b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":"%s"}]' % finish.encode()
        else:
            pre = b'[{"text":'
            post = b',"index":0,"logprobs":null,"finish_reason":null}]'
            for piece in pieces:
                events.append(head + pre + orjson.dumps(piece) + post + tail)
            final = b'[{"text":"","index":0,"logprobs":null,"finish_reason":"%s"}]' % finish.encode()
        events.append(head + final + tail)
        if usage is not None:
            events.append(head + b'[],"usage":' + orjson.dumps(usage) + b"}" + end)
        if extras:
            first_content = 1
            events[first_content] = b"event: message" + nl + events[first_content]
            middle = len(events) // 2
            if middle > first_content:
                events[middle] = b": keep-alive" + end + events[middle]
        return events

    async def _send_stream(
        self,
        writer: asyncio.StreamWriter,
        events: list[bytes],
        headers: dict[str, str],
        scripted: Scripted | None,
        keep: bool,
    ) -> bool:
        nl = b"\r\n" if self.sse_extras else b"\n"
        done = b"data: [DONE]" + nl + nl
        cut = stall = None
        if scripted is not None:
            if scripted.malformed_chunk:
                events.insert(max(1, len(events) // 2), b"data: {not json" + nl + nl)
            cut = scripted.cut_after_chunks
            stall = scripted.stall or None
        base = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        head = self._head(200, base | headers | {"transfer-encoding": "chunked"}, keep)
        delay = self.chunk_delay
        if delay <= 0 and cut is None and stall is None:
            writer.write(head + b"".join([_chunk(e) for e in events]) + _chunk(done) + _TERMINATOR)
            await writer.drain()
            return keep
        writer.write(head)
        await writer.drain()
        if cut is not None:
            events = events[: max(cut, 0)]
        for i, event in enumerate(events):
            if i and delay > 0:
                await asyncio.sleep(delay)
            writer.write(_chunk(event))
            await writer.drain()
            if i == 0 and stall:
                await asyncio.sleep(stall)
        if cut is not None:
            writer.close()  # FIN after the buffered data: the chunked body never ends
            return False
        if delay > 0:
            await asyncio.sleep(delay)
        writer.write(_chunk(done) + _TERMINATOR)
        await writer.drain()
        return keep

    async def _send_faulty_json(
        self, writer: asyncio.StreamWriter, payload: bytes, headers: dict[str, str], scripted: Scripted,
        keep: bool,
    ) -> bool:
        if scripted.malformed_chunk:
            payload = b"{not json"
        if scripted.cut_after_chunks is None and not scripted.stall:
            return await self._send_json(writer, 200, payload, keep, headers)
        all_headers = {"content-type": "application/json"} | headers | {"content-length": str(len(payload))}
        writer.write(self._head(200, all_headers, keep))
        await writer.drain()
        if scripted.stall:
            await asyncio.sleep(scripted.stall)
        if scripted.cut_after_chunks is not None:
            writer.write(payload[: len(payload) // 2])
            await writer.drain()
            writer.close()
            return False
        writer.write(payload)
        await writer.drain()
        return keep

    async def _send_scripted(
        self, writer: asyncio.StreamWriter, scripted: Scripted, headers: dict[str, str], keep: bool
    ) -> bool:
        body = scripted.body
        if body is None:
            payload = b"" if scripted.status < 300 else orjson.dumps(_default_error(scripted.status))
        elif isinstance(body, (bytes, bytearray, memoryview)):
            payload = bytes(body)
        else:
            payload = orjson.dumps(body)
        return await self._send_json(writer, scripted.status, payload, keep, headers)

    async def _send_error(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        message: str,
        code: str | None,
        *,
        keep: bool,
        param: str | None = None,
    ) -> bool:
        type_ = "server_error" if status >= 500 else "invalid_request_error"
        return await self._send_json(writer, status, _error_body(message, type_, code, param), keep)

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: bytes | dict[str, Any],
        keep: bool,
        headers: dict[str, str] | None = None,
    ) -> bool:
        if not isinstance(payload, bytes):
            payload = orjson.dumps(payload)
        all_headers = {"content-type": "application/json"}
        if headers:
            all_headers |= headers
        all_headers.pop("transfer-encoding", None)
        if status in _NO_BODY_STATUSES or 100 <= status < 200:
            payload = b""
            all_headers.pop("content-length", None)
        else:
            all_headers["content-length"] = str(len(payload))
        writer.write(self._head(status, all_headers, keep) + payload)
        await writer.drain()
        return keep

    @staticmethod
    def _head(status: int, headers: dict[str, str], keep: bool) -> bytes:
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines.extend(f"{k}: {v}" for k, v in headers.items() if k != "connection")
        if not keep:
            lines.append("connection: close")
        elif "connection" in headers:
            lines.append(f"connection: {headers['connection']}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


# --------------------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.fakeserver``: serve until Ctrl-C/SIGTERM; the URL is the first line on stderr."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakeserver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 = any free port (default 8000)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each response starts")
    parser.add_argument("--chunks", type=int, default=20, help="pieces per answer (default 20)")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between stream events")
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    parser.add_argument("--model", default=None, help="accept only this model")
    parser.add_argument("--no-usage", action="store_true", help="never report token usage")
    parser.add_argument("--sse-extras", action="store_true", help="comments, event lines, CRLF in streams")
    parser.add_argument("-v", "--verbose", action="store_true", help="print one line per request")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    server = FakeOpenAI(
        chunks=args.chunks, latency=args.latency, chunk_delay=args.chunk_delay,
        include_usage=not args.no_usage,
        api_key=args.api_key, model=args.model, sse_extras=args.sse_extras, host=args.host, port=args.port,
        verbose=args.verbose,
    )
    server.start()
    try:
        print(server.url, file=sys.stderr, flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
