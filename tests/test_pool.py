"""Several endpoints (`stream.pool`, `stream.endpoint_list`): specs checked, work shared by budget and weight,
a request moved when its endpoint dies, and keys kept out of everything a run writes.

The end-to-end tests run ``snipstream run --endpoint ...`` in a subprocess against two or three loopback
`FakeOpenAI` servers; the fake servers' own logs and rate-limit ledgers are what they assert on.
"""

from __future__ import annotations

import math
import re
import sqlite3
from pathlib import Path

import anyio
import httpx
import orjson
import pytest

from stream.client import ClientPool, RetryPolicy
from stream.config import Config
from stream.errors import AuthError, ConfigError
from stream.limits import Limits
from stream.pool import EndpointPool, Member
from tests.fakeserver import FakeOpenAI, Scripted
from tests.helpers import db_rows, make_tree, read_ndjson, running, snipstream, wait_until

MODEL = "m"


def many_functions(root: Path, count: int) -> Path:
    root.mkdir(parents=True)
    for f in range(0, count, 10):
        body = "".join(
            f"def f{i}(x):\n    # step {i}\n    return x + {i}\n\n\n" for i in range(f, min(f + 10, count))
        )
        (root / f"mod{f}.py").write_text(body)
    return root


def run_pool(tree: Path, out: Path, *specs: str, extra: tuple[str, ...] = ()) -> list[str]:
    """``run TREE`` over the endpoints `specs`, with a short back-off."""
    endpoints = [a for spec in specs for a in ("--endpoint", spec)]
    return ["run", str(tree), "--model", MODEL, "--backoff", "0.01", "-o", str(out), *endpoints, *extra]


def answered_once(out: Path, db: Path, expected: int) -> list[dict]:
    """Every snippet answered exactly once, in the NDJSON and in the checkpoint; the records."""
    records = read_ndjson(out)
    ids = [r["record_id"] for r in records]
    assert len(ids) == len(set(ids)) == expected
    done = db_rows(db, "SELECT record_id FROM records WHERE status = 'done'")
    assert sorted(r for (r,) in done) == sorted(ids)
    assert db_rows(db, "SELECT count(*) FROM records WHERE status != 'done'") == [(0,)]
    return records


# --- specs and files ---------------------------------------------------------------------------------------


def resolve(*specs: str, env: dict[str, str] | None = None, **options: object) -> Config:
    return Config(("src",), model=MODEL, endpoint_specs=specs, **options).resolve(env=env or {})  # type: ignore[arg-type]


def test_a_spec_gives_every_field_and_the_key_from_its_variable() -> None:
    cfg = resolve(
        "name=east,url=https://east.example/v1/,key-env=EAST_KEY,rpm=500,tpm=200000,weight=2,kind=openai",
        "http://127.0.0.1:9/v1",
        env={"EAST_KEY": "sk-east"},
    )
    east, local = cfg.endpoints
    assert (east.name, east.url, east.kind, east.key_env, east.key) == (
        "east", "https://east.example/v1", "openai", "EAST_KEY", "sk-east"
    )  # fmt: skip
    assert (east.rpm, east.tpm, east.weight, east.model) == (500, 200000, 2, MODEL)
    assert (local.name, local.kind, local.key, local.weight) == ("127.0.0.1:9", "generic", None, 1.0)
    assert cfg.base_url == east.url and cfg.endpoint_kind == "openai"  # the first one's
    assert "sk-east" not in repr(cfg)


def test_without_endpoint_flags_the_run_has_the_one_endpoint_of_base_url() -> None:
    cfg = Config(("src",), base_url="http://127.0.0.1:8000/v1", rpm=60).resolve(env={"OPENAI_API_KEY": "k"})
    [only] = cfg.endpoints
    assert (only.name, only.url, only.key, only.rpm, only.model) == (
        "127.0.0.1:8000", "http://127.0.0.1:8000/v1", "k", 60, cfg.model
    )  # fmt: skip


