"""PEM private keys: each ``-----BEGIN ... PRIVATE KEY-----`` block in a text, its body and the base64 runs
that make it key material (a marker with none after it is not a secret).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .rules import NEWLINE

__all__ = ["pem_blocks"]

_PEM_BEGIN = re.compile(r"(?:-{4,5} ?)?BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?(?: ?-{4,5})?")
_PEM_END = re.compile(r"-{4,5} ?END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}")
# A body line holds base64, whitespace, quotes, escapes, the punctuation of string concatenation and PEM
# headers ("Proc-Type: 4,ENCRYPTED"); a line with anything else (code between a BEGIN and an END that a PEM
# parser names) is not part of the key and is left alone.
_PEM_BODY_LINE = re.compile(r"[A-Za-z0-9+/=\s\"'`,()\\:-]*")
# In a body line: an earlier redaction or an escape (the n of \n is not key material) as one token, else a
# run of base64 (group 1).
_PEM_TOKEN = re.compile(r"<REDACTED:[a-z0-9_]+>|\\.|([A-Za-z0-9+/=]+)")
_PEM_HEADER = re.compile(r"\s*[\"'`]?[A-Za-z][A-Za-z0-9-]*: ")
_PEM_RUN = 16  # runs this long are key material; a body line has 64 characters
_PEM_MATERIAL = 64  # this many characters of such runs make a key (the smallest, EC P-256, has ~180)


def pem_blocks(text: str) -> Iterator[tuple[int, tuple[int, int], list[tuple[int, int]]]]:
    """Each BEGIN marker's offset, its body's span and the body's base64 runs (none: no key material, not a
    secret).

    The body runs to the END marker; with none before the next BEGIN or the end of the text (a key cut
    short, or assembled elsewhere), over the body lines that follow as long as each holds a long run."""
    begins = list(_PEM_BEGIN.finditer(text))
    for n, begin in enumerate(begins):
        limit = begins[n + 1].start() if n + 1 < len(begins) else len(text)
        end = _PEM_END.search(text, begin.end(), limit)
        if end is not None:
            stop = end.start()
        else:
            stop = _line_end(text, begin.end())
            while stop < limit:
                start = _skip_newline(text, stop)
                nxt = _line_end(text, start)
                if not any(e - s >= _PEM_RUN for s, e in _body_runs(text, start, nxt)):
                    break
                stop = nxt
        runs = _body_runs(text, begin.end(), stop)
        material = sum(e - s for s, e in runs if e - s >= _PEM_RUN) >= _PEM_MATERIAL
        yield begin.start(), (begin.end(), stop), runs if material else []


def _body_runs(text: str, start: int, stop: int) -> list[tuple[int, int]]:
    """The base64 runs of the body lines between `start` and `stop`, headers ("Proc-Type: ...", also between
    \\n escapes on one line) left out: they are not key material."""
    runs: list[tuple[int, int]] = []
    pos = start
    while pos <= stop:
        end = min(_line_end(text, pos), stop)
        if _PEM_BODY_LINE.fullmatch(text, pos, end):
            seg = pos
            while seg <= end:
                cut = text.find("\\n", seg, end)
                seg_end = end if cut == -1 else cut
                if not _PEM_HEADER.match(text, seg, seg_end):
                    runs.extend(m.span(1) for m in _PEM_TOKEN.finditer(text, seg, seg_end) if m.group(1))
                if cut == -1:
                    break
                seg = cut + 2
        if end >= stop:
            break
        pos = _skip_newline(text, end)
    return runs


def _line_end(text: str, pos: int) -> int:
    m = NEWLINE.search(text, pos)
    return m.start() if m else len(text)


def _skip_newline(text: str, pos: int) -> int:
    m = NEWLINE.match(text, pos)
    return m.end() if m else pos
