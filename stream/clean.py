"""Answer cleaning: mark an answer's defects with reasons from a fixed set.

`flags(text, prompt=...)` returns the reasons (in the order of ``REASONS``) that apply to one answer;
an empty list means clean. It is pure and fast (no tokenizer, no network) so the writer can run it on
every done record. The reasons, and what triggers each:

- ``replacement_char``: the text holds U+FFFD, the mark of bytes lost in decoding.
- ``control_chars``: NUL or another C0/C1 control character other than ``\\n``, ``\\r``, ``\\t``.
- ``too_short``: fewer than ``MIN_WORDS`` words (a word is a run of letters/digits, code names included;
  a CJK character or kana counts as one).
- ``repetitive``: the answer repeats itself: of its word 4-grams (at least ``MIN_REPEAT_NGRAMS``), half
  or more (``REPEAT_SHARE``) are repeats of an earlier one; or, of its lines of ``MIN_LINE_CHARS`` or
  more characters (at least ``MIN_REPEAT_LINES`` of them; shorter ones such as ``}`` do not count),
  half or more are copies of an earlier line.
- ``echoes_prompt``: most of the answer is copied from the prompt: ``ECHO_SHARE`` or more of the
  answer's word 5-grams occur in the prompt (needs ``prompt``).
- ``refusal``: the answer opens with a common refusal phrasing ("I'm sorry, but I can't ...",
  "As an AI language model ...") within its first ``REFUSAL_WINDOW`` characters.
"""

from __future__ import annotations

import re

__all__ = ["REASONS", "MIN_WORDS", "flags", "flags_of_data"]

REASONS: tuple[str, ...] = (
    "replacement_char",
    "control_chars",
    "too_short",
    "repetitive",
    "echoes_prompt",
    "refusal",
)

MIN_WORDS = 5
REPEAT_N = 4
MIN_REPEAT_NGRAMS = 12
REPEAT_SHARE = 0.5
MIN_REPEAT_LINES = 4
MIN_LINE_CHARS = 8
ECHO_N = 5
ECHO_SHARE = 0.6
REFUSAL_WINDOW = 160

# A word: a run of letters/digits; in scripts written without spaces (CJK ideographs, kana) each character
# counts as one, about what a tokenizer makes of them.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")
# C0 controls (NUL included) but \t \n \r, DEL, and the C1 controls: Unicode's category Cc less those three
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_REFUSAL = re.compile(
    r"^\W*(?:"
    r"(?:i'?m|i am)\s+(?:sorry|afraid)\b[^.]{0,80}?\b(?:can(?:'|no)?t|cannot|unable|not able|won'?t)"
    r"|i\s+(?:can(?:'|no)?t|cannot|won'?t|will not|am unable to|am not able to)\s+"
    r"(?:help|assist|provide|do|comply|fulfil|fulfill|answer|explain|complete)"
    r"|sorry,?\s+(?:but\s+)?i\s+(?:can(?:'|no)?t|cannot)"
    r"|as an ai(?: language model)?\b"
    r"|i apologi[sz]e,?\s+but\b"
    r")",
    re.IGNORECASE,
)


def flags(text: str, *, prompt: str | None = None) -> list[str]:
    """The cleaning reasons (a subset of ``REASONS``, in its order) that apply to ``text``."""
    found: set[str] = set()
    if "\ufffd" in text:
        found.add("replacement_char")
    if _CONTROLS.search(text):
        found.add("control_chars")
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) < MIN_WORDS:
        found.add("too_short")
    if _repetitive(words, text):
        found.add("repetitive")
    if prompt and _echoes(words, prompt):
        found.add("echoes_prompt")
    if _REFUSAL.search(text[:REFUSAL_WINDOW].replace("\u2019", "'")):
        found.add("refusal")
    return [r for r in REASONS if r in found]


def flags_of_data(data: object, *, prompt: str | None = None) -> list[str]:
    """The reasons for a structured answer: the union over its text fields (strings at any depth).

    Length is judged on the fields together (a record of short fields is not short), the other checks
    on each field, so one repeating or refusing field marks the record.
    """
    texts = [t for t in _strings(data) if t.strip()]
    if not texts:
        return ["too_short"]
    found = set(flags("\n".join(texts), prompt=prompt)) & {"too_short"}
    for text in texts:
        found.update(r for r in flags(text, prompt=prompt) if r != "too_short")
    return [r for r in REASONS if r in found]


def _strings(data: object) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for v in data.values() for s in _strings(v)]
    if isinstance(data, (list, tuple)):
        return [s for v in data for s in _strings(v)]
    return []


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def _repetitive(words: list[str], text: str) -> bool:
    grams = _ngrams(words, REPEAT_N)
    if len(grams) >= MIN_REPEAT_NGRAMS and 1 - len(set(grams)) / len(grams) >= REPEAT_SHARE:
        return True
    lines = [ln.strip() for ln in text.splitlines() if len(ln.strip()) >= MIN_LINE_CHARS]
    if len(lines) < MIN_REPEAT_LINES:
        return False
    return (len(lines) - len(set(lines))) / len(lines) >= REPEAT_SHARE


def _echoes(words: list[str], prompt: str) -> bool:
    """Whether ECHO_SHARE of the answer's word 5-grams occur in the prompt (its context included, often
    thousands of words: an ASCII prompt is cut into words by `str.translate`, the same words as `_WORD`
    and several times faster, and its 5-grams made with `zip`)."""
    grams = _ngrams(words, ECHO_N)
    if not grams:
        return False
    lower = prompt.lower()
    cut = lower.translate(_NOT_WORD).split() if lower.isascii() else _WORD.findall(lower)
    source = set(zip(*(cut[i:] for i in range(ECHO_N)), strict=False))
    copied = sum(1 for g in grams if g in source)
    return copied / len(grams) >= ECHO_SHARE


# every ASCII character that is not part of a word (letters, digits, _) becomes a space
_NOT_WORD = {c: " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_")}
