"""The Python extractor: which snippets a file yields, their exact text and metadata, and its errors."""

from __future__ import annotations

import ast
import pickle
import textwrap
import types

import pytest

from stream.errors import SourceError
from stream.extract import python as py
from stream.extract.python import LANGUAGE, SUFFIXES, decode_source, extract
from stream.model import Snippet

SAMPLE = textwrap.dedent(
    '''\
    """Module docstring."""
    import functools


    def top(a, b=1):
        """Top-level function."""
        square = lambda x: x * x  # a lambda is not a snippet
        return square(a) + b


    async def fetch(url):
        return url


    class Base:
        """A class."""

        attr = 1

        def method(self):
            def helper():
                return 1

            return helper()

        async def amethod(self):
            return 2

        @staticmethod
        def static():
            return 3

        class Inner:
            def deep(self):
                return 4

        if True:
            def conditional(self):
                return 5


    def factory():
        class Made:
            def m(self):
                async def inner():
                    return 6

                return inner

        return Made


    if functools:
        def in_if():
            pass
    else:
        def in_else():
            pass

    try:
        def in_try():
            pass
    except ImportError:
        def in_except():
            pass
    finally:
        def in_finally():
            pass

    with open(__file__) as fh:
        def in_with():
            pass

    for _ in range(1):
        while False:
            def in_loop():
                pass

    match 1:
        case 1:
            def in_match():
                pass
    '''
)

EXPECTED = [
    # kind, qualname, parent, start_line, end_line
    ("function", "top", None, 5, 8),
    ("async_function", "fetch", None, 11, 12),
    ("class", "Base", None, 15, 39),
    ("method", "Base.method", "Base", 20, 24),
    ("function", "Base.method.<locals>.helper", "Base.method", 21, 22),
    ("async_method", "Base.amethod", "Base", 26, 27),
    ("method", "Base.static", "Base", 29, 31),
    ("class", "Base.Inner", "Base", 33, 35),
    ("method", "Base.Inner.deep", "Base.Inner", 34, 35),
    ("method", "Base.conditional", "Base", 38, 39),
    ("function", "factory", None, 42, 50),
    ("class", "factory.<locals>.Made", "factory", 43, 48),
    ("method", "factory.<locals>.Made.m", "factory.<locals>.Made", 44, 48),
    ("async_function", "factory.<locals>.Made.m.<locals>.inner", "factory.<locals>.Made.m", 45, 46),
    ("function", "in_if", None, 54, 55),
    ("function", "in_else", None, 57, 58),
    ("function", "in_try", None, 61, 62),
    ("function", "in_except", None, 64, 65),
    ("function", "in_finally", None, 67, 68),
    ("function", "in_with", None, 71, 72),
    ("function", "in_loop", None, 76, 77),
    ("function", "in_match", None, 81, 82),
]


def by_qualname(snippets: list[Snippet]) -> dict[str, Snippet]:
    return {s.qualname: s for s in snippets}


def file_lines(text: str, start: int, end: int) -> str:
    """Lines start..end (1-based, inclusive) of a \\n-only text, each with its ending."""
    assert "\r" not in text
    lines = text.split("\n")
    return "".join(line + "\n" for line in lines[start - 1 : end])


def test_module_constants() -> None:
    assert LANGUAGE == "python"
    assert SUFFIXES == (".py",)
    assert sorted(py.__all__) == ["LANGUAGE", "SUFFIXES", "decode_source", "extract"]


def test_every_definition_found_once_with_kind_qualname_parent_and_lines() -> None:
    snippets = extract(SAMPLE.encode(), "pkg/sample.py")
    got = [(s.kind, s.qualname, s.parent, s.start_line, s.end_line) for s in snippets]
    assert got == EXPECTED  # also pins source order: an enclosing def comes before its nested ones
    assert {(s.path, s.language) for s in snippets} == {("pkg/sample.py", "python")}


def test_lines_in_expected_table_really_start_with_the_definition() -> None:
    # Guards the hand-written EXPECTED table against off-by-one mistakes of its own.
    lines = SAMPLE.split("\n")
    for kind, qualname, _parent, start, _end in EXPECTED:
        first = lines[start - 1].lstrip()
        assert first.startswith(("@", "def ", "async def ", "class ")), (qualname, first)
        assert qualname.rsplit(".", 1)[-1] in first or first.startswith("@"), (kind, qualname, first)


