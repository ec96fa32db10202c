"""The tree-sitter extractor: which snippets each language yields, their exact text and metadata, and
its errors (broken sources, bad bytes, a grammar that is not installed)."""

from __future__ import annotations

import multiprocessing
import re
import sys
from pathlib import Path

import pytest

from stream.errors import SourceError
from stream.extract import treesitter as ts
from stream.extract.treesitter import LANGUAGES, SHEBANGS, available, extract
from stream.model import Snippet, snippet_id

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "polyglot"

# Per fixture file: (kind, qualname, parent, start_line, end_line) of every snippet, in source order.
EXPECTED: dict[str, tuple[str, list[tuple[str, str, str | None, int, int]]]] = {
    "web/src/api.ts": (
        "typescript",
        [
            # `type UserId = string` (one line) is not a snippet; overload signatures are not either.
            ("type", "Page", None, 9, 12),
            ("interface", "Transport", None, 14, 17),
            ("enum", "Method", None, 19, 22),
            ("function", "route", None, 27, 29),
            ("class", "ApiClient", None, 36, 61),  # from its decorator; the JSDoc above is the docstring
            ("method", "ApiClient.constructor", "ApiClient", 40, 40),
            ("method", "ApiClient.user", "ApiClient", 43, 47),
            ("method", "ApiClient.onError", "ApiClient", 49, 51),  # a field holding an arrow function
            ("method", "ApiClient.create", "ApiClient", 53, 60),
            ("class", "Repository", None, 63, 69),  # its abstract method has no body: no snippet
            ("method", "Repository.log", "Repository", 66, 68),
            ("function", "Codec.encode", None, 72, 74),  # a namespace names, but is no snippet
            ("function", "retry", None, 77, 85),
            ("interface", "User", None, 87, 90),
        ],
    ),
    "web/src/App.tsx": (
        "tsx",
        [
            ("function", "ItemList", None, 6, 20),
            ("function", "Badge", None, 22, 22),
            ("class", "Counter", None, 24, 34),
            ("method", "Counter.increment", "Counter", 27, 29),
            ("method", "Counter.render", "Counter", 31, 33),
        ],
    ),
    "web/lib/util.js": (
        "javascript",
        [
            ("function", "greet", None, 3, 3),  # after multi-byte text on the same line
            ("function", "debounce", None, 10, 19),
            ("function", "debounce.clear", "debounce", 12, 14),
            ("function", "range", None, 21, 23),
            # formatters.upper is an object-literal method: not a snippet
            ("class", "EventBus", None, 31, 47),
            ("method", "EventBus.on", "EventBus", 34, 38),
            ("method", "EventBus.emit", "EventBus", 40, 42),
            ("method", "EventBus.shared", "EventBus", 44, 46),
            ("function", "legacy", None, 49, 51),
            ("method", "EventBus.off", "EventBus", 53, 55),  # Cls.prototype.m = function
            ("function", "createBus", None, 57, 59),  # module.exports = function createBus
        ],
    ),
    "server/main.go": (
        "go",
        [
            ("interface", "Handler", None, 10, 12),
            ("struct", "Server", None, 17, 20),
            # `State int` in the type group is not a snippet; Stack is, from its own line
            ("struct", "Stack", None, 27, 29),
            ("function", "NewServer", None, 33, 35),
            ("method", "Server.Start", "Server", 38, 45),  # its func literal is not a snippet
            ("method", "Server.Addr", "Server", 47, 47),
            ("method", "Stack.Push", "Stack", 50, 52),
        ],
    ),
    "engine/src/lib.rs": (
        "rust",
        [
            ("struct", "Score", None, 6, 9),  # from its #[derive]
            ("enum", "Method", None, 12, 16),
            ("struct", "Marker", None, 18, 18),
            ("trait", "Scorer", None, 21, 28),  # `fn score` has no default body: no snippet
            ("method", "Scorer.name", "Scorer", 25, 27),
            ("impl", "Score", None, 30, 42),
            ("method", "Score.zero", "Score", 32, 34),
            ("method", "Score.grüße", "Score", 36, 41),
            ("function", "Score.grüße.shout", "Score.grüße", 37, 39),
            ("impl", "Score", None, 44, 48),  # impl fmt::Display for Score
            ("method", "Score.fmt", "Score", 45, 47),
            ("function", "util.clamp", None, 52, 56),
            ("function", "tests.zero_is_zero", None, 63, 66),
        ],
    ),
    "app/src/main/java/com/example/Inventory.java": (
        "java",
        [
            ("class", "Inventory", None, 11, 51),  # from its annotation
            ("method", "Inventory.Inventory", "Inventory", 16, 16),
            ("method", "Inventory.add", "Inventory", 23, 27),
            ("class", "Inventory.Audit", "Inventory", 29, 35),  # `abstract void check();`: no snippet
            ("method", "Inventory.Audit.log", "Inventory.Audit", 32, 34),
            ("enum", "Inventory.Status", "Inventory", 37, 44),
            ("method", "Inventory.Status.available", "Inventory.Status", 41, 43),
            ("class", "Inventory.Entry", "Inventory", 46, 50),
            ("method", "Inventory.Entry.Entry", "Inventory.Entry", 47, 49),
            ("interface", "Item", None, 53, 59),
            ("method", "Item.label", "Item", 56, 58),
        ],
    ),
    "native/ring.h": (
        "c",
        [
            ("struct", "ring", None, 7, 10),  # typedef struct ring {...} ring_t: from `typedef`
            ("enum", "ring_status", None, 12, 12),
            # the two prototypes are not snippets
            ("function", "ring_len", None, 18, 20),
        ],
    ),
    "native/ring.c": (
        "c",
        [
            ("struct", "ring_stats", None, 4, 7),  # anonymous, named by its typedef
            ("function", "ring_init", None, 15, 21),
            ("function", "ring_push", None, 24, 34),
            ("function", "on_full", None, 36, 39),  # returns a function pointer
        ],
    ),
    "native/geometry.cpp": (
        "cpp",
        [
            ("struct", "geo.Point", None, 7, 9),
            ("class", "geo.Shape", None, 11, 16),  # `= default` and pure virtual members: no body
            ("method", "geo.Shape.name", "geo.Shape", 15, 15),
            ("function", "geo.detail.square", None, 19, 22),  # from `template <...>`
            ("class", "geo.Circle", None, 25, 32),
            ("method", "geo.Circle.Circle", "geo.Circle", 35, 35),  # defined out of line
            ("method", "geo.Circle.area", "geo.Circle", 37, 39),
            ("enum", "Unit", None, 43, 43),
            ("class", "Box", None, 45, 49),
            ("method", "Box.get", "Box", 51, 54),
            ("function", "main", None, 56, 59),
        ],
    ),
    "scripts/deploy.rb": (
        "ruby",
        [
            ("class", "Deploy.StepError", None, 7, 7),  # a module names, but is no snippet
            ("class", "Deploy.Runner", None, 10, 35),
            ("method", "Deploy.Runner.initialize", "Deploy.Runner", 13, 15),
            ("method", "Deploy.Runner.run!", "Deploy.Runner", 18, 20),
            ("method", "Deploy.Runner.from_json", "Deploy.Runner", 22, 22),  # def self.x = ...
            ("method", "Deploy.Runner.default", "Deploy.Runner", 25, 27),  # in class << self
            ("method", "Deploy.Runner.execute", "Deploy.Runner", 32, 34),
            ("method", "Deploy.version", None, 37, 39),  # def self.version in a module
            ("class", "Deploy.Config", "Deploy", 42, 46),  # class Deploy::Config: the written scope
            ("method", "Deploy.Config.load", "Deploy.Config", 43, 45),
            ("function", "main", None, 48, 50),
        ],
    ),
}


