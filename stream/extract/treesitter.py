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
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from inspect import cleandoc
from typing import Any

from stream.errors import SourceError
from stream.model import Snippet

__all__ = ["LANGUAGES", "SHEBANGS", "available", "extract"]

LANGUAGES: dict[str, tuple[str, ...]] = {
    "typescript": (".ts", ".mts", ".cts"),
    "tsx": (".tsx",),
    "javascript": (".js", ".mjs", ".cjs", ".jsx"),
    "go": (".go",),
    "rust": (".rs",),
    "java": (".java",),
    "c": (".c", ".h"),
    "cpp": (".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx"),
    "ruby": (".rb",),
}

# Interpreter named in a shebang line -> language. Deno, ts-node, tsx and Bun scripts are parsed as
# TypeScript: its grammar also reads plain JavaScript (JSX aside).
SHEBANGS: dict[str, str] = {
    "node": "javascript",
    "nodejs": "javascript",
    "deno": "typescript",
    "ts-node": "typescript",
    "tsx": "typescript",
    "bun": "typescript",
    "ruby": "ruby",
    "jruby": "ruby",
    "truffleruby": "ruby",
}

_INSTALL_HINT = "language support not installed (pip install 'snipstream[langs]')"
_BOM = b"\xef\xbb\xbf"

# --- What each language captures --------------------------------------------------------------------
# Capture names are roles: a snippet kind, "function" (a method when directly inside an owner), or
# "namespace" / "module" (names only; a Ruby module is also an owner, its defs are methods).

_JS_COMMON = """
(function_declaration) @function
(generator_function_declaration) @function
(class_declaration) @class
(class_body (method_definition) @method)
(variable_declarator
  name: (identifier)
  value: [(arrow_function) (function_expression) (generator_function)]) @function
(export_statement value: [(arrow_function) (function_expression) (generator_function)] @function)
(export_statement value: (class) @class)
(variable_declarator name: (identifier) value: (class)) @class
(expression_statement
  (assignment_expression
    left: (member_expression)
    right: [(arrow_function) (function_expression) (generator_function)]) @function)
"""
_JS_QUERY = (
    _JS_COMMON
    + """
(class_body (field_definition value: [(arrow_function) (function_expression) (generator_function)]) @method)
"""
)
_TS_QUERY = (
    _JS_COMMON
    + """
(class_body
  (public_field_definition value: [(arrow_function) (function_expression) (generator_function)]) @method)
(abstract_class_declaration) @class
(interface_declaration) @interface
(enum_declaration) @enum
(type_alias_declaration) @type
(internal_module name: [(identifier) (nested_identifier)]) @namespace
(module name: [(identifier) (nested_identifier)]) @namespace
"""
)
_GO_QUERY = """
(function_declaration) @function
(method_declaration) @method
(type_spec type: (struct_type)) @struct
(type_spec type: (interface_type)) @interface
"""
_RUST_QUERY = """
(function_item) @function
(struct_item) @struct
(union_item) @struct
(enum_item) @enum
(trait_item) @trait
(impl_item) @impl
(mod_item body: (_)) @namespace
"""
_JAVA_QUERY = """
(class_declaration) @class
(record_declaration) @class
(interface_declaration) @interface
(annotation_type_declaration) @interface
(enum_declaration) @enum
(method_declaration body: (_)) @method
(constructor_declaration) @method
(compact_constructor_declaration) @method
"""
_C_QUERY = """
(function_definition body: (_)) @function
(struct_specifier body: (_)) @struct
(union_specifier body: (_)) @struct
(enum_specifier body: (_)) @enum
"""
_CPP_QUERY = (
    _C_QUERY
    + """
(class_specifier body: (_)) @class
(namespace_definition) @namespace
"""
)
_RUBY_QUERY = """
(method) @function
(singleton_method) @method
(class) @class
(module) @module
"""

