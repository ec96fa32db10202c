"""The documentation extractor: which sections Markdown, reStructuredText and notebooks are cut into, their
names, exact lines and text, how long sections are split, and its errors."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import orjson
import pytest

from stream.errors import SourceError
from stream.extract.docs import LANGUAGES, PREAMBLE, extract
from stream.model import Snippet

FIXTURES = Path(__file__).parent / "fixtures" / "polyglot"


def md(text: str, **kwargs: int) -> list[Snippet]:
    return extract(text.encode(), "doc.md", "markdown", **kwargs)


def rst(text: str, **kwargs: int) -> list[Snippet]:
    return extract(text.encode(), "doc.rst", "rst", **kwargs)


def spans(snippets: list[Snippet]) -> list[tuple[str, int, int]]:
    return [(s.qualname, s.start_line, s.end_line) for s in snippets]


def lines_of(text: str, first: int, last: int) -> str:
    """Lines first..last (1-based, inclusive) of `text`, endings kept: computed independently of the
    extractor, with a regex that keeps each line's \\r\\n, \\r or \\n."""
    lines = re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text)
    return "".join(lines[first - 1 : last])


def assert_exact_text(snippets: list[Snippet], text: str) -> None:
    for s in snippets:
        assert s.code == lines_of(text, s.start_line, s.end_line), s.qualname


# --- the fixtures --------------------------------------------------------------------------------------


def test_languages_and_suffixes() -> None:
    assert LANGUAGES == {"markdown": (".md", ".markdown", ".mdx"), "rst": (".rst",), "ipynb": (".ipynb",)}
    assert PREAMBLE == "(preamble)"


README_SECTIONS = [
    # the badges between HTML comments, before the first heading
    ("(preamble)", 1, 3),
    # setext level 1; "Installation" has no text of its own: no snippet, but it names its children
    ("Polyglot", 5, 9),
    ("Polyglot > Installation > From PyPI", 13, 19),  # a '#' line inside the ``` fence is no heading
    ("Polyglot > Installation > From source", 21, 28),  # nor one inside a ~~~ fence
    # "Usage" is a setext level 2 heading; the ```` fence holds a ``` line and a '##' line
    ("Polyglot > Usage > Quick start", 33, 43),
    ("Polyglot > Usage > Plugins", 45, 55),  # an HTML comment with '#', and a thematic break after a blank
    ("Polyglot > Configuration", 57, 88),
    ("Polyglot > FAQ > Does it run on Windows?", 92, 94),
    ("Polyglot > FAQ > Does it run on Windows? (2)", 96, 98),  # duplicate sibling
    # "Changelog" is empty and skipped
    ("Polyglot > License", 102, 104),
]


def test_readme_fixture_sections_names_and_lines() -> None:
    data = (FIXTURES / "README.md").read_bytes()
    snippets = extract(data, "README.md", "markdown")
    assert spans(snippets) == README_SECTIONS
    assert_exact_text(snippets, data.decode())
    assert {s.kind for s in snippets} == {"doc_section"}
    assert {s.language for s in snippets} == {"markdown"}
    assert {s.path for s in snippets} == {"README.md"}
    assert all(s.docstring is None for s in snippets)
    by_name = {s.qualname: s for s in snippets}
    assert [(s.signature, s.parent) for s in snippets[:3]] == [
        ("", None),
        ("Polyglot", None),
        ("From PyPI", "Polyglot > Installation"),
    ]
    dup = by_name["Polyglot > FAQ > Does it run on Windows? (2)"]
    assert (dup.signature, dup.parent) == ("Does it run on Windows?", "Polyglot > FAQ")
    assert by_name["Polyglot > Usage > Quick start"].code.startswith("### Quick start\n\n````python\n")
    assert by_name["Polyglot > License"].code == "## License\n\nMIT\n"


def test_readme_fixture_long_section_is_cut_at_paragraphs_around_the_table_and_code() -> None:
    data = (FIXTURES / "README.md").read_bytes()
    snippets = extract(data, "README.md", "markdown", max_chars=700)
    assert (
        spans(snippets)
        == [
            *README_SECTIONS[:6],
            ("Polyglot > Configuration (part 1)", 57, 66),  # heading and two paragraphs
            (
                "Polyglot > Configuration (part 2)",
                67,
                83,
            ),  # the table and the fenced TOML (blank line inside)
            ("Polyglot > Configuration (part 3)", 84, 88),
            *README_SECTIONS[7:],
        ]
    )
    parts = [s for s in snippets if s.qualname.startswith("Polyglot > Configuration")]
    whole = extract(data, "README.md", "markdown")[6]
    assert "".join(p.code for p in parts) == whole.code
    assert all(len(p.code) <= 700 for p in parts)
    assert {(p.signature, p.parent) for p in parts} == {("Configuration", "Polyglot")}


