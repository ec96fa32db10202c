"""Shared fixtures: a loopback OpenAI-compatible server and a small source tree with known contents."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakeserver import FakeOpenAI
from tests.helpers import REPO, Result, read_ndjson, snipstream

# REPO, Result, read_ndjson and snipstream live in tests.helpers; they are re-exported here for the files
# that import them from conftest.
__all__ = ["EXPECTED", "REPO", "Result", "make_tree", "read_ndjson", "snipstream"]

SHAPES = '''\
"""Shapes and helpers."""
import functools


def plain(a, b=1):
    """Add two numbers."""
    # a comment inside
    return a + b


@functools.lru_cache(maxsize=None)
@staticmethod
def decorated(x):  # trailing comment
    return x * 2


async def fetch(url: str) -> bytes:
    """Fetch a URL."""
    return b""


class Shape:
    """A shape."""

    sides = 0

    def area(self) -> float:
        return 0.0

    @property
    def name(self):
        return type(self).__name__

    async def refresh(self):
        self.sides = 0

    class Meta:
        def describe(self):
            return "meta"


def outer():
    def inner():
        return 1
    return inner()
'''

# (path, qualname) → kind, for everything the tree must yield
EXPECTED = {
    ("pkg/shapes.py", "plain"): "function",
    ("pkg/shapes.py", "decorated"): "function",
    ("pkg/shapes.py", "fetch"): "async_function",
    ("pkg/shapes.py", "Shape"): "class",
    ("pkg/shapes.py", "Shape.area"): "method",
    ("pkg/shapes.py", "Shape.name"): "method",
    ("pkg/shapes.py", "Shape.refresh"): "async_method",
    ("pkg/shapes.py", "Shape.Meta"): "class",
    ("pkg/shapes.py", "Shape.Meta.describe"): "method",
    ("pkg/shapes.py", "outer"): "function",
    ("pkg/shapes.py", "outer.<locals>.inner"): "function",
    ("pkg/legacy.py", "greet"): "function",
    ("main.py", "main"): "function",
}


def make_tree(root: Path) -> Path:
    """A small project: good files, a syntax error, a latin-1 file, an ignored and a vendored file."""
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "shapes.py").write_text(SHAPES)
    (root / "pkg" / "broken.py").write_text("def broken(:\n    pass\n")
    (root / "pkg" / "legacy.py").write_bytes(
        '# -*- coding: latin-1 -*-\ndef greet():\n    """Say h\u00e9llo."""\n    return \'caf\u00e9\'\n'.encode(
            "latin-1"
        )
    )
    (root / "pkg" / "blob.py").write_bytes(b"\x00\x01\x02binary")
    (root / ".gitignore").write_text("generated_*.py\n")
    (root / "pkg" / "generated_api.py").write_text("def generated():\n    pass\n")
    (root / "node_modules").mkdir()
    (root / "node_modules" / "vendored.py").write_text("def vendored():\n    pass\n")
    (root / "main.py").write_text(
        textwrap.dedent("""\
        def main():
            return 0
    """)
    )
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "project")


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(chunks=8) as srv:
        yield srv
