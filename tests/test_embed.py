"""``--task embed`` end to end: the command line against the loopback server's ``/v1/embeddings``
(tests/fakeserver/embeddings.py, OpenAI's documented request, answer and limits): what is embedded, how many
inputs a request carries, what a rerun pays for, and what a refusal does."""

from __future__ import annotations

import textwrap
from pathlib import Path

import orjson
import pytest

from stream.embeddings import floats
from tests.fakeserver import EmbeddingLimits, FakeOpenAI, Scripted, embed
from tests.helpers import db_count, db_rows, run_args, snipstream

EMBED_PATH = "/v1/embeddings"

PLUGINS = textwrap.dedent('''\
    """Plugin loading."""


    def load_plugins(registry, names):
        """Load every plugin named in names from the registry and start it."""
        loaded = []
        for name in names:
            plugin = registry.lookup(name)
            plugin.start()
            loaded.append(plugin)
        return loaded


    def parse_config(text):
        """Parse the configuration text into key value pairs."""
        pairs = {}
        for line in text.splitlines():
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
        return pairs
    ''')

SHAPES = textwrap.dedent('''\
    class Circle:
        """A circle of a given radius."""

        def __init__(self, radius):
            self.radius = radius

        def area(self):
            """The area of the circle."""
            return 3.14159 * self.radius * self.radius


    def largest(circles):
        """The circle with the largest area."""
        return max(circles, key=lambda c: c.area())
    ''')


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "plugins.py").write_text(PLUGINS)
    (root / "pkg" / "shapes.py").write_text(SHAPES)
    (root / "README.md").write_text(
        "# Project\n\nA project of plugins and shapes.\n\n## Usage\n\nLoad them.\n"
    )
    return root


def embed_requests(server: FakeOpenAI) -> list[list[str]]:
    """The inputs of each embeddings request the server received."""
    return [r.body["input"] for r in server.requests if r.path == EMBED_PATH and r.body]


def run(server: FakeOpenAI, project: Path, *extra: str, code: int = 0):
    result = snipstream(
        *run_args(server, project, "--db", project.parent / "s.db", *extra), cwd=project.parent
    )
    assert result.code == code, result.stderr
    return result


def vectors(db: Path) -> dict[str, tuple[str, int, bytes, str | None]]:
    rows = db_rows(db, "SELECT record_id, model, dimensions, vector, annotation_id FROM vectors")
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def test_each_snippet_gets_the_vector_of_its_annotation_and_code_in_few_requests(
    server: FakeOpenAI, project: Path
) -> None:
    result = run(server, project, "--task", "annotate,summarize,embed")
    records = result.records
    embedded = [r for r in records if r["task"]["template"] == "embed"]
    annotations = {
        (r["path"], r["qualname"]): r["annotation"] for r in records if r["task"]["template"] != "embed"
    }
    assert {(r["path"], r["qualname"]) for r in embedded} == set(annotations)  # every snippet, once
    requests = embed_requests(server)
    assert len(requests) == 1 and len(requests[0]) == len(embedded)  # many inputs in one request
    body = next(r.body for r in server.requests if r.path == EMBED_PATH)
    assert body["encoding_format"] == "base64" and "dimensions" not in body

    stored = vectors(project.parent / "s.db")
    for r in embedded:
        text = f"{annotations[r['path'], r['qualname']].strip()}\n\n{r['code']}"
        assert text in requests[0]
        model, dims, blob, annotation_id = stored[r["record_id"]]
        assert (model, dims) == ("text-embedding-3-small", 1536)
        assert floats(blob) == pytest.approx(
            embed(text), abs=1e-7
        )  # the server's vector, decoded from base64
        assert r["embedding"] == {
            "model": "text-embedding-3-small",
            "dimensions": 1536,
            "text": "both",
            "annotation_id": annotation_id,
            "truncated": False,
        }
        assert "vector" not in r and r["response"]["usage"]["prompt_tokens"] > 0
    assert "embedded: 8 snippets in 1 requests" in result.stderr