RST_SECTIONS = [
    ("(preamble)", 1, 1),  # ":orphan:"; the `.. _guide:` target below it belongs to the title
    ("Polyglot guide", 5, 12),  # '=' overlined: level 1
    ("Polyglot guide > Getting started", 14, 23),  # '=' underlined only: another style, level 2
    ("Polyglot guide > Getting started > Configuration", 25, 36),
    ("Polyglot guide > Getting started > Configuration > Options", 38, 45),  # ends before `.. _running:`
    ("Polyglot guide > Running", 49, 61),  # a code-block, and a transition line
    ("Polyglot guide > Running > Examples", 63, 66),
    ("Polyglot guide > Running > Examples (2)", 68, 71),
    # "Troubleshooting" has only a subsection
    ("Polyglot guide > Troubleshooting > Examples", 76, 79),
]


def test_rst_guide_fixture_sections_levels_and_lines() -> None:
    data = (FIXTURES / "docs" / "guide.rst").read_bytes()
    snippets = extract(data, "docs/guide.rst", "rst")
    assert spans(snippets) == RST_SECTIONS
    assert_exact_text(snippets, data.decode())
    assert {s.language for s in snippets} == {"rst"}
    started = snippets[2]
    assert "Not a title\n    ===========\n" in started.code  # inside the literal block after '::'
    assert [(s.signature, s.parent) for s in snippets[1:3]] == [
        ("Polyglot guide", None),
        ("Getting started", "Polyglot guide"),
    ]
    assert snippets[-1].code.endswith("their parent differs.\n")


# --- Markdown headings ---------------------------------------------------------------------------------


def test_atx_headings_nest_by_level_and_lose_their_marks() -> None:
    text = "# A #\n\na\n\n## B ##\nb\n### C\nc\n## D\nd\n# E\ne\n"
    snippets = md(text)
    assert spans(snippets) == [
        ("A", 1, 3),
        ("A > B", 5, 6),
        ("A > B > C", 7, 8),
        ("A > D", 9, 10),
        ("E", 11, 12),
    ]
    assert [(s.signature, s.parent) for s in snippets] == [
        ("A", None),
        ("B", "A"),
        ("C", "A > B"),
        ("D", "A"),
        ("E", None),
    ]


def test_a_skipped_level_nests_under_the_nearest_higher_heading() -> None:
    assert spans(md("# A\na\n### C\nc\n## B\nb\n")) == [("A", 1, 2), ("A > C", 3, 4), ("A > B", 5, 6)]


@pytest.mark.parametrize(
    ("line", "title"),
    [
        ("# Title", "Title"),
        ("   ### Indented three", "Indented three"),
        ("## Closing hashes ###   ", "Closing hashes"),
        ("## Hash# inside#", "Hash# inside#"),  # a closing sequence needs a space before it
        ("## `code()` and *emphasis*", "`code()` and *emphasis*"),  # inline markup kept
        ("#\tTab", "Tab"),
        ("#", "(untitled)"),
        ("## ##", "(untitled)"),
    ],
)
def test_atx_heading_titles(line: str, title: str) -> None:
    (snippet,) = md(f"{line}\nbody\n")
    assert (snippet.qualname, snippet.signature) == (title, title if title != "(untitled)" else "")


@pytest.mark.parametrize(
    "line",
    ["#NoSpace", "####### seven", "    # indented four", "\\# escaped", "- # in a list item", "> # quoted"],
)
def test_lines_that_are_not_atx_headings(line: str) -> None:
    assert spans(md(f"# Top\n{line}\ntext\n")) == [("Top", 1, 3)]


def test_setext_headings_and_thematic_breaks() -> None:
    text = (
        "Title\n"  # 1
        "=====\n"  # 2  setext level 1
        "intro\n"  # 3
        "\n"  # 4
        "Sub\n"  # 5
        "---\n"  # 6  setext level 2: a paragraph line above
        "text\n"  # 7
        "\n"  # 8
        "---\n"  # 9  thematic break: a blank line above
        "\n"  # 10
        "more\n"  # 11
        "***\n"  # 12 '***' is never an underline
        "x\n"  # 13
        "\n"  # 14
        "===\n"  # 15 after a blank line: paragraph text
        "\n"  # 16
        "Two line\n"  # 17
        "heading\n"  # 18
        "-\n"  # 19 one '-' is enough; the whole paragraph is the heading
        "end\n"  # 20
    )
    snippets = md(text)
    assert spans(snippets) == [("Title", 1, 3), ("Title > Sub", 5, 15), ("Title > Two line heading", 17, 20)]
    assert snippets[2].signature == "Two line heading"


def test_underline_after_list_item_or_quote_is_a_thematic_break_not_a_heading() -> None:
    text = "# T\n\n- item\n---\n\n> quote\n---\n\n- item\nlazy continuation\n---\nend\n"
    assert spans(md(text)) == [("T", 1, 12)]


def test_underline_after_indented_code_is_not_a_heading() -> None:
    assert spans(md("# T\n\n    code\n---\n")) == [("T", 1, 4)]


def test_ordered_list_not_starting_at_one_continues_the_paragraph() -> None:
    # "2019." cannot interrupt a paragraph, so "Text 2019. ..." is one paragraph and the underline heads it.
    assert spans(md("Text\n2019. was a year\n---\nx\n")) == [("Text 2019. was a year", 1, 4)]


