"""Near-duplicates: the normalised tokens, the band keys, the groups in the checkpoint, and --near-dup end to
end against the loopback server (one request per group with ask-once, all with keep, nothing on a rerun)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import orjson

from sinks.checkpoint import Checkpoint
from sinks.neardup import CheckpointGroups
from stream.filters import Selection
from stream.neardup import MIN_TOKENS, band_keys, normalise
from stream.pipeline.neardups import MIN_BANDS, NearDups
from stream.pipeline.summary import Summary
from stream.scan import Scanned, scan
from tests.helpers import db_rows, run_args, snipstream

COMPLETIONS = "chat/completions"

# The same helper three times (renamed, other literals, comments and layout), a class and its renamed copy,
# code unlike them, and two tiny functions that differ only in names (too small to group).
_A = '''
"""Module a."""
import json


def load_config(path, default=None):
    """Read a JSON config."""
    # read the file
    with open(path) as fh:
        data = json.load(fh)
    if not data:
        return default
    result = {}
    for key, value in data.items():
        result[key.lower()] = value * 2
    return result


class Counter:
    def __init__(self, start=0):
        self.count = start
        self.history = []

    def bump(self, step=1):
        self.history.append(self.count)
        self.count += step
        if self.count > 100:
            self.count = 0
            self.history.clear()
        return self.count


def tiny(x):
    return x + 1
'''
_B = """
import json

def read_settings(filename, fallback=0):
    \"\"\"Settings from a file.\"\"\"
    with open(filename) as f:   data = json.load(f)
    if not data: return fallback
    out = {}
    for k, v in data.items():
        out[k.lower()] = v * 10   # scale
    return out

def tiny2(y):
    return y + 2

def unrelated(items):
    total = 0
    for i, item in enumerate(items):
        if i % 2:
            total -= item
        else:
            total += item
    while total > 100:
        total //= 3
    return total
"""
_C = """
import json
class Tally:
    def __init__(self, first=5):
        self.count = first
        self.history = []
    def bump(self, by=2):
        self.history.append(self.count)
        self.count += by
        if self.count > 999: self.count = 1; self.history.clear()
        return self.count

def parse_options(p, d="none"):
    with open(p) as stream:
        raw = json.load(stream)
    if not raw:
        return d
    acc = {}
    for name, val in raw.items():
        acc[name.lower()] = val * 3
    return acc