_OWNERS = frozenset({"class", "struct", "enum", "interface", "trait", "impl", "module"})
_COMMENTS = frozenset({"comment", "line_comment", "block_comment"})
# Siblings in front of a definition that belong to it: TS member decorators, Rust attributes.
_ATTRIBUTES = frozenset({"decorator", "attribute_item"})
# Leading children of a definition that the signature leaves out.
_NOT_SIGNATURE = frozenset({"decorator", "attribute_item", "marker_annotation", "annotation", *_COMMENTS})
_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "generator_function"})
_C_RECORDS = frozenset({"struct_specifier", "union_specifier", "enum_specifier", "class_specifier"})
_C_NAMES = frozenset(
    {"identifier", "field_identifier", "qualified_identifier", "destructor_name", "operator_name",
     "template_function", "type_identifier", "operator_cast"}
)  # fmt: skip
# `module.exports = f` (named "default", like `export default`), `exports.x = f`, `module.exports.x = f`
# and `Cls.prototype.x = f` (a method of Cls); any other assignment target is not a name.
_JS_ASSIGNED = re.compile(
    rb"(?:module\s*\.\s*exports|(?:module\s*\.\s*)?exports\s*\.\s*(?P<name>[\w$]+)"
    rb"|(?P<cls>[\w$]+)\s*\.\s*prototype\s*\.\s*(?P<proto>[\w$]+))"
)
_GO_DIRECTIVE = re.compile(rb"//(?:[a-z0-9]+:[a-z0-9]|line |extern |export )")


@dataclass(frozen=True, slots=True)
class _Spec:
    module: str  # the grammar wheel's import name
    function: str  # its function returning the language pointer
    query: str
    line_comment: bytes
    doc: str  # which comments are documentation: "jsdoc" | "rust" | "go" | "any"
    braces: bool = True  # a header ends where the body's brace opens (Ruby: at its last part)


_SPECS: dict[str, _Spec] = {
    "typescript": _Spec("tree_sitter_typescript", "language_typescript", _TS_QUERY, b"//", "jsdoc"),
    "tsx": _Spec("tree_sitter_typescript", "language_tsx", _TS_QUERY, b"//", "jsdoc"),
    "javascript": _Spec("tree_sitter_javascript", "language", _JS_QUERY, b"//", "jsdoc"),
    "go": _Spec("tree_sitter_go", "language", _GO_QUERY, b"//", "go"),
    "rust": _Spec("tree_sitter_rust", "language", _RUST_QUERY, b"//", "rust"),
    "java": _Spec("tree_sitter_java", "language", _JAVA_QUERY, b"//", "jsdoc"),
    "c": _Spec("tree_sitter_c", "language", _C_QUERY, b"//", "any"),
    "cpp": _Spec("tree_sitter_cpp", "language", _CPP_QUERY, b"//", "any"),
    "ruby": _Spec("tree_sitter_ruby", "language", _RUBY_QUERY, b"#", "any", braces=False),
}


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
    return language in _SPECS and isinstance(_grammar(language), _Grammar)


def _grammar(language: str) -> _Grammar | str:
    loaded = _LOADED.get(language)
    if loaded is None:
        loaded = _LOADED[language] = _load(_SPECS[language])
    return loaded