# --- Markdown blocks that hide headings ----------------------------------------------------------------


def test_backtick_and_tilde_fences_hide_hash_lines_and_underlines() -> None:
    text = (
        "# A\n"  # 1
        "```python\n"  # 2
        "# comment\n"  # 3
        "text\n"  # 4
        "---\n"  # 5
        "```\n"  # 6
        "~~~ {.sh}\n"  # 7
        "# another\n"  # 8
        "~~~\n"  # 9
        "# B\n"  # 10
        "b\n"  # 11
    )
    assert spans(md(text)) == [("A", 1, 9), ("B", 10, 11)]


def test_fence_closes_only_with_the_same_character_and_at_least_its_length() -> None:
    text = (
        "# A\n"  # 1
        "`````md\n"  # 2
        "```\n"  # 3  shorter: content
        "~~~~~\n"  # 4  other character: content
        "# inside\n"  # 5
        "``````  \n"  # 6  longer, trailing spaces: closes
        "# B\n"  # 7
        "b\n"  # 8
    )
    assert spans(md(text)) == [("A", 1, 6), ("B", 7, 8)]


def test_closing_fence_with_text_after_it_does_not_close() -> None:
    assert spans(md("# A\n```\n``` not closing\n# in code\n```\n# B\nb\n")) == [("A", 1, 5), ("B", 6, 7)]


def test_unclosed_fence_runs_to_the_end_of_the_file() -> None:
    assert spans(md("# A\n```\n# not a heading\n\n## nor this\n")) == [("A", 1, 5)]


def test_backtick_fence_with_a_backtick_in_its_info_string_is_not_a_fence() -> None:
    # "```a`b" is inline code, so "# B" is a heading.
    assert spans(md("# A\n```a`b\n# B\nb\n")) == [("A", 1, 2), ("B", 3, 4)]


def test_fence_indented_in_a_list_item_still_hides_its_lines() -> None:
    assert spans(md("# A\n- step:\n  ```sh\n  # comment\n  ```\n# B\nb\n")) == [("A", 1, 5), ("B", 6, 7)]


def test_html_comments_and_raw_html_blocks_hide_headings() -> None:
    text = (
        "# A\n"  # 1
        "<!--\n"  # 2
        "# hidden\n"  # 3
        "-->\n"  # 4
        "<!-- one line --> text\n"  # 5
        "<pre>\n"  # 6
        "# hidden\n"  # 7
        "\n"  # 8
        "# still hidden: <pre> ends at its closing tag\n"  # 9
        "</pre>\n"  # 10
        "<div>\n"  # 11
        "# hidden\n"  # 12
        "</div>\n"  # 13
        "\n"  # 14
        "# B\n"  # 15
        "b\n"  # 16
    )
    assert spans(md(text)) == [("A", 1, 13), ("B", 15, 16)]


def test_heading_after_a_blank_line_inside_details_is_a_heading() -> None:
    # A block-level tag's HTML block ends at a blank line; Markdown resumes inside <details>.
    text = "# A\n<details>\n<summary>More</summary>\n\n## Inside\ntext\n</details>\n"
    assert spans(md(text)) == [("A", 1, 3), ("A > Inside", 5, 7)]


# --- preamble, front matter, empty sections, duplicates ------------------------------------------------


def test_preamble_starts_at_its_first_non_blank_line() -> None:
    snippets = md("\n\nIntro\ntext\n\n# A\na\n")
    assert spans(snippets) == [("(preamble)", 3, 4), ("A", 6, 7)]
    assert (snippets[0].signature, snippets[0].parent, snippets[0].code) == ("", None, "Intro\ntext\n")


def test_blank_preamble_is_no_snippet() -> None:
    assert spans(md("\n  \n\t\n# A\na\n")) == [("A", 4, 5)]


def test_file_without_headings_is_one_preamble_section() -> None:
    assert spans(md("just\n\ntext")) == [("(preamble)", 1, 3)]


@pytest.mark.parametrize("data", [b"", b"\n\n", b"   \r\n", b"\xef\xbb\xbf"])
def test_empty_or_blank_file_yields_nothing(data: bytes) -> None:
    assert extract(data, "x.md", "markdown") == []
    assert extract(data, "x.rst", "rst") == []


def test_yaml_front_matter_is_skipped() -> None:
    text = "---\ntitle: Doc\ntags: [a]\n# not a heading\n---\nIntro\n# A\na\n"
    snippets = md(text)
    assert spans(snippets) == [("(preamble)", 6, 6), ("A", 7, 8)]
    assert snippets[0].code == "Intro\n"


def test_front_matter_alone_yields_no_preamble() -> None:
    assert spans(md("---\ntitle: x\n...\n\n# A\na\n")) == [("A", 5, 6)]


def test_toml_front_matter_is_skipped() -> None:
    assert spans(md('+++\ntitle = "x"\n+++\n# A\na\n')) == [("A", 4, 5)]


