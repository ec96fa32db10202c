"""Learning what an endpoint accepts from how it refuses, once for the whole run.

A 400 that names a parameter we sent is a lesson, not a failure: the run's `Shape` is rewritten and the
request sent again, with one note on stderr. What counts as naming it, in order:

1. the error object's ``param`` field (OpenAI: ``{"param": "max_tokens", "code": "unsupported_parameter"}``,
   ``{"param": "temperature", "code": "unsupported_value"}``);
2. its message: OpenAI's "Use 'max_completion_tokens' instead", or a parameter we sent quoted in it
   ("Unsupported parameter: 'stop' ...", vLLM's and LiteLLM's "Unrecognized request argument supplied: X",
   pydantic's ``extra_forbidden`` naming ``body.X``).

The token limit is never dropped: a refused ``max_tokens`` becomes ``max_completion_tokens`` and back.
Structured output is different, because servers refuse it without naming it (llama.cpp in its default
jinja mode answers ``400 Failed to initialize samplers: std::exception`` to a grammar it cannot build):
`FormatLadder` steps one job down json_schema → json_object → prompt only whatever the 400 says, and
lowers the run's level only when the weaker request then succeeded, so a 400 that has nothing to do with
the format costs at most two extra requests and changes nothing.

`ContextBudget` holds what is known of the endpoint's context size (the model table, llama.cpp's
``/props``, the numbers in an overflow error) and how the server's token counts compare with ours, so
prompts that cannot fit are left out before they are sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import APIError
from .request import FORMATS, Shape

__all__ = ["Lesson", "lesson_from", "FormatLadder", "ContextBudget", "OPTIONAL_PARAMS"]

#: Parameters a request may go without (the token limit is renamed instead, see `lesson_from`).
OPTIONAL_PARAMS = ("temperature", "top_p", "stop", "seed", "reasoning_effort", "stream_options")
_TOKEN_PARAMS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True, slots=True)
class Lesson:
    """One rewrite of the run's shape: rename the token limit to `rename`, or stop sending `omit`."""

    rename: str | None = None
    omit: str | None = None

    def apply(self, shape: Shape) -> bool:
        """Rewrite `shape`; False when it already says so (another request learned it first)."""
        if self.rename is not None:
            if shape.token_param == self.rename:
                return False
            shape.token_param = self.rename
            return True
        if self.omit is None or self.omit in shape.omit:
            return False
        shape.omit.add(self.omit)
        return True

    def describe(self) -> str:
        if self.rename is not None:
            return f"now sending the answer's token limit as {self.rename}"
        return f"no longer sending {self.omit}"


def _named(exc: APIError, body: dict[str, Any]) -> str | None:
    """The parameter of `body` that the 400 `exc` names, if any."""
    sent = [k for k in (*_TOKEN_PARAMS, *OPTIONAL_PARAMS) if k in body]
    if exc.param:
        param = exc.param.split(".")[-1]
        return param if param in sent else None
    text = str(exc)
    for name in sent:
        if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", text):
            return name
    return None


def lesson_from(exc: APIError, body: dict[str, Any]) -> Lesson | None:
    """What a 400 teaches about `body`'s shape, or None when it names nothing we can leave out."""
    if exc.status != 400:
        return None
    text = str(exc).lower()
    if "max_completion_tokens" in text and "use 'max_completion_tokens'" in text and "max_tokens" in body:
        return Lesson(rename="max_completion_tokens")
    name = _named(exc, body)
    if name is None:
        return None
    if name in _TOKEN_PARAMS:
        other = _TOKEN_PARAMS[1 - _TOKEN_PARAMS.index(name)]
        return Lesson(rename=other)
    return Lesson(omit=name)


class FormatLadder:
    """One job's way down the response formats after 400s, confirmed for the run only by a success."""

    def __init__(self, shape: Shape, enabled: bool) -> None:
        self.shape = shape
        self.enabled = enabled  # --response-format auto
        self.tried: str | None = None  # the weaker level this job is trying, not yet confirmed

    def step(self, sent: str | None) -> str | None:
        """A 400 answered a request sent with response format `sent`: the level to try next for this job,
        or None when there is nothing weaker (or stepping down is off)."""
        if not self.enabled or sent is None:
            return None
        if FORMATS.index(self.shape.response_format) > FORMATS.index(sent):
            self.tried = None
            return self.shape.response_format  # another job already learned a weaker level: use it
        lower = FORMATS.index(sent) + 1
        if lower >= len(FORMATS):
            return None
        self.tried = FORMATS[lower]
        return self.tried

    def confirm(self) -> str | None:
        """The request at the level tried succeeded: lower the run's level to it. Returns the new level
        when this call lowered it (the caller says so once), else None."""
        level, self.tried = self.tried, None
        if level is None or FORMATS.index(level) <= FORMATS.index(self.shape.response_format):
            return None
        self.shape.response_format = level
        return level


