"""``snipstream status``: a checkpoint with known rows → the printed numbers; read-only beside a running run."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.cli import status as status_cmd
from stream.model import stable_hash
from stream.prices import estimate_cost
from tests.fakeserver import FakeOpenAI, Scripted
from tests.helpers import (
    checkpoint_held,
    make_record,
    make_tree,
    run_args,
    server_usage,
    snipstream,
    store,
    subcommand,
)

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


def status(*argv: str | Path, capsysbinary: pytest.CaptureFixture[bytes]) -> tuple[int, str, str]:
    """``snipstream status ARGS`` through the subcommand's own parser and run(): (exit code, the report, other
    messages); the report is the JSON line on stdout with --json, else the table on stderr."""
    code, out, err = subcommand(status_cmd, "status", argv, capsysbinary)
    if "--json" in argv or code != 0:
        return code, out.decode(), err.decode()
    assert out == b"", "the table is for people: it goes to stderr, stdout stays NDJSON"
    return code, err.decode(), ""  # (code, the table, other messages)


def fingerprint(template: str, model: str) -> str:
    return stable_hash("task", template, model)  # what make_record and store use


def add_run(
    db: Path, run_id: int, started: float, finished: float | None, config: dict, summary: dict | None
):
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO runs (run_id, started_at, finished_at, config, summary) VALUES (?, ?, ?, ?, ?)",
            (run_id, started, finished, orjson.dumps(config), orjson.dumps(summary) if summary else None),
        )
    conn.close()


LAST_SUMMARY = {
    "files": 4,
    "snippets": 9,
    "requests": 5,
    "annotated": 3,
    "reused": 1,
    "unchanged": 2,
    "failed": {"http_400": 1},
    "skipped": {"binary": 2},
    "emitted": 4,
    "prompt_tokens": 600,
    "completion_tokens": 120,
    "elapsed": 29.3,
    "exit_code": 1,
    "walk_done": True,
    "stopped": None,
}


@pytest.fixture
def known(tmp_path: Path) -> Path:
    """4 done answers, 4 failures (one of a task known only from the runs' settings), 3 skips, 2 runs."""
    db = tmp_path / "known.db"
    store(
        db,
        [
            make_record("a", model="gpt-4o-mini", usage=(100, 20)),
            make_record("b", model="gpt-4o-mini", usage=(200, 40), truncated=True),
            make_record("c", model="gpt-4o-mini", usage=(300, 60)),
            make_record(
                "q",
                template="qa",
                model="local-llama",
                data={"pairs": []},
                usage=(50, 10),
                usage_estimated=True,
            ),
        ],
        failed=[
            ("annotate", "gpt-4o-mini", "http_400", "pkg/a.py:f"),
            ("annotate", "gpt-4o-mini", "timeout", "pkg/b.py:g"),
            ("qa", "local-llama", "http_400", "pkg/c.py:h"),
            ("docstring", "gpt-4o-mini", "schema_mismatch", "pkg/d.py:k"),
        ],
        skips=[("pkg/blob.py", "binary"), ("pkg/x.bin", "binary"), ("pkg/broken.py", "syntax_error")],
        unwritten=1,
    )
    tasks = [
        {"name": "annotate", "fingerprint": fingerprint("annotate", "gpt-4o-mini")},
        {"name": "docstring", "fingerprint": fingerprint("docstring", "gpt-4o-mini")},
    ]
    add_run(db, 1, T0, T0 + 10, {"model": "gpt-4o-mini", "tasks": tasks}, {"requests": 7})
    add_run(db, 2, T0 + 100, T0 + 130.5, {"model": "gpt-4o-mini", "tasks": tasks}, LAST_SUMMARY)
    return db


def test_status_prints_the_known_numbers(known, capsysbinary):
    code, out, err = status("--db", known, capsysbinary=capsysbinary)
    assert code == 0, err
    assert err == ""
    rows = {
        line.split()[0] + " " + line.split()[1]: line.split() for line in out.splitlines() if line.strip()
    }
    annotate = fingerprint("annotate", "gpt-4o-mini")[:8]
    assert rows[f"annotate {annotate}"][2:] == ["gpt-4o-mini", "3", "2", "1", "600", "120", "0", "$0.0002"]
    assert rows[f"qa {fingerprint('qa', 'local-llama')[:8]}"][2:] == [
        "local-llama",
        "1",
        "1",
        "0",
        "50",
        "10",
        "0",
        "n/a",
    ]
    # a task with failures only is named from the runs' stored settings
    assert rows[f"docstring {fingerprint('docstring', 'gpt-4o-mini')[:8]}"][2:] == [
        "gpt-4o-mini",
        "0",
        "1",
        "0",
        "0",
        "0",
        "0",
        "$0.0000",
    ]
    assert rows["total 4"] == ["total", "4", "4", "1", "650", "130", "0", "$0.0002"]
    assert "n/a: model not in the price table (local-llama)" in out
    assert "1 answer without usage from the API: tokens counted locally" in out
    tasks = [line.split()[0] for line in out.split("\n\n")[1].splitlines()[1:4]]
    assert tasks == ["annotate", "docstring", "qa"], "tasks in name order"
    assert "places (NDJSON lines): 4 · committed but not yet written: 1 (the next run writes them)" in out
    failures = out.split("failures by reason")[1].split("\n\n")[0].splitlines()[1:]
    assert [f.split()[:3] for f in failures] == [
        ["http_400", "2", "e.g."],
        ["schema_mismatch", "1", "e.g."],
        ["timeout", "1", "e.g."],
    ]
    assert "e.g. pkg/a.py:f: attempt 2: http_400: the server said no again" in failures[0]
    assert "skipped files: binary 2 · syntax_error 1" in out
    assert "runs: 2 · requests sent: 12" in out
    assert (
        "last run #2: started 2027-01-15 08:01:40 UTC, finished 2027-01-15 08:02:10 UTC (30.5s) · "
        "model gpt-4o-mini, tasks annotate, docstring"
    ) in out
    assert "snippets 9 in 4 files · annotated 3 · reused 1 · already done 2 · failed 1 · emitted 4" in out
    assert "requests 5 · tokens 600 in / 120 out · 29.3s" in out
    assert "pending: not knowable from the checkpoint alone" in out
    assert "as of the last run: 1 failed, 2 not reached" in out


def test_status_json_has_the_same_numbers(known, capsysbinary):
    code, out, _ = status("--db", known, "--json", capsysbinary=capsysbinary)
    assert code == 0
    s = orjson.loads(out)
    by_task = {t["template"]: t for t in s["tasks"]}
    assert set(by_task) == {"annotate", "qa", "docstring"}
    a = by_task["annotate"]
    assert (a["done"], a["failed"], a["truncated"], a["prompt_tokens"], a["completion_tokens"]) == (
        3,
        2,
        1,
        600,
        120,
    )
    assert a["cost_usd"] == pytest.approx(estimate_cost("gpt-4o-mini", 600, 120))
    assert a["cost_usd"] == pytest.approx((600 * 0.15 + 120 * 0.60) / 1e6)
    assert by_task["qa"]["cost_usd"] is None and by_task["qa"]["usage_estimated"] == 1
    assert s["totals"]["done"] == 4 and s["totals"]["failed"] == 4
    assert s["totals"]["unpriced_models"] == ["local-llama"]
    assert s["places"] == {"total": 4, "unwritten": 1}
    assert [(f["reason"], f["count"]) for f in s["failures"]] == [
        ("http_400", 2),
        ("schema_mismatch", 1),
        ("timeout", 1),
    ]
    assert s["skipped"] == {"binary": 2, "syntax_error": 1}
    assert s["runs"]["count"] == 2 and s["runs"]["requests"] == 12
    assert s["runs"]["last"]["summary"] == LAST_SUMMARY
    assert s["pending"]["last_run_not_reached"] == 2 and s["pending"]["known"] is False
    assert s["running"] is False


def test_an_empty_checkpoint_reports_nothing_yet(tmp_path, capsysbinary):
    db = tmp_path / "empty.db"
    store(db, [])
    code, out, _ = status("--db", db, capsysbinary=capsysbinary)
    assert code == 0
    assert "no answers yet" in out and "runs: 0" in out
    assert "pending: not knowable from the checkpoint alone" in out


def test_missing_or_foreign_database_exits_2(tmp_path, capsysbinary):
    code, out, err = status("--db", tmp_path / "nope.db", capsysbinary=capsysbinary)
    assert (code, out) == (2, "") and "no checkpoint at" in err
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    code, out, err = status("--db", other, capsysbinary=capsysbinary)
    assert (code, out) == (2, "") and "not a snipstream checkpoint" in err


def test_status_reads_while_a_run_holds_the_checkpoint(known, capsysbinary):
    """The run's flock and its open write connection do not stop a report, and the report sees its commits."""
    with checkpoint_held(known, {"model": "gpt-4o-mini"}):
        code, out, err = status("--db", known, capsysbinary=capsysbinary)
        assert code == 0, err
        assert "a run holds it now" in out
        assert "runs: 3" in out and "last run #3" in out and "(running now)" in out
        code, out, _ = status("--db", known, "--json", capsysbinary=capsysbinary)
        assert orjson.loads(out)["running"] is True


def test_status_after_a_real_run_matches_its_summary(tmp_path, capsysbinary):
    tree = make_tree(tmp_path / "project")
    with FakeOpenAI(chunks=4) as srv:
        srv.script(Scripted(status=400))
        run = run_args(srv, tree, "-o", tmp_path / "o.ndjson", model="gpt-4o-mini", backoff=None)
        r = snipstream(*run, cwd=tmp_path)
        sent = len(srv.requests)
        # the usage the server reported for the answers it gave (the 400 has none)
        usage = [server_usage(srv, req) for req in srv.requests if req.status == 200]
    assert r.code == 1, r.stderr
    assert len(usage) == 12
    prompt, completion = sum(u[0] for u in usage), sum(u[1] for u in usage)
    code, out, _ = status("--db", tmp_path / "snipstream.db", "--json", capsysbinary=capsysbinary)
    assert code == 0
    s: dict[str, Any] = orjson.loads(out)
    summary = s["runs"]["last"]["summary"]
    assert s["totals"]["done"] == summary["annotated"] == 12
    assert s["totals"]["failed"] == 1 and s["failures"][0]["reason"] == "http_400"
    assert s["totals"]["prompt_tokens"] == summary["prompt_tokens"] == prompt
    assert s["totals"]["completion_tokens"] == summary["completion_tokens"] == completion
    cost = estimate_cost("gpt-4o-mini", prompt, completion)
    assert cost is not None and cost > 0
    assert s["totals"]["cost_usd"] == pytest.approx(cost, rel=1e-9, abs=0)
    assert s["runs"]["requests"] == sent
    assert s["skipped"] == {"binary": 1, "syntax_error": 1}
    assert s["running"] is False
    assert s["pending"]["last_run_failed"] == 1 and s["pending"]["last_run_not_reached"] == 0


@pytest.mark.parametrize("name", ["we#ird.db", "what?.db", "a%23b.db"])
def test_status_plan_and_export_read_a_checkpoint_whose_name_has_uri_characters(tmp_path, name, capsysbinary):
    """The read-only open goes through a ``file:`` URI: '#', '?' and '%' in the path must stay the file's name
    (unencoded, '#' would start a fragment, '?' the parameters and '%23' read as '#': another file opened)."""
    tree = make_tree(tmp_path / "project")
    db = tmp_path / name
    with FakeOpenAI(chunks=4) as srv:
        run = ["run", tree, "--base-url", srv.url, "--model", "m", "--db", db, "-o", tmp_path / "o.ndjson"]
        assert snipstream(*run, cwd=tmp_path).code == 0
    code, out, err = status("--db", db, "--json", capsysbinary=capsysbinary)
    assert code == 0, err
    done = orjson.loads(out)["totals"]["done"]
    assert done == 13
    # plan: the past answers of the checkpoint give the expected output tokens of a new file
    (tree / "extra.py").write_text("def extra(a):\n    return a * 3\n")
    r = snipstream("plan", tree, "--model", "m", "--db", db, "--json", cwd=tmp_path)
    assert r.code == 0, r.stderr
    (row,) = orjson.loads(r.stdout)["rows"]
    assert row["output_from"] == f"{done} past answers"
    r = snipstream("export", "--db", db, "--format", "jsonl", "-o", tmp_path / "all.jsonl", cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert len((tmp_path / "all.jsonl").read_bytes().splitlines()) == done