def test_leading_thematic_break_is_not_front_matter() -> None:
    # The line after the opening '---' is no YAML key, so nothing is dropped.
    text = "---\nSome prose, no key.\n\nMore\n---\nbody\n# A\na\n"
    assert spans(md(text)) == [("(preamble)", 1, 2), ("More", 4, 6), ("A", 7, 8)]


def test_unclosed_front_matter_is_not_front_matter() -> None:
    assert spans(md("---\ntitle: x\n# A\na\n")) == [("(preamble)", 1, 2), ("A", 3, 4)]


def test_front_matter_is_only_recognised_on_the_first_line() -> None:
    # Here '---' is a thematic break (the preamble) and "title: x" a setext heading with no text.
    assert spans(md("\n---\ntitle: x\n---\n# A\na\n")) == [("(preamble)", 2, 2), ("A", 5, 6)]


def test_empty_sections_are_skipped_but_name_their_children() -> None:
    text = "# A\n\n## B\n\n\n### C\nc\n## D\n   \n# E\n"
    assert spans(md(text)) == [("A > B > C", 6, 7)]


def test_trailing_blank_lines_are_not_part_of_a_section() -> None:
    snippets = md("# A\na\n\n\n# B\nb\n \n\n")
    assert spans(snippets) == [("A", 1, 2), ("B", 5, 6)]
    assert [s.code for s in snippets] == ["# A\na\n", "# B\nb\n"]


def test_duplicate_headings_get_numbers_and_their_children_follow() -> None:
    text = "# A\n## X\n1\n## X\n2\n### Y\ny\n## X\n3\n# A\nz\n## X\n4\n"
    assert spans(md(text)) == [
        ("A > X", 2, 3),
        ("A > X (2)", 4, 5),
        ("A > X (2) > Y", 6, 7),
        ("A > X (3)", 8, 9),
        ("A (2)", 10, 11),
        ("A (2) > X", 12, 13),  # another parent: no clash
    ]


def test_numbering_skips_a_name_a_heading_already_took() -> None:
    text = "# X (2)\na\n# X\nb\n# X\nc\n# X\nd\n"
    names = [s.qualname for s in md(text)]
    assert names == ["X (2)", "X", "X (3)", "X (4)"]


def test_a_heading_named_like_the_preamble_does_not_clash_with_it() -> None:
    assert [s.qualname for s in md("intro\n# (preamble)\nx\n")] == ["(preamble)", "(preamble) (2)"]


def test_qualnames_are_unique_in_every_test_document() -> None:
    for path, language in (("README.md", "markdown"), ("docs/guide.rst", "rst")):
        for max_chars in (6000, 300, 50):
            names = [
                s.qualname
                for s in extract((FIXTURES / path).read_bytes(), path, language, max_chars=max_chars)
            ]
            assert len(names) == len(set(names)), (path, max_chars)


# --- exact text: line endings, encodings ---------------------------------------------------------------


def test_crlf_is_kept_and_lines_count_right() -> None:
    text = "Intro\r\n\r\n# A\r\n\r\na\r\n\r\nTitle\r\n-----\r\nb\r\n```\r\n# x\r\n```\r\n"
    snippets = md(text)
    assert spans(snippets) == [("(preamble)", 1, 1), ("A", 3, 5), ("A > Title", 7, 12)]
    assert [s.code for s in snippets] == [
        "Intro\r\n",
        "# A\r\n\r\na\r\n",
        "Title\r\n-----\r\nb\r\n```\r\n# x\r\n```\r\n",
    ]


def test_lone_cr_and_mixed_endings_are_line_breaks() -> None:
    text = "# A\ra\r\n# B\nb\r"
    snippets = md(text)
    assert spans(snippets) == [("A", 1, 2), ("B", 3, 4)]
    assert [s.code for s in snippets] == ["# A\ra\r\n", "# B\nb\r"]


def test_form_feed_and_unicode_line_separators_do_not_break_lines() -> None:
    text = "# A\na\x0cb\u2028c\n# B\nb\n"
    assert spans(md(text)) == [("A", 1, 2), ("B", 3, 4)]


def test_last_line_without_newline() -> None:
    (snippet,) = md("# A\nlast")
    assert (snippet.end_line, snippet.code) == (2, "# A\nlast")


def test_utf8_bom_is_dropped_and_non_ascii_text_kept() -> None:
    snippets = extract("\ufeff# Überblick\nÄrger ✓\n".encode(), "x.md", "markdown")
    assert spans(snippets) == [("Überblick", 1, 2)]
    assert snippets[0].code == "# Überblick\nÄrger ✓\n"


@pytest.mark.parametrize("language", ["markdown", "rst", "ipynb"])
def test_undecodable_bytes_are_a_decode_error(language: str) -> None:
    with pytest.raises(SourceError) as info:
        extract(b"# Title\n\xff\xfe bad\n", "x", language)
    assert info.value.reason == "decode_error"


def test_unknown_language_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not a document language"):
        extract(b"x", "x.txt", "text")


# --- long sections -------------------------------------------------------------------------------------