def test_an_endpoints_file_gives_the_same_fields(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.toml"
    path.write_text(
        '[[endpoint]]\nname = "a"\nurl = "http://127.0.0.1:1/v1"\nrpm = 600\nweight = 3\n\n'
        '[[endpoint]]\nname = "b"\nurl = "https://b.example/v1"\nkey_env = "B_KEY"\n'
    )
    cfg = Config(("src",), model=MODEL, endpoints_file=str(path)).resolve(env={"B_KEY": "sk-b"})
    assert [(e.name, e.rpm, e.weight, e.key) for e in cfg.endpoints] == [
        ("a", 600, 3, None),
        ("b", None, 1, "sk-b"),
    ]


@pytest.mark.parametrize(
    ("specs", "env", "message"),
    [
        (
            ("name=a,url=http://127.0.0.1:1/v1,rpm=fast",),
            {},
            r"--endpoint 1 \(a\): rpm must be a positive number",
        ),
        (("name=a,url=http://127.0.0.1:1/v1,colour=red",), {}, r"--endpoint 1 \(a\): unknown field 'colour'"),
        (("name=a,rpm=5",), {}, r"--endpoint 1 \(a\): no url"),
        (("url=https://x.example/v1,key-env=X_KEY",), {}, r"--endpoint 1: no API key: \$X_KEY is not set"),
        (("url=http://127.0.0.1:1/v1,key-env=LOCAL_KEY",), {}, r"\$LOCAL_KEY is not set"),
        (("url=https://x.example/v1",), {}, r"\$OPENAI_API_KEY is not set"),
        (
            ("name=a,url=http://127.0.0.1:1/v1", "name=a,url=http://127.0.0.1:2/v1"),
            {},
            "two endpoints are named 'a'",
        ),
        (
            ("url=http://127.0.0.1:1/v1", "url=http://127.0.0.1:1/v1"),
            {},
            "two endpoints are named '127.0.0.1:1'",
        ),
        (("url=http://127.0.0.1:1/v1,weight=0",), {}, "weight must be a positive number"),
        (("url=http://127.0.0.1:1/v1,kind=nope",), {}, "kind must be auto or one of"),
        (("url=ftp://127.0.0.1:1/v1",), {}, "url must be an http"),
        (("url=https://user:pw@x.example/v1",), {}, "the url holds credentials"),
        (("url=http://127.0.0.1:1/v1,sk-pasted-key",), {}, "part 2 is not field=value"),
        (("url=http://127.0.0.1:1/v1,key=sk-inline-key",), {}, r"keys are never given inline \(key=\)"),
        (
            ("url=http://127.0.0.1:1/v1", "url=http://127.0.0.1:2/v1,model=other"),
            {},
            "serve different models",
        ),
    ],
)
def test_a_bad_endpoint_is_refused_naming_it_and_its_field(
    specs: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        resolve(*specs, env=env)
    assert "sk-" not in str(caught.value)  # a pasted key is never echoed


def test_mixed_models_may_be_allowed_and_each_endpoint_is_sent_its_own() -> None:
    cfg = resolve("url=http://127.0.0.1:1/v1", "url=http://127.0.0.1:2/v1,model=other", mixed_models=True)
    assert [e.model for e in cfg.endpoints] == [MODEL, "other"]
    alone = Config(("src",), model=MODEL, base_url="http://127.0.0.1:1/v1").resolve(env={})
    assert cfg.fingerprint(cfg.tasks[0]) == alone.fingerprint(cfg.tasks[0])  # --model's, as with one endpoint


def test_base_url_and_endpoint_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="--base-url and --endpoint"):
        resolve("url=http://127.0.0.1:1/v1", base_url="http://127.0.0.1:2/v1")


def test_the_stored_config_names_endpoints_and_urls_but_holds_no_key() -> None:
    cfg = resolve("name=a,url=https://a.example/v1,key-env=A_KEY", env={"A_KEY": "sk-secret-a"})
    stored = orjson.dumps(cfg.public())
    assert b"sk-secret-a" not in stored
    [a] = cfg.public()["endpoints"]
    assert (a["name"], a["url"], a["key_env"], a["key_set"]) == ("a", "https://a.example/v1", "A_KEY", True)


# --- the pool in process -----------------------------------------------------------------------------------


def answer(request: httpx.Request) -> httpx.Response:
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    body = {"id": "x", "model": MODEL, "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
    return httpx.Response(200, json={**body, "usage": usage})


def member(name: str, handler, *, weight: float = 1.0, tpm: float | None = None) -> Member:  # type: ignore[no-untyped-def]
    pool = ClientPool(
        base_url=f"http://{name}.test/v1", api_key=f"sk-{name}", api_key_env="K", api="chat", concurrency=1,
        limits=Limits(tpm=tpm), retry=RetryPolicy(max_attempts=2, base=0.001), transport=httpx.MockTransport(handler),
    )  # fmt: skip
    return Member(name, pool, weight)


async def test_weights_share_the_work_and_refunds_reach_the_limiter_that_was_charged() -> None:
    a, b = member("a", answer, weight=3, tpm=6_000_000), member("b", answer, tpm=6_000_000)
    async with EndpointPool([a, b]) as pool:
        names = [(await pool.complete({"model": MODEL}, reserve_tokens=100)).endpoint for _ in range(8)]
        assert names.count("a") == 6 and names.count("b") == 2  # interleaved: a a b a a a b a
        done = await pool.complete({"model": MODEL}, reserve_tokens=100)
        pool.refund(done, -50)  # over its reservation: charged to the limiter of the endpoint that answered
        charged, other = (a, b) if done.endpoint == "a" else (b, a)
        assert charged.pool.limits.tokens.level < other.pool.limits.tokens.level - 40
        assert pool.requests_by_endpoint() == {"a": a.pool.requests_sent, "b": b.pool.requests_sent}


async def test_a_401_takes_one_endpoint_out_and_the_request_goes_to_another() -> None:
    said: list[str] = []
    refused = member("a", lambda r: httpx.Response(401, json={"error": {"message": "Incorrect key sk-a"}}))
    async with EndpointPool([refused, member("b", answer)], note=said.append) as pool:
        results = [await pool.complete({"model": MODEL}, reserve_tokens=1) for _ in range(3)]
    assert [c.endpoint for c in results] == ["b", "b", "b"] and refused.gone
    [note] = said
    assert note.startswith("note: endpoint a is out for the run (http_401") and "sk-a" not in note
    assert note.endswith("in service: b")


async def test_when_the_last_endpoint_refuses_the_key_the_error_stops_the_run() -> None:
    refused = member("a", lambda r: httpx.Response(401, json={"error": {"message": "no"}}))
    async with EndpointPool([refused]) as pool:
        with pytest.raises(AuthError, match=re.escape("401 from http://a.test/v1/chat/completions")):
            await pool.complete({"model": MODEL}, reserve_tokens=1)


async def test_a_request_prefers_an_endpoint_whose_limiter_would_not_make_it_wait() -> None:
    a, b = (
        member("a", answer, weight=100, tpm=6_000),
        member("b", answer, tpm=600_000),
    )  # a: 100 tokens a second
    async with EndpointPool([a, b]) as pool:
        first = await pool.complete({"model": MODEL}, reserve_tokens=90)
        later = [(await pool.complete({"model": MODEL}, reserve_tokens=90)).endpoint for _ in range(3)]
    assert first.endpoint == "a"
    assert later == ["b", "b", "b"]  # a would make them wait: b takes them, whatever the weights
    assert math.isinf(a.pool.limits.delay(7_000))  # more than a minute's budget: never on a


# --- end to end, through the command line ------------------------------------------------------------------


def test_two_servers_share_the_run_and_each_record_names_its_endpoint(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "project")
    out, db = tmp_path / "out.ndjson", tmp_path / "snipstream.db"
    with FakeOpenAI(chunks=4) as east, FakeOpenAI(chunks=4) as west:
        args = run_pool(tree, out, f"name=east,url={east.url}", f"name=west,url={west.url}")
        r = snipstream(*args, cwd=tmp_path)
        sent = {"east": len(east.requests), "west": len(west.requests)}
    assert r.code == 0, r.stderr
    records = answered_once(out, db, 13)
    by_endpoint = {name: sum(rec["response"]["endpoint"] == name for rec in records) for name in sent}
    assert by_endpoint == sent and min(sent.values()) > 0
    assert f"requests by endpoint: east {sent['east']}, west {sent['west']}" in r.stderr
    [(config,)] = db_rows(db, "SELECT config FROM runs")
    assert [e["name"] for e in orjson.loads(config)["endpoints"]] == ["east", "west"]


def test_a_server_stopped_mid_run_loses_nothing_and_the_survivor_keeps_its_rpm(tmp_path: Path) -> None:
    tree = many_functions(tmp_path / "src", 80)
    out, db = tmp_path / "out.ndjson", tmp_path / "snipstream.db"
    rpm = 900  # 15 a second, as the survivor's own limit and ours
    with FakeOpenAI(chunks=4, rpm=rpm) as survivor, FakeOpenAI(chunks=4, latency=0.3) as doomed:
        args = run_pool(
            tree, out, f"name=keep,url={survivor.url},rpm={rpm}", f"name=lose,url={doomed.url}",
            extra=("--concurrency", "4", "--db", str(db)),
        )  # fmt: skip
        with running(*args, cwd=tmp_path) as proc:
            wait_until(lambda: doomed.stats["admitted"] >= 8, "the second server answered some", proc=proc)
            doomed.stop()  # in-flight answers are cut; new connections refused
            code, stderr = proc.finish(timeout=60)
        stats, charges = survivor.stats, survivor.charges
    assert code == 0, stderr
    assert "note: endpoint lose is out for 60s" in stderr and "in service: keep" in stderr
    records = answered_once(out, db, 80)
    assert {rec["response"]["endpoint"] for rec in records} == {"keep", "lose"}
    # the survivor never refused a request, and admitted no more than its limit (and one second's burst)
    assert stats["rejected_429"] == 0
    admitted = [t for t, requests, _ in charges if requests]
    span = admitted[-1] - admitted[0]
    assert len(admitted) <= rpm / 60 * (span + 1.0) + 1, (len(admitted), span)


def test_weights_bias_the_split(tmp_path: Path) -> None:
    tree = many_functions(tmp_path / "src", 40)
    out = tmp_path / "out.ndjson"
    with FakeOpenAI(chunks=2) as heavy, FakeOpenAI(chunks=2) as light:
        args = run_pool(tree, out, f"name=heavy,url={heavy.url},weight=3", f"name=light,url={light.url}")
        r = snipstream(*args, cwd=tmp_path)
        counts = len(heavy.requests), len(light.requests)
    assert r.code == 0, r.stderr
    assert sum(counts) == 40 and counts[0] >= 2.5 * counts[1] > 0, counts


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "name=east,url=http://127.0.0.1:9/v1,tpm=lots",
            "--endpoint 1 (east): tpm must be a positive number",
        ),
        ("name=east,url=http://127.0.0.1:9/v1,key-env=EAST_KEY_UNSET", "$EAST_KEY_UNSET is not set"),
        ("name=east,url=http://127.0.0.1:9/v1,region=eu", "--endpoint 1 (east): unknown field 'region'"),
    ],
)
def test_a_bad_endpoint_exits_2_with_a_clear_message(tmp_path: Path, spec: str, message: str) -> None:
    r = snipstream(*run_pool(tmp_path, tmp_path / "out.ndjson", spec), cwd=tmp_path)
    assert r.code == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_keys_appear_in_no_output_and_a_refused_key_takes_its_endpoint_out(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "project")
    out, db = tmp_path / "out.ndjson", tmp_path / "snipstream.db"
    keys = {
        "EAST_KEY": "sk-east-SENTINEL-31d0",
        "WEST_KEY": "sk-west-SENTINEL-8a7e",
        "BAD_KEY": "sk-bad-SENTINEL-c4",
    }
    echo = {"error": {"message": f"Incorrect API key provided: {keys['BAD_KEY']}", "code": "invalid_api_key"}}
    with (
        FakeOpenAI(chunks=4, api_key=keys["EAST_KEY"]) as east,
        FakeOpenAI(chunks=4, api_key=keys["WEST_KEY"]) as west,
        FakeOpenAI(chunks=4) as bad,
    ):
        bad.script(*[Scripted(status=401, body=echo)] * 20)
        specs = [
            f"name={n.lower()},url={s.url},key-env={n}_KEY"
            for n, s in (("EAST", east), ("WEST", west), ("BAD", bad))
        ]
        r = snipstream(*run_pool(tree, out, *specs, extra=("--concurrency", "3")), cwd=tmp_path, env=keys)
        sent = [req.headers.get("authorization") for req in east.requests + west.requests]
        alone = run_pool(tree, tmp_path / "o2", specs[2], extra=("--db", str(tmp_path / "b.db")))
        last = snipstream(*alone, cwd=tmp_path, env=keys)
    assert r.code == 0, r.stderr
    assert set(sent) == {f"Bearer {keys['EAST_KEY']}", f"Bearer {keys['WEST_KEY']}"}
    assert "note: endpoint bad is out for the run (http_401" in r.stderr
    answered_once(out, db, 13)
    assert last.code == 3 and "error: 401 from" in last.stderr  # the last endpoint: the run stops
    artefacts = {
        "stdout": r.stdout + last.stdout,
        "stderr": (r.stderr + last.stderr).encode(),
        "ndjson": out.read_bytes(),
    }
    artefacts.update({p.name: p.read_bytes() for p in tmp_path.glob("*.db*")})
    for name, data in artefacts.items():
        for key in keys.values():
            assert key.encode() not in data and key[:12].encode() not in data, f"{key} leaked into {name}"
    with sqlite3.connect(db) as conn:
        (config,) = conn.execute("SELECT config FROM runs").fetchone()
    assert {e["name"]: e["key_set"] for e in orjson.loads(config)["endpoints"]} == {
        "east": True,
        "west": True,
        "bad": True,
    }


