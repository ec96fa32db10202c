"""Tree-sitter snippets: from one captured definition to its lines, docstring and signature.

Where the snippet starts (``export``, ``template <...>``, ``typedef``, Go ``type``, leading decorators and
attributes), which comments above it are its docstring and how they are cleaned, and where its header
ends; the rules are in :mod:`stream.extract.treesitter`'s docstring.
"""

from __future__ import annotations

from inspect import cleandoc
from typing import Any

from stream.model import Snippet

from .queries import ATTRIBUTES, C_RECORDS, COMMENTS, GO_DIRECTIVE, NOT_SIGNATURE, Spec
from .treesitter_names import c_record_names

__all__ = ["File"]


class File:
    """One file being cut: its bytes and text, and the snippets found so far."""

    __slots__ = ("ascii", "data", "language", "path", "snippets", "spec", "text")

    def __init__(self, data: bytes, text: str, path: str, language: str, spec: Spec) -> None:
        self.data = data
        self.text = text
        self.ascii = len(text) == len(data)  # then byte offsets are character offsets
        self.path = path
        self.language = language
        self.spec = spec
        self.snippets: list[Snippet] = []

    def snippet(self, node: Any, kind: str, qualname: str, parent: str | None) -> Snippet | None:
        data = self.data
        outer = _outer(node)
        top, inner_docs = _top(outer)
        start_row = top.start_point[0]
        end_point = outer.end_point  # `} Point;`, `};`: the lines are whole anyway, but may go on
        end_row = end_point[0]
        last = outer.end_byte - 1
        if end_point[1] == 0 and end_row > start_row:  # the node ends with its line's newline
            end_row -= 1
        if kind == "type" and end_row == start_row:
            return None
        begin = data.rfind(b"\n", 0, top.start_byte) + 1
        end = data.find(b"\n", last)
        end = len(data) if end < 0 else end + 1
        code = self.text[begin:end] if self.ascii else data[begin:end].decode("utf-8")
        return Snippet(
            self.path,
            self.language,
            kind,
            qualname,
            start_row + 1,
            end_row + 1,
            code,
            _docstring(data, begin, inner_docs, self.spec),
            _signature(node, data, self.spec),
            parent,
        )


# --- Extent, docstring, signature -----------------------------------------------------------------------


def _outer(node: Any) -> Any:
    """The node whose first line starts the snippet: the definition with its ``export``, declaration,
    template, typedef or Go ``type`` keyword."""
    parent = node.parent
    if parent is None:
        return node
    type_ = node.type
    if type_ == "variable_declarator":
        declarators = sum(1 for child in parent.named_children if child.type == "variable_declarator")
        if declarators != 1:
            return node
        node, parent = parent, parent.parent
    elif type_ == "type_spec":
        specs = sum(1 for child in parent.named_children if child.type == "type_spec")
        return parent if specs == 1 else node
    elif type_ in C_RECORDS and parent.type in ("type_definition", "declaration"):
        node, parent = parent, parent.parent
    while parent is not None and parent.type == "template_declaration":
        node, parent = parent, parent.parent
    if parent is not None and parent.type == "export_statement":
        return parent
    return node


def _top(outer: Any) -> tuple[Any, list[Any]]:
    """The first node of the snippet (a leading decorator or attribute, else `outer`, see :func:`_outer`),
    and the comments found between such attributes and the definition."""
    top = outer
    inner: list[Any] = []
    pending: list[Any] = []
    sibling = top.prev_sibling
    while sibling is not None:
        type_ = sibling.type
        if type_ in ATTRIBUTES:
            top = sibling
            inner.extend(pending)
            pending.clear()
        elif type_ not in COMMENTS:
            break
        else:
            pending.append(sibling)
        sibling = sibling.prev_sibling
    inner.reverse()
    return top, inner


def _comments_above(data: bytes, line_start: int, marker: bytes) -> list[bytes]:
    """The comments on the lines directly above the line starting at `line_start`, top to bottom: a run of
    line comments is one entry, each ``/* ... */`` another. Stops at a blank or code line."""
    found: list[bytes] = []
    run: list[bytes] = []
    pos = line_start
    while pos > 0:
        prev = data.rfind(b"\n", 0, pos - 1) + 1
        line = data[prev:pos].strip()
        if line.startswith(marker) and not line.startswith(b"#!"):
            run.append(line)
            pos = prev
            continue
        if run:
            found.append(b"\n".join(reversed(run)))
            run = []
        if marker == b"//" and line.endswith(b"*/"):
            close = prev + data[prev:pos].rindex(b"*/")
            opening = data.rfind(b"/*", 0, close)
            if opening >= 0:
                open_line = data.rfind(b"\n", 0, opening) + 1
                if not data[open_line:opening].strip():
                    found.append(data[opening : close + 2])
                    pos = open_line
                    continue
        break
    if run:
        found.append(b"\n".join(reversed(run)))
    found.reverse()
    return found