def _load(spec: _Spec) -> _Grammar | str:
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
    spec = _SPECS.get(language)
    if spec is None:
        raise SourceError("language_unsupported", f"no extractor for language {language!r}")
    grammar = _grammar(language)
    if isinstance(grammar, str):
        raise SourceError("language_unsupported", grammar)
    if data.startswith(_BOM):
        data = data[3:]  # parsed without it: every byte offset and column is then relative to the text
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError("decode_error", str(exc)) from None
    if "\0" in text:
        raise SourceError("invalid_source", "source contains a NUL byte")

    root = grammar.parser_class(grammar.language).parse(data).root_node
    found = grammar.cursor_class(grammar.query).captures(root)
    if not found:
        if root.has_error:
            raise SourceError("syntax_error", _first_error(root, data))
        return []
    # Pre-order: by start, the outer of two nodes starting together first.
    items = [(node.start_byte, -node.end_byte, role, node) for role, nodes in found.items() for node in nodes]
    items.sort(key=_position)

    file = _File(data, text, relpath, language, spec)
    snippets = file.snippets
    # Enclosing definitions: (end byte, prefix for names inside, owner?, parent for definitions inside).
    stack: list[tuple[int, str, bool, str | None]] = []
    for start, _, role, node in items:
        while stack and stack[-1][0] <= start:
            stack.pop()
        prefix, owned, enclosing = stack[-1][1:] if stack else ("", False, None)
        names = _names(node, data)
        if names is None:  # anonymous: transparent, but an anonymous class still owns its methods
            stack.append((node.end_byte, prefix, role in _OWNERS, enclosing))
            continue
        qualname = prefix + ".".join(names)
        if role == "namespace" or role == "module":
            stack.append((node.end_byte, qualname + ".", role == "module", enclosing))
            continue
        parent = prefix + ".".join(names[:-1]) if len(names) > 1 else enclosing
        kind = role
        if role == "function" and (owned or len(names) > 1):
            kind = "method"
        stack.append((node.end_byte, qualname + ".", kind in _OWNERS, qualname))
        if node.has_error:
            continue
        snippet = file.snippet(node, kind, qualname, parent)
        if snippet is not None:
            snippets.append(snippet)

    if not snippets and root.has_error:
        raise SourceError("syntax_error", _first_error(root, data))
    return snippets


def _position(item: tuple[int, int, str, Any]) -> tuple[int, int]:
    return item[0], item[1]


class _File:
    """One file being cut: its bytes and text, and the snippets found so far."""

    __slots__ = ("ascii", "data", "language", "path", "snippets", "spec", "text")

    def __init__(self, data: bytes, text: str, path: str, language: str, spec: _Spec) -> None:
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


# --- Names --------------------------------------------------------------------------------------------


def _text(node: Any, data: bytes) -> str:
    return data[node.start_byte : node.end_byte].decode("utf-8")


def _names(node: Any, data: bytes) -> list[str] | None:
    """The names a definition adds to the qualname (several for ``B::c``, a Go receiver, ``Foo::Bar``),
    or None when it has none."""
    type_ = node.type
    if type_ == "function_definition":
        return _c_function_names(node, data)
    if type_ in _C_RECORDS:
        return _c_record_names(node, data)
    if type_ in _FUNCTION_VALUES:  # export default function () {}
        return ["default"]
    if type_ == "assignment_expression":  # CommonJS exports and prototype methods
        match = _JS_ASSIGNED.fullmatch(data, node.start_byte, node.child_by_field_name("left").end_byte)
        if match is None:
            return None
        if match["cls"]:
            return [match["cls"].decode(), match["proto"].decode()]
        if match["name"]:
            return [match["name"].decode()]
        own = node.child_by_field_name("right").child_by_field_name("name")  # module.exports = function f
        return [_text(own, data)] if own is not None else ["default"]
    name = node.child_by_field_name("name")
    if type_ == "method_declaration":
        receiver = node.child_by_field_name("receiver")
        if receiver is not None and name is not None:  # Go; Java methods have no receiver
            type_name = _receiver_type(receiver, data)
            return [type_name, _text(name, data)] if type_name else [_text(name, data)]
    elif type_ == "impl_item":
        impl_type = node.child_by_field_name("type")
        return [_base_type_name(impl_type, data)] if impl_type is not None else None
    elif type_ == "field_definition":  # JS class field
        name = node.child_by_field_name("property")
    elif type_ == "singleton_method":  # Ruby def self.x / def Foo.x
        obj = node.child_by_field_name("object")
        if name is None:
            return None
        if obj is None or obj.type == "self":
            return [_text(name, data)]
        return [*_split_scope(_text(obj, data)), _text(name, data)]
    if name is None:
        parent = node.parent  # export default class { ... }
        return ["default"] if parent is not None and parent.type == "export_statement" else None
    name_type = name.type
    if name_type in ("scope_resolution", "nested_namespace_specifier"):  # Ruby Foo::Bar, C++ a::b
        return _split_scope(_text(name, data))
    if name_type == "nested_identifier":  # TS namespace A.B
        return _text(name, data).split(".")
    if name_type == "string":  # TS declare module "pkg": transparent
        return None
    return [_text(name, data)]