def paragraphs(count: int, size: int = 60) -> str:
    """`count` paragraphs of two lines of `size` characters each, separated by blank lines."""
    return "\n".join(f"{f'p{k} '.ljust(size, 'x')}\n{'y' * size}\n" for k in range(count))


def check_parts(snippets: list[Snippet], whole: str, name: str, max_chars: int) -> list[Snippet]:
    """The invariants of a split section; returns its parts."""
    parts = [s for s in snippets if s.qualname.startswith(f"{name} (part ")]
    assert [s.qualname for s in parts] == [f"{name} (part {k})" for k in range(1, len(parts) + 1)]
    assert len(parts) >= 2
    assert "".join(p.code for p in parts) == whole
    for before, after in zip(parts, parts[1:]):
        assert after.start_line == before.end_line + 1
    return parts


def test_long_section_is_cut_at_paragraphs_into_parts_that_fit() -> None:
    body = paragraphs(10)  # each paragraph: 122 characters, plus a blank line between
    text = f"# Long\n\n{body}# Next\nn\n"
    snippets = md(text, max_chars=400)
    whole = lines_of(text, 1, 31)
    parts = check_parts(snippets, whole, "Long", 400)
    assert spans(snippets) == [
        ("Long (part 1)", 1, 11),  # heading and blank (8), 3 paragraphs with the blank after each (369)
        ("Long (part 2)", 12, 20),
        ("Long (part 3)", 21, 29),
        ("Long (part 4)", 30, 31),
        ("Next", 32, 33),
    ]
    assert all(len(p.code) <= 400 for p in parts)
    assert all(p.code.startswith("p") for p in parts[1:])  # every later part starts at a paragraph
    assert {(p.signature, p.parent) for p in parts} == {("Long", None)}


def test_section_exactly_at_the_limit_is_not_cut() -> None:
    text = "# A\n" + "x" * 95 + "\n"
    assert len(text) == 100
    assert spans(md(text, max_chars=100)) == [("A", 1, 2)]
    assert spans(md(text, max_chars=99)) == [("A", 1, 2)]  # one paragraph glued to its heading: no cut


def test_code_block_longer_than_the_limit_stays_whole_in_its_own_part() -> None:
    code = "".join(f"line {k}\n" if k % 5 else "\n" for k in range(60))  # blank lines inside the code
    text = f"# A\n\nintro\n\n```\n{code}```\n\nafter\n"
    snippets = md(text, max_chars=100)
    parts = check_parts(snippets, text, "A", 100)
    assert spans(parts) == [("A (part 1)", 1, 4), ("A (part 2)", 5, 67), ("A (part 3)", 68, 68)]
    assert parts[1].code == f"```\n{code}```\n\n"


def test_heading_stays_with_the_first_block_even_when_it_is_a_huge_code_block() -> None:
    text = "# A\n\n~~~\n" + "code\n" * 50 + "~~~\n\ntail\n"
    parts = check_parts(md(text, max_chars=60), text, "A", 60)
    assert spans(parts) == [("A (part 1)", 1, 55), ("A (part 2)", 56, 56)]


def test_unclosed_fence_is_never_cut() -> None:
    text = "# A\n\nintro\n\n```\n" + "x\n\n" * 40
    snippets = md(text, max_chars=50)
    assert spans(snippets) == [("A (part 1)", 1, 4), ("A (part 2)", 5, 84)]


def test_paragraph_too_long_on_its_own_is_cut_between_lines() -> None:
    items = "".join(f"- item {k:02d} of a long list without blank lines\n" for k in range(20))  # 45 chars
    text = f"# List\n\n{items}"
    parts = check_parts(md(text, max_chars=200), text, "List", 200)
    assert all(len(p.code) <= 200 for p in parts)
    # 8 + 4 * 45 = 188 characters, then 4 items (180) a part
    assert spans(parts) == [(f"List (part {k + 1})", 1 + 4 * k + 2 * (k > 0), 6 + 4 * k) for k in range(5)]


def test_lines_inside_a_fence_in_a_long_paragraph_are_never_cut_points() -> None:
    fence = "```\n" + "code line\n" * 30 + "```\n"
    text = "# A\n\n" + "text line\n" * 5 + fence + "text line\n" * 5
    parts = check_parts(md(text, max_chars=80), text, "A", 80)
    for p in parts:  # a part holds either both fence lines of the block or neither
        assert p.code.count("```") in (0, 2)


def test_preamble_is_cut_like_a_section() -> None:
    text = paragraphs(6)
    snippets = md(text, max_chars=300)
    parts = check_parts(snippets, text, "(preamble)", 300)
    assert [p.parent for p in parts] == [None] * len(parts)


def test_crlf_section_parts_keep_crlf_and_concatenate_to_the_section() -> None:
    text = ("# A\r\n\r\n" + "".join(f"para {k} " + "z" * 40 + "\r\n\r\n" for k in range(8))).rstrip("\r\n")
    snippets = md(text, max_chars=120)
    check_parts(snippets, text, "A", 120)
    assert all("\n" not in p.code.replace("\r\n", "") for p in snippets)


