"""Search: a question's nearest snippets among the checkpoint's vectors, and how they are shown.

``snipstream search "how are plugins loaded?"`` embeds the question once, with the model and size of the
checkpoint's vectors, through the run's endpoint pool (the same retries, limits and breaker as a run), and
returns the `k` snippets whose current vector (`sinks.vectors`) is nearest by cosine similarity. The
checkpoint's sqlite-vec index is used and brought up to date while the question is being embedded; where
sqlite-vec cannot be loaded (or ``exact`` is asked for), every current vector is scanned with numpy, with
the same results.

Which vectors: those of ``cfg.embed_model`` (and ``cfg.dimensions``, when set), the newest of them when the
checkpoint holds several sizes; when it has none of the default embedding model and nothing else was named,
its newest vectors, whatever their model. The question is sent without ``dimensions`` unless it was given
(ada-002 and many local servers refuse the field); an answer of another size than the stored vectors is
asked for once more with ``dimensions`` set to theirs (text-embedding-3's shortened vectors).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from sinks.vectors import MAX_K, Hit, Pair
from sinks.vectors import open_store as _open_store

from . import embeddings
from .config import Config
from .errors import ConfigError, unwrapped

if TYPE_CHECKING:
    from sinks.vectors import Store

__all__ = ["DEFAULT_K", "EMBED_FIRST", "Hit", "Found", "search", "require_vectors", "render", "describe"]

DEFAULT_K = 10
#: What to run before search (and ask) have something to find: the one place this advice is written.
EMBED_FIRST = (
    "snipstream run --task embed PATH (or --task annotate,embed PATH, to embed each snippet's annotation too)"
)
_DEFAULT_MODEL = Config().embed_model
_NOTE_LINES = 3  # lines of the annotation shown under each hit


@dataclass(frozen=True, slots=True)
class Found:
    """What a search found: the question, the vectors searched (model, size), the engine that searched
    them (``sqlite-vec`` or ``exact``), the hits best first, and the question's tokens as the server counted
    them (None when it did not say)."""

    query: str
    model: str
    dimensions: int
    index: str
    hits: list[Hit]
    query_tokens: int | None
    fallback: str | None = None  # why the exact scan searched, when it did (sqlite-vec missing, --exact, ...)


def _open(db: str | Path, exact: bool = False) -> Store:
    """The checkpoint opened for search, or a ConfigError saying what to run first."""
    if not Path(db).is_file():
        raise ConfigError(f"no checkpoint at {db}; make one with vectors first: {EMBED_FIRST}")
    store = _open_store(db, "exact" if exact else None)
    if not store.pairs():
        store.close()
        raise ConfigError(f"the checkpoint {db} holds no vectors; embed the snippets first: {EMBED_FIRST}")
    return store


def require_vectors(db: str | Path) -> None:
    """Raise the ConfigError `search` would when `db` has nothing to search (checked before the endpoint's
    settings, so that the advice to embed comes first)."""
    _open(db, exact=True).close()


def _choose(pairs: list[Pair], model: str, dimensions: int | None) -> Pair:
    """The vectors to search: see the module's docstring."""
    chosen = [p for p in pairs if p.model == model and dimensions in (None, p.dimensions)]
    if not chosen and model == _DEFAULT_MODEL:
        chosen = [p for p in pairs if dimensions in (None, p.dimensions)]
    if chosen:
        return chosen[0]
    held = ", ".join(f"{p.model} ({p.dimensions} dimensions, {p.vectors:,} vectors)" for p in pairs)
    size = f" of {dimensions} dimensions" if dimensions is not None else ""
    raise ConfigError(
        f"the checkpoint holds no vectors of {model}{size}; it holds {held} (see --embed-model)"
    )


async def search(cfg: Config, query: str, k: int = DEFAULT_K, *, exact: bool = False) -> Found:
    """The `k` snippets of `cfg`'s checkpoint (``cfg.db``) nearest to `query`, best first. `cfg` is resolved
    (the endpoint options of a run). Raises ConfigError when there is nothing to search (the message says
    what to run) or `k` is out of range, and the APIError of an embeddings request that failed."""
    if not query.strip():
        raise ConfigError("the query is empty")
    if not 1 <= k <= MAX_K:
        raise ConfigError(f"-k must be 1 to {MAX_K}, got {k}")
    store = await anyio.to_thread.run_sync(_open, cfg.db, exact)
    try:
        pair = _choose(store.pairs(), cfg.embed_model, cfg.dimensions)
        data, tokens = await _embed_and_sync(replace(cfg, embed_model=pair.model), query, store, pair)
        hits = await anyio.to_thread.run_sync(store.nearest, pair, data, k)
        return Found(query, pair.model, pair.dimensions, store.engine, hits, tokens, store.fallback)
    finally:
        store.close()


async def _embed_and_sync(cfg: Config, query: str, store: Store, pair: Pair) -> tuple[bytes, int | None]:
    """The query embedded while the index is brought up to date in a worker thread. The task group's
    wrapping is taken off: callers get the APIError (or CheckpointError) itself."""
    vector: list[tuple[bytes, int | None]] = []

    async def embed() -> None:
        vector.append(await _embed(cfg, query, pair.dimensions))

    with unwrapped():
        async with anyio.create_task_group() as tg:
            tg.start_soon(embed)
            await anyio.to_thread.run_sync(store.sync, pair)
    return vector[0]


async def _embed(cfg: Config, text: str, dimensions: int) -> tuple[bytes, int | None]:
    """`text`'s vector of `dimensions` values by ``cfg.embed_model``, and its tokens as the server counted."""
    from .pipeline.resources import client_pool

    asked = cfg.dimensions
    async with client_pool(cfg) as pool:
        while True:
            body = embeddings.body(cfg.embed_model, [text], asked)
            answer = await pool.complete(body, reserve_tokens=len(text) // 3 + 1, inputs=1)
            if answer.dimensions == dimensions or asked is not None:
                break
            asked = dimensions  # a shortened vector: ask for the stored size
    if answer.dimensions != dimensions:
        raise ConfigError(
            f"{cfg.embed_model} answered vectors of {answer.dimensions} dimensions, the checkpoint's have "
            f"{dimensions}: search with the endpoint and model that made them"
        )
    tokens = answer.usage.get("prompt_tokens")
    return answer.vectors[0], tokens if isinstance(tokens, int) else None


# --- shown to people ----------------------------------------------------------------------------------------


def render(found: Found) -> str:
    """The hits for people: ``path:start-end  qualname  score``, then the first lines of the annotation
    (or, without one, of the code) indented beneath."""
    lines: list[str] = []
    for hit in found.hits:
        lines.append(f"{hit.path}:{hit.start_line}-{hit.end_line}  {hit.qualname}  {hit.score:.3f}")
        text = hit.annotation if hit.annotation and hit.annotation.strip() else hit.code
        shown = [line.rstrip() for line in text.splitlines() if line.strip()][:_NOTE_LINES]
        lines.extend(f"    {line}" for line in shown)
    return "\n".join(lines)


def describe(found: Found) -> str:
    """One line for stderr: what was searched, with which engine (and why not the index, when not)."""
    why = f" ({found.fallback})" if found.index == "exact" and found.fallback else ""
    return (
        f"search: {len(found.hits)} nearest of the {found.model} vectors ({found.dimensions} dimensions), "
        f"{'sqlite-vec index' if found.index == 'sqlite-vec' else 'exact scan'}{why}"
    )
