"""Cut documentation into snippets: one per section of a Markdown or reStructuredText file, one per cell
of a Jupyter notebook.

Sections. Every heading starts a section that runs until the next heading of any level, so a section
holds its own text only and each subsection is a snippet of its own. A snippet's `qualname` is the
heading path joined with ``" > "`` (``"Install > From source"``), `parent` the path above it (None at the
top), `signature` the heading text (``#`` marks, closing ``#`` and underlines removed; a setext heading's
lines joined by one space), `docstring` None, `kind` ``"doc_section"``. Lines are 1-based and inclusive;
`code` is the exact text of those lines, line endings kept. The rules chosen where the formats leave room:

- Text before the first heading is the section ``"(preamble)"`` (no parent, empty signature), starting
  at its first non-blank line.
- A section ends at its last line that is not blank (in reStructuredText, not blank and not a bare
  ``.. _label:`` target, which belongs to the heading below it), so a snippet never ends in blank lines.
  A section with nothing left below its heading is no snippet, but its heading still names its children.
- Markdown YAML (``---``) or TOML (``+++``) front matter at the very top is metadata, never a snippet:
  the preamble starts after it.
- A heading path that occurs again in the file gets ``" (2)"``, ``" (3)"``, ...; its children are named
  under the numbered path. Qualnames are unique within a file.
- A section longer than `max_chars` characters is cut into parts named ``"<path> (part 1)"``,
  ``"(part 2)"``, ...: at paragraph boundaries (blank lines outside code), filling each part as far as
  the limit allows; a paragraph still too long is cut between lines. Never inside a code block (a code
  block longer than the limit is one part, with the heading or paragraph line glued to it), and never
  between a heading and the first line of its text. The parts' texts concatenated are the section's.

Markdown follows CommonMark's block structure closely enough to find headings: ATX (``#`` .. ``######``)
and setext (``===`` / ``---`` under a paragraph; ``---`` after a blank line is a thematic break)
headings; fenced code (backticks or tildes, any longer closing fence, an unclosed fence runs to the end),
indented code and HTML blocks (comments, ``<pre>``/``<script>``/``<style>``, block-level tags) are never
scanned for headings; a line in a list item or block quote is never a section heading.

reStructuredText follows docutils: a title is a line followed by an underline, or framed by an overline
and the same underline, of one repeated punctuation character, starting a block at the left margin; the
adornment must be at least as long as the title, or (like docutils, which only warns) four or more
characters. Levels follow the order in which adornment styles first appear, an overlined style being
distinct from the underline-only one. Literal blocks after ``::``, the bodies of code directives
(``code-block``, ``doctest``, ``math``, ...) and everything indented cannot hold titles.

Notebooks (``.ipynb``, nbformat 4, and 3): markdown cells are scanned as Markdown, the heading path
carrying on from cell to cell; their sections are snippets as above. Each non-blank code cell is one
snippet, never cut, of kind ``"notebook_cell"`` in the notebook's kernel language (``"python"`` when the
metadata does not say), named ``"cell N"`` under the current heading path (``"Setup > cell 3"``), N
counting all cells from 1; markdown text before a cell's first heading is named the same way. Line
numbers in a notebook's JSON mean nothing, so every notebook snippet's lines count within its own cell's
source (which the cell number in the qualname, or the unique heading, identifies).

Modules: this one decodes and dispatches; :mod:`~stream.extract.docs_markdown`,
:mod:`~stream.extract.docs_rst` and :mod:`~stream.extract.docs_notebook` find the headings (and cells) of
each format in a :class:`~stream.extract.docs_lines.Doc`, and :mod:`~stream.extract.docs_sections` names
and cuts the sections between them.
"""

from __future__ import annotations

from stream.errors import SourceError
from stream.model import Snippet

from .docs_lines import Doc
from .docs_markdown import front_matter_end, scan_markdown
from .docs_notebook import CELL, cut_notebook
from .docs_rst import is_rst_blank_line, scan_rst
from .docs_sections import PREAMBLE, SECTION, Cutter

__all__ = ["LANGUAGES", "PREAMBLE", "SECTION", "CELL", "extract"]

#: language -> file suffixes
LANGUAGES: dict[str, tuple[str, ...]] = {
    "markdown": (".md", ".markdown", ".mdx"),
    "rst": (".rst",),
    "ipynb": (".ipynb",),
}


def extract(data: bytes, relpath: str, language: str, *, max_chars: int = 6000) -> list[Snippet]:
    """Return the snippets of a document in `language` (a key of :data:`LANGUAGES`), in file order.

    `data` is the file's raw bytes (UTF-8, a BOM is dropped) and `relpath` the path recorded in each
    snippet. A pure function of its arguments. Raises :class:`SourceError` with reason ``decode_error``,
    or for a notebook ``syntax_error`` (not JSON) or ``invalid_source`` (JSON but not a notebook).
    """
    if language not in LANGUAGES:
        raise ValueError(f"not a document language: {language!r}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError("decode_error", str(exc)) from None
    cutter = Cutter(relpath, max_chars)
    if language == "markdown":
        doc = Doc(text, "markdown")
        begin = front_matter_end(doc.lines)
        cutter.document(doc, begin, scan_markdown(doc, begin))
    elif language == "rst":
        doc = Doc(text, "rst", is_rst_blank_line)
        cutter.document(doc, 0, scan_rst(doc))
    else:
        cut_notebook(text, cutter)
    return cutter.snippets
