"""The values a Config's settings may take, and the checks `Config.resolve()` makes before any work: each
raises ConfigError naming the flag and what it got."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .embeddings import EMBED_TEXTS, MAX_INPUTS
from .endpoint_list import is_loopback
from .errors import ConfigError
from .prompt import CONTEXT_MODES

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "check",
    "REASONING_EFFORTS",
    "APIS",
    "RESPONSE_FORMATS",
    "DEFAULT_CONTEXT",
    "ON_SECRET",
    "NEAR_DUP",
    "PROGRESS_MODES",
    "TRANSPORTS",
    "MAX_TOKENS",
    "REASONING_MAX_TOKENS",
]

#: OpenAI's documented values; each model takes some of them (gpt-5: minimal..high; o-series: low..high).
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
APIS = ("chat", "completions")  # /chat/completions with messages, or the legacy /completions with a prompt
RESPONSE_FORMATS = ("auto", "json_schema", "json_object", "off")  # how structured tasks ask for JSON
DEFAULT_CONTEXT = "file"  # --context without the flag or a checkpoint that says otherwise
ON_SECRET = ("redact", "skip", "allow")  # what to do with a snippet holding a credential
#: near-duplicate code (stream.pipeline.neardups): ask every snippet and record the groups, ask only each
#: group's first, or neither group nor record
NEAR_DUP = ("keep", "ask-once", "off")
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


def _check_embed(cfg: Config) -> None:
    """--task embed's settings (`stream.embeddings`): what is embedded, the vector size, the request size."""
    _one_of("--embed-text", cfg.embed_text, EMBED_TEXTS)
    if cfg.dimensions is not None and cfg.dimensions < 1:
        raise ConfigError(f"--dimensions must be at least 1, got {cfg.dimensions}")
    if not 1 <= cfg.embed_batch <= MAX_INPUTS:
        raise ConfigError(f"--embed-batch must be 1 to {MAX_INPUTS} (OpenAI's limit), got {cfg.embed_batch}")
    if cfg.embed_batch_tokens < 1:
        raise ConfigError(f"--embed-batch-tokens must be at least 1, got {cfg.embed_batch_tokens}")
    if cfg.embed and cfg.judge and not cfg.tasks:
        raise ConfigError("--task judge needs a task whose answers it judges (embed has none)")


def _check_judge(cfg: Config) -> None:
    """--task judge and its re-asks (`stream.judge`); not in batch mode."""
    if cfg.judge and cfg.batch:
        raise ConfigError(
            "--task judge is not available in batch mode: the judge asks about each answer as it "
            "arrives; judge in a streamed run (snipstream run --task judge) instead"
        )
    if not 0 <= cfg.judge_reask_below <= 5:
        raise ConfigError(f"--judge-reask-below must be 0 (off) to 5, got {cfg.judge_reask_below}")
    if cfg.judge_reasks < 0:
        raise ConfigError(f"--judge-reasks must be at least 0, got {cfg.judge_reasks}")


def check(cfg: Config) -> None:
    """Check every setting that can be checked before any work; raises ConfigError for the first bad one."""
    _check_endpoint(cfg)
    _check_numbers(cfg)
    _check_tasks(cfg)
    _check_selection(cfg)
    _one_of("--progress", cfg.progress, PROGRESS_MODES)


