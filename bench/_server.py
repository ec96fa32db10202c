"""``python -m bench._server``: the project's fake server (``python -m tests.fakeserver``, same options, URL
on stderr's first line) with what the benchmarks need on top, so it can run in its own process:

* ``GET /bench/stats``: requests arrived / finished, in flight now and at peak, first arrival and last
  finish (``time.monotonic()``: one clock for every process on Linux), the integral of in-flight over
  time (for the mean in-flight), the sum of request durations, and this process's CPU seconds and RSS;
* ``POST /bench/reset``: zero those counters (and forget the request log);
* ``--min-reply-chars N``: answers at least N characters long (the default reply is ~130 characters, and a
  reply is split into at most one piece per character, so ``--chunks 200`` needs this to send 200);
* the request log is dropped every 1,024 requests unless ``--keep-log`` (a 250k-request run would
  otherwise keep every body).

A request counts as in flight from when it has been read to when its last byte has been handed to the
kernel (the whole `FakeOpenAI._respond`). The bench endpoints are not counted.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from typing import Any

import orjson

from tests import fakeserver
from tests.fakeserver import FakeOpenAI, LoggedRequest, default_reply

_FILLER = " It reads its arguments, does what its name says and hands the result back to the caller."


class InstrumentedOpenAI(FakeOpenAI):
    keep_log = False
    min_reply_chars = 0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.min_reply_chars and kwargs.get("reply") is None:
            self.reply = self._long_reply
        self._bench_reset()

    def _long_reply(self, req: LoggedRequest) -> str:
        text = default_reply(req)
        while len(text) < self.min_reply_chars:
            text += _FILLER
        return text

    def _bench_reset(self) -> None:
        self.b_arrived = 0
        self.b_finished = 0
        self.b_inflight = 0
        self.b_peak = 0
        self.b_first: float | None = None
        self.b_last_done: float | None = None
        self.b_busy = 0.0  # integral of in-flight over time
        self.b_stamp: float | None = None
        self.b_durations = 0.0

    def _tick(self, now: float) -> None:
        if self.b_stamp is not None:
            self.b_busy += self.b_inflight * (now - self.b_stamp)
        self.b_stamp = now

    async def _respond(
        self, method: str, target: str, headers: dict[str, str], raw: bytes, writer: Any, keep: bool
    ) -> bool:
        if target.startswith("/bench/"):
            return await self._bench(method, target, writer, keep)
        started = time.monotonic()
        self._tick(started)
        self.b_arrived += 1
        self.b_inflight += 1
        if self.b_inflight > self.b_peak:
            self.b_peak = self.b_inflight
        if self.b_first is None:
            self.b_first = started
        try:
            return await super()._respond(method, target, headers, raw, writer, keep)
        finally:
            now = time.monotonic()
            self._tick(now)
            self.b_inflight -= 1
            self.b_finished += 1
            self.b_last_done = now
            self.b_durations += now - started
            if not self.keep_log and self.b_arrived % 1024 == 0:
                self.clear()

    def _bench_stats(self) -> dict[str, Any]:
        now = time.monotonic()
        self._tick(now)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "arrived": self.b_arrived,
            "finished": self.b_finished,
            "inflight": self.b_inflight,
            "peak": self.b_peak,
            "first": self.b_first,
            "last_done": self.b_last_done,
            "busy": self.b_busy,
            "durations": self.b_durations,
            "now": now,
            "cpu": ru.ru_utime + ru.ru_stime,
            "maxrss_kb": ru.ru_maxrss,
        }

    async def _bench(self, method: str, target: str, writer: Any, keep: bool) -> bool:
        path = target.partition("?")[0]
        if path == "/bench/reset" and method == "POST":
            self._bench_reset()
            self.clear()
            payload = orjson.dumps(self._bench_stats())
            status = b"200 OK"
        elif path == "/bench/stats" and method == "GET":
            payload = orjson.dumps(self._bench_stats())
            status = b"200 OK"
        else:
            payload, status = b'{"error":"unknown bench endpoint"}', b"404 Not Found"
        writer.write(
            b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
            % (status, len(payload), b"" if keep else b"connection: close\r\n", payload)
        )
        await writer.drain()
        return keep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--keep-log", action="store_true")
    parser.add_argument("--min-reply-chars", type=int, default=0)
    ours, rest = parser.parse_known_args(argv)
    if not callable(getattr(FakeOpenAI, "_respond", None)):
        print("bench._server: tests.fakeserver.FakeOpenAI has no _respond() to instrument", file=sys.stderr)
        return 2
    InstrumentedOpenAI.keep_log = ours.keep_log
    InstrumentedOpenAI.min_reply_chars = ours.min_reply_chars
    fakeserver.FakeOpenAI = InstrumentedOpenAI  # type: ignore[misc]  # main() builds the server by this name
    return fakeserver.main(rest)


if __name__ == "__main__":
    sys.exit(main())
