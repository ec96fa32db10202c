"""Ask: a question answered by the chat model from the snippets search finds, with the sources it was given.

``snipstream ask "QUESTION"`` retrieves the `k` nearest snippets (`stream.search`), gives them to the chat
model (``--model``, ``--api``) as numbered sources, each headed ``[n] path:start-end qualname (language
kind)`` with its code in a fence and its annotation, and streams the answer. The system message tells the
model to answer from the sources alone, to cite them as ``path:start-end``, and to say plainly when they do
not hold the answer.

The prompt (system message, sources and question, counted with `stream.tokens` as a chat conversation) is
held to a token budget (``--context-budget``): sources are taken best first, and one that would overflow
the budget is left out, the lower-ranked ones still getting their turn, so one long class does not shut out
every smaller snippet. When not even one source fits, nothing is asked (a ConfigError names the smallest).

Streaming (`AnswerStream`): each piece of the answer is written as it arrives. A retry after part of an
answer was written (a stream that broke off, a timeout) ends the partial answer's line, says so on stderr,
and writes the new answer from its start: the answer that counts is the last one on stdout. An answer that
came as one JSON document (``--no-stream``, or a server that ignores ``stream``) is written when it is whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import anyio

from .errors import ConfigError, unwrapped

if TYPE_CHECKING:
    from .config import Config
    from .search import Found, Hit
    from .sse import Completion
    from .tokens import Tokenizer

__all__ = [
    "SYSTEM",
    "DEFAULT_K",
    "DEFAULT_BUDGET",
    "Prompt",
    "Answer",
    "AnswerStream",
    "place",
    "build_prompt",
    "ask",
]

#: What the model is told about the sources it gets.
SYSTEM = (
    "You answer questions about a codebase. With the question come numbered sources: snippets of its code, "
    "each headed by its location (path:start-end) and name, with an explanation of what it does. Answer "
    "from these sources only. Cite each source you use by its location, as path:start-end. If the sources "
    "do not hold the answer, say plainly that they do not, and do not guess beyond them."
)
DEFAULT_K = 8  # snippets retrieved
DEFAULT_BUDGET = 6000  # tokens of the prompt: system message, sources and question


@dataclass(frozen=True, slots=True)
class Prompt:
    """The question with the sources that fit the budget: what is sent, and what was left out."""

    system: str
    user: str
    sources: tuple[Hit, ...]  # in the order they are numbered
    left_out: int  # retrieved snippets that did not fit
    tokens: int  # the whole prompt's, as counted


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer and what it came from: the sources given, the model that answered, its usage."""

    question: str
    text: str
    sources: tuple[Hit, ...]
    model: str
    usage: dict[str, Any] | None
    finish_reason: str | None
    left_out: int
    attempts: int

    def document(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "question": self.question,
            "answer": self.text,
            "sources": [
                {
                    "path": h.path,
                    "start_line": h.start_line,
                    "end_line": h.end_line,
                    "qualname": h.qualname,
                    "score": h.score,
                }
                for h in self.sources
            ],
            "model": self.model,
            "usage": self.usage,
        }

    def sources_text(self) -> str:
        """What follows the answer on stdout: a blank line, ``Sources:``, one ``path:start-end`` a line."""
        return "\nSources:\n" + "".join(f"{place(h)}\n" for h in self.sources)


def place(hit: Hit) -> str:
    """A source's location as the model is asked to cite it: ``path:start-end``."""
    return f"{hit.path}:{hit.start_line}-{hit.end_line}"


