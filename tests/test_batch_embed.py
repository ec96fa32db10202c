"""``--task embed`` in batch mode: embeddings request lines of many inputs in ``/v1/embeddings`` batches of their
own, against the test server's Batch API (which answers them with the vectors of ``POST /v1/embeddings``,
tests/fakeserver/batchlines.py) or written for a local runner (``--batch-file-only``, ``collect --from``).

What a user checks: the vectors a batch stores are those a streamed run stores for the same texts; lines carry
many inputs and files hold to OpenAI's 50,000 inputs per batch; a rerun sends nothing already done; an
interrupted collect writes each record once; a snippet whose annotation is still in a batch is embedded as its
code now, and with its annotation by the submit after the annotation is collected.
"""

from __future__ import annotations

import random
import signal
import textwrap
from collections import Counter
from dataclasses import replace
from pathlib import Path

import anyio
import httpx
import orjson
import pytest

from stream.cli import build_parser, config_from_args
from stream.embeddings import floats
from tests.fakeserver import EmbeddingLimits, FakeOpenAI, embed
from tests.helpers import db_count, db_rows, read_ndjson, running, snipstream, wait_until
from tests.test_fakeserver_batch import file_lines, jsonl, poll, upload

MODEL = "gpt-4o-mini"
EMBED_URL = "/v1/embeddings"


@pytest.fixture
def server():
    with FakeOpenAI(batch_step_seconds=0.02) as s:
        yield s


def _project(root: Path, files: int = 3, per_file: int = 4) -> Path:
    """`files` modules of `per_file` functions, each with words of its own."""
    for f in range(files):
        body = "\n\n".join(
            textwrap.dedent(
                f'''\
                def task_{f}_{i}(value):
                    """Compute the {["sum", "product", "median", "range"][i % 4]} of value number {f}{i}."""
                    return value * {i + 1} + {f}
                '''
            )
            for i in range(per_file)
        )
        (root / "pkg").mkdir(parents=True, exist_ok=True)
        (root / "pkg" / f"mod{f}.py").write_text(body)
    return root


def _submit(server: FakeOpenAI, tree: Path, db: Path, *extra: str | Path, code: int = 0) -> str:
    res = snipstream(
        "batch", "submit", tree, "--base-url", server.url, "--model", MODEL, "--db", db, "--backoff", "0.01",
        *extra, cwd=db.parent,
    )  # fmt: skip
    assert res.code == code, res.stderr
    return res.stderr


def _collect(server: FakeOpenAI, db: Path, out: Path, code: int = 0) -> str:
    res = snipstream(
        "batch", "collect", "--base-url", server.url, "--db", db, "-o", out, "--wait", "--poll", "0.05",
        cwd=db.parent,
    )  # fmt: skip
    assert res.code == code, res.stderr
    return res.stderr


def _uploaded_lines(server: FakeOpenAI, start: int = 0) -> list[tuple[str, list[dict]]]:
    """(file name, its lines) of each upload from the `start`-th on."""
    return [
        (u["filename"], [orjson.loads(x) for x in server.file_content(u["id"]).splitlines()])
        for u in server.uploads[start:]
    ]


def _vectors(db: Path) -> dict[str, tuple[str, int, bytes, str | None]]:
    rows = db_rows(db, "SELECT record_id, model, dimensions, vector, annotation_id FROM vectors")
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def _streamed(server: FakeOpenAI, tree: Path, db: Path, *extra: str) -> None:
    res = snipstream(
        "run", tree, "--base-url", server.url, "--model", MODEL, "--db", db, "-o", db.with_suffix(".ndjson"),
        "--backoff", "0.01", *extra, cwd=db.parent,
    )  # fmt: skip
    assert res.code == 0, res.stderr


