"""``batch status``: each batch's state and request counts (asked of the provider, then stored), and the
cost of what the batches answered at the Batch API's price beside the list price it would have cost."""

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
    model = next((str(info.get("model")) for _, info, _ in tasks.values()), cfg.model)
    price = load_prices(cfg.prices).get(model)
    return {
        "model": model,
        "batches": [_row(f) for f in files],
        "answered": answered,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": None if price is None else price.for_batch().cost(prompt, completion, cached),
        "list_cost_usd": None if price is None else price.cost(prompt, completion, cached),
    }


def _row(f: BatchFile) -> dict[str, Any]:
    errors = [e for e in ((f.errors or {}).get("data") or []) if isinstance(e, dict)]
    return {
        "file": f.name,
        "state": f.state,
        "batch_id": f.batch_id,
        "status": f.status or ("written for a runner" if f.state == "local" else f.state),
        "lines": f.lines,
        "bytes": f.bytes,
        "request_counts": f.counts or {},
        "errors": [line_error(e) for e in errors],
        "created_at": f.created_at,
    }
