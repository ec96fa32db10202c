"""The export from start to end: options checked, the checkpoint's places streamed through the exporter to
the split's files (and the --ids sidecar), everything counted in one `Report`, the --card written last."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from sinks.reader import ExportPlace, Reader, open_readonly

from ..errors import ConfigError, ExampleSkipped
from .card import render_card
from .exporter import Exporter, Options
from .files import Outputs, missing_folder, write_text_atomic
from .formats import DEFAULT_TOKENIZER_MODEL, FORMATS, SHAREGPT_NOTE, example_limit
from .report import Report
from .split import SPLIT_NAMES, split_targets

__all__ = ["export"]


@dataclass(frozen=True, slots=True)
class _Plan:
    """Where everything goes: the split names, their files (None: stdout), the sidecar and the card."""

    names: list[str]
    targets: list[Path | None]
    ids: Path | None
    card: Path | None


def export(
    db: str | Path,
    fmt: str,
    output: str,
    *,
    split: tuple[float, ...] | None = None,
    tasks: tuple[str, ...] = (),
    models: tuple[str, ...] = (),
    include_truncated: bool = False,
    include_flagged: bool = False,
    min_score: int | None = None,
    max_example_tokens: int | None = None,
    system: str | None = None,
    tokenizer_model: str = DEFAULT_TOKENIZER_MODEL,
    ids: str | None = None,
    card: str | None = None,
) -> Report:
    """Export the checkpoint `db` as `fmt` to `output` (``-`` for stdout); see the module docstring of
    `stream.export`. `max_example_tokens` None: the training context of `tokenizer_model`.

    An export that writes no example writes no file (`Report.examples_written` is 0; `empty_reason` says
    why). Raises ConfigError for unusable arguments or checkpoint, SinkError when an output cannot be written.
    """
    system = _check(fmt, output, split, max_example_tokens, system, min_score)
    plan = _plan(output, split, ids, card)
    report = Report(fmt=fmt, written=dict.fromkeys(plan.names, 0))
    report.targets = {n: str(t) for n, t in zip(plan.names, plan.targets, strict=True) if t is not None}
    if max_example_tokens is None:
        max_example_tokens, report.limit_source = example_limit(tokenizer_model)
    else:
        report.limit_source = "--max-example-tokens" if max_example_tokens else "no limit (0)"
    report.max_example_tokens = max_example_tokens
    if fmt == "sharegpt":
        report.notes.append(SHAREGPT_NOTE)
    options = Options(
        fmt,
        split,
        tasks,
        include_truncated,
        max_example_tokens,
        system,
        tokenizer_model,
        include_flagged,
        min_score,
    )
    ex = Exporter(options, report)
    with open_readonly(db) as reader:
        _check_models(reader, models, report)
        report.failed_answers = reader.failed_count()
        _stream(reader.export_places(models), ex, plan)
    ex.finish()
    if plan.card is not None and report.examples_written:
        write_text_atomic(plan.card, render_card(report, _settings(options, models, report)))
    return report


def _check(
    fmt: str,
    output: str,
    split: tuple[float, ...] | None,
    max_example_tokens: int | None,
    system: str | None,
    min_score: int | None,
) -> str | None:
    """The arguments checked before anything is read; returns the system message to use (trimmed)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if split is not None and output == "-":
        raise ConfigError("--split writes one file per split: give -o FILE, not -o -")
    if max_example_tokens is not None and max_example_tokens < 0:
        raise ConfigError(f"--max-example-tokens must be 0 (no limit) or more, got {max_example_tokens}")
    if min_score is not None and not 1 <= min_score <= 5:
        raise ConfigError(f"--min-score takes a judge's score, 1 to 5; got {min_score}")
    if system is not None and not system.strip():
        raise ConfigError(
            "--system is blank (only whitespace): every example would fail the format check; "
            "give a message or leave --system out"
        )
    return system.strip() if system is not None else None


