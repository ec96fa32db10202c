"""Tree-sitter qualnames: the names one captured definition adds to the path of those enclosing it.

Several for one node where the source writes a scope: C++ ``void ns::B::c()``, a Go receiver, Ruby
``Foo::Bar`` and ``def self.x``, JS ``Cls.prototype.m = ...``; the impl's type for a Rust impl; none for
an anonymous definition. The rules are in :mod:`stream.extract.treesitter`'s docstring.
"""

from __future__ import annotations

from typing import Any

from .queries import C_NAMES, C_RECORDS, FUNCTION_VALUES, JS_ASSIGNED

__all__ = ["definition_names", "c_record_names"]


def _text(node: Any, data: bytes) -> str:
    return data[node.start_byte : node.end_byte].decode("utf-8")


def definition_names(node: Any, data: bytes) -> list[str] | None:
    """The names a definition adds to the qualname (several for ``B::c``, a Go receiver, ``Foo::Bar``),
    or None when it has none."""
    type_ = node.type
    if type_ == "function_definition":
        return _c_function_names(node, data)
    if type_ in C_RECORDS:
        return c_record_names(node, data)
    if type_ in FUNCTION_VALUES:  # export default function () {}
        return ["default"]
    if type_ == "assignment_expression":  # CommonJS exports and prototype methods
        match = JS_ASSIGNED.fullmatch(data, node.start_byte, node.child_by_field_name("left").end_byte)
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
    while declarator is not None and declarator.type not in C_NAMES:
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


def c_record_names(node: Any, data: bytes) -> list[str] | None:
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