def read(relpath: str) -> bytes:
    return (FIXTURES / relpath).read_bytes()


def cut(relpath: str) -> list[Snippet]:
    return extract(read(relpath), relpath, EXPECTED[relpath][0])


def table(snippets: list[Snippet]) -> list[tuple[str, str, str | None, int, int]]:
    return [(s.kind, s.qualname, s.parent, s.start_line, s.end_line) for s in snippets]


def by_qualname(snippets: list[Snippet]) -> dict[str, Snippet]:
    """The first snippet of each qualname (a Rust struct comes before its impls)."""
    found: dict[str, Snippet] = {}
    for s in snippets:
        found.setdefault(s.qualname, s)
    return found


def lines_of(text: str, start: int, end: int) -> str:
    """Lines start..end (1-based, inclusive) as in the file: lines end at \\n, a \\r before it is kept."""
    lines = re.findall(r"[^\n]*\n|[^\n]+$", text)
    return "".join(lines[start - 1 : end])


def test_languages_and_shebangs_tables() -> None:
    assert LANGUAGES == {
        "typescript": (".ts", ".mts", ".cts"),
        "tsx": (".tsx",),
        "javascript": (".js", ".mjs", ".cjs", ".jsx"),
        "go": (".go",),
        "rust": (".rs",),
        "java": (".java",),
        "c": (".c", ".h"),
        "cpp": (".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx"),
        "ruby": (".rb",),
    }
    assert SHEBANGS["node"] == "javascript"
    assert SHEBANGS["ruby"] == "ruby"
    assert SHEBANGS["deno"] == "typescript"
    assert set(SHEBANGS.values()) <= set(LANGUAGES)
    assert sorted(ts.__all__) == ["LANGUAGES", "SHEBANGS", "available", "extract"]
    assert all(available(language) for language in LANGUAGES)
    assert not available("cobol")


