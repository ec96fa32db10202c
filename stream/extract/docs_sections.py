"""Document sections: from heading positions to snippets, with unique heading-path qualnames, trimmed,
and long sections cut into parts at paragraph boundaries (the rules are in :mod:`stream.extract.docs`).
"""

from __future__ import annotations

from stream.model import Snippet

from .docs_lines import Doc, Heading, is_blank_line

__all__ = ["PREAMBLE", "SECTION", "Cutter"]

#: qualname of the text before a file's first heading
PREAMBLE = "(preamble)"

#: snippet kind of a document section
SECTION = "doc_section"


class Cutter:
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

    def document(self, doc: Doc, begin: int, headings: list[Heading], cell: int = 0) -> None:
        """Add the sections of a document from line `begin` on (or of a notebook's markdown cell,
        numbered `cell`)."""
        lines = doc.lines
        stop = headings[0].start if headings else len(lines)
        while begin < stop and is_blank_line(lines[begin]):
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
        self, doc: Doc, first: int, body: int, stop: int, qualname: str, parent: str | None, signature: str
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


def _split(doc: Doc, first: int, body: int, last: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut lines first..last into consecutive spans [a, b) of at most `max_chars` characters where
    possible: at paragraph starts, and inside a paragraph still too long at line starts; never at a line
    marked in `doc.code` (inside a code block) nor before the first text line after the heading."""
    lines, starts, code = doc.lines, doc.starts, doc.code
    if starts[last + 1] - starts[first] <= max_chars:
        return [(first, last + 1)]
    # The first text line stays with the heading: no part may start at it or before it.
    lead = body
    while is_blank_line(lines[lead]):
        lead += 1
    bounds = [first]
    bounds += [
        i
        for i in range(lead + 1, last + 1)
        if not code[i] and is_blank_line(lines[i - 1]) and not is_blank_line(lines[i])
    ]
    bounds.append(last + 1)
    parts = []
    for a, b in _pack(bounds, starts, max_chars):
        if starts[b] - starts[a] > max_chars:  # one paragraph too long: try between its lines
            inner = [
                a,
                *(i for i in range(max(a, lead) + 1, b) if not code[i] and not is_blank_line(lines[i])),
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