def _compiled_definitions(source: str) -> list[tuple[str, int]]:
    """(co_qualname, co_firstlineno) of every def/class body the compiler produced."""
    found = []
    stack = [compile(source, "<sample>", "exec", dont_inherit=True)]
    while stack:
        for const in stack.pop().co_consts:
            if isinstance(const, types.CodeType):
                stack.append(const)
                if not const.co_name.startswith("<"):  # <lambda>, <listcomp>, <genexpr>, ...
                    found.append((const.co_qualname, const.co_firstlineno))
    return sorted(found)


GLOBAL_AND_DECORATED = textwrap.dedent(
    """\
    import functools

    def outer():
        global promoted

        def promoted():
            pass

        @functools.lru_cache
        @functools.wraps(outer)
        def cached():
            return [lambda: 1 for _ in ()]

        return promoted, cached

    class K:
        def __private(self):
            class Local:
                pass
    """
)


@pytest.mark.parametrize("source", [SAMPLE, GLOBAL_AND_DECORATED], ids=["sample", "global_and_decorated"])
def test_qualnames_and_start_lines_match_what_the_compiler_assigns(source: str) -> None:
    snippets = extract(source.encode(), "x.py")
    assert sorted((s.qualname, s.start_line) for s in snippets) == _compiled_definitions(source)


def test_function_declared_global_in_its_enclosing_function_has_a_bare_qualname() -> None:
    snippets = by_qualname(extract(GLOBAL_AND_DECORATED.encode(), "x.py"))
    assert "promoted" in snippets  # as promoted.__qualname__, not "outer.<locals>.promoted"
    assert snippets["promoted"].kind == "function"
    # Private names are not mangled in qualnames (K.__private, not K._K__private).
    assert snippets["K.__private.<locals>.Local"].parent == "K.__private"


def test_lambdas_and_comprehensions_are_not_snippets() -> None:
    source = b"f = lambda: (lambda y: y)\ng = [x for x in ()]\n"
    assert extract(source, "x.py") == []


def test_code_is_exactly_the_files_lines_with_decorators_comments_and_blank_lines() -> None:
    source = textwrap.dedent(
        """\
        x = 1

        # leading comment: not part of the snippet
        @first  # why: it wraps
        @second(
            arg=1,
        )
        def decorated(a):  # trailing comment
            # body comment

            return a  # last line comment
        y = 2
        """
    )
    [snippet] = extract(source.encode(), "x.py")
    assert (snippet.start_line, snippet.end_line) == (4, 11)
    assert snippet.code == file_lines(source, 4, 11)
    assert snippet.code.startswith("@first  # why: it wraps\n")
    assert snippet.code.endswith("    return a  # last line comment\n")
    assert snippet.signature == "def decorated(a)"  # decorators are not part of the signature


def test_methods_keep_their_indentation() -> None:
    source = "class C:\n    def m(self):\n        return 1\n"
    snippets = by_qualname(extract(source.encode(), "x.py"))
    assert snippets["C.m"].code == "    def m(self):\n        return 1\n"
    assert snippets["C"].code == source


def test_last_line_without_newline_has_no_line_ending() -> None:
    [snippet] = extract(b"def f():\n    return 1", "x.py")
    assert snippet.code == "def f():\n    return 1"


def test_decorator_whose_expression_starts_below_the_at_sign_starts_at_the_at_line() -> None:
    source = "@(\n    deco\n)\ndef f():\n    pass\n"
    [snippet] = extract(source.encode(), "x.py")
    assert snippet.start_line == 1
    assert snippet.code == source


def test_crlf_file_keeps_crlf_in_code_and_counts_lines_right() -> None:
    source = b"import os\r\n\r\n\r\nclass C:\r\n    # note\r\n    def m(self):\r\n        return 1\r\n"
    snippets = by_qualname(extract(source, "x.py"))
    assert (snippets["C"].start_line, snippets["C"].end_line) == (4, 7)
    assert (snippets["C.m"].start_line, snippets["C.m"].end_line) == (6, 7)
    assert snippets["C.m"].code == "    def m(self):\r\n        return 1\r\n"
    assert snippets["C"].code == "class C:\r\n    # note\r\n    def m(self):\r\n        return 1\r\n"


def test_lone_cr_and_mixed_line_endings_count_as_python_counts_them() -> None:
    source = b"x = 1\rdef f():\r\n    return 1\ndef g():\r    pass\r"
    snippets = by_qualname(extract(source, "x.py"))
    assert (snippets["f"].start_line, snippets["f"].end_line) == (2, 3)
    assert snippets["f"].code == "def f():\r\n    return 1\n"
    assert (snippets["g"].start_line, snippets["g"].end_line) == (4, 5)
    assert snippets["g"].code == "def g():\r    pass\r"


