"""Find credentials in a snippet before it leaves the machine, and cut them out of the text.

Detection is detect-secrets' (26 of its 27 plugin classes, listed in :data:`~stream.secrets.rules.PLUGINS`),
without its global state: each process makes its own plugin instances on first use and asks them only
``analyze_string(line)``, which reads nothing but the plugin's compiled regexes. ``detect_secrets.settings``
is never read or written, because it is one mutable singleton per process: ``transient_settings()`` swaps it
for every thread and clears the plugin and filter caches on the way in and out; ``scan_line()`` rewrites it on
each call and, with its eager search, swaps the regex of a plugin instance that all threads share (another
thread then matches unquoted strings); and a spawned worker starts with no plugin configured at all, so
``scan_line`` finds nothing there. Verification (network calls) happens only in ``analyze_line``, which is
never called; no baseline is read.

Added here:

* PEM private keys, ``-----BEGIN ... PRIVATE KEY-----`` through ``-----END ...-----`` over any number of
  lines: the markers are kept, the body's base64 becomes one ``<REDACTED:private_key>``, and every line
  stays, so line numbers do not move. A marker with no key material after it is not a secret.
* detect-secrets' heuristic filters (sequential strings, UUIDs, ``{templated}``/``$VARS``, ``x_id = ...``,
  ``secret = get_secret()``, no letters) for the detectors that guess from a name or a string's shape
  (keyword, high entropy, basic auth) only: a vendor's fixed token format is reported as matched. Plus one
  filter of ours for high-entropy strings: alphabets such as ``"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"``.
* A value found on one line (8 characters or more, not a plain word) is redacted wherever else it stands in
  the text too.

Speed: running the plugins costs ~45 µs a line and almost no snippet holds anything they would find, so a
prefilter (:class:`~stream.secrets.gate.Gate`: for every detector, checks that each of its matches passes)
looks at the whole text first, and only the lines that pass it go through the plugins; tests/test_secrets.py
checks that this loses nothing.

Modules: this one scans and redacts; :mod:`stream.secrets.rules` holds the plugin list and the patterns,
:mod:`stream.secrets.detectors` loads the plugins, :mod:`stream.secrets.gate` is the prefilter,
:mod:`stream.secrets.spans` places a plugin's findings in the line and :mod:`stream.secrets.pem` finds PEM blocks.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import NamedTuple

from .detectors import load
from .pem import pem_blocks
from .rules import EXCLUDED_PLUGINS, KINDS, NEWLINE
from .spans import occurrences, spreads
from .spans import spans as line_spans

__all__ = ["Hit", "SecretScanner", "KINDS", "EXCLUDED_PLUGINS", "placeholder"]


@dataclass(frozen=True, slots=True)
class Hit:
    """One credential found: what kind (one of `KINDS`) and on which line (1-based). Never the value."""

    kind: str
    line: int


_PLACEHOLDER = re.compile(r"<REDACTED:[a-z0-9_]+>")


def placeholder(kind: str) -> str:
    """The text that replaces a secret of `kind`."""
    return f"<REDACTED:{kind}>"


class _Claim(NamedTuple):
    start: int  # offsets in the whole text
    end: int
    rank: int
    group: int  # claims of one group make one hit (a PEM block is one hit with many spans)


class SecretScanner:
    """Scans text for credentials (`scan`) and replaces them with ``<REDACTED:kind>`` (`redact`).

    Stateless and cheap to make; the detectors are loaded once per process, on first use. Safe to call from
    any thread and from worker processes (fork or spawn), and picklable.
    """

    __slots__ = ()

    def __init__(self) -> None:
        pass

    def scan(self, text: str) -> list[Hit]:
        """The credentials in `text`, in order of position."""
        return self._find(text)[0]

    def redact(self, text: str) -> tuple[str, list[Hit]]:
        """`text` with each credential replaced by ``<REDACTED:kind>``, and the hits (as `scan` would give).

        Only the secret value is replaced, so the code around it stays readable; line breaks are never
        removed, so every line keeps its number. Redacting redacted text finds nothing more."""
        hits, edits = self._find(text)
        if not edits:
            return text, hits
        out = []
        pos = 0
        for start, end, replacement in edits:
            out.append(text[pos:start])
            out.append(replacement)
            pos = end
        out.append(text[pos:])
        return "".join(out), hits

    # ---------------------------------------------------------------------------------------------------

    def _find(self, text: str, *, prefilter: bool = True) -> tuple[list[Hit], list[tuple[int, int, str]]]:
        """Hits and edits (start, end, replacement: in order, not overlapping). `prefilter=False` runs every
        line through the plugins (the reference the prefilter is tested against)."""
        state = load()
        if prefilter and not state.gate(text):
            return [], []
        starts = [0]
        ends = []
        for m in NEWLINE.finditer(text):
            ends.append(m.start())
            starts.append(m.end())
        ends.append(len(text))
        protected = [m.span() for m in _PLACEHOLDER.finditer(text)]

        groups: list[tuple[str, int]] = []  # (kind, line index)
        claims: list[_Claim] = []
        pem_lines: set[int] = set()
        pem_bodies: list[tuple[int, int]] = []
        if "PRIVATE KEY" in text:
            for begin, body, spans in pem_blocks(text):
                line = bisect.bisect_right(starts, begin) - 1
                pem_lines.add(line)
                if spans:
                    claims.extend(_Claim(s, e, 0, len(groups)) for s, e in spans)
                    groups.append(("private_key", line))
                    pem_bodies.append(body)

        values: dict[str, tuple[str, int]] = {}  # value -> (kind, rank), for finding it on other lines
        for i in state.gate.lines(text, starts) if prefilter else range(len(starts)):
            offset = starts[i]
            line = text[offset : ends[i]]
            for d in state.detectors:
                if d.kind == "private_key" and i in pem_lines:
                    continue  # the BEGIN line of a PEM block: judged by its body, above
                for s, e in line_spans(state, d, line):
                    s += offset
                    e += offset
                    if _overlaps(protected, s, e):
                        continue  # text inside an earlier redaction is never a secret
                    if any(b <= s and e <= z for b, z in pem_bodies):
                        continue  # a PEM body line (quoted, it is high entropy): the block covers it
                    claims.append(_Claim(s, e, d.rank, len(groups)))
                    groups.append((d.kind, i))
                    value = text[s:e]
                    if spreads(value) and value not in values:
                        values[value] = (d.kind, d.rank)

        for value, (kind, rank) in values.items():
            for pos, end in occurrences(value, text, bounded=True):
                if not _overlaps(protected, pos, end):
                    claims.append(_Claim(pos, end, rank, len(groups)))
                    groups.append((kind, bisect.bisect_right(starts, pos) - 1))

        return _resolve(claims, groups)


def _overlaps(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(s < end and start < e for s, e in spans)


def _resolve(
    claims: list[_Claim], groups: list[tuple[str, int]]
) -> tuple[list[Hit], list[tuple[int, int, str]]]:
    """Overlapping claims merge into one edit covering them all, named by the highest-priority claim; each
    group that names at least one edit is a hit. A PEM block's first edit is its placeholder, the others
    erase (its body lines stay, empty)."""
    if not claims:
        return [], []
    claims.sort()
    merged: list[list[int]] = []  # [start, end, rank, group]
    for c in claims:
        if merged and c.start < merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], c.end)
            if c.rank < last[2]:
                last[2], last[3] = c.rank, c.group
        else:
            merged.append([c.start, c.end, c.rank, c.group])
    edits = []
    named: dict[int, None] = {}
    for start, end, _, group in merged:
        kind = groups[group][0]
        first = group not in named
        named[group] = None
        edits.append((start, end, placeholder(kind) if first or kind != "private_key" else ""))
    hits = [Hit(groups[g][0], groups[g][1] + 1) for g in named]
    return hits, edits
