"""Shared fixtures: a loopback OpenAI-compatible server and a small source tree with known contents (built by
`tests.helpers.make_tree`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakeserver import FakeOpenAI
from tests.helpers import EXPECTED, REPO, Result, make_tree, read_ndjson, snipstream

# These live in tests.helpers; they are re-exported here for the files that import them from conftest.
__all__ = ["EXPECTED", "REPO", "Result", "make_tree", "read_ndjson", "snipstream"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "project")


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(chunks=8) as srv:
        yield srv