def test_every_fixture_language_is_covered() -> None:
    assert {language for language, _ in EXPECTED.values()} == set(LANGUAGES)


@pytest.mark.parametrize("relpath", list(EXPECTED))
def test_definitions_found_with_kind_qualname_parent_and_lines(relpath: str) -> None:
    language, expected = EXPECTED[relpath]
    snippets = cut(relpath)
    assert table(snippets) == expected  # also pins source order: enclosing before nested
    assert {(s.path, s.language) for s in snippets} == {(relpath, language)}


@pytest.mark.parametrize("relpath", list(EXPECTED))
def test_expected_tables_name_lines_that_hold_the_definition(relpath: str) -> None:
    # Guards the hand-written tables against off-by-one mistakes of their own: the first line is a
    # decorator/attribute/annotation/template line or names the definition, the last closes it.
    lines = read(relpath).decode().split("\n")
    for kind, qualname, _parent, start, end in EXPECTED[relpath][1]:
        first, last = lines[start - 1].strip(), lines[end - 1].strip()
        name = qualname.rsplit(".", 1)[-1]
        assert name in first or first.startswith(("@", "#[", "template", "typedef")), (qualname, first)
        assert last.endswith(("}", ";", "end")) or (kind == "method" and "=" in last), (qualname, last)


@pytest.mark.parametrize("relpath", list(EXPECTED))
def test_code_is_the_exact_text_of_the_snippet_lines(relpath: str) -> None:
    text = read(relpath).decode()
    for s in cut(relpath):
        assert s.code == lines_of(text, s.start_line, s.end_line), s.qualname
        assert s.id == snippet_id(s.language, s.code)


