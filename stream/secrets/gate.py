"""The secrets prefilter: a fast look at a whole text that says whether, and on which lines, any detector
could find something, so that almost no line goes through the (slow) detect-secrets plugins.

For each detector, checks that every one of its matches in a line passes (necessary conditions): a copy or a
loosening of the plugin's own regex. A text that passes none cannot yield a finding; a snippet that passes
some goes through the plugins line by line, only on the lines that pass some themselves. Python's re tries
every branch of an alternation at every position, so one big alternation costs ~250 ns a character; these
are separate searches that each start with a literal (found by a fast scan) or a quote, ~20 ns together.

Case-insensitive plugin patterns are checked on the lowered text. Under re.IGNORECASE an ASCII letter also
matches the Kelvin sign (k), long s (s), dotless i and dotted capital I (i): lower() folds the first, the
next two are replaced, and a text with the last (whose lowercase is two characters) takes the exact
patterns.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from .rules import (
    AWS_SECRET,
    AWS_SECRET_CHARS,
    CASELESS_PATTERNS,
    LITERALS,
    LOWER_LITERALS,
    LOWER_PATTERNS,
    PATTERNS,
)

if TYPE_CHECKING:
    from .detectors import Detector

__all__ = ["Gate"]

# IBM IAM <44>, IBM COS <48 hex>, SoftLayer <64>, Cloudant <64 hex>: a run of 44 [A-Za-z0-9_-] (or any
# non-ASCII), found as 44 "w" in the UTF-8 bytes mapped to w or space, which is 10x faster than [\w-]{44}.
_RUN = b"w" * 44
_RUN_REGEX = re.compile(r"[\w-]{44}")  # where: \w covers what IGNORECASE adds
_RUN_TABLE = bytes(0x77 if b >= 0x80 or chr(b).isalnum() or chr(b) in "_-" else 0x20 for b in range(256))


class Gate:
    """``gate(text)`` is False only if no detector can find anything in `text`; ``gate.lines(text, starts)``
    gives the lines (indexes, by their `starts` offsets) that would pass on their own."""

    __slots__ = ("literals", "patterns", "lower_literals", "lower_patterns", "non_ascii", "caseless")

    def __init__(self, detectors: list[Detector]) -> None:
        quoted = []
        aws_covered = True
        for d in detectors:
            if d.limit is not None:
                shortest = int(2**d.limit) + 1  # n characters carry at most log2(n) bits
                quoted.append(rf"['\"][{re.escape(d.plugin.charset)}]{{{shortest},}}['\"]")
                if d.kind == "high_entropy_base64":
                    # An ASCII '<40 of [0-9a-zA-Z/+]>' is then a quoted high-entropy candidate already.
                    aws_covered = shortest <= 40 and set(AWS_SECRET_CHARS) <= set(d.plugin.charset)
        self.literals = LITERALS
        self.patterns = tuple(re.compile(p) for p in (*PATTERNS, "|".join(quoted)))
        self.lower_literals = LOWER_LITERALS
        aws = (AWS_SECRET,)
        self.lower_patterns = tuple(re.compile(p) for p in (*LOWER_PATTERNS, *(() if aws_covered else aws)))
        self.non_ascii = tuple(re.compile(p) for p in (aws if aws_covered else ()))
        self.caseless = tuple(re.compile(p, re.IGNORECASE) for p in (*CASELESS_PATTERNS, *aws))

    def __call__(self, text: str) -> bool:
        if any(lit in text for lit in self.literals) or any(p.search(text) for p in self.patterns):
            return True
        if _RUN in text.encode("utf-8", "surrogatepass").translate(_RUN_TABLE):
            return True
        low = _fold(text)
        if low is None:
            return any(p.search(text) for p in self.caseless)
        if any(lit in low for lit in self.lower_literals) or any(p.search(low) for p in self.lower_patterns):
            return True
        return not text.isascii() and any(p.search(low) for p in self.non_ascii)

    def lines(self, text: str, starts: list[int]) -> list[int]:
        """The same checks, searched over the whole text for where they match (not per line: a gated snippet
        can be a 3,000-line class)."""
        found: set[int] = set()
        for lit in self.literals:
            _mark(found, starts, text, lambda s, pos, lit=lit: s.find(lit, pos))
        for p in (*self.patterns, _RUN_REGEX):
            _mark(found, starts, text, _searcher(p))
        low = _fold(text)
        if low is None:
            for p in self.caseless:
                _mark(found, starts, text, _searcher(p))
        else:  # same length as text: offsets agree
            for lit in self.lower_literals:
                _mark(found, starts, low, lambda s, pos, lit=lit: s.find(lit, pos))
            for p in (*self.lower_patterns, *(self.non_ascii if not text.isascii() else ())):
                _mark(found, starts, low, _searcher(p))
        return sorted(found)


def _searcher(p: re.Pattern[str]) -> Callable[[str, int], int]:
    def find(s: str, pos: int) -> int:
        m = p.search(s, pos)
        return -1 if m is None else m.start()

    return find


def _mark(found: set[int], starts: list[int], subject: str, find: Callable[[str, int], int]) -> None:
    """Add the index of every line where `find` matches. After a match the search goes on from the next line's
    start: the leftmost match from there starts at or before any match inside a later line."""
    last = len(starts) - 1
    pos = find(subject, 0)
    while pos != -1:
        i = bisect.bisect_right(starts, pos) - 1
        found.add(i)
        if i == last:
            break
        pos = find(subject, starts[i + 1])


def _fold(text: str) -> str | None:
    """`text` lowered so that what a case-insensitive ASCII pattern matches becomes its lowercase letters, or
    None when that cannot be done without changing its length."""
    low = text.lower()
    if text.isascii():
        return low
    if len(low) != len(text):
        return None
    return low.replace("\u0131", "i").replace("\u017f", "s")
