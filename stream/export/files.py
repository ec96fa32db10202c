"""The export's output streams, written atomically: stdout, or files that appear whole or not at all.

A regular file (or a new one) is written under a temporary name beside it and renamed over it when
complete, so a failed export never leaves half a dataset that looks whole. Anything else (a device, a
FIFO, /dev/stdout) is written in place: renaming over it would replace the device itself.

A file that got no line is never written: an empty JSONL file fails in `datasets.load_dataset` with a bare
StopIteration. When the export wrote nothing at all, every file is left as it was; when only one split came
out empty, an older file of that split is removed, since it belongs to an earlier, different dataset.
Errors name the file asked for, never the temporary one, and a missing folder as such.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from ..errors import SinkError

__all__ = ["Outputs", "write_text_atomic", "missing_folder"]


class Outputs:
    """``with Outputs(targets) as out: out.write(index, line)``; a target None is stdout.

    On a clean exit every file with lines is closed and renamed into place; on an error the temporary files
    are removed and what was there before is left as it was. Write errors are raised as SinkError (a broken
    pipe as is). `lines` counts the lines of each target; `removed` lists the older files removed.
    """

    def __init__(self, targets: Sequence[Path | None]) -> None:
        self.targets = list(targets)
        self.streams: list[BinaryIO] = []
        self.lines = [0] * len(self.targets)
        self.removed: list[str] = []
        self._temps: list[Path | None] = []  # the temporary file of each target renamed into place, or None

    def __enter__(self) -> Outputs:
        try:
            for target in self.targets:
                self._open(target)
        except OSError as exc:
            self._discard()
            final = self.targets[len(self.streams)]
            raise SinkError(f"cannot write {final}: {_why(exc, final)}") from None
        return self

    def _open(self, target: Path | None) -> None:
        if target is None:
            self.streams.append(sys.stdout.buffer)
            self._temps.append(None)
        elif _is_special(target):
            self.streams.append(open(target, "wb"))  # closed in __exit__
            self._temps.append(None)
        else:
            temp = _temp_of(target)
            self.streams.append(open(temp, "wb"))  # closed in __exit__
            self._temps.append(temp)

    def write(self, index: int, line: bytes) -> None:
        try:
            self.streams[index].write(line)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise SinkError(f"cannot write {self._name(index)}: {exc.strerror}") from None
        self.lines[index] += 1

    def _name(self, index: int) -> str:
        target = self.targets[index]
        return "stdout" if target is None else str(target)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
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
                if stream is sys.stdout.buffer:
                    stream.flush()
                else:
                    stream.close()  # flushes: a full disk shows here
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise SinkError(f"cannot write {self._name(index)}: {exc.strerror}") from None
        anything = any(self.lines)
        for index, temp in enumerate(self._temps):
            target = self.targets[index]
            if temp is None or target is None:
                continue
            final = Path(os.path.realpath(target))
            if self.lines[index]:
                _replace(temp, final)
                continue
            temp.unlink(missing_ok=True)
            if anything and final.is_file():
                final.unlink()
                self.removed.append(str(target))

    def _discard(self) -> None:
        for stream in self.streams:
            if stream is sys.stdout.buffer:
                continue
            try:
                stream.close()
            except OSError:
                pass
        for temp in self._temps:
            if temp is not None:
                temp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all (a temporary file renamed over it); SinkError on failure."""
    if _is_special(path):
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise SinkError(f"cannot write {path}: {_why(exc, path)}") from None
        return
    temp = _temp_of(path)
    try:
        temp.write_text(text, encoding="utf-8")
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise SinkError(f"cannot write {path}: {_why(exc, path)}") from None
    try:
        _replace(temp, Path(os.path.realpath(path)))
    except SinkError:
        temp.unlink(missing_ok=True)
        raise


def missing_folder(path: Path) -> Path | None:
    """The folder `path` would go in, when it does not exist (or is not a folder); None when it is there."""
    folder = path.absolute().parent
    return None if folder.is_dir() else folder


def _temp_of(target: Path) -> Path:
    final = Path(os.path.realpath(target))  # through a symlink: replace the file, keep the link
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def _replace(temp: Path, final: Path) -> None:
    try:
        os.replace(temp, final)
    except OSError as exc:
        raise SinkError(f"cannot write {final}: {exc.strerror}") from None


def _why(exc: OSError, final: Path) -> str:
    if isinstance(exc, FileNotFoundError) and (folder := missing_folder(final)) is not None:
        return f"no folder {folder}"
    return str(exc.strerror)


def _is_special(path: Path) -> bool:
    """An existing file that is not a regular file (a device, a FIFO, a socket)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
