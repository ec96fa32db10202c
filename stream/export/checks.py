"""The format checks every example passes before it is written: OpenAI's fine-tuning checks for
openai-chat, and the same checks in their own shapes for sharegpt, alpaca and prompt-completion.

A check returns the problems found, as short stable keys counted in the export's summary (empty: fine).
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_example", "check_openai_chat"]

_CHAT_ROLES = frozenset({"system", "user", "assistant"})
_CHAT_MESSAGE_KEYS = frozenset({"role", "content", "name", "weight"})


def check_openai_chat(example: Any) -> list[str]:
    """OpenAI's fine-tuning format checks for one chat example: the problems found (empty when it is fine).

    After OpenAI's cookbook "Data preparation and analysis for chat model fine-tuning"
    (openai/openai-cookbook, examples/Chat_finetuning_data_prep.ipynb, "Format validation"), which also
    allows a legacy ``function_call`` key that no export writes; the length limit per example (the guide's
    "Token limits", https://platform.openai.com/docs/guides/fine-tuning) is held by the exporter, which
    counts tokens (`formats.example_limit`)."""
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
        problems += _check_message(message)
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        problems.append("no_assistant_message")
    return problems


def _check_message(message: dict[str, Any]) -> list[str]:
    problems = [f"unknown_message_key:{key}" for key in message if key not in _CHAT_MESSAGE_KEYS]
    if "role" not in message or "content" not in message:
        problems.append("message_missing_key")
    problems += _check_role_and_content(message, "role", _CHAT_ROLES, "content")
    if "weight" in message and message["weight"] not in (0, 1):
        problems.append("bad_weight")
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
        problems += _check_role_and_content(turn, role, roles, "value")
    if not any(isinstance(t, dict) and t.get(role) == answer for t in turns):
        problems.append("no_assistant_message")
    return problems


def _check_role_and_content(
    turn: dict[str, Any], role: str, roles: frozenset[str], content: str
) -> list[str]:
    """What every chat message and conversation turn must be: its `role` key one of `roles`, its `content`
    key a string that is not blank."""
    problems = []
    if turn.get(role) not in roles:
        problems.append("unrecognized_role")
    text = turn.get(content)
    if not isinstance(text, str):
        problems.append("content_not_a_string")
    elif not text.strip():
        problems.append("empty_content")
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
