"""What tree-sitter extraction knows of each language, as data: suffixes and shebangs, the grammar wheel,
the query that captures definitions, comment styles, and the node types the extractor treats specially.

Read by :mod:`stream.extract.treesitter` (loading and the walk over captures),
:mod:`stream.extract.treesitter_names` (qualnames) and :mod:`stream.extract.treesitter_snippet` (extent,
docstring, signature). No logic lives here: a new language is a new row in each table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "LANGUAGES",
    "SHEBANGS",
    "Spec",
    "SPECS",
    "OWNERS",
    "COMMENTS",
    "ATTRIBUTES",
    "NOT_SIGNATURE",
    "FUNCTION_VALUES",
    "C_RECORDS",
    "C_NAMES",
    "JS_ASSIGNED",
    "GO_DIRECTIVE",
]

#: language -> file suffixes
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

# --- Node types and patterns ------------------------------------------------------------------------

OWNERS = frozenset({"class", "struct", "enum", "interface", "trait", "impl", "module"})
COMMENTS = frozenset({"comment", "line_comment", "block_comment"})
# Siblings in front of a definition that belong to it: TS member decorators, Rust attributes.
ATTRIBUTES = frozenset({"decorator", "attribute_item"})
# Leading children of a definition that the signature leaves out.
NOT_SIGNATURE = frozenset({"decorator", "attribute_item", "marker_annotation", "annotation", *COMMENTS})
FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "generator_function"})
C_RECORDS = frozenset({"struct_specifier", "union_specifier", "enum_specifier", "class_specifier"})
C_NAMES = frozenset(
    {"identifier", "field_identifier", "qualified_identifier", "destructor_name", "operator_name",
     "template_function", "type_identifier", "operator_cast"}
)  # fmt: skip
# `module.exports = f` (named "default", like `export default`), `exports.x = f`, `module.exports.x = f`
# and `Cls.prototype.x = f` (a method of Cls); any other assignment target is not a name.
JS_ASSIGNED = re.compile(
    rb"(?:module\s*\.\s*exports|(?:module\s*\.\s*)?exports\s*\.\s*(?P<name>[\w$]+)"
    rb"|(?P<cls>[\w$]+)\s*\.\s*prototype\s*\.\s*(?P<proto>[\w$]+))"
)
GO_DIRECTIVE = re.compile(rb"//(?:[a-z0-9]+:[a-z0-9]|line |extern |export )")


@dataclass(frozen=True, slots=True)
class Spec:
    """How one language is read: its grammar, its query, and its comment and header conventions."""

    module: str  # the grammar wheel's import name
    function: str  # its function returning the language pointer
    query: str
    line_comment: bytes
    doc: str  # which comments are documentation: "jsdoc" | "rust" | "go" | "any"
    braces: bool = True  # a header ends where the body's brace opens (Ruby: at its last part)


#: language -> how it is read
SPECS: dict[str, Spec] = {
    "typescript": Spec("tree_sitter_typescript", "language_typescript", _TS_QUERY, b"//", "jsdoc"),
    "tsx": Spec("tree_sitter_typescript", "language_tsx", _TS_QUERY, b"//", "jsdoc"),
    "javascript": Spec("tree_sitter_javascript", "language", _JS_QUERY, b"//", "jsdoc"),
    "go": Spec("tree_sitter_go", "language", _GO_QUERY, b"//", "go"),
    "rust": Spec("tree_sitter_rust", "language", _RUST_QUERY, b"//", "rust"),
    "java": Spec("tree_sitter_java", "language", _JAVA_QUERY, b"//", "jsdoc"),
    "c": Spec("tree_sitter_c", "language", _C_QUERY, b"//", "any"),
    "cpp": Spec("tree_sitter_cpp", "language", _CPP_QUERY, b"//", "any"),
    "ruby": Spec("tree_sitter_ruby", "language", _RUBY_QUERY, b"#", "any", braces=False),
}