"""
# Walk order: pkg/a.py, pkg/b.py, pkg/c.py. Groups: load_config (+ read_settings, parse_options), Counter
# (+ Tally), Counter.bump (+ Tally.bump). Not grouped: the two __init__ and the tiny functions (too few
# tokens), unrelated. So 8 requests with ask-once (3 firsts + 5 others), 12 with keep.
FIRSTS = {"load_config", "Counter", "Counter.bump"}
LATER = {"read_settings", "parse_options", "Tally", "Tally.bump"}
SINGLES = {"Counter.__init__", "Tally.__init__", "tiny", "tiny2", "unrelated"}


def copies_tree(root: Path) -> Path:
    for name, text in (("a.py", _A), ("b.py", _B), ("c.py", _C)):
        (root / "pkg").mkdir(parents=True, exist_ok=True)
        (root / "pkg" / name).write_text(text.lstrip())
    return root


def asked(server, tree: Path) -> list[str]:
    """The qualname each completion request asked about: the longest snippet whose code its messages hold
    (a class's prompt holds its methods' code too)."""
    codes = {s.qualname: s.code for item in _scanned(tree) for s in item.snippets}
    names = []
    for req in server.requests:
        if req.path.endswith(COMPLETIONS):
            text = "\n".join(str(m.get("content")) for m in req.body["messages"])
            names.append(max((q for q, code in codes.items() if code in text), key=lambda q: len(codes[q])))
    return names


# --- normalising and band keys -----------------------------------------------------------------------------


def test_names_and_literals_fold_comments_and_layout_go_keywords_and_operators_stay():
    a = "def f(x, y=None):\n    # note\n    return x ** 2 + y  # tail\n"
    b = "def g(a,b=7): return a**2+b"
    assert normalise(a, "python") == [
        "def",
        "I",
        "(",
        "I",
        ",",
        "I",
        "=",
        "L",
        ")",
        ":",
        "return",
        "I",
        "**",
        "L",
        "+",
        "I",
    ]
    assert normalise(a, "python") == normalise(b, "python")
    assert normalise('s = """doc\nmore"""; t = f"{x}"', "python") == ["I", "=", "L", "I", "=", "L"]


def test_other_languages_fold_their_own_literals_and_comments():
    js = "const a = `t ${x}`; // c\n/* block */ if (a === 'q') { return null; }"
    assert normalise(js, "javascript") == [
        "const", "I", "=", "L", ";", "if", "(", "I", "===", "L", ")", "{", "return", "L", ";", "}",
    ]  # fmt: skip
    # a Rust lifetime is not a character literal; a char is
    assert normalise("fn f<'a>(s: &'a str) -> char { 'x' }", "rust") == [
        "fn", "I", "<", "'", "I", ">", "(", "I", ":", "&", "'", "I", "I", ")", "->", "I", "{", "L", "}",
    ]  # fmt: skip
    assert normalise("x := `raw\nstring` // c", "go") == ["I", ":=", "L"]


def test_renamed_copies_share_every_band_and_other_code_shares_none():
    load_config, read_settings, parse_options = (
        next(s.code for s in _snippets(text) if s.kind == "function" and "json" in s.code)
        for text in (_A, _B, _C)
    )
    keys = band_keys(load_config, "python")
    assert keys is not None and len(set(keys)) == len(keys)
    assert band_keys(read_settings, "python") == keys
    # without the docstring (one literal less): most bands, enough to join the group
    shared = sum(a == b for a, b in zip(band_keys(parse_options, "python") or (), keys))
    assert MIN_BANDS <= shared < len(keys)
    unrelated = next(s.code for s in _snippets(_B) if s.qualname == "unrelated")
    assert not set(band_keys(unrelated, "python") or ()) & set(keys)
    # too small to tell from an idiom; a doc section; and a language of its own
    assert len(normalise("def tiny(x):\n    return x + 1\n", "python")) < MIN_TOKENS
    assert band_keys("def tiny(x):\n    return x + 1\n", "python") is None
    assert band_keys(load_config, "markdown", "doc_section") is None
    js = "function f(a, b) { let t = 0; for (let i = 0; i < a.length; i++) { t += a[i] * b; } return t; }"
    assert band_keys(js, "javascript") is not None
    assert not set(band_keys(js, "javascript") or ()) & set(band_keys(js, "typescript") or ())


def test_a_class_is_read_once_with_its_methods_spliced_in_and_reads_as_if_whole():
    from stream.neardup import _file_tokens, _normalised

    snippets = _snippets(_A + _C)
    assert any(s.parent for s in snippets)  # (methods inside classes: the case spliced)
    assert _file_tokens(snippets) == [_normalised(s.code, s.language) for s in snippets]


def _snippets(text: str):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.py"
        path.write_text(textwrap.dedent(text))
        return [s for item in scan([str(path)]) if isinstance(item, Scanned) for s in item.snippets]


# --- the groups in the checkpoint ----------------------------------------------------------------------------


def _scanned(tree: Path) -> list[Scanned]:
    return [i for i in scan([str(tree)], selection=Selection(near_dup=True)) if isinstance(i, Scanned)]


async def _select(db: Path, items: list[Scanned], ask_once: bool) -> tuple[list[str], Summary]:
    summary = Summary()
    async with Checkpoint(db) as ckpt:
        near = await NearDups.open(CheckpointGroups(ckpt), ask_once=ask_once, summary=summary)
        kept = [s.qualname for item in items for s in await near.select(item)]
    return kept, summary


async def test_each_group_keeps_its_first_in_walk_order_across_runs(tmp_path):
    tree, db = copies_tree(tmp_path / "t"), tmp_path / "ck.db"
    items = _scanned(tree)
    assert [i.file.relpath for i in items] == ["pkg/a.py", "pkg/b.py", "pkg/c.py"]
    kept, summary = await _select(db, items, ask_once=True)
    assert set(kept) == FIRSTS | SINGLES
    assert (summary.near_dup_groups, summary.near_dup_members, summary.near_dup_found) == (3, 4, 4)
    assert summary.filtered["near_duplicate"] == 4
    rows = dict(db_rows(db, "SELECT qualname, first FROM near_dup_snippets"))
    assert {q for q, first in rows.items() if first} == FIRSTS | {
        "unrelated"
    }  # (the small ones: not grouped)
    assert {q for q, first in rows.items() if not first} == LATER

    # A rerun in another order (c.py first) still asks the same firsts: roles are read back by snippet id.
    again = _scanned(tree)[::-1]
    kept, summary = await _select(db, again, ask_once=True)
    assert set(kept) == FIRSTS | SINGLES
    assert (summary.near_dup_groups, summary.near_dup_members, summary.near_dup_found) == (3, 4, 0)
    assert db_rows(db, "SELECT count(*) FROM near_dup_snippets") == [(len(rows),)]

    # keep: every snippet is planned, the groups are the same ones
    kept, summary = await _select(db, _scanned(tree), ask_once=False)
    assert set(kept) == FIRSTS | LATER | SINGLES and not summary.filtered


# --- the command line against the loopback server ----------------------------------------------------------


def _run(server, tree: Path, tmp: Path, *extra: str):
    return snipstream(
        *run_args(server, tree, "-o", tmp / "out.ndjson", "--db", tmp / "ck.db", *extra), cwd=tmp
    )


def test_ask_once_sends_one_request_per_group_and_a_rerun_sends_nothing(server, tmp_path):
    tree = copies_tree(tmp_path / "t")
    r = _run(server, tree, tmp_path, "--near-dup", "ask-once")
    assert r.code == 0, r.stderr
    assert server.completions_for(COMPLETIONS) == len(FIRSTS | SINGLES)
    assert sorted(asked(server, tree)) == sorted(FIRSTS | SINGLES)
    records = [orjson.loads(line) for line in (tmp_path / "out.ndjson").read_bytes().splitlines()]
    assert {rec["qualname"] for rec in records} == FIRSTS | SINGLES
    assert "near_duplicate 4" in r.stderr
    assert "near-duplicates: 3 groups, 4 snippets besides each group's first (4 found this run)" in r.stderr

    again = _run(server, tree, tmp_path, "--near-dup", "ask-once")
    assert again.code == 0, again.stderr
    assert server.completions_for(COMPLETIONS) == len(FIRSTS | SINGLES)  # nothing new
    assert (
        "near-duplicates: 3 groups, 4 snippets besides each group's first (0 found this run)" in again.stderr
    )
    members = db_rows(tmp_path / "ck.db", "SELECT qualname FROM near_dup_snippets WHERE first = 0")
    assert {q for (q,) in members} == LATER
    status = snipstream("status", "--db", tmp_path / "ck.db", "--json", cwd=tmp_path)
    assert orjson.loads(status.stdout)["near_dups"] == {"groups": 3, "members": 4}


def test_keep_sends_every_snippet_and_still_records_the_groups(server, tmp_path):
    tree = copies_tree(tmp_path / "t")
    r = _run(server, tree, tmp_path)  # keep is the default
    assert r.code == 0, r.stderr
    assert server.completions_for(COMPLETIONS) == len(FIRSTS | LATER | SINGLES)
    assert "near_duplicate" not in r.stderr
    assert "near-duplicates: 3 groups, 4 snippets besides each group's first (4 found this run)" in r.stderr
    members = db_rows(tmp_path / "ck.db", "SELECT qualname FROM near_dup_snippets WHERE first = 0")
    assert {q for (q,) in members} == LATER

    # Then ask-once on the same checkpoint: the files are looked at again (another selection), the
    # later members are left out and every first is answered already: nothing is sent.
    server.clear()
    r = _run(server, tree, tmp_path, "--near-dup", "ask-once")
    assert r.code == 0, r.stderr
    assert server.completions_for(COMPLETIONS) == 0
    assert "near_duplicate 4" in r.stderr


def test_off_neither_groups_nor_records(server, tmp_path):
    tree = copies_tree(tmp_path / "t")
    r = _run(server, tree, tmp_path, "--near-dup", "off")
    assert r.code == 0, r.stderr
    assert server.completions_for(COMPLETIONS) == len(FIRSTS | LATER | SINGLES)
    assert "near-duplicates" not in r.stderr
    assert db_rows(tmp_path / "ck.db", "SELECT count(*) FROM near_dup_snippets") == [(0,)]


def test_a_dry_run_groups_in_memory_and_writes_nothing_to_the_checkpoint(server, tmp_path):
    tree = copies_tree(tmp_path / "t")
    r = snipstream("plan", tree, "--near-dup", "ask-once", "--db", tmp_path / "ck.db", cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert not (tmp_path / "ck.db").exists()
    assert "near_duplicate 4" in r.stderr + r.stdout.decode()
    assert "3 groups, 4 snippets besides each group's first (4 found by this plan, not recorded)" in (
        r.stderr + r.stdout.decode()
    )

    # With a checkpoint holding the groups (a keep run), a dry run reads them and adds nothing.
    assert _run(server, tree, tmp_path).code == 0
    before = db_rows(tmp_path / "ck.db", "SELECT * FROM near_dup_snippets ORDER BY snippet_id")
    bands = db_rows(tmp_path / "ck.db", "SELECT count(*) FROM near_dup_bands")
    # another copy of b.py: read_settings joins its group, and unrelated gets its first later member
    (tree / "pkg" / "d.py").write_text(_B.replace("read_settings", "fourth_copy").replace("unrelated", "u2"))
    r = snipstream(*run_args(server, tree, "--dry-run", "--near-dup", "ask-once", "--db", tmp_path / "ck.db",
                             "-o", tmp_path / "dry.ndjson"), cwd=tmp_path)  # fmt: skip
    assert r.code == 0, r.stderr
    assert (
        "near-duplicates: 4 groups, 6 snippets besides each group's first (2 found by this dry run"
        in r.stderr
    )
    assert db_rows(tmp_path / "ck.db", "SELECT * FROM near_dup_snippets ORDER BY snippet_id") == before
    assert db_rows(tmp_path / "ck.db", "SELECT count(*) FROM near_dup_bands") == bands
