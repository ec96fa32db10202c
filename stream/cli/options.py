"""What every option group shares: Config's defaults, the one ``--db``, and parsed flags → a Config.

Each flag's ``dest`` is the name of the Config field it sets, so `config_from_args` copies every field the
namespace holds and converts only what a flag cannot say directly (task names → templates, comma-separated
names, ``-q`` → no progress). A command that leaves a group out gets Config's default for its fields.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from ..config import Config
from ..errors import ConfigError
from ..prompt import DEFAULT_TASKS, TASKS, Template, load_template

__all__ = ["DEFAULTS", "CONFIG_FIELDS", "add_db", "split_names", "config_from_args"]

#: Every flag's default: the Config dataclass's own.
DEFAULTS = Config()
CONFIG_FIELDS = frozenset(f.name for f in fields(Config))


def add_db(container: argparse._ActionsContainer) -> None:
    """``--db FILE``, the checkpoint: the one declaration that run, plan, status and export share."""
    container.add_argument(
        "--db", default=DEFAULTS.db, metavar="FILE", help="SQLite checkpoint (default: %(default)s)"
    )


def split_names(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Names given as repeated and/or comma-separated flags (``--lang py,go --lang rust``), in order."""
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def _tasks(names: list[str], templates: list[str]) -> tuple[Template, ...]:
    """``--task`` names and ``--template`` files → the tasks to ask (the default tasks when neither is given)."""
    tasks = []
    for name in split_names(names):
        if name not in TASKS:
            raise ConfigError(f"--task {name!r}: no such task; built-in tasks: {', '.join(TASKS)}")
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
        values["tasks"] = _tasks(given.get("task", []), given.get("template", []))
    if values.get("quiet"):
        values["progress"] = "off"
    return Config(**values)
