"""``batch status``: each batch's state and request counts (asked of the provider, then stored), and the
cost of what the batches answered at the Batch API's price beside the list price it would have cost.

Embeddings batches are counted apart: a file's ``inputs`` are the texts its lines carry (a line is one
request of many inputs), and the vectors made through batches are priced at the embedding model's price."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sinks.batches import TERMINAL, BatchFile, BatchStore
from sinks.checkpoint import Checkpoint

from ..config import Config
from ..errors import ConfigError
from ..prices import load_prices
from .api import BatchAPI, api_config, line_error
from .collect import refresh
from .ingest import task_models

__all__ = ["batch_status"]


async def batch_status(cfg: Config) -> dict[str, Any]:
    if not Path(cfg.db).is_file():
        raise ConfigError(f"no checkpoint at {cfg.db} (give its path with --db)")
    async with Checkpoint(cfg.db) as ckpt:
        store = BatchStore(ckpt)
        files = await store.files()
        if any(f.state == "submitted" and f.status not in TERMINAL for f in files):
            async with BatchAPI(api_config(cfg, files)) as api:
                files = await refresh(store, api)
        tasks = await store.tasks()
        answered, prompt, completion, cached = await store.usage()
        vectors, embed_tokens = await store.embed_usage()
        inputs = await store.input_counts()
    model, embed_model = task_models((info for _, info, _ in tasks.values()), cfg.model)
    prices = load_prices(cfg.prices)
    price, embed_price = prices.get(model), prices.get(embed_model) if embed_model else None
    return {
        "model": model,
        "batches": [_row(f, inputs.get(f.name)) for f in files],
        "answered": answered,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": None if price is None else price.for_batch().cost(prompt, completion, cached),
        "list_cost_usd": None if price is None else price.cost(prompt, completion, cached),
        "embed_model": embed_model,
        "embedded": vectors,
        "embed_tokens": embed_tokens,
        "embed_cost_usd": None if embed_price is None else embed_price.for_batch().cost(embed_tokens, 0),
        "embed_list_cost_usd": None if embed_price is None else embed_price.cost(embed_tokens, 0),
    }


def _row(f: BatchFile, inputs: int | None) -> dict[str, Any]:
    errors = [e for e in ((f.errors or {}).get("data") or []) if isinstance(e, dict)]
    return {
        "file": f.name,
        "state": f.state,
        "batch_id": f.batch_id,
        "status": f.status or ("written for a runner" if f.state == "local" else f.state),
        "endpoint": f.endpoint,
        "lines": f.lines,
        "inputs": inputs,  # the embedding inputs of its lines (None: not an embeddings file)
        "bytes": f.bytes,
        "request_counts": f.counts or {},
        "errors": [line_error(e) for e in errors],
        "created_at": f.created_at,
    }
