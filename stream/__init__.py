"""snipstream: stream a source tree through an OpenAI-compatible API into an annotated NDJSON dataset.

The library in one call::

    import anyio
    from stream import Config, run

    summary = anyio.run(run, Config(paths=("src",), output="out.ndjson").resolve())
"""

from .config import Config
from .errors import SnipstreamError
from .model import Snippet, SourceFile
from .pipeline import SCHEMA_VERSION, Summary, run

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