def test_signatures() -> None:
    got = {
        relpath: {s.qualname: s.signature for s in cut(relpath)}
        for relpath in ("web/src/api.ts", "server/main.go", "engine/src/lib.rs", "native/geometry.cpp")
    }
    api, go, rust, cpp = got.values()
    assert api["ApiClient"] == "class ApiClient"  # decorators and `export` are left out
    assert api["ApiClient.user"] == "async user(id: UserId): Promise<User>"
    # Multi-line header: whitespace folded, the comment dropped.
    assert api["ApiClient.create"] == "static create( transport: Transport, retries = 3, ): ApiClient"
    assert api["retry"] == "const retry = async <T>(fn: () => Promise<T>, times = 3): Promise<T> =>"
    assert api["Page"] == "type Page<T>"
    assert go["Server.Start"] == "func (s *Server) Start(ctx context.Context) error"
    assert go["Server"] == "type Server struct"
    assert go["Stack"] == "type Stack[T any] struct"  # a spec of a type group
    assert rust["Score.grüße"] == "pub fn grüße(&self, name: &str) -> String"
    assert rust["Marker"] == "pub struct Marker"
    assert rust["util.clamp"] == "pub fn clamp(x: f64) -> f64"  # attributes are left out
    assert [s.signature for s in cut("engine/src/lib.rs") if s.kind == "impl"] == [
        "impl Score",
        "impl fmt::Display for Score",
    ]
    assert cpp["geo.detail.square"] == "template <typename T> T square(T v)"
    assert cpp["geo.Circle.Circle"] == "Circle::Circle(double r) : r_(r)"
    assert cpp["geo.Circle"] == "class Circle : public Shape"
    java = by_qualname(cut("app/src/main/java/com/example/Inventory.java"))
    assert java["Inventory.add"].signature == "public synchronized void add( T item)"  # no @Override
    c = by_qualname(cut("native/ring.c"))
    assert c["on_full"].signature == "static void (*on_full(void))(ring_t *)"
    assert c["ring_stats"].signature == "typedef struct ring_stats"
    rb = by_qualname(cut("scripts/deploy.rb"))
    assert rb["Deploy.Runner.run!"].signature == "def run!(dry_run: false)"
    assert rb["Deploy.Runner.from_json"].signature == "def self.from_json(text)"
    assert rb["Deploy.StepError"].signature == "class StepError < StandardError"


def test_docstrings() -> None:
    api = by_qualname(cut("web/src/api.ts"))
    assert (
        api["ApiClient"].docstring == 'Talks to the REST API.\n\n@example new ApiClient(transport).user("42")'
    )
    assert api["ApiClient.user"].docstring == "Fetch one user."  # above the decorator
    assert api["Page"].docstring == "A page of results, with a cursor for the next one."
    assert api["route"].docstring is None  # a `//` comment is not JSDoc (and a blank line separates it)
    js = by_qualname(cut("web/lib/util.js"))
    assert js["debounce"].docstring == (
        "Debounce `fn` by `wait` milliseconds.\n@param {Function} fn\n@param {number} wait"
    )
    go = by_qualname(cut("server/main.go"))
    assert go["Server"].docstring == "Server owns the listener and its routes."  # //go:generate dropped
    assert go["Stack.Push"].docstring == "Push adds v on top — O(1)."
    assert go["Server.Addr"].docstring is None
    rust = by_qualname(cut("engine/src/lib.rs"))
    assert rust["Score"].docstring == "A scored document — « naïve » scores are fine."
    assert rust["util.clamp"].docstring == "Clamp to [0, 1]."  # above two attributes
    assert rust["Marker"].docstring is None
    java = by_qualname(cut("app/src/main/java/com/example/Inventory.java"))
    assert java["Inventory"].docstring == "Keeps track of items in stock.\n\n@author someone"
    assert java["Inventory.add"].docstring == "Adds an item.\n\n@param item what to add"
    c = by_qualname(cut("native/ring.c"))
    assert c["ring_init"].docstring == "Allocate the buffer.\nReturns 0 on success."
    assert c["ring_push"].docstring == "Append one byte; drops it when full."  # C: any comment above
    assert by_qualname(cut("native/ring.h"))["ring"].docstring == "A fixed-size ring buffer of bytes."
    assert by_qualname(cut("native/geometry.cpp"))["geo.Point"].docstring == "A point in the plane."
    rb = by_qualname(cut("scripts/deploy.rb"))
    assert rb["Deploy.Runner.run!"].docstring == "Run every step; stop at the first failure."
    assert rb["Deploy.Runner.initialize"].docstring is None


def test_rust_doc_comments_between_attributes_and_inner_doc_comments() -> None:
    source = b"//! crate docs, not Foo's\n/// Outer.\n#[derive(Debug)]\n/// Inner.\n// plain\nstruct Foo;\n"
    [foo] = extract(source, "a.rs", "rust")
    assert (foo.start_line, foo.end_line) == (3, 6)
    assert foo.docstring == "Outer.\nInner."


