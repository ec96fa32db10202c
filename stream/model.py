"""The values that flow between stages: files found by the walk, snippets cut from them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SourceFile", "Snippet", "snippet_id", "stable_hash"]


def stable_hash(*parts: str) -> str:
    """A short, stable hex digest of `parts` (unambiguous: parts are length-prefixed)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def snippet_id(language: str, code: str) -> str:
    """Identity of a snippet: its language and exact text (one hash call: extraction makes many)."""
    return hashlib.blake2b(
        code.encode("utf-8", "surrogatepass"), digest_size=16, person=language.encode()[:16]
    ).hexdigest()


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file the walk chose. `relpath` is POSIX-style, relative to the root argument it was found under
    (for a file given directly, its name)."""

    path: Path
    relpath: str
    size: int
    mtime_ns: int


@dataclass(slots=True)
class Snippet:
    """One unit of code to annotate, with its exact text and where it came from.

    Lines are 1-based and inclusive; `start_line` is the first decorator's line when there are decorators.
    `code` is the exact text of those lines as in the file (indentation, comments, line endings kept).
    """

    path: str
    language: str
    kind: str  # function | async_function | method | async_method | class
    qualname: str  # e.g. "Class.method", "outer.<locals>.inner"
    start_line: int
    end_line: int
    code: str
    docstring: str | None
    signature: str  # the header without its colon, e.g. "def f(a, b=1) -> int"
    parent: str | None  # qualname of the enclosing class/function, None at module level
    id: str = field(default="", compare=False)
    # The body has nothing to explain (`pass`, `...`, a docstring alone, a lone `raise NotImplementedError`);
    # set by extractors that see the syntax tree, not part of the record.
    trivial: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        # Not frozen: a frozen dataclass's __init__ costs several times more, and extraction makes
        # hundreds of thousands of these. Treat snippets as read-only all the same.
        if not self.id:
            self.id = snippet_id(self.language, self.code)
