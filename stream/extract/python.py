"""Cut a Python file into snippets: one per function, method and class, nested ones included.

The file is parsed once with :func:`ast.parse`; everything else (exact code text, signatures) is read
from the decoded text using the AST's positions, so the cost on top of the parse is one line-offset
table per file plus work proportional to each definition's header.
"""

from __future__ import annotations

import ast
import gc
import io
import re
import tokenize
from bisect import bisect_left
from inspect import cleandoc
from itertools import accumulate, count
from operator import sub

from stream.errors import SourceError
from stream.model import Snippet

__all__ = ["LANGUAGE", "SUFFIXES", "decode_source", "extract"]

LANGUAGE = "python"
SUFFIXES = (".py",)

_FuncDef = ast.FunctionDef | ast.AsyncFunctionDef
_Def = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
# Snippet kind by node type, indexed by "directly in a class body".
_DEF_KINDS: dict[type, tuple[str, str]] = {
    ast.FunctionDef: ("function", "method"),
    ast.AsyncFunctionDef: ("async_function", "async_method"),
    ast.ClassDef: ("class", "class"),
}

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
# In a header, what is kept verbatim (group 1: string literals, whose ends are found by skipping
# escapes) and what collapses to one space (whitespace, backslash continuations and comments). Scanning
# left to right, a '#' or quote inside a string is consumed with the string and never seen alone.
_TRIPLE_SINGLE = r"'''[^'\\]*(?:(?:\\(?:\r\n|.)|'(?!''))[^'\\]*)*'''"
_TRIPLE_DOUBLE = r'"""[^"\\]*(?:(?:\\(?:\r\n|.)|"(?!""))[^"\\]*)*"""'
_SINGLE = r"'[^'\\\r\n]*(?:\\(?:\r\n|.)[^'\\\r\n]*)*'"
_DOUBLE = r'"[^"\\\r\n]*(?:\\(?:\r\n|.)[^"\\\r\n]*)*"'
_GAP = r"(?:[ \t\f\r\n]|\\(?:\r\n|\r|\n)|#[^\r\n]*)+"
_HEADER_PIECES = re.compile(f"({_TRIPLE_SINGLE}|{_TRIPLE_DOUBLE}|{_SINGLE}|{_DOUBLE})|{_GAP}", re.DOTALL)
# A file longer than this many characters is parsed a piece of about this size at a time (see
# `_collect_pieces`): a whole AST takes some 200 bytes of memory per character of source (70 MB for a
# 340 KB test module), and the largest file would set the peak memory of the run.
_PIECE = 1 << 15
# Where a piece may end: before a line that starts a definition or decorator (group 1: its indentation).
_DEF_LINE = re.compile(r"^([ \t]*)(?:@|def[ \t]|class[ \t]|async[ \t]+def[ \t])", re.M)


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
    # The cyclic garbage collector would traverse the whole, freshly allocated AST again and again while
    # it is built and walked, for nothing: ASTs hold no reference cycles, and refcounting frees them.
    # Pausing it for one file makes extraction faster than a plain ast.parse with it running.
    collecting = gc.isenabled()
    gc.disable()
    try:
        text = decode_source(data)
        file = _File(text, relpath)
        try:
            if not _collect_pieces(file):
                file.snippets.clear()
                _collect(_parse(text).body, file, None, "", False, set())
        except RecursionError as exc:  # not expected: nesting is capped by the tokenizer's indentation limit
            raise SourceError("too_deeply_nested", str(exc)) from None
    finally:
        if collecting:
            gc.enable()
    # The walk is already pre-order in source order; the sort (stable) only makes that a guarantee.
    file.snippets.sort(key=_start_line)
    return file.snippets


def _start_line(snippet: Snippet) -> int:
    return snippet.start_line


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


