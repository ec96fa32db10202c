"""Prompt templates and tasks: built-in tasks, loading custom TOML templates, rendering, structured replies,
and the task fingerprint.

A *task* is one question asked of every snippet it applies to: a template (system + user text with
``{placeholder}`` fields), the snippet kinds it is for (``code``, ``doc``: doc sections), and for a
structured task a JSON schema the reply must satisfy. Several tasks in one run share the walk.
"""

from __future__ import annotations

import functools
import re
import string
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError, StructuredError
from .model import Snippet, stable_hash

__all__ = [
    "Template",
    "DEFAULT_TEMPLATE",
    "TASKS",
    "DEFAULT_TASKS",
    "PLACEHOLDERS",
    "APPLIES",
    "DISPLAY_NAMES",
    "StructuredError",
    "load_template",
    "parse_structured",
    "task_fingerprint",
    "with_context",
    "is_builtin",
    "CONTEXT_MODES",
]

PLACEHOLDERS = frozenset({"code", "language", "path", "qualname", "kind", "docstring", "context"})
# Placeholders whose value depends on where a snippet lives rather than on its text. A template that uses
# one of them asks a different question for the same code in two places, so they join the record identity.
LOCATION_PLACEHOLDERS = frozenset({"path", "qualname", "kind"})


APPLIES = frozenset({"code", "doc"})  # what a task can apply to: code snippets, doc sections


@dataclass(frozen=True, slots=True)
class Template:
    """A prompt: an optional system message and a user message with ``{placeholder}`` fields.

    `applies_to` says which snippets it is asked of (``code``, ``doc``); `schema`, when set, is the JSON
    schema its reply must satisfy (a structured task).
    """

    name: str
    user: str
    system: str | None = None
    applies_to: frozenset[str] = frozenset({"code"})
    schema: dict[str, Any] | None = field(default=None, hash=False, compare=False)

    def applies(self, snippet: Snippet) -> bool:
        return ("doc" if snippet.kind == "doc_section" else "code") in self.applies_to

    @property
    def fields(self) -> frozenset[str]:
        return _fields(self.user) | (_fields(self.system) if self.system else frozenset())

    @property
    def uses_context(self) -> bool:
        """Whether the prompt carries ``{context}`` (`stream.context`): then the context joins the record id."""
        return "context" in self.fields

    def render(self, snippet: Snippet, context: str = "") -> tuple[str | None, str]:
        values = _values(snippet)
        values["context"] = context
        system = self.system.format_map(values) if self.system else None
        user = self.user.format_map(values)
        if self.schema is not None:
            user = f"{user}\n\n{instructions(self)}"
        return system, user

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


_JSON_ONLY = "Reply with one JSON object only, no prose and no code fence, matching this schema:\n{schema}"


def _structured(name: str, applies: set[str], user: str, schema: dict[str, Any]) -> Template:
    return Template(name=name, user=user, applies_to=frozenset(applies), schema=schema)


_STR = {"type": "string", "minLength": 1}

SUMMARIZE = _structured(
    "summarize",
    {"doc"},
    "Here is a section of the documentation of a software project:\n\n"
    "{code}\n\nSummarize what the section teaches in a few sentences, and list the questions a user of the "
    "project could ask that this section answers.",
    {
        "type": "object",
        "properties": {"summary": _STR, "questions": {"type": "array", "items": _STR, "minItems": 1}},
        "required": ["summary", "questions"],
    },
)
QA = _structured(
    "qa",
    {"code", "doc"},
    "Here is {language} code from a software project:\n\n{code}\n\nWrite 3 question and answer pairs "
    "that a developer using this project might ask about it. Each answer must be correct for this code and "
    "self-contained.",
    {
        "type": "object",
        "properties": {
            "pairs": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {"question": _STR, "answer": _STR},
                    "required": ["question", "answer"],
                },
            }
        },
        "required": ["pairs"],
    },
)
DOCSTRING = _structured(
    "docstring",
    {"code"},
    "Here is {language} code from a software project:\n\n{code}\n\nWrite the documentation comment "
    "(docstring) it should have, in the style and conventions the code already uses. Give only the text of "
    "the docstring, without comment markers or quotes.",
    {"type": "object", "properties": {"docstring": _STR}, "required": ["docstring"]},
)
INSTRUCT = _structured(
    "instruct",
    {"code"},
    "Here is {language} code from a software project:\n\n{code}\n\nInspired by it, write a self-contained "
    "programming problem that teaches the same ideas, and a complete, correct solution in {language}. The "
    "problem must be understandable without seeing the code above.",
    {
        "type": "object",
        "properties": {"problem": _STR, "solution": _STR},
        "required": ["problem", "solution"],
    },
)
EXPLAIN = Template(
    name="explain",
    user=(
        "Here is a section of the documentation of a software project:\n\n"
        "{code}\n\nExplain what it says to a developer new to the project: the concepts, how to apply them, "
        "and what to watch out for."
    ),
    applies_to=frozenset({"doc"}),
)

