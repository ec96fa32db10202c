"""What every option group shares: Config's defaults, the one ``--db``, and parsed flags → a Config.

Each flag is declared with `add_option`, so its ``dest`` is the name of the Config field it sets and its
default is that field's: `config_from_args` copies every field the namespace holds and converts only what a
flag cannot say directly (task names → templates, comma-separated names, ``-q`` → no progress). A command
that leaves a group out gets Config's default for its fields.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from types import NoneType, UnionType
from typing import Any, get_args, get_origin, get_type_hints

from ..config import Config
from ..embeddings import EMBED_TASK
from ..errors import ConfigError
from ..judge import JUDGE_TASK
from ..prompt import DEFAULT_TASKS, TASKS, Template, load_template

__all__ = ["DEFAULTS", "CONFIG_FIELDS", "add_option", "add_db", "split_names", "config_from_args"]

#: Every flag's default: the Config dataclass's own.
DEFAULTS = Config()
CONFIG_FIELDS = frozenset(f.name for f in fields(Config))


def _value_type(hint: Any) -> Any:
    """What a field holds when it is set: ``int | None`` → int (any other union is left as it is)."""
    if not isinstance(hint, UnionType):
        return hint
    values = [t for t in get_args(hint) if t is not NoneType]
    return values[0] if len(values) == 1 else hint


#: Each Config field's type, None left out, from its annotation.
_FIELD_TYPES = {name: _value_type(hint) for name, hint in get_type_hints(Config).items()}


def add_option(container: argparse._ActionsContainer, field: str, *flags: str, **kwargs: Any) -> None:
    """Declare the option that sets Config field `field`, so that what Config says about the field cannot
    drift from the flag: its ``dest`` is the field, its default the field's default, an int or float field
    parses its type (an int is a count: ``N`` unless a ``metavar`` is given), a tuple field is repeatable
    (``append``), and a bool field is a switch that flips its default. `flags` default to ``--field-name``
    (``--no-field-name`` for a bool that is on by default); ``metavar``, ``choices``, ``help`` and any other
    ``add_argument`` keyword are given in `kwargs`.
    """
    default, kind, name = getattr(DEFAULTS, field), _FIELD_TYPES[field], field.replace("_", "-")
    if kind is bool:
        kwargs.setdefault("action", "store_false" if default else "store_true")
        name = f"no-{name}" if default else name
    elif kind in (int, float):
        kwargs.setdefault("type", kind)
        if kind is int:
            kwargs.setdefault("metavar", "N")
    elif get_origin(kind) is tuple:
        kwargs.setdefault("action", "append")
        default = list(default)  # append adds to a copy of the default: a list, not Config's tuple
    container.add_argument(*(flags or (f"--{name}",)), dest=field, default=default, **kwargs)


def add_db(container: argparse._ActionsContainer) -> None:
    """``--db FILE``, the checkpoint: the one declaration that run, plan, status and export share."""
    add_option(container, "db", metavar="FILE", help="SQLite checkpoint (default: %(default)s)")


def split_names(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Names given as repeated and/or comma-separated flags (``--lang py,go --lang rust``), in order."""
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def _tasks(names: list[str], templates: list[str]) -> tuple[Template, ...]:
    """``--task`` names and ``--template`` files → the tasks to ask (the default tasks when neither is given)."""
    tasks = []
    for name in split_names(names):
        if name not in TASKS:
            known = ", ".join([*TASKS, JUDGE_TASK, EMBED_TASK])
            raise ConfigError(f"--task {name!r}: no such task; built-in tasks: {known}")
        tasks.append(TASKS[name])
    tasks += [load_template(path) for path in templates]
    return tuple(tasks) if tasks else tuple(TASKS[name] for name in DEFAULT_TASKS)


def config_from_args(args: argparse.Namespace) -> Config:
    """The Config the parsed flags describe (not yet resolved: `Config.resolve` applies the environment)."""
    given = vars(args)
    values: dict[str, Any] = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in given.items()
        if name in CONFIG_FIELDS
    }
    if "languages" in values:
        values["languages"] = split_names(values["languages"])
    if "task" in given or "template" in given:
        names = split_names(given.get("task", []))
        values["judge"] = JUDGE_TASK in names  # (the judge scores the other tasks' answers: not a task)
        values["embed"] = EMBED_TASK in names  # (vectors, after the other tasks: stream.embeddings)
        asked = [n for n in names if n not in (JUDGE_TASK, EMBED_TASK)]
        templates = given.get("template", [])
        alone = values["embed"] and not asked and not templates  # --task embed: no other task is asked
        values["tasks"] = () if alone else _tasks(asked, templates)
    if values.get("quiet"):
        values["progress"] = "off"
    return Config(**values)
