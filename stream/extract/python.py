"""Cut a Python file into snippets: one per function, method and class, nested ones included.

The file is parsed once with :func:`ast.parse`; everything else (exact code text, signatures) is read
from the decoded text using the AST's positions, so the cost on top of the parse is one line-offset
table per file plus work proportional to each definition's header.

This module reads the source: decoding, parsing, and for a long file parsing a piece at a time;
:mod:`~stream.extract.python_defs` walks the statements and makes the snippets.
"""

from __future__ import annotations

import ast
import gc
import io
import re
import tokenize
from bisect import bisect_left

from stream.errors import SourceError
from stream.model import Snippet

from .python_defs import LANGUAGE, File, collect, snippet_of

__all__ = ["LANGUAGE", "SUFFIXES", "decode_source", "extract"]

SUFFIXES = (".py",)

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
        file = File(text, relpath)
        try:
            if not _collect_pieces(file):
                file.snippets.clear()
                collect(_parse(text).body, file, None, "", False, set())
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


def _collect_pieces(file: File) -> bool:
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
        collect(body, file, None, "", False, declared_global)
        del body  # before the next piece is parsed: one piece's AST in memory at a time
        line += _line_breaks(text, begin, end)
        begin, size = end, _PIECE
    return True


def _collect_class(file: File, begin: int, end: int, line: int, declared_global: set[str]) -> bool:
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
        collect(body, file, node.name, node.name + ".", True, declared)
        last = (body[-1].end_lineno or 0, body[-1].end_col_offset or 0)
        rest = stmts[1:]
        del stmts, body  # before the next piece is parsed
        node.body = node.body[:1]  # its docstring, if any, is all the class snippet needs of its body
        pos_line += _line_breaks(text, pos, stop)
        pos, size = stop, _PIECE
    assert node is not None
    node.end_lineno, node.end_col_offset = last
    snippet = snippet_of(node, node.name, "class", None, file)
    snippet.trivial = False  # (its first piece may look so, but each other piece starts with a definition)
    file.snippets.insert(mark, snippet)
    collect(rest, file, None, "", False, declared_global)
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