def _collect_pieces(file: _File) -> bool:
    """Collect a long file's definitions one piece of the module at a time; False when the file is short,
    or when some piece does not parse on its own (then the caller parses the whole file, as for a short one,
    and any error is the whole file's).

    A piece ends before a top-level ``def``/``class``/decorator line and is parsed after as many blank
    lines as come before it, so every position is the one in the whole file. A piece that parses ends
    where the whole file's tokenizer is between two top-level statements (a cut inside a string, brackets,
    a continuation, or between a decorator and its function leaves the piece incomplete, which fails), so
    the pieces' bodies are exactly the whole file's. A piece that fails is doubled until it parses. A long
    stretch without a top-level cut (one big class) is cut inside the class (`_collect_class`).
    """
    text = file.text
    if len(text) <= 2 * _PIECE or "\0" in text:
        return False
    cuts = _cuts(text, 0, len(text), "")
    declared_global: set[str] = set()
    begin, line, size, at = 0, 1, _PIECE, 0
    while begin < len(text):
        at = bisect_left(cuts, begin + size, at)
        end = cuts[at] if at < len(cuts) else len(text)
        last = cuts[at - 1] if at and cuts[at - 1] > begin else begin  # where the piece's last stretch starts
        if size == _PIECE and end - last > 4 * _PIECE:
            if last > begin:
                end = last  # the statements before the long stretch make a piece of their own
            elif _collect_class(file, begin, end, line, declared_global):
                line += _line_breaks(text, begin, end)
                begin = end
                continue
        body = _parse_piece(text, begin, end, line)
        if body is None:
            if end == len(text):
                return False
            size *= 2
            continue
        _collect(body, file, None, "", False, declared_global)
        del body  # before the next piece is parsed: one piece's AST in memory at a time
        line += _line_breaks(text, begin, end)
        begin, size = end, _PIECE
    return True


def _collect_class(file: _File, begin: int, end: int, line: int, declared_global: set[str]) -> bool:
    """Collect a long top-level class, text[begin:end] from line `line`, a piece of its body at a time;
    False, with nothing collected, when the stretch is no class or does not cut as expected (the caller then
    parses it as one piece).

    Pieces end before ``def``/``class``/decorator lines at the indentation of the class body. The first
    piece (the header and the body's first statements) is parsed as it is, each other one as the body of a
    stand-in ``class _:`` on the line above it, so positions are the whole file's. As at the top level, a
    piece that parses ends between two statements of the class body, and one that fails is doubled. The
    last piece may hold statements after the class (up to the next top-level cut): they are the module's.
    """
    text = file.text
    if not text.startswith(("class", "@"), begin):
        return False
    indent = next((m.group(1) for m in _DEF_LINE.finditer(text, begin, end) if m.group(1)), "")
    cuts = _cuts(text, begin, end, indent) if indent else []
    mark = len(file.snippets)
    node: ast.ClassDef | None = None
    declared: set[str] = set()  # names the class body declares global
    last = (line, 0)  # where the class body ends (so far)
    rest: list[ast.stmt] = []
    pos, pos_line, size, at = begin, line, _PIECE, 0
    while pos < end:
        at = bisect_left(cuts, pos + size, at)
        stop = cuts[at] if at < len(cuts) else end
        if node is None and stop == end:
            return False  # one piece after all
        stmts = _parse_piece(text, pos, stop, pos_line, "" if node is None else "class _:\n")
        if stmts is None:
            if stop == end:
                del file.snippets[mark:]
                return False
            size *= 2
            continue
        if node is None:
            node = stmts[0]
            if len(stmts) != 1 or type(node) is not ast.ClassDef or node.body[0].col_offset != len(indent):
                return False
        elif len(stmts) != 1 and stop != end:  # the class ended before the cut: not a cut in its body
            del file.snippets[mark:]
            return False
        body = stmts[0].body
        _collect(body, file, node.name, node.name + ".", True, declared)
        last = (body[-1].end_lineno or 0, body[-1].end_col_offset or 0)
        rest = stmts[1:]
        del stmts, body  # before the next piece is parsed
        node.body = node.body[:1]  # its docstring, if any, is all the class snippet needs of its body
        pos_line += _line_breaks(text, pos, stop)
        pos, size = stop, _PIECE
    assert node is not None
    node.end_lineno, node.end_col_offset = last
    snippet = _snippet(node, node.name, "class", None, file)
    snippet.trivial = False  # (its first piece may look so, but each other piece starts with a definition)
    file.snippets.insert(mark, snippet)
    _collect(rest, file, None, "", False, declared_global)
    return True


def _cuts(text: str, begin: int, end: int, indent: str) -> list[int]:
    """Offsets in text[begin:end] of the lines that start a definition or decorator at exactly `indent`, but
    for those right below a decorator (a cut there would part a definition from its decorators)."""
    cuts = []
    for m in _DEF_LINE.finditer(text, begin, end):
        at = m.start()
        if m.group(1) != indent or (at and text.startswith(indent + "@", text.rfind("\n", 0, at - 1) + 1)):
            continue
        cuts.append(at)
    return cuts


