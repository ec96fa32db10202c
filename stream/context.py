"""A snippet's context (``{context}``, ``--context``): what its prompt is told about where the code lives.

For code: the file's path, docstring and imports; for a method, its class's header, docstring, attribute and
method names; the signatures (and first docstring lines) of the project's own functions it calls, found by
name in its file (``file``) or anywhere in the walked tree (``project``). For a doc section: its file and
heading path. Bounded by ``--context-tokens`` (counted as characters ÷ 3, which never undercounts code).

Laid out for providers' prompt caches: what every snippet of a file shares comes first (file, docstring,
imports), then what the methods of one class share, then what is this snippet's own (its callees); the
planner sends a file's snippets one after another. `FileContext` is cut in the scan thread from the file's
text and every definition the extractor found (before filtering: a method's class is known even when the
class itself is not asked about); `render` runs in the planner.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial

import orjson

from .filters import Selection, holds_secrets, redacted
from .model import Snippet

__all__ = [
    "remembered_mode",
    "Contexts",
    "FileContext",
    "ProjectIndex",
    "file_context",
    "render",
    "CHARS_PER_TOKEN",
]

CHARS_PER_TOKEN = 3  # a conservative bound: code runs 3.5-4 characters a cl100k token
# A file's part grows by its outline only when that makes it long enough for a provider's prompt cache to
# serve it to the file's later snippets: OpenAI caches prefixes from 1,024 tokens, ~4 characters each for
# code (https://platform.openai.com/docs/guides/prompt-caching). Shorter, it would be paid in full each time.
CACHED_PREFIX_CHARS = 4 * 1024
_LEAD = "Context: where the code below lives in its project (for reference; it is not the code to explain)."
_CALLS = "It calls, from this project:"
_DOC_LEAD = "Context: where the section below sits in the project's documentation."

# import lines by language family (top of the file; a Python import in parentheses spans lines)
_IMPORTS = {
    "python": re.compile(r"^(?:import|from)\s+[\w.]+"),
    "javascript": re.compile(r"^(?:import\b|(?:const|let|var)\s+.*=\s*require\()"),
    "go": re.compile(r"^import\b"),
    "rust": re.compile(r"^(?:pub\s+)?use\s"),
    "java": re.compile(r"^(?:package|import)\s"),
    "c": re.compile(r"^#\s*include\b"),
    "ruby": re.compile(r"^require(?:_relative)?\b"),
}
_FAMILY = {"typescript": "javascript", "tsx": "javascript", "cpp": "c"}
_CALL = re.compile(r"(?<![\w$])(?:(self|cls|this)\s*\.\s*)?([A-Za-z_]\w*)\s*\(")
_NOT_CALLS = frozenset(
    "if elif while for switch return yield await catch with assert print not and or in is lambda "
    "sizeof typeof new super def class fn func function match case".split()
)
_CLASS_KINDS = frozenset({"class", "struct", "interface", "trait", "enum", "impl", "module"})


@dataclass(slots=True)
class FileContext:
    """What the snippets of one file share, and what their prompts may name from it."""

    path: str
    header: str  # the file's part: path, docstring summary, imports (already bounded)
    classes: dict[str, str] = field(default_factory=dict)  # class qualname -> its block
    defs: dict[str, str] = field(default_factory=dict)  # module-level name -> "signature  # summary"
    methods: dict[str, dict[str, str]] = field(default_factory=dict)  # class qualname -> name -> line


@dataclass(slots=True)
class ProjectIndex:
    """Module-level functions and classes of the walked tree by name (``--context project``); a name
    defined in more than one file is ambiguous and left out (None)."""

    names: dict[str, str | None] = field(default_factory=dict)

    def add(self, path: str, snippets: Iterable[Snippet], sel: Selection) -> None:
        for s in snippets:
            if s.parent is None and s.kind != "doc_section":
                name = _name(s)
                known = self.names.get(name, "")
                line = redacted(f"{_line(s)}  (in {path})", sel)
                self.names[name] = line if known == "" or known == line else None

    def get(self, name: str) -> str | None:
        return self.names.get(name) or None


def remembered_mode(db: str) -> str | None:
    """The ``--context`` of the checkpoint's last run (``none`` for one made before contexts existed), so
    that a rerun without the flag asks what the checkpoint holds answers to; None without a checkpoint."""
    from sinks.reader import open_readonly

    from .errors import ConfigError

    try:
        with open_readonly(db) as reader:
            runs = [r for r in reader.runs() if r.config]
    except ConfigError:
        return None
    if not runs:
        return None
    config = orjson.loads(runs[-1].config or b"{}")
    mode = config.get("context", "none") if isinstance(config, dict) else None
    return mode if isinstance(mode, str) else None


@dataclass(slots=True)
class Contexts:
    """The run's ``--context`` and its bound; with ``project``, the walked tree's index (built by the feed
    before the first file is planned)."""

    mode: str
    tokens: int
    project: ProjectIndex | None = None

    def of(self, snippet: Snippet, ctx: FileContext | None) -> str:
        return "" if self.mode == "none" else render(snippet, ctx, self.project, self.tokens)


def file_context(
    data: bytes, path: str, language: str, snippets: list[Snippet], sel: Selection
) -> FileContext:
    """The shared context of one file, from its bytes and every snippet cut from it (secrets cut out as
    ``--on-secret`` says: what is not sent as a snippet is not sent as context either)."""
    chars = sel.context_tokens * CHARS_PER_TOKEN
    if snippets and snippets[0].kind == "doc_section":
        return FileContext(path, f"{_DOC_LEAD}\nFile: {path}\n")
    text = data.decode("utf-8", "replace")
    parts = [f"{_LEAD}\nFile: {path}"]
    doc = _module_doc(text, language)
    if doc:
        parts.append("File docstring: " + _clip(doc, chars // 4))
    imports = _imports(text, language, chars // 4)
    if imports:
        parts.append("Imports:\n" + "\n".join("  " + line for line in imports))
    # one look for secrets in the whole file; only a file that holds some has its pieces redacted one by one
    scrub = _unchanged if sel.on_secret == "allow" or not holds_secrets(text) else partial(redacted, sel=sel)
    ctx = FileContext(path, "")
    for s in snippets:
        if s.parent is None and s.kind != "doc_section":
            ctx.defs.setdefault(_name(s), scrub(_line(s)))
        if s.kind in _CLASS_KINDS or s.kind.endswith("class"):
            ctx.classes[s.qualname] = ""  # filled below, once its methods are known
    for s in snippets:
        if s.parent in ctx.classes:
            ctx.methods.setdefault(s.parent, {}).setdefault(_name(s), scrub(_line(s)))
    by_name = {s.qualname: s for s in snippets}
    for qualname in ctx.classes:
        block = _class_block(by_name[qualname], ctx.methods.get(qualname, {}), chars // 4)
        ctx.classes[qualname] = scrub(block)
    header = "\n".join(parts)
    room = chars * 3 // 4  # the file's part; the rest is each snippet's own (its class, its callees)
    outline = _clip(_outline(ctx), room - len(header) - 1)
    if len(header) + len(outline) >= CACHED_PREFIX_CHARS:
        header += "\n" + outline
    ctx.header = scrub(_clip(header, room)) + "\n"
    return ctx


def _unchanged(text: str) -> str:
    return text


def _outline(ctx: FileContext) -> str:
    """What the file defines: its module-level functions and classes, a class's methods under it."""
    lines = ["The file defines:"]
    for name, line in ctx.defs.items():
        lines.append("  " + line)
        qualname = name if name in ctx.methods else None
        lines += ["    " + method for method in ctx.methods.get(qualname or "", {}).values()]
    return "\n".join(lines)


