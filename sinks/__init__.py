"""Where records go. Every sink is an async context manager with ``write(record)`` and ``flush()``.

Built-ins, registered by name like plug-ins: ``ndjson`` (annotated NDJSON, `sinks.ndjson`) and the SQLite
checkpoint (`sinks.checkpoint`, always on, written first). ``--sink NAME`` adds a sink by registered name, by
``module:Class`` import path, or by an entry point in the ``snipstream.sinks`` group; the class is called
with no arguments.

A sink receives each record after it has been committed to the checkpoint. Plug-in sinks get records at
least once (a crash between their write and the checkpoint's "emitted" mark repeats a few on the next run).
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

from stream.errors import ConfigError

__all__ = ["Sink", "register", "load_sink"]


@runtime_checkable
class Sink(Protocol):
    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> Any: ...

    async def write(self, record: dict[str, Any]) -> None: ...

    async def flush(self) -> None: ...


_REGISTRY: dict[str, str] = {"ndjson": "sinks.ndjson:NDJSONSink"}


def register(name: str, target: str) -> None:
    """Register a sink class under a short name (``target`` is ``module:Class``)."""
    _REGISTRY[name] = target


def load_sink(spec: str) -> Sink:
    """Make a sink from a registered name, an entry point name, or ``module:Class``."""
    target = _REGISTRY.get(spec)
    if target is None:
        from importlib.metadata import entry_points  # ~10 ms: only when a sink is not registered

        eps = {ep.name: ep for ep in entry_points(group="snipstream.sinks")}
        if spec in eps:
            cls = eps[spec].load()
            return _instantiate(cls, spec)
        target = spec
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"--sink {spec!r}: expected a registered name ({', '.join(sorted(_REGISTRY))}) or module:Class"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--sink {spec!r}: cannot import {module_name}: {exc}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise ConfigError(f"--sink {spec!r}: {module_name} has no attribute {attr!r}")
    return _instantiate(cls, spec)


def _instantiate(cls: Any, spec: str) -> Sink:
    try:
        sink = cls()
    except Exception as exc:
        raise ConfigError(f"--sink {spec!r}: {type(exc).__name__}: {exc}") from None
    for method in ("__aenter__", "__aexit__", "write"):
        if not hasattr(sink, method):
            raise ConfigError(f"--sink {spec!r}: {type(sink).__name__} has no {method}() (see sinks.Sink)")
    return sink