def _parse_piece(text: str, begin: int, end: int, line: int, header: str = "") -> list[ast.stmt] | None:
    """The statements of text[begin:end] (starting at line `line`) parsed after `header` and blank lines, so
    that their positions are the whole text's; None if they do not parse so."""
    try:
        return ast.parse("\n" * (line - 1 - header.count("\n")) + header + text[begin:end]).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _line_breaks(text: str, begin: int, end: int) -> int:
    """Line breaks in text[begin:end] as Python counts them (\r\n, \r, \n); `begin` follows one, or is 0."""
    return text.count("\n", begin, end) + text.count("\r", begin, end) - text.count("\r\n", begin, end)


class _File:
    """One file being cut: its text, a line table built once, and the snippets found so far."""

    __slots__ = ("ascii", "cum", "path", "snippets", "text")

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.snippets: list[Snippet] = []
        # AST columns count UTF-8 bytes; for pure-ASCII text (most files) they are character offsets.
        self.ascii = text.isascii()
        # Line k starts at offset cum[k - 1] + k - 1 (cum: lengths of the lines before, endings excluded,
        # as if each ending were one character). Built with C-level split/accumulate; the table has one
        # entry past the last line, so text[start(k):start(k + 1)] is line k with its ending.
        if "\r" in text:
            parts = _NEWLINE.split(text)  # [line, ending, line, ending, ..., line]
            starts = [0, *accumulate(map(len, parts))][::2]
            starts.append(len(text))
            self.cum = list(map(sub, starts, count()))
        else:
            self.cum = list(accumulate(map(len, text.split("\n")), initial=0))

    def offset(self, line: int, col: int) -> int:
        """Text offset of an AST position (`col` counts UTF-8 bytes, as the AST does)."""
        start = self.cum[line - 1] + line - 1
        if self.ascii:
            return start + col
        line_text = self.text[start : self.cum[line] + line]
        if line_text.isascii():
            return start + col
        return start + len(line_text.encode("utf-8")[:col].decode("utf-8"))


def _collect(
    body: list[ast.stmt],
    file: _File,
    parent: str | None,
    prefix: str,
    in_class: bool,
    declared_global: set[str],
) -> None:
    """Add a snippet for each definition in `body`, then for the definitions nested in it (pre-order).

    `body` is a block of the scope named `parent` (None for the module); `prefix` is what qualnames in it
    start with. Only statement blocks are visited: definitions cannot hide inside expressions (lambdas
    are not snippets), so this is far cheaper than ``ast.walk``. Recursion depth is bounded by the
    tokenizer's limit of 100 indentation levels, since every nested block is indented.
    """
    for node in body:
        kinds = _DEF_KINDS.get(type(node))
        if kinds is not None:
            name = node.name
            # Like the compiler: a name declared `global` in the enclosing scope gets a bare qualname.
            qualname = name if name in declared_global else prefix + name
            file.snippets.append(_snippet(node, qualname, kinds[in_class], parent, file))
            if type(node) is ast.ClassDef:
                _collect(node.body, file, qualname, qualname + ".", True, set())
            elif _may_define(node, file):
                _collect(node.body, file, qualname, qualname + ".<locals>.", False, set())
        elif type(node) is ast.Global:
            declared_global.update(node.names)
        else:
            fields = _BLOCKS.get(type(node))
            if fields is not None:
                for field in fields:
                    _collect(getattr(node, field), file, parent, prefix, in_class, declared_global)


def _may_define(node: _FuncDef, file: _File) -> bool:
    """False when the function's body cannot hold a nested def or class, so walking it can be skipped.

    Most functions are leaves; a C-level substring search over the body's text is much cheaper than
    visiting their statements. Never wrong the other way: the keyword is always a whole word there.
    """
    first = node.body[0].lineno
    if first == node.lineno:  # body on the header line: the search would find this node's own 'def'
        return True
    text, cum, last = file.text, file.cum, node.end_lineno or first
    begin, end = cum[first - 1] + first - 1, cum[last] + last
    return _has_word(text, "def", begin, end) or _has_word(text, "class", begin, end)


