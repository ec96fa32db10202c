"""Faults: the scripted answers (`Scripted`), the random faults (`ALL_FAULTS`, drawn by `draw`) and how a
faulty answer is delivered (`Delivery`: cut, malformed, stalled, slow, reset)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.fakeserver import http
from tests.fakeserver.ratelimits import format_duration
from tests.fakeserver.replies import default_error

#: The fault classes `FakeOpenAI(fault_rate=...)` draws from (uniformly). A 400 is deliberately absent: it
#: is a permanent failure, not a transient one (script it with ``Scripted(status=400)``).
ALL_FAULTS: tuple[str, ...] = (
    "429",
    "500",
    "502",
    "503",
    "error_200",
    "reset",
    "cut",
    "malformed",
    "stall",
    "slow",
)

FAULT_RETRY_MS = 5  # the retry-after-ms of an injected "429" fault
SLOW_DELAY = 0.02  # the extra delay per chunk of an injected "slow" fault


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
    * `finish_reason`: report this finish reason (e.g. ``"length"``, ``"content_filter"``) instead of the
      computed one; ``"content_filter"`` also cuts the content to its first half (possibly empty).

    A scripted answer is never hit by a random fault. Under a rate limit it is charged like any admitted
    request (a scripted 429 costs nothing).
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | dict[str, Any] | None = None
    cut_after_chunks: int | None = None
    malformed_chunk: bool = False
    stall: float = 0.0
    finish_reason: str | None = None

    @property
    def canned(self) -> bool:
        """Whether the answer is exactly this status, headers and body (not a generated one)."""
        return self.status != 200 or self.body is not None

    def payload(self) -> bytes:
        body = self.body
        if body is None:
            return b"" if self.status < 300 else orjson.dumps(default_error(self.status))
        if isinstance(body, (bytes, bytearray, memoryview)):
            return bytes(body)
        return orjson.dumps(body)


def checked_faults(fault_rate: float, faults: Sequence[str]) -> tuple[str, ...]:
    """`faults` as a tuple; ValueError for a rate outside [0, 1] or an unknown fault."""
    if not 0.0 <= fault_rate <= 1.0:
        raise ValueError(f"fault_rate must be within [0, 1], not {fault_rate!r}")
    faults = tuple(faults)
    unknown = [f for f in faults if f not in ALL_FAULTS]
    if unknown or (fault_rate > 0 and not faults):
        raise ValueError(f"unknown fault(s) {unknown!r}; choose from {ALL_FAULTS!r}")
    return faults


def draw(rng: random.Random, fault_rate: float, faults: Sequence[str]) -> tuple[str | None, int]:
    """(the random fault that hits a request, or None; for ``"reset"``, after how many events: 1 or 2)."""
    if fault_rate > 0 and rng.random() < fault_rate:
        fault = rng.choice(faults)
        return fault, rng.randint(1, 2) if fault == "reset" else 0
    return None, 0


def fault_429_headers(rl: dict[str, str], mode: str) -> dict[str, str]:
    """The headers of an injected 429: a short retry time, and (unless `mode` is ``"none"``) the
    rate-limit headers `rl` saying the requests ran out until then."""
    headers = {"retry-after": "1", "retry-after-ms": str(FAULT_RETRY_MS)}
    if mode != "none":
        headers |= rl
        headers["x-ratelimit-remaining-requests"] = "0"
        headers["x-ratelimit-reset-requests"] = format_duration(FAULT_RETRY_MS / 1000)
    return headers


async def send_error_200(
    writer: Any, stream: bool, headers: dict[str, str], keep: bool, *, nl: bytes, delay: float
) -> bool:
    """A 200 whose body is an error object; for a stream, one ``data: {"error": ...}`` event, then the
    body ends (no [DONE])."""
    error = orjson.dumps(default_error(500))
    if not stream:
        return await http.write_json(writer, 200, error, keep, headers)
    return await http.write_stream(
        writer, [b"data: " + error + nl + nl], headers, keep, nl=nl, delay=delay, ending="clean"
    )


# ---- delivering a generated answer ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """How a generated answer goes out; the defaults are a sound answer.

    `malformed`: a ``data: {not json`` event mid-stream; a non-stream body ``{not json``. `cut`: only the
    first N events of a stream. `stall`: a pause after the first event (non-stream: after the headers).
    `slow`: every event (and [DONE]) 20 ms later; a non-stream answer 20 ms later. `ending`: see
    `http.write_stream` (a cut stream closes, ``"fin"``, unless told); non-stream ``"fin"``/``"rst"``:
    half the body, then the connection is closed or reset."""

    malformed: bool = False
    cut: int | None = None
    stall: float = 0.0
    slow: bool = False
    ending: str = ""


def stream_delivery(
    scripted: Scripted | None,
    fault: str | None,
    stall_seconds: float,
    reset_after: int,
    events: int,
    usage: bool,
) -> Delivery:
    """The delivery of a stream of `events` events (`usage`: the last one is the usage chunk)."""
    if scripted is not None:
        return Delivery(
            malformed=scripted.malformed_chunk, cut=scripted.cut_after_chunks, stall=scripted.stall
        )
    if fault == "reset":
        return Delivery(cut=reset_after, ending="rst")
    if fault == "cut":
        tail = 2 if usage else 1  # the finish_reason chunk (and the usage chunk)
        return Delivery(cut=events - tail, ending="clean")
    return Delivery(
        malformed=fault == "malformed", stall=stall_seconds if fault == "stall" else 0.0, slow=fault == "slow"
    )


def json_delivery(scripted: Scripted | None, fault: str | None, stall_seconds: float) -> Delivery:
    """The delivery of a non-stream answer (a ``"cut"`` fault has already halved its content)."""
    if scripted is not None:
        ending = "fin" if scripted.cut_after_chunks is not None else ""
        return Delivery(malformed=scripted.malformed_chunk, stall=scripted.stall, ending=ending)
    if fault == "cut":
        return Delivery()
    return Delivery(
        malformed=fault == "malformed",
        stall=stall_seconds if fault == "stall" else 0.0,
        slow=fault == "slow",
        ending="rst" if fault == "reset" else "",
    )


async def send_stream(
    writer: asyncio.StreamWriter,
    events: list[bytes],
    headers: dict[str, str],
    keep: bool,
    how: Delivery,
    *,
    nl: bytes,
    delay: float,
    settle: Callable[[], None],
) -> bool:
    """Send a streamed answer's `events` as `how` says (events `delay` seconds apart)."""
    if how.malformed:
        events.insert(max(1, len(events) // 2), b"data: {not json" + nl + nl)
    ending = how.ending
    if how.cut is not None:
        events = events[: max(how.cut, 0)]
        if not ending:
            ending = "fin"
    return await http.write_stream(
        writer,
        events,
        headers,
        keep,
        nl=nl,
        delay=delay,
        slow=SLOW_DELAY if how.slow else 0.0,
        stall=how.stall,
        ending=ending,
        settle=settle,
    )


async def send_json(
    writer: asyncio.StreamWriter,
    payload: bytes,
    headers: dict[str, str],
    keep: bool,
    how: Delivery,
    *,
    settle: Callable[[], None],
) -> bool:
    """Send a non-stream 200 answer as `how` says."""
    if how.malformed:
        payload = b"{not json"
    if how.slow:
        await asyncio.sleep(SLOW_DELAY)
    if not how.ending and not how.stall:
        settle()
        return await http.write_json(writer, 200, payload, keep, headers)
    all_headers = {"content-type": "application/json"} | headers | {"content-length": str(len(payload))}
    writer.write(http.response_head(200, all_headers, keep))
    await writer.drain()
    if how.stall:
        await asyncio.sleep(how.stall)
    settle()
    if how.ending:
        writer.write(payload[: len(payload) // 2])
        await writer.drain()
        if how.ending == "rst":
            await http.reset(writer)
        else:
            writer.close()
        return False
    writer.write(payload)
    await writer.drain()
    return keep