_LIMIT = (
    re.compile(r"maximum context length is (\d+)"),  # OpenAI, vLLM
    re.compile(r"available context size \((\d+) tokens?\)"),  # llama.cpp
    re.compile(
        r"(\d+) tokens? > (\d+) maximum"
    ),  # Anthropic: "prompt is too long: 210000 tokens > 200000 maximum"
    re.compile(r"maximum number of tokens allowed \((\d+)\)"),  # Gemini
)
_PROMPT = (
    re.compile(r"resulted in (\d+) tokens"),  # OpenAI
    re.compile(r"\((\d+) in the messages"),  # vLLM (older)
    re.compile(r"your request has (\d+) input tokens"),  # vLLM (newer)
    re.compile(r"request \((\d+) tokens?\) exceeds"),  # llama.cpp
    re.compile(r"too long: (\d+) tokens"),  # Anthropic
    re.compile(r"input token count \((\d+)\)"),  # Gemini
)
_TOO_LARGE = re.compile(
    r"input \((\d+) tokens\) is too large to process.*current batch size: (\d+)"
)  # llama.cpp
_OVERFLOW_CODES = {"context_length_exceeded", "exceed_context_size_error"}
_TEMPLATE = 256  # tokens a chat template may add around the messages, at most


def overflow_numbers(status: int, obj: dict[str, Any], message: str) -> tuple[int | None, int | None] | None:
    """(context size, prompt tokens) when a 400 says the prompt does not fit the context, else None.

    Recognised: OpenAI's ``code: context_length_exceeded`` ("This model's maximum context length is N
    tokens. However, your messages resulted in M tokens"), vLLM's wording of the same, llama.cpp's
    ``type: exceed_context_size_error`` with ``n_ctx``/``n_prompt_tokens`` ("request (M tokens) exceeds the
    available context size (N tokens)"), Anthropic's "prompt is too long" and Gemini's token-count error; and
    one 500: llama.cpp's embeddings refusal of an input longer than its physical batch ("input (M tokens) is
    too large to process. increase the physical batch size (current batch size: N)", seen from its server
    here), which no retry can mend."""
    if status == 500 and (big := _TOO_LARGE.search(message)) is not None:
        return int(big.group(2)), int(big.group(1))
    if status != 400:
        return None
    code = str(obj.get("code") or "")
    kind = str(obj.get("type") or "")
    text = message.lower()
    known = code in _OVERFLOW_CODES or kind in _OVERFLOW_CODES
    if not known and not any(p.search(text) for p in _LIMIT):
        return None
    limit = obj.get("n_ctx") if isinstance(obj.get("n_ctx"), int) else None
    prompt = obj.get("n_prompt_tokens") if isinstance(obj.get("n_prompt_tokens"), int) else None
    for pattern in _LIMIT:
        m = pattern.search(text)
        if m and limit is None:
            limit = int(m.group(m.lastindex or 1))
    for pattern in _PROMPT:
        m = pattern.search(text)
        if m and prompt is None:
            prompt = int(m.group(1))
    return limit, prompt


class ContextBudget:
    """What is known of the endpoint's context size, and how its token counts compare with ours.

    `ratio` is the largest (server's count ÷ our count) seen for a prompt: our tokenizer is rarely the
    model's, and a small self-hosted vocabulary can take several times as many tokens. A prompt whose
    estimate times the ratio is over the limit cannot fit and is left out as ``too_long_for_model``."""

    def __init__(self, limit: int | None = None, source: str = "") -> None:
        self.limit = limit
        self.source = source
        self.ratio = 1.0

    def learn_limit(self, limit: int | None, source: str) -> bool:
        """A context size from `source`; True when it is news (smaller than what was known)."""
        if limit is None or limit <= 0 or (self.limit is not None and limit >= self.limit):
            return False
        self.limit, self.source = limit, source
        return True

    def calibrate(self, ours: int | None, theirs: int | None) -> None:
        if ours and theirs and ours > 0:
            self.ratio = max(self.ratio, min(theirs / ours, 50.0))

    def may_not_fit(self, utf8_bytes: int) -> bool:
        """Whether a prompt of `utf8_bytes` bytes could be over the limit. A token is at least one byte in
        the byte-level tokenizers models use, and a chat template adds far fewer than `_TEMPLATE` tokens,
        so a shorter prompt fits whatever the tokenizer and needs no counting."""
        return self.limit is not None and utf8_bytes + _TEMPLATE > self.limit

    def too_long(self, tokens: int) -> bool:
        return self.limit is not None and tokens * self.ratio > self.limit
