"""The snippet's context (``--context``): what the prompt says about where the code lives, how it joins the
record identity, the cache-friendly layout, and the prompt cache's share and saving in the summary and plan.

The prompt-cache emulation (`tests.providers.PromptCache`) follows OpenAI's prompt-caching guide
(https://platform.openai.com/docs/guides/prompt-caching): prompts of 1,024 tokens or more, exact prefixes,
hits in 128-token steps, reported in ``usage.prompt_tokens_details.cached_tokens``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import orjson
import pytest

from stream.context import CHARS_PER_TOKEN, Contexts, ProjectIndex, file_context, render
from stream.extract import extract
from stream.filters import Selection
from tests.fakeserver import FakeOpenAI
from tests.helpers import db_rows, run_args, snipstream
from tests.providers import PromptCache

SHAPES = textwrap.dedent(
    '''\
    """Geometry helpers for the drawing tools.

    Everything is in millimetres."""

    import math
    from collections import (
        OrderedDict,
    )

    NAME = "shapes"


    def scale(value, factor):
        """Multiply a length by a factor."""
        return value * factor


    class Circle(Base):
        """A circle given by its radius."""

        unit = "mm"

        def __init__(self, radius):
            self.radius = radius
            self.label: str = ""

        def area(self):
            return math.pi * scale(self.radius, self.radius)

        def grow(self, by):
            self.radius = scale(self.radius, by)
            return self.area()
    '''
)


def _contexts(text: str, path: str = "geo/shapes.py", tokens: int = 1024) -> dict[str, str]:
    data = text.encode()
    snippets = extract(data, path, "python")
    sel = Selection(context_tokens=tokens)
    ctx = file_context(data, path, "python", snippets, sel)
    return {s.qualname: render(s, ctx, None, tokens) for s in snippets}


def test_a_methods_context_names_its_class_its_members_the_file_and_what_it_calls() -> None:
    ctx = _contexts(SHAPES)
    area = ctx["Circle.area"]
    assert "File: geo/shapes.py" in area
    assert "Geometry helpers for the drawing tools." in area and "millimetres" not in area  # first paragraph
    assert "import math" in area and "from collections import ( OrderedDict, )" in area
    assert "class Circle(Base)" in area and "A circle given by its radius." in area
    assert "attributes: unit, radius, label" in area
    assert "methods: __init__, area, grow" in area
    assert "def scale(value, factor)  # Multiply a length by a factor." in area  # a function it calls
    grow = ctx["Circle.grow"]
    assert "def area(self)" in grow.split("It calls")[1]  # self.area() resolves to the class's method
    assert "class Circle" not in ctx["scale"]  # a module-level function is in no class
    assert area.endswith("\n\n")


def test_the_files_part_comes_first_so_a_files_snippets_share_a_prefix() -> None:
    ctx = _contexts(SHAPES)
    header = ctx["scale"].rstrip("\n")
    assert all(text.startswith(header) for text in ctx.values())
    methods = [ctx[q] for q in ("Circle.area", "Circle.grow")]
    class_part = methods[0][: methods[0].index("It calls")]
    assert methods[1].startswith(class_part)  # then what the methods of one class share


def test_secrets_in_the_files_part_are_cut_out_as_in_snippets() -> None:
    text = SHAPES.replace('"""Geometry helpers', '"""Key AKIAVQJXXVBOTHD0WTFL helpers')
    text = text.replace(
        "def scale(value, factor):",
        'def scale(value, factor, token="ghp_SnH6av1Ib8pp1xxXHU0BScJXj675eVq30XYq"):',
    )
    ctx = "".join(_contexts(text).values())
    assert "AKIAVQJXXVBOTHD0WTFL" not in ctx and "ghp_SnH6" not in ctx
    assert "<REDACTED:aws_access_key>" in ctx and "<REDACTED:github_token>" in ctx


def test_the_context_is_bounded_by_context_tokens() -> None:
    many = "\n".join(f"import module_number_{i}" for i in range(400))
    text = f'"""{"word " * 2000}"""\n{many}\n\n' + SHAPES.split("import math", 1)[1]
    for tokens in (100, 400, 1024):
        for value in _contexts(text, tokens=tokens).values():
            assert len(value) <= tokens * CHARS_PER_TOKEN + 2, tokens


def test_a_doc_section_is_told_its_file_and_heading_path() -> None:
    data = b"# Guide\n\nIntro text here.\n\n## Install\n\nRun pip install thing to get it.\n"
    snippets = extract(data, "docs/guide.md", "markdown")
    ctx = file_context(data, "docs/guide.md", "markdown", snippets, Selection(context_tokens=1024))
    install = next(s for s in snippets if s.qualname.endswith("Install"))
    text = render(install, ctx, None, 1024)
    assert "File: docs/guide.md" in text and "Section: Guide > Install" in text


def test_project_context_finds_callees_in_other_files_and_leaves_ambiguous_names_out() -> None:
    helpers = b'def scale(value, factor):\n    """Multiply."""\n    return value * factor\n'
    twice = b"def clamp(x):\n    return x\n"
    index = ProjectIndex()
    sel = Selection()
    for path, data in (("a/helpers.py", helpers), ("a/one.py", twice), ("a/two.py", twice)):
        index.add(path, extract(data, path, "python"), sel)
    caller = b"def use(x):\n    return scale(clamp(x), 2)\n"
    snippets = extract(caller, "a/use.py", "python")
    ctx = file_context(caller, "a/use.py", "python", snippets, Selection(context_tokens=1024))
    text = Contexts("project", 1024, index).of(snippets[0], ctx)
    assert "def scale(value, factor)  # Multiply.  (in a/helpers.py)" in text
    assert "clamp" not in text.split("It calls")[1]  # defined in two files: which one is meant is unknown
    assert "scale" not in Contexts("file", 1024).of(snippets[0], ctx).split("Imports")[-1]


# --- end to end ---------------------------------------------------------------------------------------------


def _tree(root: Path) -> Path:
    (root / "geo").mkdir(parents=True)
    (root / "geo" / "shapes.py").write_text(SHAPES)
    return root


def _prompts(server: FakeOpenAI) -> list[str]:
    return [
        r.body["messages"][-1]["content"] for r in server.requests if r.path.endswith("/chat/completions")
    ]


def test_with_context_file_every_methods_prompt_names_its_class_and_a_rerun_pays_nothing(
    tmp_path: Path,
) -> None:
    tree = _tree(tmp_path / "p")
    with FakeOpenAI(chunks=4) as server:
        first = snipstream(*run_args(server, tree, "--task", "annotate", "--context", "file"), cwd=tmp_path)
        assert first.code == 0, first.stderr
        prompts = _prompts(server)
        methods = [r for r in first.records if r["kind"] == "method"]
        assert len(methods) == 3
        for record in methods:
            prompt = next(p for p in prompts if record["code"] in p)
            assert "class Circle(Base)" in prompt
            assert prompt.index("File: geo/shapes.py") < prompt.index(record["code"])  # the snippet last
        assert {r["task"]["context"] for r in first.records} == {"file"}
        again = snipstream(*run_args(server, tree, "--task", "annotate", "--context", "file"), cwd=tmp_path)
        assert again.code == 0 and len(_prompts(server)) == len(prompts)


def test_context_none_asks_the_code_alone_with_the_ids_of_before(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "p")
    with FakeOpenAI(chunks=4) as server:
        none = snipstream(
            *run_args(server, tree, "--task", "annotate", "--context", "none", "--db", "n.db"), cwd=tmp_path
        )
        assert none.code == 0, none.stderr
        assert not any("Context:" in p for p in _prompts(server))
        assert all("context" not in r["task"] for r in none.records)
        with_ctx = snipstream(*run_args(server, tree, "--task", "annotate", "--db", "f.db"), cwd=tmp_path)
    assert {r["record_id"] for r in none.records}.isdisjoint({r["record_id"] for r in with_ctx.records})
    # the snippet ids (the code) are the same: only the question differs
    assert {r["snippet_id"] for r in none.records} == {r["snippet_id"] for r in with_ctx.records}


def test_the_same_code_is_asked_once_per_distinct_context(tmp_path: Path) -> None:
    tree = tmp_path / "p"
    helper = "def double(x):\n    return 2 * x\n"
    for name, header in (("a.py", "import os\n\n"), ("b.py", "import os\n\n"), ("c.py", "import sys\n\n")):
        (tree / "pkg").mkdir(parents=True, exist_ok=True)
        (tree / "pkg" / name).write_text(header + helper)
    with FakeOpenAI(chunks=4) as server:
        result = snipstream(*run_args(server, tree, "--task", "annotate"), cwd=tmp_path)
        assert result.code == 0, result.stderr
        # a.py and b.py differ in their path only... which the context names: three contexts, three asks
        assert len(_prompts(server)) == 3
        none = snipstream(
            *run_args(server, tree, "--task", "annotate", "--context", "none", "--db", "n.db"), cwd=tmp_path
        )
        assert none.code == 0 and len(_prompts(server)) == 4  # without context: one question for all three


def _big_file(tree: Path) -> None:
    """A file whose imports alone are over 1,024 of the fake server's tokens (words), and six functions."""
    imports = "\n".join(f"from pkg.m{i} import a{i}, b{i}, c{i}" for i in range(200))
    functions = "\n\n".join(f"def f{i}(x):\n    return x + {i} * x\n" for i in range(6))
    (tree / "pkg" / "big.py").write_text(f"{imports}\n\n{functions}")


