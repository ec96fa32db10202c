"""Near-duplicate code: normalised tokens, their MinHash signature, and the LSH band keys that group them.

Code that differs only in names, literals or formatting (a copied helper, generated variants) reads the same
once normalised: every identifier becomes ``I``, every string or number ``L``; comments and whitespace are
dropped; keywords and operators are kept as they are. The normalised tokens are cut into overlapping
`SHINGLE`-grams, and their set is sketched with MinHash (`rensa`'s R-MinHash, `NUM_PERM` slots). The
signature is cut into `BANDS` bands of `ROWS` slots; each band is hashed with the scheme (library, its
algorithm version, these numbers, `NORMALISER_VERSION`) into a signed 64-bit *band key*. Two snippets
sharing band keys are candidates (the standard LSH banding of Leskovec, Rajaraman and Ullman, "Mining of
Massive Datasets", ch. 3.4); `stream.pipeline.neardups` groups them, keeping the keys in the checkpoint.

A pure function of the code: it runs where files are parsed (the scan thread or its worker processes).
Snippets with fewer than `MIN_TOKENS` normalised tokens, and doc sections, get no keys (never grouped).
"""

from __future__ import annotations

import hashlib
import keyword
import re
import struct
from collections.abc import Sequence

from rensa import RMinHash

from .model import Snippet

__all__ = [
    "NUM_PERM",
    "BANDS",
    "ROWS",
    "SHINGLE",
    "MIN_TOKENS",
    "SCHEME",
    "normalise",
    "band_keys",
    "file_band_keys",
]

NUM_PERM = 128  # MinHash slots
BANDS = 16  # LSH bands of ROWS slots: a pair of Jaccard similarity s shares a band with p = 1-(1-s^8)^16
ROWS = NUM_PERM // BANDS
SHINGLE = 5  # tokens per shingle: with names and literals folded, single tokens say little
MIN_TOKENS = 40  # fewer normalised tokens: too small to tell a copy from a common idiom (`return self.x`)
SEED = 1
NORMALISER_VERSION = "1"  # bump when `normalise` changes: keys made before never match keys made after
#: Part of every band key: another library version, other numbers or another normaliser make other keys.
SCHEME = f"rensa-r{RMinHash.ALGORITHM_VERSION}-{NUM_PERM}x{BANDS}-k{SHINGLE}-n{NORMALISER_VERSION}"
_SCHEME = SCHEME.encode()

# --- normalising -------------------------------------------------------------------------------------------

_C_KEYWORDS = (
    "auto break case char const continue default do double else enum extern float for goto if inline int "
    "long register return short signed sizeof static struct switch typedef union unsigned void volatile while"
)
_JS_KEYWORDS = (
    "async await break case catch class const continue debugger default delete do else export extends false "
    "finally for function if import in instanceof let new null of return static super switch this throw "
    "true try typeof undefined var void while with yield"
)
_TS_KEYWORDS = _JS_KEYWORDS + (
    " abstract any as boolean declare enum implements interface keyof namespace never number private "
    "protected public readonly string type unknown"
)
KEYWORDS: dict[str, frozenset[str]] = {
    "python": frozenset(keyword.kwlist),
    "javascript": frozenset(_JS_KEYWORDS.split()),
    "typescript": frozenset(_TS_KEYWORDS.split()),
    "tsx": frozenset(_TS_KEYWORDS.split()),
    "go": frozenset(
        "break case chan const continue default defer else fallthrough for func go goto if import interface "
        "map package range return struct switch type var nil true false select".split()
    ),
    "rust": frozenset(
        "as async await break const continue crate dyn else enum extern false fn for if impl in let loop "
        "match mod move mut pub ref return self Self static struct super trait true type unsafe use where "
        "while".split()
    ),
    "java": frozenset(
        "abstract assert boolean break byte case catch char class const continue default do double else enum "
        "extends final finally float for goto if implements import instanceof int interface long native new "
        "package private protected public return short static strictfp super switch synchronized this throw "
        "throws transient try void volatile while true false null var record yield".split()
    ),
    "c": frozenset(_C_KEYWORDS.split()),
    "cpp": frozenset(
        (
            _C_KEYWORDS + " bool catch class constexpr delete explicit false friend mutable namespace new "
            "noexcept nullptr operator override private protected public template this throw true try typename "
            "using virtual"
        ).split()
    ),
    "ruby": frozenset(
        "alias and begin break case class def defined? do else elsif end ensure false for if in module next "
        "nil not or redo rescue retry return self super then true undef unless until when while yield".split()
    ),
}