def test_form_feed_and_other_unicode_line_breaks_do_not_shift_lines() -> None:
    # str.splitlines() would break at \x0c, \x1c, \x85 and \u2028; Python's tokenizer does not.
    source = "\x0c\ns = '\x1c\x85\u2028'  # \x0b\n\x0cdef f():\n    '''Doc \x0c here.'''\n    return 1\n"
    [snippet] = extract(source.encode("utf-8"), "x.py")
    assert (snippet.start_line, snippet.end_line) == (3, 5)
    assert snippet.code == "\x0cdef f():\n    '''Doc \x0c here.'''\n    return 1\n"


def test_latin1_cookie_is_honoured_and_non_ascii_docstring_comes_out_right() -> None:
    source = '# -*- coding: latin-1 -*-\ndef café(x=\'ü\'):\n    """Crème brûlée."""\n'
    data = source.encode("latin-1")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # the test really exercises the cookie
    [snippet] = extract(data, "x.py")
    assert snippet.docstring == "Crème brûlée."
    assert snippet.qualname == "café"
    assert snippet.signature == "def café(x='ü')"
    assert snippet.start_line == 2


def test_utf8_bom_is_dropped_and_lines_are_unchanged() -> None:
    data = b"\xef\xbb\xbfdef f():\n    return '\xc3\xa9'\n"
    assert decode_source(data) == "def f():\n    return 'é'\n"
    [snippet] = extract(data, "x.py")
    assert snippet.start_line == 1
    assert snippet.code == "def f():\n    return 'é'\n"
    assert not snippet.code.startswith("\ufeff")


def test_non_ascii_before_and_inside_the_header_does_not_shift_signature_columns() -> None:
    # AST columns count UTF-8 bytes; signatures must still be cut at the right characters.
    source = "class Ünïcode:\n    def naïve(self, ß='ø', *, ñ: 'ü' = 1) -> 'é':  # ç: x\n        return ß\n"
    snippets = by_qualname(extract(source.encode(), "x.py"))
    assert snippets["Ünïcode"].signature == "class Ünïcode"
    assert snippets["Ünïcode.naïve"].signature == "def naïve(self, ß='ø', *, ñ: 'ü' = 1) -> 'é'"


@pytest.mark.parametrize(
    ("source", "signature"),
    [
        ("def f(a, b=1) -> int:\n    pass\n", "def f(a, b=1) -> int"),
        ("async def g(*args, **kw):\n    pass\n", "async def g(*args, **kw)"),
        ("class Foo(Base, metaclass=M):\n    pass\n", "class Foo(Base, metaclass=M)"),
        ("class Bar:\n    pass\n", "class Bar"),
        ("class Bar():\n    pass\n", "class Bar()"),
        ("def f(x={'a': 1}, y=lambda: 2):\n    pass\n", "def f(x={'a': 1}, y=lambda: 2)"),
        ("def f(s='a:b # c', t=\"#:\"):\n    pass\n", "def f(s='a:b # c', t=\"#:\")"),
        ("def f(x: 'int:str' = d[1:2]) -> 'a:b':\n    pass\n", "def f(x: 'int:str' = d[1:2]) -> 'a:b'"),
        ("def f(\n    a,  # first: a\n    b: int = 2,\n):\n    pass\n", "def f( a, b: int = 2, )"),
        ("def f(a) -> lambda: 1:\n    pass\n", "def f(a) -> lambda: 1"),
        ("def f(a, /, b, *, c):\n    pass\n", "def f(a, /, b, *, c)"),
        ("def f(x=(y := 1)):\n    pass\n", "def f(x=(y := 1))"),
        ("def f() \\\n  -> int:\n    pass\n", "def f() -> int"),
        ("def f(s='''two\n   spaced  lines'''):\n    pass\n", "def f(s='''two\n   spaced  lines''')"),
        ("def f(s='it\\'s: # here'):\n    pass\n", "def f(s='it\\'s: # here')"),
        ("def f(x=f'{1:>3}'):\n    pass\n", "def f(x=f'{1:>3}')"),
        ("class A(B, # base: x\n        **kw):  # tail: y\n    pass\n", "class A(B, **kw)"),
        ("def f(a):  # the header ends here: not later\n    pass\n", "def f(a)"),
        ("def f():  # comment with 'quote\n    pass\n", "def f()"),
    ],
    ids=lambda value: value.split("\n")[0][:40] if isinstance(value, str) else None,
)
def test_signature_of_tricky_headers(source: str, signature: str) -> None:
    [snippet] = extract(source.encode(), "x.py")
    assert snippet.signature == signature


