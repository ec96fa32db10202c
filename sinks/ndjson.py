"""Annotated NDJSON, one line per record, to a file or stdout.

A file is append-only across runs. On open, bytes beyond the offset the checkpoint knows as whole (a line
torn by a crash, or lines written but not yet confirmed) are cut off; the records they held are still
unemitted in the checkpoint and are written again, so each appears exactly once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson

from stream.errors import SinkError

__all__ = ["NDJSONSink", "detach_stdout"]


class NDJSONSink:
    """Writes lines in batches (one ``write`` system call a batch, off the event loop)."""

    name = "ndjson"

    def __init__(self, target: str = "-", *, resume_offset: int | None = None) -> None:
        self.target = target
        self.resume_offset = resume_offset
        self.offset: int | None = None  # bytes known written, for a file
        self.notes: list[str] = []
        self._fd: int | None = None
        self._owned = False
        self._buffer: list[bytes] = []

    @property
    def is_file(self) -> bool:
        return self.target != "-"

    @property
    def key(self) -> str | None:
        """How the checkpoint names this output (its absolute path), None for stdout."""
        return str(Path(self.target).resolve()) if self.is_file else None

    async def __aenter__(self) -> NDJSONSink:
        if not self.is_file:
            self._fd = sys.stdout.fileno()
            return self
        try:
            # read as well: a file this checkpoint never wrote is checked for a final newline (pread)
            fd = os.open(self.target, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise SinkError(f"cannot open output {self.target}: {exc.strerror}") from None
        self._fd, self._owned = fd, True
        size = os.fstat(fd).st_size
        known = self.resume_offset
        if known is not None and size > known:
            os.ftruncate(fd, known)
            self.notes.append(
                f"cut {size - known} bytes of unconfirmed output from the end of {self.target}; "
                "those records are written again"
            )
            size = known
        elif known is not None and size < known:
            self.notes.append(
                f"{self.target} is shorter than this checkpoint last wrote ({size} < {known} "
                "bytes); appending after what is there (use --emit-all to write everything again)"
            )
        elif known is None and size > 0 and not self._ends_with_newline(fd, size):
            # A file this checkpoint never wrote, ending in a partial line: start ours on a line of its own.
            os.write(fd, b"\n")
            size += 1
        self.offset = size
        return self

    @staticmethod
    def _ends_with_newline(fd: int, size: int) -> bool:
        return os.pread(fd, 1, size - 1) == b"\n"

    async def __aexit__(self, *exc: object) -> None:
        if self._owned and self._fd is not None:
            os.close(self._fd)
        self._fd = None

    def add_line(self, line: bytes) -> None:
        self._buffer.append(line)

    async def write(self, record: dict[str, Any]) -> None:
        """The Sink protocol: queue one record (written by the next `flush`)."""
        self.add_line(orjson.dumps(record) + b"\n")

    async def flush(self) -> None:
        """Write what is queued. Raises BrokenPipeError when stdout's reader went away."""
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        try:
            await anyio.to_thread.run_sync(self._write_all, data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise SinkError(
                f"cannot write {self.target if self.is_file else 'stdout'}: {exc.strerror}"
            ) from None
        if self.offset is not None:
            self.offset += len(data)

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]


def detach_stdout() -> None:
    """After a broken pipe: point fd 1 at /dev/null so the interpreter's final flush of stdout cannot raise
    again (and print a second traceback)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:
        pass
