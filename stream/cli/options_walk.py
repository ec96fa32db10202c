"""Option groups for what is read: the paths, how the tree is walked, and which snippets are kept."""

from __future__ import annotations

import argparse

from ..config import NEAR_DUP, ON_SECRET
from .options import add_option

__all__ = ["add_sources", "add_filters"]


def add_sources(parser: argparse.ArgumentParser) -> None:
    """PATHs and the walk: excludes, file size, parsing processes, languages."""
    from ..extract import LANGUAGES

    parser.add_argument("paths", nargs="+", metavar="PATH", help="directories or files to walk")
    g = parser.add_argument_group("sources")
    add_option(
        g,
        "excludes",
        "--exclude",
        metavar="GLOB",
        help="skip paths matching this gitignore-style pattern (repeatable); .gitignore files and "
        ".git/info/exclude are always honoured",
    )
    add_option(
        g,
        "default_excludes",
        help="also walk node_modules, .venv, venv, __pycache__, build, dist, .tox, site-packages",
    )
    add_option(g, "max_file_bytes", help="skip files larger than this (default: %(default)s)")
    add_option(
        g,
        "jobs",
        help="processes parsing files; 1 parses in a thread beside the requests (default: %(default)s)",
    )
    add_option(
        g,
        "languages",
        "--lang",
        metavar="NAME",
        help=f"only these languages (repeatable or comma-separated): {', '.join(sorted(LANGUAGES))}; "
        "a file's language comes from its suffix, or its shebang when it has none (default: all)",
    )


def add_filters(parser: argparse.ArgumentParser) -> None:
    """Which snippets are sent: their size, tests, trivial and generated code, secrets, near-duplicates."""
    g = parser.add_argument_group("filters and secrets")
    add_option(g, "min_lines", help="leave out snippets shorter than N lines")
    add_option(g, "max_lines", help="leave out snippets longer than N lines")
    add_option(
        g,
        "max_prompt_tokens",
        help="leave out requests whose prompt has more tokens (doc sections are first cut at paragraphs to fit)",
    )
    add_option(
        g,
        "skip_tests",
        help="leave out test files (tests/, test_*.py, *_test.go, *.spec.ts, ...) and test functions",
    )
    add_option(
        g,
        "keep_trivial",
        help="also send trivial bodies (pass, ..., a docstring alone, {}, raise NotImplementedError, todo!())",
    )
    add_option(
        g,
        "keep_generated",
        help="also read files marked generated (DO NOT EDIT, @generated, auto-generated) and minified code",
    )
    add_option(
        g,
        "on_secret",
        choices=ON_SECRET,
        help="a snippet holding a credential (detect-secrets' detectors, private keys, high-entropy "
        "strings): redact replaces the value with <REDACTED:kind> in the prompt and the stored code, skip "
        "leaves the snippet out, allow sends it as is; every hit is counted by kind (default: %(default)s)",
    )
    add_option(
        g,
        "near_dup",
        choices=NEAR_DUP,
        help="code that differs only in names, literals or layout (copied helpers, generated variants) is "
        "grouped by MinHash over normalised tokens and the groups kept in the checkpoint: keep asks about "
        "every snippet, ask-once only each group's first in walk order (the others are left out as "
        "near_duplicate), off does not group (default: %(default)s)",
    )
