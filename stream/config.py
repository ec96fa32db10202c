"""One Config for a run. Precedence: command-line flags > environment > defaults.

Environment: the key in ``OPENAI_API_KEY`` (or the endpoint kind's variable, or the one named by ``api_key_env``),
``OPENAI_BASE_URL``, and Azure's ``OPENAI_API_VERSION``. With ``--endpoint``/``--endpoints`` each endpoint's key
is in the variable it names (`stream.endpoint_list`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from . import endpoint_list
from .config_checks import (
    APIS,
    DEFAULT_CONTEXT,
    MAX_TOKENS,
    NEAR_DUP,
    ON_SECRET,
    PROGRESS_MODES,
    REASONING_EFFORTS,
    REASONING_MAX_TOKENS,
    RESPONSE_FORMATS,
    TRANSPORTS,
    check,
)
from .context import remembered_mode
from .endpoint_list import DEFAULT_BASE_URL, Endpoint, is_loopback
from .endpoints import family_of
from .prompt import DEFAULT_TASKS, TASKS, Template, task_fingerprint, with_context

__all__ = [
    "Config",
    "DEFAULT_BASE_URL",
    "REASONING_EFFORTS",
    "APIS",
    "RESPONSE_FORMATS",
    "ON_SECRET",
    "NEAR_DUP",
    "PROGRESS_MODES",
    "TRANSPORTS",
    "MAX_TOKENS",
    "REASONING_MAX_TOKENS",
    "is_loopback",
]


@dataclass(frozen=True)
class Config:
    """Everything a run needs. Build one, then call `resolve()` to apply the environment and validate."""

    paths: tuple[str, ...] = ()
    # API
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else DEFAULT_BASE_URL
    api_key: str | None = field(default=None, repr=False)  # None: from $api_key_env
    api_key_env: str | None = None  # None: the endpoint kind's (OPENAI_API_KEY, AZURE_OPENAI_API_KEY, ...)
    endpoint_kind: str = "auto"  # auto (from the base URL's host) or a name of stream.endpoints.KINDS
    api_version: str | None = None  # Azure's api-version; None: $OPENAI_API_VERSION, else the GA default
    api: str = "chat"  # one of APIS
    model: str = "gpt-4o-mini"
    # several endpoints (stream.endpoint_list): specs, a TOML file, and whether their models may differ
    endpoint_specs: tuple[str, ...] = ()
    endpoints_file: str | None = None
    mixed_models: bool = False
    #: set by resolve(): every endpoint of the run (without --endpoint(s), the one of --base-url)
    endpoints: tuple[Endpoint, ...] = ()
    max_tokens: int | None = None  # None: MAX_TOKENS, or REASONING_MAX_TOKENS for reasoning models
    reasoning_effort: str | None = None  # sent only when given
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stream: bool = True
    tasks: tuple[Template, ...] = tuple(TASKS[name] for name in DEFAULT_TASKS)
    response_format: str = "auto"  # one of RESPONSE_FORMATS (structured tasks)
    judge: bool = False  # --task judge (stream.judge); a score under judge_reask_below (0: never) asks again
    judge_reask_below: int = 3
    judge_reasks: int = 1
    # --task embed (stream.embeddings): vectors of each snippet's text through /embeddings, after the
    # other tasks; embed_text is one of EMBED_TEXTS; several inputs per request, bounded by both limits
    embed: bool = False
    embed_text: str = "both"
    embed_model: str = "text-embedding-3-small"
    dimensions: int | None = None  # sent only when given (text-embedding-3 and later take it)
    embed_batch: int = 256
    embed_batch_tokens: int = 100_000
    # what a prompt is told about where its snippet lives (stream.context): one of CONTEXT_MODES, and its
    # bound; None: resolve() takes the checkpoint's (stream.context.remembered_mode), else DEFAULT_CONTEXT
    context: str | None = None
    context_tokens: int = 2048
    # throughput and reliability
    concurrency: int = 16
    clients: int = 0  # 0: one client per 8 concurrent requests
    transport: str = "aiohttp"  # one of TRANSPORTS
    rpm: float | None = None
    tpm: float | None = None
    max_attempts: int = 6
    backoff: float = 0.5
    retry_truncated: bool = False
    max_failures: int | None = None
    connect_timeout: float = 10.0
    stall_timeout: float = 60.0
    request_timeout: float = 600.0
    # sources
    excludes: tuple[str, ...] = ()
    default_excludes: bool = True
    max_file_bytes: int = 1 << 20
    jobs: int = 1  # processes parsing files; 1 = a thread beside the event loop
    languages: tuple[str, ...] = ()  # () = every language snipstream knows
    # filters
    min_lines: int = 1
    max_lines: int | None = None
    max_prompt_tokens: int | None = None
    skip_tests: bool = False
    keep_trivial: bool = False
    keep_generated: bool = False
    on_secret: str = "redact"  # one of ON_SECRET
    near_dup: str = "keep"  # one of NEAR_DUP
    # cost
    max_cost: float | None = None  # USD
    prices: str | None = None  # TOML file overriding the price table
    # outputs
    output: str = "-"
    db: str = "snipstream.db"
    sinks: tuple[str, ...] = ()
    emit_all: bool = False
    dry_run: bool = False
    # batch mode (stream.batch): the provider's limits per input file (OpenAI: 50,000 requests, 200 MB)
    batch: bool = False  # set by `batch submit`: jobs become batch lines, nothing is streamed
    batch_max_requests: int = 50_000
    batch_max_bytes: int = 200_000_000
    batch_file_only: str | None = None  # DIR: write the JSONL for a runner (vllm run-batch), upload nothing
    # behaviour
    grace: float = 10.0
    progress: str = "auto"  # one of PROGRESS_MODES
    progress_interval: float = 10.0  # seconds between plain progress lines
    quiet: bool = False

    @property
    def params(self) -> dict[str, Any]:
        """Generation parameters sent with every request (and part of the task fingerprint).

        ``reasoning_effort`` is in it only when set, so fingerprints made before it existed still hold."""
        params: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": list(self.stop) or None,
            "seed": self.seed,
        }
        if self.reasoning_effort is not None:
            params["reasoning_effort"] = self.reasoning_effort
        return params

    @property
    def asked_tasks(self) -> tuple[Template, ...]:
        """The tasks as this run asks them: the built-ins take their ``{context}`` first (`with_context`)."""
        return tuple(with_context(t, self.context_mode) for t in self.tasks)

    @property
    def context_mode(self) -> str:
        """``--context`` as the run asks (`context` before resolve() took the checkpoint's)."""
        return self.context or DEFAULT_CONTEXT

    @property
    def annotation_tasks(self) -> tuple[Template, ...]:
        """Whose answer ``--embed-text both|annotation`` embeds with the code: the first of these that
        applies to a snippet (the run's tasks; with ``--task embed`` alone, the default tasks, as they were
        asked with the run's model and parameters)."""
        tasks = self.tasks or tuple(TASKS[name] for name in DEFAULT_TASKS)
        return tuple(with_context(t, self.context_mode) for t in tasks)

    def fingerprint(self, template: Template) -> str:
        """Identity of asking `template` with this API, model and parameters."""
        return task_fingerprint(template, api=self.api, model=self.model, params=self.params)

    @property
    def selection(self) -> dict[str, Any]:
        """Everything that decides which snippets a file yields and how they read when sent (part of the
        file index's key: changing any of it makes every file be looked at again)."""
        context = {"context": self.context_mode, "context_tokens": self.context_tokens}
        return {
            **(
                context if self.context_mode != "none" else {}
            ),  # (absent: file indexes from before still hold)
            "languages": sorted(self.languages),
            "min_lines": self.min_lines,
            "max_lines": self.max_lines,
            "max_prompt_tokens": self.max_prompt_tokens,
            "skip_tests": self.skip_tests,
            "keep_trivial": self.keep_trivial,
            "keep_generated": self.keep_generated,
            "on_secret": self.on_secret,
            **(
                {"near_dup": self.near_dup} if self.near_dup != "keep" else {}
            ),  # (keep: as before it existed)
        }

    def resolve(self, env: Mapping[str, str] | None = None) -> Config:
        """Apply the environment, then check everything that can be checked before any work."""
        env = os.environ if env is None else env
        family = family_of(self.model)
        max_tokens = self.max_tokens or (REASONING_MAX_TOKENS if family and family.reasoning else MAX_TOKENS)
        cfg = replace(
            self,
            api_version=self.api_version or env.get("OPENAI_API_VERSION") or None,
            max_tokens=max_tokens,
            context=self.context or remembered_mode(self.db) or DEFAULT_CONTEXT,
        )._with_endpoints(env)
        cfg._validate()
        return cfg

    @property
    def several_endpoints(self) -> bool:
        """Whether the endpoints come from ``--endpoint``/``--endpoints`` (else from ``--base-url``)."""
        return bool(self.endpoint_specs or self.endpoints_file)

    def _with_endpoints(self, env: Mapping[str, str]) -> Config:
        """`endpoints` resolved; ``base_url``, ``endpoint_kind`` and ``api_key_env`` are then the first one's."""
        return replace(self, **endpoint_list.settings(self, env))

    def _validate(self) -> None:
        """Check every setting that can be checked before any work; raises ConfigError for the first bad one."""
        check(self)

    def public(self) -> dict[str, Any]:
        """The config as stored with a run: everything but the keys (each endpoint's name and URL, no key)."""
        data = asdict(self)
        data.pop("api_key", None)
        data["api_key_set"] = bool(self.api_key)
        data["endpoints"] = [e.public() for e in self.endpoints]
        data["tasks"] = [{"name": t.name, "fingerprint": self.fingerprint(t)} for t in self.asked_tasks]
        return data
