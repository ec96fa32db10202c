"""The export from start to end: options checked, the checkpoint's places streamed through the exporter to
the split's files, everything counted in one `Report`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sinks.reader import ExportPlace, open_readonly

from ..errors import ConfigError, ExampleSkipped
from .exporter import Exporter, Options
from .files import Outputs
from .formats import DEFAULT_MAX_EXAMPLE_TOKENS, DEFAULT_TOKENIZER_MODEL, FORMATS
from .report import Report
from .split import SPLIT_NAMES, split_targets

__all__ = ["export"]


def export(
    db: str | Path,
    fmt: str,
    output: str,
    *,
    split: tuple[float, ...] | None = None,
    tasks: tuple[str, ...] = (),
    models: tuple[str, ...] = (),
    include_truncated: bool = False,
    max_example_tokens: int = DEFAULT_MAX_EXAMPLE_TOKENS,
    system: str | None = None,
    tokenizer_model: str = DEFAULT_TOKENIZER_MODEL,
) -> Report:
    """Export the checkpoint `db` as `fmt` to `output` (``-`` for stdout); see the module docstring.

    Raises ConfigError for unusable arguments or checkpoint, SinkError when the output cannot be written.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if split is not None and output == "-":
        raise ConfigError("--split writes one file per split: give -o FILE, not -o -")
    if max_example_tokens < 0:
        raise ConfigError(f"--max-example-tokens must be 0 (no limit) or more, got {max_example_tokens}")
    targets = split_targets(output, len(split)) if split else None if output == "-" else [Path(output)]
    names = list(SPLIT_NAMES[: len(split)]) if split else ["all"]
    report = Report(fmt=fmt, written=dict.fromkeys(names, 0), max_example_tokens=max_example_tokens)
    if targets is not None:
        report.targets = {name: str(t) for name, t in zip(names, targets, strict=True)}
    options = Options(fmt, split, tasks, include_truncated, max_example_tokens, system, tokenizer_model)
    ex = Exporter(options, report)
    with open_readonly(db) as reader:
        report.failed_answers = reader.failed_count()
        try:
            with Outputs(targets) as out:
                _write(reader.export_places(models), ex, out, names)
        except BrokenPipeError:  # stdout's reader went away during the final flush
            report.output_closed = True
    ex.finish()
    return report


def _write(places: Iterable[ExportPlace], ex: Exporter, out: Outputs, names: list[str]) -> None:
    """Every answer's lines to its split's stream, counted in `ex.report`; stops at a closed pipe."""
    report = ex.report
    for nth, line in places:
        report.places += 1
        if nth > 1 or line is None:
            continue  # another place of an answer already exported
        report.answers += 1
        try:
            index, lines = ex.lines(line)
        except ExampleSkipped as skip:
            report.answers_skipped[skip.reason] += 1
            continue
        try:
            for data in lines:
                out.write(index, data)
        except BrokenPipeError:
            report.output_closed = True
            return
        report.written[names[index]] += len(lines)