def _fence(code: str) -> str:
    """A Markdown fence longer than any run of backticks in `code`."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def _source(number: int, hit: Hit) -> str:
    fence = _fence(hit.code)
    head = f"[{number}] {place(hit)} {hit.qualname} ({hit.language} {hit.kind})"
    block = f"{head}\n{fence}{hit.language}\n{hit.code.rstrip()}\n{fence}\n"
    note = (hit.annotation or "").strip()
    return block + (f"Explanation: {note}\n" if note else "")


def _user(question: str, blocks: Sequence[str]) -> str:
    return "Sources:\n\n" + "\n".join(blocks) + f"\nQuestion: {question.strip()}\n"


def build_prompt(question: str, hits: Sequence[Hit], budget: int, tokenizer: Tokenizer) -> Prompt:
    """The prompt for `question` with as many of `hits` (best first) as fit `budget` tokens (see the module's
    docstring). Raises ConfigError when not even the smallest fits."""
    count = tokenizer.count_chat
    base = count(SYSTEM, _user(question, []))
    taken: list[tuple[Hit, str]] = []
    used = base
    sizes = []
    for hit in hits:
        block = _source(len(taken) + 1, hit)
        size = tokenizer.count(block + "\n")
        sizes.append(size)
        if used + size <= budget:
            taken.append((hit, block))
            used += size
    user = _user(question, [b for _, b in taken])
    tokens = count(SYSTEM, user)
    while taken and tokens > budget:  # the pieces' counts only add up to about the whole's
        taken.pop()
        user = _user(question, [b for _, b in taken])
        tokens = count(SYSTEM, user)
    if hits and not taken:
        raise ConfigError(
            f"--context-budget {budget} holds none of the {len(hits)} snippets found: the question and "
            f"instructions take {base} tokens, the smallest snippet {min(sizes)} more"
        )
    return Prompt(SYSTEM, user, tuple(h for h, _ in taken), len(hits) - len(taken), tokens)


class AnswerStream:
    """Writes an answer to `out` as it streams (`on_text`), starting over after a retry (`on_attempt`),
    and writes an answer that came whole when it is done (`finish`). `note` hears of a restart."""

    def __init__(self, out: IO[str], note: Callable[[str], None]) -> None:
        self.out = out
        self.note = note
        self.written = 0  # characters of the current attempt's answer written
        self.attempts = 0

    def on_attempt(self) -> None:
        self.attempts += 1
        if self.written:
            self.out.write("\n")
            self.out.flush()
            self.note(
                f"note: the answer broke off after {self.written} characters and is asked for again "
                f"(attempt {self.attempts}); the answer starts over below"
            )
            self.written = 0

    def on_text(self, piece: str) -> None:
        self.out.write(piece)
        self.out.flush()
        self.written += len(piece)

    def abandon(self) -> None:
        """The request failed: end the line of any partial answer, so the error stands on its own."""
        if self.written:
            self.out.write("\n")
            self.out.flush()

    def finish(self, completion: Completion) -> None:
        if not self.written:
            self.out.write(completion.text)
        if not completion.text.endswith("\n"):
            self.out.write("\n")
        self.out.flush()


async def ask(
    cfg: Config,
    question: str,
    *,
    k: int = DEFAULT_K,
    budget: int = DEFAULT_BUDGET,
    stream: AnswerStream | None = None,
    note: Callable[[str], None] = lambda message: None,
) -> Answer:
    """Answer `question` from the snippets `cfg`'s checkpoint holds nearest to it (see the module's
    docstring); with `stream`, the answer is written as it comes. Raises what `stream.search.search` raises
    (a ConfigError when there is nothing to search) and the APIError of a request that failed."""
    if not question.strip():
        raise ConfigError("the question is empty")
    found, tokenizer = await _retrieve(cfg, question, k)
    if not found.hits:
        raise ConfigError("search found no snippets for the question")
    prompt = build_prompt(question, found.hits, budget, tokenizer)
    if prompt.left_out:
        note(
            f"note: {prompt.left_out} of the {len(found.hits)} snippets found did not fit "
            f"--context-budget {budget} and were left out"
        )
    completion = await _complete(cfg, prompt, stream)
    if completion.finish_reason == "length":
        note(f"note: the answer was cut at --max-tokens {cfg.max_tokens}")
    return Answer(
        question=question,
        text=completion.text,
        sources=prompt.sources,
        model=completion.model or cfg.model,
        usage=completion.usage,
        finish_reason=completion.finish_reason,
        left_out=prompt.left_out,
        attempts=completion.attempts,
    )


async def _retrieve(cfg: Config, question: str, k: int) -> tuple[Found, Tokenizer]:
    """The search, with the chat model's tokenizer loaded in a thread meanwhile (tiktoken may download;
    a search that fails does not wait for it)."""
    from .search import search
    from .tokens import load_tokenizer

    box: dict[str, Tokenizer] = {}

    async def load() -> None:
        box["tokenizer"] = await anyio.to_thread.run_sync(load_tokenizer, cfg.model, abandon_on_cancel=True)

    with unwrapped():
        async with anyio.create_task_group() as tg:
            tg.start_soon(load)
            found = await search(cfg, question, k)
    return found, box["tokenizer"]


async def _complete(cfg: Config, prompt: Prompt, stream: AnswerStream | None) -> Completion:
    """The chat request for `prompt`, through the run's endpoint pool (its retries, limits and breaker)."""
    from .pipeline.resources import client_pool
    from .request import build_body, initial_shape

    shape, _ = initial_shape(
        kind=cfg.endpoint_kind, api=cfg.api, model=cfg.model, response_format=cfg.response_format
    )
    body = build_body(
        api=cfg.api,
        model=cfg.model,
        system=prompt.system,
        user=prompt.user,
        params=cfg.params,
        stream=cfg.stream,
        shape=shape,
    )
    try:
        async with client_pool(cfg) as pool:
            completion: Completion = await pool.complete(
                body,
                reserve_tokens=prompt.tokens + (cfg.max_tokens or 0),
                on_attempt=stream.on_attempt if stream else None,
                on_text=stream.on_text if stream else None,
            )
    except BaseException:
        if stream is not None:
            stream.abandon()
        raise
    if stream is not None:
        stream.finish(completion)
    return completion
