"""The judge's question: its template and schema, the judgment it gives, and the follow-up of a re-ask.

With ``--task judge`` every answer of the run's other tasks is scored by the same model: the judge request
carries the prompt the answer was asked with (its code and context) and the answer, and asks for JSON
matching `SCHEMA` (``score`` 1-5, ``error``: the error found, or empty). The asking itself is in
`stream.pipeline.judging`; this module holds no I/O, so reports may import it.

The judge is no task of its own: it is not asked of snippets, and its fingerprint never joins a record's
id (turning it on re-pays no done answer). A record's judgment (`Judgment.as_record`) is the record's
``judge`` field; its score is also stored in the checkpoint's ``records.score``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .prompt import Template, instructions

__all__ = ["JUDGE_TASK", "SCHEMA", "TEMPLATE", "Judgment", "render", "followup", "judgment_of"]

#: The name ``--task`` takes to turn the judge on.
JUDGE_TASK = "judge"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "error": {"type": "string"},
    },
    "required": ["score", "error"],
    "additionalProperties": False,
}

TEMPLATE = Template(
    name=JUDGE_TASK,
    system="You review answers about source code and documentation for a training data set. Be strict.",
    user=(
        "A model was sent the request below and gave the answer below. Check the answer against the code "
        "and context in the request: is each statement in it true of this code, specific to it rather than "
        "generic, and does it answer what the request asks?\n\n"
        "<request>\n{prompt}\n</request>\n\n<answer>\n{answer}\n</answer>\n\n"
        "Score the answer: 5 correct, specific and complete; 4 correct with small omissions; 3 partly "
        "generic or missing something important; 2 states something false about the code; 1 wrong, off "
        "the point, a refusal or unusable. In error, name the most important error or omission you found "
        "(quote the code where it helps); leave it empty when there is none."
    ),
    applies_to=frozenset({"code", "doc"}),
    schema=SCHEMA,
)


@dataclass(slots=True)
class Judgment:
    """What the judge said of one answer (`score` None: not judged, `unjudged` says why)."""

    score: int | None
    error: str = ""
    model: str | None = None
    usage: dict[str, Any] | None = None
    attempts: int = 0
    unjudged: str | None = None
    #: the earlier answers of this record that were asked again: their judgments and how the re-ask went
    reasks: list[dict[str, Any]] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        """The record's ``judge`` field."""
        out: dict[str, Any] = {
            "score": self.score,
            "error": self.error,
            "model": self.model,
            "usage": self.usage,
            "attempts": self.attempts,
        }
        if self.unjudged is not None:
            out["unjudged"] = self.unjudged
        if self.reasks:
            out["reasks"] = self.reasks
        return out

    def low(self, below: int) -> bool:
        """Whether the score sends the answer back to its task (``--judge-reask-below``; 0: never)."""
        return self.score is not None and self.score < below


def render(prompt: str, answer: str) -> tuple[str | None, str]:
    """The judge's system and user messages for `answer`, given to `prompt` (the user message sent)."""
    user = TEMPLATE.user.format_map({"prompt": prompt, "answer": answer})
    return TEMPLATE.system, f"{user}\n\n{instructions(TEMPLATE)}"


def followup(answer: str, judgment: Judgment) -> tuple[dict[str, str], ...]:
    """The messages that ask the task once more: the model's answer, then what the judge found in it."""
    found = judgment.error.strip() or "it is not specific or not correct enough for this code"
    fix = (
        f"A reviewer checked that answer against the code and scored it {judgment.score} of 5: {found}. "
        "Answer the request again, correcting this, in the same form."
    )
    return ({"role": "assistant", "content": answer}, {"role": "user", "content": fix})


def judgment_of(
    data: dict[str, Any], *, model: str | None, usage: dict[str, Any] | None, attempts: int
) -> Judgment:
    """The judgment in a judge reply already checked against `SCHEMA` (`stream.prompt.parse_structured`)."""
    return Judgment(
        score=int(data["score"]),
        error=str(data["error"]).strip(),
        model=model,
        usage=usage,
        attempts=attempts,
    )
