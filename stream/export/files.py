"""The export's output streams, written atomically: stdout, or files that appear whole or not at all.

A regular file (or a new one) is written under a temporary name beside it and renamed over it when
complete, so a failed export never leaves half a dataset that looks whole. Anything else (a device, a
FIFO, /dev/stdout) is written in place: renaming over it would replace the device itself.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO

from ..errors import SinkError

__all__ = ["Outputs"]


class Outputs:
    """``with Outputs(targets) as out: out.write(index, line)``; `targets` None writes to stdout.

    On a clean exit every file is closed and renamed into place; on an error the temporary files are removed
    and what was there before is left as it was. Write errors are raised as SinkError (a broken pipe as is).
    """

    def __init__(self, targets: list[Path] | None) -> None:
        self.targets = targets
        self.streams: list[BinaryIO] = []
        self._renames: list[tuple[Path, Path]] = []  # (temporary file, final path)

    def __enter__(self) -> Outputs:
        if self.targets is None:
            self.streams = [sys.stdout.buffer]
            return self
        try:
            for target in self.targets:
                if _is_special(target):
                    self.streams.append(open(target, "wb"))  # closed in __exit__
                    continue
                final = Path(os.path.realpath(target))  # through a symlink: replace the file, keep the link
                temp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
                self._renames.append((temp, final))
                self.streams.append(open(temp, "wb"))  # closed in __exit__
        except OSError as exc:
            self._discard()
            raise SinkError(f"cannot write {exc.filename}: {exc.strerror}") from None
        return self

    def write(self, index: int, line: bytes) -> None:
        try:
            self.streams[index].write(line)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise SinkError(f"cannot write {self._name(index)}: {exc.strerror}") from None

    def _name(self, index: int) -> str:
        return "stdout" if self.targets is None else str(self.targets[index])

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.targets is None:
            if exc_type is None:
                sys.stdout.buffer.flush()
            return
        if exc_type is not None:
            self._discard()
            return
        try:
            self._finish()
        except SinkError:
            self._discard()
            raise

    def _finish(self) -> None:
        for index, stream in enumerate(self.streams):
            try:
                stream.close()  # flushes: a full disk shows here
            except OSError as exc:
                raise SinkError(f"cannot write {self._name(index)}: {exc.strerror}") from None
        for temp, final in self._renames:
            try:
                os.replace(temp, final)
            except OSError as exc:
                raise SinkError(f"cannot write {final}: {exc.strerror}") from None

    def _discard(self) -> None:
        for stream in self.streams:
            try:
                stream.close()
            except OSError:
                pass
        for temp, _ in self._renames:
            temp.unlink(missing_ok=True)


def _is_special(path: Path) -> bool:
    """An existing file that is not a regular file (a device, a FIFO, a socket)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