#: Operators of more than one character (any other non-space character is a token by itself).
OPERATORS = (
    "**= //= >>>= >>= <<= ... >>> -> => :: := === !== == != <=> <= >= += -= *= /= %= &= |= ^= ** // << >> "
    "&& || ++ -- ?? ?."
).split()
# longest first: the regex takes the first alternative that matches (`===` before `==`)
_OPS = "|".join(re.escape(op) for op in sorted(OPERATORS, key=len, reverse=True))
_NUMBER = r"\d[\w.]*|\.\d\w*"
_NAME = (
    r"(?:[^\W\d]|\$)[\w$]*[?!]?"  # (a trailing ? or ! ends Ruby method names; elsewhere it is an operator)
)
_PY_STRING = (
    r"""[rRbBuUfF]{0,2}(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")"""
)
_DQ = r'"(?:\\.|[^"\\\n])*"'
_SQ = r"'(?:\\.|[^'\\\n])*'"
_CHAR = r"'(?:\\.|[^'\\\n])'"  # one character: a Rust lifetime (`'a`) is not a literal
_BACKTICK = r"`[^`]*`"  # JavaScript template literals, Go raw strings
_HASH_COMMENT = r"#[^\n]*"
_SLASH_COMMENT = r"//[^\n]*|/\*[\s\S]*?\*/"


def _scanner(comment: str, strings: str, name: str = _NAME) -> re.Pattern[str]:
    # One alternation per kind, first match wins: comments before operators (`//`), strings before names
    # (a prefix like r"..."), multi-character operators before single characters.
    return re.compile(rf"(\s+|{comment})|({strings}|{_NUMBER})|({name})|({_OPS}|\S)")


_PYTHON = _scanner(_HASH_COMMENT, _PY_STRING, r"[^\W\d]\w*")
_C_LIKE = _scanner(_SLASH_COMMENT, f"{_DQ}|{_SQ}|{_BACKTICK}", r"(?:[^\W\d]|\$)[\w$]*")
_RUST = _scanner(_SLASH_COMMENT, f"{_DQ}|{_CHAR}", r"[^\W\d]\w*")
_RUBY = _scanner(_HASH_COMMENT, f"{_DQ}|{_SQ}", _NAME)
_SCANNERS = {"python": _PYTHON, "rust": _RUST, "ruby": _RUBY}

# Each normalised token is one character, so that shingles are cheap slices of one string: a single-character
# operator is itself, ``I`` and ``L`` are names and literals, and every keyword and multi-character operator
# has a private-use character of its own (in sorted order: a change to these tables is a new normaliser).
_WORDS = sorted({*(w for ws in KEYWORDS.values() for w in ws), *OPERATORS})
_CODE = {w: chr(0xF0000 + i) for i, w in enumerate(_WORDS)}
_TEXT = {c: w for w, c in _CODE.items()}
#: Keywords that are literal values: folded into ``L`` like any other literal.
LITERAL_WORDS = frozenset({"None", "True", "False", "true", "false", "null", "nil", "nullptr", "undefined"})
_KEYWORD_CODES = {
    lang: {w: "L" if w in LITERAL_WORDS else _CODE[w] for w in words} for lang, words in KEYWORDS.items()
}


def _normalised(code: str, language: str) -> str:
    """The normalised tokens, one character each (see `_CODE`)."""
    scanner = _SCANNERS.get(language, _C_LIKE)
    keywords = _KEYWORD_CODES.get(language, {})
    code_of = _CODE.get
    tokens = "".join(
        [
            (code_of(op) or op) if op else (keywords.get(name, "I") if name else "L")
            for _skip, literal, name, op in scanner.findall(code)
            if op or name or literal
        ]
    )
    # Python's `;` is a line break, which is layout: `a = 1; b = 2` reads as the two lines it stands for.
    return tokens.replace(";", "") if language == "python" else tokens


