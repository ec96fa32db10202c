"""Cut TypeScript, JavaScript, Go, Rust, Java, C, C++ and Ruby files into snippets with tree-sitter.

One parse and one query per file: the query (run in C over the whole tree) finds every definition, and
Python only visits what it captured, sorted into source order, with a stack of the enclosing
definitions giving nesting. Grammars are imported when a language is first used and cached per process.

Snippets and kinds
    ``function``   free function; JS/TS also ``const f = () => ...`` / ``= function ...`` (named after the
                   variable, at any depth), an anonymous ``export default`` function (named ``default``)
                   and CommonJS ``exports.f = ...`` (``f``), ``module.exports = function g`` (``g``, else
                   ``default``); ``Cls.prototype.m = function`` is the method ``Cls.m``
    ``method``     a function directly inside a class, struct, interface, trait, impl, enum or Ruby module,
                   a Go method, a C++ function defined out of line (``void B::c() {}``), Ruby ``def self.x``,
                   a JS/TS class field initialised with a function; constructors too (Java ``Foo.Foo``,
                   C++ ``Foo.Foo`` and ``Foo.~Foo``, JS ``Foo.constructor``, Ruby ``Foo.initialize``)
    ``class``      JS/TS/Java/C++ classes (JS/TS also ``const C = class ...`` and ``export default class``,
                   named ``C`` and ``default``), Java records, Ruby classes
    ``struct``     Go/Rust/C/C++ structs and unions (``typedef struct { ... } T`` is named ``T``)
    ``enum`` ``interface`` ``trait`` ``impl``
                   as declared (Go interfaces, Java ``@interface`` are ``interface``)
    ``type``       TS type aliases spanning more than one line (``type Id = string`` is not worth a snippet)

Not snippets: declarations without a body (C prototypes, TS overload and interface method signatures,
abstract Java methods, Rust trait methods without a default body), anonymous classes, structs and
enums (their members still are), lambdas and closures, object-literal methods, Go ``type X int``.
Namespaces and modules (C++ ``namespace``, Rust ``mod``, TS ``namespace``, Ruby ``module``) are not
snippets but their names are part of the qualnames inside them.

Qualnames
    Names joined with ``.`` in every language, enclosing definitions and namespaces first, no
    ``<locals>`` marker: ``Outer.inner``, ``a.B.c`` for C++ ``namespace a { class B { void c() {} } }``.
    Rust methods take the impl's type (generics and paths dropped): ``impl<T> fmt::Display for
    x::Foo<T> { fn fmt }`` is ``Foo.fmt``, the impl itself ``Foo``. Go methods take the receiver's type
    (``func (s *Server) Start()`` is ``Server.Start``); C++ out-of-line definitions their written scope
    (``void ns::B::c() {}`` is ``ns.B.c``); Ruby ``Foo::Bar`` and ``def self.x`` give ``Foo.Bar`` and
    ``Foo.Bar.x``. ``parent`` is the qualname of the innermost enclosing definition (namespaces do not
    count) or, for a receiver or written scope, the qualname minus its last name; None at top level.

Lines and text
    Lines end at ``\\n`` (as tree-sitter counts them; a ``\\r`` before it stays in the text). A
    snippet's lines are whole lines, first to last, exactly as in the file (indentation, comments and
    ``\\r\\n`` kept). It starts at the first decorator (TS), attribute (Rust ``#[...]``) or annotation
    (Java), at ``export``, at ``template <...>`` (C++), at ``typedef`` (C) or at ``type`` (Go, one spec):
    a doc comment above is not part of the snippet but goes, cleaned, into ``docstring``.

Docstrings
    The comment lines directly above the snippet's first line (no blank line between), markers and a
    leading ``*`` column removed, indentation normalised as :func:`inspect.cleandoc` does:
    JS/TS/Java only the nearest ``/** ... */``; Rust ``///`` and ``/** */`` (not ``//!``, which
    documents the enclosing module, nor plain ``//``), plus doc comments between its attributes;
    Go, C, C++ and Ruby any comment (Go ``//go:...`` directives dropped).

Signatures
    The header from its first keyword or modifier (``pub``, ``static``, ``async``, C++ ``template <...>``;
    not ``export``, decorators, attributes or annotations) up to where the body opens, comments dropped and
    whitespace runs folded to one space: ``func (s *Server) Start(ctx context.Context) error``,
    ``const f = async (a: number) =>``, ``impl fmt::Display for Score``, ``type Page<T>`` (TS alias).
    Ruby: the ``def``/``class`` line up to its parameters or superclass.

Encoding and errors
    UTF-8 only, a BOM is dropped (positions stay right); anything else is ``SourceError("decode_error")``
    and a NUL byte ``invalid_source``. Tree-sitter never rejects a file: a definition whose own subtree
    contains an ERROR or MISSING node is left out, every other one is kept (enclosing names are still
    used for qualnames). Only when the tree has errors and nothing at all could be extracted is the file
    a ``SourceError("syntax_error", "line L, column C: ...")`` naming the first error (1-based, the
    column in characters). A grammar that is not installed is ``SourceError("language_unsupported")``.

Modules
    This one loads grammars and walks the captures; :mod:`~stream.extract.queries` holds the tables (the
    queries, suffixes, shebangs, comment styles), :mod:`~stream.extract.treesitter_names` names a captured
    node and :mod:`~stream.extract.treesitter_snippet` cuts its lines, docstring and signature.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from stream.errors import SourceError
from stream.model import Snippet

from .queries import LANGUAGES, OWNERS, SHEBANGS, SPECS, Spec
from .treesitter_names import definition_names
from .treesitter_snippet import File

__all__ = ["LANGUAGES", "SHEBANGS", "available", "extract"]

_INSTALL_HINT = "language support not installed (pip install 'snipstream[langs]')"
_BOM = b"\xef\xbb\xbf"


# --- Grammar loading ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Grammar:
    language: Any  # tree_sitter.Language
    query: Any  # tree_sitter.Query
    parser_class: Any  # tree_sitter.Parser
    cursor_class: Any  # tree_sitter.QueryCursor


# language -> its loaded grammar, or the reason it cannot load (cached too: a failed import scans
# sys.path again on every attempt). Filled lazily in each process, so spawned workers load on first use.
_LOADED: dict[str, _Grammar | str] = {}


def available(language: str) -> bool:
    """Whether `language` is known and its grammar (and tree-sitter itself) can be imported."""
    return language in SPECS and isinstance(_grammar(language), _Grammar)


def _grammar(language: str) -> _Grammar | str:
    loaded = _LOADED.get(language)
    if loaded is None:
        loaded = _LOADED[language] = _load(SPECS[language])
    return loaded


def _load(spec: Spec) -> _Grammar | str:
    """Import tree-sitter and the grammar wheel and compile the query; a string says what is missing."""
    try:
        tree_sitter = importlib.import_module("tree_sitter")
    except ImportError as exc:
        return f"{_INSTALL_HINT}: cannot import tree_sitter ({exc})"
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        wheel = spec.module.replace("_", "-")
        return f"{_INSTALL_HINT}: cannot import {spec.module} from {wheel} ({exc})"
    try:
        language = tree_sitter.Language(getattr(module, spec.function)())
        query = tree_sitter.Query(language, spec.query)
    except (AttributeError, ValueError, TypeError, tree_sitter.QueryError) as exc:  # ABI or version mismatch
        return f"{_INSTALL_HINT}: {spec.module} does not work with this tree-sitter ({exc})"
    return _Grammar(language, query, tree_sitter.Parser, tree_sitter.QueryCursor)


# --- Extraction -------------------------------------------------------------------------------------


def extract(data: bytes, relpath: str, language: str) -> list[Snippet]:
    """Return a snippet for every definition in the file (see the module docstring), in source order.

    `data` is the file's raw bytes, `relpath` the path recorded in each snippet and `language` a key of
    :data:`LANGUAGES`. A pure function of its arguments, safe in threads (each call has its own parser)
    and in worker processes. Raises :class:`SourceError` with reason ``language_unsupported``,
    ``decode_error``, ``invalid_source`` (NUL byte) or ``syntax_error``.
    """
    spec = SPECS.get(language)
    if spec is None:
        raise SourceError("language_unsupported", f"no extractor for language {language!r}")
    grammar = _grammar(language)
    if isinstance(grammar, str):
        raise SourceError("language_unsupported", grammar)
    data, text = _decode(data)
    root = grammar.parser_class(grammar.language).parse(data).root_node
    found = grammar.cursor_class(grammar.query).captures(root)
    snippets = _cut(found, File(data, text, relpath, language, spec)) if found else []
    if not snippets and root.has_error:
        raise SourceError("syntax_error", _first_error(root, data))
    return snippets


def _decode(data: bytes) -> tuple[bytes, str]:
    """The bytes to parse (without a BOM) and their text; SourceError unless UTF-8 without NUL bytes."""
    if data.startswith(_BOM):
        data = data[3:]  # parsed without it: every byte offset and column is then relative to the text
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError("decode_error", str(exc)) from None
    if "\0" in text:
        raise SourceError("invalid_source", "source contains a NUL byte")
    return data, text


def _cut(found: dict[str, list[Any]], file: File) -> list[Snippet]:
    """Visit the captured nodes in source order, naming each from the stack of those enclosing it, and
    collect the snippets of those without errors."""
    data = file.data
    # Pre-order: by start, the outer of two nodes starting together first.
    items = [(node.start_byte, -node.end_byte, role, node) for role, nodes in found.items() for node in nodes]
    items.sort(key=_position)
    snippets = file.snippets
    # Enclosing definitions: (end byte, prefix for names inside, owner?, parent for definitions inside).
    stack: list[tuple[int, str, bool, str | None]] = []
    for start, _, role, node in items:
        while stack and stack[-1][0] <= start:
            stack.pop()
        prefix, owned, enclosing = stack[-1][1:] if stack else ("", False, None)
        names = definition_names(node, data)
        if names is None:  # anonymous: transparent, but an anonymous class still owns its methods
            stack.append((node.end_byte, prefix, role in OWNERS, enclosing))
            continue
        qualname = prefix + ".".join(names)
        if role == "namespace" or role == "module":
            stack.append((node.end_byte, qualname + ".", role == "module", enclosing))
            continue
        parent = prefix + ".".join(names[:-1]) if len(names) > 1 else enclosing
        kind = role
        if role == "function" and (owned or len(names) > 1):
            kind = "method"
        stack.append((node.end_byte, qualname + ".", kind in OWNERS, qualname))
        if node.has_error:
            continue
        snippet = file.snippet(node, kind, qualname, parent)
        if snippet is not None:
            snippets.append(snippet)
    return snippets


def _position(item: tuple[int, int, str, Any]) -> tuple[int, int]:
    return item[0], item[1]


# --- Errors -------------------------------------------------------------------------------------------


def _first_error(root: Any, data: bytes) -> str:
    """``line L, column C: unexpected '...'`` (or ``missing X``) for the first error in the tree."""
    node = root
    while not (node.is_error or node.is_missing):
        for child in node.children:
            if child.is_error or child.is_missing or child.has_error:
                node = child
                break
        else:
            break  # has_error without a flagged child: report the node itself
    row, column = node.start_point
    line_start = data.rfind(b"\n", 0, node.start_byte) + 1
    column = len(data[line_start : line_start + column].decode("utf-8", "replace")) + 1
    if node.is_missing:
        what = f"missing {node.type!r}"
    else:
        found = data[node.start_byte : node.end_byte].decode("utf-8", "replace").split("\n")[0].strip()
        what = f"unexpected {found[:30]!r}" if found else "syntax error"
    return f"line {row + 1}, column {column}: {what}"
