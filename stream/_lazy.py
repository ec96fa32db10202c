"""Package attributes loaded on first use (PEP 562): importing one submodule does not pull in the rest."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(
    package: str, where: Mapping[str, str], namespace: MutableMapping[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for `package`: a name in `where` comes from that submodule (and is kept in
    `namespace`, the package's globals, so it is looked up once); any other name is tried as a submodule."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            try:
                return importlib.import_module(f".{name}", package)
            except ModuleNotFoundError:
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    return __getattr__
