"""Context and the prompt cache: what ``--context file`` costs in prompt tokens, and what a provider's
prompt cache gives back, on a real tree.

Side by side on the same files (the stdlib's first ~N snippets, ``--task annotate``):

1. ``snipstream plan --json`` with ``--context none`` and ``--context file``: prompt tokens (tiktoken),
   the estimated cached share (`stream.pipeline.prefixes`: a prefix of 1,024+ tokens shared with a recent
   prompt, in 128-token steps) and the cost at gpt-4o-mini's list prices (cached input at half the input
   price). The plan's wall time, for the cost of building contexts.
2. A real run with ``--context file`` against the fake server's prompt-cache mode (``--provider
   prompt-cache``, tests/providers.py `PromptCache`, OpenAI's documented rules, tokens counted with
   cl100k_base): the share of prompt tokens the server reported in
   ``usage.prompt_tokens_details.cached_tokens``, and the saving the run's summary prints.

    python -m bench context [--quick]
"""

from __future__ import annotations

import re

import orjson

from bench._common import PY, STDLIB, Row, Server, first_files_for, link_tree, python_files, run_proc, workdir

NAME = "context"
TITLE = "8 context and prompt cache"
PRICED_MODEL = "gpt-4o-mini"  # in the price table with a cached-input rate


def _plan(tree, work, mode: str) -> tuple[dict, float]:
    argv = [PY, "-m", "stream", "plan", str(tree), "--task", "annotate", "--context", mode,
            "--model", PRICED_MODEL, "--db", str(work / f"plan-{mode}.db"), "--json"]  # fmt: skip
    res = run_proc(argv, timeout=1800, cwd=work)
    if res.returncode != 0:
        raise RuntimeError(f"plan --context {mode}: exit {res.returncode}: {res.tail(300)}")
    return orjson.loads(res.stdout.strip().splitlines()[-1])["total"], res.wall


def _real_run(tree, work) -> tuple[str, str]:
    with Server(chunks=4, extra=["--provider", "prompt-cache"]) as server:
        argv = [PY, "-m", "stream", "run", str(tree), "--task", "annotate", "--context", "file",
                "--model", PRICED_MODEL, "--base-url", server.url, "--db", str(work / "run.db"),
                "-o", str(work / "out.ndjson"), "--progress", "off", "--concurrency", "16"]  # fmt: skip
        res = run_proc(argv, timeout=1800, cwd=work)
    text = res.stderr.decode("utf-8", "replace")
    found = re.search(r"prompt cache served ([\d,]+) \((\d+%)\) of the tokens in(, saving \$[\d.,]+)?", text)
    if res.returncode != 0 or found is None:
        return "n/a", f"exit {res.returncode}: {res.tail(300)}"
    tokens = re.search(r"tokens: ([\d,]+) in", text)
    note = f"{found.group(1)} of {tokens.group(1) if tokens else '?'} prompt tokens reported cached"
    return found.group(2), note + (f"{found.group(3)}" if found.group(3) else "")


def run(quick: bool) -> list[Row]:
    files = python_files(STDLIB)
    snippets = 400 if quick else 6_000
    rows: list[Row] = []
    with workdir(NAME) as work:
        tree = link_tree(first_files_for(files, snippets), STDLIB, work / "tree")
        label = f"stdlib, ~{snippets:,} snippets"
        none, wall_none = _plan(tree, work, "none")
        file, wall_file = _plan(tree, work, "file")
        ratio = file["prompt_tokens"] / max(1, none["prompt_tokens"])
        rows.append(Row(TITLE, f"(for scale) prompt tokens, file ÷ none ({label})", f"{ratio:.2f}×", "",
                        f"{none['prompt_tokens']:,} → {file['prompt_tokens']:,} tokens for "
                        f"{file['requests']:,} requests; plan wall {wall_none:.1f} s → {wall_file:.1f} s"))  # fmt: skip
        share = file["cached_tokens"] / max(1, file["prompt_tokens"])
        saved = (file["uncached_cost_usd"] or 0) - (file["cost_usd"] or 0)
        case = f"(for scale) plan: prompt tokens in cached prefixes, --context file ({label})"
        rows.append(Row(TITLE, case, f"{share:.0%}", "", f"{file['cached_tokens']:,} tokens; {PRICED_MODEL} cost "
                        f"${file['uncached_cost_usd']:.4f} → ${file['cost_usd']:.4f} (saves ${saved:.4f}); "
                        f"--context none: ${none['cost_usd']:.4f}"))  # fmt: skip
        share_run, note = _real_run(tree, work)
        case = f"(for scale) run on the fake server's prompt cache, --context file ({label})"
        rows.append(Row(TITLE, case, share_run, "", note))
    return rows