def test_a_rerun_embeds_only_the_edited_snippet_and_the_new_vector_replaces_the_old(
    server: FakeOpenAI, project: Path
) -> None:
    run(server, project, "--task", "annotate,embed")
    first = len(vectors(project.parent / "s.db"))
    server.clear()
    run(server, project, "--task", "annotate,embed")
    assert server.requests == []  # nothing is paid for twice

    path = project / "pkg" / "plugins.py"
    path.write_text(path.read_text().replace("Parse the configuration text", "Read the settings text"))
    result = run(server, project, "--task", "annotate,embed")
    (inputs,) = embed_requests(server)
    assert len(inputs) == 1 and "Read the settings text" in inputs[0]
    assert len(vectors(project.parent / "s.db")) == first + 1
    (line,) = [r for r in result.records if r["task"]["template"] == "embed"]
    assert line["qualname"] == "parse_config" and "Read the settings text" in line["code"]


def test_embed_alone_takes_the_annotations_the_checkpoint_has(server: FakeOpenAI, project: Path) -> None:
    run(server, project, "--task", "annotate")
    server.clear()
    result = run(server, project, "--task", "embed")
    assert server.completions_for("chat/completions") == 0  # no other task is asked
    (inputs,) = embed_requests(server)
    annotated = [t for t in inputs if "def " in t and not t.startswith("def ") and not t.startswith("class ")]
    assert len(annotated) == 6  # the six code snippets come with their annotation; the doc sections without
    assert all(r["embedding"]["annotation_id"] for r in result.records if r["kind"] != "doc_section")


@pytest.mark.parametrize("mode", ["code", "annotation"])
def test_embed_text_chooses_what_is_embedded(server: FakeOpenAI, project: Path, mode: str) -> None:
    result = run(server, project, "--task", "embed", "--embed-text", mode)
    inputs = [t for request in embed_requests(server) for t in request]
    if mode == "code":
        assert sorted(inputs) == sorted(r["code"] for r in result.records)
    else:  # nothing is annotated yet: nothing to embed, and the summary says why
        assert inputs == [] and "no_annotation 8" in result.stderr


def test_dimensions_are_sent_and_stored(server: FakeOpenAI, project: Path) -> None:
    run(server, project, "--task", "embed", "--dimensions", "256", "--embed-model", "text-embedding-3-large")
    body = next(r.body for r in server.requests if r.path == EMBED_PATH)
    assert body["dimensions"] == 256 and body["model"] == "text-embedding-3-large"
    assert {(m, d, len(v)) for m, d, v, _ in vectors(project.parent / "s.db").values()} == {
        ("text-embedding-3-large", 256, 1024)
    }


def test_requests_hold_to_the_batch_size_and_token_budget(server: FakeOpenAI, project: Path) -> None:
    run(server, project, "--task", "embed", "--embed-text", "code", "--embed-batch", "3")
    sizes = [len(i) for i in embed_requests(server)]  # (a request goes early when no job comes for a moment)
    assert max(sizes) == 3 and sum(sizes) == 8 and len(sizes) >= 3
    server.clear()
    (project.parent / "s.db").unlink()
    run(server, project, "--task", "embed", "--embed-text", "code", "--embed-batch-tokens", "60")
    sizes = [len(i) for i in embed_requests(server)]
    assert len(sizes) > 1 and sum(sizes) == 8


def long_and_short(root: Path, long_first: bool = True) -> Path:
    root.mkdir()
    words = " ".join(f"word{i}" for i in range(80))
    long = f'def long():\n    """{words}"""\n    return 2\n'
    short = 'def short():\n    """Short."""\n    return 1\n'
    (root / "a.py").write_text("\n\n".join([long, short] if long_first else [short, long]))
    (root / "b.py").write_text('def other():\n    """Another one."""\n    return 2\n')
    return root


@pytest.mark.parametrize("oversize", ["openai", "llamacpp"])
def test_an_input_over_the_servers_limit_is_cut_to_it(tmp_path: Path, oversize: str) -> None:
    """A server with a smaller per-input limit than OpenAI's 8,192 tokens refuses the request carrying the
    long input as a whole: OpenAI-style with a 400 naming its limit, llama.cpp with a 500 naming its limit and
    the input's count (`EmbeddingLimits.oversize`; not retried). The request is sent again with the inputs
    over that limit cut to it (the others as they are), and the record says ``truncated``."""
    root = long_and_short(tmp_path / "project")
    with FakeOpenAI(embedding_limits=EmbeddingLimits(input_tokens=40, oversize=oversize)) as server:
        result = run(server, root, "--task", "embed", "--embed-text", "code")
        requests = embed_requests(server)
    assert [len(i) for i in requests] == [3, 3]  # refused; the same with the long one cut to the limit
    cut = requests[1][0]
    assert requests[0][0].startswith(cut) and len(cut) < len(requests[0][0])
    truncated = {r["qualname"]: r["embedding"]["truncated"] for r in result.records}
    assert truncated == {"long": True, "short": False, "other": False}


