"""The JSON body of one request to an OpenAI-compatible API, and the run's request shape (no I/O: planning
and dry runs use it without loading the HTTP client).

`Shape` is what this run sends: the token-limit field's name, the parameters left out, and how structured
tasks ask for JSON. It starts from the tables of `stream.endpoints` and is rewritten for the whole run by
`stream.negotiate` when a server refuses something; every attempt's body is built from it afresh, so a
lesson learned by one request applies to every later one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .endpoints import KINDS, family_of

__all__ = ["Shape", "build_body", "initial_shape", "reask", "FORMATS"]

#: How structured tasks ask for JSON, strongest first; `stream.negotiate` steps down this list.
FORMATS = ("json_schema", "json_object", "off")


@dataclass
class Shape:
    """What this run's requests look like (mutable: lessons rewrite it once for the run)."""

    token_param: str = "max_tokens"  # or "max_completion_tokens"
    omit: set[str] = field(default_factory=set)  # parameters never sent
    response_format: str = "json_schema"  # json_schema | json_object | off


def initial_shape(*, kind: str, api: str, model: str, response_format: str) -> tuple[Shape, set[str]]:
    """The shape the tables give before anything is learned, and the parameters it leaves out because the
    model family does not support them (so the user who set one can be told)."""
    family = family_of(model)
    token_param = KINDS[kind].token_param
    if family is not None and family.token_param:
        token_param = family.token_param
    if api != "chat":
        token_param = "max_tokens"  # the legacy /completions endpoint knows no other
    omit = set(family.unsupported) if family is not None else set()
    level = "json_schema" if response_format == "auto" else response_format
    return Shape(token_param=token_param, omit=set(omit), response_format=level), omit


def build_body(
    *,
    api: str,
    model: str,
    system: str | None,
    user: str,
    params: dict[str, Any],
    stream: bool,
    shape: Shape | None = None,
    schema: dict[str, Any] | None = None,
    schema_name: str = "answer",
    followup: tuple[dict[str, str], ...] = (),
) -> dict[str, Any]:
    """The JSON body for ``/chat/completions`` (api="chat") or legacy ``/completions``.

    `params` are the generation parameters (None and empty values are not sent); ``max_tokens`` goes out
    under the shape's token-limit name. A structured task's `schema` is sent as ``response_format`` as the
    shape says (chat only). `followup` messages (a re-ask) come after the user message."""
    shape = shape or Shape()
    body: dict[str, Any] = {"model": model}
    if api == "chat":
        messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user})
        messages.extend(followup)
        body["messages"] = messages
    else:
        prompt = f"{system}\n\n{user}" if system else user
        for message in followup:
            prompt += f"\n\n{message['content']}"
        body["prompt"] = prompt + ("\n" if followup else "")
    for key, value in params.items():
        if value is None or value == [] or key in shape.omit:
            continue
        body[shape.token_param if key == "max_tokens" else key] = value
    if stream:
        body["stream"] = True
        if "stream_options" not in shape.omit:
            body["stream_options"] = {"include_usage": True}
    if schema is not None and api == "chat" and shape.response_format != "off":
        if shape.response_format == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema},
            }
        else:
            body["response_format"] = {"type": "json_object"}
    return body


def reask(reply: str, problem: str) -> tuple[dict[str, str], ...]:
    """The messages that ask once more for a structured reply that did not parse (`build_body`'s `followup`):
    the model's own reply, then what was wrong with it."""
    fix = f"That reply cannot be used: {problem}. Reply again with only the JSON object."
    return ({"role": "assistant", "content": reply}, {"role": "user", "content": fix})
