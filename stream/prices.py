"""The dated price table: USD per million tokens (input, output, cached input, batch) and `--prices` files."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRICES", "PRICES_DATE", "Price", "Prices", "estimate_cost", "load_prices"]


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
    # embedding models (--embed-model): input tokens only, per the models' pages, e.g.
    # https://developers.openai.com/api/docs/models/text-embedding-3-large
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
    "text-embedding-ada-002": (0.10, 0.0),
}


#: What the Batch API costs beside the list price, unless the table gives batch prices: "Save 50% on inputs
#: and outputs" (https://platform.openai.com/docs/guides/batch, and the Batch column of
#: https://platform.openai.com/docs/pricing).
BATCH_DISCOUNT = 0.5
_KEYS = ("input", "output", "cached_input", "batch_input", "batch_output")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens; `cached_input` (None: the input price) for prompt tokens served from the
    provider's prompt cache; `batch_input`/`batch_output` (None: `BATCH_DISCOUNT` of the list price) for
    requests sent through the Batch API."""

    input: float
    output: float
    cached_input: float | None = None
    batch_input: float | None = None
    batch_output: float | None = None

    def for_batch(self) -> Price:
        """The price of the same tokens through the Batch API (cached input discounted alike)."""
        cached = self.input if self.cached_input is None else self.cached_input
        return Price(
            self.batch_input if self.batch_input is not None else self.input * BATCH_DISCOUNT,
            self.batch_output if self.batch_output is not None else self.output * BATCH_DISCOUNT,
            cached * (self.batch_input / self.input if self.batch_input and self.input else BATCH_DISCOUNT),
        )

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
    "my-model" = { input = 1, output = 4, batch_input = 0.6, batch_output = 2.4 }   # not half price
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
        ok = isinstance(entry, dict) and {"input", "output"} <= set(entry) <= set(_KEYS)
        values = [entry[k] for k in _KEYS if k in entry] if ok else []
        if not ok or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in values
        ):
            raise ConfigError(
                f"--prices {path}: models.{name} must be {{ input = USD, output = USD }} per million tokens "
                "(and optionally cached_input, batch_input, batch_output = USD)"
            )
        table[name] = tuple(float(entry[k]) if k in entry else None for k in _KEYS)  # type: ignore[misc]
    return Prices(table, str(data.get("date") or "unknown date"), path)


def estimate_cost(
    model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
) -> float | None:
    """Cost in USD from the built-in price table, or None for a model it does not list."""
    price = load_prices(None).get(model)
    return None if price is None else price.cost(prompt_tokens, completion_tokens, cached_tokens)