def test_the_prompt_cache_share_and_saving_are_in_the_summary(tmp_path: Path) -> None:
    tree = tmp_path / "p"
    (tree / "pkg").mkdir(parents=True)
    _big_file(tree)
    prices = tmp_path / "prices.toml"
    prices.write_text('[models]\n"m" = { input = 1.0, output = 2.0, cached_input = 0.1 }\n')
    cache = PromptCache()
    with FakeOpenAI(chunks=4, provider=[cache]) as server:
        args = run_args(server, tree, "--task", "annotate", "--context-tokens", "10000", "--prices", prices)
        result = snipstream(*args, cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert cache.hits == 5  # every prompt after the first starts with the same 1,024+ words
    usages = [r["response"]["usage"] for r in result.records]
    cached = sum(u["prompt_tokens_details"]["cached_tokens"] for u in usages)
    prompt = sum(u["prompt_tokens"] for u in usages)
    assert cached > 0 and all(u["prompt_tokens_details"]["cached_tokens"] % 128 == 0 for u in usages)
    saving = cached * (1.0 - 0.1) / 1e6
    assert f"prompt cache served {cached:,} ({cached / prompt:.0%})" in result.stderr
    assert f"saving ${saving:,.4f}" in result.stderr
    runs = db_rows(tmp_path / "snipstream.db", "SELECT summary FROM runs")
    summary = orjson.loads(runs[-1][0])
    assert summary["cached_tokens"] == cached and summary["cache_saving"] == pytest.approx(saving)


def test_plan_estimates_the_cached_share(tmp_path: Path) -> None:
    tree = tmp_path / "p"
    (tree / "pkg").mkdir(parents=True)
    _big_file(tree)
    result = snipstream(
        "plan", tree, "--task", "annotate", "--context-tokens", "10000", "--json", cwd=tmp_path
    )
    assert result.code == 0, result.stderr
    total = orjson.loads(result.stdout)["total"]
    assert 0.5 < total["cached_tokens"] / total["prompt_tokens"] < 1  # five of six prompts share their head
    assert total["cost_usd"] < total["uncached_cost_usd"]
    text = snipstream("plan", tree, "--task", "annotate", "--context-tokens", "10000", cwd=tmp_path)
    assert "prompt cache: about" in text.stderr


def test_on_a_real_tree_every_methods_prompt_names_its_class(tmp_path: Path) -> None:
    """The project's own source (the dry run's lines carry each request as it would be sent)."""
    out = tmp_path / "dry.ndjson"
    src = Path(__file__).resolve().parent.parent / "stream"
    result = snipstream(
        "run", src, "--dry-run", "--task", "annotate", "--context", "file", "-o", out, cwd=tmp_path
    )
    assert result.code == 0, result.stderr
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    methods = [line for line in lines if line["kind"] in ("method", "async_method")]
    assert len(methods) > 200
    for line in methods:
        prompt = line["request"]["messages"][-1]["content"]
        cls = line["parent"].rsplit(".", 1)[-1]
        head = prompt[: prompt.index(line["code"])]
        assert f"In the class:\n  class {cls}" in head, line["qualname"]


def test_a_checkpoint_from_before_contexts_is_rerun_without_context_and_pays_for_nothing(
    tmp_path: Path,
) -> None:
    tree = _tree(tmp_path / "p")
    db = tmp_path / "snipstream.db"
    with FakeOpenAI(chunks=4) as server:
        old = snipstream(*run_args(server, tree, "--task", "annotate", "--context", "none"), cwd=tmp_path)
        assert old.code == 0, old.stderr
        asked = len(_prompts(server))
        # as the releases before --context wrote it: the runs' stored configs have no "context"
        db_rows(db, "UPDATE runs SET config = json_remove(config, '$.context')")
        (tree / "geo" / "shapes.py").touch()  # the file index is looked past: every snippet is planned
        again = snipstream(*run_args(server, tree, "--task", "annotate"), cwd=tmp_path)
        assert again.code == 0, again.stderr
        assert len(_prompts(server)) == asked  # nothing asked again
        assert "asking without context, as this checkpoint's earlier runs did" in again.stderr
        fresh = snipstream(*run_args(server, tree, "--task", "annotate", "--db", "new.db"), cwd=tmp_path)
        assert fresh.code == 0 and "Context:" in _prompts(server)[-1]  # a new checkpoint: file, the default
        kept = snipstream(*run_args(server, tree, "--task", "annotate", "--db", "new.db"), cwd=tmp_path)
        assert kept.code == 0 and "asking without context" not in kept.stderr


def test_the_dry_runs_token_counts_are_those_of_the_whole_prompts(tmp_path: Path) -> None:
    """A file's shared context is counted once for the file (`TokenCounter`): the sums must still be exact."""
    from stream.tokens import load_tokenizer

    out = tmp_path / "dry.ndjson"
    src = Path(__file__).resolve().parent.parent / "stream" / "pipeline"
    result = snipstream("run", src, "--dry-run", "--task", "annotate,qa", "-o", out, cwd=tmp_path)
    assert result.code == 0, result.stderr
    tok = load_tokenizer("gpt-4o-mini")
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(lines) > 100 and all(
        line["request"]["messages"][-1]["content"].startswith("Context:") for line in lines
    )
    for line in lines:
        messages = line["request"]["messages"]
        system = next((m["content"] for m in messages if m["role"] == "system"), None)
        assert line["prompt_tokens"] == tok.count_chat(system, messages[-1]["content"]), line["qualname"]
