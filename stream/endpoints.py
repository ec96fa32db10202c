"""Which API we talk to and how its requests must look: endpoint kinds and model families, as documented.

Two small tables decide a request's shape before anything is learned at run time (`stream.negotiate`
rewrites it once for the run when a server refuses a parameter all the same):

- **Endpoint kinds** (`KINDS`): how to authenticate, which URL to post to, which variable holds the key,
  and the token-limit parameter the endpoint documents. The kind is taken from the base URL's host
  (`detect_kind`) unless ``--endpoint-kind`` names it.
- **Model families** (`FAMILIES`): OpenAI's reasoning models (o1, o3, o4-mini, the gpt-5 family) take
  ``max_completion_tokens`` ("max_tokens ... is not compatible with o-series models", OpenAI's chat
  reference) and spend hidden reasoning tokens out of it ("an upper bound ... including visible output
  tokens and reasoning tokens"); they refuse any ``temperature``/``top_p`` but the default
  (400 ``unsupported_value``: "Only the default (1) value is supported"), so those are left out; the
  context window is the model's published one.
  https://platform.openai.com/docs/api-reference/chat/create ·
  https://platform.openai.com/docs/guides/reasoning
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "EndpointKind",
    "KINDS",
    "ModelFamily",
    "FAMILIES",
    "detect_kind",
    "family_of",
    "endpoint_url",
    "auth_headers",
    "DEFAULT_AZURE_API_VERSION",
]

#: Azure OpenAI's latest GA data-plane version for the dated (``/deployments/...``) API, used when neither
#: ``--api-version`` nor ``$OPENAI_API_VERSION`` is set.
#: https://learn.microsoft.com/azure/ai-services/openai/reference
DEFAULT_AZURE_API_VERSION = "2024-10-21"


@dataclass(frozen=True, slots=True)
class EndpointKind:
    """One kind of OpenAI-compatible endpoint.

    `auth` is ``bearer`` (``Authorization: Bearer KEY``) or ``api-key`` (Azure's ``api-key: KEY`` header);
    `token_param` the token-limit field sent to models of no known family; `key_env` the variable the key
    is read from unless ``--api-key-env`` says otherwise; `doc` where the behaviour is documented."""

    name: str
    auth: str
    token_param: str
    key_env: str
    doc: str


KINDS: dict[str, EndpointKind] = {
    k.name: k
    for k in (
        # max_tokens "is now deprecated in favor of max_completion_tokens", which every current model takes.
        EndpointKind(
            "openai",
            "bearer",
            "max_completion_tokens",
            "OPENAI_API_KEY",
            "https://platform.openai.com/docs/api-reference/chat/create",
        ),
        # api-key header, /openai/deployments/{deployment}/chat/completions?api-version=..., or the v1 API
        # at /openai/v1 (no api-version); reasoning deployments need max_completion_tokens.
        EndpointKind(
            "azure",
            "api-key",
            "max_tokens",
            "AZURE_OPENAI_API_KEY",
            "https://learn.microsoft.com/azure/ai-services/openai/reference",
        ),
        # max_tokens and max_completion_tokens "fully supported"; response_format "ignored".
        EndpointKind(
            "anthropic",
            "bearer",
            "max_tokens",
            "ANTHROPIC_API_KEY",
            "https://docs.anthropic.com/en/api/openai-sdk",
        ),
        EndpointKind(
            "gemini",
            "bearer",
            "max_tokens",
            "GEMINI_API_KEY",
            "https://ai.google.dev/gemini-api/docs/openai",
        ),
        EndpointKind(
            "vllm",
            "bearer",
            "max_tokens",
            "OPENAI_API_KEY",
            "https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html",
        ),
        EndpointKind(
            "llamacpp",
            "bearer",
            "max_tokens",
            "OPENAI_API_KEY",
            "https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md",
        ),
        EndpointKind(
            "ollama",
            "bearer",
            "max_tokens",
            "OPENAI_API_KEY",
            "https://docs.ollama.com/api/openai-compatibility",
        ),
        EndpointKind(
            "litellm",
            "bearer",
            "max_tokens",
            "OPENAI_API_KEY",
            "https://docs.litellm.ai/docs/proxy/user_keys",
        ),
        EndpointKind("generic", "bearer", "max_tokens", "OPENAI_API_KEY", ""),
    )
}

_HOSTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(^|\.)api\.openai\.com$"), "openai"),
    (re.compile(r"\.(openai\.azure\.com|cognitiveservices\.azure\.com|services\.ai\.azure\.com)$"), "azure"),
    (re.compile(r"(^|\.)api\.anthropic\.com$"), "anthropic"),
    (re.compile(r"(^|\.)generativelanguage\.googleapis\.com$"), "gemini"),
)


def detect_kind(base_url: str) -> str:
    """The endpoint kind a base URL's host says; ``generic`` when it says none (self-hosted servers are
    told apart by what they answer, see `stream.negotiate`, or named with ``--endpoint-kind``). Ollama's
    port 11434 is its own documented default."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    for pattern, kind in _HOSTS:
        if pattern.search(host):
            return kind
    if parts.port == 11434:
        return "ollama"
    return "generic"


