"""What a run decides before it starts: its tasks, selection, prices, request shape and file-index key.

Every check that can fail on the configuration alone fails here, before any file is read or request sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from sinks.schema import KnownFile

from ..config import DEFAULT_CONTEXT, Config
from ..context import Contexts, ProjectIndex, remembered_mode
from ..endpoints import family_of
from ..errors import ConfigError
from ..extract import check_languages
from ..filters import Selection
from ..model import stable_hash
from ..negotiate import ContextBudget
from ..prices import Price, Prices, load_prices
from ..prompt import is_builtin
from ..request import Shape, initial_shape
from ..scan import EXTRACTOR_VERSION, Scanned, Skipped, Unchanged, definitions, scan
from .messages import Task

__all__ = ["Setup", "prepare"]


@dataclass
class Setup:
    tasks: list[Task]
    selection: Selection
    prices: Prices
    price: Price | None  # the model's price (None: not in the table)
    shape: Shape  # what requests look like; rewritten during the run by what servers refuse
    budget: ContextBudget
    file_task: str  # the file index's key: any change of tasks or selection looks at every file again
    contexts: Contexts  # what prompts are told about where their snippet lives (--context)

    def scanner(
        self, cfg: Config, known: dict[str, KnownFile]
    ) -> Callable[[], Iterator[Scanned | Unchanged | Skipped]]:
        """The walk as the feed runs it (in its thread), skipping files `known` as done."""

        def walk() -> Iterator[Scanned | Unchanged | Skipped]:
            if self.contexts.mode == "project" and self.contexts.project is None:
                self.contexts.project = project_index(cfg, self.selection)
            yield from scan(
                cfg.paths,
                excludes=cfg.excludes,
                default_excludes=cfg.default_excludes,
                max_file_bytes=cfg.max_file_bytes,
                known=known,
                jobs=cfg.jobs,
                selection=self.selection,
            )

        return walk


def _tasks(config: Config) -> list[Task]:
    params = {k: v for k, v in config.params.items() if v is not None}
    tasks = []
    for t in config.asked_tasks:
        fingerprint = config.fingerprint(t)
        info = {
            "template": t.name,
            "fingerprint": fingerprint,
            "api": config.api,
            "model": config.model,
            "params": params,
            **({"context": config.context_mode} if t.uses_context else {}),
        }
        tasks.append(Task(t, fingerprint, info))
    return tasks


def _selection(config: Config) -> Selection:
    return Selection(
        languages=check_languages(config.languages),
        min_lines=config.min_lines,
        max_lines=config.max_lines,
        skip_tests=config.skip_tests,
        keep_trivial=config.keep_trivial,
        keep_generated=config.keep_generated,
        on_secret=config.on_secret,
        # a doc section longer than the prompt may hold is cut at paragraphs (about 3 characters a token)
        doc_max_chars=min(6000, 3 * config.max_prompt_tokens) if config.max_prompt_tokens else 6000,
        context_tokens=0 if config.context_mode == "none" else config.context_tokens,
        near_dup=config.near_dup != "off",
    )


def project_index(cfg: Config, sel: Selection) -> ProjectIndex:
    """``--context project``: the walked tree's module-level definitions by name (one pass before the run)."""
    index = ProjectIndex()
    for path, snippets in definitions(
        cfg.paths,
        excludes=cfg.excludes,
        default_excludes=cfg.default_excludes,
        max_file_bytes=cfg.max_file_bytes,
        sel=sel,
    ):
        index.add(path, snippets, sel)
    return index


def prepare(config: Config, note: Callable[[str], None]) -> Setup:
    """The run's set-up; raises ConfigError for what cannot work."""
    prices = load_prices(config.prices)
    price = prices.get(config.model)
    if config.max_cost is not None and price is None:
        raise ConfigError(
            f"--max-cost needs the price of {config.model!r}, which the price table does not list; "
            "give it with --prices FILE"
        )
    # What requests look like: from the endpoint and model tables, then rewritten by what servers refuse.
    shape, unsupported = initial_shape(
        kind=config.endpoint_kind, api=config.api, model=config.model, response_format=config.response_format
    )
    for name in sorted(unsupported):
        if config.params.get(name) is not None:
            flag = "--" + name.replace("_", "-")
            note(f"note: {config.model} does not take {flag} (only its default); not sending it")
    family = family_of(config.model)
    budget = ContextBudget(
        family.context if family else None, f"the published context of {family.name}" if family else ""
    )
    tasks = _tasks(config)
    file_task = stable_hash(
        *sorted(t.fingerprint for t in tasks),
        orjson.dumps(config.selection, option=orjson.OPT_SORT_KEYS).decode(),
        EXTRACTOR_VERSION,
    )
    contexts = Contexts(config.context_mode, config.context_tokens)
    if contexts.mode == "none" and any(is_builtin(t) for t in config.tasks):
        if remembered_mode(config.db) == "none":
            note(
                f"note: asking without context, as this checkpoint's earlier runs did (so what they answered "
                f"is not asked again); --context {DEFAULT_CONTEXT} asks about each snippet in its context"
            )
    return Setup(tasks, _selection(config), prices, price, shape, budget, file_task, contexts)
