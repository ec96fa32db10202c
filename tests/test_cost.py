"""Knowing the cost: `snipstream plan`, `--prices`, `--max-cost`, and the money shown while running."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from stream.prices import PRICES_DATE, load_prices
from tests.fakeserver import FakeOpenAI
from tests.helpers import EXPECTED, read_ndjson, server_usage, snipstream

PRICES = 'date = "2026-11"\n[models]\n"m" = { input = 1000, output = 2000 }\n'  # USD per million tokens
IN, OUT = 1000, 2000


def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    return path


def test_plan_prints_a_table_by_task_language_and_kind_and_sends_nothing(tree, tmp_path):
    # a dear model, so that the table's four decimals show each row's input and output price
    price = load_prices(None).get("gpt-4-turbo")
    assert price is not None
    r = snipstream("plan", tree, "--model", "gpt-4-turbo", "--max-tokens", "100", cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert r.stdout == b""  # a table is for people
    lines = r.stderr.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("task"))
    rows = {}
    for line in lines[head + 2 :]:
        if line.startswith("-"):
            break
        task, language, kind, requests, prompt, output, cost = line.split()
        rows[(task, language, kind)] = (int(requests), int(prompt.replace(",", "")), int(output), cost)
    total = next(line for line in lines[head + 2 :] if line.startswith("total")).split()
    kinds: dict[str, int] = {}
    for kind in EXPECTED.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    assert {k[2]: v[0] for k, v in rows.items()} == kinds
    assert all(k[:2] == ("annotate", "python") for k in rows)
    costs = []
    for requests, prompt, output, cost in rows.values():
        assert output == 50 * requests  # no history: half of --max-tokens
        costs.append((prompt * price.input + output * price.output) / 1_000_000)
        assert cost == f"{costs[-1]:.4f}"  # exact, to the table's precision
        assert costs[-1] >= 0.001
    prompt_total = sum(v[1] for v in rows.values())
    assert total[1:] == [
        str(len(EXPECTED)),
        f"{prompt_total:,}",
        f"{50 * len(EXPECTED):,}",
        f"{sum(costs):.4f}",
    ]
    assert f"prices of {PRICES_DATE} (built-in)" in r.stderr
    assert "expected output tokens from: 0.5 x max_tokens" in r.stderr


def test_plan_json_uses_past_answers_for_expected_output(tree, tmp_path):
    db = tmp_path / "s.db"
    with FakeOpenAI(chunks=4) as server:
        args = [
            "run",
            tree,
            "--base-url",
            server.url,
            "--model",
            "m",
            "--db",
            db,
            "-o",
            tmp_path / "o.ndjson",
        ]
        assert snipstream(*args, cwd=tmp_path).code == 0
    with sqlite3.connect(db) as conn:
        done = [orjson.loads(r) for (r,) in conn.execute("SELECT result FROM records")]
    mean = sum(d["response"]["usage"]["completion_tokens"] for d in done) / len(done)
    # a new file: the plan leaves out what is done and prices the rest with the past answers' length
    (tree / "extra.py").write_text("def extra(a):\n    return a * 3\n")
    r = snipstream(
        "plan", tree, "--model", "m", "--db", db, "--prices", prices(tmp_path), "--json", cwd=tmp_path
    )
    assert r.code == 0, r.stderr
    report = orjson.loads(r.stdout)
    assert report["total"]["requests"] == 1 and report["already_done"] == len(EXPECTED)
    (row,) = report["rows"]
    assert (row["task"], row["kind"], row["output_tokens"]) == ("annotate", "function", round(mean))
    assert row["output_from"] == f"{len(done)} past answers"
    assert row["cost_usd"] == (row["prompt_tokens"] * 1000 + row["output_tokens"] * 2000) / 1e6
    assert report["prices"] == {"date": "2026-11", "source": str(tmp_path / "prices.toml"), "known": True}


def test_bad_price_files_are_refused(tree, tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text('[models]\n"m" = { input = "cheap", output = 1 }\n')
    r = snipstream("plan", tree, "--prices", bad, cwd=tmp_path)
    assert r.code == 2 and "models.m must be { input = USD, output = USD }" in r.stderr
    r = snipstream("plan", tree, "--prices", tmp_path / "missing.toml", cwd=tmp_path)
    assert r.code == 2 and "cannot read --prices" in r.stderr


def ran_cost(db: Path, run_id: int) -> float:
    """The cost a run reported in its stored summary."""
    with sqlite3.connect(db) as conn:
        (summary,) = conn.execute("SELECT summary FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    conn.close()
    return orjson.loads(summary)["cost"]


def test_max_cost_stops_before_the_budget_is_passed_and_a_rerun_goes_on(tree, tmp_path):
    out, db = tmp_path / "out.ndjson", tmp_path / "s.db"
    with FakeOpenAI(chunks=4) as server:
        base = ["run", tree, "--base-url", server.url, "--model", "m", "--db", db, "-o", out]
        base += ["--prices", prices(tmp_path), "--max-tokens", "40", "--concurrency", "2"]
        r = snipstream(*base, "--max-cost", "0.3", cwd=tmp_path)
        assert r.code == 0, r.stderr
        assert "could pass --max-cost 0.3" in r.stderr and "stopped: --max-cost 0.3 reached" in r.stderr
        first = read_ndjson(out)
        assert 0 < len(first) < len(EXPECTED)
        sent = len(server.requests)
        assert sent == len(first)
        # the spend, from the usage the server reported and the price file
        usage = [server_usage(server, req) for req in server.requests]
        prompt, completion = sum(u[0] for u in usage), sum(u[1] for u in usage)
        assert prompt == sum(rec["response"]["usage"]["prompt_tokens"] for rec in first)
        assert completion == sum(rec["response"]["usage"]["completion_tokens"] for rec in first)
        spent = (prompt * IN + completion * OUT) / 1_000_000
        assert spent <= 0.3
        assert ran_cost(db, 1) == pytest.approx(spent, rel=1e-9, abs=0)
        assert f"cost ${spent:,.4f}" in r.stderr
        again = snipstream(*base, cwd=tmp_path)
        assert again.code == 0, again.stderr
        assert len(server.requests) == sent + len(EXPECTED) - len(first)  # nothing asked twice
        rest = [server_usage(server, req) for req in server.requests[sent:]]
        rest_cost = (sum(u[0] for u in rest) * IN + sum(u[1] for u in rest) * OUT) / 1_000_000
        assert ran_cost(db, 2) == pytest.approx(rest_cost, rel=1e-9, abs=0)
    assert len(read_ndjson(out)) == len(EXPECTED)


def test_max_cost_needs_a_price_for_the_model(tree, server, tmp_path):
    r = snipstream(
        "run", tree, "--base-url", server.url, "--model", "local-llm", "--max-cost", "1", cwd=tmp_path
    )
    assert r.code == 2 and "--max-cost needs the price of 'local-llm'" in r.stderr
    assert server.requests == []