def test_part_names_do_not_clash_with_a_heading_named_like_a_part() -> None:
    text = "# A\n\n" + paragraphs(4) + "# A (part 1)\nx\n"
    names = [s.qualname for s in md(text, max_chars=150)]
    assert len(names) == len(set(names))
    assert names[-1] == "A (part 1) (2)"


# --- reStructuredText ----------------------------------------------------------------------------------


def test_rst_levels_follow_first_appearance_and_overlines_are_a_style_of_their_own() -> None:
    text = (
        "=====\n"  # 1
        "Title\n"  # 2
        "=====\n"  # 3  ('=', overlined): level 1
        "t\n"  # 4
        "\n"  # 5
        "One\n"  # 6
        "===\n"  # 7  ('=', underlined): level 2
        "o\n"  # 8
        "\n"  # 9
        "Sub\n"  # 10
        "~~~\n"  # 11 ('~'): level 3
        "s\n"  # 12
        "\n"  # 13
        "Two\n"  # 14
        "===\n"  # 15 level 2 again
        "w\n"  # 16
        "\n"  # 17
        "-----\n"  # 18
        " Inset\n"  # 19 an overlined title may be inset
        "-----\n"  # 20 ('-', overlined): level 4, under "Two"
        "i\n"  # 21
    )
    snippets = rst(text)
    assert spans(snippets) == [
        ("Title", 1, 4),
        ("Title > One", 6, 8),
        ("Title > One > Sub", 10, 12),
        ("Title > Two", 14, 16),
        ("Title > Two > Inset", 18, 21),
    ]
    assert [s.signature for s in snippets] == ["Title", "One", "Sub", "Two", "Inset"]


def test_rst_title_right_after_a_title_is_a_subtitle() -> None:
    assert spans(rst("Doc\n===\nPart\n----\ntext\n")) == [("Doc > Part", 3, 5)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # underline shorter than the title and under four characters: text
        ("# T\n\nLong title\n---\nx\n", [("(preamble)", 1, 5)]),
        # shorter than the title but four characters or more: docutils takes it (with a warning)
        ("Long title\n----\nx\n", [("Long title", 1, 3)]),
        ("Abc\n~~~\nx\n", [("Abc", 1, 3)]),
        # wide characters count two columns: "日本" needs four
        ("日本\n~~~\nx\n", [("(preamble)", 1, 3)]),
        ("日本\n~~~~\nx\n", [("日本", 1, 3)]),
        # mixed characters or inner spaces are no adornment (a simple table border)
        ("Title\n=-=-=\nx\n", [("(preamble)", 1, 3)]),
        ("Title\n===  ===\nx\n", [("(preamble)", 1, 3)]),
        # overline and underline must match
        ("=====\nTitle\n-----\nx\n", [("(preamble)", 1, 4)]),
        # an indented title is a block quote
        ("  Title\n  =====\nx\n", [("(preamble)", 1, 3)]),
        # explicit markup is not a title
        (".. comment\n==========\nx\n", [("(preamble)", 1, 3)]),
    ],
)
def test_rst_title_adornment_rules(text: str, expected: list[tuple[str, int, int]]) -> None:
    assert spans(rst(text)) == expected


def test_rst_second_line_of_a_paragraph_is_no_title() -> None:
    assert spans(rst("T\n=\n\nfirst line\nsecond line\n-----------\nx\n")) == [("T", 1, 7)]


def test_rst_transition_between_paragraphs_is_no_title() -> None:
    assert spans(rst("T\n=\n\npara\n\n----------\n\npara\n")) == [("T", 1, 8)]


def test_rst_literal_blocks_and_code_directives_hide_titles_and_are_never_cut() -> None:
    text = (
        "T\n"  # 1
        "=\n"  # 2
        "\n"  # 3
        "Intro.\n"  # 4
        "\n"  # 5
        "Example: ::\n"  # 6  expanded form of '::'
        "\n"  # 7
        "    Fake\n"  # 8
        "    ====\n"  # 9
        "\n"  # 10
        "    more code\n"  # 11
        "\n"  # 12
        ".. code-block:: rst\n"  # 13
        "\n"  # 14
        "   Also fake\n"  # 15
        "   ---------\n"  # 16
        "\n"  # 17
        "   more\n"  # 18
        "\n"  # 19
        "Real\n"  # 20
        "----\n"  # 21
        "r\n"  # 22
    )
    assert spans(rst(text)) == [("T", 1, 18), ("T > Real", 20, 22)]
    # Cut as small as possible: the literal block stays with its '::' paragraph, the directive whole.
    parts = check_parts(rst(text, max_chars=10), lines_of(text, 1, 18), "T", 10)
    assert spans(parts) == [("T (part 1)", 1, 5), ("T (part 2)", 6, 12), ("T (part 3)", 13, 18)]


def test_rst_literal_block_in_a_list_item_ends_at_the_items_text_column() -> None:
    # The item's text starts at column 2: "  Item text again." ends the literal block, so a part may
    # start there (were the block's limit column 0, it would run to the end).
    text = "T\n=\n\n- Run::\n\n    code\n\n  Item text again.\n\n  Para\n"
    parts = check_parts(rst(text, max_chars=10), text, "T", 10)
    assert spans(parts) == [("T (part 1)", 1, 7), ("T (part 2)", 8, 9), ("T (part 3)", 10, 10)]