def test_one_line_def_and_class_with_body_on_the_header_line() -> None:
    source = "def f(): return {'a': 1}\nclass C: x = 1; y = 2\n"
    snippets = by_qualname(extract(source.encode(), "x.py"))
    assert snippets["f"].signature == "def f()"
    assert (snippets["f"].start_line, snippets["f"].end_line) == (1, 1)
    assert snippets["f"].code == "def f(): return {'a': 1}\n"
    assert snippets["C"].signature == "class C"
    assert snippets["C"].code == "class C: x = 1; y = 2\n"


def test_one_line_def_with_nested_one_line_def_body() -> None:
    source = "def outer():\n    def inner(): return 1\n    return inner\n"
    snippets = by_qualname(extract(source.encode(), "x.py"))
    assert snippets["outer.<locals>.inner"].code == "    def inner(): return 1\n"


def test_docstrings_are_cleaned_and_absent_ones_are_none() -> None:
    source = textwrap.dedent(
        '''\
        def f():
            """Summary.

                Detail.
                    More indented.
            """

        def g():
            x = "not a docstring"

        class C:
            "Single quoted."
        '''
    )
    snippets = by_qualname(extract(source.encode(), "x.py"))
    assert snippets["f"].docstring == "Summary.\n\nDetail.\n    More indented."
    assert snippets["g"].docstring is None
    assert snippets["C"].docstring == "Single quoted."


def test_functions_inside_if_and_try_at_module_level_are_module_level() -> None:
    source = textwrap.dedent(
        """\
        import sys
        if sys.platform == "win32":
            def impl():
                pass
        else:
            try:
                def impl():
                    pass
            except Exception:
                pass
        """
    )
    snippets = extract(source.encode(), "x.py")
    assert [(s.kind, s.qualname, s.parent, s.start_line) for s in snippets] == [
        ("function", "impl", None, 3),
        ("function", "impl", None, 7),
    ]
    assert snippets[0].id != snippets[1].id  # different indentation, different code


@pytest.mark.parametrize("data", [b"", b"\n\n", b"# only a comment\n", b"\xef\xbb\xbf", b"x = 1\n"])
def test_file_without_definitions_yields_nothing(data: bytes) -> None:
    assert extract(data, "x.py") == []


def test_deepest_legal_nesting_is_extracted_with_full_qualnames() -> None:
    depth = 90  # the tokenizer allows at most 100 indentation levels
    source = "".join("    " * i + f"def f{i}():\n" for i in range(depth)) + "    " * depth + "pass\n"
    snippets = extract(source.encode(), "x.py")
    assert len(snippets) == depth
    assert snippets[-1].qualname == ".<locals>.".join(f"f{i}" for i in range(depth))
    assert [s.start_line for s in snippets] == list(range(1, depth + 1))


# --- errors ------------------------------------------------------------------------------------------


def test_syntax_error_reports_reason_and_line() -> None:
    with pytest.raises(SourceError) as info:
        extract(b"def ok():\n    pass\n\ndef broken(:\n    pass\n", "x.py")
    assert info.value.reason == "syntax_error"
    assert info.value.detail.startswith("line 4: ")


def test_indentation_error_is_a_syntax_error() -> None:
    with pytest.raises(SourceError) as info:
        extract(b"def f():\nreturn 1\n", "x.py")
    assert info.value.reason == "syntax_error"
    assert info.value.detail.startswith("line 2: ")


def test_nul_bytes_are_invalid_source() -> None:
    with pytest.raises(SourceError) as info:
        extract(b"def f():\n    return 1\x00\n", "x.py")
    assert info.value.reason == "invalid_source"


DEEP_SOURCES = {
    "200k_open_parens": b"(" * 200_000,
    "100k_unary_minus": b"x = " + b"-" * 100_000 + b"1\n",
    "100k_attribute_chain": b"x = a" + b".b" * 100_000 + b"\n",
    "100k_additions": b"x = " + b"1 + " * 100_000 + b"1\n",
    "101_nested_defs": "".join("    " * i + f"def f{i}():\n" for i in range(101)).encode()
    + b"    " * 101
    + b"pass\n",
}