def test_embed_batch_stores_what_a_streamed_run_stores_in_lines_of_many_inputs(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    tree, db, out = _project(tmp_path / "src"), tmp_path / "b.db", tmp_path / "r.ndjson"
    _submit(server, tree, db, "--task", "embed", "--embed-batch", "5")
    ((name, lines),) = _uploaded_lines(server)
    assert name.startswith("snipstream-embed-")
    assert all(line["url"] == EMBED_URL and line["body"]["encoding_format"] == "base64" for line in lines)
    assert [len(line["body"]["input"]) for line in lines] == [5, 5, 2]  # 12 functions, 5 a line at most
    assert (
        len(server.batches_created) == 1 and server.batch(server.batches_created[0])["endpoint"] == EMBED_URL
    )

    err = _collect(server, db, out)
    assert "1 batch(es) collected" in err
    records = read_ndjson(out)
    assert len(records) == 12 and all(r["embedding"]["model"] == "text-embedding-3-small" for r in records)
    inputs = [text for line in lines for text in line["body"]["input"]]
    assert sorted(r["code"] for r in records) == sorted(inputs)  # --embed-text both, no annotation: the code
    stored = _vectors(db)
    for r in records:
        model, dims, blob, annotation_id = stored[r["record_id"]]
        assert (model, dims, annotation_id) == ("text-embedding-3-small", 1536, None)
        assert floats(blob) == pytest.approx(embed(r["code"]), abs=1e-7)
        assert r["response"]["request_inputs"] in (5, 2) and r["response"]["usage"]["prompt_tokens"] > 0

    streamed = tmp_path / "s.db"
    _streamed(server, tree, streamed, "--task", "embed")
    assert _vectors(streamed) == stored  # the same records, vectors and annotations, byte for byte

    status = snipstream("batch", "status", "--base-url", server.url, "--db", db, "--json", cwd=tmp_path)
    report = orjson.loads(status.stdout)
    (row,) = report["batches"]
    assert (row["endpoint"], row["lines"], row["inputs"], row["status"]) == (EMBED_URL, 3, 12, "completed")
    assert report["embedded"] == 12 and report["answered"] == 0 and report["embed_tokens"] > 0
    assert report["embed_cost_usd"] == pytest.approx(report["embed_list_cost_usd"] / 2)

    uploads = len(server.uploads)
    assert "0 new requests" in _submit(server, tree, db, "--task", "embed", "--embed-batch", "5")
    assert len(server.uploads) == uploads  # nothing already done is sent again


def test_annotations_still_in_a_batch_are_embedded_by_the_submit_after_their_collect(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    tree, db, out = _project(tmp_path / "src", files=2), tmp_path / "b.db", tmp_path / "r.ndjson"
    _submit(server, tree, db, "--task", "annotate,embed")
    (_, chat), (embed_name, first) = sorted(_uploaded_lines(server), key=lambda u: "-embed-" in u[0])
    assert {line["url"] for line in chat} == {"/v1/chat/completions"} and len(chat) == 8
    assert {line["url"] for line in first} == {EMBED_URL} and embed_name.startswith("snipstream-embed-")
    endpoints = sorted(server.batch(b)["endpoint"] for b in server.batches_created)
    assert endpoints == ["/v1/chat/completions", EMBED_URL]  # one endpoint per batch
    codes = [text for line in first for text in line["body"]["input"]]
    assert len(codes) == 8 and all(text.startswith("def task_") for text in codes)  # the code alone, for now

    _collect(server, db, out)
    uploads = len(server.uploads)
    _submit(server, tree, db, "--task", "annotate,embed")
    ((name, second),) = _uploaded_lines(server, uploads)  # the annotated texts only, in a file of their own
    annotated = [text for line in second for text in line["body"]["input"]]
    notes = {r["code"]: r["annotation"] for r in read_ndjson(out) if "annotation" in r}
    assert sorted(annotated) == sorted(f"{notes[code].strip()}\n\n{code}" for code in codes)

    _collect(server, db, out)
    streamed = tmp_path / "s.db"
    _streamed(server, tree, streamed, "--task", "annotate,embed")
    mine, theirs = _vectors(db), _vectors(streamed)
    assert len(mine) == 16 and all(theirs[r] == mine[r] for r in theirs) and len(theirs) == 8
    assert all(v[3] is not None for v in theirs.values())  # each with the annotation it was embedded with
    uploads = len(server.uploads)
    _submit(server, tree, db, "--task", "annotate,embed")
    assert len(server.uploads) == uploads


def test_an_error_line_fails_each_of_its_records_and_the_next_submit_asks_only_those(
    tmp_path: Path,
) -> None:
    tree, db, out = _project(tmp_path / "src"), tmp_path / "b.db", tmp_path / "r.ndjson"
    with FakeOpenAI(
        batch_step_seconds=0.02, batch_line_errors=lambda cid: 500 if cid.endswith(":2") else None
    ) as s:
        _submit(s, tree, db, "--task", "embed", "--embed-batch", "5")
        ((_, lines),) = _uploaded_lines(s)
        err = _collect(s, db, out, code=1)
        assert "http_500 5" in err
        failed = {r[0] for r in db_rows(db, "SELECT record_id FROM records WHERE status = 'failed'")}
        assert len(failed) == 5 and len(read_ndjson(out)) == 7
        s.batch_line_errors = 0.0
        _submit(s, tree, db, "--task", "embed", "--embed-batch", "5")
        ((_, again),) = _uploaded_lines(s, 1)
        assert [line["body"]["input"] for line in again] == [lines[1]["body"]["input"]]
        _collect(s, db, out)
    assert len(_vectors(db)) == 12 and len({r["record_id"] for r in read_ndjson(out)}) == 12


def test_a_refused_line_is_asked_again_one_input_a_line_so_only_the_refused_input_fails(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    tree, db, out = _project(tmp_path / "src"), tmp_path / "b.db", tmp_path / "r.ndjson"
    words = " ".join(f"word{i}" for i in range(60))
    long = f'def long(value):\n    """{words}"""\n    total = value * 2\n    return total + 1\n'
    (tree / "pkg" / "mod0.py").write_text((tree / "pkg" / "mod0.py").read_text() + "\n\n" + long)
    # a server whose per-input limit is small (llama.cpp's is its batch size): it refuses a request holding
    # the long function whole, with a 400
    server.embedding_limits = EmbeddingLimits(input_tokens=40)
    _submit(server, tree, db, "--task", "embed", "--embed-batch", "5")
    ((_, lines),) = _uploaded_lines(server)
    (refused,) = [line["body"]["input"] for line in lines if any(words in t for t in line["body"]["input"])]
    assert "http_400 5" in _collect(server, db, out, code=1)
    _submit(server, tree, db, "--task", "embed", "--embed-batch", "5")
    ((_, again),) = _uploaded_lines(server, 1)
    assert [line["body"]["input"] for line in again] == [[text] for text in refused]
    assert "http_400 1" in _collect(server, db, out, code=1)
    failed = db_rows(db, "SELECT qualname, reason FROM records WHERE status = 'failed'")
    assert failed == [("long", "http_400")] and len(_vectors(db)) == 12


def _config(*argv: str | Path):
    args = build_parser().parse_args(["batch", "submit", *map(str, argv)])
    return replace(config_from_args(args), batch=True).resolve(env={})


def test_files_hold_to_the_embedding_inputs_a_batch_may_carry(
    server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stream.batch import submit

    tree, db = _project(tmp_path / "src", files=4), tmp_path / "b.db"
    server.max_batch_inputs = 10  # the server holds batches to the same limit
    monkeypatch.setattr(submit, "MAX_BATCH_INPUTS", 10)  # (OpenAI's 50,000, made small)
    cfg = _config(tree, "--base-url", server.url, "--model", MODEL, "--db", db, "--task", "embed",
                  "--embed-batch", "4", "--quiet")  # fmt: skip
    done = anyio.run(lambda: submit.submit(cfg, err=lambda _: None))
    assert (done.inputs, len(done.written)) == (16, 2)
    per_file = [sum(len(line["body"]["input"]) for line in lines) for _, lines in _uploaded_lines(server)]
    assert per_file == [8, 8]  # a third line of 4 would make 12
    _collect(server, db, tmp_path / "r.ndjson")
    assert len(_vectors(db)) == 16


def test_a_batch_over_the_inputs_limit_fails_validation(server: FakeOpenAI, tmp_path: Path) -> None:
    tree, db = _project(tmp_path / "src"), tmp_path / "b.db"
    server.max_batch_inputs = 10
    _submit(server, tree, db, "--task", "embed")
    err = _collect(server, db, tmp_path / "r.ndjson", code=1)
    assert "too_many_tasks" in err and "12 embedding inputs" in err
    assert dict(db_rows(db, "SELECT reason, count(*) FROM records GROUP BY reason")) == {"batch_failed": 12}


def test_the_fake_batch_api_answers_embeddings_lines_as_post_embeddings_does(server: FakeOpenAI) -> None:
    bodies = [
        {
            "model": "text-embedding-3-small",
            "input": ["load the plugins", "parse the config"],
            "encoding_format": f,
        }
        for f in ("base64", "float")
    ] + [{"model": "text-embedding-3-small", "input": ["", "x"]}]  # an empty input: refused with a 400
    lines = [
        {"custom_id": f"e{i}", "method": "POST", "url": EMBED_URL, "body": b} for i, b in enumerate(bodies)
    ]
    with httpx.Client(base_url=server.url, timeout=10) as c:
        file_id = upload(c, jsonl(lines)).json()["id"]
        body = {"input_file_id": file_id, "endpoint": EMBED_URL, "completion_window": "24h"}
        batch = poll(c, c.post("/batches", json=body).json()["id"])[-1]
        assert batch["status"] == "completed" and batch["request_counts"]["failed"] == 1
        done = {x["custom_id"]: x["response"] for x in file_lines(c, batch["output_file_id"])}
        (error,) = file_lines(c, batch["error_file_id"])
        for i, b in enumerate(bodies[:2]):
            streamed = c.post("/embeddings", json=b).json()
            assert done[f"e{i}"]["status_code"] == 200 and done[f"e{i}"]["body"]["data"] == streamed["data"]
        assert error["custom_id"] == "e2" and error["response"]["status_code"] == 400
        assert batch["usage"]["input_tokens"] == 2 * 6 and batch["usage"]["output_tokens"] == 0


def _runner_output(folder: Path, out: Path, *, refuse: int) -> list[dict]:
    """A local runner's output for the input files in `folder` (vLLM's ``run-batch`` writes OpenAI's result
    lines): vectors as plain floats (``encoding_format`` ignored), lines shuffled, the `refuse`-th line (from
    1) answered with a 400."""
    inputs = [orjson.loads(x) for p in sorted(folder.glob("*.jsonl")) for x in p.read_bytes().splitlines()]
    lines = []
    for n, line in enumerate(inputs, 1):
        texts = line["body"]["input"]
        if n == refuse:
            body = {"error": {"message": "input too long", "type": "BadRequestError", "code": 400}}
            response = {"status_code": 400, "request_id": f"r{n}", "body": body}
        else:
            data = [{"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(texts)]
            usage = {"prompt_tokens": 10 * len(texts), "total_tokens": 10 * len(texts)}
            body = {"object": "list", "data": data, "model": line["body"]["model"], "usage": usage}
            response = {"status_code": 200, "request_id": f"r{n}", "body": body}
        lines.append({"id": f"b{n}", "custom_id": line["custom_id"], "response": response, "error": None})
    random.Random(3).shuffle(lines)
    out.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    return inputs


def test_file_only_lines_for_a_runner_and_collect_from_its_output(tmp_path: Path) -> None:
    tree, db, folder = _project(tmp_path / "src"), tmp_path / "s.db", tmp_path / "in"
    args = ["batch", "submit", tree, "--db", db, "--batch-file-only", folder, "--model", MODEL,
            "--task", "embed", "--embed-batch", "5"]  # fmt: skip
    assert snipstream(*args, cwd=tmp_path).code == 0
    inputs = _runner_output(folder, tmp_path / "out.jsonl", refuse=3)
    assert [len(line["body"]["input"]) for line in inputs] == [5, 5, 2]
    assert all(
        line["url"] == EMBED_URL and set(line) == {"custom_id", "method", "url", "body"} for line in inputs
    )
    records = tmp_path / "r.ndjson"
    res = snipstream(
        "batch", "collect", "--db", db, "--from", tmp_path / "out.jsonl", "-o", records, cwd=tmp_path
    )
    assert res.code == 1 and "http_400 2" in res.stderr, res.stderr
    got = read_ndjson(records)
    assert len(got) == 10 and all(r["response"]["usage"]["prompt_tokens"] == 10 for r in got)
    for r in got:
        assert floats(_vectors(db)[r["record_id"]][2]) == pytest.approx(embed(r["code"]), abs=1e-7)
    # collecting the same output again writes nothing more; the next submit asks the refused line's two,
    # each in a line of its own
    res = snipstream(
        "batch", "collect", "--db", db, "--from", tmp_path / "out.jsonl", "-o", records, cwd=tmp_path
    )
    assert len(read_ndjson(records)) == 10
    for path in folder.glob("*.jsonl"):
        path.unlink()
    assert snipstream(*args, cwd=tmp_path).code == 0
    again = [orjson.loads(x) for p in folder.glob("*.jsonl") for x in p.read_bytes().splitlines()]
    assert [line["body"]["input"] for line in again] == [[text] for text in inputs[2]["body"]["input"]]


@pytest.mark.timeout(120)
def test_a_collect_killed_midway_resumes_and_writes_each_vector_once(tmp_path: Path) -> None:
    tree, db, out = _project(tmp_path / "src", files=6, per_file=5), tmp_path / "b.db", tmp_path / "r.ndjson"
    with FakeOpenAI(batch_step_seconds=0.02, content_delay=0.3, content_chunk_lines=1) as server:
        # 30 snippets: lines of 3 inputs, files of 2 lines: five batches, each output file downloaded slowly
        _submit(server, tree, db, "--task", "embed", "--embed-batch", "3", "--batch-max-requests", "2")
        assert len(server.batches_created) == 5
        args = [
            "batch",
            "collect",
            "--base-url",
            server.url,
            "--db",
            db,
            "-o",
            out,
            "--wait",
            "--poll",
            "0.05",
        ]
        with running(*args, cwd=tmp_path) as proc:
            wait_until(
                lambda: 0 < db_count(db, "SELECT count(*) FROM vectors") < 30,
                "some vectors committed", timeout=60, proc=proc,
            )  # fmt: skip
            proc.proc.send_signal(signal.SIGKILL)
            proc.proc.wait()
        assert 0 < db_count(db, "SELECT count(*) FROM vectors") < 30
        _collect(server, db, out)
    ids = Counter(r["record_id"] for r in read_ndjson(out))
    assert len(ids) == 30 and max(ids.values()) == 1, "a record written twice"
    assert db_count(db, "SELECT count(*) FROM vectors") == 30
    assert db_count(db, "SELECT count(*) FROM records WHERE status = 'done'") == 30