def render(snippet: Snippet, ctx: FileContext | None, project: ProjectIndex | None, tokens: int) -> str:
    """The ``{context}`` text of one snippet: the file's part, its class, what it calls; then a blank line
    (``""`` without a file context)."""
    if ctx is None:
        return ""
    if snippet.kind == "doc_section":
        return f"{ctx.header}Section: {snippet.qualname}\n\n"
    parts = [ctx.header.rstrip("\n")]
    budget = tokens * CHARS_PER_TOKEN - len(parts[0])  # what is left, each part with its line break
    block = ctx.classes.get(snippet.parent or "")
    if block and budget > len(block) + 1:
        parts.append(block)
        budget -= len(block) + 1
    budget -= len(_CALLS) + 1
    lines = []
    for line in _callees(snippet, ctx, project):
        if len(line) + 3 > budget:
            break
        lines.append("  " + line)
        budget -= len(line) + 3
    if lines:
        parts.append(_CALLS + "\n" + "\n".join(lines))
    return "\n".join(parts) + "\n\n"


def _callees(snippet: Snippet, ctx: FileContext, project: ProjectIndex | None) -> Iterator[str]:
    own = _name(snippet)
    methods = ctx.methods.get(snippet.parent or "", {})
    seen: set[str] = set()
    for match in _CALL.finditer(snippet.code):
        receiver, name = match.groups()
        if name in seen or name in _NOT_CALLS or (name == own and not receiver):
            continue
        seen.add(name)
        if receiver:
            line = methods.get(name) if name != own else None
        else:
            line = ctx.defs.get(name) or (project.get(name) if project is not None else None)
        if line:
            yield line