@pytest.mark.parametrize("data", DEEP_SOURCES.values(), ids=DEEP_SOURCES.keys())
def test_deeply_nested_code_is_a_source_error_not_a_crash(data: bytes) -> None:
    # Which reason depends on where CPython gives up (tokenizer, parser stack, AST conversion): on
    # 3.11, parentheses and indentation hit tokenizer limits (SyntaxError), the others raise
    # MemoryError or RecursionError inside ast.parse.
    with pytest.raises(SourceError) as info:
        extract(data, "x.py")
    assert info.value.reason in {"too_deeply_nested", "syntax_error"}


def test_parser_recursion_and_memory_errors_map_to_too_deeply_nested() -> None:
    for data in (DEEP_SOURCES["100k_unary_minus"], DEEP_SOURCES["100k_attribute_chain"]):
        with pytest.raises(SourceError) as info:
            extract(data, "x.py")
        assert info.value.reason == "too_deeply_nested"


def test_extraction_still_works_after_a_too_deeply_nested_file() -> None:
    with pytest.raises(SourceError):
        extract(DEEP_SOURCES["100k_attribute_chain"], "x.py")
    assert [s.qualname for s in extract(b"def f():\n    pass\n", "x.py")] == ["f"]


@pytest.mark.parametrize(
    "data",
    [
        b"# coding: nonsense\ndef f():\n    pass\n",
        b"def f():\n    return '\xff\xfe'\n",  # not UTF-8 and no cookie
        b"\xef\xbb\xbf# coding: latin-1\nx = 1\n",  # BOM contradicts the cookie
        b"# -*- coding: ascii -*-\nx = '\xc3\xa9'\n",  # not valid in the declared encoding
    ],
    ids=["unknown_codec", "invalid_utf8", "bom_vs_cookie", "outside_declared_codec"],
)
def test_undecodable_source_is_decode_error(data: bytes) -> None:
    with pytest.raises(SourceError) as info:
        extract(data, "x.py")
    assert info.value.reason == "decode_error"
    assert info.value.detail
    with pytest.raises(SourceError) as info:
        decode_source(data)
    assert info.value.reason == "decode_error"


# --- use from a pool ------------------------------------------------------------------------------


def test_extract_results_and_errors_survive_pickling_for_a_process_pool() -> None:
    assert pickle.loads(pickle.dumps(extract)) is extract
    snippets = extract(SAMPLE.encode(), "pkg/sample.py")
    again = pickle.loads(pickle.dumps(snippets))
    assert again == snippets
    assert [s.id for s in again] == [s.id for s in snippets]
    with pytest.raises(SourceError) as info:
        extract(b"def (:\n", "x.py")
    error = pickle.loads(pickle.dumps(info.value))
    assert (error.reason, error.detail) == (info.value.reason, info.value.detail)


def test_extract_is_deterministic_and_ids_depend_on_code() -> None:
    first = extract(SAMPLE.encode(), "a.py")
    second = extract(SAMPLE.encode(), "b/other.py")
    assert [s.id for s in first] == [s.id for s in second]  # id is language + code, not path
    assert [s.path for s in second] == ["b/other.py"] * len(second)
    assert len({s.id for s in first}) == len(first)


# --- long files, parsed a piece at a time ------------------------------------------------------------

# Lines at column 0 that look like cut points but are not statement boundaries: inside a string, inside
# brackets (a matrix product continued on a line of its own), between a decorator and its function.
LONG_PARTS = [
    '"""Module docstring.\n\ndef not_a_function():\n    pass\n"""\nimport functools\n',
    "x = (a\n@ b)\n",
    "@functools.lru_cache(\n    maxsize=None,\n)\ndef cached(n):\n    return n\n",
    "@staticmethod\ndef decorated():\n    pass\n",
    "s = '''\nclass NotAClass:\n    pass\n'''\n",
    "class Thing:\n    '''A class.'''\n\n    def method(self):\n        def inner():\n            return 1\n"
    "        return inner\n",
    "async def fetch(url):\n    return url\n",
    "if True:\n    def conditional():\n        pass\nelse:\n    def conditional():\n        pass\n",
    "def caf\u00e9():\n    return '\u00e9t\u00e9'\n",
    # a class is cut in its body too, with the same traps one level down, and code after it
    "class Big(Base, metaclass=Meta):\n"
    '    """Doc.\n\n    def not_a_method(self):\n        pass\n    """\n\n'
    "    global counter\n"
    "    x = (a\n    @ b)\n"
    "    @property\n    def one(self):\n        return 1\n\n"
    "    @functools.lru_cache(\n        maxsize=None,\n    )\n    @staticmethod\n    def two():\n        return 2\n\n"
    "    class Inner:\n        def three(self):\n            def four():\n                pass\n\n"
    "            return four\n\n"
    "    s = '''\n    def not_a_method_either(self):\n        pass\n    '''\n"
    "    async def five(self):\n        return 5\n"
    "    def counter(self):\n        return 0\n"  # declared global above: qualname "counter"
    "counter = 0\n"
    "after = Big()\n"
    "if after:\n    def made_after():\n        pass\n",
    # trivial-looking first statements (the class is not trivial: it has a method)
    'class Small:\n    """Doc."""\n    pass\n\n    def method(self):\n        pass\n',
    # cuts at the class body's indentation that are in the module's `if` after the class, not in the class
    "class Tiny:\n    x = 1\nif Tiny:\n    y = 2\n    def made_after_tiny():\n        pass\n",
    'class Tiny2:\n    """Doc."""\n    def method(self):\n        pass\n'
    "if Tiny2:\n    y = 1\n    def made_after_tiny2():\n        pass\n",
]