#: Built-in tasks by name. None uses {path}, {qualname} or {kind}: the same text found in several places is
#: asked about once (per distinct context, `with_context`). (``--task``). ``annotate`` is unchanged from the
#: first release, so with ``--context none`` its fingerprint, and with it every earlier checkpoint, stays
#: valid.
TASKS: dict[str, Template] = {
    t.name: t for t in (DEFAULT_TEMPLATE, SUMMARIZE, QA, DOCSTRING, INSTRUCT, EXPLAIN)
}
#: What a run asks without ``--task`` or ``--template``: code is annotated, doc sections summarized.
DEFAULT_TASKS: tuple[str, ...] = ("annotate", "summarize")

#: How a language is named in prompts (and exported instructions).
DISPLAY_NAMES = {
    "python": "Python",
    "javascript": "JavaScript",
    "typescript": "TypeScript",
    "tsx": "TypeScript (TSX)",
    "go": "Go",
    "rust": "Rust",
    "java": "Java",
    "c": "C",
    "cpp": "C++",
    "ruby": "Ruby",
    "markdown": "Markdown",
    "rst": "reStructuredText",
}


#: Where a built-in task's prompt takes the snippet's context: first, so that what the snippets of one file
#: share (the file's part of the context) is the prompt's prefix and providers' prompt caches apply to it;
#: the snippet and the instruction come last. (`stream.context` renders the text, ending in a blank line.)
CONTEXT_LEAD = "{context}"
CONTEXT_MODES = ("none", "file", "project")


def is_builtin(template: Template) -> bool:
    """Whether `template` is one of the built-in tasks as released (`TASKS`), not a user's."""
    return TASKS.get(template.name) is template


def with_context(template: Template, mode: str) -> Template:
    """The template as a run with ``--context MODE`` asks it: a built-in task takes its context first; a
    user's template is asked as written (``{context}`` where it puts it, empty with ``none``)."""
    if mode == "none" or not is_builtin(template) or template.uses_context:
        return template
    return replace(template, user=CONTEXT_LEAD + template.user)


def instructions(template: Template) -> str:
    """The user message's closing instruction for a structured task: reply with JSON for this schema."""
    if template.schema is None:
        return ""
    return _JSON_ONLY.format(schema=orjson.dumps(template.schema).decode())


_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n?```\s*$", re.S)


def parse_structured(text: str, schema: dict[str, Any]) -> Any:
    """The reply parsed and checked against `schema`; raises `StructuredError` saying why not.

    Strict: one JSON value, optionally inside a single Markdown code fence (models add one even when told
    not to); nothing is guessed from prose around it.
    """
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise StructuredError("invalid_json", f"reply is not JSON: {exc}") from None
    error = next(iter(_validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).iter_errors(value)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise StructuredError(
            "schema_mismatch", f"reply does not match the schema at {where}: {error.message}"
        )
    return value


@functools.lru_cache(maxsize=64)
def _validator(schema_json: bytes) -> Any:
    import jsonschema  # ~50 ms to import: only runs with a structured task pay it

    schema = orjson.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def check_schema(schema: Any, where: str) -> None:
    import jsonschema

    if not isinstance(schema, dict):
        raise ConfigError(f"{where}: 'schema' must be a table (a JSON schema object)")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"{where}: 'schema' is not a valid JSON schema: {exc.message}") from None


def _values(snippet: Snippet) -> dict[str, str]:
    return {
        "code": snippet.code,
        "language": DISPLAY_NAMES.get(snippet.language, snippet.language),
        "path": snippet.path,
        "qualname": snippet.qualname,
        "kind": snippet.kind,
        "docstring": snippet.docstring or "",
    }


@functools.lru_cache(maxsize=256)  # (asked per snippet and task by the planner: a run has few templates)
def _fields(text: str) -> frozenset[str]:
    names = set()
    for _literal, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            raise ConfigError(f"template field {{{name}}} must be a plain name, one of {_known()}")
        names.add(name)
    return frozenset(names)


def _known() -> str:
    return ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))


def load_template(path: str | Path) -> Template:
    """Read a TOML template and validate it.

    Keys: ``user`` (required), ``system``, ``name`` (default: the file's stem), ``applies_to`` (a list of
    ``"code"`` and ``"doc"``; default ``["code"]``), ``schema`` (a JSON schema as a TOML table; the reply
    must then be JSON that satisfies it).
    """
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
    unknown = set(data) - {"name", "user", "system", "applies_to", "schema"}
    if unknown:
        raise ConfigError(
            f"template {path}: unknown keys {sorted(unknown)} (allowed: name, system, user, applies_to, schema)"
        )
    applies = data.get("applies_to", ["code"])
    if isinstance(applies, str):
        applies = [applies]
    if not isinstance(applies, list) or not applies or not set(applies) <= APPLIES:
        raise ConfigError(f'template {path}: \'applies_to\' must be a list of "code" and "doc"')
    schema = data.get("schema")
    if schema is not None:
        check_schema(schema, f"template {path}")
    template = Template(
        name=str(data.get("name") or path.stem),
        user=user,
        system=system or None,
        applies_to=frozenset(applies),
        schema=schema,
    )
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
    parts = [
        "task-v1",
        template.system or "",
        template.user,
        api,
        model,
        orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode(),
    ]
    if template.schema is not None:  # (absent for text tasks: their fingerprints predate schemas)
        parts.append(orjson.dumps(template.schema, option=orjson.OPT_SORT_KEYS).decode())
    return stable_hash(*parts)
