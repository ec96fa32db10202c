"""File discovery: walk the given paths and choose the files to cut into snippets.

The walk is synchronous and cheap (one ``scandir`` per directory, one ``stat`` per candidate file); the
pipeline runs it in a worker thread. It never raises for a bad file or directory: problems come out as
:class:`Skip` values interleaved with the :class:`~stream.model.SourceFile` values, so the run can report
them and go on. Ignored paths (``.gitignore``, ``--exclude``, default excludes, wrong suffix) are dropped
silently.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from pathspec import GitIgnoreSpec

from stream.errors import ConfigError, SourceError
from stream.model import SourceFile

__all__ = ["DEFAULT_EXCLUDES", "Skip", "read_source", "walk"]

DEFAULT_EXCLUDES: tuple[str, ...] = (
    "node_modules",
    ".venv",
    "venv",
    "__pycache__",
    "build",
    "dist",
    ".tox",
    "site-packages",
)


@dataclass(frozen=True, slots=True)
class Skip:
    """A path the walk would have yielded but cannot use.

    `relpath` is POSIX-style and relative to the root argument (like ``SourceFile.relpath``); for a path
    argument that is itself the problem, it is the argument as given. `reason` is a stable key: ``binary``,
    ``too_large``, ``unreadable``, ``symlink_outside_root``, ``symlink_loop`` or ``not_found``.
    """

    relpath: str
    reason: str
    detail: str


# A compiled ignore file, anchored at `prefix` (the relpath of the directory holding it, "" for the root).
_Level = tuple[str, GitIgnoreSpec]

_by_name = attrgetter("name")


@dataclass(slots=True)
class _Frame:
    """One directory on the depth-first stack."""

    rel: str  # relpath from the root, "" for the root itself
    real: str  # resolved path: the key for loop detection
    entries: Iterator[os.DirEntry[str]]
    levels: tuple[_Level, ...]  # ignore specs in force here, shallowest first


def walk(
    paths: Sequence[str | Path],
    *,
    suffixes: Collection[str] = (".py",),
    excludes: Sequence[str] = (),
    default_excludes: bool = True,
    max_file_bytes: int = 1 << 20,
    extensionless: bool = False,
) -> Iterator[SourceFile | Skip]:
    """Yield the source files under `paths`, in a deterministic order, and a :class:`Skip` for each problem.

    Each directory in `paths` is a root: the files under it are found by a depth-first walk with entries
    sorted by name, and only those whose name ends with one of `suffixes` and that no ignore rule matches
    are yielded. Ignore rules are the ``.gitignore`` files at every level (the deepest file with a matching
    pattern decides, so ``!`` can re-include), ``<root>/.git/info/exclude``, and `excludes` (gitignore-style
    globs applied as if appended to the root ``.gitignore``). ``.git`` is never entered; with
    `default_excludes`, directories named in :data:`DEFAULT_EXCLUDES` are not entered either.

    With `extensionless`, files whose name has no dot are chosen too (scripts known by their shebang).
    A file in `paths` is yielded whatever its suffix and the ignore rules, with its name as relpath.

    Raises :class:`~stream.errors.ConfigError` at call time if a glob in `excludes` is invalid; everything
    the file system does wrong is reported as a :class:`Skip` instead.
    """
    suffix_tuple = tuple(suffixes)
    if extensionless:
        suffix_tuple = _Extensionless(suffix_tuple)  # type: ignore[assignment]
    excluded_names = frozenset(DEFAULT_EXCLUDES) if default_excludes else frozenset()
    for glob in excludes:
        # Checked here rather than in the generator so that a bad flag fails before any work is done.
        try:
            GitIgnoreSpec.from_lines([glob])
        except (ValueError, re.error) as exc:
            raise ConfigError(f"--exclude {glob!r} is not a valid gitignore pattern: {exc}") from None
    return _walk(list(paths), suffix_tuple, list(excludes), excluded_names, max_file_bytes)


def read_source(file: SourceFile, *, probe_bytes: int = 8192) -> bytes:
    """Return the whole content of `file` (one open, one read).

    Raises :class:`~stream.errors.SourceError` with reason ``binary`` if a NUL byte occurs in the first
    `probe_bytes` bytes, or ``unreadable`` if the file cannot be read.
    """
    try:
        with open(file.path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SourceError("unreadable", str(exc)) from None
    # The heuristic git and grep use. It also rejects UTF-16 text, which no extractor could parse anyway.
    if data.find(b"\0", 0, probe_bytes) != -1:
        raise SourceError("binary", f"NUL byte within the first {probe_bytes} bytes")
    return data


class _Extensionless(tuple):
    """Suffixes for ``str.endswith`` that also choose names without a dot: the walk's hot path stays one
    ``endswith`` call per name for the usual case."""

    __slots__ = ()


def _chosen(name: str, suffixes: tuple[str, ...]) -> bool:
    if name.endswith(suffixes):
        return True
    return type(suffixes) is _Extensionless and "." not in name


def _walk(
    paths: list[str | Path],
    suffixes: tuple[str, ...],
    excludes: list[str],
    excluded_names: frozenset[str],
    max_file_bytes: int,
) -> Iterator[SourceFile | Skip]:
    for arg in paths:
        fs_path = os.fspath(arg)
        shown = Path(fs_path).as_posix()
        try:
            st = os.stat(fs_path)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError | NotADirectoryError) and not os.path.lexists(fs_path):
                yield Skip(shown, "not_found", "no such file or directory")
            else:
                yield _stat_failure(shown, exc)
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_root(fs_path, shown, suffixes, excludes, excluded_names, max_file_bytes)
        elif stat.S_ISREG(st.st_mode):
            relpath = Path(fs_path).name
            if st.st_size > max_file_bytes:
                yield _too_large(relpath, st.st_size, max_file_bytes)
            else:
                yield SourceFile(Path(os.path.abspath(fs_path)), relpath, st.st_size, st.st_mtime_ns)
        else:
            # Opening a FIFO or a device would block or never end.
            yield Skip(shown, "unreadable", "not a regular file or directory")


def _walk_root(
    root: str,
    shown: str,
    suffixes: tuple[str, ...],
    excludes: list[str],
    excluded_names: frozenset[str],
    max_file_bytes: int,
) -> Iterator[SourceFile | Skip]:
    # Resolving the root once makes every containment and loop check a plain string comparison.
    root_real = os.path.realpath(root)
    try:
        root_entries = _list_dir(root_real)
    except OSError as exc:
        yield Skip(shown, "unreadable", str(exc))
        return
    # git ranks info/exclude below the root .gitignore; user globs come last so they win at the root level.
    root_lines = [
        *_read_lines(os.path.join(root_real, ".git", "info", "exclude")),
        *_gitignore_lines(root_real, root_entries),
        *excludes,
    ]
    root_spec = _compile(root_lines)
    levels: tuple[_Level, ...] = (("", root_spec),) if root_spec is not None else ()
    root_frame = _Frame("", root_real, iter(root_entries), levels)
    yield from _RootWalk(root_real, root_frame, suffixes, excluded_names, max_file_bytes).run()


class _RootWalk:
    """The depth-first walk under one root directory: the stack of directories being listed, and what
    decides for each entry whether it is entered, yielded, reported or dropped."""

    __slots__ = (
        "active",
        "excluded_names",
        "inside_prefix",
        "max_file_bytes",
        "root_real",
        "stack",
        "suffixes",
    )

    def __init__(
        self,
        root_real: str,
        root_frame: _Frame,
        suffixes: tuple[str, ...],
        excluded_names: frozenset[str],
        max_file_bytes: int,
    ) -> None:
        self.root_real = root_real
        self.inside_prefix = root_real if root_real.endswith(os.sep) else root_real + os.sep
        self.suffixes = suffixes
        self.excluded_names = excluded_names
        self.max_file_bytes = max_file_bytes
        # An explicit stack rather than recursion: deep trees must not hit the recursion limit.
        self.stack = [root_frame]
        # Real paths of the directories on the stack: a symlink to one of them would recurse forever.
        self.active = {root_real}

    def run(self) -> Iterator[SourceFile | Skip]:
        stack = self.stack
        while stack:
            frame = stack[-1]
            entry = next(frame.entries, None)
            if entry is None:
                stack.pop()
                self.active.discard(frame.real)
                continue
            name = entry.name
            if name == ".git":
                continue
            rel = f"{frame.rel}/{name}" if frame.rel else name
            item = self._symlink(entry, rel, frame) if entry.is_symlink() else self._entry(entry, rel, frame)
            if item is not None:
                yield item

    def _entry(self, entry: os.DirEntry[str], rel: str, frame: _Frame) -> SourceFile | Skip | None:
        """A directory to enter or a file to yield (None: neither, or entered without a problem)."""
        try:
            # Answered from the directory listing's d_type: no syscall on common file systems.
            is_dir = entry.is_dir(follow_symlinks=False)
            is_file = not is_dir and entry.is_file(follow_symlinks=False)
        except OSError as exc:
            return Skip(rel, "unreadable", str(exc))
        if is_dir:
            if self._skipped_dir(entry.name, rel, frame):
                return None
            return self._enter(entry, rel, os.path.join(frame.real, entry.name), frame)
        if not is_file or not self._chosen_file(entry.name, rel, frame):
            return None
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            return Skip(rel, "unreadable", str(exc))
        return _file_or_skip(Path(entry.path), rel, st, self.max_file_bytes)

    def _symlink(self, entry: os.DirEntry[str], rel: str, frame: _Frame) -> SourceFile | Skip | None:
        """A symlink: decided by its target, but ignore rules apply to the link's own path first, so that
        ignored links never produce noise about where they point."""
        try:
            st = entry.stat()
        except OSError as exc:
            # The target's kind is unknown; report the link only if it would have been chosen as a file.
            return _stat_failure(rel, exc) if self._chosen_file(entry.name, rel, frame) else None
        if stat.S_ISDIR(st.st_mode):
            if self._skipped_dir(entry.name, rel, frame):
                return None
            real = os.path.realpath(entry.path)
            if not self._inside(real):
                return Skip(rel, "symlink_outside_root", f"points to {real}, outside {self.root_real}")
            if real in self.active:
                return Skip(rel, "symlink_loop", f"points to {real}, a directory being walked")
            return self._enter(entry, rel, real, frame)
        if not stat.S_ISREG(st.st_mode) or not self._chosen_file(entry.name, rel, frame):
            return None
        real = os.path.realpath(entry.path)
        if not self._inside(real):
            return Skip(rel, "symlink_outside_root", f"points to {real}, outside {self.root_real}")
        return _file_or_skip(Path(entry.path), rel, st, self.max_file_bytes)

    def _skipped_dir(self, name: str, rel: str, frame: _Frame) -> bool:
        return name in self.excluded_names or _ignored(frame.levels, rel, is_dir=True)

    def _chosen_file(self, name: str, rel: str, frame: _Frame) -> bool:
        return _chosen(name, self.suffixes) and not _ignored(frame.levels, rel, is_dir=False)

    def _inside(self, real: str) -> bool:
        return real == self.root_real or real.startswith(self.inside_prefix)

    def _enter(self, entry: os.DirEntry[str], rel: str, real: str, parent: _Frame) -> Skip | None:
        """Push the directory onto the stack, with its own .gitignore in force (a Skip if unlistable)."""
        try:
            entries = _list_dir(entry.path)
        except OSError as exc:
            return Skip(rel, "unreadable", str(exc))
        spec = _compile(_gitignore_lines(entry.path, entries))
        levels = (*parent.levels, (rel, spec)) if spec is not None else parent.levels
        self.stack.append(_Frame(rel, real, iter(entries), levels))
        self.active.add(real)
        return None


def _list_dir(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=_by_name)


def _ignored(levels: tuple[_Level, ...], rel: str, *, is_dir: bool) -> bool:
    """Whether the ignore specs in force exclude `rel` (relative to the root); the deepest spec that has an
    opinion decides, as git does."""
    for prefix, spec in reversed(levels):
        sub = rel[len(prefix) + 1 :] if prefix else rel
        # A trailing slash is how pathspec learns the path is a directory, which `name/` patterns require.
        # Note pathspec's `include` means "matched by an ignore pattern", i.e. True = ignored.
        verdict = spec.check_file(sub + "/" if is_dir else sub).include
        if verdict is not None:
            return verdict
    return False


def _gitignore_lines(dir_path: str, entries: list[os.DirEntry[str]]) -> list[str]:
    # The listing already tells whether there is a .gitignore, so most directories cost no extra syscall.
    if any(e.name == ".gitignore" for e in entries):
        return _read_lines(os.path.join(dir_path, ".gitignore"))
    return []


def _read_lines(path: str) -> list[str]:
    # An unreadable ignore file is treated as absent, as git does (it only warns).
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read().splitlines()
    except OSError:
        return []


def _compile(lines: list[str]) -> GitIgnoreSpec | None:
    """Compile gitignore lines, dropping any that pathspec rejects: one odd line in some vendored
    .gitignore must not stop the run. Returns None when nothing is left that can match."""
    try:
        spec = GitIgnoreSpec.from_lines(lines)
    except (ValueError, re.error):
        good = []
        for line in lines:
            try:
                GitIgnoreSpec.from_lines([line])
            except (ValueError, re.error):
                continue
            good.append(line)
        spec = GitIgnoreSpec.from_lines(good)
    # Comments and blank lines compile to patterns with include=None; a spec of only those is dead weight.
    if not any(p.include is not None for p in spec.patterns):
        return None
    return spec


def _file_or_skip(path: Path, rel: str, st: os.stat_result, max_file_bytes: int) -> SourceFile | Skip:
    if st.st_size > max_file_bytes:
        return _too_large(rel, st.st_size, max_file_bytes)
    return SourceFile(path=path, relpath=rel, size=st.st_size, mtime_ns=st.st_mtime_ns)


def _too_large(rel: str, size: int, limit: int) -> Skip:
    return Skip(rel, "too_large", f"{size} bytes > --max-file-bytes {limit}")


def _stat_failure(rel: str, exc: OSError) -> Skip:
    if exc.errno == errno.ELOOP:
        return Skip(rel, "symlink_loop", "too many levels of symbolic links")
    if isinstance(exc, FileNotFoundError):
        # stat follows links: a missing target for an entry that exists means a dangling link.
        return Skip(rel, "unreadable", "broken symlink")
    return Skip(rel, "unreadable", str(exc))