def test_when_every_endpoint_is_out_the_run_stops_with_the_breakers_message(
    tmp_path: Path, tree: Path
) -> None:
    with FakeOpenAI() as one, FakeOpenAI() as two:
        urls = one.url, two.url
    # nothing listens at either any more: each breaker trips; the last one's message stops the run
    r = snipstream(
        *run_pool(tree, tmp_path / "out.ndjson", f"name=a,url={urls[0]}", f"name=b,url={urls[1]}"),
        cwd=tmp_path,
    )
    assert r.code == 3, r.stderr
    assert "nothing is listening at http://127.0.0.1:" in r.stderr and "connection refused" in r.stderr
    assert "note: endpoint a is out" in r.stderr and "note: endpoint b is out" in r.stderr


def test_a_run_without_endpoint_flags_names_its_one_endpoint_by_host(tmp_path: Path, tree: Path) -> None:
    with FakeOpenAI(chunks=4) as srv:
        r = snipstream("run", tree, "--base-url", srv.url, "--model", MODEL, cwd=tmp_path)
        host = f"127.0.0.1:{srv.port}"
    assert r.code == 0, r.stderr
    assert {rec["response"]["endpoint"] for rec in r.records} == {host}
    assert "requests by endpoint" not in r.stderr


def test_limits_delay_takes_nothing() -> None:
    async def main() -> None:
        limits = Limits(rpm=60)
        assert limits.delay(1) == 0
        await limits.acquire(1)
        assert 0 < limits.delay(1) <= 1.2
        assert limits.delay(1) > 0  # asking twice took nothing more

    anyio.run(main)
