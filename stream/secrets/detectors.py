"""The detect-secrets plugins, loaded once per process on first use, with the prefilter built for them."""

from __future__ import annotations

from importlib import import_module
from typing import Any, NamedTuple

from .gate import Gate
from .rules import BASE64_LIMIT, HEX_LIMIT, PLUGINS

__all__ = ["Detector", "State", "load"]


class Detector(NamedTuple):
    """One plugin instance and what its findings are: their kind, priority and filters."""

    kind: str
    rank: int  # priority: lower wins
    plugin: Any
    generic: bool
    limit: float | None  # entropy limit, for the high-entropy detectors


class State(NamedTuple):
    """Everything a process scans with: the detectors, the prefilter built for them, the heuristic filters."""

    detectors: tuple[Detector, ...]
    gate: Gate
    heuristic: Any  # detect_secrets.filters.heuristic


_state: State | None = None


def load() -> State:
    """Made on first use in each process (importing detect-secrets takes ~60 ms and pulls in requests).
    Without a lock: two threads racing here build equal states and one is kept, which is harmless; a lock
    would be one more thing a fork could leave held."""
    global _state
    if _state is None:
        _state = _build()
    return _state


def _build() -> State:
    heuristic = import_module("detect_secrets.filters.heuristic")
    detectors = []
    for rank, (module, name, kind, generic) in enumerate(PLUGINS):
        cls = getattr(import_module(f"detect_secrets.plugins.{module}"), name)
        limit = {"high_entropy_base64": BASE64_LIMIT, "high_entropy_hex": HEX_LIMIT}.get(kind)
        plugin = cls(limit=limit) if limit is not None else cls()
        detectors.append(Detector(kind, rank, plugin, generic, limit))
    return State(tuple(detectors), Gate(detectors), heuristic)