def test_crlf_line_endings_are_kept_in_code_and_dropped_from_metadata() -> None:
    lf = read("web/lib/util.js")
    crlf = lf.replace(b"\n", b"\r\n")
    snippets = extract(crlf, "util.js", "javascript")
    assert table(snippets) == EXPECTED["web/lib/util.js"][1]
    text = crlf.decode()
    for s in snippets:
        assert s.code == lines_of(text, s.start_line, s.end_line)
        assert s.code.endswith("\r\n") and s.code.count("\r\n") == s.end_line - s.start_line + 1
        assert "\r" not in s.signature and "\r" not in (s.docstring or "")
    assert (
        by_qualname(snippets)["debounce"].docstring
        == by_qualname(cut("web/lib/util.js"))["debounce"].docstring
    )


def test_bom_is_dropped_and_positions_stay_right() -> None:
    source = "package x\n\n// Run starts — now.\nfunc Run() {}\n".encode()
    plain = extract(source, "x.go", "go")
    with_bom = extract(b"\xef\xbb\xbf" + source, "x.go", "go")
    assert with_bom == plain
    assert table(with_bom) == [("function", "Run", None, 4, 4)]
    assert (with_bom[0].code, with_bom[0].docstring) == ("func Run() {}\n", "Run starts — now.")
    [first] = extract("\ufeffstruct A;\n".encode(), "a.rs", "rust")  # a definition on the BOM's line
    assert (first.start_line, first.code, first.signature) == (1, "struct A;\n", "struct A")


def test_multibyte_text_before_a_definition() -> None:
    js = by_qualname(cut("web/lib/util.js"))
    line = 'const GREETING = "こんにちは 🌸"; function greet(name) { return `${GREETING}, ${name}`; }\n'
    assert js["greet"].code == line  # the whole line, though the definition starts mid-line
    assert js["greet"].signature == "function greet(name)"
    source = "/* ünïcödé ✓ */ const ü = 1;\nfn 函数(x: &str) -> &str { x }\n".encode()
    [fn] = extract(source, "m.rs", "rust")
    assert (fn.qualname, fn.start_line, fn.signature) == ("函数", 2, "fn 函数(x: &str) -> &str")
    assert fn.code == "fn 函数(x: &str) -> &str { x }\n"


def test_commonjs_exports_are_named() -> None:
    source = b"module.exports = async (a) => {\n  return a;\n};\nexports.helper = function () {};\n"
    source += b"window.f = () => 1;\n"  # not an export: no name
    got = extract(source, "index.js", "javascript")
    assert [(s.qualname, s.start_line, s.end_line, s.signature) for s in got] == [
        ("default", 1, 3, "module.exports = async (a) =>"),
        ("helper", 4, 4, "exports.helper = function ()"),
    ]


def test_default_exports_and_class_expressions_are_named() -> None:
    source = b"export default class {\n  render() {}\n}\nconst Widget = class Inner {\n  draw() {}\n};\n"
    got = extract(source, "a.ts", "typescript")
    assert table(got) == [
        ("class", "default", None, 1, 3),
        ("method", "default.render", "default", 2, 2),
        ("class", "Widget", None, 4, 6),
        ("method", "Widget.draw", "Widget", 5, 5),
    ]
    assert [s.signature for s in got if s.kind == "class"] == ["class", "const Widget = class Inner"]


def test_snippet_lines_cover_the_whole_declaration() -> None:
    [point] = extract(b"typedef struct {\n    int x;\n}\nPoint;\nint y;\n", "p.h", "c")
    assert (point.qualname, point.start_line, point.end_line) == ("Point", 1, 4)
    assert point.code == "typedef struct {\n    int x;\n}\nPoint;\n"


def test_declarations_without_body_are_not_snippets() -> None:
    assert extract(b"int f(int);\nstruct s;\nextern int g(void);\n", "a.h", "c") == []
    assert extract(b"function f(a: string): void;\ndeclare function g(): void;\n", "a.ts", "typescript") == []
    assert extract(b"interface I { void m(); }\n", "I.java", "java")[0].qualname == "I"
    assert [s.qualname for s in extract(b"abstract class A { abstract void m(); }\n", "A.java", "java")] == [
        "A"
    ]
    assert [s.qualname for s in extract(b"trait T { fn f(&self); }\n", "t.rs", "rust")] == ["T"]


def test_empty_and_definition_free_files_give_no_snippets() -> None:
    assert extract(b"", "a.go", "go") == []
    assert extract(b"package main\n\nvar x = 1\n", "a.go", "go") == []
    assert extract(b"puts 'hi'\n", "a.rb", "ruby") == []


