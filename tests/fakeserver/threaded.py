"""`LoopbackServer`: an asyncio HTTP/1.1 server on its own event loop in a daemon thread, so one instance
serves sync tests, async tests (on any loop) and subprocesses alike. It reads requests (`http`) and leaves
answering them to its subclass (`FakeOpenAI`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Self

from tests.fakeserver import http


class LoopbackServer:
    """Connections and lifecycle; the answers are the subclass's (`_respond`, `_refuse`)."""

    _label = "LoopbackServer"  # the thread's name, and what errors call the server

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self._want_port = port
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # A subclass answers:
    #   _respond(method, target, headers, body, writer, keep) -> bool: one request; may the connection
    #     serve another one?
    #   _refuse(writer, status, message): a request that could not be read (the connection then ends).
    _respond: Callable[[str, str, dict[str, str], bytes, asyncio.StreamWriter, bool], Awaitable[bool]]
    _refuse: Callable[[asyncio.StreamWriter, int, str], Awaitable[None]]

    # ---- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and start serving; returns self once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError(f"{self._label} is already running")
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
                            self._handle, self.host, self._want_port, limit=http.HEAD_LIMIT, backlog=4096
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

        thread = threading.Thread(target=run, name=self._label, daemon=True)
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

    def __enter__(self) -> Self:
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

    @property
    def port(self) -> int:
        """The bound TCP port (only while running)."""
        if self._port is None:
            raise RuntimeError(f"{self._label} is not running; call start() first")
        return self._port

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
                await self._refuse(writer, 431, "Request header fields too large.")
                return
            try:
                method, target, headers, keep, body = await http.read_request(head, reader, writer)
            except http.BadRequest as exc:
                await self._refuse(writer, exc.status, exc.message)
                return
            if method is None:
                continue  # stray CRLFs between requests
            keep = await self._respond(method, target, headers, body, writer, keep)
            if not keep:
                return
