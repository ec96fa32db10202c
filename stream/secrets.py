"""Find credentials in a snippet before it leaves the machine, and cut them out of the text.

Detection is detect-secrets' (26 of its 27 plugin classes, listed in `_PLUGINS`), without its global
state: each process makes its own plugin instances on first use and asks them only
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
prefilter (`_Gate`: for every detector, checks that each of its matches passes) looks at the whole text first,
and only the lines that pass it go through the plugins; tests/test_secrets.py checks that this loses nothing.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import import_module
from typing import Any, NamedTuple

__all__ = ["Hit", "SecretScanner", "KINDS", "EXCLUDED_PLUGINS", "placeholder"]


@dataclass(frozen=True, slots=True)
class Hit:
    """One credential found: what kind (one of `KINDS`) and on which line (1-based). Never the value."""

    kind: str
    line: int


# (module under detect_secrets.plugins, class, kind, generic), in priority order: when detectors claim
# overlapping text, the first one's kind names the redaction. Generic detectors guess from a variable name or
# from the shape of a string, so detect-secrets' heuristic filters apply to them.
_PLUGINS: tuple[tuple[str, str, str, bool], ...] = (
    ("private_key", "PrivateKeyDetector", "private_key", False),
    ("aws", "AWSKeyDetector", "aws_access_key", False),
    ("github_token", "GitHubTokenDetector", "github_token", False),
    ("gitlab_token", "GitLabTokenDetector", "gitlab_token", False),
    ("slack", "SlackDetector", "slack_token", False),
    ("openai", "OpenAIDetector", "openai_key", False),
    ("stripe", "StripeDetector", "stripe_key", False),
    ("sendgrid", "SendGridDetector", "sendgrid_key", False),
    ("pypi_token", "PypiTokenDetector", "pypi_token", False),
    ("npm", "NpmDetector", "npm_token", False),
    ("twilio", "TwilioKeyDetector", "twilio_key", False),
    ("mailchimp", "MailchimpDetector", "mailchimp_key", False),
    ("square_oauth", "SquareOAuthDetector", "square_oauth_secret", False),
    ("telegram_token", "TelegramBotTokenDetector", "telegram_token", False),
    ("discord", "DiscordBotTokenDetector", "discord_token", False),
    ("artifactory", "ArtifactoryDetector", "artifactory_token", False),
    ("azure_storage_key", "AzureStorageKeyDetector", "azure_storage_key", False),
    ("ibm_cloud_iam", "IbmCloudIamDetector", "ibm_cloud_iam_key", False),
    ("ibm_cos_hmac", "IbmCosHmacDetector", "ibm_cos_hmac", False),
    ("cloudant", "CloudantDetector", "cloudant_credentials", False),
    ("softlayer", "SoftlayerDetector", "softlayer_credentials", False),
    ("jwt", "JwtTokenDetector", "jwt", False),
    ("basic_auth", "BasicAuthDetector", "basic_auth", True),
    ("keyword", "KeywordDetector", "password_assignment", True),
    ("high_entropy_strings", "Base64HighEntropyString", "high_entropy_base64", True),
    ("high_entropy_strings", "HexHighEntropyString", "high_entropy_hex", True),
)

#: Every kind a `Hit` can have, in priority order (``private_key`` covers PEM blocks and PuTTY key files;
#: ``password_assignment`` is detect-secrets' keyword detector: a quoted value given to a name like password,
#: secret, api_key, ...).
KINDS: tuple[str, ...] = tuple(kind for _, _, kind, _ in _PLUGINS)

#: detect-secrets plugins not used, and why.
EXCLUDED_PLUGINS: dict[str, str] = {
    "IPPublicDetector": "a public IPv4 address is not a credential (it flags 631 lines of the stdlib)",
}

# Entropy limits (bits per character, Shannon) of the high-entropy detectors: detect-secrets' defaults. On the
# stdlib, 4.5 flags no identifier (the longest reach 4.43) and 4.0 flags hundreds; see bench/secrets_scan.py.
BASE64_LIMIT = 4.5
HEX_LIMIT = 3.0

_PLACEHOLDER = re.compile(r"<REDACTED:[a-z0-9_]+>")
_NEWLINE = re.compile(r"\r\n|\r|\n")  # the line ends Python's tokenizer knows (not \f, \x1c, \u2028, ...)


def placeholder(kind: str) -> str:
    """The text that replaces a secret of `kind`."""
    return f"<REDACTED:{kind}>"


# --- per-process state ----------------------------------------------------------------------------------


class _Detector(NamedTuple):
    kind: str
    rank: int  # priority: lower wins
    plugin: Any
    generic: bool
    limit: float | None  # entropy limit, for the high-entropy detectors


class _State(NamedTuple):
    detectors: tuple[_Detector, ...]
    gate: _Gate
    heuristic: Any  # detect_secrets.filters.heuristic


_state: _State | None = None


def _load() -> _State:
    """Made on first use in each process (importing detect-secrets takes ~60 ms and pulls in requests).
    Without a lock: two threads racing here build equal states and one is kept, which is harmless; a lock
    would be one more thing a fork could leave held."""
    global _state
    if _state is None:
        _state = _build()
    return _state


def _build() -> _State:
    heuristic = import_module("detect_secrets.filters.heuristic")
    detectors = []
    for rank, (module, name, kind, generic) in enumerate(_PLUGINS):
        cls = getattr(import_module(f"detect_secrets.plugins.{module}"), name)
        limit = {"high_entropy_base64": BASE64_LIMIT, "high_entropy_hex": HEX_LIMIT}.get(kind)
        plugin = cls(limit=limit) if limit is not None else cls()
        detectors.append(_Detector(kind, rank, plugin, generic, limit))
    return _State(tuple(detectors), _Gate(detectors), heuristic)


# --- the prefilter --------------------------------------------------------------------------------------
# For each detector, checks that every one of its matches in a line passes (necessary conditions): a copy or a
# loosening of the plugin's own regex. A text that passes none cannot yield a finding; a snippet that passes
# some goes through the plugins line by line, only on the lines that pass some themselves. Python's re tries
# every branch of an alternation at every position, so one big alternation costs ~250 ns a character; these
# are separate searches that each start with a literal (found by a fast scan) or a quote, ~20 ns together.
#
# Case-insensitive plugin patterns are checked on the lowered text. Under re.IGNORECASE an ASCII letter also
# matches the Kelvin sign (k), long s (s), dotless i and dotted capital I (i): lower() folds the first, the
# next two are replaced, and a text with the last (whose lowercase is two characters) takes the exact
# patterns.
_LITERALS = (
    "PRIVATE KEY",  # PrivateKeyDetector, PEM blocks
    "PuTTY-User-Key-File-2",  # PrivateKeyDetector
    "T3BlbkFJ",  # OpenAI
    "k_live_",  # Stripe
    "SG.",  # SendGrid
    "pypi-AgE",  # PyPI
    ":_authToken=",  # npm
    "sq0csp-",  # Square
    "eyJ",  # JWT
    "AccountKey=",  # Azure
    "GR1348941",  # GitLab runner token
)
_PATTERNS = (
    r"(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}",  # AWS key id
    r"gh[pousr]_",  # GitHub
    r"gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas)-",  # GitLab
    r"AC[a-z0-9]{32}",  # Twilio
    r"SK[a-z0-9]{32}",  # Twilio
    r"-us[0-9]",  # Mailchimp
    r":[0-9A-Za-z_-]{35}",  # Telegram: <digits>:<35>
    r"\.[a-zA-Z\d_-]{6}\.[a-zA-Z\d_-]{27}",  # Discord: <24>.<6>.<27>
    r"AKC[a-zA-Z0-9]{10}|AP[\dABCDEF][a-zA-Z0-9]{8}",  # Artifactory
    r"://\S*@",  # basic auth: ://user:password@
    # high entropy: more than 2**limit characters between quotes (n characters carry at most log2(n) bits);
    # completed from the plugins' charsets and limits in `_Gate.__init__`
)
_KEY_NAMES = ("api", "auth", "service", "account", "db", "database", "priv", "private", "client")
_PASS_NAMES = ("db", "database", "key")
_LOWER_LITERALS = (
    *("passw", "pwd", "secret", "contrase"),  # keyword detector's names (with the first two patterns below)
    "hooks.slack.com",  # Slack webhook
)
_LOWER_PATTERNS = (
    "key(?:" + "|".join(f"(?<={n}{sep}key)" for n in _KEY_NAMES for sep in ("_", "")) + ")",  # api_key, ...
    "pass(?:" + "|".join(f"(?<={n}{sep}pass)" for n in _PASS_NAMES for sep in ("_", "")) + ")",  # db_pass
    r"xox[abposr]-",  # Slack
    r"cl(?:oudant|ou)?[_-]?(?:api)?(?:key|pw|pass|token)|cloudant\.com",  # Cloudant
)
# AWS secret key: aws...key...'<40>', case-insensitive; see `_Gate.__init__`.
_AWS_SECRET = r"['\"][0-9a-z/+]{40}['\"]"
_AWS_SECRET_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ/+"
# The same, exactly case-insensitive, for a text that cannot be lowered in place.
_CASELESS_PATTERNS = (
    r"passw|pwd|secret|contrase|(?:"
    + "|".join(_KEY_NAMES)
    + ")_?key|(?:"
    + "|".join(_PASS_NAMES)
    + ")_?pass",
    r"hooks\.slack\.com",
    *_LOWER_PATTERNS[2:],
)
# IBM IAM <44>, IBM COS <48 hex>, SoftLayer <64>, Cloudant <64 hex>: a run of 44 [A-Za-z0-9_-] (or any
# non-ASCII), found as 44 "w" in the UTF-8 bytes mapped to w or space, which is 10x faster than [\w-]{44}.
_RUN = b"w" * 44
_RUN_REGEX = re.compile(r"[\w-]{44}")  # where: \w covers what IGNORECASE adds
_RUN_TABLE = bytes(0x77 if b >= 0x80 or chr(b).isalnum() or chr(b) in "_-" else 0x20 for b in range(256))


class _Gate:
    """``gate(text)`` is False only if no detector can find anything in `text`; ``gate.lines(text, starts)``
    gives the lines (indexes, by their `starts` offsets) that would pass on their own."""

    __slots__ = ("literals", "patterns", "lower_literals", "lower_patterns", "non_ascii", "caseless")

    def __init__(self, detectors: list[_Detector]) -> None:
        quoted = []
        aws_covered = True
        for d in detectors:
            if d.limit is not None:
                shortest = int(2**d.limit) + 1  # n characters carry at most log2(n) bits
                quoted.append(rf"['\"][{re.escape(d.plugin.charset)}]{{{shortest},}}['\"]")
                if d.kind == "high_entropy_base64":
                    # An ASCII '<40 of [0-9a-zA-Z/+]>' is then a quoted high-entropy candidate already.
                    aws_covered = shortest <= 40 and set(_AWS_SECRET_CHARS) <= set(d.plugin.charset)
        self.literals = _LITERALS
        self.patterns = tuple(re.compile(p) for p in (*_PATTERNS, "|".join(quoted)))
        self.lower_literals = _LOWER_LITERALS
        aws = (_AWS_SECRET,)
        self.lower_patterns = tuple(re.compile(p) for p in (*_LOWER_PATTERNS, *(() if aws_covered else aws)))
        self.non_ascii = tuple(re.compile(p) for p in (aws if aws_covered else ()))
        self.caseless = tuple(re.compile(p, re.IGNORECASE) for p in (*_CASELESS_PATTERNS, *aws))

    def __call__(self, text: str) -> bool:
        if any(lit in text for lit in self.literals) or any(p.search(text) for p in self.patterns):
            return True
        if _RUN in text.encode("utf-8", "surrogatepass").translate(_RUN_TABLE):
            return True
        low = _fold(text)
        if low is None:
            return any(p.search(text) for p in self.caseless)
        if any(lit in low for lit in self.lower_literals) or any(p.search(low) for p in self.lower_patterns):
            return True
        return not text.isascii() and any(p.search(low) for p in self.non_ascii)

    def lines(self, text: str, starts: list[int]) -> list[int]:
        """The same checks, searched over the whole text for where they match (not per line: a gated snippet
        can be a 3,000-line class)."""
        found: set[int] = set()
        for lit in self.literals:
            _mark(found, starts, text, lambda s, pos, lit=lit: s.find(lit, pos))
        for p in (*self.patterns, _RUN_REGEX):
            _mark(found, starts, text, _searcher(p))
        low = _fold(text)
        if low is None:
            for p in self.caseless:
                _mark(found, starts, text, _searcher(p))
        else:  # same length as text: offsets agree
            for lit in self.lower_literals:
                _mark(found, starts, low, lambda s, pos, lit=lit: s.find(lit, pos))
            for p in (*self.lower_patterns, *(self.non_ascii if not text.isascii() else ())):
                _mark(found, starts, low, _searcher(p))
        return sorted(found)


def _searcher(p: re.Pattern[str]) -> Callable[[str, int], int]:
    def find(s: str, pos: int) -> int:
        m = p.search(s, pos)
        return -1 if m is None else m.start()

    return find


def _mark(found: set[int], starts: list[int], subject: str, find: Callable[[str, int], int]) -> None:
    """Add the index of every line where `find` matches. After a match the search goes on from the next line's
    start: the leftmost match from there starts at or before any match inside a later line."""
    last = len(starts) - 1
    pos = find(subject, 0)
    while pos != -1:
        i = bisect.bisect_right(starts, pos) - 1
        found.add(i)
        if i == last:
            break
        pos = find(subject, starts[i + 1])


def _fold(text: str) -> str | None:
    """`text` lowered so that what a case-insensitive ASCII pattern matches becomes its lowercase letters, or
    None when that cannot be done without changing its length."""
    low = text.lower()
    if text.isascii():
        return low
    if len(low) != len(text):
        return None
    return low.replace("\u0131", "i").replace("\u017f", "s")


# --- where a value sits in its line ---------------------------------------------------------------------
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
        state = _load()
        if prefilter and not state.gate(text):
            return [], []
        starts = [0]
        ends = []
        for m in _NEWLINE.finditer(text):
            ends.append(m.start())
            starts.append(m.end())
        ends.append(len(text))
        protected = [m.span() for m in _PLACEHOLDER.finditer(text)]

        groups: list[tuple[str, int]] = []  # (kind, line index)
        claims: list[_Claim] = []
        pem_lines: set[int] = set()
        pem_bodies: list[tuple[int, int]] = []
        if "PRIVATE KEY" in text:
            for begin, body, spans in _pem_blocks(text):
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
                for s, e in _spans(state, d, line):
                    s += offset
                    e += offset
                    if _overlaps(protected, s, e):
                        continue  # text inside an earlier redaction is never a secret
                    if any(b <= s and e <= z for b, z in pem_bodies):
                        continue  # a PEM body line (quoted, it is high entropy): the block covers it
                    claims.append(_Claim(s, e, d.rank, len(groups)))
                    groups.append((d.kind, i))
                    value = text[s:e]
                    if _spreads(value) and value not in values:
                        values[value] = (d.kind, d.rank)

        for value, (kind, rank) in values.items():
            for pos, end in _occurrences(value, text, bounded=True):
                if not _overlaps(protected, pos, end):
                    claims.append(_Claim(pos, end, rank, len(groups)))
                    groups.append((kind, bisect.bisect_right(starts, pos) - 1))

        return _resolve(claims, groups)


def _spans(state: _State, d: _Detector, line: str) -> Iterator[tuple[int, int]]:
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
        for s, e in _occurrences(value, line, _ANCHORED.get(d.kind)) or [
            (len(line) - len(line.lstrip()), len(line))
        ]:
            if d.kind in _EXTEND:
                e = _EXTEND[d.kind].match(line, e).end()  # type: ignore[union-attr]
            elif d.kind in _CUT:
                m = _CUT[d.kind].match(line, s)
                e = m.end() if m else e
            yield s, e


def _occurrences(
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


def _spreads(value: str) -> bool:
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


def _filtered(state: _State, d: _Detector, value: str, line: str) -> bool:
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


# --- PEM blocks -------------------------------------------------------------------------------------------

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


def _pem_blocks(text: str) -> Iterator[tuple[int, tuple[int, int], list[tuple[int, int]]]]:
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
    m = _NEWLINE.search(text, pos)
    return m.start() if m else len(text)


def _skip_newline(text: str, pos: int) -> int:
    m = _NEWLINE.match(text, pos)
    return m.end() if m else pos
