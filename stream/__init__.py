"""snipstream: stream a source tree through an OpenAI-compatible API into an annotated NDJSON dataset.

The library in one call::

    import anyio
    from stream import Config, run

    summary = anyio.run(run, Config(paths=("src",), output="out.ndjson").resolve())

The names below are loaded on first use (PEP 562), so importing one submodule (``stream.errors`` from a
plug-in sink, ``stream.status`` from the command line) does not pull in the pipeline, httpx or the extractors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Snippet",
    "SourceFile",
    "Summary",
    "SnipstreamError",
    "SCHEMA_VERSION",
    "run",
    "__version__",
]

_WHERE = {
    "Config": "config",
    "SnipstreamError": "errors",
    "Snippet": "model",
    "SourceFile": "model",
    "SCHEMA_VERSION": "record",
    "Summary": "pipeline",
    "run": "pipeline",
}

if TYPE_CHECKING:
    from .config import Config
    from .errors import SnipstreamError
    from .model import Snippet, SourceFile
    from .pipeline import Summary, run
    from .record import SCHEMA_VERSION


__getattr__ = lazy_getattr(__name__, _WHERE, globals())
