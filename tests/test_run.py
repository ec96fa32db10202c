"""End to end through the real command line against the project's loopback OpenAI-compatible server."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.fakeserver import FakeOpenAI, Scripted, default_reply
from tests.helpers import (
    EXPECTED,
    cli_env,
    count_lines,
    db_rows,
    read_ndjson,
    run_args,
    running,
    snipstream,
    wait_until,
)

COMPLETIONS = "chat/completions"


def test_every_definition_appears_once_with_its_exact_source(tree, server, tmp_path):
    out = tmp_path / "out.ndjson"
    r = snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path)
    assert r.code == 0, r.stderr
    records = read_ndjson(out)
    keys = [(rec["path"], rec["qualname"]) for rec in records]
    assert sorted(keys) == sorted(EXPECTED), "each def/class/method exactly once, nothing else"
    for rec in records:
        assert rec["kind"] == EXPECTED[(rec["path"], rec["qualname"])]
        lines = (tree / rec["path"]).read_bytes().decode("latin-1" if "legacy" in rec["path"] else "utf-8")
        lines = lines.splitlines(keepends=True)
        assert rec["code"] == "".join(lines[rec["start_line"] - 1 : rec["end_line"]]), rec["qualname"]
        assert rec["language"] == "python"
        assert rec["task"]["model"] == "m" and rec["task"]["template"] == "annotate"
        assert rec["response"]["finish_reason"] == "stop"
        assert rec["response"]["usage"]["completion_tokens"] > 0
        assert rec["response"]["model"] == "m" and rec["response"]["id"]
        assert rec["attempts"] == 1
    by_name = {rec["qualname"]: rec for rec in records}
    decorated = by_name["decorated"]
    assert decorated["code"].startswith("@functools.lru_cache(maxsize=None)\n@staticmethod\n")
    assert "# trailing comment" in decorated["code"]
    assert "# a comment inside" in by_name["plain"]["code"]
    assert by_name["plain"]["docstring"] == "Add two numbers."
    assert by_name["plain"]["signature"] == "def plain(a, b=1)"
    assert by_name["Shape.area"]["parent"] == "Shape"
    assert by_name["greet"]["docstring"] == "Say h\u00e9llo."
    # the annotation is the server's answer to exactly this snippet's prompt
    prompts = {req.prompt_text for req in server.requests}
    assert len(prompts) == len(EXPECTED) == len(server.requests)
    for rec in records:
        prompt = (
            "Please provide a complete annotation for the following Python code snippet that includes "
            "information about what the code does, any relevant details, and how it can be used in questions, "
            f"documentation, and code creation:\n{rec['code']}\n"
        )
        # the file's context first (--context file, the default; tests/test_context.py), the snippet last
        sent = next(p for p in prompts if p.endswith(prompt))
        assert sent.startswith("Context: where the code below lives in its project") and rec["path"] in sent
        assert rec["annotation"] == default_reply(sent)


def test_bad_files_are_skipped_with_reasons_and_the_run_goes_on(tree, server, tmp_path):
    r = snipstream(*run_args(server, tree, "-o", tmp_path / "out.ndjson"), cwd=tmp_path)
    assert r.code == 0, r.stderr
    skips = dict(db_rows(tmp_path / "snipstream.db", "SELECT path, reason FROM skips"))
    assert skips == {"pkg/broken.py": "syntax_error", "pkg/blob.py": "binary"}
    assert "skipped files:" in r.stderr and "syntax_error 1" in r.stderr and "binary 1" in r.stderr
    detail = db_rows(tmp_path / "snipstream.db", "SELECT detail FROM skips WHERE reason = 'syntax_error'")
    assert "line 1" in detail[0][0]


def test_rerun_sends_nothing_and_appends_nothing(tree, server, tmp_path):
    out = tmp_path / "out.ndjson"
    assert snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path).code == 0
    first = out.read_bytes()
    sent = len(server.requests)
    r = snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert len(server.requests) == sent, "a rerun with the same settings pays for nothing"
    assert out.read_bytes() == first
    assert "requests sent: 0" in r.stderr


def test_changing_the_model_annotates_everything_again(tree, server, tmp_path):
    out = tmp_path / "out.ndjson"
    assert snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path).code == 0
    sent = len(server.requests)
    r = snipstream(*run_args(server, tree, "-o", out), "--model", "m2", cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert len(server.requests) == 2 * sent
    models = [rec["task"]["model"] for rec in read_ndjson(out)]
    assert models.count("m") == models.count("m2") == len(EXPECTED)
    done = db_rows(tmp_path / "snipstream.db", "SELECT model, count(*) FROM records GROUP BY model")
    assert sorted(done) == [("m", len(EXPECTED)), ("m2", len(EXPECTED))]


def test_stdout_carries_only_ndjson(tree, server, tmp_path):
    r = snipstream(*run_args(server, tree), cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert len(r.records) == len(EXPECTED)
    assert "snippets:" in r.stderr  # the summary went to stderr


def test_closed_pipe_stops_cleanly_and_a_rerun_emits_the_rest(tree, server, tmp_path):
    env = cli_env()
    cmd = (
        f"{sys.executable} -m stream "
        + " ".join(run_args(server, tree, "--concurrency", "1"))
        + " | head -n 3"
    )
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {cmd}"], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(proc.stdout.splitlines()) == 3
    assert b"Traceback" not in proc.stderr
    db = tmp_path / "snipstream.db"
    assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]
    emitted = {(p, q) for p, q in db_rows(db, "SELECT path, qualname FROM occurrences WHERE emitted = 1")}
    piped = {(rec["path"], rec["qualname"]) for rec in map(orjson.loads, proc.stdout.splitlines())}
    assert piped <= emitted  # what head printed is marked written (the pipe may have taken a few more)
    # the rest comes out on the next run; nothing is asked again or written twice
    out = tmp_path / "rest.ndjson"
    r = snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path)
    assert r.code == 0, r.stderr
    rest = [(rec["path"], rec["qualname"]) for rec in read_ndjson(out)]
    assert len(rest) == len(set(rest))
    assert set(rest) == set(EXPECTED) - emitted
    requested = [req.prompt_text for req in server.requests]
    assert len(requested) == len(set(requested)), "no snippet was requested twice"


def test_a_failed_snippet_is_stored_with_its_reason_and_retried_by_a_rerun(tree, server, tmp_path):
    server.script(Scripted(status=400, body={"error": {"message": "context too long", "type": "x"}}))
    out = tmp_path / "out.ndjson"
    r = snipstream(*run_args(server, tree, "-o", out, "--concurrency", "1"), cwd=tmp_path)
    assert r.code == 1, r.stderr
    assert "http_400 1" in r.stderr
    failed = db_rows(tmp_path / "snipstream.db", "SELECT reason, error FROM records WHERE status = 'failed'")
    assert len(failed) == 1 and failed[0][0] == "http_400" and "context too long" in failed[0][1]
    assert len(read_ndjson(out)) == len(EXPECTED) - 1
    r = snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert "requests sent: 1" in r.stderr
    assert sorted((x["path"], x["qualname"]) for x in read_ndjson(out)) == sorted(EXPECTED)


def test_retryable_errors_are_retried_and_counted(tree, server, tmp_path):
    server.script(
        Scripted(status=503),
        Scripted(status=429, headers={"retry-after-ms": "10"}),
        Scripted(cut_after_chunks=2),
    )
    out = tmp_path / "out.ndjson"
    r = snipstream(*run_args(server, tree, "-o", out, "--concurrency", "1"), cwd=tmp_path)
    assert r.code == 0, r.stderr
    records = read_ndjson(out)
    assert len(records) == len(EXPECTED)
    assert len(server.requests) == len(EXPECTED) + 3
    assert max(rec["attempts"] for rec in records) == 4


def test_a_rejected_key_aborts_and_never_shows_the_key(tree, tmp_path):
    secret = "sk-SENTINEL-0123456789"
    with FakeOpenAI(api_key="sk-the-right-one") as srv:
        r = snipstream(*run_args(srv, tree), cwd=tmp_path, env={"OPENAI_API_KEY": secret})
        assert r.code == 3
        assert srv.url in r.stderr and "OPENAI_API_KEY" in r.stderr
        assert len(srv.requests) <= 16  # stops at once instead of failing every snippet
    assert secret not in r.stderr and secret.encode() not in r.stdout
    assert secret.encode() not in (tmp_path / "snipstream.db").read_bytes()


def test_a_wrong_model_aborts_naming_it(tree, tmp_path):
    with FakeOpenAI(model="served") as srv:
        r = snipstream(*run_args(srv, tree), cwd=tmp_path)
        assert r.code == 3
        assert "'m'" in r.stderr and srv.url in r.stderr


def test_a_key_is_required_for_a_remote_api(tree, tmp_path):
    r = snipstream("run", tree, "--base-url", "https://api.example.invalid/v1", cwd=tmp_path)
    assert r.code == 2
    assert "OPENAI_API_KEY" in r.stderr
    assert not (tmp_path / "snipstream.db").exists()


def test_unknown_template_placeholder_is_refused_before_any_request(tree, server, tmp_path):
    template = tmp_path / "t.toml"
    template.write_text('user = "Explain {code} from {repo}"\n')
    r = snipstream(*run_args(server, tree, "--template", template), cwd=tmp_path)
    assert r.code == 2
    assert "{repo}" in r.stderr
    assert server.requests == []


def test_custom_template_with_system_message(tree, server, tmp_path):
    template = tmp_path / "t.toml"
    template.write_text(
        'name = "brief"\nsystem = "You are terse."\nuser = "{kind} {qualname} in {path}:\\n{code}"\n'
    )
    out = tmp_path / "out.ndjson"
    r = snipstream(*run_args(server, tree, "--template", template, "-o", out), cwd=tmp_path)
    assert r.code == 0, r.stderr
    bodies = [req.body for req in server.requests]
    assert all(b["messages"][0] == {"role": "system", "content": "You are terse."} for b in bodies)
    assert any(
        b["messages"][1]["content"].startswith("method Shape.area in pkg/shapes.py:\n") for b in bodies
    )
    assert {rec["task"]["template"] for rec in read_ndjson(out)} == {"brief"}


@pytest.mark.parametrize(
    "extra", [["--api", "completions"], ["--no-stream"], ["--api", "completions", "--no-stream"]]
)
def test_completions_api_and_non_streaming_answers(tree, server, tmp_path, extra):
    out = tmp_path / "out.ndjson"
    r = snipstream(*run_args(server, tree, "-o", out, *extra), cwd=tmp_path)
    assert r.code == 0, r.stderr
    records = read_ndjson(out)
    assert len(records) == len(EXPECTED)
    path = "/v1/completions" if "completions" in extra else "/v1/chat/completions"
    assert {req.path for req in server.requests} == {path}
    assert all(("stream" in req.body) == ("--no-stream" not in extra) for req in server.requests)
    for rec in records:
        assert rec["annotation"].startswith("Annotation ")


def test_missing_usage_is_counted_locally_and_marked_estimated(tree, tmp_path):
    with FakeOpenAI(include_usage=False) as srv:
        out = tmp_path / "out.ndjson"
        r = snipstream(*run_args(srv, tree, "-o", out), cwd=tmp_path)
    assert r.code == 0, r.stderr
    for rec in read_ndjson(out):
        assert rec["response"]["usage_estimated"] is True
        assert rec["response"]["usage"]["prompt_tokens"] > 0
        assert rec["response"]["usage"]["completion_tokens"] > 0
    assert "cl100k_base" in r.stderr  # which encoding counted them is said


def test_dry_run_sends_nothing_and_estimates(tree, server, tmp_path):
    out = tmp_path / "dry.ndjson"
    r = snipstream(*run_args(server, tree, "--dry-run", "-o", out, "--model", "gpt-4o-mini"), cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert server.requests == []
    lines = read_ndjson(out)
    assert len(lines) == len(EXPECTED)
    assert all(line["prompt_tokens"] > 20 for line in lines)
    assert all(line["request"]["model"] == "gpt-4o-mini" for line in lines)
    assert "estimated cost for gpt-4o-mini" in r.stderr
    assert not (tmp_path / "snipstream.db").exists(), "a dry run writes no checkpoint"


def test_dry_run_counts_code_repeated_across_files_once(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shared = "def helper(x):\n    return x + 1\n\n\n"
    for n in range(30):
        (src / f"m{n:02d}.py").write_text(f"{shared}def own_{n}():\n    return {n}\n\n\n{shared}")
    out = tmp_path / "dry.ndjson"
    # the code alone (with a context, each file's copy is its own question: tests/test_context.py)
    r = snipstream("run", src, "--dry-run", "--model", "m", "-o", out, "--context", "none", cwd=tmp_path)
    assert r.code == 0, r.stderr
    lines = read_ndjson(out)
    # as a real run would ask: the shared code once (for the first file holding it), each own function once
    assert sorted(line["qualname"] for line in lines) == sorted(["helper"] + [f"own_{n}" for n in range(30)])
    assert next(line["path"] for line in lines if line["qualname"] == "helper") == "m00.py"


def test_an_output_file_with_lines_of_its_own_is_appended_to(tree, server, tmp_path):
    out = tmp_path / "out.ndjson"
    out.write_bytes(b'{"from": "elsewhere"}\n')
    r = snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path)
    assert r.code == 0, r.stderr
    records = read_ndjson(out)
    assert records[0] == {"from": "elsewhere"} and len(records) == 1 + len(EXPECTED)


def test_torn_tail_is_cut_back_and_unconfirmed_lines_written_once(tree, server, tmp_path):
    out = tmp_path / "out.ndjson"
    db = tmp_path / "snipstream.db"
    assert snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path).code == 0
    whole = out.read_bytes()
    # Simulate a crash after the last 3 lines were written but before they were confirmed, mid-way
    # through a 4th line: the checkpoint knows an earlier offset and those 3 as unemitted.
    last3 = whole.splitlines(keepends=True)[-3:]
    known = len(whole) - sum(map(len, last3))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE outputs SET offset = ?", (known,))
        for line in last3:
            rid = orjson.loads(line)
            conn.execute(
                "UPDATE occurrences SET emitted = 0 WHERE record_id = ? AND qualname = ?",
                (rid["record_id"], rid["qualname"]),
            )
    with out.open("ab") as f:
        f.write(b'{"schema_version":1,"record_id":"tor')
    sent = len(server.requests)
    r = snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert len(server.requests) == sent
    records = read_ndjson(out)  # every line parses: the torn one is gone
    assert sorted((x["path"], x["qualname"]) for x in records) == sorted(EXPECTED)
    assert "cut" in r.stderr


def test_same_code_in_two_places_is_asked_once_and_recorded_at_both(tmp_path, server):
    src = tmp_path / "src"
    src.mkdir()
    body = "def helper(x):\n    return x + 1\n"
    (src / "a.py").write_text(body)
    (src / "b.py").write_text(body)
    out = tmp_path / "out.ndjson"
    args = ("--context", "none")  # the code alone: in a context, each place is asked (tests/test_context.py)
    r = snipstream("run", src, "--base-url", server.url, "--model", "m", "-o", out, *args, cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert len(server.requests) == 1
    records = read_ndjson(out)
    assert sorted(rec["path"] for rec in records) == ["a.py", "b.py"]
    assert records[0]["record_id"] == records[1]["record_id"]
    assert records[0]["annotation"] == records[1]["annotation"]
    # moved to a new file later: emitted for the new place without a request
    (src / "c.py").write_text(body)
    args = ("--context", "none")  # the code alone: in a context, each place is asked (tests/test_context.py)
    r = snipstream("run", src, "--base-url", server.url, "--model", "m", "-o", out, *args, cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert len(server.requests) == 1
    assert sorted(rec["path"] for rec in read_ndjson(out)) == ["a.py", "b.py", "c.py"]


def test_plugin_sink_receives_every_record(tree, server, tmp_path):
    collected = tmp_path / "collected.txt"
    out = tmp_path / "out.ndjson"
    r = snipstream(
        *run_args(server, tree, "-o", out, "--sink", "tests.plugin_sink:QualnameSink"),
        cwd=tmp_path,
        env={"QUALNAME_SINK_FILE": str(collected)},
    )
    assert r.code == 0, r.stderr
    assert sorted(collected.read_text().split()) == sorted(q for _, q in EXPECTED)


def test_a_second_run_on_the_same_checkpoint_is_refused(tree, tmp_path):
    with FakeOpenAI(latency=0.3) as srv:
        args = run_args(srv, tree, "-o", tmp_path / "a.ndjson", "--concurrency", "1")
        with running(*args, cwd=tmp_path) as first:
            wait_until(lambda: srv.requests, "the first run sends a request", proc=first)
            r = snipstream(*run_args(srv, tree, "-o", tmp_path / "b.ndjson"), cwd=tmp_path)
            assert r.code == 3
            assert "in use by another snipstream run" in r.stderr
            assert first.running(), "refused while the first run still held the checkpoint"
            first.signal(signal.SIGTERM)
            first.finish()
        # the refused run asked for nothing: each request is the first run's, one snippet at a time
        assert len({req.prompt_text for req in srv.requests}) == len(srv.requests)


def test_sigint_keeps_what_was_answered_and_a_rerun_finishes(tree, tmp_path):
    out = tmp_path / "out.ndjson"
    with FakeOpenAI(latency=0.2) as srv:
        args = run_args(srv, tree, "-o", out, "--concurrency", "2", "--grace", "5", "--progress", "off")

        def in_flight() -> list[str]:
            """Once a line is written: the prompts of the 2 requests waiting for their answers ([] until)."""
            flying = [r.prompt_text for r in srv.requests if r.status == 0]
            return flying if len(flying) == 2 and count_lines(out) >= 1 else []

        with running(*args, cwd=tmp_path) as run:
            flying = wait_until(in_flight, "a line is written and 2 requests are in flight", proc=run)
            run.signal(signal.SIGINT)
            run.wait_for("SIGINT: finishing in-flight requests")
            code, stderr = run.finish()
        assert code == 130, stderr
        assert "Traceback" not in stderr
        first = read_ndjson(out)
        assert 0 < len(first) < len(EXPECTED), "work was pending"
        # the requests in flight at the interrupt were finished within --grace and written
        assert {default_reply(p) for p in flying} <= {rec["annotation"] for rec in first}
        assert db_rows(tmp_path / "snipstream.db", "PRAGMA integrity_check") == [("ok",)]
        sent = len(srv.requests)
        assert sent == len(first), "every request sent before the run stopped was answered and written"
        srv.latency = 0.0
        r = snipstream(*run_args(srv, tree, "-o", out), cwd=tmp_path)
        assert r.code == 0, r.stderr
        assert sorted((x["path"], x["qualname"]) for x in read_ndjson(out)) == sorted(EXPECTED)
        prompts = [req.prompt_text for req in srv.requests]
        assert len(srv.requests) - sent == len(EXPECTED) - len(first)
        assert len(set(prompts)) == len(prompts), "nothing answered before the interrupt was asked again"


def test_emit_all_writes_every_record_again_without_requests(tree, server, tmp_path):
    assert snipstream(*run_args(server, tree, "-o", tmp_path / "a.ndjson"), cwd=tmp_path).code == 0
    sent = len(server.requests)
    r = snipstream(*run_args(server, tree, "-o", tmp_path / "b.ndjson", "--emit-all"), cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert len(server.requests) == sent
    a, b = read_ndjson(tmp_path / "a.ndjson"), read_ndjson(tmp_path / "b.ndjson")
    assert sorted(x["record_id"] + x["qualname"] for x in a) == sorted(
        x["record_id"] + x["qualname"] for x in b
    )


def test_python_dash_m_and_help_explain_the_command(tmp_path):
    r = snipstream("run", "--help", cwd=tmp_path)
    assert r.code == 0
    help_text = r.stdout.decode()
    for flag in (
        "--base-url",
        "--dry-run",
        "--db",
        "--template",
        "--concurrency",
        "exit codes",
        "OPENAI_API_KEY",
    ):
        assert flag in help_text
    r = snipstream("run", cwd=tmp_path)
    assert r.code == 2 and "PATH" in r.stderr


def test_an_answer_cut_at_max_tokens_is_marked_truncated(tree, server, tmp_path):
    server.script(Scripted(finish_reason="length"))
    out = tmp_path / "out.ndjson"
    r = snipstream(*run_args(server, tree, "-o", out, "--concurrency", "1"), cwd=tmp_path)
    assert r.code == 0, r.stderr
    truncated = [rec for rec in read_ndjson(out) if rec["truncated"]]
    assert len(truncated) == 1 and truncated[0]["response"]["finish_reason"] == "length"


def test_retry_truncated_asks_again_with_twice_the_tokens(tree, server, tmp_path):
    server.script(Scripted(finish_reason="length"))
    out = tmp_path / "out.ndjson"
    r = snipstream(
        *run_args(server, tree, "-o", out, "--concurrency", "1", "--retry-truncated", "--max-tokens", "100"),
        cwd=tmp_path,
    )
    assert r.code == 0, r.stderr
    records = read_ndjson(out)
    assert not any(rec["truncated"] for rec in records)
    assert sorted(req.body["max_tokens"] for req in server.requests)[-1] == 200
    assert len(server.requests) == len(EXPECTED) + 1
    assert max(rec["attempts"] for rec in records) == 2


def test_a_content_filter_answer_is_a_failure_with_that_reason(tree, server, tmp_path):
    server.script(Scripted(finish_reason="content_filter"))
    r = snipstream(*run_args(server, tree, "-o", tmp_path / "out.ndjson", "--concurrency", "1"), cwd=tmp_path)
    assert r.code == 1
    assert "content_filter 1" in r.stderr
    rows = db_rows(tmp_path / "snipstream.db", "SELECT reason FROM records WHERE status = 'failed'")
    assert rows == [("content_filter",)]


def test_max_failures_stops_the_run_cleanly(tree, server, tmp_path):
    server.script(*[Scripted(status=400) for _ in range(5)])
    r = snipstream(
        *run_args(server, tree, "-o", tmp_path / "out.ndjson", "--concurrency", "1", "--max-failures", "2"),
        cwd=tmp_path,
    )
    assert r.code == 1
    assert "--max-failures" in r.stderr and "Traceback" not in r.stderr
    assert len(server.requests) < len(EXPECTED)
    assert db_rows(tmp_path / "snipstream.db", "PRAGMA integrity_check") == [("ok",)]


def test_a_stalled_stream_is_abandoned_and_retried(tree, server, tmp_path):
    # No wall-clock bound: a stalled attempt that was waited out would finish as one attempt, not two.
    server.script(Scripted(stall=5.0))
    out = tmp_path / "out.ndjson"
    r = snipstream(
        *run_args(server, tree, "-o", out, "--concurrency", "2", "--stall-timeout", "0.3"), cwd=tmp_path
    )
    assert r.code == 0, r.stderr
    records = read_ndjson(out)
    assert len(records) == len(EXPECTED)
    assert sorted(rec["attempts"] for rec in records) == [1] * (len(EXPECTED) - 1) + [2]
    assert len(server.requests) == len(EXPECTED) + 1


def test_unchanged_files_are_not_parsed_again(tree, server, tmp_path):
    out = tmp_path / "out.ndjson"
    assert snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path).code == 0
    shapes = tree / "pkg" / "shapes.py"
    st = shapes.stat()
    # Same size and mtime, different content: only a parse would notice (and fail). It must not happen.
    shapes.write_text("(" * st.st_size)
    os.utime(shapes, ns=(st.st_atime_ns, st.st_mtime_ns))
    sent = len(server.requests)
    r = snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert len(server.requests) == sent
    assert "syntax_error 1" in r.stderr  # broken.py, remembered as skipped; shapes.py was not parsed
    assert f"already done {len(EXPECTED)}" in r.stderr


def test_a_touched_file_is_hashed_not_parsed_and_an_edited_one_is_parsed(tree, server, tmp_path):
    out = tmp_path / "out.ndjson"
    db = tmp_path / "snipstream.db"
    assert snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path).code == 0
    main = tree / "main.py"
    os.utime(main, ns=(main.stat().st_atime_ns, main.stat().st_mtime_ns + 10**9))
    shapes = tree / "pkg" / "shapes.py"
    shapes.write_text(shapes.read_text() + "\n\ndef added():\n    return 42\n")
    sent = len(server.requests)
    r = snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert len(server.requests) == sent + 1  # only the new function is asked about
    assert [rec["qualname"] for rec in read_ndjson(out)][len(EXPECTED) :] == ["added"]
    rows = dict(db_rows(db, "SELECT file, mtime_ns FROM files"))
    assert rows[str(main)] == main.stat().st_mtime_ns  # the index follows the touch


def test_a_file_with_a_failed_snippet_is_parsed_again(tree, server, tmp_path):
    server.script(Scripted(status=400))
    out = tmp_path / "out.ndjson"
    assert snipstream(*run_args(server, tree, "-o", out, "--concurrency", "1"), cwd=tmp_path).code == 1
    indexed = {Path(f).name for (f,) in db_rows(tmp_path / "snipstream.db", "SELECT file FROM files")}
    failed_path = db_rows(tmp_path / "snipstream.db", "SELECT path FROM records WHERE status = 'failed'")[0][
        0
    ]
    assert Path(failed_path).name not in indexed
    r = snipstream(*run_args(server, tree, "-o", out), cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert sorted((x["path"], x["qualname"]) for x in read_ndjson(out)) == sorted(EXPECTED)


def test_parsing_in_processes_gives_the_same_records(tree, server, tmp_path):
    one, two = tmp_path / "one.ndjson", tmp_path / "two.ndjson"
    assert snipstream(*run_args(server, tree, "-o", one, "--db", tmp_path / "1.db"), cwd=tmp_path).code == 0
    r = snipstream(*run_args(server, tree, "-o", two, "--db", tmp_path / "2.db", "--jobs", "2"), cwd=tmp_path)
    assert r.code == 0, r.stderr
    key = lambda rec: (rec["path"], rec["qualname"], rec["code"], rec["annotation"])  # noqa: E731
    assert sorted(map(key, read_ndjson(one))) == sorted(map(key, read_ndjson(two)))
    assert "syntax_error 1" in r.stderr and "binary 1" in r.stderr


def test_a_second_interrupt_stops_at_once_and_the_checkpoint_stays_whole(tree, tmp_path):
    # Answers take 20 s and --grace is 60 s: a run that stops before any answer came back did not wait
    # for them, whatever the clock says.
    with FakeOpenAI(latency=20) as srv:
        args = run_args(srv, tree, "-o", tmp_path / "out.ndjson", "--grace", "60", "--progress", "off")
        with running(*args, cwd=tmp_path) as run:
            wait_until(lambda: len(srv.requests) >= 3, "3 requests are in flight", proc=run)
            run.signal(signal.SIGINT)
            run.wait_for("SIGINT: finishing in-flight requests (up to 60s)")
            run.signal(signal.SIGINT)
            code, stderr = run.finish(timeout=30)  # a safety net: the answers would come after 20 s
            unanswered = [r for r in srv.requests if r.status == 0]
        assert code == 130, stderr
        assert "second interrupt" in stderr and "Traceback" not in stderr
        assert len(unanswered) == len(srv.requests) >= 3, "it stopped before any answer came back"
    assert db_rows(tmp_path / "snipstream.db", "PRAGMA integrity_check") == [("ok",)]


def test_a_large_file_answered_while_still_being_planned_joins_the_index(tmp_path, server):
    src = tmp_path / "src"
    src.mkdir()
    big = src / "big.py"
    big.write_text("".join(f"def f{i}(x):\n    return x * {i}\n\n\n" for i in range(300)))
    r = snipstream(
        "run",
        src,
        "--base-url",
        server.url,
        "--model",
        "m",
        "-o",
        tmp_path / "o.ndjson",
        "--concurrency",
        "2",
        cwd=tmp_path,
    )
    assert r.code == 0, r.stderr
    assert db_rows(tmp_path / "snipstream.db", "SELECT file, snippets FROM files") == [(str(big), 300)]


def test_code_repeated_across_many_files_is_asked_about_once(tmp_path, server):
    src = tmp_path / "src"
    src.mkdir()
    shared = "".join(f"def shared_{i}(x):\n    return x + {i}\n\n\n" for i in range(3))
    for n in range(60):
        # the shared code comes last, so planning reaches it after waiting on a full request queue
        own = "".join(f"def own_{n}_{i}():\n    return {i}\n\n\n" for i in range(40))
        (src / f"m{n:03d}.py").write_text(own + shared)
    out = tmp_path / "o.ndjson"
    r = snipstream(
        # the code alone: in a context, each file's copy is asked (tests/test_context.py)
        *("run", src, "--base-url", server.url, "--model", "m", "-o", out, "--concurrency", "8"),
        *("--context", "none"),
        cwd=tmp_path,
    )
    assert r.code == 0, r.stderr
    prompts = [req.prompt_text for req in server.requests]
    assert len(prompts) == len(set(prompts)) == 60 * 40 + 3
    assert len(read_ndjson(out)) == 60 * 43
