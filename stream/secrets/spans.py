"""Where a secret sits in its line: from the values a detect-secrets plugin yields to spans of the text,
after detect-secrets' heuristic filters (and ours) for the detectors that guess.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator

from .detectors import Detector, State

__all__ = ["spans", "occurrences", "spreads"]

# detect-secrets yields values, not positions, and a few values are not the whole token: GitHub and GitLab
# yield the regex's group (the "ghp" prefix), so their whole matches are taken instead; a JWT match stops
# before the signature; npm's runs to the end of the line; Artifactory's keeps the delimiters around it.
_WHOLE_MATCH = frozenset({"github_token", "gitlab_token"})
_EXTEND = {"jwt": re.compile(r"[A-Za-z0-9_.+/=-]*")}
_CUT = {"npm_token": re.compile(r"[A-Za-z0-9_-]+")}
_TRIM = {"artifactory_token": " \t\"'=:"}
_SHORT = 8  # values shorter than this are matched only where they do not run into a word


def _quoted(line: str, s: int, e: int) -> bool:
    return 0 < s and e < len(line) and line[s - 1] == line[e] and line[e] in "'\"`"


# Where the regexes of the detectors that yield ordinary words put them: keyword and high-entropy values
# between quotes (`password = "password"` has one secret), a basic-auth password between ":" and "@".
_ANCHORED: dict[str, Callable[[str, int, int], bool]] = {
    "password_assignment": _quoted,
    "high_entropy_base64": _quoted,
    "high_entropy_hex": _quoted,
    "basic_auth": lambda line, s, e: line[s - 1 : s] == ":" and line[e : e + 1] == "@",
}


def spans(state: State, d: Detector, line: str) -> Iterator[tuple[int, int]]:
    """Where in `line` detector `d` finds secrets (after filters), as spans."""
    plugin = d.plugin
    if d.kind in _WHOLE_MATCH:
        if any(True for _ in plugin.analyze_string(line)):
            for regex in plugin.denylist:
                for m in regex.finditer(line):
                    yield m.span()
        return
    for raw in dict.fromkeys(plugin.analyze_string(line)):
        if not raw:
            continue
        if d.limit is not None and plugin.calculate_shannon_entropy(raw) <= d.limit:
            continue
        if d.generic and _filtered(state, d, raw, line):
            continue
        value = raw.strip(_TRIM[d.kind]) if d.kind in _TRIM else raw
        if not value:
            continue
        # A value that is not in the line (no plugin yields one) would take the line with it, not be lost.
        for s, e in occurrences(value, line, _ANCHORED.get(d.kind)) or [
            (len(line) - len(line.lstrip()), len(line))
        ]:
            if d.kind in _EXTEND:
                e = _EXTEND[d.kind].match(line, e).end()  # type: ignore[union-attr]
            elif d.kind in _CUT:
                m = _CUT[d.kind].match(line, s)
                e = m.end() if m else e
            yield s, e


def occurrences(
    value: str, line: str, anchored: Callable[[str, int, int], bool] | None = None, *, bounded: bool = False
) -> list[tuple[int, int]]:
    """The places of `value` in `line`: where `anchored` says the detector's regex put it, if anywhere. A short
    value (a password like "pass") is taken only where it does not run into a word (not the "pass" in
    "password"), unless it occurs nowhere else; with `bounded`, any value is taken only there."""
    found = []
    pos = line.find(value)
    while pos != -1:
        found.append((pos, pos + len(value)))
        pos = line.find(value, pos + len(value))
    if anchored is not None:
        found = [(s, e) for s, e in found if anchored(line, s, e)] or found
    if bounded:
        return [(s, e) for s, e in found if not _runs_on(line, s, e, value)]
    if len(value) >= _SHORT or len(found) < 2:
        return found
    bounded_found = [(s, e) for s, e in found if not _runs_on(line, s, e, value)]
    return bounded_found or found


def spreads(value: str) -> bool:
    """Whether other occurrences of a value found on one line are redacted too, wherever they stand alone in
    the text: not for short values or plain words (a password "password" must not take every mention of the
    word with it)."""
    return len(value) >= _SHORT and not value.isalpha()


def _runs_on(line: str, s: int, e: int, value: str) -> bool:
    before = s > 0 and _is_word(line[s - 1]) and _is_word(value[0])
    after = e < len(line) and _is_word(line[e]) and _is_word(value[-1])
    return before or after


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _filtered(state: State, d: Detector, value: str, line: str) -> bool:
    """detect-secrets' default heuristic filters, called directly (not through its settings)."""
    h = state.heuristic
    return (
        h.is_sequential_string(value)
        or h.is_potential_uuid(value)
        or h.is_templated_secret(value)
        or h.is_prefixed_with_dollar_sign(value)
        or h.is_not_alphanumeric_string(value)
        or h.is_likely_id_string(value, line, d.plugin)  # not for regex-based plugins (basic auth)
        # `password = get_password("x")`: only for the keyword detector; a token in a call is still a token
        or (d.kind == "password_assignment" and h.is_indirect_reference(line))
        or (d.limit is not None and _is_alphabet(value))
    )


def _is_alphabet(value: str) -> bool:
    """An alphabet or a slice of one ("ABC...XYZ234567", "abcd...xyz0123456789_"): at least half the
    neighbouring characters are neighbours in the character table too. Random base64 of 20-64 characters
    stays under 0.3."""
    pairs = len(value) - 1
    steps = sum(1 for a, b in itertools.pairwise(value) if abs(ord(b) - ord(a)) == 1)
    return pairs > 0 and steps * 2 >= pairs
