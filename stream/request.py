"""The JSON body of one request to an OpenAI-compatible API (no I/O: planning and dry runs use it without
loading the HTTP client)."""

from __future__ import annotations

from typing import Any

__all__ = ["build_body"]


def build_body(
    *, api: str, model: str, system: str | None, user: str, params: dict[str, Any], stream: bool
) -> dict[str, Any]:
    """The JSON body for ``/chat/completions`` (api="chat") or legacy ``/completions``."""
    body: dict[str, Any] = {"model": model}
    if api == "chat":
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user})
        body["messages"] = messages
    else:
        body["prompt"] = f"{system}\n\n{user}" if system else user
    body.update((k, v) for k, v in params.items() if v is not None and v != [])
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body
