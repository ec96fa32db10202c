"""The training formats: one `Example` as one line's object in openai-chat, sharegpt, alpaca or
prompt-completion (``jsonl`` writes the records as stored and has no renderer), and the limit every example
is held to: the training context of the model its tokens are counted for.

sharegpt keeps the roles its own consumers read: LLaMA-Factory's sharegpt tags default to ``from``/``value``
with ``human``, ``gpt`` and ``system`` (hiyouga/LLaMA-Factory, data/README.md, "tags"), and Axolotl's
chat_template strategy maps ``human`` → user and ``gpt`` → assistant by default
(axolotl-ai-cloud/axolotl, src/axolotl/prompt_strategies/chat_template.py, ``ChatTemplatePrompter``).
TRL's SFTTrainer reads ``messages`` (openai-chat) or ``prompt``/``completion``; its sharegpt conversion
(trl/data_utils.py, ``maybe_convert_to_chatml``) renames the keys, and before recent versions not the roles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .examples import Example

__all__ = [
    "FORMATS",
    "render",
    "DEFAULT_MAX_EXAMPLE_TOKENS",
    "DEFAULT_TOKENIZER_MODEL",
    "FINE_TUNING_LIMITS",
    "example_limit",
    "SHAREGPT_NOTE",
]

DEFAULT_TOKENIZER_MODEL = "gpt-4o-mini"

#: Tokens per training example, by model: OpenAI's fine-tuning guide, "Token limits" ("training examples
#: context length"; https://platform.openai.com/docs/guides/fine-tuning#token-limits). The dated snapshots
#: as listed there; the aliases name the snapshot they point to.
FINE_TUNING_LIMITS: dict[str, int] = {
    "gpt-4o-2024-08-06": 65_536,
    "gpt-4o-mini-2024-07-18": 65_536,
    "gpt-3.5-turbo-0125": 16_385,
    "gpt-3.5-turbo-1106": 16_385,
    "gpt-3.5-turbo-0613": 4_096,
    "gpt-4o": 65_536,
    "gpt-4o-mini": 65_536,
    "gpt-3.5-turbo": 16_385,
}
DEFAULT_MAX_EXAMPLE_TOKENS = FINE_TUNING_LIMITS[DEFAULT_TOKENIZER_MODEL]

SHAREGPT_NOTE = (
    "sharegpt has the roles human/gpt that LLaMA-Factory (formatting: sharegpt) and Axolotl (type: "
    "chat_template, message_property_mappings role: from, content: value) read; for TRL's SFTTrainer export "
    "openai-chat (messages) or prompt-completion instead"
)


def example_limit(model: str) -> tuple[int, str]:
    """(tokens per example, where the figure comes from) for `model`: its own limit in `FINE_TUNING_LIMITS`
    (a fine-tuned ``ft:BASE:...`` model is held to its base's), else the longest entry it extends (a newer
    ``gpt-4o-mini-...`` snapshot), else the default tokenizer model's."""
    base = model.split(":")[1] if model.startswith("ft:") else model
    if base in FINE_TUNING_LIMITS:
        return FINE_TUNING_LIMITS[base], f"OpenAI's fine-tuning limit for {base}"
    prefixes = [name for name in FINE_TUNING_LIMITS if base.startswith(name + "-")]
    if prefixes:
        name = max(prefixes, key=len)
        return FINE_TUNING_LIMITS[name], f"OpenAI's fine-tuning limit for {name}"
    return DEFAULT_MAX_EXAMPLE_TOKENS, (
        f"no documented fine-tuning limit for {model!r}: {DEFAULT_TOKENIZER_MODEL}'s; give the trainer's "
        "own with --max-example-tokens"
    )


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
