"""From a stored record to training examples: (instruction, input, output) per task, before any format.

Each built-in task has its mapping in `TASKS`; a record that gives no example raises `ExampleSkipped` with
the reason it is counted under (``no_answer``, ``no_data``, ``bad_data``, ``custom_task``,
``custom_structured``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ExampleSkipped
from ..prompt import DISPLAY_NAMES

__all__ = ["Example", "TASKS", "examples_for"]


@dataclass(frozen=True, slots=True)
class Example:
    """One training example before formatting. `context_first` puts the input before the instruction in the
    user message (a question reads best after the code it is about)."""

    instruction: str
    input: str
    output: str
    context_first: bool = False

    @property
    def user(self) -> str:
        if not self.input:
            return self.instruction
        parts = (self.input, self.instruction) if self.context_first else (self.instruction, self.input)
        return "\n\n".join(parts)


_DOC_KINDS = frozenset({"doc_section"})


def _is_doc(rec: dict[str, Any]) -> bool:
    return rec.get("kind") in _DOC_KINDS


def _subject(rec: dict[str, Any]) -> str:
    """What the snippet is: "the Python function `plain` from `pkg/shapes.py`", "the section `X` of `a.md`"."""
    name, path = rec.get("qualname") or "?", rec.get("path") or "?"
    if _is_doc(rec):
        return f"the section `{name}` of `{path}`"
    language = str(rec.get("language") or "")
    display = DISPLAY_NAMES.get(language, language)
    kind = str(rec.get("kind") or "snippet").replace("_", " ")
    return f"the {display + ' ' if display else ''}{kind} `{name}` from `{path}`"


def _fenced(rec: dict[str, Any]) -> str:
    """The exact code (or section text) in a Markdown fence longer than any backtick run inside it."""
    text = str(rec.get("code") or "")
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0) if "```" in text else 0
    fence = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") else text + "\n"
    return f"{fence}{rec.get('language') or ''}\n{body}{fence}"


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ExampleSkipped("bad_data")
    return value


def _data(rec: dict[str, Any]) -> dict[str, Any]:
    data = rec.get("data")
    if data is None:
        raise ExampleSkipped("no_data")
    if not isinstance(data, dict):
        raise ExampleSkipped("bad_data")
    return data


def _explain(rec: dict[str, Any]) -> list[Example]:
    if "annotation" not in rec:
        raise ExampleSkipped("no_answer")
    if _is_doc(rec):
        instruction = f"Explain {_subject(rec)}."
    else:
        instruction = f"Explain {_subject(rec)}: what it does, the relevant details, and how it can be used."
    return [Example(instruction, _fenced(rec), str(rec["annotation"] or ""))]


def _summarize(rec: dict[str, Any]) -> list[Example]:
    summary = _text(_data(rec).get("summary"))
    return [Example(f"Summarize {_subject(rec)}.", _fenced(rec), summary)]


def _qa(rec: dict[str, Any]) -> list[Example]:
    pairs = _data(rec).get("pairs")
    if not isinstance(pairs, list) or not pairs:
        raise ExampleSkipped("bad_data")
    subject = _subject(rec)
    context = f"{subject[0].upper()}{subject[1:]}:\n\n{_fenced(rec)}"
    examples = []
    for pair in pairs:
        if not isinstance(pair, dict):
            raise ExampleSkipped("bad_data")
        examples.append(Example(_text(pair.get("question")), context, _text(pair.get("answer")), True))
    return examples


def _docstring(rec: dict[str, Any]) -> list[Example]:
    docstring = _text(_data(rec).get("docstring"))
    return [Example(f"Write a docstring for {_subject(rec)}.", _fenced(rec), docstring)]


def _instruct(rec: dict[str, Any]) -> list[Example]:
    data = _data(rec)
    return [Example(_text(data.get("problem")), "", _text(data.get("solution")))]


#: task (template name) → how its answers become examples. A custom template's text answers use `_explain`.
TASKS: dict[str, Callable[[dict[str, Any]], list[Example]]] = {
    "annotate": _explain,
    "explain": _explain,
    "summarize": _summarize,
    "qa": _qa,
    "docstring": _docstring,
    "instruct": _instruct,
}


def examples_for(rec: dict[str, Any], *, custom: bool = False) -> list[Example]:
    """The examples one stored record gives; raises `ExampleSkipped` with the reason when it gives none.

    `custom`: export a template that is not built in (its text answers, under the generic instruction).
    """
    if "annotation" not in rec and "data" not in rec:
        raise ExampleSkipped("no_answer")  # e.g. a dry-run line: a request, not an answer
    template = str((rec.get("task") or {}).get("template") or "")
    mapper = TASKS.get(template)
    if mapper is None:
        if not custom:
            raise ExampleSkipped("custom_task")
        if rec.get("data") is not None:
            raise ExampleSkipped("custom_structured")
        mapper = _explain
    return mapper(rec)
