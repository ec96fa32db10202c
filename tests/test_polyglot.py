"""A repository in several languages, end to end: every language's snippets, doc sections with their own
task, secrets that never leave the machine, and languages whose grammar is not installed."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from tests.fakeserver import FakeOpenAI
from tests.helpers import REPO, read_ndjson, snipstream

FIXTURE = Path(__file__).parent / "fixtures" / "polyglot"

# (path, language, kind, qualname, start_line, end_line): read off the fixture files by hand
EXPECTED = {
    ("config_loader.py", "python", "class", "StorageSettings", 11, 16),
    ("config_loader.py", "python", "function", "parse_bool", 19, 23),
    ("config_loader.py", "python", "function", "storage_settings", 31, 38),
    ("web/src/api.ts", "typescript", "interface", "Transport", 14, 17),
    ("web/src/api.ts", "typescript", "class", "ApiClient", 36, 61),
    ("web/src/api.ts", "typescript", "method", "ApiClient.user", 43, 47),
    ("web/src/App.tsx", "tsx", "class", "Counter", 24, 34),
    ("server/main.go", "go", "struct", "Server", 17, 20),
    ("server/main.go", "go", "method", "Server.Start", 38, 45),
    ("server/main.go", "go", "method", "Stack.Push", 50, 52),
    ("engine/src/lib.rs", "rust", "trait", "Scorer", 21, 28),
    ("engine/src/lib.rs", "rust", "impl", "Score", 44, 48),
    ("engine/src/lib.rs", "rust", "method", "Score.fmt", 45, 47),
    ("README.md", "markdown", "doc_section", "Polyglot > Installation > From PyPI", 13, 19),
    ("README.md", "markdown", "doc_section", "Polyglot > Usage > Quick start", 33, 43),
    ("docs/guide.rst", "rst", "doc_section", "Polyglot guide > Getting started", 14, 23),
}
AWS_KEY_ID = "AKIAQX4RZ7M2KD5TWN3B"
AWS_SECRET = "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"
PEM_LINE = "MIIEowIBAAKCAQEApU3KGCUwux1tEyze1iN7LtkeP3IfyxlxF0SU1kk8nVw0YL4x"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "polyglot"))


def run(server: FakeOpenAI, repo: Path, tmp_path: Path, *extra: str, env: dict[str, str] | None = None):
    out = tmp_path / "out.ndjson"
    args = [
        "run",
        repo,
        "--base-url",
        server.url,
        "--model",
        "m",
        "-o",
        out,
        "--db",
        tmp_path / "s.db",
        *extra,
    ]
    return snipstream(*args, cwd=tmp_path, env=env), out


def test_each_language_yields_its_snippets_and_docs_get_the_summarize_task(repo, server, tmp_path):
    r, out = run(server, repo, tmp_path)
    assert r.code == 0, r.stderr
    records = read_ndjson(out)
    found = {
        (x["path"], x["language"], x["kind"], x["qualname"], x["start_line"], x["end_line"]) for x in records
    }
    assert found >= EXPECTED
    assert {x["language"] for x in records} == {
        "python",
        "typescript",
        "tsx",
        "javascript",
        "go",
        "rust",
        "java",
        "c",
        "cpp",
        "ruby",
        "markdown",
        "rst",
    }
    for x in records:
        lines = (repo / x["path"]).read_text(encoding="utf-8").splitlines(keepends=True)
        text = "".join(lines[x["start_line"] - 1 : x["end_line"]])
        if "<REDACTED:" not in x["code"]:
            assert x["code"] == text, (x["path"], x["qualname"])
        if x["kind"] == "doc_section":
            assert x["task"]["template"] == "summarize"
            assert x["data"]["summary"] and x["data"]["questions"]
        else:
            assert x["task"]["template"] == "annotate" and x["data"] is None
    assert len(server.requests) == len(records)


def test_secrets_never_leave_the_machine_and_are_counted_by_kind(repo, server, tmp_path):
    r, out = run(server, repo, tmp_path)
    assert r.code == 0, r.stderr
    sent = [q.prompt_text for q in server.requests]
    assert sent and not any(
        s in p for p in sent for s in (AWS_KEY_ID, AWS_SECRET, PEM_LINE, 'PRIVATE KEY-----\\n"\n    "M')
    )
    written = out.read_text()
    assert AWS_KEY_ID not in written and AWS_SECRET not in written and PEM_LINE not in written
    by_name = {x["qualname"]: x for x in read_ndjson(out) if x["path"] == "config_loader.py"}
    assert '"<REDACTED:aws_access_key>"' in by_name["storage_settings"]["code"]
    assert "<REDACTED:private_key>" in by_name["signing_key_pem"]["code"]
    counts = r.stderr.split("secrets found (by kind; values never shown): ")[1].splitlines()[0]
    assert "aws_access_key 2" in counts and "private_key 1" in counts
    assert AWS_KEY_ID not in r.stderr and AWS_SECRET not in r.stderr


def test_on_secret_skip_leaves_those_snippets_out(repo, server, tmp_path):
    r, out = run(server, repo, tmp_path, "--on-secret", "skip", "--lang", "python")
    assert r.code == 0, r.stderr
    names = {x["qualname"] for x in read_ndjson(out)}
    assert "storage_settings" not in names and "signing_key_pem" not in names and "parse_bool" in names
    assert "secret 2" in r.stderr.split("snippets left out: ")[1].splitlines()[0]
    assert not any(AWS_KEY_ID in q.prompt_text for q in server.requests)


def test_on_secret_allow_sends_as_is_but_still_counts(repo, server, tmp_path):
    r, _ = run(server, repo, tmp_path, "--on-secret", "allow", "--lang", "python")
    assert r.code == 0, r.stderr
    assert any(AWS_KEY_ID in q.prompt_text for q in server.requests)
    assert "aws_access_key 2" in r.stderr


def test_a_missing_grammar_skips_those_files_with_the_reason(repo, server, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "tree_sitter_go.py").write_text("raise ImportError('not installed (test)')\n")
    r, out = run(server, repo, tmp_path, env={"PYTHONPATH": f"{blocked}:{REPO}"})
    assert r.code == 0, r.stderr
    assert "language_unsupported 1" in r.stderr
    languages = {x["language"] for x in read_ndjson(out)}
    assert "go" not in languages and {"rust", "typescript", "python"} <= languages
    import sqlite3

    with sqlite3.connect(tmp_path / "s.db") as conn:
        (row,) = conn.execute("SELECT path, reason, detail FROM skips WHERE reason = 'language_unsupported'")
    assert row[0] == "server/main.go" and "pip install 'snipstream[langs]'" in row[2]


def test_all_tasks_then_every_export_format_from_one_checkpoint(repo, server, tmp_path):
    tasks = "annotate,summarize,qa,docstring,instruct,explain"
    r, out = run(server, repo, tmp_path, "--task", tasks, "--lang", "python,typescript,markdown")
    assert r.code == 0, r.stderr
    records = read_ndjson(out)
    per_task: dict[str, int] = {}
    for x in records:
        per_task[x["task"]["template"]] = per_task.get(x["task"]["template"], 0) + 1
    code = sum(1 for x in records if x["task"]["template"] == "annotate")
    docs = sum(1 for x in records if x["task"]["template"] == "summarize")
    assert code and docs
    assert per_task == {
        "annotate": code,
        "docstring": code,
        "instruct": code,
        "qa": code + docs,
        "summarize": docs,
        "explain": docs,
    }
    db = tmp_path / "s.db"
    status = snipstream("status", "--db", db, "--json", cwd=tmp_path)
    assert status.code == 0, status.stderr
    assert sum(row["done"] for row in orjson.loads(status.stdout)["tasks"]) == len(records)
    pairs = 2  # the fake server's instance of the qa schema holds two pairs
    expected = len(records) - per_task["qa"] + pairs * per_task["qa"]
    for fmt in ("openai-chat", "alpaca", "sharegpt", "prompt-completion", "jsonl"):
        target = tmp_path / f"{fmt}.jsonl"
        e = snipstream("export", "--db", db, "--format", fmt, "-o", target, cwd=tmp_path)
        assert e.code == 0, e.stderr
        lines = [orjson.loads(line) for line in target.read_bytes().splitlines()]
        assert len(lines) == (len(records) if fmt == "jsonl" else expected), fmt
        if fmt == "openai-chat":
            assert all([m["role"] for m in x["messages"]] == ["user", "assistant"] for x in lines)
    split = snipstream(
        "export",
        "--db",
        db,
        "--format",
        "alpaca",
        "--split",
        "0.5/0.5",
        "-o",
        tmp_path / "d.jsonl",
        cwd=tmp_path,
    )
    assert split.code == 0, split.stderr
    train = (tmp_path / "d.train.jsonl").read_bytes().splitlines()
    valid = (tmp_path / "d.valid.jsonl").read_bytes().splitlines()
    assert len(train) + len(valid) == expected