def _docstring(data: bytes, line_start: int, inner: list[Any], spec: Spec) -> str | None:
    comments = _comments_above(data, line_start, spec.line_comment) if line_start else []
    if inner:
        comments.extend(data[c.start_byte : c.end_byte].rstrip() for c in inner)
    if not comments:
        return None
    style = spec.doc
    if style == "jsdoc":
        blocks = [c for c in comments if c.startswith(b"/**") and not c.startswith(b"/**/")]
        comments = blocks[-1:]
    parts: list[str] = []
    for comment in comments:
        if comment.startswith(b"/*"):
            if style == "rust" and (not comment.startswith(b"/**") or comment[:4] in (b"/***", b"/**/")):
                continue
            parts.append(_clean_block(comment.decode("utf-8")))
            continue
        lines = comment.split(b"\n")
        if style == "rust":
            lines = [line for line in lines if line.startswith(b"///") and not line.startswith(b"////")]
        elif style == "go":
            lines = [line for line in lines if not GO_DIRECTIVE.match(line)]
        if lines:
            parts.append("\n".join(_clean_line(line.decode("utf-8"), spec.line_comment) for line in lines))
    doc = cleandoc("\n".join(parts)) if parts else ""
    return doc or None


def _clean_line(line: str, marker: bytes) -> str:
    line = line.rstrip()
    if marker == b"#":
        line = line[1:]
    else:
        line = line[3:] if line[2:3] in ("/", "!") else line[2:]  # Doxygen /// and //!
    return line[1:] if line.startswith(" ") else line


def _clean_block(comment: str) -> str:
    body = comment[2:-2]
    if body[:1] in ("*", "!"):  # /** and /*!
        body = body[1:]
    lines = []
    for line in body.split("\n"):
        stripped = line.strip()
        if stripped.startswith("*"):  # the leading column of stars
            stripped = stripped[1:]
            stripped = stripped[1:] if stripped.startswith(" ") else stripped
        lines.append(stripped)
    return "\n".join(lines).strip()


def _signature(node: Any, data: bytes, spec: Spec) -> str:
    begin = _signature_begin(node)
    end = _header_end(node, data) if spec.braces else _ruby_header_end(node)
    if end <= begin:
        end = node.end_byte
    header = data[begin:end]
    if b"/*" in header or spec.line_comment in header:
        header = _drop_comments(node, data, begin, end)
    signature = " ".join(header.decode("utf-8").split())
    type_ = node.type
    if type_ == "type_alias_declaration":
        signature = signature.removesuffix("=").rstrip()
    elif type_ == "type_spec" and _outer(node) == node:  # one spec of a group: type ( A struct{...} )
        signature = "type " + signature
    elif type_ in C_RECORDS and node.child_by_field_name("name") is None:
        names = c_record_names(node, data)  # typedef struct { ... } Point: name it
        if names:
            signature = f"{signature} {names[-1]}"
    return signature.removesuffix(";").rstrip()


def _signature_begin(node: Any) -> int:
    type_ = node.type
    if type_ in ("variable_declarator", "type_spec") or type_ in C_RECORDS:
        outer = _outer(node)  # const f = ..., type X struct, typedef struct, template <...> class
        if outer.type == "export_statement":
            outer = outer.child_by_field_name("declaration") or node
        return outer.start_byte
    parent = node.parent
    if parent is not None and parent.type == "template_declaration":
        while parent.parent is not None and parent.parent.type == "template_declaration":
            parent = parent.parent
        return parent.start_byte
    for child in node.children:
        child_type = child.type
        if child_type == "modifiers":  # Java: annotations are in here, mixed with keywords
            for modifier in child.children:
                if modifier.type not in NOT_SIGNATURE:
                    return modifier.start_byte
            continue
        if child_type not in NOT_SIGNATURE:
            return child.start_byte
    return node.start_byte


def _ruby_header_end(node: Any) -> int:
    """The end of the header's last part: name, parameters or superclass."""
    end = node.start_byte
    for field in ("name", "parameters", "superclass"):
        part = node.child_by_field_name(field)
        if part is not None:
            end = max(end, part.end_byte)
    return end


def _header_end(node: Any, data: bytes) -> int:
    """Where the header ends: where the body opens (the whole node when it has no braced body)."""
    type_ = node.type
    if type_ in ("variable_declarator", "field_definition", "public_field_definition"):
        node = node.child_by_field_name("value") or node
    elif type_ == "assignment_expression":
        node = node.child_by_field_name("right") or node
    elif type_ == "type_alias_declaration":
        value = node.child_by_field_name("value")
        return value.start_byte if value is not None else node.end_byte
    elif type_ == "type_spec":
        node = node.child_by_field_name("type") or node
        for child in node.children:
            if child.type == "{" or child.type == "field_declaration_list":
                return child.start_byte
        return node.end_byte
    body = node.child_by_field_name("body")
    if body is None or data[body.start_byte : body.start_byte + 1] == b"(":  # struct Tup(u32);
        return node.end_byte
    return body.start_byte


def _drop_comments(node: Any, data: bytes, begin: int, end: int) -> bytes:
    """data[begin:end] without the comment nodes in it (rare: only headers that seem to hold one)."""
    cuts: list[tuple[int, int]] = []
    todo = [node]
    while todo:
        current = todo.pop()
        for child in current.children:
            if child.end_byte <= begin or child.start_byte >= end:
                continue
            if child.type in COMMENTS:
                cuts.append((child.start_byte, child.end_byte))
            elif child.child_count:
                todo.append(child)
    if not cuts:
        return data[begin:end]
    cuts.sort()
    pieces, at = [], begin
    for start, stop in cuts:
        pieces.append(data[at:start])
        at = stop
    pieces.append(data[at:end])
    return b" ".join(pieces)