def _plan(output: str, split: tuple[float, ...] | None, ids: str | None, card: str | None) -> _Plan:
    """The files to write, each checked for its folder; none may be another's, nor stdout but -o's."""
    targets: list[Path | None] = (
        list(split_targets(output, len(split))) if split else [None if output == "-" else Path(output)]
    )
    names = list(SPLIT_NAMES[: len(split)]) if split else ["all"]
    named = [("-o", t) for t in targets if t is not None]
    extra: dict[str, Path | None] = {}
    for option, value in (("--ids", ids), ("--card", card)):
        if value == "-":
            raise ConfigError(
                f"{option} writes a file (stdout carries the examples only): give {option} FILE"
            )
        extra[option] = Path(value) if value is not None else None
        if value is not None:
            named.append((option, Path(value)))
    seen: dict[Path, str] = {}
    for option, path in named:
        if (folder := missing_folder(path)) is not None:
            raise ConfigError(f"{option} {path}: the folder {folder} does not exist (create it first)")
        key = path.absolute()
        if key in seen:
            raise ConfigError(f"{option} {path} is also the file of {seen[key]}: give each its own file")
        seen[key] = option
    return _Plan(names, targets, extra["--ids"], extra["--card"])


def _check_models(reader: Reader, models: tuple[str, ...], report: Report) -> None:
    """--model: an error when none of the names has answers (listing the models there), else a note."""
    if not models:
        return
    present = reader.done_models()
    missing = [m for m in models if m not in present]
    there = ", ".join(f"{m} ({n:,})" for m, n in present.items()) or "none: no done answers yet"
    if len(missing) == len(models):
        raise ConfigError(
            f"--model {' '.join(missing)}: no done answers of that model; models there: {there}"
        )
    if missing:
        report.notes.append(f"--model {' '.join(missing)} has no done answers (models there: {there})")


def _stream(places: Iterable[ExportPlace], ex: Exporter, plan: _Plan) -> None:
    """Every answer's lines to its split's stream (and its sources to the sidecar); stops at a closed pipe."""
    report = ex.report
    targets = [*plan.targets, *([plan.ids] if plan.ids is not None else [])]
    try:
        with Outputs(targets) as out:
            _write(places, ex, out, plan)
    except BrokenPipeError:  # stdout's reader went away during the final flush
        report.output_closed = True
        return
    report.removed = out.removed


def _write(places: Iterable[ExportPlace], ex: Exporter, out: Outputs, plan: _Plan) -> None:
    report = ex.report
    sidecar = len(plan.targets) if plan.ids is not None else None
    for nth, line, flags, score in places:
        report.places += 1
        if nth > 1 or line is None:
            continue  # another place of an answer already exported
        report.answers += 1
        try:
            index, lines = ex.lines(line, flags, score)
        except ExampleSkipped as skip:
            report.answers_skipped[skip.reason] += 1
            continue
        try:
            for data in lines:
                out.write(index, data)
                if sidecar is not None:
                    out.write(sidecar, _id_line(ex, plan, index, out.lines[index]))
        except BrokenPipeError:
            report.output_closed = True
            return
        report.written[plan.names[index]] += len(lines)


def _id_line(ex: Exporter, plan: _Plan, index: int, line: int) -> bytes:
    """The sidecar's line for the example just written as line `line` of target `index`."""
    src = ex.source
    row: dict[str, object] = {"line": line}
    if len(plan.names) > 1:
        target = plan.targets[index]
        row |= {"split": plan.names[index], "file": target.name if target is not None else "-"}
    row |= {
        "record_id": src.record_id,
        "path": src.path,
        "qualname": src.qualname,
        "start_line": src.start_line,
        "end_line": src.end_line,
    }
    return orjson.dumps(row) + b"\n"


def _settings(options: Options, models: tuple[str, ...], report: Report) -> dict[str, str]:
    """The options of an export as the card shows them."""
    split = "/".join(f"{f:g}" for f in options.split) if options.split else "none"
    return {
        "tasks": ", ".join(options.tasks) or "every built-in task",
        "models": ", ".join(models) or "all",
        "answers cut at max_tokens": "included" if options.include_truncated else "left out",
        "answers flagged by cleaning": "included" if options.include_flagged else "left out",
        "minimum judge score": str(options.min_score) if options.min_score is not None else "none",
        "max tokens per example": f"{options.max_example_tokens:,} ({report.limit_source})",
        "tokens counted for": options.tokenizer_model,
        "system message": repr(options.system) if options.system else "none",
        "split": f"{split} (by a stable hash of each file's path)" if options.split else split,
        "answers": "whitespace trimmed off their ends",
    }