def _has_word(text: str, word: str, begin: int, end: int) -> bool:
    """Whether `word` occurs in text[begin:end] not glued to identifier characters ("default" does not
    count, so fewer leaf functions are walked for nothing; a docstring's "def" still does)."""
    at = text.find(word, begin, end)
    while at >= 0:
        after = at + len(word)
        if not _is_name_char(text[at - 1]) and not _is_name_char(text[after : after + 1]):
            return True
        at = text.find(word, after, end)
    return False


def _is_name_char(char: str) -> bool:
    return char.isidentifier() or char.isdigit()


def _snippet(node: _Def, qualname: str, kind: str, parent: str | None, file: _File) -> Snippet:
    start_line = _first_decorator_line(node, file) if node.decorator_list else node.lineno
    end_line = node.end_lineno or node.lineno
    cum = file.cum
    snippet = Snippet(
        file.path,
        LANGUAGE,
        kind,
        qualname,
        start_line,
        end_line,
        file.text[cum[start_line - 1] + start_line - 1 : cum[end_line] + end_line],
        _docstring(node),
        _signature(node, file),
        parent,
    )
    if len(node.body) <= 2 and _trivial_body(node.body):
        snippet.trivial = True
    return snippet


def _trivial_body(body: list[ast.stmt]) -> bool:
    """`pass`, `...`, a docstring, `raise NotImplementedError[(...)]`: at most a docstring and one of these."""
    for stmt in body:
        kind = type(stmt)
        if kind is ast.Pass:
            continue
        if kind is ast.Expr and type(stmt.value) is ast.Constant:  # a docstring or `...`
            continue
        if kind is ast.Raise and stmt.exc is not None:
            exc = stmt.exc.func if type(stmt.exc) is ast.Call else stmt.exc
            if type(exc) is ast.Name and exc.id == "NotImplementedError":
                continue
        return False
    return True


def _docstring(node: _Def) -> str | None:
    # Same result as ast.get_docstring(node), minus its generic isinstance checks (a hot path).
    first = node.body[0]
    if type(first) is ast.Expr and type(first.value) is ast.Constant and type(first.value.value) is str:
        return cleandoc(first.value.value)
    return None


def _first_decorator_line(node: _Def, file: _File) -> int:
    # The first decorator expression's line is usually the '@' line, but `@(\n deco\n)` puts the
    # expression below its '@'. Between '@' and the expression there is only whitespace, brackets and
    # comments, so the '@' line is the nearest one at or above that starts with '@'.
    line = node.decorator_list[0].lineno
    text, cum = file.text, file.cum
    while line > 1 and not text[cum[line - 1] + line - 1 : cum[line] + line].lstrip().startswith("@"):
        line -= 1
    return line


def _signature(node: _Def, file: _File) -> str:
    """The definition's header from its keyword to just before the colon, comments dropped and
    whitespace runs collapsed to one space (string literals are copied verbatim)."""
    text = file.text
    last = _last_header_node(node)
    if file.ascii:  # the common case, inlined: columns are character offsets
        cum = file.cum
        line = node.lineno  # of 'def' / 'async' / 'class'; decorators come before
        begin = cum[line - 1] + line - 1 + node.col_offset
        if last is None:
            after = begin
        else:
            line = last.end_lineno or line
            after = cum[line - 1] + line - 1 + (last.end_col_offset or 0)
    else:
        begin = file.offset(node.lineno, node.col_offset)
        after = (
            begin if last is None else file.offset(last.end_lineno or node.lineno, last.end_col_offset or 0)
        )
    colon = _find_colon(text, after)
    header = text[begin:colon]
    if "#" not in header and "'" not in header and '"' not in header and "\\" not in header:
        # No comments, strings or continuations: plain whitespace collapsing is exact.
        return " ".join(header.split())
    return _HEADER_PIECES.sub(_keep_strings, header).strip()


def _keep_strings(match: re.Match[str]) -> str:
    return match.group(1) or " "


def _last_header_node(node: _Def) -> ast.AST | None:
    """The AST node that ends last in the header (None for `def f()` / `class C`).

    Past its end only brackets, commas, '/', whitespace, continuations and comments can come before the
    header's colon. Colons that are not the header's (annotations, lambdas, dict and slice literals,
    strings) all lie inside the header's AST nodes, so they are skipped by starting after this one.
    """
    if type(node) is ast.ClassDef:
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