def test_rst_directive_line_ending_in_double_colon_starts_no_literal_block() -> None:
    text = "T\n=\n\n.. note::\n\n   First.\n\n   Second.\n"
    parts = check_parts(rst(text, max_chars=10), text, "T", 10)
    assert spans(parts) == [("T (part 1)", 1, 5), ("T (part 2)", 6, 7), ("T (part 3)", 8, 8)]


def test_rst_label_targets_go_with_the_title_below_them() -> None:
    text = ".. _top:\n\nA\n=\na\n\n.. _b-label:\n\nB\n-\nb\n"
    snippets = rst(text)
    assert spans(snippets) == [("A", 3, 5), ("A > B", 9, 11)]
    assert snippets[0].code == "A\n=\na\n"


def test_rst_section_holding_only_a_target_is_empty() -> None:
    assert spans(rst("A\n=\n\n.. _b:\n\nB\n-\nb\n")) == [("A > B", 6, 8)]


def test_rst_title_after_explicit_markup_without_a_blank_line() -> None:
    assert spans(rst(".. _x:\nTitle\n=====\nx\n")) == [("Title", 2, 4)]


def test_rst_crlf() -> None:
    text = "A\r\n=\r\n\r\na\r\n\r\nB\r\n-\r\nb\r\n"
    snippets = rst(text)
    assert spans(snippets) == [("A", 1, 4), ("A > B", 6, 8)]
    assert [s.code for s in snippets] == ["A\r\n=\r\n\r\na\r\n", "B\r\n-\r\nb\r\n"]


# --- notebooks -----------------------------------------------------------------------------------------


def notebook(cells: list[dict[str, object]], metadata: dict[str, object] | None = None) -> bytes:
    return orjson.dumps({"cells": cells, "metadata": metadata or {}, "nbformat": 4, "nbformat_minor": 5})


def md_cell(source: str | list[str]) -> dict[str, object]:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def code_cell(source: str | list[str]) -> dict[str, object]:
    return {"cell_type": "code", "metadata": {}, "source": source, "outputs": [], "execution_count": None}


def test_notebook_cells_and_sections_with_the_heading_path_across_cells() -> None:
    data = notebook(
        [
            md_cell(["# Analysis\n", "\n", "Load and plot.\n"]),  # 1
            code_cell(["import pandas as pd\n", "df = pd.read_csv('x.csv')"]),  # 2
            md_cell("## Setup"),  # 3  heading only: no snippet
            code_cell("\n%pip install seaborn\n\n"),  # 4  blank lines around: trimmed
            md_cell("Now plot it:\n"),  # 5  text without heading: named by its cell
            code_cell("df.plot()\n"),  # 6
            code_cell("   \n"),  # 7  blank: no snippet
            {"cell_type": "raw", "metadata": {}, "source": "# raw cells are skipped\n"},  # 8
            md_cell(
                "```\n# not a heading\n```\n# Results\nDone.\n## Results\nAgain.\n# Results\nThird."
            ),  # 9
            code_cell("print(1)"),  # 10
        ],
        {"kernelspec": {"name": "python3", "language": "python"}},
    )
    snippets = extract(data, "nb/analysis.ipynb", "ipynb")
    assert [(s.qualname, s.kind, s.language, s.start_line, s.end_line, s.parent) for s in snippets] == [
        ("Analysis", "doc_section", "markdown", 1, 3, None),
        ("Analysis > cell 2", "notebook_cell", "python", 1, 2, "Analysis"),
        ("Analysis > Setup > cell 4", "notebook_cell", "python", 2, 2, "Analysis > Setup"),
        ("Analysis > Setup > cell 5", "doc_section", "markdown", 1, 1, "Analysis > Setup"),
        ("Analysis > Setup > cell 6", "notebook_cell", "python", 1, 1, "Analysis > Setup"),
        ("Analysis > Setup > cell 9", "doc_section", "markdown", 1, 3, "Analysis > Setup"),
        ("Results", "doc_section", "markdown", 4, 5, None),
        ("Results > Results", "doc_section", "markdown", 6, 7, "Results"),
        ("Results (2)", "doc_section", "markdown", 8, 9, None),
        ("Results (2) > cell 10", "notebook_cell", "python", 1, 1, "Results (2)"),
    ]
    by_name = {s.qualname: s for s in snippets}
    assert by_name["Analysis > cell 2"].code == "import pandas as pd\ndf = pd.read_csv('x.csv')"
    assert by_name["Analysis > Setup > cell 4"].code == "%pip install seaborn\n"
    assert by_name["Analysis"].code == "# Analysis\n\nLoad and plot.\n"
    assert by_name["Analysis > Setup > cell 9"].code == "```\n# not a heading\n```\n"
    assert {s.path for s in snippets} == {"nb/analysis.ipynb"}
    assert all(s.docstring is None for s in snippets)
    assert by_name["Analysis > cell 2"].signature == ""


