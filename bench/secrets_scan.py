"""Secrets scan: its cost per snippet over the stdlib's functions and classes, and what it flags there.

The snippets: every function, method and class in the stdlib (``sysconfig.get_paths()["stdlib"]``, the
suite's file list: no site-packages, files up to 1 MiB), nested ones included, each as its exact lines from
the first decorator to the end, cut with ``ast`` here (not with stream.extract, so the figure does not move
when the extractor does). Read and cut before timing. Single thread, one process, ``gc.collect()`` before each
timed pass, best of 2 (quick: 1 pass, first 150 files):

* floor: ``ast.parse`` of each snippet's text (indented ones under an ``if 1:`` line);
* ``SecretScanner().scan`` and ``.redact`` of each snippet (detectors loaded before timing);
* the same scan with the prefilter off (every line through detect-secrets' plugins): on every 10th snippet
  (--verify: on all of them, checking that both give the same hits and edits);
* ``scan`` of each whole file.

Then the hits by kind: snippets, distinct (file, line) places, files, and how many of those files are tests;
``--list KIND`` prints the places of one kind (the stdlib holds no real secrets, so values are shown).

    python -m bench.secrets_scan [--quick] [--verify] [--list KIND]
"""

from __future__ import annotations

import argparse
import ast
import gc
import re
import sys
import time
import tokenize
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from io import BytesIO
from pathlib import Path

from bench._common import STDLIB, python_files
from stream.secrets import KINDS, SecretScanner
from stream.secrets.detectors import load as _load

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def snippets(files: Sequence[Path]) -> tuple[list[tuple[str, int, str]], list[tuple[str, str]]]:
    """(relpath, first line, text) of every def and class, and (relpath, text) of every file."""
    out: list[tuple[str, int, str]] = []
    texts: list[tuple[str, str]] = []
    for path in files:
        data = path.read_bytes()
        try:
            encoding = tokenize.detect_encoding(BytesIO(data).readline)[0]
            text = data.decode(encoding)
            tree = ast.parse(text)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        rel = str(path.relative_to(STDLIB))
        texts.append((rel, text))
        lines = _LINE.findall(text)
        for node in ast.walk(tree):
            if isinstance(node, _DEFS):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                out.append((rel, first, "".join(lines[first - 1 : node.end_lineno])))
    return out, texts


def timed(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def is_test(rel: str) -> bool:
    parts = rel.split("/")
    return any(p in ("test", "tests", "idle_test") or p.startswith("test_") for p in parts)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.secrets_scan", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first 150 files, one pass")
    ap.add_argument("--verify", action="store_true", help="prefilter off on every snippet, and compare")
    ap.add_argument("--list", metavar="KIND", help="print every place of this kind")
    args = ap.parse_args(argv)

    files = python_files(STDLIB)
    if args.quick:
        files = files[:150]
    repeat = 1 if args.quick else 2
    snips, texts = snippets(files)
    codes = [s[2] for s in snips]
    nbytes = sum(len(c) for c in codes)
    nlines = sum(c.count("\n") or 1 for c in codes)
    scanner = SecretScanner()
    state = _load()
    print(
        f"stdlib: {STDLIB}  files: {len(texts):,}  snippets: {len(snips):,}  ({nlines:,} lines, {nbytes:,} chars)"
    )

    def floor() -> None:
        for c in codes:
            try:
                ast.parse(c if not c[:1].isspace() else "if 1:\n" + c)
            except SyntaxError:
                pass

    sample = codes[::10] if not args.verify else codes
    t_floor = timed(floor, repeat)
    t_scan = timed(lambda: [scanner.scan(c) for c in codes], repeat)
    t_redact = timed(lambda: [scanner.redact(c) for c in codes], repeat)
    t_full = timed(lambda: [scanner._find(c, prefilter=False) for c in sample], 1)
    t_files = timed(lambda: [scanner.scan(t) for _, t in texts], repeat)
    cand_snips = sum(1 for c in codes if state.gate(c))
    cand_lines = sum(1 for c in codes for line in _LINE.findall(c) if state.gate(line))

    n = len(codes)
    print()
    print("| pass | total | per snippet | snippets/s |")
    print("| --- | --- | --- | --- |")
    for name, t, k in (
        ("ast.parse (floor)", t_floor, n),
        ("scan", t_scan, n),
        ("redact", t_redact, n),
        (f"scan, prefilter off ({len(sample):,} snippets)", t_full, len(sample)),
    ):
        print(f"| {name} | {t:.2f} s | {t / k * 1e6:.1f} µs | {k / t:,.0f} |")
    print(
        f"| scan of whole files ({len(texts):,}) | {t_files:.2f} s | {t_files / len(texts) * 1e6:.0f} µs/file | |"
    )
    print()
    print(
        f"prefilter passes {cand_snips:,} of {n:,} snippets ({cand_snips / n:.1%}) and {cand_lines:,} of "
        f"{nlines:,} lines ({cand_lines / nlines:.2%}); scan/floor = {t_scan / t_floor:.2f}; "
        f"prefilter off costs {t_full / len(sample) / (t_scan / n):.0f}x"
    )

    if args.verify:
        bad = [i for i, c in enumerate(codes) if scanner._find(c) != scanner._find(c, prefilter=False)]
        bad_files = [r for r, t in texts if scanner._find(t) != scanner._find(t, prefilter=False)]
        print(f"verify: prefilter on/off differ on {len(bad)} snippets and {len(bad_files)} files")
        for i in bad[:10]:
            print("  differs:", snips[i][0], snips[i][1])

    # Hits: per snippet, and as distinct places (a method's line is also in its class's snippet).
    kinds_snips: Counter[str] = Counter()
    places: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for rel, first, code in snips:
        for hit in scanner.scan(code):
            kinds_snips[hit.kind] += 1
            places[hit.kind].add((rel, first + hit.line - 1))
    flagged = sum(1 for c in codes if scanner.scan(c))
    print()
    print(f"snippets with a hit: {flagged:,} of {n:,} ({flagged / n:.2%})")
    print("| kind | hits in snippets | distinct lines | files | of them tests |")
    print("| --- | --- | --- | --- | --- |")
    for kind in KINDS:
        if kind in places:
            fs = {rel for rel, _ in places[kind]}
            tests = sum(1 for f in fs if is_test(f))
            print(f"| {kind} | {kinds_snips[kind]:,} | {len(places[kind]):,} | {len(fs)} | {tests} |")
    if args.list:
        by_file = {rel: text for rel, text in texts}
        for rel, line in sorted(places.get(args.list, ())):
            print(f"  {rel}:{line}: {_LINE.findall(by_file[rel])[line - 1].strip()[:140]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
