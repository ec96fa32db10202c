"""Cut a Python file into snippets: one per function, method and class, nested ones included.

The file is parsed once with :func:`ast.parse`; everything else (exact code text, signatures) is read
from the decoded text using the AST's positions, so the cost on top of the parse is one line-offset
table per file plus work proportional to each definition's header.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from itertools import accumulate

from stream.errors import SourceError
from stream.model import Snippet

__all__ = ["LANGUAGE", "SUFFIXES", "decode_source", "extract"]

LANGUAGE = "python"
SUFFIXES = (".py",)

_FuncDef = ast.FunctionDef | ast.AsyncFunctionDef
_Def = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef

# Python's tokenizer ends a line at \r\n, \r or \n and nowhere else (unlike str.splitlines, which also
# breaks at \x0c, \x1c, \u2028, ...); the AST's line numbers count exactly these.
_NEWLINE = re.compile(r"(\r\n|\r|\n)")
# Compound statements whose blocks may hold definitions that still belong to the enclosing scope.
# ExceptHandler and match_case are not statements but carry a block of them.
_BLOCKS: dict[type, tuple[str, ...]] = {
    ast.If: ("body", "orelse"),
    ast.For: ("body", "orelse"),
    ast.AsyncFor: ("body", "orelse"),
    ast.While: ("body", "orelse"),
    ast.With: ("body",),
    ast.AsyncWith: ("body",),
    ast.Try: ("body", "handlers", "orelse", "finalbody"),
    ast.TryStar: ("body", "handlers", "orelse", "finalbody"),
    ast.ExceptHandler: ("body",),
    ast.Match: ("cases",),
    ast.match_case: ("body",),
}
# Tokens that carry no text of the signature.
_SKIP_TOKENS = frozenset(
    {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
)
# Python 3.12+ splits f-strings into several tokens; they are copied whole, as one piece.
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)


def decode_source(data: bytes) -> str:
    """Decode a Python file's bytes the way the interpreter does: PEP 263 coding cookie, else UTF-8.

    A UTF-8 BOM is honoured and dropped. Raises ``SourceError("decode_error", detail)`` when the cookie
    names an unknown codec, contradicts the BOM, or the bytes are not valid in the declared encoding.
    """
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        # "utf-8-sig" (chosen when there is a BOM) strips the BOM while decoding.
        return data.decode(encoding)
    except (LookupError, UnicodeDecodeError, SyntaxError) as exc:
        raise SourceError("decode_error", str(exc)) from None


def extract(data: bytes, relpath: str) -> list[Snippet]:
    """Return a snippet for every function, method and class in the file, in source order.

    `data` is the file's raw bytes and `relpath` the path recorded in each snippet. A pure function of
    its arguments, safe to run in a thread or a process pool. Raises :class:`SourceError` with reason
    ``decode_error``, ``invalid_source`` (NUL bytes), ``syntax_error`` (detail ``"line N: msg"``) or
    ``too_deeply_nested`` when the file cannot be used.
    """
    text = decode_source(data)
    tree = _parse(text)
    lines = _Lines(text)
    snippets = [
        _snippet(node, qualname, kind, parent, lines, relpath) for node, qualname, kind, parent in _walk(tree)
    ]
    # The walk is already pre-order in source order; the sort (stable) only makes that a guarantee.
    snippets.sort(key=lambda s: s.start_line)
    return snippets


def _parse(text: str) -> ast.Module:
    # NUL bytes are a ValueError on some Python versions and a SyntaxError on others: decide up front
    # so the reason does not depend on the interpreter.
    if "\0" in text:
        raise SourceError("invalid_source", "source contains a NUL byte")
    try:
        return ast.parse(text)
    except SyntaxError as exc:  # includes IndentationError ("too many levels of indentation") and TabError
        where = f"line {exc.lineno}: " if exc.lineno else ""
        raise SourceError("syntax_error", f"{where}{exc.msg}") from None
    except ValueError as exc:
        raise SourceError("invalid_source", str(exc)) from None
    except (RecursionError, MemoryError) as exc:
        # The parser signals a too-deep expression (e.g. 100k unary operators) this way; the process is fine.
        raise SourceError("too_deeply_nested", str(exc) or type(exc).__name__) from None


class _Scope:
    """A function or class body being walked, and what its definitions' qualnames derive from."""

    __slots__ = ("globals", "is_class", "prefix", "qualname")

    def __init__(self, qualname: str | None, prefix: str, is_class: bool) -> None:
        self.qualname = qualname
        self.prefix = prefix
        self.is_class = is_class
        self.globals: set[str] = set()