def test_an_input_refused_for_what_it_holds_fails_alone(server: FakeOpenAI, tmp_path: Path) -> None:
    """A 400 that is about one input (once another request was answered): halves until it is alone; only
    that snippet fails, with the server's reason, and the run goes on."""
    root = long_and_short(tmp_path / "project", long_first=False)
    refusal = Scripted(status=400, body={"error": {"message": "Invalid 'input': unsupported characters."}})
    server.script(
        refusal, Scripted(), refusal, refusal
    )  # the three; short: taken; long and other; long alone
    result = run(server, root, "--task", "embed", "--embed-text", "code", code=1)
    assert [len(i) for i in embed_requests(server)] == [3, 1, 2, 1, 1]
    assert {r["qualname"] for r in result.records} == {"short", "other"}
    ((qualname, reason),) = db_rows(
        tmp_path / "s.db", "SELECT qualname, reason FROM records WHERE status = 'failed'"
    )
    assert (qualname, reason) == ("long", "http_400")


def test_a_refusal_of_every_request_stops_the_run_early(server: FakeOpenAI, project: Path) -> None:
    refusal = {
        "error": {
            "message": "This model does not support specifying dimensions.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    server.script(*[Scripted(status=400, body=refusal) for _ in range(20)])
    result = run(server, project, "--task", "embed", "--dimensions", "64", code=3)
    assert "does not support specifying dimensions" in result.stderr
    assert len(embed_requests(server)) <= 4  # 8 inputs: halved down to the first one alone, then stopped
    assert db_rows(project.parent / "s.db", "SELECT count(*) FROM vectors") == [(0,)]


def test_a_cut_answer_is_asked_again(server: FakeOpenAI, project: Path) -> None:
    server.script(
        Scripted(cut_after_chunks=1)
    )  # (on a JSON answer: half the body, then the connection closes)
    run(server, project, "--task", "embed", "--embed-text", "code")
    assert len(embed_requests(server)) == 2
    assert len(vectors(project.parent / "s.db")) == 8


def test_records_and_vectors_survive_a_rerun_with_another_model(server: FakeOpenAI, project: Path) -> None:
    run(server, project, "--task", "embed", "--embed-text", "code")
    run(server, project, "--task", "embed", "--embed-text", "code", "--embed-model", "other-embedder")
    models = sorted({m for m, *_ in vectors(project.parent / "s.db").values()})
    assert models == ["other-embedder", "text-embedding-3-small"]
    data = orjson.loads(
        db_rows(project.parent / "s.db", "SELECT config FROM runs ORDER BY run_id DESC")[0][0]
    )
    assert data["embed_model"] == "other-embedder" and "sk-" not in str(data)


def test_plan_counts_the_texts_requests_and_cost_of_embedding(server: FakeOpenAI, project: Path) -> None:
    db = project.parent / "s.db"
    plan = snipstream(
        "plan",
        project,
        "--task",
        "embed",
        "--embed-text",
        "code",
        "--embed-batch",
        "3",
        "--db",
        db,
        "--json",
        cwd=project.parent,
    )
    assert plan.code == 0, plan.stderr
    report = orjson.loads(plan.stdout.splitlines()[-1])
    embeds = report["embeddings"]
    assert (embeds["model"], embeds["texts"], embeds["requests"]) == ("text-embedding-3-small", 8, 3)
    assert embeds["tokens"] > 0 and embeds["cost_usd"] == pytest.approx(embeds["tokens"] * 0.02 / 1e6)
    assert report["rows"] == [] and not db.exists()  # a plan writes nothing
    run(server, project, "--task", "embed", "--embed-text", "code", "--embed-batch", "3")
    again = snipstream(
        "plan", project, "--task", "embed", "--embed-text", "code", "--db", db, "--json", cwd=project.parent
    )
    assert orjson.loads(again.stdout.splitlines()[-1])["embeddings"]["texts"] == 0  # all done: nothing to pay


def search(server: FakeOpenAI, project: Path, query: str) -> list[dict]:
    result = snipstream(
        "search",
        query,
        "--db",
        project.parent / "s.db",
        "--base-url",
        server.url,
        "--json",
        cwd=project.parent,
    )
    assert result.code == 0, result.stderr
    return orjson.loads(result.stdout)["hits"]


def test_search_finds_the_function_by_its_words_and_the_edited_text_after_a_rerun(
    server: FakeOpenAI, project: Path
) -> None:
    """The issue's acceptance: a query made of one function's code and docstring words finds it first;
    after one file is edited and the run repeated, only its changed snippet is embedded again and search
    finds the new text; put back, the old text is current again (its vector was never lost)."""
    run(server, project, "--task", "annotate,embed")
    first = search(server, project, "load every plugin named in names from the registry and start it")
    assert (first[0]["path"], first[0]["qualname"]) == ("pkg/plugins.py", "load_plugins")

    path = project / "pkg" / "plugins.py"
    path.write_text(
        PLUGINS.replace("Parse the configuration text into key value pairs", "Split settings lines")
    )
    server.clear()
    run(server, project, "--task", "annotate,embed")
    (inputs,) = embed_requests(server)
    assert len(inputs) == 1 and "Split settings lines" in inputs[0]  # the request log: only the edited one
    hits = search(server, project, "split settings lines")
    assert hits[0]["qualname"] == "parse_config" and "Split settings lines" in hits[0]["code"]
    assert sum(h["qualname"] == "parse_config" for h in hits) == 1  # the old vector is no longer searched

    path.write_text(PLUGINS)  # put back: nothing is asked, the first vector is current again
    server.clear()
    run(server, project, "--task", "annotate,embed")
    assert embed_requests(server) == []
    hits = search(server, project, "parse the configuration text into key value pairs")
    assert hits[0]["qualname"] == "parse_config" and "configuration text" in hits[0]["code"]


def test_status_counts_the_vectors_by_model(server: FakeOpenAI, project: Path) -> None:
    run(server, project, "--task", "embed", "--embed-text", "code", "--dimensions", "64")
    status = snipstream("status", "--db", project.parent / "s.db", "--json", cwd=project.parent)
    assert orjson.loads(status.stdout)["vectors"] == [
        {"model": "text-embedding-3-small", "dimensions": 64, "count": 8}
    ]
    text = snipstream("status", "--db", project.parent / "s.db", cwd=project.parent)
    assert "vectors: 8 of text-embedding-3-small (64 dimensions" in text.stdout.decode() + text.stderr


def test_a_run_killed_while_embedding_resumes_with_every_record_once(tmp_path: Path) -> None:
    """SIGKILL once some vectors are committed and more requests are in flight: the rerun asks only for the
    texts no earlier run committed, and the output holds each embed record exactly once."""
    import signal

    from tests.helpers import read_ndjson, running, wait_until

    root = tmp_path / "src"
    root.mkdir()
    for f in range(6):
        body = "".join(f"def f{f}_{i}(x):\n    # step {i}\n    return x + {i}\n\n\n" for i in range(8))
        (root / f"mod{f}.py").write_text(body)
    db, out = tmp_path / "s.db", tmp_path / "out.ndjson"
    with FakeOpenAI(latency=0.1) as server:
        args = [*run_args(server, root, "--db", db, "-o", out), "--task", "embed", "--embed-text", "code"]
        args += ["--embed-batch", "4", "--concurrency", "2", "--progress", "off"]

        def committed() -> int:
            return db_count(db, "SELECT count(*) FROM vectors")

        with running(*args, cwd=tmp_path, stderr=False) as proc:
            wait_until(lambda: committed() >= 8, "vectors committed", proc=proc)
            proc.signal(signal.SIGKILL)
            code, _ = proc.finish()
        assert code == -signal.SIGKILL
        before = {orjson.loads(line)["code"] for (line,) in db_rows(db, "SELECT line FROM occurrences")}
        assert 8 <= len(before) < 48
        seen = len(server.requests)
        final = snipstream(*args, cwd=tmp_path)
        assert final.code == 0, final.stderr
        asked = [t for r in server.requests[seen:] if r.path == EMBED_PATH for t in r.body["input"]]
    assert not set(asked) & before, "a committed text was embedded again"
    records = read_ndjson(out)
    assert len(records) == len({r["record_id"] for r in records}) == 48
    assert committed() == 48
