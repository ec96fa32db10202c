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
from urllib.parse import urlsplit

from . import endpoint_list
from .endpoint_list import DEFAULT_BASE_URL, Endpoint, is_loopback
from .endpoints import family_of
from .errors import ConfigError
from .prompt import DEFAULT_TASKS, TASKS, Template, task_fingerprint

__all__ = [
    "Config",
    "DEFAULT_BASE_URL",
    "REASONING_EFFORTS",
    "APIS",
    "RESPONSE_FORMATS",
    "ON_SECRET",
    "PROGRESS_MODES",
    "TRANSPORTS",
    "MAX_TOKENS",
    "REASONING_MAX_TOKENS",
    "is_loopback",
]

#: OpenAI's documented values; each model takes some of them (gpt-5: minimal..high; o-series: low..high).
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
APIS = ("chat", "completions")  # /chat/completions with messages, or the legacy /completions with a prompt
RESPONSE_FORMATS = ("auto", "json_schema", "json_object", "off")  # how structured tasks ask for JSON
ON_SECRET = ("redact", "skip", "allow")  # what to do with a snippet holding a credential
PROGRESS_MODES = ("auto", "tty", "plain", "off")
#: Under httpx's client API: aiohttp's HTTP/1.1 engine (httpx-aiohttp, as the OpenAI SDK offers for high
#: concurrency) or httpx's own (httpcore).
TRANSPORTS = ("aiohttp", "httpx")
#: max_tokens when none is given: 512, or for a reasoning model REASONING_MAX_TOKENS.
MAX_TOKENS = 512
# Reasoning tokens come out of the same budget as the answer (OpenAI's reasoning guide advises reserving
# at least 25,000 for reasoning and outputs when starting out); 4,096 leaves an annotation room at low effort.
REASONING_MAX_TOKENS = 4096


def _one_of(flag: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise ConfigError unless `value` is one of `choices` ("--api must be chat or completions, got ...")."""
    if value not in choices:
        names = f"{', '.join(choices[:-1])} or {choices[-1]}"
        raise ConfigError(f"{flag} must be {names}, got {value!r}")


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

    def fingerprint(self, template: Template) -> str:
        """Identity of asking `template` with this API, model and parameters."""
        return task_fingerprint(template, api=self.api, model=self.model, params=self.params)

    @property
    def selection(self) -> dict[str, Any]:
        """Everything that decides which snippets a file yields and how they read when sent (part of the
        file index's key: changing any of it makes every file be looked at again)."""
        return {
            "languages": sorted(self.languages),
            "min_lines": self.min_lines,
            "max_lines": self.max_lines,
            "max_prompt_tokens": self.max_prompt_tokens,
            "skip_tests": self.skip_tests,
            "keep_trivial": self.keep_trivial,
            "keep_generated": self.keep_generated,
            "on_secret": self.on_secret,
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
        self._check_endpoint()
        self._check_numbers()
        self._check_tasks()
        self._check_selection()
        _one_of("--progress", self.progress, PROGRESS_MODES)

    def _check_endpoint(self) -> None:
        """Paths, the URL, the API, the key and the reasoning effort."""
        if not self.paths and not self.batch:  # (batch status, collect and cancel walk nothing)
            raise ConfigError("give at least one path to walk")
        parts = urlsplit(self.base_url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--base-url must be an http(s) URL, got {self.base_url!r}")
        _one_of("--api", self.api, APIS)
        _one_of("--transport", self.transport, TRANSPORTS)
        # (the batch steps after submit need a key only to reach the API: `stream.batch.api` checks then)
        needs_key = not (self.dry_run or self.batch_file_only or (self.batch and not self.paths))
        # (with --endpoint(s) each endpoint's key was checked as it was resolved, by its own variable)
        needs_key = needs_key and not self.several_endpoints
        if needs_key and not self.api_key and not is_loopback(self.base_url or ""):
            raise ConfigError(
                f"no API key: set ${self.api_key_env} (or name another variable with --api-key-env); "
                f"a key is needed for {self.base_url}"
            )
        if self.reasoning_effort not in (None, *REASONING_EFFORTS):
            raise ConfigError(
                f"--reasoning-effort must be one of {', '.join(REASONING_EFFORTS)}, got {self.reasoning_effort!r}"
            )

    def _check_numbers(self) -> None:
        """Counts, rates, timeouts and the budget."""
        for name, value, low in (
            ("--concurrency", self.concurrency, 1),
            ("--max-tokens", self.max_tokens or 0, 1),
            ("--max-attempts", self.max_attempts, 1),
            ("--clients", self.clients, 0),
            ("--max-file-bytes", self.max_file_bytes, 1),
            ("--jobs", self.jobs, 1),
            ("--max-failures", self.max_failures or 1, 1),
            ("--batch-max-requests", self.batch_max_requests, 1),
            ("--batch-max-bytes", self.batch_max_bytes, 4096),
        ):
            if value < low:
                raise ConfigError(f"{name} must be at least {low}, got {value}")
        for name, value in (("--rpm", self.rpm), ("--tpm", self.tpm)):
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive, got {value:g}")
        if self.tpm is not None and self.max_tokens is not None and self.tpm < self.max_tokens:
            raise ConfigError(
                f"--tpm {self.tpm:g} is below --max-tokens {self.max_tokens}: no request could fit"
            )
        for e in self.endpoints:
            if e.tpm is not None and self.max_tokens is not None and e.tpm < self.max_tokens:
                raise ConfigError(
                    f"endpoint {e.name}: tpm {e.tpm:g} is below --max-tokens {self.max_tokens}: no request could fit"
                )
        for name, seconds in (
            ("--connect-timeout", self.connect_timeout),
            ("--stall-timeout", self.stall_timeout),
            ("--request-timeout", self.request_timeout),
            ("--backoff", self.backoff + 1e-9),
        ):
            if seconds <= 0:
                raise ConfigError(f"{name} must be positive, got {seconds:g}")

    def _check_tasks(self) -> None:
        """At least one task, each named once, and how structured ones ask for JSON."""
        if not self.tasks:
            raise ConfigError("no task: give --task or --template")
        names = [t.name for t in self.tasks]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ConfigError(f"task {dup!r} given twice (each task needs its own name)")
        _one_of("--response-format", self.response_format, RESPONSE_FORMATS)

    def _check_selection(self) -> None:
        """Which snippets are sent: secrets, line counts, prompt size; and the spending limit."""
        _one_of("--on-secret", self.on_secret, ON_SECRET)
        if self.min_lines < 1:
            raise ConfigError(f"--min-lines must be at least 1, got {self.min_lines}")
        if self.max_lines is not None and self.max_lines < self.min_lines:
            raise ConfigError(f"--max-lines {self.max_lines} is below --min-lines {self.min_lines}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ConfigError(f"--max-prompt-tokens must be at least 1, got {self.max_prompt_tokens}")
        if self.max_cost is not None and self.max_cost <= 0:
            raise ConfigError(f"--max-cost must be positive, got {self.max_cost:g}")

    def public(self) -> dict[str, Any]:
        """The config as stored with a run: everything but the keys (each endpoint's name and URL, no key)."""
        data = asdict(self)
        data.pop("api_key", None)
        data["api_key_set"] = bool(self.api_key)
        data["endpoints"] = [e.public() for e in self.endpoints]
        data["tasks"] = [{"name": t.name, "fingerprint": self.fingerprint(t)} for t in self.tasks]
        return data
