"""reStructuredText: the section titles of a document, as docutils finds them, past the literal blocks and
code directives that cannot hold any (those are marked as code, so a long section is never cut inside them).
"""

from __future__ import annotations

import re
from unicodedata import combining, east_asian_width

from .docs_lines import Doc, Heading, indent_width

__all__ = ["is_rst_blank_line", "scan_rst"]

# reStructuredText. An adornment is one non-alphanumeric printable ASCII character, repeated.
_ADORNMENT = re.compile(r"([!-/:-@\[-`{-~])\1*[ \t]*$")
_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_CODE_DIRECTIVE = re.compile(
    r"\.\.[ \t]+(?:code|code-block|sourcecode|code-cell|doctest|testcode|testoutput|testsetup|testcleanup|"
    r"parsed-literal|productionlist|math|raw|ipython|jupyter-execute|literalinclude|highlight)[ \t]*::",
    re.IGNORECASE,
)
_RST_ITEM = re.compile(r"(?:[-*+•‣⁃]|\(?(?:\d+|[A-Za-z]|#)[.)])[ \t]+")
_RST_TARGET = re.compile(r"\.\.[ \t]+_(?:`[^`]+`|[^:`]+):[ \t]*$")  # `.. _label:`, nothing after the colon


def is_rst_blank_line(line: str) -> bool:
    # Also a bare `.. _label:` target: it names the title below it, so it neither ends a section nor
    # makes one non-empty.
    return not line.strip(" \t\v\f") or (line.startswith("..") and _RST_TARGET.match(line) is not None)


def scan_rst(doc: Doc) -> list[Heading]:
    """The section titles of a reStructuredText document; marks its literal blocks and code directives."""
    headings: list[Heading] = []
    lines, code = doc.lines, doc.code
    styles: dict[tuple[str, bool], int] = {}  # adornment style -> level, in order of first appearance
    n = len(lines)
    block_start = True  # at the first line of a block: after a blank line, a title or the start
    explicit = -1  # indentation of the current block when it is explicit markup (`.. `), else -1
    column = 0  # text column of the current paragraph (past a list item's marker)
    literal = -1  # after a paragraph ending in '::': its text column (the literal block is indented more)
    last = ""  # the current paragraph's last line so far
    i = 0
    while i < n:
        line = lines[i]
        if not line.strip(" \t\v\f"):
            if not block_start and explicit < 0 and last.rstrip().endswith("::"):
                literal = column
            block_start = True
            i += 1
            continue
        indent = indent_width(line, 8)
        if literal >= 0:
            column, literal = literal, -1  # the literal block must be indented past the paragraph's text
            if indent > column:
                code[i] = 1  # glued to the paragraph introducing it
                i = _skip_block(lines, i, column, code)
                block_start, explicit, last = True, -1, ""
                continue
        if explicit >= 0 and indent <= explicit:  # explicit markup ended without a blank line
            block_start = True
        if block_start:
            if indent == 0 and (title := _rst_title(lines, i)) is not None:
                end, style, text = title
                headings.append(Heading(i, end, styles.setdefault(style, len(styles) + 1), text))
                i = end + 1
                explicit, last = -1, ""
                continue
            block_start = False
            text = line.lstrip()
            if text.startswith("..") and (len(text) == 2 or text[2] in " \t"):
                explicit = indent
                if _CODE_DIRECTIVE.match(text):
                    i = _skip_block(lines, i, indent, code)
                    block_start, explicit, last = True, -1, ""
                    continue
            else:
                explicit = -1
            m = _RST_ITEM.match(text)
            column = indent + m.end() if m else indent
        last = line
        i += 1
    return headings


def _rst_title(lines: list[str], i: int) -> tuple[int, tuple[str, bool], str] | None:
    """(last line, style, title text) when a section title starts at line i (at a block start)."""
    line = lines[i]
    if line[0] in _PUNCTUATION and _ADORNMENT.match(line):  # an overline, or a transition
        if i + 2 < len(lines):
            over, text, under = line.rstrip(), lines[i + 1].strip(), lines[i + 2].rstrip()
            if text and under == over and not _ADORNMENT.match(text) and _long_enough(over, text):
                return i + 2, (over[0], True), text
        return None
    if i + 1 < len(lines):
        under = lines[i + 1]
        if under and under[0] in _PUNCTUATION and _ADORNMENT.match(under):
            text = line.strip()
            if _long_enough(under.rstrip(), text) and not (
                text.startswith("..") and text[2:3] in ("", " ", "\t")
            ):
                return i + 1, (under[0], False), text
    return None


def _long_enough(adornment: str, title: str) -> bool:
    # docutils only warns about an adornment shorter than the title when it has four characters or more.
    return len(adornment) >= 4 or len(adornment) >= _width(title)


def _width(text: str) -> int:
    """Columns the text takes, as docutils counts them (wide East Asian characters count two)."""
    if text.isascii():
        return len(text)
    return sum(0 if combining(c) else 2 if east_asian_width(c) in "WF" else 1 for c in text)


def _skip_block(lines: list[str], i: int, indent: int, code: bytearray) -> int:
    """Mark the lines after line i indented more than `indent` (blank ones between them too); return the
    line after the last of them."""
    last = i
    for j in range(i + 1, len(lines)):
        line = lines[j]
        if not line.strip(" \t\v\f"):
            continue
        if indent_width(line, 8) <= indent:
            break
        last = j
    code[i + 1 : last + 1] = b"\1" * (last - i)
    return last + 1
