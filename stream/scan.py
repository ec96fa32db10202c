"""Scan: walk the tree, pass over files the checkpoint knows unchanged, read and parse the rest.

Runs in one worker thread (the pipeline hands its items to the event loop). Parsing is done in that thread,
or with ``jobs > 1`` in a pool of processes, results kept in walk order.

A file is *unchanged* when its size and mtime match what the checkpoint recorded when all of its snippets
were done for this task, or, if only the mtime moved, when its content hash still matches. Such a file is
not read again (or only hashed) and not parsed: a rerun over a finished tree costs a walk and a few stats.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sinks.schema import KnownFile

from . import extract as extractors
from .context import FileContext, file_context
from .errors import SourceError
from .filters import Selection, file_filter, select
from .model import Snippet, SourceFile
from .neardup import file_band_keys
from .walk import Skip, read_source, walk

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["Scanned", "Unchanged", "Skipped", "scan", "definitions", "EXTRACTOR_VERSION"]

# Part of the file index's key: a new extractor must look at every file again.
EXTRACTOR_VERSION = "2"


@dataclass(slots=True)
class Scanned:
    file: SourceFile
    snippets: list[Snippet]  # the ones to send: filtered, secrets handled
    hash: str
    filtered: Counter[str]  # snippets left out, by reason
    secrets: Counter[str]  # secrets found, by kind
    context: FileContext | None = None  # what the file's snippets share in their prompts (--context)
    near: list[tuple[int, ...] | None] | None = (
        None  # per snippet, its band keys (stream.neardup; --near-dup)
    )


@dataclass(slots=True)
class Unchanged:
    file: SourceFile
    known: KnownFile
    touched: bool  # the mtime moved but the content did not: the index wants the new mtime


@dataclass(slots=True)
class Skipped:
    key: str  # the file's absolute path (or the argument, for a walk-level skip)
    path: str
    reason: str
    detail: str
    file: SourceFile | None = None  # set for skips decided by content (remembered while unchanged)
    hash: str | None = None


Item = Scanned | Unchanged | Skipped


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _parse(file: SourceFile, data: bytes, sel: Selection) -> Scanned | Skipped | None:
    """None: not a file for us after all (no suffix and no shebang we know, or a language not chosen)."""
    language = extractors.language_of(file.relpath)
    if language is None:
        if "." in file.relpath.rsplit("/", 1)[-1]:  # only a file named on the command line gets here
            return Skipped(str(file.path), file.relpath, "unknown_language", "no extractor for this suffix")
        language = extractors.language_from_shebang(data)
        if language is None:
            return None
    if sel.languages is not None and language not in sel.languages:
        return None
    digest = _digest(data)
    skip = file_filter(file.relpath, data, language, language in extractors.DOC_LANGUAGES, sel)
    if skip is not None:
        return Skipped(str(file.path), file.relpath, *skip, file, digest)
    try:
        snippets = extractors.extract(data, file.relpath, language, doc_max_chars=sel.doc_max_chars)
        filtered: Counter[str] = Counter()
        secrets: Counter[str] = Counter()
        context = file_context(data, file.relpath, language, snippets, sel) if sel.context_tokens else None
        kept = select(snippets, file.relpath, sel, filtered, secrets)
        near = file_band_keys(kept) if sel.near_dup else None
        return Scanned(file, kept, digest, filtered, secrets, context, near)
    except SourceError as exc:
        return Skipped(str(file.path), file.relpath, exc.reason, exc.detail, file, digest)
    except Exception as exc:
        return Skipped(
            str(file.path), file.relpath, "extract_error", f"{type(exc).__name__}: {exc}", file, digest
        )


def _read_and_parse(file: SourceFile, sel: Selection) -> Scanned | Skipped | None:
    """Module level so a process pool can run it."""
    data = _read(file)
    if not isinstance(data, bytes):
        return data
    return _parse(file, data, sel)


def _read(file: SourceFile) -> bytes | Skipped | None:
    """The file's content, or instead the skip to report (None: a file without a suffix, unreadable or
    binary, which was only a candidate script)."""
    try:
        return read_source(file)
    except SourceError as exc:
        if _unnamed(file):
            return None
        return Skipped(str(file.path), file.relpath, exc.reason, exc.detail)


def _unnamed(file: SourceFile) -> bool:
    # A file without a suffix is a candidate script only: a binary one is no news, not a skip.
    return "." not in file.relpath.rsplit("/", 1)[-1]


def scan(
    paths: Sequence[str],
    *,
    excludes: Sequence[str] = (),
    default_excludes: bool = True,
    max_file_bytes: int = 1 << 20,
    known: Mapping[str, KnownFile] | None = None,
    jobs: int = 1,
    selection: Selection | None = None,
) -> Iterator[Item]:
    """Items in walk order: parsed files, unchanged files, skipped files."""
    known = known or {}
    sel = selection or Selection()
    files = walk(
        paths,
        suffixes=extractors.suffixes_for(sel.languages),
        excludes=excludes,
        default_excludes=default_excludes,
        max_file_bytes=max_file_bytes,
        extensionless=True,
    )
    if jobs <= 1:
        for item in files:
            one = _one(item, known, sel)
            if one is not None:
                yield one
        return
    # Processes, not threads: ast.parse holds the GIL. "spawn" because this runs in a thread of a process
    # with an event loop and other threads, which fork would copy mid-flight. (Imported here: a run
    # without --jobs does not pay for loading multiprocessing.)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        window: deque[Item | tuple[SourceFile, Future[Scanned | Skipped | None]]] = deque()
        limit = 8 * jobs
        try:
            for item in files:
                first = _quick(item, known)
                window.append((item, pool.submit(_read_and_parse, item, sel)) if first is None else first)
                while len(window) > limit or (window and not isinstance(window[0], tuple)):
                    result = _result(window.popleft())
                    if result is not None:
                        yield result
            while window:
                result = _result(window.popleft())
                if result is not None:
                    yield result
        finally:
            for pending in window:
                if isinstance(pending, tuple):
                    pending[1].cancel()


def definitions(
    paths: Sequence[str],
    *,
    excludes: Sequence[str],
    default_excludes: bool,
    max_file_bytes: int,
    sel: Selection,
) -> Iterator[tuple[str, list[Snippet]]]:
    """Every file's definitions as extracted, unfiltered, changed or not (``--context project``'s index)."""
    for file in walk(
        paths,
        suffixes=extractors.suffixes_for(sel.languages),
        excludes=excludes,
        default_excludes=default_excludes,
        max_file_bytes=max_file_bytes,
    ):
        if isinstance(file, Skip) or (language := extractors.language_of(file.relpath)) is None:
            continue
        if language in extractors.DOC_LANGUAGES:
            continue
        try:
            yield file.relpath, extractors.extract(read_source(file), file.relpath, language)
        except Exception:  # (the real walk reports the file; the index goes without it)
            continue


def _result(entry: Item | tuple[SourceFile, Future[Scanned | Skipped | None]]) -> Item | None:
    if not isinstance(entry, tuple):
        return entry
    file, future = entry
    try:
        return future.result()
    except Exception as exc:  # a worker that died (e.g. out of memory) costs its files, not the run
        return Skipped(
            str(file.path), file.relpath, "extract_error", f"parser process failed: {type(exc).__name__}"
        )


def _quick(item: SourceFile | Skip, known: Mapping[str, KnownFile]) -> Item | None:
    """Everything decided without parsing: walk skips and unchanged files; None means "parse it"."""
    if isinstance(item, Skip):
        return Skipped(item.relpath, item.relpath, item.reason, item.detail)
    k = known.get(str(item.path))
    if k is not None and k.size == item.size and k.mtime_ns == item.mtime_ns:
        return Unchanged(item, k, touched=False)
    return None


def _one(item: SourceFile | Skip, known: Mapping[str, KnownFile], sel: Selection) -> Item | None:
    first = _quick(item, known)
    if first is not None:
        return first
    assert isinstance(item, SourceFile)
    k = known.get(str(item.path))
    data = _read(item)
    if not isinstance(data, bytes):
        return data
    if k is not None and k.size == item.size and _digest(data) == k.hash:
        return Unchanged(item, k, touched=True)
    return _parse(item, data, sel)
