"""The code's shape, as promised in ARCHITECTURE.md: small modules, one home for SQL, no import cycles.

Each test reads the source as text or AST (or starts a fresh interpreter), so a change that breaks a
promise fails here with the file and line to look at, not in review.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("stream", "sinks")
MAX_MODULE, MAX_CLASS, MAX_FUNCTION = 400, 250, 60
# Files that are data, not logic: their length is the length of the table they hold.
DATA_MODULES = {
    "stream/extract/queries.py": "tree-sitter queries, one per language",
    "stream/prices.py": "the dated price table",
    "stream/secrets/rules.py": "secret patterns, one per provider",
}
SQL_WORDS = ("SELECT ", "INSERT ", "UPDATE ", "DELETE FROM", "CREATE TABLE", "PRAGMA ")


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_no_module_is_longer_than_400_lines() -> None:
    long = {
        _rel(p): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE and _rel(p) not in DATA_MODULES
    }
    assert not long, f"split these modules (over {MAX_MODULE} lines): {long}"


def _defs(tree: ast.AST) -> list[ast.AST]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)]


def test_no_class_over_250_lines_and_no_function_over_60() -> None:
    too_long = []
    for path in _modules():
        if _rel(path) in DATA_MODULES:
            continue
        for node in _defs(ast.parse(path.read_text())):
            size = node.end_lineno - node.lineno + 1  # type: ignore[attr-defined]
            limit = MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION
            if size > limit:
                too_long.append(f"{_rel(path)}:{node.lineno} {node.name} ({size} lines)")  # type: ignore[attr-defined]
    assert not too_long, "split these:\n" + "\n".join(too_long)


def test_no_sql_outside_sinks() -> None:
    found = []
    for path in _modules():
        if _rel(path).startswith("sinks/"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(word in line.upper() for word in SQL_WORDS) and ("execute" in line or '"' in line):
                found.append(f"{_rel(path)}:{number}: {line.strip()}")
    assert not found, "SQL belongs in sinks/:\n" + "\n".join(found)


def _imports(path: Path, name: str) -> set[str]:
    """Every stream/sinks module this one imports, at any depth except under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def test_no_import_cycles() -> None:
    names = {_module_name(p): p for p in _modules()}
    graph = {
        name: {m for m in _imports(path, name) if m in names and m != name} for name, path in names.items()
    }
    # A package's __init__ importing its own submodules lazily (PEP 562) is no edge; importing a submodule
    # runs its package's __init__ first, which is an edge only when that __init__ imports eagerly.
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "code",
    [
        "import sinks",
        "from sinks import Sink",
        *[f"import {_module_name(p)}" for p in sorted((ROOT / "sinks").glob("*.py"))],
    ],
)
def test_sinks_import_alone_in_a_fresh_interpreter(code: str) -> None:
    done = _fresh(code)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", [["status"], ["export", "--format", "jsonl", "-o", "out.jsonl"]])
def test_report_commands_load_neither_httpx_nor_tree_sitter(command: list[str], tmp_path: Path) -> None:
    code = (
        "import sys; from stream.cli import main\n"
        f"main([*{command!r}, '--db', {str(tmp_path / 'none.db')!r}])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'tree_sitter', 'httpcore', 'tiktoken'}))"
    )
    done = _fresh(code)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_the_command_line_loads_no_subcommand_until_it_runs() -> None:
    # Every command pays for what `stream.cli` imports: parsing the flags must not load any command's work.
    heavy = [
        "stream.pipeline",
        "stream.export.run",
        "stream.status",
        "stream.plan",
        "sinks.checkpoint",
        "aiosqlite",
    ]
    done = _fresh(f"import sys, stream.cli; print([m for m in {heavy!r} if m in sys.modules])")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
