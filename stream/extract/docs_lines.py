"""A document as lines: its line table, the headings found in it and the blank-line rule of every format.

The scanners (:mod:`~stream.extract.docs_markdown`, :mod:`~stream.extract.docs_rst`) fill in a
:class:`Doc`'s code marks and return :class:`Heading` values; :mod:`~stream.extract.docs_sections` cuts
the sections between them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import accumulate
from typing import NamedTuple

__all__ = ["Doc", "Heading", "is_blank_line", "indent_width"]

# Line endings as CommonMark and docutils count them (str.splitlines would also break at \x0c, \u2028...).
_NEWLINE = re.compile(r"(\r\n|\r|\n)")


class Heading(NamedTuple):
    """A heading (a section title) as a scanner found it."""

    start: int  # 0-based index of the heading's first line (an overline, a setext heading's first line)
    end: int  # its last line (the underline); the body starts on the next line
    level: int
    title: str


def is_blank_line(line: str) -> bool:
    # Only spaces and tabs (and the \v and \f docutils reads as spaces): a no-break space is text.
    return not line.strip(" \t\v\f")


class Doc:
    """A text cut into lines (without their endings) and the offset where each line starts, plus one
    past the last: the exact text of lines a..b (0-based, inclusive) is text[starts[a]:starts[b + 1]].

    `code` has a 1 for each line inside a code block (or literal block, HTML block) after its first
    line, so a long section is never cut there; the scanner fills it in. `is_blank` says which lines a
    section may not end with.
    """

    __slots__ = ("code", "is_blank", "language", "lines", "starts", "text")

    def __init__(self, text: str, language: str, is_blank: Callable[[str], bool] = is_blank_line) -> None:
        self.text = text
        self.language = language
        self.is_blank = is_blank
        if "\r" in text:
            parts = _NEWLINE.split(text)  # [line, ending, line, ending, ..., line]
            lines = parts[::2]
            starts = list(accumulate(map(len, parts), initial=0))[::2]
            starts.append(len(text))
        else:
            lines = text.split("\n")
            starts = list(accumulate((len(line) + 1 for line in lines), initial=0))
            starts[-1] = len(text)
        if lines[-1] == "":  # the text ends with a line ending (or is empty): no line after it
            lines.pop()
            starts.pop()
        self.lines = lines
        self.starts = starts
        self.code = bytearray(len(lines))


def indent_width(line: str, tab: int = 4) -> int:
    body = line.lstrip(" \t")
    indent = len(line) - len(body)
    if indent and "\t" in line[:indent]:
        return len(line[:indent].expandtabs(tab))
    return indent