@dataclass(frozen=True, slots=True)
class ModelFamily:
    """Models that share a request shape. `unsupported` lists parameters never sent to them (the user is
    told once when they set one); `context` is the context window in tokens, when published."""

    name: str
    pattern: re.Pattern[str]
    reasoning: bool = False
    token_param: str | None = None
    unsupported: frozenset[str] = frozenset()
    context: int | None = None


def _reasoning(name: str, pattern: str, *, context: int) -> ModelFamily:
    """An OpenAI reasoning family: ``max_completion_tokens``, sampling left at its default."""
    return ModelFamily(
        name,
        re.compile(pattern),
        reasoning=True,
        token_param="max_completion_tokens",
        unsupported=frozenset({"temperature", "top_p"}),
        context=context,
    )


#: First match wins; a dated snapshot (``gpt-5-mini-2025-08-07``) or an ``openai/`` prefix (LiteLLM,
#: OpenRouter) matches its family.
FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily("gpt-5-chat", re.compile(r"gpt-5(\.\d+)?-chat"), context=128_000),
    _reasoning("gpt-5", r"gpt-5(\.\d+)?(-mini|-nano|-pro|-codex)?\b", context=400_000),
    _reasoning("o-series", r"o[134](-mini|-pro|-preview)?\b", context=200_000),
    ModelFamily("gpt-4.1", re.compile(r"gpt-4\.1(-mini|-nano)?\b"), context=1_047_576),
    ModelFamily("gpt-4o", re.compile(r"gpt-4o(-mini)?\b"), context=128_000),
    ModelFamily("gpt-4-turbo", re.compile(r"gpt-4-turbo\b"), context=128_000),
    ModelFamily("gpt-3.5-turbo", re.compile(r"gpt-3\.5-turbo\b"), context=16_385),
)


def family_of(model: str) -> ModelFamily | None:
    """The family of `model` (case-insensitive, after any ``provider/`` prefix), or None."""
    name = model.lower().rsplit("/", 1)[-1]
    for family in FAMILIES:
        if family.pattern.match(name):
            return family
    return None


#: The route of each API under an endpoint's base URL ("embeddings": `stream.embeddings`).
_ROUTES = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}


def endpoint_url(kind: str, base_url: str, api: str, model: str, api_version: str | None) -> str:
    """The URL to post completions (or, with `api` ``embeddings``, embedding requests) to.

    Azure (https://learn.microsoft.com/azure/ai-services/openai/reference): a base URL that already names a
    deployment (``.../openai/deployments/NAME``) gets the route and ``?api-version=``; the v1 API
    (``.../openai/v1``) takes the OpenAI route as it is, with no version; a bare resource URL
    (``https://RESOURCE.openai.azure.com`` or ``.../openai``) gets ``/openai/deployments/{--model}``, the
    model name standing for the deployment name as the OpenAI SDK's ``AzureOpenAI`` client does."""
    base = base_url.rstrip("/")
    route = _ROUTES.get(api, "/completions")
    if kind != "azure":
        return base + route
    path = urlsplit(base).path
    if re.search(r"/openai/v1$", path):
        return base + route
    if "/deployments/" not in path:
        root = base[: -len("/openai")] if path.endswith("/openai") else base
        base = f"{root}/openai/deployments/{model}"
    return f"{base}{route}?api-version={api_version or DEFAULT_AZURE_API_VERSION}"


def auth_headers(kind: str, key: str | None) -> dict[str, str]:
    """The header that carries the key: ``api-key`` for Azure, ``Authorization: Bearer`` elsewhere."""
    if not key:
        return {}
    if KINDS[kind].auth == "api-key":
        return {"api-key": key}
    return {"authorization": f"Bearer {key}"}
