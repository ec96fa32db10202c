"""Extractors: one entry module per source kind, each turning a file's bytes into snippets.

- `python` (with `python_defs`, the definition walk): the standard library's ``ast`` (always there).
- `treesitter` (with `queries`, the per-language data; `treesitter_names`, qualnames; `treesitter_snippet`,
  extents, docstrings and signatures): JavaScript, TypeScript/TSX, Go, Rust, Java, C, C++, Ruby through the
  tree-sitter grammar wheels of the optional ``snipstream[langs]`` extra; without them such files are skipped
  with the reason ``language_unsupported``.
- `docs` (with `docs_lines`, `docs_sections`, and one module per format: `docs_markdown`, `docs_rst`,
  `docs_notebook`): Markdown, reStructuredText and Jupyter notebooks, cut into sections by heading.

This module is the one table of languages: which suffixes and shebangs choose them and which extractor
reads them. A file's language is decided by its suffix, or for a file without one by its shebang line.
"""

from __future__ import annotations

import re

from stream.errors import ConfigError
from stream.model import Snippet

from . import docs, python, treesitter

__all__ = [
    "LANGUAGES",
    "DOC_LANGUAGES",
    "SUFFIXES",
    "suffixes_for",
    "language_of",
    "language_from_shebang",
    "check_languages",
    "extract",
]

#: language -> the extractor module that reads it
LANGUAGES: dict[str, str] = {
    python.LANGUAGE: "python",
    **{name: "treesitter" for name in treesitter.LANGUAGES},
    **{name: "docs" for name in docs.LANGUAGES},
}
DOC_LANGUAGES = frozenset(docs.LANGUAGES)

#: suffix (lower case, with its dot) -> language
SUFFIXES: dict[str, str] = {
    **{suffix: python.LANGUAGE for suffix in python.SUFFIXES},
    **{s: name for name, suffixes in treesitter.LANGUAGES.items() for s in suffixes},
    **{s: name for name, suffixes in docs.LANGUAGES.items() for s in suffixes},
}

_SHEBANGS: dict[str, str] = {"python": python.LANGUAGE, **treesitter.SHEBANGS}
_SHEBANG = re.compile(rb"#![ \t]*(\S+)(?:[ \t]+(\S+))?")
_VERSIONED = re.compile(r"[\d.]+$")  # python3.11 -> python


def check_languages(names: tuple[str, ...]) -> frozenset[str] | None:
    """The languages a `--lang` list allows (None: all), or a ConfigError naming an unknown one."""
    if not names:
        return None
    unknown = sorted(set(names) - set(LANGUAGES))
    if unknown:
        raise ConfigError(
            f"--lang: unknown language {', '.join(unknown)}; known: {', '.join(sorted(LANGUAGES))}"
        )
    return frozenset(names)


def suffixes_for(languages: frozenset[str] | None) -> tuple[str, ...]:
    return tuple(s for s, lang in SUFFIXES.items() if languages is None or lang in languages)


def language_of(name: str) -> str | None:
    """The language a file name's suffix says, or None (no suffix we know)."""
    dot = name.rfind(".")
    if dot < 0:
        return None
    return SUFFIXES.get(name[dot:].lower())


def language_from_shebang(data: bytes) -> str | None:
    """The language of a script by its first line (``#!/usr/bin/env python3``, ``#!/usr/bin/node``)."""
    if not data.startswith(b"#!"):
        return None
    m = _SHEBANG.match(data, 0, data.find(b"\n", 0, 256) if b"\n" in data[:256] else min(len(data), 256))
    if m is None:
        return None
    program = m.group(1).rsplit(b"/", 1)[-1]
    if program == b"env" and m.group(2):
        program = m.group(2)
    name = _VERSIONED.sub("", program.decode("ascii", "replace"))
    return _SHEBANGS.get(name)


def extract(data: bytes, relpath: str, language: str, *, doc_max_chars: int = 6000) -> list[Snippet]:
    """Snippets of one file in `language`; raises SourceError with the reason when it cannot be read."""
    kind = LANGUAGES[language]
    if kind == "python":
        return python.extract(data, relpath)
    if kind == "treesitter":
        return treesitter.extract(data, relpath, language)
    return docs.extract(data, relpath, language, max_chars=doc_max_chars)
