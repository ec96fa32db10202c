"""The Python AST walk: from a parsed module's statements to one snippet per function, method and class.

Given the statements (of a whole module or of one piece of it, see :mod:`stream.extract.python`), visits
the blocks that can hold definitions, names each one (``<locals>`` and ``global`` as the compiler does),
and reads its exact code, docstring and signature from the file's text by the AST's positions.
"""

from __future__ import annotations

import ast
import re
from inspect import cleandoc
from itertools import accumulate, count
from operator import sub

from stream.model import Snippet

__all__ = ["LANGUAGE", "File", "collect", "snippet_of"]

#: the language every snippet cut here is in
LANGUAGE = "python"

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


class File:
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


def collect(
    body: list[ast.stmt],
    file: File,
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
            file.snippets.append(snippet_of(node, qualname, kinds[in_class], parent, file))
            if type(node) is ast.ClassDef:
                collect(node.body, file, qualname, qualname + ".", True, set())
            elif _may_define(node, file):
                collect(node.body, file, qualname, qualname + ".<locals>.", False, set())
        elif type(node) is ast.Global:
            declared_global.update(node.names)
        else:
            fields = _BLOCKS.get(type(node))
            if fields is not None:
                for field in fields:
                    collect(getattr(node, field), file, parent, prefix, in_class, declared_global)


def _may_define(node: _FuncDef, file: File) -> bool:
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


def snippet_of(node: _Def, qualname: str, kind: str, parent: str | None, file: File) -> Snippet:
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


def _first_decorator_line(node: _Def, file: File) -> int:
    # The first decorator expression's line is usually the '@' line, but `@(\n deco\n)` puts the
    # expression below its '@'. Between '@' and the expression there is only whitespace, brackets and
    # comments, so the '@' line is the nearest one at or above that starts with '@'.
    line = node.decorator_list[0].lineno
    text, cum = file.text, file.cum
    while line > 1 and not text[cum[line - 1] + line - 1 : cum[line] + line].lstrip().startswith("@"):
        line -= 1
    return line


def _signature(node: _Def, file: File) -> str:
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
