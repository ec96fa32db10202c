"""Real endpoints' rules, end to end through the command line: OpenAI's reasoning models, learning from
400s, Azure's URLs and key header, servers that refuse structured output without naming it, and context
windows. Each server behaviour is a mode of `tests.providers`, documented there with the provider's words."""

from __future__ import annotations

import re
import socket
import sqlite3
from pathlib import Path

import orjson
import pytest

from stream.endpoints import detect_kind, endpoint_url, family_of
from stream.errors import APIStatusError
from stream.negotiate import Lesson, lesson_from, overflow_numbers
from stream.prices import PRICES, PRICES_DATE, Prices
from tests.fakeserver import FakeOpenAI, Scripted
from tests.helpers import run_args, snipstream
from tests.providers import Azure, ContextWindow, OpenAIReasoning, RefusesStructured


def reasons(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT qualname, reason FROM records WHERE status = 'failed'").fetchall()
    return dict(rows)


def statuses(server: FakeOpenAI) -> list[int]:
    return [r.status for r in server.requests if r.path.endswith("completions")]


# --- the tables ------------------------------------------------------------------------------------------


def test_model_families_decide_the_token_field_and_what_is_not_sent():
    for name in (
        "gpt-5-mini",
        "gpt-5",
        "gpt-5.1",
        "o3",
        "o4-mini-2025-04-16",
        "openai/o3-mini",
        "GPT-5-nano",
    ):
        family = family_of(name)
        assert family is not None and family.reasoning, name
        assert family.token_param == "max_completion_tokens"
        assert {"temperature", "top_p"} <= family.unsupported
    for name in ("gpt-4o-mini", "gpt-4.1", "gpt-5-chat-latest"):
        family = family_of(name)
        assert family is not None and not family.reasoning, name
    assert family_of("qwen2.5-coder") is None and family_of("omni-7b") is None


def test_endpoint_kind_comes_from_the_host_and_azure_urls_follow_its_reference():
    assert detect_kind("https://api.openai.com/v1") == "openai"
    assert detect_kind("https://myres.openai.azure.com") == "azure"
    assert detect_kind("https://api.anthropic.com/v1/") == "anthropic"
    assert detect_kind("https://generativelanguage.googleapis.com/v1beta/openai/") == "gemini"
    assert detect_kind("http://localhost:11434/v1") == "ollama"
    assert detect_kind("http://127.0.0.1:8000/v1") == "generic"
    base = "https://myres.openai.azure.com"
    assert (
        endpoint_url("azure", base, "chat", "dep", "2024-10-21")
        == f"{base}/openai/deployments/dep/chat/completions?api-version=2024-10-21"
    )
    assert endpoint_url("azure", f"{base}/openai/deployments/x", "chat", "dep", None).startswith(
        f"{base}/openai/deployments/x/chat/completions?api-version="
    )
    assert (
        endpoint_url("azure", f"{base}/openai/v1", "chat", "dep", "2024-10-21")
        == f"{base}/openai/v1/chat/completions"
    )
    assert (
        endpoint_url("openai", "https://api.openai.com/v1", "chat", "m", None)
        == "https://api.openai.com/v1/chat/completions"
    )


def test_lessons_come_from_the_error_param_or_a_parameter_quoted_in_the_message():
    body = {"model": "m", "messages": [], "max_tokens": 5, "temperature": 0.2, "stop": ["x"]}
    openai = APIStatusError(
        "400: Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead.",
        status=400,
        param="max_tokens",
        code="unsupported_parameter",
    )
    assert lesson_from(openai, body) == Lesson(rename="max_completion_tokens")
    value = APIStatusError("400: Unsupported value: 'temperature' ...", status=400, param="temperature")
    assert lesson_from(value, body) == Lesson(omit="temperature")
    vllm = APIStatusError("400: Unrecognized request argument supplied: stop", status=400)
    assert lesson_from(vllm, body) == Lesson(omit="stop")
    unrelated = APIStatusError("400: 'messages' must not be empty", status=400, param="messages")
    assert lesson_from(unrelated, body) is None
    assert lesson_from(APIStatusError("500: stop", status=500), body) is None


def test_context_overflow_numbers_are_read_from_each_providers_error():
    openai = {"message": "x", "code": "context_length_exceeded"}
    msg = "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens."
    assert overflow_numbers(400, openai, msg) == (128000, 130512)
    llama = {"type": "exceed_context_size_error", "n_prompt_tokens": 14833, "n_ctx": 2048}
    assert overflow_numbers(
        400, llama, "request (14833 tokens) exceeds the available context size (2048 tokens)"
    ) == (
        2048,
        14833,
    )
    vllm = (
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
        "(4000 in the messages, 1000 in the completion)."
    )
    assert overflow_numbers(400, {}, vllm) == (4096, 4000)
    assert overflow_numbers(400, {}, "prompt is too long: 210000 tokens > 200000 maximum") == (200000, 210000)
    assert overflow_numbers(400, {"code": "invalid_value"}, "Invalid value for temperature") is None


# --- OpenAI's reasoning models ---------------------------------------------------------------------------


def test_gpt5_mini_is_asked_as_openai_documents_and_reasoning_is_in_every_record_and_the_cost(tree, tmp_path):
    prices = tmp_path / "prices.toml"
    prices.write_text('date = "2026-12"\n[models]\n"gpt-5-mini" = { input = 1000000, output = 2000000 }\n')
    with FakeOpenAI(chunks=6, provider=OpenAIReasoning()) as server:
        args = run_args(server, tree, "--temperature", "0.2", "--prices", prices, "--db", tmp_path / "c.db")
        args[args.index("m")] = "gpt-5-mini"
        r = snipstream(*args, cwd=tmp_path)
        requests = [q for q in server.requests if q.path.endswith("completions")]
    assert r.code == 0, r.stderr
    assert "does not take --temperature" in r.stderr
    assert requests and all(q.status == 200 for q in requests)  # not one 400
    assert all("max_completion_tokens" in q.body and "max_tokens" not in q.body for q in requests)
    assert all("temperature" not in q.body for q in requests)
    records = r.records
    assert {(rec["path"], rec["qualname"]) for rec in records} and all(rec["annotation"] for rec in records)
    for rec in records:
        usage = rec["response"]["usage"]
        assert usage["completion_tokens_details"]["reasoning_tokens"] == 24  # medium effort, the default
        assert usage["completion_tokens"] > 24
    prompt = sum(rec["response"]["usage"]["prompt_tokens"] for rec in records)
    completion = sum(rec["response"]["usage"]["completion_tokens"] for rec in records)
    assert f"cost ${prompt * 1.0 + completion * 2.0:,.4f}" in r.stderr  # reasoning billed as output
    assert f"{24 * len(records):,} reasoning" in r.stderr
    status = snipstream("status", "--json", "--db", tmp_path / "c.db", cwd=tmp_path)
    totals = orjson.loads(status.stdout)["totals"]
    assert totals["reasoning_tokens"] == 24 * len(records) and totals["completion_tokens"] == completion


def test_cached_prompt_tokens_are_priced_at_the_cached_rate():
    price = Prices(dict(PRICES), PRICES_DATE, "built-in").get("gpt-5-mini-2025-08-07")
    assert price is not None and price.cached_input is not None and price.cached_input < price.input
    full = price.cost(10_000, 1_000)
    assert price.cost(10_000, 1_000, cached_tokens=8_000) == pytest.approx(
        full - 8_000 * (price.input - price.cached_input) / 1e6, rel=1e-12
    )


def test_a_model_the_table_does_not_know_learns_each_refusal_once(tree, tmp_path):
    with FakeOpenAI(chunks=6, provider=OpenAIReasoning()) as server:
        args = run_args(server, tree, "--temperature", "0.2", "--concurrency", "1")
        args[args.index("m")] = "my-reasoner"
        r = snipstream(*args, cwd=tmp_path)
        codes = statuses(server)
    assert r.code == 0, r.stderr
    assert codes.count(400) == 2 and codes[:3] == [400, 400, 200]  # max_tokens, then temperature
    assert "max_completion_tokens from now on" in r.stderr and "no longer sending temperature" in r.stderr


def test_an_answer_left_empty_by_reasoning_is_a_failure_with_its_own_reason_and_a_hint(tree, tmp_path):
    db = tmp_path / "c.db"
    with FakeOpenAI(chunks=6, provider=OpenAIReasoning()) as server:
        args = run_args(server, tree, "--max-tokens", "16", "--db", db)  # medium effort spends 24
        args[args.index("m")] = "gpt-5-mini"
        r = snipstream(*args, cwd=tmp_path)
        ok = snipstream(*args, "--reasoning-effort", "low", cwd=tmp_path)  # 8 of 16
    assert r.code == 1 and r.records == []
    failed = reasons(db)
    assert failed and set(failed.values()) <= {"reasoning_used_budget"} | set()
    assert "reasoning_used_budget" in r.stderr
    with sqlite3.connect(db) as conn:
        (error,) = conn.execute("SELECT error FROM records WHERE status = 'failed' LIMIT 1").fetchone()
    assert "raise --max-tokens or lower --reasoning-effort" in error
    assert ok.code == 0, ok.stderr
    assert ok.records and all(rec["task"]["params"]["reasoning_effort"] == "low" for rec in ok.records)


# --- failing fast ----------------------------------------------------------------------------------------


def test_nothing_listening_stops_the_run_at_once_with_one_message(tree, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    r = snipstream("run", tree, "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "m", cwd=tmp_path)
    assert r.code == 3, r.stderr
    assert r.stderr.count("nothing is listening at") == 1
    assert "connection refused" in r.stderr and "--base-url" in r.stderr
    sent = re.search(r"requests sent: (\d+)", r.stderr)
    assert sent and 1 <= int(sent.group(1)) <= 60
    assert reasons(tmp_path / "snipstream.db") == {}  # nothing recorded as failed: a rerun asks for all


def test_the_same_400_for_every_request_stops_the_run_and_a_rerun_goes_on(tree, tmp_path):
    class Refuses(RefusesStructured):
        def refuse(self, kind, body, prompt_tokens):
            from tests.providers import Answer

            err = {
                "message": "Invalid value for 'stop': too many sequences.",
                "type": "invalid_request_error",
            }
            return Answer(400, {"error": {**err, "param": "stop_sequences", "code": "invalid_value"}})

    many = tmp_path / "many"
    many.mkdir()
    for i in range(20):
        (many / f"m{i}.py").write_text(
            "".join(f"def f{i}_{j}(x):\n    return x + {j}\n\n" for j in range(10))
        )
    with FakeOpenAI(chunks=4, provider=Refuses()) as server:
        r = snipstream(*run_args(server, many, "--db", tmp_path / "c.db"), cwd=tmp_path)
        sent = len(statuses(server))
        server.provider = ()
        again = snipstream(
            *run_args(server, many, "--db", tmp_path / "c.db", "-o", tmp_path / "o.ndjson"), cwd=tmp_path
        )
    assert r.code == 3, r.stderr
    assert sent <= 60
    assert r.stderr.count("every request is refused with the same 400") == 1
    assert again.code == 0, again.stderr
    lines = (tmp_path / "o.ndjson").read_text().splitlines()
    assert len(lines) == 200


def test_a_stray_400_among_answers_and_transient_faults_never_trip_the_breaker(tree, tmp_path):

    many = tmp_path / "many"
    many.mkdir()
    for i in range(10):
        (many / f"m{i}.py").write_text(
            "".join(f"def g{i}_{j}(x):\n    return x * {j}\n\n" for j in range(10))
        )
    faults = ["500", "502", "503", "reset", "cut", "malformed", "429"]
    with FakeOpenAI(chunks=4, fault_rate=0.3, faults=faults, seed=3) as server:
        server.script(*[Scripted(status=400) for _ in range(3)])
        r = snipstream(
            *run_args(server, many, "--db", tmp_path / "c.db", "--max-attempts", "10"), cwd=tmp_path
        )
    assert r.code == 1, r.stderr  # the three 400s failed their snippets, nothing else
    assert "refused with the same 400" not in r.stderr and "nothing is listening" not in r.stderr
    assert len(r.records) == 100 - 3
    assert set(reasons(tmp_path / "c.db").values()) == {"http_400"}


# --- structured output and context windows --------------------------------------------------------------


def test_structured_output_refused_without_naming_it_steps_down_once_for_the_run(tree, tmp_path):
    db = tmp_path / "c.db"
    with FakeOpenAI(chunks=4, provider=RefusesStructured()) as server:
        r = snipstream(
            *run_args(server, tree, "--task", "docstring", "--db", db, "--concurrency", "1"), cwd=tmp_path
        )
        formats = [(q.body or {}).get("response_format", {}).get("type") for q in server.requests]
        codes = statuses(server)
    assert r.code == 0, r.stderr
    assert formats[:3] == ["json_schema", "json_object", None] and codes[:3] == [400, 400, 200]
    assert codes.count(400) == 2 and all(f is None for f in formats[3:])
    assert "now sending off" in r.stderr
    assert reasons(db) == {}


def test_a_format_refusal_that_plain_requests_share_changes_nothing(tree, tmp_path):
    class AlwaysBad(RefusesStructured):
        def refuse(self, kind, body, prompt_tokens):
            from tests.providers import Answer

            return Answer(400, {"error": {"message": "bad request", "type": "invalid_request_error"}})

    with FakeOpenAI(chunks=4, provider=AlwaysBad()) as server:
        r = snipstream(*run_args(server, tree, "--task", "docstring", "--concurrency", "1"), cwd=tmp_path)
    assert r.code == 3  # the breaker: every request refused the same way
    assert "now sending" not in r.stderr


@pytest.mark.parametrize("style", ["openai", "llamacpp"])
def test_a_context_overflow_is_its_own_reason_and_teaches_the_context_size(tmp_path, style):
    src = tmp_path / "src"
    src.mkdir()
    small = "".join(f"def small_{i}(x):\n    return x + {i}\n\n" for i in range(6))
    big = "".join(
        f"def big_{i}(x):\n"
        + "".join(f"    x = x + {j}  # step number {j} of many\n" for j in range(60))
        + "    return x\n\n"
        for i in range(6)
    )
    (src / "a.py").write_text(small + big)
    db = tmp_path / "c.db"
    with FakeOpenAI(chunks=4, provider=ContextWindow(n_ctx=300, style=style)) as server:
        r = snipstream(*run_args(server, src, "--db", db, "--concurrency", "1"), cwd=tmp_path)
        codes = statuses(server)
    assert r.code == 1, r.stderr
    failed = reasons(db)
    assert sorted(failed) == [f"big_{i}" for i in range(6)]
    assert failed["big_0"] == "context_overflow"
    assert set(failed.values()) == {"context_overflow", "too_long_for_model"}
    assert codes.count(400) == 1  # learned from the first: the other long prompts were not sent
    assert "context holds 300 tokens" in r.stderr


# --- Azure -----------------------------------------------------------------------------------------------


def test_azure_gets_its_api_key_header_deployment_url_and_api_version(tree, tmp_path):
    with FakeOpenAI(chunks=4, provider=Azure(key="azure-secret", deployments=("annotator",))) as server:
        r = snipstream(
            "run", tree, "--base-url", f"http://127.0.0.1:{server.port}", "--endpoint-kind", "azure",
            "--model", "annotator", "--api-version", "2024-10-21", "--db", tmp_path / "c.db",
            cwd=tmp_path, env={"AZURE_OPENAI_API_KEY": "azure-secret"},
        )  # fmt: skip
        reqs = [q for q in server.requests]
        v1 = snipstream(
            "run", tree, "--base-url", f"http://127.0.0.1:{server.port}/openai/v1", "--endpoint-kind", "azure",
            "--model", "annotator", "--db", tmp_path / "v1.db", cwd=tmp_path,
            env={"AZURE_OPENAI_API_KEY": "azure-secret"},
        )  # fmt: skip
        v1_reqs = server.requests[len(reqs) :]
    assert r.code == 0, r.stderr
    assert reqs and all(q.path == "/openai/deployments/annotator/chat/completions" for q in reqs)
    assert all(q.query == "api-version=2024-10-21" for q in reqs)
    assert all(q.headers.get("api-key") == "azure-secret" and "authorization" not in q.headers for q in reqs)
    assert v1.code == 0, v1.stderr
    assert v1_reqs and all(q.path == "/openai/v1/chat/completions" and q.query == "" for q in v1_reqs)
    assert "azure-secret" not in r.stderr + v1.stderr


def test_azure_without_its_key_stops_at_once_naming_the_variable(tree, tmp_path):
    with FakeOpenAI(chunks=4, provider=Azure(key="azure-secret")) as server:
        r = snipstream(
            "run", tree, "--base-url", f"http://127.0.0.1:{server.port}", "--endpoint-kind", "azure",
            "--model", "annotator", cwd=tmp_path, env={"AZURE_OPENAI_API_KEY": "not-the-key-123"},
        )  # fmt: skip
    assert r.code == 3
    assert "$AZURE_OPENAI_API_KEY" in r.stderr and "not-the-key-123" not in r.stderr


@pytest.mark.parametrize("told", [True, False], ids=["endpoint-kind", "server-header"])
def test_llamacpp_context_size_is_read_from_props_and_nothing_that_cannot_fit_is_sent(tmp_path, told):
    src = tmp_path / "src"
    src.mkdir()
    small = "".join(f"def small_{i}(x):\n    return x + {i}\n\n" for i in range(4))
    big = (
        "def big(x):\n"
        + "".join(f"    x = x + {j}  # step number {j} of many\n" for j in range(80))
        + "    return x\n"
    )
    (src / "a.py").write_text(small + big)
    db = tmp_path / "c.db"
    with FakeOpenAI(chunks=4, provider=ContextWindow(n_ctx=300, style="llamacpp")) as server:
        if told:
            extra = ["--endpoint-kind", "llamacpp"]
        else:  # llama.cpp's server names itself in every answer's Server header
            extra = ["--concurrency", "1"]
            server.script(Scripted(headers={"Server": "llama.cpp"}))
        r = snipstream(*run_args(server, src, "--db", db, *extra), cwd=tmp_path)
        paths = [q.path for q in server.requests]
        codes = statuses(server)
    assert r.code == 1, r.stderr
    assert paths.index("/props") == (0 if told else 1) and paths.count("/props") == 1
    assert 400 not in codes and len(r.records) == 4
    assert reasons(db) == {"big": "too_long_for_model"}
    assert "300 tokens (llama.cpp's /props)" in r.stderr