@pytest.mark.parametrize(
    ("metadata", "language"),
    [
        ({"kernelspec": {"name": "ir", "language": "R"}}, "r"),
        ({"language_info": {"name": "julia"}}, "julia"),
        ({"kernelspec": {"name": "x"}, "language_info": {"name": "scala"}}, "scala"),
        ({}, "python"),
    ],
)
def test_notebook_code_cells_take_the_kernel_language(metadata: dict[str, object], language: str) -> None:
    (snippet,) = extract(notebook([code_cell("x <- 1\n")], metadata), "a.ipynb", "ipynb")
    assert (snippet.qualname, snippet.language) == ("cell 1", language)


def test_long_code_cell_is_never_cut_and_long_markdown_cell_is() -> None:
    big_code = "\n\n".join(f"x{k} = {k}" for k in range(200))
    data = notebook([md_cell("# A\n\n" + paragraphs(8)), code_cell(big_code)])
    snippets = extract(data, "a.ipynb", "ipynb", max_chars=300)
    assert snippets[-1].qualname == "A > cell 2"
    assert snippets[-1].code == big_code
    assert [s.qualname for s in snippets[:-1]] == [f"A (part {k})" for k in range(1, len(snippets))]


def test_nbformat_3_worksheets_heading_cells_and_input() -> None:
    data = orjson.dumps(
        {
            "metadata": {"language": "python"},
            "nbformat": 3,
            "worksheets": [
                {
                    "cells": [
                        {"cell_type": "heading", "level": 2, "source": ["Intro"]},
                        {"cell_type": "code", "language": "python", "input": ["a = 1\n", "b = 2"]},
                        {"cell_type": "markdown", "source": "Text."},
                    ]
                }
            ],
        }
    )
    snippets = extract(data, "old.ipynb", "ipynb")
    assert [(s.qualname, s.kind, s.start_line, s.end_line, s.code) for s in snippets] == [
        ("Intro > cell 2", "notebook_cell", 1, 2, "a = 1\nb = 2"),
        ("Intro > cell 3", "doc_section", 1, 1, "Text."),
    ]


@pytest.mark.parametrize("data", [b"{not json", b'{"cells": [', b"", b"\xef\xbb\xbf{"])
def test_invalid_notebook_json_is_a_syntax_error(data: bytes) -> None:
    with pytest.raises(SourceError) as info:
        extract(data, "bad.ipynb", "ipynb")
    assert info.value.reason == "syntax_error"
    assert info.value.detail


@pytest.mark.parametrize(
    "data",
    [
        b"[1, 2]",
        b'{"metadata": {}}',
        b'{"cells": {}}',
        b'{"cells": [1]}',
        b'{"cells": [{"cell_type": "code", "source": 5}]}',
        b'{"cells": [{"cell_type": "code", "source": ["a", 1]}]}',
    ],
)
def test_json_that_is_not_a_notebook_is_invalid_source(data: bytes) -> None:
    with pytest.raises(SourceError) as info:
        extract(data, "bad.ipynb", "ipynb")
    assert info.value.reason == "invalid_source"


def test_notebook_with_nan_in_its_outputs_is_read() -> None:
    # Python's json module writes NaN; orjson alone would reject the file.
    data = notebook([code_cell("x = float('nan')\nx")]).replace(b'"outputs":[]', b'"outputs":[{"data": NaN}]')
    assert b"NaN" in data
    assert spans(extract(data, "n.ipynb", "ipynb")) == [("cell 1", 1, 2)]


def test_deeply_nested_json_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(SourceError) as info:
        extract(b"[" * 100_000, "deep.ipynb", "ipynb")
    assert info.value.reason == "syntax_error"


def test_notebook_with_bom_and_no_cells_yields_nothing() -> None:
    assert extract(b'\xef\xbb\xbf{"cells": [], "metadata": {}}', "e.ipynb", "ipynb") == []


# --- process pools, determinism ------------------------------------------------------------------------


def test_results_and_errors_survive_pickling() -> None:
    data = (FIXTURES / "README.md").read_bytes()
    snippets = extract(data, "README.md", "markdown")
    assert pickle.loads(pickle.dumps(snippets)) == snippets
    with pytest.raises(SourceError) as info:
        extract(b"{", "x.ipynb", "ipynb")
    error = pickle.loads(pickle.dumps(info.value))
    assert (error.reason, error.detail) == ("syntax_error", info.value.detail)


def test_extraction_is_deterministic_and_ids_depend_on_language_and_code() -> None:
    data = (FIXTURES / "docs" / "guide.rst").read_bytes()
    first, second = extract(data, "g.rst", "rst"), extract(data, "g.rst", "rst")
    assert [s.id for s in first] == [s.id for s in second]
    assert len({s.id for s in first}) == len(first)
    (a,) = md("# T\nx\n")
    (b,) = extract(b"# T\nx\n", "other.md", "markdown")
    assert a.id == b.id  # same language and text: same identity, whatever the path
