"""A user-style plug-in sink for the tests: appends each record's qualname to $QUALNAME_SINK_FILE."""

from __future__ import annotations

import os
from typing import Any


class QualnameSink:
    def __init__(self) -> None:
        self.path = os.environ["QUALNAME_SINK_FILE"]
        self.names: list[str] = []

    async def __aenter__(self) -> QualnameSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.writelines(name + "\n" for name in self.names)

    async def write(self, record: dict[str, Any]) -> None:
        self.names.append(record["qualname"])