def _split_scope(text: str) -> list[str]:
    return [part.strip() for part in text.split("::") if part.strip()]


def _base_type_name(node: Any, data: bytes) -> str:
    """``Foo`` for ``Foo``, ``Foo<T>``, ``path::Foo<T>``, ``&mut Foo``, ``*Foo`` (Rust impls, Go receivers)."""
    while True:
        type_ = node.type
        if type_ == "generic_type":
            inner = node.child_by_field_name("type")
        elif type_ == "scoped_type_identifier":
            inner = node.child_by_field_name("name")
        elif type_ in ("reference_type", "pointer_type", "parenthesized_type"):
            inner = node.child_by_field_name("type") or node.named_child(node.named_child_count - 1)
        else:
            return _text(node, data)
        if inner is None:
            return _text(node, data)
        node = inner


def _receiver_type(receiver: Any, data: bytes) -> str | None:
    for param in receiver.named_children:
        if param.type == "parameter_declaration":
            type_node = param.child_by_field_name("type")
            return _base_type_name(type_node, data) if type_node is not None else None
    return None


def _c_function_names(node: Any, data: bytes) -> list[str] | None:
    """The declared name of a C/C++ function definition, through pointer, reference and parenthesised
    declarators; a qualified name (``ns::B::c``) gives one entry per scope."""
    declarator = node.child_by_field_name("declarator")
    while declarator is not None and declarator.type not in _C_NAMES:
        inner = declarator.child_by_field_name("declarator")
        if inner is None and declarator.named_child_count:  # reference_declarator, parenthesized_declarator
            inner = declarator.named_child(declarator.named_child_count - 1)
        declarator = inner
    if declarator is None:
        return None
    names: list[str] = []
    while declarator.type == "qualified_identifier":
        scope = declarator.child_by_field_name("scope")
        if scope is not None:  # absent for ::f
            if scope.type == "template_type":
                scope = scope.child_by_field_name("name") or scope
            names.append(_text(scope, data))
        declarator = declarator.child_by_field_name("name")
        if declarator is None:
            return None
    if declarator.type == "template_function":  # an explicit specialisation: f<int>
        declarator = declarator.child_by_field_name("name") or declarator
    names.append(" ".join(_text(declarator, data).split()))
    return names


def _c_record_names(node: Any, data: bytes) -> list[str] | None:
    name = node.child_by_field_name("name")
    if name is not None:
        if name.type == "template_type":  # template <> class Foo<int>
            name = name.child_by_field_name("name") or name
        return _split_scope(_text(name, data))
    parent = node.parent
    if parent is not None and parent.type == "type_definition":  # typedef struct { ... } Point;
        declarator = parent.child_by_field_name("declarator")
        if declarator is not None and declarator.type == "type_identifier":
            return [_text(declarator, data)]
    return None


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
    elif type_ in _C_RECORDS and parent.type in ("type_definition", "declaration"):
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
        if type_ in _ATTRIBUTES:
            top = sibling
            inner.extend(pending)
            pending.clear()
        elif type_ not in _COMMENTS:
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


def _docstring(data: bytes, line_start: int, inner: list[Any], spec: _Spec) -> str | None:
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
            lines = [line for line in lines if not _GO_DIRECTIVE.match(line)]
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


def _signature(node: Any, data: bytes, spec: _Spec) -> str:
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
    elif type_ in _C_RECORDS and node.child_by_field_name("name") is None:
        names = _c_record_names(node, data)  # typedef struct { ... } Point: name it
        if names:
            signature = f"{signature} {names[-1]}"
    return signature.removesuffix(";").rstrip()


def _signature_begin(node: Any) -> int:
    type_ = node.type
    if type_ in ("variable_declarator", "type_spec") or type_ in _C_RECORDS:
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
                if modifier.type not in _NOT_SIGNATURE:
                    return modifier.start_byte
            continue
        if child_type not in _NOT_SIGNATURE:
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
            if child.type in _COMMENTS:
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
