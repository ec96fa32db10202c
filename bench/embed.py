"""Embeddings as a task: how many snippets one ``/embeddings`` request carries, and what a run costs, on the
stdlib against the fake server (tests/fakeserver/embeddings.py: OpenAI's documented limits).

1. ``snipstream run STDLIB --task embed`` (no annotations: each snippet's code, as ``--embed-text both``
   embeds it before it is annotated), defaults (256 texts or 100,000 tokens a request): snippets embedded,
   embedding requests, snippets per request (the issue's target: requests ≤ snippets ÷ 50, i.e. ≥ 50 a
   request), wall time and peak RSS of the run.
2. The same command again: embedding requests (a rerun pays for nothing: 0).

    python -m bench embed [--quick]
"""

from __future__ import annotations

import re

from bench._common import (
    PY,
    STDLIB,
    Row,
    Server,
    first_files_for,
    link_tree,
    mb,
    python_files,
    run_proc,
    workdir,
)

NAME = "embed"
TITLE = "10 embeddings"


def _run(tree, work, server: Server) -> tuple[dict[str, int], float, int, str]:
    argv = [PY, "-m", "stream", "run", str(tree), "--task", "embed", "--base-url", server.url,
            "--db", str(work / "embed.db"), "-o", str(work / "out.ndjson"), "--progress", "off"]  # fmt: skip
    res = run_proc(argv, timeout=3600, cwd=work)
    text = res.stderr.decode("utf-8", "replace")
    if res.returncode != 0:
        raise RuntimeError(f"run --task embed: exit {res.returncode}: {res.tail(300)}")
    found = re.search(r"embedded: (\d+) snippets in (\d+) requests", text)
    snippets = re.search(r"snippets: (\d+) in (\d+) files", text)
    figures = {
        "embedded": int(found.group(1)) if found else 0,
        "requests": int(found.group(2)) if found else 0,
        "snippets": int(snippets.group(1)) if snippets else 0,
        "files": int(snippets.group(2)) if snippets else 0,
    }
    return figures, res.wall, res.maxrss_kb, text


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    with workdir(NAME) as work, Server(chunks=1) as server:
        if quick:
            tree = link_tree(first_files_for(python_files(STDLIB), 2_000), STDLIB, work / "tree")
            label = "stdlib, ~2,000 snippets"
        else:
            tree, label = STDLIB, "stdlib, full tree"
        first, wall, rss, _ = _run(tree, work, server)
        per = first["embedded"] / max(1, first["requests"])
        rows.append(Row(TITLE, f"snippets per embeddings request ({label})", f"{per:.0f}", "≥ 50",
                        f"{first['embedded']:,} snippets embedded in {first['requests']:,} requests "
                        f"({first['snippets']:,} snippets in {first['files']:,} files); run {wall:.0f} s, "
                        f"peak RSS {mb(rss)}"))  # fmt: skip
        again, wall_again, _, _ = _run(tree, work, server)
        rows.append(Row(TITLE, f"embedding requests of a rerun ({label})", f"{again['requests']}", "≤ 0",
                        f"rerun {wall_again:.1f} s"))  # fmt: skip
    return rows