def _walk(tree: ast.Module) -> Iterator[tuple[_Def, str, str, str | None]]:
    """Yield (node, qualname, kind, parent) for each definition, pre-order in source order.

    Only statement blocks are visited: definitions cannot hide inside expressions (lambdas are not
    snippets), so skipping expressions keeps this far cheaper than ``ast.walk``. An explicit stack
    rather than recursion, so no nesting depth can raise RecursionError here.
    """
    module = _Scope(None, "", is_class=False)
    stack: list[tuple[ast.AST, _Scope]] = [(stmt, module) for stmt in reversed(tree.body)]
    while stack:
        node, scope = stack.pop()
        if isinstance(node, _Def):
            # Like the compiler: a name declared `global` in the enclosing scope gets a bare qualname.
            if scope is not module and node.name in scope.globals:
                qualname = node.name
            else:
                qualname = scope.prefix + node.name
            if isinstance(node, ast.ClassDef):
                kind = "class"
                inner = _Scope(qualname, qualname + ".", is_class=True)
            else:
                kind = "method" if scope.is_class else "function"
                if isinstance(node, ast.AsyncFunctionDef):
                    kind = "async_" + kind
                inner = _Scope(qualname, qualname + ".<locals>.", is_class=False)
            yield node, qualname, kind, scope.qualname
            stack.extend((stmt, inner) for stmt in reversed(node.body))
        elif isinstance(node, ast.Global):
            scope.globals.update(node.names)
        else:
            fields = _BLOCKS.get(type(node))
            if fields:
                for name in reversed(fields):
                    stack.extend((child, scope) for child in reversed(getattr(node, name)))


