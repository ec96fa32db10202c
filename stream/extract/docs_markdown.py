"""Markdown: the headings of a CommonMark document, found past the front matter, code and HTML blocks that
cannot hold any (those are marked as code, so a long section is never cut inside them).
"""

from __future__ import annotations

import re

from .docs_lines import Doc, Heading, indent_width, is_blank_line

__all__ = ["front_matter_end", "scan_markdown"]

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


def front_matter_end(lines: list[str]) -> int:
    """Index of the first line after YAML/TOML front matter at the top, 0 when there is none."""
    kind = _FRONT_MATTER.get(lines[0].rstrip()) if len(lines) > 1 else None
    # Checking the first line keeps a document that merely opens with a thematic break whole.
    if kind is None or not kind[0].match(lines[1]):
        return 0
    for i in range(2, len(lines)):
        if lines[i].rstrip() in kind[1]:
            return i + 1
    return 0


def scan_markdown(doc: Doc, begin: int) -> list[Heading]:
    """The headings of a Markdown document from line `begin` on; marks its code and HTML blocks."""
    headings: list[Heading] = []
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
            headings.append(Heading(i, i, level, _atx_title(text[level:])))
            i += 1
        elif para >= 0 and char in "=-" and _SETEXT.match(text):
            title = " ".join(part.strip() for part in lines[para:i])
            headings.append(Heading(para, i, 1 if char == "=" else 2, title))
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
        if is_blank_line(line):
            continue
        if indent_width(line) < 4:
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
        while j < len(lines) and not is_blank_line(lines[j]):
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
