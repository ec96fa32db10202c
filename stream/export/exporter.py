"""One answer at a time: a stored line selected (or skipped, with the reason), turned into examples with
their answers trimmed, rendered, checked, measured in tokens, and counted in the export's `Report`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import orjson

from ..errors import ExampleSkipped
from ..tokens import Tokenizer, load_tokenizer
from .checks import check_example
from .examples import TASKS, Example, examples_for
from .formats import render
from .quality import QualityGate
from .report import Lengths, Report
from .split import split_of

__all__ = ["Options", "Selector", "Exporter", "Source"]


@dataclass(frozen=True, slots=True)
class Options:
    """How answers become lines: the choices of `stream.export.export` that apply to each answer."""

    fmt: str
    split: tuple[float, ...] | None
    tasks: tuple[str, ...]
    include_truncated: bool
    max_example_tokens: int
    system: str | None
    tokenizer_model: str
    include_flagged: bool = False
    min_score: int | None = None


class Source(NamedTuple):
    """Where an answer's lines come from, for the --ids sidecar: the record and its first place."""

    record_id: str
    path: str
    qualname: str
    start_line: int | None
    end_line: int | None

    @classmethod
    def of(cls, rec: dict[str, Any]) -> Source:
        return cls(
            str(rec.get("record_id") or ""),
            str(rec.get("path") or ""),
            str(rec.get("qualname") or ""),
            rec.get("start_line"),
            rec.get("end_line"),
        )


class Selector:
    """--task: template names or fingerprint prefixes (6+ characters); remembers which ones matched."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.matched: set[str] = set()

    def __call__(self, task: dict[str, Any]) -> bool:
        if not self.names:
            return True
        template, fingerprint = str(task.get("template") or ""), str(task.get("fingerprint") or "")
        for name in self.names:
            if name == template or (len(name) >= 6 and fingerprint.startswith(name)):
                self.matched.add(name)
                return True
        return False


def _tokens(tok: Tokenizer, ex: Example, system: str | None) -> int:
    # As a chat conversation whatever the format: what the example takes of a chat model's context.
    return tok.count_chat(system, ex.user) + 3 + tok.count(ex.output)


class Exporter:
    """Turns each answer's stored line into the lines to write, keeping the report's counts."""

    def __init__(self, options: Options, report: Report) -> None:
        self.options, self.report = options, report
        self.selected = Selector(options.tasks)
        self.quality = QualityGate(
            report, include_flagged=options.include_flagged, min_score=options.min_score
        )
        self.tok: Tokenizer | None = None
        self.source = Source("", "", "", None, None)  # of the answer `lines` last gave lines for
        self.lengths = Lengths()
        self.fingerprints: dict[str, set[tuple[str, str]]] = {}  # template → {(fingerprint, model)}: a few

    def lines(
        self, line: bytes, flags: str | None = None, score: int | None = None
    ) -> tuple[int, list[bytes]]:
        """(split index, lines to write) for one answer with its stored quality (`flags`, `score`); raises
        ExampleSkipped when it gives nothing. `source` then says where the lines come from."""
        opt = self.options
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ExampleSkipped("unreadable") from None
        if not isinstance(rec, dict):
            raise ExampleSkipped("unreadable")
        task = rec["task"] if isinstance(rec.get("task"), dict) else {}
        if not self.selected(task):
            raise ExampleSkipped("task_not_selected")
        if rec.get("truncated") and not opt.include_truncated:
            raise ExampleSkipped("truncated")
        if opt.fmt == "jsonl":
            if "annotation" not in rec and "data" not in rec:
                raise ExampleSkipped("no_answer")
            self.quality(rec, flags, score)
            lines = [line.rstrip(b"\n") + b"\n"]
        else:
            custom = bool(self.selected.names) and str(task.get("template") or "") not in TASKS
            examples = examples_for(rec, custom=custom)  # what is not asked for is skipped before quality
            self.quality(rec, flags, score)
            lines = [data for example in examples if (data := self._line(example))]
            if not lines:
                raise ExampleSkipped("all_examples_dropped")  # why: in examples_dropped
        self.report.answers_exported += 1
        self.report.tasks[str(task.get("template") or "")] += len(lines)
        self.report.models[str(task.get("model") or "")] += 1
        self.source = Source.of(rec)
        key = (str(task.get("fingerprint") or ""), str(task.get("model") or ""))
        self.fingerprints.setdefault(str(task.get("template") or ""), set()).add(key)
        return (split_of(str(rec.get("path") or ""), opt.split) if opt.split else 0), lines

    def _line(self, example: Example) -> bytes | None:
        """The example's line, or None when it fails the format checks or is too long (both counted)."""
        opt = self.options
        if example.output != (output := example.output.strip()):
            example = replace(example, output=output)
            self.report.trimmed += 1
        row = render(opt.fmt, example, system=opt.system)
        problems = check_example(opt.fmt, row)
        if problems:
            self.report.problems.update(problems)
            self.report.examples_dropped["format_problems"] += 1
            return None
        if self.tok is None:  # loaded on first use: a jsonl export never needs it
            self.tok = load_tokenizer(opt.tokenizer_model)
            self.report.encoding = self.tok.encoding
            if self.tok.note:
                self.report.notes.append(self.tok.note)
        n = _tokens(self.tok, example, opt.system)
        self.lengths.add(n)
        if opt.max_example_tokens and n > opt.max_example_tokens:
            self.report.examples_dropped["too_long"] += 1
            return None
        return orjson.dumps(row) + b"\n"

    def finish(self) -> None:
        """Token statistics and the notes that need the whole export."""
        report = self.report
        report.lengths = self.lengths.as_dict()
        for name in self.options.tasks:
            if name not in self.selected.matched:
                report.notes.append(f"--task {name} matched no answer")
        for template, keys in sorted(self.fingerprints.items()):
            if len(keys) > 1:
                report.notes.append(
                    f"task {template!r} has answers of {len(keys)} task fingerprints (models: "
                    f"{', '.join(sorted({m for _, m in keys}))}): a snippet may be exported once for each; "
                    "pick one with --task FINGERPRINT or --model"
                )
        if report.answers_skipped["custom_task"]:
            report.notes.append(
                "answers of custom templates were left out: name them with --task to export them under the "
                "generic 'Explain ...' instruction (their own prompt is not in the checkpoint)"
            )
