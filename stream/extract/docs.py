"""Cut documentation into snippets: one per section of a Markdown or reStructuredText file, one per cell
of a Jupyter notebook.

Sections. Every heading starts a section that runs until the next heading of any level, so a section
holds its own text only and each subsection is a snippet of its own. A snippet's `qualname` is the
heading path joined with ``" > "`` (``"Install > From source"``), `parent` the path above it (None at the
top), `signature` the heading text (``#`` marks, closing ``#`` and underlines removed; a setext heading's
lines joined by one space), `docstring` None, `kind` ``"doc_section"``. Lines are 1-based and inclusive;
`code` is the exact text of those lines, line endings kept. The rules chosen where the formats leave room:

- Text before the first heading is the section ``"(preamble)"`` (no parent, empty signature), starting
  at its first non-blank line.
- A section ends at its last line that is not blank (in reStructuredText, not blank and not a bare
  ``.. _label:`` target, which belongs to the heading below it), so a snippet never ends in blank lines.
  A section with nothing left below its heading is no snippet, but its heading still names its children.
- Markdown YAML (``---``) or TOML (``+++``) front matter at the very top is metadata, never a snippet:
  the preamble starts after it.
- A heading path that occurs again in the file gets ``" (2)"``, ``" (3)"``, ...; its children are named
  under the numbered path. Qualnames are unique within a file.
- A section longer than `max_chars` characters is cut into parts named ``"<path> (part 1)"``,
  ``"(part 2)"``, ...: at paragraph boundaries (blank lines outside code), filling each part as far as
  the limit allows; a paragraph still too long is cut between lines. Never inside a code block (a code
  block longer than the limit is one part, with the heading or paragraph line glued to it), and never
  between a heading and the first line of its text. The parts' texts concatenated are the section's.

Markdown follows CommonMark's block structure closely enough to find headings: ATX (``#`` .. ``######``)
and setext (``===`` / ``---`` under a paragraph; ``---`` after a blank line is a thematic break)
headings; fenced code (backticks or tildes, any longer closing fence, an unclosed fence runs to the end),
indented code and HTML blocks (comments, ``<pre>``/``<script>``/``<style>``, block-level tags) are never
scanned for headings; a line in a list item or block quote is never a section heading.

reStructuredText follows docutils: a title is a line followed by an underline, or framed by an overline
and the same underline, of one repeated punctuation character, starting a block at the left margin; the
adornment must be at least as long as the title, or (like docutils, which only warns) four or more
characters. Levels follow the order in which adornment styles first appear, an overlined style being
distinct from the underline-only one. Literal blocks after ``::``, the bodies of code directives
(``code-block``, ``doctest``, ``math``, ...) and everything indented cannot hold titles.

Notebooks (``.ipynb``, nbformat 4, and 3): markdown cells are scanned as Markdown, the heading path
carrying on from cell to cell; their sections are snippets as above. Each non-blank code cell is one
snippet, never cut, of kind ``"notebook_cell"`` in the notebook's kernel language (``"python"`` when the
metadata does not say), named ``"cell N"`` under the current heading path (``"Setup > cell 3"``), N
counting all cells from 1; markdown text before a cell's first heading is named the same way. Line
numbers in a notebook's JSON mean nothing, so every notebook snippet's lines count within its own cell's
source (which the cell number in the qualname, or the unique heading, identifies).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import NamedTuple
from unicodedata import combining, east_asian_width

import orjson

from stream.errors import SourceError
from stream.model import Snippet

__all__ = ["LANGUAGES", "PREAMBLE", "SECTION", "CELL", "extract"]

#: language -> file suffixes
LANGUAGES: dict[str, tuple[str, ...]] = {
    "markdown": (".md", ".markdown", ".mdx"),
    "rst": (".rst",),
    "ipynb": (".ipynb",),
}
#: qualname of the text before a file's first heading
PREAMBLE = "(preamble)"

#: snippet kinds
SECTION = "doc_section"
CELL = "notebook_cell"

# Line endings as CommonMark and docutils count them (str.splitlines would also break at \x0c, \u2028...).
_NEWLINE = re.compile(r"(\r\n|\r|\n)")

# Markdown (CommonMark block starts; matched after up to three spaces of indentation).
_FENCE = re.compile(r"(`{3,}|~{3,})(.*)")
_ATX = re.compile(r"(#{1,6})(?:[ \t]|$)")
_SETEXT = re.compile(r"(?:=+|-+)[ \t]*$")
_THEMATIC = re.compile(r"([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_MD_ITEM = re.compile(r"(?:[-+*]|(\d{1,9})[.)])(?:[ \t]|$)")
_HTML_BLOCK_TAGS = (
    "address|article|aside|base|basefont|blockquote|body|caption|center|col|colgroup|dd|details|dialog|dir|"
    "div|dl|dt|fieldset|figcaption|figure|footer|form|frame|frameset|h[1-6]|head|header|hr|html|iframe|"
    "legend|li|link|main|menu|menuitem|nav|noframes|ol|optgroup|option|p|param|search|section|summary|"
    "table|tbody|td|tfoot|th|thead|title|tr|track|ul"
)
# CommonMark HTML block kinds 1-6 (kind 7, any lone tag, cannot interrupt a paragraph and is left out).
# The group that matched says how the block ends: at a line holding the end marker, or (6) a blank line.
_HTML_OPEN = re.compile(
    r"<(?:(script|pre|style|textarea)(?:[ \t>]|$)|(!--)|(\?)|(!\[CDATA\[)|(![A-Za-z])|/?(?:"
    + _HTML_BLOCK_TAGS
    + r")(?:[ \t>]|/>|$))",
    re.IGNORECASE,
)
_HTML_END: tuple[re.Pattern[str] | None, ...] = (
    re.compile(r"</(?:script|pre|style|textarea)>", re.IGNORECASE),
    re.compile(r"-->"),
    re.compile(r"\?>"),
    re.compile(r"\]\]>"),
    re.compile(r">"),
    None,  # ends before a blank line
)
# Front matter: opening line -> (what its first line must look like, closing lines).
_FRONT_MATTER = {
    "---": (re.compile(r"#|[^\s:#][^:]*:(?:[ \t]|$)"), ("---", "...")),  # YAML: a comment or `key:`
    "+++": (re.compile(r"#|\[|[\w\"'.-]+[ \t]*="), ("+++",)),  # TOML: a comment, `[table]` or `key =`
}

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


class _Heading(NamedTuple):
    start: int  # 0-based index of the heading's first line (an overline, a setext heading's first line)
    end: int  # its last line (the underline); the body starts on the next line
    level: int
    title: str


def extract(data: bytes, relpath: str, language: str, *, max_chars: int = 6000) -> list[Snippet]:
    """Return the snippets of a document in `language` (a key of :data:`LANGUAGES`), in file order.

    `data` is the file's raw bytes (UTF-8, a BOM is dropped) and `relpath` the path recorded in each
    snippet. A pure function of its arguments. Raises :class:`SourceError` with reason ``decode_error``,
    or for a notebook ``syntax_error`` (not JSON) or ``invalid_source`` (JSON but not a notebook).
    """
    if language not in LANGUAGES:
        raise ValueError(f"not a document language: {language!r}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError("decode_error", str(exc)) from None
    cutter = _Cutter(relpath, max_chars)
    if language == "markdown":
        doc = _Doc(text, "markdown")
        begin = _front_matter_end(doc.lines)
        cutter.document(doc, begin, _scan_markdown(doc, begin))
    elif language == "rst":
        doc = _Doc(text, "rst", _is_rst_blank)
        cutter.document(doc, 0, _scan_rst(doc))
    else:
        _notebook(text, cutter)
    return cutter.snippets


def _is_blank(line: str) -> bool:
    # Only spaces and tabs (and the \v and \f docutils reads as spaces): a no-break space is text.
    return not line.strip(" \t\v\f")


def _is_rst_blank(line: str) -> bool:
    # Also a bare `.. _label:` target: it names the title below it, so it neither ends a section nor
    # makes one non-empty.
    return not line.strip(" \t\v\f") or (line.startswith("..") and _RST_TARGET.match(line) is not None)


class _Doc:
    """A text cut into lines (without their endings) and the offset where each line starts, plus one
    past the last: the exact text of lines a..b (0-based, inclusive) is text[starts[a]:starts[b + 1]].

    `code` has a 1 for each line inside a code block (or literal block, HTML block) after its first
    line, so a long section is never cut there; the scanner fills it in. `is_blank` says which lines a
    section may not end with.
    """

    __slots__ = ("code", "is_blank", "language", "lines", "starts", "text")

    def __init__(self, text: str, language: str, is_blank: Callable[[str], bool] = _is_blank) -> None:
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


def _indent(line: str, tab: int = 4) -> int:
    body = line.lstrip(" \t")
    indent = len(line) - len(body)
    if indent and "\t" in line[:indent]:
        return len(line[:indent].expandtabs(tab))
    return indent


# --- naming and cutting ------------------------------------------------------------------------------


class _Cutter:
    """Turns heading positions into snippets: keeps the heading path, makes qualnames unique, trims,
    skips empty sections and cuts long ones. One per file (a notebook's cells share it)."""

    __slots__ = ("max_chars", "next_number", "path", "snippets", "stack", "used")

    def __init__(self, path: str, max_chars: int) -> None:
        self.path = path
        self.max_chars = max_chars
        self.snippets: list[Snippet] = []
        self.stack: list[tuple[int, str]] = []  # (level, qualname) of the headings enclosing this point
        self.used: set[str] = {PREAMBLE}
        self.next_number: dict[str, int] = {}

    @property
    def current(self) -> str | None:
        """The heading path at this point of the file (None before the first heading)."""
        return self.stack[-1][1] if self.stack else None

    def enter(self, level: int, title: str) -> tuple[str, str | None]:
        """Step past a heading: its unique qualname and its parent's."""
        stack = self.stack
        while stack and stack[-1][0] >= level:
            stack.pop()
        parent = stack[-1][1] if stack else None
        title = title or "(untitled)"
        qualname = self.unique(f"{parent} > {title}" if parent else title)
        stack.append((level, qualname))
        return qualname, parent

    def unique(self, name: str) -> str:
        if name in self.used:
            number = self.next_number.get(name, 2)
            while f"{name} ({number})" in self.used:
                number += 1
            self.next_number[name] = number + 1
            name = f"{name} ({number})"
        self.used.add(name)
        return name

    def document(self, doc: _Doc, begin: int, headings: list[_Heading], cell: int = 0) -> None:
        """Add the sections of a document from line `begin` on (or of a notebook's markdown cell,
        numbered `cell`)."""
        lines = doc.lines
        stop = headings[0].start if headings else len(lines)
        while begin < stop and _is_blank(lines[begin]):
            begin += 1
        if begin < stop:  # text before the first heading
            if cell:
                parent = self.current
                name = f"{parent} > cell {cell}" if parent else f"cell {cell}"
                self.section(doc, begin, begin, stop, self.unique(name), parent, "")
            else:
                self.section(doc, begin, begin, stop, PREAMBLE, None, "")
        for k, heading in enumerate(headings):
            qualname, parent = self.enter(heading.level, heading.title)
            stop = headings[k + 1].start if k + 1 < len(headings) else len(lines)
            self.section(doc, heading.start, heading.end + 1, stop, qualname, parent, heading.title)

    def section(
        self, doc: _Doc, first: int, body: int, stop: int, qualname: str, parent: str | None, signature: str
    ) -> None:
        """Add lines first..stop-1 (`body` is the first line after the heading) as one or more snippets."""
        lines, starts, text, language = doc.lines, doc.starts, doc.text, doc.language
        last = stop - 1
        while last >= body and doc.is_blank(lines[last]):
            last -= 1
        if last < body:
            return  # a heading with nothing below it
        parts = _split(doc, first, body, last, self.max_chars)
        if len(parts) == 1:  # short enough, or nowhere to cut
            self.snippets.append(
                Snippet(
                    self.path,
                    language,
                    SECTION,
                    qualname,
                    first + 1,
                    last + 1,
                    text[starts[first] : starts[last + 1]],
                    None,
                    signature,
                    parent,
                )
            )
            return
        for number, (a, b) in enumerate(parts, 1):
            self.snippets.append(
                Snippet(
                    self.path,
                    language,
                    SECTION,
                    self.unique(f"{qualname} (part {number})"),
                    a + 1,
                    b,
                    text[starts[a] : starts[b]],
                    None,
                    signature,
                    parent,
                )
            )


def _split(doc: _Doc, first: int, body: int, last: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut lines first..last into consecutive spans [a, b) of at most `max_chars` characters where
    possible: at paragraph starts, and inside a paragraph still too long at line starts; never at a line
    marked in `doc.code` (inside a code block) nor before the first text line after the heading."""
    lines, starts, code = doc.lines, doc.starts, doc.code
    if starts[last + 1] - starts[first] <= max_chars:
        return [(first, last + 1)]
    # The first text line stays with the heading: no part may start at it or before it.
    lead = body
    while _is_blank(lines[lead]):
        lead += 1
    bounds = [first]
    bounds += [
        i
        for i in range(lead + 1, last + 1)
        if not code[i] and _is_blank(lines[i - 1]) and not _is_blank(lines[i])
    ]
    bounds.append(last + 1)
    parts = []
    for a, b in _pack(bounds, starts, max_chars):
        if starts[b] - starts[a] > max_chars:  # one paragraph too long: try between its lines
            inner = [
                a,
                *(i for i in range(max(a, lead) + 1, b) if not code[i] and not _is_blank(lines[i])),
                b,
            ]
            parts += _pack(inner, starts, max_chars)
        else:
            parts.append((a, b))
    return parts


def _pack(bounds: list[int], starts: list[int], max_chars: int) -> list[tuple[int, int]]:
    """Greedily group the spans between consecutive `bounds` into parts of at most `max_chars`
    characters; a span longer than that on its own is a part on its own."""
    parts = []
    begin = bounds[0]
    previous = begin
    for bound in bounds[1:]:
        if starts[bound] - starts[begin] > max_chars and previous > begin:
            parts.append((begin, previous))
            begin = previous
        previous = bound
    parts.append((begin, bounds[-1]))
    return parts


# --- Markdown ----------------------------------------------------------------------------------------


def _front_matter_end(lines: list[str]) -> int:
    """Index of the first line after YAML/TOML front matter at the top, 0 when there is none."""
    kind = _FRONT_MATTER.get(lines[0].rstrip()) if len(lines) > 1 else None
    # Checking the first line keeps a document that merely opens with a thematic break whole.
    if kind is None or not kind[0].match(lines[1]):
        return 0
    for i in range(2, len(lines)):
        if lines[i].rstrip() in kind[1]:
            return i + 1
    return 0


def _scan_markdown(doc: _Doc, begin: int) -> list[_Heading]:
    """The headings of a Markdown document from line `begin` on; marks its code and HTML blocks."""
    headings: list[_Heading] = []
    lines, code = doc.lines, doc.code
    n = len(lines)
    para = -1  # first line of the current paragraph, which an underline would make a setext heading
    lazy = False  # in a paragraph of a list item or block quote: no underline can end it
    i = begin
    while i < n:
        line = lines[i]
        text = line.lstrip(" \t")
        if not text:  # blank: nothing but spaces and tabs
            para, lazy = -1, False
            i += 1
            continue
        indent = len(line) - len(text)
        if indent and "\t" in line[:indent]:
            indent = len(line[:indent].expandtabs(4))
        if indent >= 4:
            if para < 0 and not lazy:  # indented code
                i = _skip_indented(lines, i, code)
            else:  # paragraph continuation
                i += 1
            continue
        char = text[0]
        if char in "`~" and (m := _FENCE.match(text)) and not (char == "`" and "`" in m[2]):
            i = _skip_fence(lines, i, m[1], code)
        elif char == "#" and (m := _ATX.match(text)):
            level = len(m[1])
            headings.append(_Heading(i, i, level, _atx_title(text[level:])))
            i += 1
        elif para >= 0 and char in "=-" and _SETEXT.match(text):
            title = " ".join(part.strip() for part in lines[para:i])
            headings.append(_Heading(para, i, 1 if char == "=" else 2, title))
            i += 1
        elif char in "-*_" and _THEMATIC.match(text):
            i += 1
        elif char == "<" and (m := _HTML_OPEN.match(text)):
            i = _skip_html(lines, i, m, code)
        elif char == ">" or (
            (char in "-+*" or char.isdigit())
            and (m := _MD_ITEM.match(text))
            # only a list starting at 1 may interrupt a paragraph
            and (para < 0 or m[1] is None or m[1] == "1")
        ):
            para, lazy = -1, True
            i += 1
            continue
        else:
            if para < 0 and not lazy:
                para = i
            i += 1
            continue
        para, lazy = -1, False
    return headings


def _atx_title(text: str) -> str:
    """An ATX heading's text: without the spaces around it and an optional closing run of '#'."""
    title = text.strip(" \t")
    # Done by hand: a regex for "spaces, then #s, at the end" backtracks quadratically on long space runs.
    bare = title.rstrip("#")
    if bare != title and (not bare or bare[-1] in " \t"):
        title = bare.rstrip(" \t")
    return title


def _skip_fence(lines: list[str], i: int, fence: str, code: bytearray) -> int:
    """Mark a fenced code block opened at line i; return the line after its closing fence (or the end)."""
    char = fence[0]
    for j in range(i + 1, len(lines)):
        code[j] = 1
        line = lines[j]
        text = line.lstrip(" ").rstrip()
        if text.startswith(fence) and not text.strip(char) and len(line) - len(line.lstrip(" ")) < 4:
            return j + 1
    return len(lines)


def _skip_indented(lines: list[str], i: int, code: bytearray) -> int:
    """Mark an indented code block starting at line i; return the line after its last indented line."""
    last = i
    for j in range(i + 1, len(lines)):
        line = lines[j]
        if _is_blank(line):
            continue
        if _indent(line) < 4:
            break
        last = j
    code[i + 1 : last + 1] = b"\1" * (last - i)
    return last + 1


def _skip_html(lines: list[str], i: int, match: re.Match[str], code: bytearray) -> int:
    """Mark an HTML block opened at line i; return the line after it."""
    kind = next(k for k in range(5) if match[k + 1]) if match.lastindex else 5
    end = _HTML_END[kind]
    if end is None:
        j = i + 1
        while j < len(lines) and not _is_blank(lines[j]):
            code[j] = 1
            j += 1
        return j
    if end.search(lines[i], len(lines[i]) - len(lines[i].lstrip(" \t")) + match.end()):
        return i + 1
    for j in range(i + 1, len(lines)):
        code[j] = 1
        if end.search(lines[j]):
            return j + 1
    return len(lines)


# --- reStructuredText --------------------------------------------------------------------------------


def _scan_rst(doc: _Doc) -> list[_Heading]:
    """The section titles of a reStructuredText document; marks its literal blocks and code directives."""
    headings: list[_Heading] = []
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
        indent = _indent(line, 8)
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
                headings.append(_Heading(i, end, styles.setdefault(style, len(styles) + 1), text))
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
        if _indent(line, 8) <= indent:
            break
        last = j
    code[i + 1 : last + 1] = b"\1" * (last - i)
    return last + 1


# --- Jupyter notebooks -------------------------------------------------------------------------------


def _notebook(text: str, cutter: _Cutter) -> None:
    nb = _load_json(text)
    if not isinstance(nb, dict):
        raise SourceError("invalid_source", "not a Jupyter notebook: the JSON is not an object")
    kernel = _kernel_language(nb)
    for number, (cell_type, source, language) in enumerate(_cells(nb), 1):
        if cell_type == "markdown":
            doc = _Doc(source, "markdown")
            cutter.document(doc, 0, _scan_markdown(doc, 0), number)
        elif cell_type == "code":
            doc = _Doc(source, language or kernel)
            lines, starts = doc.lines, doc.starts
            first, last = 0, len(lines) - 1
            while first <= last and _is_blank(lines[first]):
                first += 1
            while last >= first and _is_blank(lines[last]):
                last -= 1
            if first > last:
                continue
            parent = cutter.current
            name = cutter.unique(f"{parent} > cell {number}" if parent else f"cell {number}")
            cutter.snippets.append(
                Snippet(
                    cutter.path,
                    doc.language,
                    CELL,
                    name,
                    first + 1,
                    last + 1,
                    source[starts[first] : starts[last + 1]],
                    None,
                    "",
                    parent,
                )
            )


def _load_json(text: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        # orjson takes strict JSON only; Python's json module, which wrote many notebooks, also writes
        # NaN and Infinity (in outputs and widget state). Only a file both reject is broken.
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            raise SourceError("syntax_error", str(exc)) from None


def _cells(nb: dict[str, object]) -> list[tuple[str, str, str | None]]:
    """(cell type, source text, the cell's own language if it names one) for every cell, in order.

    nbformat 4 keeps the cells in ``cells``; nbformat 3 in ``worksheets[*].cells``, with a code cell's
    text under ``input`` and headings as ``heading`` cells with a ``level``.
    """
    cells = nb.get("cells")
    if cells is None and isinstance(nb.get("worksheets"), list):
        cells = [c for ws in nb["worksheets"] if isinstance(ws, dict) for c in ws.get("cells") or ()]
    if not isinstance(cells, list):
        raise SourceError("invalid_source", "not a Jupyter notebook: no list of cells")
    out = []
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict):
            raise SourceError("invalid_source", f"cell {number} is not an object")
        cell_type = cell.get("cell_type")
        source = cell.get("source", cell.get("input", ""))
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        elif not isinstance(source, str):
            raise SourceError("invalid_source", f"cell {number}: source is neither text nor a list of lines")
        if cell_type == "heading":  # nbformat 3
            level = cell.get("level")
            cell_type = "markdown"
            source = "#" * (level if isinstance(level, int) and 1 <= level <= 6 else 1) + " " + source
        language = cell.get("language")
        out.append((cell_type, source, language.lower() if isinstance(language, str) and language else None))
    return out


def _kernel_language(nb: dict[str, object]) -> str:
    metadata = nb.get("metadata")
    if isinstance(metadata, dict):
        for key, field in (("kernelspec", "language"), ("language_info", "name")):
            value = metadata.get(key)
            if isinstance(value, dict) and isinstance(value.get(field), str) and value[field]:
                return value[field].lower()
        if isinstance(metadata.get("language"), str) and metadata["language"]:
            return metadata["language"].lower()
    return "python"