def test_syntax_error_skips_only_the_broken_definitions() -> None:
    source = (
        b"function ok() {\n  return 1;\n}\n\n"
        b"function broken() {\n  return 2 +;\n}\n\n"
        b"class C {\n  m() { return 3; }\n}\n"
    )
    assert table(extract(source, "a.js", "javascript")) == [
        ("function", "ok", None, 1, 3),
        ("class", "C", None, 9, 11),
        ("method", "C.m", "C", 10, 10),
    ]
    go = b"package x\n\nfunc Good() int {\n\treturn 1\n}\n\nfunc Bad() {\n\tx := \n}\n"
    assert table(extract(go, "a.go", "go")) == [("function", "Good", None, 3, 5)]
    # A broken method does not hide its class's other methods, which keep their qualnames.
    rust = b"impl S {\n    fn bad(&self) { let = ; }\n    fn good(&self) {}\n}\n"
    assert table(extract(rust, "a.rs", "rust")) == [("method", "S.good", "S", 3, 3)]


def test_file_with_errors_and_nothing_extractable_is_a_syntax_error() -> None:
    with pytest.raises(SourceError) as info:
        extract(b"package x\n\nfunc Bad() {\n\tx := \n}\n", "a.go", "go")
    assert info.value.reason == "syntax_error"
    assert info.value.detail.startswith("line 4, column ")
    with pytest.raises(SourceError) as info:
        extract("const ü = 'é';\n}}} (((\n".encode(), "a.js", "javascript")
    assert info.value.reason == "syntax_error"
    assert info.value.detail == "line 2, column 1: unexpected '}}} ((('"
    with pytest.raises(SourceError) as info:  # the column counts characters, not bytes
        extract("x = 'é'; )\n".encode(), "a.js", "javascript")
    assert info.value.detail.startswith("line 1, column 10: ")


def test_undecodable_and_nul_bytes() -> None:
    with pytest.raises(SourceError) as info:
        extract(b"fn f() {}\n// \xff\xfe\n", "a.rs", "rust")
    assert info.value.reason == "decode_error"
    with pytest.raises(SourceError) as info:
        extract(b"fn f() {}\n\0\n", "a.rs", "rust")
    assert info.value.reason == "invalid_source"


def test_unknown_language_is_unsupported() -> None:
    with pytest.raises(SourceError) as info:
        extract(b"IDENTIFICATION DIVISION.\n", "a.cob", "cobol")
    assert info.value.reason == "language_unsupported"


def test_missing_grammar_wheel_is_language_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ts, "_LOADED", {})  # forget grammars this process already loaded
    monkeypatch.setitem(sys.modules, "tree_sitter_rust", None)  # `import tree_sitter_rust` now fails
    assert not available("rust")
    with pytest.raises(SourceError) as info:
        extract(b"fn f() {}\n", "a.rs", "rust")
    assert info.value.reason == "language_unsupported"
    assert info.value.detail.startswith("language support not installed (pip install 'snipstream[langs]')")
    assert "tree_sitter_rust" in info.value.detail
    assert available("go")  # other grammars are unaffected
    assert extract(b"package x\nfunc F() {}\n", "a.go", "go")[0].qualname == "F"


def test_missing_tree_sitter_is_language_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ts, "_LOADED", {})
    monkeypatch.setitem(sys.modules, "tree_sitter", None)
    with pytest.raises(SourceError) as info:
        extract(b"package x\n", "a.go", "go")
    assert info.value.reason == "language_unsupported"
    assert "tree_sitter" in info.value.detail
    assert not available("ruby")


def _extract_in_worker(relpath: str) -> list[tuple[str, str, str | None, int, int]]:
    return table(cut(relpath))


@pytest.mark.timeout(120)
def test_grammars_load_in_a_spawned_worker_process() -> None:
    # A spawned process starts with an empty grammar cache and must load what it needs on first use.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.map(_extract_in_worker, ["server/main.go", "web/src/App.tsx"])
    assert got == [EXPECTED["server/main.go"][1], EXPECTED["web/src/App.tsx"][1]]