def _long_module(repeat: int = 40, newline: str = "\n") -> bytes:
    """`repeat` times each of LONG_PARTS; "mixed": a lone CR for every other line break."""
    text = "".join(f"# part {i}\n{part}\n\n" for i in range(repeat) for part in LONG_PARTS)
    if newline == "mixed":
        lines = text.split("\n")
        return "".join(line + ("\r" if n % 2 else "\n") for n, line in enumerate(lines[:-1])).encode()
    return text.replace("\n", newline).encode()


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r", "mixed"], ids=["lf", "crlf", "cr", "mixed"])
@pytest.mark.parametrize("piece", [1, 64, 500, 4096])
def test_a_long_file_cut_into_pieces_yields_exactly_the_whole_files_snippets(
    piece: int, newline: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _long_module(newline=newline)
    monkeypatch.setattr(py, "_PIECE", 1 << 40)
    whole = extract(data, "long.py")
    monkeypatch.setattr(py, "_PIECE", piece)
    pieces = extract(data, "long.py")
    assert pieces == whole
    assert [(s.id, s.trivial) for s in pieces] == [(s.id, s.trivial) for s in whole]
    assert len(whole) == 40 * 25
    assert not any(s.trivial for s in whole if s.kind == "class")


def test_a_long_file_is_parsed_in_pieces_even_inside_a_long_class(monkeypatch: pytest.MonkeyPatch) -> None:
    # What bounds memory: no parse holds much more than a piece, however long the file or its classes.
    methods = "".join(f"    def method_{i}(self, x):\n        return x + {i}\n\n" for i in range(400))
    functions = "".join(f"def function_{i}(x):\n    return x - {i}\n\n\n" for i in range(400))
    data = f"import os\n\n\nclass Long:\n{methods}\n{functions}".encode()
    monkeypatch.setattr(py, "_PIECE", 1000)
    parsed: list[int] = []
    parse = ast.parse
    monkeypatch.setattr(
        ast,
        "parse",
        lambda source, *a, **k: parsed.append(len(source.lstrip("\n"))) or parse(source, *a, **k),
    )
    snippets = extract(data, "long.py")
    assert len(data) > 30_000 and max(parsed) < 2_000
    assert [s.qualname for s in snippets] == [
        "Long",
        *(f"Long.method_{i}" for i in range(400)),
        *(f"function_{i}" for i in range(400)),
    ]
    assert snippets[0].end_line == 3 + 3 * 400 and snippets[0].code.endswith("return x + 399\n")


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_a_long_file_with_a_syntax_error_fails_as_the_whole_file_does(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _long_module(10).decode()
    broken = "def broken(:\n    pass\n"
    at = {"start": 0, "middle": good.index("# part 5\n"), "end": len(good)}[where]
    data = (good[:at] + broken + good[at:]).encode()
    errors = []
    for piece in (1 << 40, 64):
        monkeypatch.setattr(py, "_PIECE", piece)
        with pytest.raises(SourceError) as info:
            extract(data, "long.py")
        errors.append((info.value.reason, info.value.detail))
    assert errors[0] == errors[1]
    assert errors[0][0] == "syntax_error"


def test_the_garbage_collector_is_running_again_after_extraction_even_on_error() -> None:
    import gc

    assert gc.isenabled()
    extract(b"def f():\n    return 1\n", "ok.py")
    assert gc.isenabled()
    with pytest.raises(SourceError):
        extract(b"def broken(:\n", "bad.py")
    assert gc.isenabled()
