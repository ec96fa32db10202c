"""Jupyter notebooks (nbformat 4 and 3): markdown cells cut into sections as Markdown, the heading path
carrying on from cell to cell, and each non-blank code cell one snippet.
"""

from __future__ import annotations

import json

import orjson

from stream.errors import SourceError
from stream.model import Snippet

from .docs_lines import Doc, is_blank_line
from .docs_markdown import scan_markdown
from .docs_sections import Cutter

__all__ = ["CELL", "cut_notebook"]

#: snippet kind of a code cell
CELL = "notebook_cell"


def cut_notebook(text: str, cutter: Cutter) -> None:
    nb = _load_json(text)
    if not isinstance(nb, dict):
        raise SourceError("invalid_source", "not a Jupyter notebook: the JSON is not an object")
    kernel = _kernel_language(nb)
    for number, (cell_type, source, language) in enumerate(_cells(nb), 1):
        if cell_type == "markdown":
            doc = Doc(source, "markdown")
            cutter.document(doc, 0, scan_markdown(doc, 0), number)
        elif cell_type == "code":
            doc = Doc(source, language or kernel)
            lines, starts = doc.lines, doc.starts
            first, last = 0, len(lines) - 1
            while first <= last and is_blank_line(lines[first]):
                first += 1
            while last >= first and is_blank_line(lines[last]):
                last -= 1
            if first > last:
                continue
            parent = cutter.current
            name = cutter.unique(f"{parent} > cell {number}" if parent else f"cell {number}")
            cutter.snippets.append(
                Snippet(
                    cutter.path,
                    doc.language,
                    CELL,
                    name,
                    first + 1,
                    last + 1,
                    source[starts[first] : starts[last + 1]],
                    None,
                    "",
                    parent,
                )
            )


def _load_json(text: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        # orjson takes strict JSON only; Python's json module, which wrote many notebooks, also writes
        # NaN and Infinity (in outputs and widget state). Only a file both reject is broken.
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            raise SourceError("syntax_error", str(exc)) from None


def _cells(nb: dict[str, object]) -> list[tuple[str, str, str | None]]:
    """(cell type, source text, the cell's own language if it names one) for every cell, in order.

    nbformat 4 keeps the cells in ``cells``; nbformat 3 in ``worksheets[*].cells``, with a code cell's
    text under ``input`` and headings as ``heading`` cells with a ``level``.
    """
    cells = nb.get("cells")
    if cells is None and isinstance(nb.get("worksheets"), list):
        cells = [c for ws in nb["worksheets"] if isinstance(ws, dict) for c in ws.get("cells") or ()]
    if not isinstance(cells, list):
        raise SourceError("invalid_source", "not a Jupyter notebook: no list of cells")
    out = []
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict):
            raise SourceError("invalid_source", f"cell {number} is not an object")
        cell_type = cell.get("cell_type")
        source = cell.get("source", cell.get("input", ""))
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        elif not isinstance(source, str):
            raise SourceError("invalid_source", f"cell {number}: source is neither text nor a list of lines")
        if cell_type == "heading":  # nbformat 3
            level = cell.get("level")
            cell_type = "markdown"
            source = "#" * (level if isinstance(level, int) and 1 <= level <= 6 else 1) + " " + source
        language = cell.get("language")
        out.append((cell_type, source, language.lower() if isinstance(language, str) and language else None))
    return out


def _kernel_language(nb: dict[str, object]) -> str:
    metadata = nb.get("metadata")
    if isinstance(metadata, dict):
        for key, field in (("kernelspec", "language"), ("language_info", "name")):
            value = metadata.get(key)
            if isinstance(value, dict) and isinstance(value.get(field), str) and value[field]:
                return value[field].lower()
        if isinstance(metadata.get("language"), str) and metadata["language"]:
            return metadata["language"].lower()
    return "python"
