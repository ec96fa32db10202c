"""Prompt templates: loading, validation, rendering, and the task fingerprint."""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError
from .model import Snippet, stable_hash

__all__ = ["Template", "DEFAULT_TEMPLATE", "PLACEHOLDERS", "load_template", "task_fingerprint"]

PLACEHOLDERS = frozenset({"code", "language", "path", "qualname", "kind", "docstring"})
# Placeholders whose value depends on where a snippet lives rather than on its text. A template that uses
# one of them asks a different question for the same code in two places, so they join the record identity.
LOCATION_PLACEHOLDERS = frozenset({"path", "qualname", "kind"})


@dataclass(frozen=True, slots=True)
class Template:
    """A prompt: an optional system message and a user message with ``{placeholder}`` fields."""

    name: str
    user: str
    system: str | None = None

    @property
    def fields(self) -> frozenset[str]:
        return _fields(self.user) | (_fields(self.system) if self.system else frozenset())

    def render(self, snippet: Snippet) -> tuple[str | None, str]:
        values = _values(snippet)
        system = self.system.format_map(values) if self.system else None
        return system, self.user.format_map(values)

    def location_key(self, snippet: Snippet) -> tuple[str, ...]:
        """The location fields this template uses, for the record identity (empty for the default)."""
        used = sorted(self.fields & LOCATION_PLACEHOLDERS)
        values = _values(snippet)
        return tuple(f"{name}={values[name]}" for name in used)


DEFAULT_TEMPLATE = Template(
    name="annotate",
    user=(
        "Please provide a complete annotation for the following {language} code snippet that includes "
        "information about what the code does, any relevant details, and how it can be used in questions, "
        "documentation, and code creation:\n{code}\n"
    ),
)


_DISPLAY_NAMES = {"python": "Python"}


def _values(snippet: Snippet) -> dict[str, str]:
    return {
        "code": snippet.code,
        "language": _DISPLAY_NAMES.get(snippet.language, snippet.language),
        "path": snippet.path,
        "qualname": snippet.qualname,
        "kind": snippet.kind,
        "docstring": snippet.docstring or "",
    }


def _fields(text: str) -> frozenset[str]:
    names = set()
    for _literal, field, spec, conversion in string.Formatter().parse(text):
        if field is None:
            continue
        if spec or conversion or not field.isidentifier():
            raise ConfigError(f"template field {{{field}}} must be a plain name, one of {_known()}")
        names.add(field)
    return frozenset(names)


def _known() -> str:
    return ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))


def load_template(path: str | Path) -> Template:
    """Read a TOML template (``user`` required, ``system`` and ``name`` optional) and validate it."""
    path = Path(path)
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read template {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"template {path} is not valid TOML: {exc}") from None
    user, system = data.get("user"), data.get("system")
    if not isinstance(user, str) or not user.strip():
        raise ConfigError(f"template {path} needs a non-empty string 'user'")
    if system is not None and not isinstance(system, str):
        raise ConfigError(f"template {path}: 'system' must be a string")
    unknown = set(data) - {"name", "user", "system"}
    if unknown:
        raise ConfigError(f"template {path}: unknown keys {sorted(unknown)} (allowed: name, system, user)")
    template = Template(name=str(data.get("name") or path.stem), user=user, system=system or None)
    try:
        fields = template.fields
    except ValueError as exc:  # unbalanced braces
        raise ConfigError(f"template {path}: {exc} (write literal braces as {{{{ and }}}})") from None
    bad = fields - PLACEHOLDERS
    if bad:
        names = ", ".join("{" + b + "}" for b in sorted(bad))
        raise ConfigError(f"template {path}: unknown placeholder {names}; known: {_known()}")
    return template


def task_fingerprint(template: Template, *, api: str, model: str, params: dict[str, Any]) -> str:
    """Identity of the question asked: same template, API kind, model and parameters → same fingerprint."""
    return stable_hash(
        "task-v1",
        template.system or "",
        template.user,
        api,
        model,
        orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode(),
    )