class _Lines:
    """Offsets of line starts in the decoded text, built once per file, to slice exact line ranges."""

    __slots__ = ("_ascii", "_cum", "_step", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        # Built with C-level split/accumulate, not a Python loop over lines.
        if "\r" in text:
            # [line, ending, line, ending, ..., line]: line k starts at offset _cum[2(k-1)].
            parts = _NEWLINE.split(text)
            self._step = 2
        else:
            # Every ending is one "\n": line k starts at sum(len(lines before)) + (k-1).
            parts = text.split("\n")
            self._step = 1
        self._cum = [0, *accumulate(map(len, parts))]
        self._ascii = text.isascii()

    def start(self, line: int) -> int:
        """Offset of the first character of 1-based `line`."""
        if self._step == 1:
            return self._cum[line - 1] + line - 1
        return self._cum[2 * (line - 1)]

    def end(self, line: int) -> int:
        """Offset just past 1-based `line` including its line ending, if it has one."""
        if line >= self.count():
            return len(self.text)
        return self.start(line + 1)

    def count(self) -> int:
        """Number of lines (a text ending with a newline has an empty last line)."""
        # _cum has one entry more than there are parts; with endings there are 2*lines - 1 parts.
        return len(self._cum) - 1 if self._step == 1 else len(self._cum) // 2

    def offset(self, line: int, col: int) -> int:
        """Text offset of an AST position (`col` counts UTF-8 bytes, as the AST does)."""
        start = self.start(line)
        if self._ascii:
            return start + col
        head = self.text[start : start + col]  # at least `col` bytes' worth of characters
        if head.isascii():
            return start + col
        line_text = self.text[start : self.end(line)]
        return start + len(line_text.encode("utf-8")[:col].decode("utf-8"))


def _snippet(node: _Def, qualname: str, kind: str, parent: str | None, lines: _Lines, path: str) -> Snippet:
    start_line = _first_decorator_line(node, lines) if node.decorator_list else node.lineno
    end_line = node.end_lineno or node.lineno
    return Snippet(
        path=path,
        language=LANGUAGE,
        kind=kind,
        qualname=qualname,
        start_line=start_line,
        end_line=end_line,
        code=lines.text[lines.start(start_line) : lines.end(end_line)],
        docstring=ast.get_docstring(node),
        signature=_signature(node, lines),
        parent=parent,
    )


def _first_decorator_line(node: _Def, lines: _Lines) -> int:
    # The first decorator expression's line is usually the '@' line, but `@(\n deco\n)` puts the
    # expression below its '@'. Between '@' and the expression there is only whitespace, brackets and
    # comments, so the '@' line is the nearest one at or above that starts with '@'.
    line = node.decorator_list[0].lineno
    text = lines.text
    while line > 1 and not text[lines.start(line) : lines.end(line)].lstrip().startswith("@"):
        line -= 1
    return line


def _signature(node: _Def, lines: _Lines) -> str:
    """The definition's header from its keyword to just before the colon, comments dropped and
    whitespace runs collapsed to one space (string literals are copied verbatim)."""
    text = lines.text
    begin = lines.offset(node.lineno, node.col_offset)  # 'def' / 'async' / 'class'; decorators come before
    last = _last_header_node(node)
    after = begin if last is None else lines.offset(last.end_lineno or last.lineno, last.end_col_offset or 0)
    colon = _find_colon(text, after)
    header = text[begin:colon]
    if "#" not in header and "'" not in header and '"' not in header and "\\" not in header:
        # No comments, strings or continuations: plain whitespace collapsing is exact.
        return " ".join(header.split())
    try:
        return _collapse_tokens(header)
    except (tokenize.TokenError, SyntaxError):  # not expected for a header the parser accepted
        return " ".join(header.split())


def _last_header_node(node: _Def) -> ast.AST | None:
    """The AST node that ends last in the header (None for `def f()` / `class C`).

    Past its end only brackets, commas, '/', whitespace, continuations and comments can come before the
    header's colon. Colons that are not the header's (annotations, lambdas, dict and slice literals,
    strings) all lie inside the header's AST nodes, so they are skipped by starting after this one.
    """
    if isinstance(node, ast.ClassDef):
        candidates: list[ast.AST] = []
        if node.bases:
            candidates.append(node.bases[-1])
        if node.keywords:  # keywords and *bases may interleave: `class A(B, metaclass=M, *more)`
            candidates.append(node.keywords[-1])
        if candidates:
            return max(candidates, key=lambda n: (n.end_lineno, n.end_col_offset))
        type_params = getattr(node, "type_params", None)  # Python 3.12+: `class C[T: int]:`
        return type_params[-1] if type_params else None
    args = node.args
    if node.returns is not None:
        return node.returns
    if args.kwarg is not None:
        return args.kwarg
    if args.kwonlyargs:
        return args.kw_defaults[-1] or args.kwonlyargs[-1]
    if args.vararg is not None:
        return args.vararg
    if args.defaults:  # defaults belong to the last positional parameters
        return args.defaults[-1]
    if args.args:
        return args.args[-1]
    if args.posonlyargs:
        return args.posonlyargs[-1]
    type_params = getattr(node, "type_params", None)  # Python 3.12+: `def f[T: int]():`
    return type_params[-1] if type_params else None


def _find_colon(text: str, pos: int) -> int:
    """Offset of the first ':' at or after `pos` that is not inside a comment."""
    while True:
        colon = text.find(":", pos)
        if colon < 0:  # cannot happen for a header the parser accepted; keep the rest rather than fail
            return len(text)
        hash_ = text.find("#", pos, colon)
        if hash_ < 0:
            return colon
        # Skip the comment: resume at the end of its line.
        ends = [i for i in (text.find("\n", hash_), text.find("\r", hash_)) if i >= 0]
        pos = min(ends) if ends else len(text)


def _collapse_tokens(header: str) -> str:
    """Rebuild a header from its tokens: comments and continuations dropped, one space wherever the
    source had any gap between two tokens, string literals kept exactly."""
    header = header.replace("\r\n", "\n").replace("\r", "\n")
    starts = [0, *accumulate(len(line) + 1 for line in header.split("\n"))]
    pieces: list[str] = []
    prev_end = -1
    fstring_depth = 0
    fstring_begin = 0
    # The colon is appended so that a trailing continuation or an open bracket never confuses the tokenizer.
    for tok in tokenize.generate_tokens(io.StringIO(header + ":").readline):
        start = starts[tok.start[0] - 1] + tok.start[1]
        end = starts[tok.end[0] - 1] + tok.end[1]
        if tok.type == _FSTRING_START:
            if fstring_depth == 0:
                fstring_begin = start
            fstring_depth += 1
            continue
        if fstring_depth:
            if tok.type == _FSTRING_END:
                fstring_depth -= 1
                if fstring_depth == 0:
                    prev_end = _append(pieces, header, fstring_begin, end, prev_end)
            continue
        if tok.type in _SKIP_TOKENS:
            continue
        if start >= len(header):  # the appended colon
            break
        prev_end = _append(pieces, header, start, end, prev_end)
    return "".join(pieces)


def _append(pieces: list[str], header: str, start: int, end: int, prev_end: int) -> int:
    if pieces and start != prev_end:
        pieces.append(" ")
    pieces.append(header[start:end])
    return end