def normalise(code: str, language: str) -> list[str]:
    """The code's tokens with identifiers as ``I`` and literals as ``L``; comments and whitespace dropped."""
    return [_TEXT.get(c, c) for c in _normalised(code, language)]


# --- signatures and band keys --------------------------------------------------------------------------------


_MERSENNE = (1 << 61) - 1  # a band's 256 bits folded to 61: a key fits SQLite's signed 64-bit INTEGER
_SALTS: dict[str, tuple[int, ...]] = {}
_DOCS = frozenset({"doc_section", "notebook_cell"})


def _salts(space: str) -> tuple[int, ...]:
    """Per band, a 61-bit value of the scheme and the key space (language, and class or not): groups never
    span schemes or languages, and a class is never grouped with a function (they are asked differently)."""
    salts = _SALTS.get(space)
    if salts is None:
        salts = _SALTS[space] = tuple(
            int.from_bytes(hashlib.blake2b(f"{SCHEME}/{space}/{b}".encode(), digest_size=8).digest()) >> 3
            for b in range(BANDS)
        )
    return salts


def _keys(digest: list[int], space: str) -> tuple[int, ...]:
    packed = struct.pack(f"<{NUM_PERM}I", *digest)
    step = 4 * ROWS
    return tuple(
        (int.from_bytes(packed[b * step : (b + 1) * step], "little") % _MERSENNE) ^ salt
        for b, salt in enumerate(_salts(space))
    )


def _space(snippet: Snippet) -> str:
    return f"{snippet.language}/{'class' if snippet.kind == 'class' else 'def'}"


def _file_tokens(snippets: Sequence[Snippet]) -> list[str]:
    """Each snippet's normalised tokens. A definition holding others (a class and its methods: each is its
    exact lines, so each nested one is a slice of it) is normalised between them, their tokens spliced in:
    the regular expression reads each line of a file once, not once per definition around it."""
    tokens: dict[int, str] = {}
    children: dict[str, list[int]] = {}
    for i, s in enumerate(snippets):
        if s.parent is not None:
            children.setdefault(s.parent, []).append(i)
    for i in sorted(range(len(snippets)), key=lambda i: len(snippets[i].code)):  # nested ones first
        s = snippets[i]
        if s.kind in _DOCS:
            tokens[i] = ""
            continue
        code, parts, at = s.code, [], 0
        for c in children.get(s.qualname, ()):
            found = code.find(snippets[c].code, at) if c in tokens else -1
            if found < 0:  # (not a slice after all, e.g. redacted otherwise: read it whole)
                parts, at = [], 0
                break
            parts += [_normalised(code[at:found], s.language), tokens[c]]
            at = found + len(snippets[c].code)
        tokens[i] = "".join(parts) + _normalised(code[at:], s.language)
    return [tokens[i] for i in range(len(snippets))]


def band_keys(code: str, language: str, kind: str = "function") -> tuple[int, ...] | None:
    """The `BANDS` band keys of one snippet, or None when it is not to be grouped (too small, a doc)."""
    return file_band_keys([Snippet("", language, kind, "", 1, 1, code, None, "", None)])[0]


def file_band_keys(snippets: Sequence[Snippet]) -> list[tuple[int, ...] | None]:
    """`band_keys` of each of a file's snippets, sketched in one call into rensa."""
    shingled: list[list[str] | None] = []
    for tokens in _file_tokens(snippets):
        n = len(tokens) - SHINGLE + 1
        shingled.append([tokens[i : i + SHINGLE] for i in range(n)] if len(tokens) >= MIN_TOKENS else None)
    sets = [s for s in shingled if s is not None]
    digests = iter(RMinHash.digests_from_token_sets(sets, NUM_PERM, SEED) if sets else ())
    return [
        None if sh is None else _keys(next(digests), _space(s))
        for sh, s in zip(shingled, snippets, strict=True)
    ]