def _check_endpoint(cfg: Config) -> None:
    """Paths, the URL, the API, the key and the reasoning effort."""
    if not cfg.paths and not cfg.batch:  # (batch status, collect and cancel walk nothing)
        raise ConfigError("give at least one path to walk")
    parts = urlsplit(cfg.base_url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--base-url must be an http(s) URL, got {cfg.base_url!r}")
    _one_of("--api", cfg.api, APIS)
    _one_of("--transport", cfg.transport, TRANSPORTS)
    # (the batch steps after submit need a key only to reach the API: `stream.batch.api` checks then)
    needs_key = not (cfg.dry_run or cfg.batch_file_only or (cfg.batch and not cfg.paths))
    # (with --endpoint(s) each endpoint's key was checked as it was resolved, by its own variable)
    needs_key = needs_key and not cfg.several_endpoints
    if needs_key and not cfg.api_key and not is_loopback(cfg.base_url or ""):
        raise ConfigError(
            f"no API key: set ${cfg.api_key_env} (or name another variable with --api-key-env); "
            f"a key is needed for {cfg.base_url}"
        )
    if cfg.reasoning_effort not in (None, *REASONING_EFFORTS):
        raise ConfigError(
            f"--reasoning-effort must be one of {', '.join(REASONING_EFFORTS)}, got {cfg.reasoning_effort!r}"
        )


def _check_numbers(cfg: Config) -> None:
    """Counts, rates, timeouts and the budget."""
    for name, value, low in (
        ("--concurrency", cfg.concurrency, 1),
        ("--max-tokens", cfg.max_tokens or 0, 1),
        ("--max-attempts", cfg.max_attempts, 1),
        ("--clients", cfg.clients, 0),
        ("--max-file-bytes", cfg.max_file_bytes, 1),
        ("--jobs", cfg.jobs, 1),
        ("--max-failures", cfg.max_failures or 1, 1),
        ("--batch-max-requests", cfg.batch_max_requests, 1),
        ("--batch-max-bytes", cfg.batch_max_bytes, 4096),
    ):
        if value < low:
            raise ConfigError(f"{name} must be at least {low}, got {value}")
    for name, value in (("--rpm", cfg.rpm), ("--tpm", cfg.tpm)):
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be positive, got {value:g}")
    if cfg.tpm is not None and cfg.max_tokens is not None and cfg.tpm < cfg.max_tokens:
        raise ConfigError(f"--tpm {cfg.tpm:g} is below --max-tokens {cfg.max_tokens}: no request could fit")
    for e in cfg.endpoints:
        if e.tpm is not None and cfg.max_tokens is not None and e.tpm < cfg.max_tokens:
            raise ConfigError(
                f"endpoint {e.name}: tpm {e.tpm:g} is below --max-tokens {cfg.max_tokens}: no request could fit"
            )
    for name, seconds in (
        ("--connect-timeout", cfg.connect_timeout),
        ("--stall-timeout", cfg.stall_timeout),
        ("--request-timeout", cfg.request_timeout),
        ("--backoff", cfg.backoff + 1e-9),
    ):
        if seconds <= 0:
            raise ConfigError(f"{name} must be positive, got {seconds:g}")


def _check_tasks(cfg: Config) -> None:
    """At least one task, each named once, and how structured ones ask for JSON."""
    if not cfg.tasks and not cfg.embed:
        raise ConfigError("no task: give --task or --template")
    names = [t.name for t in cfg.tasks]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"task {dup!r} given twice (each task needs its own name)")
    _one_of("--response-format", cfg.response_format, RESPONSE_FORMATS)
    _check_judge(cfg)
    _check_embed(cfg)
    _one_of("--context", cfg.context_mode, CONTEXT_MODES)
    if cfg.context_tokens < 1:
        raise ConfigError(f"--context-tokens must be at least 1, got {cfg.context_tokens}")


def _check_selection(cfg: Config) -> None:
    """Which snippets are sent: secrets, line counts, prompt size; and the spending limit."""
    _one_of("--on-secret", cfg.on_secret, ON_SECRET)
    _one_of("--near-dup", cfg.near_dup, NEAR_DUP)
    if cfg.min_lines < 1:
        raise ConfigError(f"--min-lines must be at least 1, got {cfg.min_lines}")
    if cfg.max_lines is not None and cfg.max_lines < cfg.min_lines:
        raise ConfigError(f"--max-lines {cfg.max_lines} is below --min-lines {cfg.min_lines}")
    if cfg.max_prompt_tokens is not None and cfg.max_prompt_tokens < 1:
        raise ConfigError(f"--max-prompt-tokens must be at least 1, got {cfg.max_prompt_tokens}")
    if cfg.max_cost is not None and cfg.max_cost <= 0:
        raise ConfigError(f"--max-cost must be positive, got {cfg.max_cost:g}")
