"""The training formats: one `Example` as one line's object in openai-chat, sharegpt, alpaca or
prompt-completion (``jsonl`` writes the records as stored and has no renderer), and the defaults of the
limit every example is held to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .examples import Example

__all__ = ["FORMATS", "render", "DEFAULT_MAX_EXAMPLE_TOKENS", "DEFAULT_TOKENIZER_MODEL"]

DEFAULT_MAX_EXAMPLE_TOKENS = 16385
DEFAULT_TOKENIZER_MODEL = "gpt-4o-mini"


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