def _name(s: Snippet) -> str:
    return s.qualname.rsplit(".", 1)[-1]


def _line(s: Snippet) -> str:
    signature = " ".join(s.signature.split())
    summary = _summary(s.docstring)
    return f"{signature}  # {summary}" if summary else signature


def _summary(doc: str | None) -> str:
    """A docstring's first sentence, at most 160 characters."""
    if not doc:
        return ""
    first = _first_paragraph(doc)
    end = first.find(". ")
    first = first if end < 0 else first[: end + 1]
    return first if len(first) <= 160 else first[:157] + "..."


def _class_block(cls: Snippet, methods: dict[str, str], chars: int) -> str:
    lines = ["In the class:", "  " + " ".join(cls.signature.split())]
    summary = _summary(cls.docstring)
    if summary:
        lines.append(f"    {summary}")
    if cls.language == "python":
        attributes = _attributes(cls.code)
        if attributes:
            lines.append("  attributes: " + ", ".join(attributes))
    if methods:
        lines.append("  methods: " + ", ".join(methods))
    return _clip("\n".join(lines), chars)


def _attributes(code: str) -> list[str]:
    """A Python class's attribute names: assignments in its body and ``self.x = ...`` in its methods."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except (SyntaxError, ValueError):
        return []
    cls = tree.body[0] if tree.body else None
    if not isinstance(cls, ast.ClassDef):
        return []
    names: dict[str, None] = {}
    for node in cls.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets if isinstance(node, (ast.Assign, ast.AnnAssign)) else []:
            if isinstance(target, ast.Name):
                names.setdefault(target.id)
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                names.setdefault(node.attr)
    return list(names)[:40]


def _module_doc(text: str, language: str) -> str:
    """A Python module's docstring, or the leading comment block of another language (not a licence)."""
    if language == "python":
        head = text.lstrip("\ufeff")
        start = re.match(r"(?:[ \t]*(?:#[^\n]*)?\n)*[ \t]*", head)
        rest = head[start.end() :] if start else head
        if rest[:1] in ('"', "'") or rest[:2].lower() in ('r"', "r'", 'u"', "u'"):
            try:
                node = ast.parse(_leading_literal(rest)).body
            except (SyntaxError, ValueError):
                return ""
            if node and isinstance(node[0], ast.Expr) and isinstance(node[0].value, ast.Constant):
                value = node[0].value.value
                return _first_paragraph(value) if isinstance(value, str) else ""
        return ""
    comment = _leading_comment(text)
    return "" if re.search(r"(?i)copyright|licen[cs]e|spdx", comment) else _first_paragraph(comment)


def _leading_literal(text: str) -> str:
    """The first string literal of `text` (enough of it to parse)."""
    prefix = 1 if text[:1].lower() in "ru" else 0
    quote = text[prefix : prefix + 3] if text[prefix : prefix + 3] in ('"""', "'''") else text[prefix]
    end = text.find(quote, prefix + len(quote))
    while end > 0 and text[end - 1] == "\\" and len(quote) == 1:
        end = text.find(quote, end + 1)
    return text[: end + len(quote)] if end >= 0 else text


def _leading_comment(text: str) -> str:
    out = []
    for line in text.lstrip("\ufeff").split("\n")[:60]:
        stripped = line.strip()
        if stripped.startswith(("//", "#!", "# ", "#\t")) or stripped == "#":
            if not stripped.startswith("#!"):
                out.append(stripped.lstrip("/!#").strip())
        elif stripped.startswith(("/*", "*", "*/")):
            out.append(stripped.strip("/*").strip())
        elif stripped or out:
            break
    return "\n".join(out).strip()


def _first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n", 1)[0].split())


def _imports(text: str, language: str, chars: int) -> list[str]:
    pattern = _IMPORTS.get(_FAMILY.get(language, language))
    if pattern is None:
        return []
    out, used, open_paren = [], 0, False
    for line in text.split("\n"):
        if open_paren:
            out[-1] += " " + line.strip()
            open_paren = ")" not in line
            continue
        if pattern.match(line):
            line = line.rstrip()
            if used + len(line) > chars:
                out.append("...")
                break
            out.append(line)
            used += len(line) + 3
            open_paren = line.endswith(("(", "\\")) and ")" not in line
    return out


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(0, chars - 3)].rstrip() + "..."
