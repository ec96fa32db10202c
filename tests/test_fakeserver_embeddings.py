"""Tests of the fake server's ``POST /v1/embeddings`` (tests/fakeserver/embeddings.py), through real HTTP."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakeserver import EmbeddingLimits, FakeOpenAI, Scripted, decode_base64, embed, embedding_inputs

MODEL = "text-embedding-3-small"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def client(server: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def post(client: httpx.Client, input_: Any, **params: Any) -> httpx.Response:
    return client.post("/embeddings", json={"model": MODEL, "input": input_, **params})


def vectors(response: httpx.Response) -> list[list[float]]:
    assert response.status_code == 200, response.text
    return [item["embedding"] for item in response.json()["data"]]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def test_answer_has_openais_shape(client: httpx.Client, server: FakeOpenAI) -> None:
    r = post(client, "def load_plugins(path): return entry points")
    body = r.json()
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert body["object"] == "list" and body["model"] == MODEL
    [item] = body["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    assert len(item["embedding"]) == 1536
    assert math.isclose(sum(v * v for v in item["embedding"]), 1.0, rel_tol=1e-5)  # L2-normalised
    assert body["usage"] == {"prompt_tokens": 5, "total_tokens": 5}  # whitespace words
    [logged] = server.requests
    assert (logged.path, logged.status) == ("/v1/embeddings", 200)
    assert embedding_inputs(logged.body) == ["def load_plugins(path): return entry points"]
    assert server.completions_for("embeddings") == 1


def test_texts_sharing_words_are_closer_than_unrelated_ones(client: httpx.Client) -> None:
    query = "how are plugins loaded from entry points"
    texts = [
        "def load_plugins(group): return the plugins loaded from entry points of this group",
        "def parse_header(line): split one HTTP header line into name and value",
        "class Checkpoint: the SQLite file that holds every answer",
    ]
    q, near, far, other = vectors(post(client, [query, *texts]))
    assert cosine(q, near) > 0.3
    assert cosine(q, near) > cosine(q, far) + 0.2
    assert cosine(q, near) > cosine(q, other) + 0.2
    # more shared words, closer: a ranking, as search needs it
    one_word, two_words = vectors(post(client, ["plugins only", "plugins entry"]))
    assert cosine(q, two_words) > cosine(q, one_word)


def test_same_input_gives_the_same_vector(client: httpx.Client, server: FakeOpenAI) -> None:
    text = "Return the snippets of one file, in order."
    first = vectors(post(client, text))[0]
    again = vectors(post(client, [text, "something else", text]))
    assert again[0] == first == again[2]
    assert first == embed(text)  # tests may compute what the server answers
    with FakeOpenAI() as other, httpx.Client(base_url=other.url) as c2:  # and across servers
        assert vectors(post(c2, text))[0] == first
    assert cosine(first, vectors(post(client, text.upper()))[0]) == pytest.approx(
        1.0
    )  # words are lower-cased


def test_dimensions_are_honoured(client: httpx.Client) -> None:
    for size in (1, 8, 256, 1536):
        [vec] = vectors(post(client, "load plugins", dimensions=size))
        assert len(vec) == size
        assert math.isclose(math.sqrt(sum(v * v for v in vec)), 1.0, rel_tol=1e-5)
    a, b, c = vectors(post(client, ["load the plugins", "plugins load", "parse headers"], dimensions=256))
    assert cosine(a, b) > cosine(a, c)
    for bad in (0, -3, 1537, "64", True, 1.5):
        r = post(client, "x", dimensions=bad)
        assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions", bad


def test_embedding_dimensions_knob_sets_the_default_and_the_ceiling() -> None:
    with FakeOpenAI(embedding_dimensions=3072) as srv, httpx.Client(base_url=srv.url) as c:
        assert len(vectors(post(c, "x"))[0]) == 3072
        assert len(vectors(post(c, "x", dimensions=2000))[0]) == 2000
        assert post(c, "x", dimensions=3073).status_code == 400


def test_base64_decodes_to_the_same_floats(client: httpx.Client) -> None:
    texts = ["load the plugins", "parse one header line"]
    floats = vectors(post(client, texts, encoding_format="float"))
    encoded = vectors(post(client, texts, encoding_format="base64"))
    assert all(isinstance(e, str) for e in encoded)
    for f, e in zip(floats, encoded, strict=True):
        raw = base64.b64decode(e)
        assert len(raw) == 4 * 1536
        assert list(struct.unpack("<1536f", raw)) == f == decode_base64(e)  # float32, little-endian
    assert vectors(post(client, texts))[0] == floats[0]  # "float" is the default
    bad = post(client, texts, encoding_format="binary")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "encoding_format"


def test_batch_input_gives_one_vector_per_input_in_order(client: httpx.Client) -> None:
    texts = [f"snippet number {i} about topic{i}" for i in range(50)]
    r = post(client, texts, dimensions=64)
    data = r.json()["data"]
    assert [item["index"] for item in data] == list(range(50))
    assert [item["embedding"] for item in data] == [embed(t, 64) for t in texts]
    assert r.json()["usage"]["prompt_tokens"] == 50 * 5  # five whitespace words each


def test_token_arrays_are_inputs_too(client: httpx.Client) -> None:
    one = post(client, [15339, 1917, 0])  # one token array
    assert one.status_code == 200 and len(one.json()["data"]) == 1
    assert one.json()["usage"]["prompt_tokens"] == 3
    many = vectors(post(client, [[1, 2, 3], [1, 2, 4], [7, 8, 9]]))
    assert cosine(many[0], many[1]) > cosine(many[0], many[2])


@pytest.mark.parametrize(
    "input_",
    ["", [], [""], ["ok", ""], [[]], ["text", [1, 2]], [1, "a"], {"text": "x"}, None, 3, [True]],
)
def test_bad_inputs_are_400s(client: httpx.Client, input_: Any) -> None:
    r = post(client, input_)
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == "input"


def test_model_and_body_checks_are_the_completions_ones() -> None:
    with FakeOpenAI(model=MODEL, api_key="sk-test") as srv, httpx.Client(base_url=srv.url) as c:
        assert post(c, "x").status_code == 401
        auth = {"Authorization": "Bearer sk-test"}
        other = c.post("/embeddings", json={"model": "ada", "input": "x"}, headers=auth)
        assert other.status_code == 404 and other.json()["error"]["code"] == "model_not_found"
        assert c.post("/embeddings", json={"input": "x"}, headers=auth).status_code == 400
        assert c.post("/embeddings", content=b"{nope", headers=auth).status_code == 400
        assert c.post("/embeddings", json={"model": MODEL, "input": "x"}, headers=auth).status_code == 200


def test_documented_limits_are_400s(client: httpx.Client) -> None:
    at_limit = post(client, ["w"] * 2048, dimensions=4)
    assert at_limit.status_code == 200 and len(at_limit.json()["data"]) == 2048
    over = post(client, ["w"] * 2049, dimensions=4)
    assert over.status_code == 400 and over.json()["error"]["param"] == "input"
    assert post(client, " ".join(["w"] * 8192), dimensions=4).status_code == 200
    long = post(client, " ".join(["w"] * 8193), dimensions=4)
    assert long.status_code == 400
    assert long.json()["error"]["message"] == "Invalid 'input': maximum context length is 8192 tokens."
    assert post(client, [1] * 8193, dimensions=4).status_code == 400  # token arrays count their tokens
    total = post(client, [" ".join(["w"] * 8000)] * 38, dimensions=4)  # 304,000 tokens
    assert total.status_code == 400
    error = total.json()["error"]
    assert error["type"] == error["code"] == "max_tokens_per_request"
    assert error["message"] == "Requested 304000 tokens, max 300000 tokens per request"
    assert post(client, [" ".join(["w"] * 8000)] * 37, dimensions=4).status_code == 200  # 296,000


def test_smaller_limits_can_be_set() -> None:
    limits = EmbeddingLimits(inputs=4, input_tokens=10, request_tokens=25)
    with FakeOpenAI(embedding_limits=limits) as srv, httpx.Client(base_url=srv.url) as c:
        assert post(c, ["a b c"] * 4).status_code == 200
        assert post(c, ["a b c"] * 5).status_code == 400
        assert post(c, "a " * 11).status_code == 400
        assert post(c, ["a " * 9] * 3).status_code == 400  # 27 tokens in all


def test_rate_limits_scripts_and_faults_apply(client: httpx.Client, server: FakeOpenAI) -> None:
    server.script(Scripted(status=503))
    assert post(client, "x").status_code == 503
    assert post(client, "x").status_code == 200
    server.rpm = 1
    assert post(client, "x").status_code == 200
    limited = post(client, "x")
    assert limited.status_code == 429 and "retry-after-ms" in limited.headers
    assert server.stats["admitted"] == 3 and server.stats["rejected_429"] == 1
    server.rpm = None
    server.fault_rate, server.faults = 1.0, ("cut",)
    assert len(vectors(post(client, ["a", "b", "c", "d"]))) == 2  # a cut answer lacks vectors


def test_tokens_are_charged_to_the_token_bucket(client: httpx.Client, server: FakeOpenAI) -> None:
    server.tpm = 600
    assert post(client, ["one two three", "four five"]).status_code == 200
    assert server.stats["tokens_charged"] == 5  # prompt tokens, no reservation for a completion
    assert int(client.get("/models").headers["x-ratelimit-remaining-tokens"]) <= 5


def test_openai_sdk_parses_both_formats(server: FakeOpenAI) -> None:
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(base_url=server.url, api_key="sk-test", max_retries=0)
    texts = ["load the plugins", "parse one header"]
    floats = sdk.embeddings.create(model=MODEL, input=texts, encoding_format="float", dimensions=32)
    assert [e.index for e in floats.data] == [0, 1]
    assert floats.data[0].embedding == embed(texts[0], 32)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 6
    encoded = sdk.embeddings.create(model=MODEL, input=texts, encoding_format="base64", dimensions=32)
    assert [decode_base64(e.embedding) for e in encoded.data] == [e.embedding for e in floats.data]  # type: ignore[arg-type]
    default = sdk.embeddings.create(model=MODEL, input=texts, dimensions=32)  # the SDK asks for base64
    assert server.requests[-1].body["encoding_format"] == "base64"  # type: ignore[index]
    assert [e.embedding for e in default.data] == [e.embedding for e in floats.data]
    with pytest.raises(openai.BadRequestError):
        sdk.embeddings.create(model=MODEL, input=["x"] * 2049)
