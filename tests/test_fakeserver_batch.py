"""Tests of the fake server's Files and Batch APIs (`tests.fakeserver.batchapi`), over real HTTP with httpx
and, when it is installed, the official ``openai`` SDK (whose types are the wire format's contract)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.fakeserver import FakeOpenAI, default_reply
from tests.test_fakeserver import served_by_cli

CHAT = "/v1/chat/completions"
ENDED = ("completed", "failed", "expired", "cancelled")
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


def request_line(i: int, *, url: str = CHAT, **body: Any) -> dict[str, Any]:
    """Input line `i`: custom_id ``req-<i>``, a chat body asking about snippet `i`."""
    content = f"def f{i}(x):\n    return x + {i}\n"
    return {
        "custom_id": f"req-{i}",
        "method": "POST",
        "url": url,
        "body": {"model": "gpt-test", "messages": [{"role": "user", "content": content}]} | body,
    }


def jsonl(lines: list[Any]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def upload(
    client: httpx.Client, data: bytes, *, filename: str = "in.jsonl", purpose: str = "batch"
) -> httpx.Response:
    return client.post(
        "/files", data={"purpose": purpose}, files={"file": (filename, data, "application/jsonl")}
    )


def submit(client: httpx.Client, lines: list[Any], **extra: Any) -> dict[str, Any]:
    """Upload `lines` and create a batch of them; the Batch object as created."""
    resp = upload(client, jsonl(lines))
    assert resp.status_code == 200, resp.text
    body = {"input_file_id": resp.json()["id"], "endpoint": CHAT, "completion_window": "24h"} | extra
    created = client.post("/batches", json=body)
    assert created.status_code == 200, created.text
    return created.json()


def poll(client: httpx.Client, batch_id: str, until: tuple[str, ...] = ENDED) -> list[dict[str, Any]]:
    """GET the batch until its status is one of `until`; every object seen, the last one first matching."""
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen.append(client.get(f"/batches/{batch_id}").json())
        if seen[-1]["status"] in until:
            return seen
        time.sleep(0.005)
    raise AssertionError(f"batch {batch_id} stayed {seen[-1]['status']}")


def file_lines(client: httpx.Client, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    resp = client.get(f"/files/{file_id}/content")
    assert resp.status_code == 200
    return [orjson.loads(line) for line in resp.content.splitlines()]


@pytest.fixture
def make_server() -> Iterator[Callable[..., FakeOpenAI]]:
    started: list[FakeOpenAI] = []

    def make(**knobs: Any) -> FakeOpenAI:
        started.append(FakeOpenAI(chunks=8, **{"batch_step_seconds": 0.02} | knobs).start())
        return started[-1]

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def server(make_server: Callable[..., FakeOpenAI]) -> FakeOpenAI:
    return make_server()


@pytest.fixture
def client(server: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


# ---- files ----------------------------------------------------------------------------------------------


def test_upload_answers_a_file_object_and_keeps_the_bytes(server: FakeOpenAI, client: httpx.Client) -> None:
    data = jsonl([request_line(i) for i in range(3)])
    resp = upload(client, data)
    assert resp.status_code == 200
    obj = resp.json()
    assert re.fullmatch(r"file-\w+", obj["id"])
    assert obj | {"id": "", "created_at": 0, "expires_at": 0} == {
        "id": "", "object": "file", "bytes": len(data), "created_at": 0, "filename": "in.jsonl",
        "purpose": "batch", "status": "processed", "expires_at": 0, "status_details": None,
    }  # fmt: skip
    assert obj["expires_at"] == obj["created_at"] + 30 * 24 * 3600  # batch files expire after 30 days
    assert client.get(f"/files/{obj['id']}").json() == obj
    content = client.get(f"/files/{obj['id']}/content")
    assert content.content == data and content.headers["content-type"] == "application/octet-stream"
    assert server.uploads == [
        {"id": obj["id"], "filename": "in.jsonl", "purpose": "batch", "bytes": len(data),
         "custom_ids": ["req-0", "req-1", "req-2"]}
    ]  # fmt: skip
    assert server.file_content(obj["id"]) == data
    assert [r.path for r in server.requests] == [
        "/v1/files",
        f"/v1/files/{obj['id']}",
        f"/v1/files/{obj['id']}/content",
    ]


def test_upload_refusals(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(max_file_bytes=100)
    with httpx.Client(base_url=server.url) as c:
        too_big = upload(c, b"x" * 101)
        assert too_big.status_code == 400 and too_big.json()["error"]["type"] == "invalid_request_error"
        assert upload(c, b"x" * 100).status_code == 200
        assert upload(c, b"x" * 101, purpose="user_data").status_code == 200  # the limit is the Batch API's
        assert upload(c, b"{}", filename="in.txt").status_code == 400  # a batch file is .jsonl
        bad = upload(c, b"{}", purpose="nonsense")
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "purpose"
        missing = c.post("/files", data={"purpose": "batch"}, files={"other": ("a", b"b")})
        assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"
        assert c.post("/files", json={"purpose": "batch"}).status_code == 400
    assert len(server.uploads) == 2


def test_file_list_delete_and_404(client: httpx.Client) -> None:
    ids = [upload(client, b"{}\n", filename=f"f{i}.jsonl").json()["id"] for i in range(3)]
    other = upload(client, b"notes", filename="n.txt", purpose="user_data").json()["id"]
    listing = client.get("/files").json()
    assert listing["object"] == "list" and [f["id"] for f in listing["data"]] == [other, *ids[::-1]]
    page = client.get("/files", params={"purpose": "batch", "order": "asc", "limit": 2}).json()
    assert [f["id"] for f in page["data"]] == ids[:2]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (ids[0], ids[1], True)
    rest = client.get("/files", params={"purpose": "batch", "order": "asc", "after": ids[1]}).json()
    assert [f["id"] for f in rest["data"]] == ids[2:] and rest["has_more"] is False
    assert client.get("/files", params={"limit": 0}).status_code == 400
    deleted = client.delete(f"/files/{ids[0]}")
    assert deleted.json() == {"id": ids[0], "object": "file", "deleted": True}
    for method, path in (("GET", ids[0]), ("GET", f"{ids[0]}/content"), ("DELETE", ids[0])):
        gone = client.request(method, f"/files/{path}")
        assert gone.status_code == 404 and gone.json()["error"]["type"] == "invalid_request_error"


def test_content_delay_sends_the_file_in_pieces(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(content_delay=0.05, content_chunk_lines=2)
    data = jsonl([request_line(i) for i in range(6)])
    with httpx.Client(base_url=server.url) as c:
        file_id = upload(c, data).json()["id"]
        started = time.monotonic()
        with c.stream("GET", f"/files/{file_id}/content") as resp:
            assert resp.headers["content-length"] == str(len(data))
            pieces = list(resp.iter_raw())
    assert b"".join(pieces) == data
    assert time.monotonic() - started >= 0.1  # three pieces, two pauses


def test_upload_delay_stores_the_file_before_answering(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(upload_delay=0.5)
    with httpx.Client(base_url=server.url, timeout=0.2) as c, pytest.raises(httpx.ReadTimeout):
        upload(c, jsonl([request_line(0)]))
    assert [u["custom_ids"] for u in server.uploads] == [["req-0"]]


# ---- batches --------------------------------------------------------------------------------------------


def test_batch_runs_to_completed_with_shuffled_output(server: FakeOpenAI, client: httpx.Client) -> None:
    lines = [request_line(i) for i in range(25)]
    created = submit(client, lines, metadata={"run": "t1"})
    assert re.fullmatch(r"batch_\w+", created["id"]) and server.batches_created == [created["id"]]
    assert created["status"] == "validating" and created["request_counts"] == {
        "total": 0,
        "completed": 0,
        "failed": 0,
    }
    assert created["expires_at"] == created["created_at"] + 24 * 3600 and created["metadata"] == {"run": "t1"}
    seen = poll(client, created["id"])
    statuses = [s["status"] for s in seen]
    order = ["validating", "in_progress", "finalizing", "completed"]
    assert (
        sorted(set(statuses), key=order.index) == [s for s in order if s in statuses]
        and statuses[-1] == "completed"
    )
    done = seen[-1]
    stamps = [done[k] for k in ("created_at", "in_progress_at", "finalizing_at", "completed_at")]
    assert stamps == sorted(stamps) and None not in stamps
    assert (done["failed_at"], done["expired_at"], done["cancelling_at"], done["cancelled_at"]) == (None,) * 4
    assert done["request_counts"] == {"total": 25, "completed": 25, "failed": 0}
    assert done["error_file_id"] is None and done["errors"] is None and done["model"] == "gpt-test"
    out = file_lines(client, done["output_file_id"])
    assert {line["custom_id"] for line in out} == {line["custom_id"] for line in lines}
    assert [line["custom_id"] for line in out] != [line["custom_id"] for line in lines]  # shuffled
    by_id = {line["custom_id"]: line for line in lines}
    for line in out:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200 and response["request_id"].startswith("req_")
        answer = response["body"]
        assert answer["object"] == "chat.completion" and answer["id"].startswith("chatcmpl-")
        prompt = by_id[line["custom_id"]]["body"]["messages"][0]["content"]
        assert answer["choices"][0]["message"]["content"] == default_reply(prompt)
        assert answer["usage"]["completion_tokens"] == 8 and answer["usage"]["prompt_tokens"] > 0
    assert done["usage"]["output_tokens"] == 25 * 8
    assert server.batch_lines_answered == 25
    output_file = client.get(f"/files/{done['output_file_id']}").json()
    assert (
        output_file["purpose"] == "batch_output" and output_file["filename"] == f"{done['id']}_output.jsonl"
    )
    assert server.batch(done["id"]) == done


def test_batch_lines_are_answered_like_the_endpoints(server: FakeOpenAI, client: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    lines = [
        request_line(0, max_tokens=3),
        request_line(1, max_completion_tokens=2),
        request_line(2, response_format=fmt),
    ]
    out = {
        line["custom_id"]: line["response"]["body"]
        for line in file_lines(client, poll(client, submit(client, lines)["id"])[-1]["output_file_id"])
    }
    for i, line in enumerate(lines):
        direct = client.post("/chat/completions", json=line["body"]).json()
        assert out[f"req-{i}"]["choices"] == direct["choices"]
        assert out[f"req-{i}"]["usage"] == direct["usage"]
    assert (
        out["req-0"]["usage"]["completion_tokens"] == 3
        and out["req-0"]["choices"][0]["finish_reason"] == "length"
    )
    assert orjson.loads(out["req-2"]["choices"][0]["message"]["content"]).keys() == {"name"}
    legacy = [
        {"custom_id": "t", "method": "POST", "url": "/v1/completions", "body": {"model": "m", "prompt": "p"}}
    ]
    resp = upload(client, jsonl(legacy))
    body = {"input_file_id": resp.json()["id"], "endpoint": "/v1/completions", "completion_window": "24h"}
    batch = client.post("/batches", json=body).json()
    (text,) = file_lines(client, poll(client, batch["id"])[-1]["output_file_id"])
    assert text["response"]["body"]["object"] == "text_completion"
    assert text["response"]["body"]["choices"][0]["text"] == default_reply("p")


def test_lines_are_answered_over_the_in_progress_step(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(batch_step_seconds=0.3)
    with httpx.Client(base_url=server.url) as c:
        seen = poll(c, submit(c, [request_line(i) for i in range(30)])["id"])
    done = [b["request_counts"]["completed"] for b in seen if b["status"] == "in_progress"]
    assert done == sorted(done) and any(0 < n < 30 for n in done)
    assert seen[-1]["request_counts"]["completed"] == 30


def test_same_seed_same_order(make_server: Callable[..., FakeOpenAI]) -> None:
    def order(srv: FakeOpenAI) -> list[str]:
        with httpx.Client(base_url=srv.url) as c:
            done = poll(c, submit(c, [request_line(i) for i in range(20)])["id"])[-1]
            return [line["custom_id"] for line in file_lines(c, done["output_file_id"])]

    first, again, other = order(make_server(seed=3)), order(make_server(seed=3)), order(make_server(seed=4))
    assert first == again != other


def test_validation_failure_reports_line_numbers(client: httpx.Client) -> None:
    good = request_line(0)
    data = b"\n".join(
        [
            orjson.dumps(good),
            b"{not json",
            orjson.dumps({k: v for k, v in request_line(1).items() if k != "custom_id"}),
            orjson.dumps(good),  # the same custom_id again
            b"   ",  # blank: skipped, but counted
            orjson.dumps(request_line(2, url="/v1/embeddings")),
            orjson.dumps(request_line(3) | {"method": "GET"}),
            orjson.dumps(request_line(4) | {"body": {"messages": []}}),
            orjson.dumps(request_line(5, model="another-model")),
            orjson.dumps([1, 2]),
        ]
    )
    file_id = upload(client, data).json()["id"]
    created = client.post(
        "/batches", json={"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
    )
    failed = poll(client, created.json()["id"])[-1]
    assert (
        failed["status"] == "failed" and failed["failed_at"] is not None and failed["in_progress_at"] is None
    )
    assert failed["errors"]["object"] == "list"
    assert [(e["line"], e["code"], e["param"]) for e in failed["errors"]["data"]] == [
        (2, "invalid_json_line", None),
        (3, "missing_required_parameter", "custom_id"),
        (4, "duplicate_custom_id", "custom_id"),
        (6, "url_mismatch", "url"),
        (7, "invalid_value", "method"),
        (8, "missing_required_parameter", "body.model"),
        (9, "model_mismatch", "body.model"),
        (10, "invalid_request", None),
    ]
    assert all(isinstance(e["message"], str) and e["message"] for e in failed["errors"]["data"])
    assert failed["output_file_id"] is None and failed["error_file_id"] is None


def test_too_many_requests_and_empty_file_fail_the_batch(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(max_batch_requests=3)
    with httpx.Client(base_url=server.url) as c:
        assert poll(c, submit(c, [request_line(i) for i in range(3)])["id"])[-1]["status"] == "completed"
        failed = poll(c, submit(c, [request_line(i) for i in range(4)])["id"])[-1]
        assert failed["status"] == "failed"
        assert [(e["code"], e["line"]) for e in failed["errors"]["data"]] == [("too_many_tasks", None)]
        empty = poll(c, submit(c, [])["id"])[-1]
        assert [e["code"] for e in empty["errors"]["data"]] == ["empty_file"]
    assert server.batch_lines_answered == 3


def test_create_refuses_bad_requests(client: httpx.Client) -> None:
    batch_file = upload(client, jsonl([request_line(0)])).json()["id"]
    other_file = upload(client, b"notes", filename="n.txt", purpose="user_data").json()["id"]
    base = {"input_file_id": batch_file, "endpoint": CHAT, "completion_window": "24h"}
    for change, param in [
        ({"input_file_id": "file-nope"}, "input_file_id"),
        ({"input_file_id": other_file}, "input_file_id"),
        ({"completion_window": "48h"}, "completion_window"),
        ({"endpoint": "/v1/moderations"}, "endpoint"),  # OpenAI's, not run by this server
        ({"endpoint": "/v1/nonsense"}, "endpoint"),
        ({"endpoint": None}, "endpoint"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
    ]:
        resp = client.post("/batches", json=base | change)
        assert resp.status_code == 400, change
        assert (
            resp.json()["error"]["param"] == param and resp.json()["error"]["type"] == "invalid_request_error"
        )
    assert client.post("/batches", content=b"{oops").status_code == 400
    assert client.get("/batches/batch_nope").status_code == 404
    assert client.post("/batches/batch_nope/cancel").status_code == 404


def test_expiry_splits_done_and_expired_lines(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(batch_expire=0.4)
    with httpx.Client(base_url=server.url) as c:
        expired = poll(c, submit(c, [request_line(i) for i in range(10)])["id"])[-1]
        assert expired["status"] == "expired" and expired["expired_at"] is not None
        assert expired["finalizing_at"] is None and expired["completed_at"] is None
        assert expired["request_counts"] == {"total": 10, "completed": 6, "failed": 0}
        done = file_lines(c, expired["output_file_id"])
        errors = file_lines(c, expired["error_file_id"])
    assert len(done) == 6 and len(errors) == 4
    assert {line["custom_id"] for line in done + errors} == {f"req-{i}" for i in range(10)}
    for line in errors:
        assert line["response"] is None
        assert line["error"] == {"code": "batch_expired", "message": EXPIRED_MESSAGE}
    assert server.batch_lines_answered == 6


def test_expire_predicate_chooses_the_lines(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(batch_expire=lambda custom_id: custom_id == "req-1")
    with httpx.Client(base_url=server.url) as c:
        expired = poll(c, submit(c, [request_line(i) for i in range(3)])["id"])[-1]
        assert [line["custom_id"] for line in file_lines(c, expired["error_file_id"])] == ["req-1"]


def test_line_errors_go_to_the_error_file(make_server: Callable[..., FakeOpenAI]) -> None:
    statuses = {"req-1": 500, "req-2": 400}
    server = make_server(batch_line_errors=statuses.get)
    with httpx.Client(base_url=server.url) as c:
        done = poll(c, submit(c, [request_line(i) for i in range(4)])["id"])[-1]
        assert done["status"] == "completed"
        assert done["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
        ok = file_lines(c, done["output_file_id"])
        errors = {line["custom_id"]: line for line in file_lines(c, done["error_file_id"])}
    assert sorted(line["custom_id"] for line in ok) == ["req-0", "req-3"]
    assert set(errors) == {"req-1", "req-2"}
    for custom_id, status, kind in [("req-1", 500, "server_error"), ("req-2", 400, "invalid_request_error")]:
        line = errors[custom_id]
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == status and line["response"]["request_id"].startswith("req_")
        assert line["response"]["body"]["error"]["type"] == kind


def test_a_model_the_server_does_not_serve_is_a_line_error(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(model="gpt-test")
    with httpx.Client(base_url=server.url) as c:
        done = poll(c, submit(c, [request_line(0, model="unknown-model")])["id"])[-1]
        (line,) = file_lines(c, done["error_file_id"])
    assert done["status"] == "completed" and done["request_counts"]["failed"] == 1
    assert line["response"]["status_code"] == 404
    assert line["response"]["body"]["error"]["code"] == "model_not_found"


def test_line_error_fraction(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(batch_line_errors=0.5)
    with httpx.Client(base_url=server.url) as c:
        done = poll(c, submit(c, [request_line(i) for i in range(10)])["id"])[-1]
        errors = file_lines(c, done["error_file_id"])
    assert done["request_counts"]["failed"] == 5 and {e["response"]["status_code"] for e in errors} == {500}


def test_all_lines_failed_means_no_output_file(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(batch_line_errors=1.0)
    with httpx.Client(base_url=server.url) as c:
        done = poll(c, submit(c, [request_line(i) for i in range(2)])["id"])[-1]
    assert done["status"] == "completed" and done["output_file_id"] is None and done["error_file_id"]


def test_hold_keeps_batches_in_progress_until_released(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(batch_hold=True)
    with httpx.Client(base_url=server.url) as c:
        batch_id = submit(c, [request_line(i) for i in range(4)])["id"]
        held = poll(c, batch_id, until=("in_progress",))[-1]
        time.sleep(0.1)  # several steps
        held = server.batch(batch_id)
        assert held["status"] == "in_progress" and held["request_counts"]["completed"] == 4
        assert server.release_batches() == 1 and server.release_batches() == 0
        assert poll(c, batch_id)[-1]["status"] == "completed"


def test_cancel_keeps_the_finished_lines(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(batch_hold=True, batch_expire=lambda custom_id: custom_id in ("req-0", "req-5"))
    with httpx.Client(base_url=server.url) as c:
        batch_id = submit(c, [request_line(i) for i in range(6)])["id"]
        poll(c, batch_id, until=("in_progress",))
        time.sleep(0.05)
        assert server.batch(batch_id)["request_counts"]["completed"] == 4
        cancelling = c.post(f"/batches/{batch_id}/cancel")
        assert cancelling.status_code == 200 and cancelling.json()["status"] == "cancelling"
        assert cancelling.json()["cancelling_at"] is not None
        assert c.post(f"/batches/{batch_id}/cancel").json()["status"] in ("cancelling", "cancelled")
        cancelled = poll(c, batch_id)[-1]
        assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] >= cancelled["cancelling_at"]
        assert sorted(line["custom_id"] for line in file_lines(c, cancelled["output_file_id"])) == [
            "req-1", "req-2", "req-3", "req-4"
        ]  # fmt: skip
        errors = file_lines(c, cancelled["error_file_id"])
        assert sorted(e["custom_id"] for e in errors) == ["req-0", "req-5"]
        assert {e["error"]["code"] for e in errors} == {"batch_cancelled"} and errors[0]["response"] is None
        assert c.post(f"/batches/{batch_id}/cancel").json()["status"] == "cancelled"  # nothing changes
        finished = submit(c, [request_line(0)])["id"]
        server.release_batches()
        poll(c, finished)
        refused = c.post(f"/batches/{finished}/cancel")
        assert refused.status_code == 409 and refused.json()["error"]["type"] == "invalid_request_error"


def test_cancel_while_validating(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(batch_step_seconds=0.5)
    with httpx.Client(base_url=server.url) as c:
        batch_id = submit(c, [request_line(0)])["id"]
        assert c.post(f"/batches/{batch_id}/cancel").json()["status"] == "cancelling"
    server.batch_step_seconds = 0.0  # read when a batch is created: this one still takes its 0.5 s
    assert server.batch(batch_id)["status"] == "cancelling"


def test_batch_list_pages_newest_first(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(batch_step_seconds=0.0)
    with httpx.Client(base_url=server.url) as c:
        ids = [submit(c, [request_line(i)])["id"] for i in range(5)]
        first = c.get("/batches", params={"limit": 2}).json()
        assert first["object"] == "list" and [b["id"] for b in first["data"]] == ids[:2:-1][:2]
        assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[4], ids[3], True)
        assert {b["status"] for b in first["data"]} == {"completed"}  # listing brings batches up to date
        second = c.get("/batches", params={"limit": 2, "after": first["last_id"]}).json()
        assert [b["id"] for b in second["data"]] == [ids[2], ids[1]] and second["has_more"] is True
        last = c.get("/batches", params={"after": second["last_id"]}).json()
        assert [b["id"] for b in last["data"]] == [ids[0]] and last["has_more"] is False
        assert [b["id"] for b in c.get("/batches").json()["data"]] == ids[::-1]  # default limit 20
        assert c.get("/batches", params={"limit": 101}).status_code == 400
    assert server.batches_created == ids


def test_every_endpoint_requires_the_api_key(make_server: Callable[..., FakeOpenAI]) -> None:
    server = make_server(api_key="sk-batch")
    calls = [("POST", "/files"), ("GET", "/files"), ("GET", "/files/file-x"), ("DELETE", "/files/file-x"),
             ("GET", "/files/file-x/content"), ("POST", "/batches"), ("GET", "/batches"),
             ("GET", "/batches/batch_x"), ("POST", "/batches/batch_x/cancel")]  # fmt: skip
    with httpx.Client(base_url=server.url) as anonymous:
        for method, path in calls:
            resp = anonymous.request(method, path)
            assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key", path
    with httpx.Client(base_url=server.url, headers={"authorization": "Bearer sk-batch"}) as c:
        assert poll(c, submit(c, [request_line(0)])["id"])[-1]["status"] == "completed"
    assert server.uploads and not [r for r in server.requests if r.status == 0]


def test_cli_configures_batches() -> None:
    with served_by_cli(
        "--batch-step-seconds", "0", "--batch-expire", "0.5", "--batch-line-errors", "0.5"
    ) as url:
        with httpx.Client(base_url=url) as c:
            done = poll(c, submit(c, [request_line(i) for i in range(4)])["id"])[-1]
    counts = done["request_counts"]
    assert (
        done["status"] == "expired" and counts["total"] == 4 and counts["completed"] + counts["failed"] == 2
    )
    assert counts["failed"] >= 1


# ---- the official SDK -------------------------------------------------------------------------------------


def test_openai_sdk_reads_the_wire_format(make_server: Callable[..., FakeOpenAI]) -> None:
    openai = pytest.importorskip("openai", reason="the openai SDK is not installed in this venv")
    from openai.types import Batch, FileObject

    server = make_server(api_key="sk-sdk", batch_line_errors=lambda cid: 500 if cid == "req-2" else None)
    sdk = openai.OpenAI(base_url=server.url, api_key="sk-sdk", max_retries=0)
    uploaded = sdk.files.create(
        file=("in.jsonl", jsonl([request_line(i) for i in range(3)])), purpose="batch"
    )
    assert isinstance(uploaded, FileObject) and uploaded.purpose == "batch" and uploaded.status == "processed"
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h", metadata={"a": "b"}
    )
    assert isinstance(batch, Batch) and batch.status == "validating"
    deadline = time.monotonic() + 10
    while batch.status not in ENDED and time.monotonic() < deadline:
        time.sleep(0.01)
        batch = sdk.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (
        3,
        2,
        1,
    )
    assert batch.usage is not None and batch.usage.output_tokens == 2 * 8
    assert batch.output_file_id and batch.error_file_id
    out = [orjson.loads(line) for line in sdk.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(line["custom_id"] for line in out) == ["req-0", "req-1"]
    assert [b.id for b in sdk.batches.list(limit=5)] == [batch.id]
    assert {f.id for f in sdk.files.list(purpose="batch_output")} == {
        batch.output_file_id,
        batch.error_file_id,
    }
    assert sdk.files.delete(uploaded.id).deleted is True
    # Strict validation of the raw JSON against the SDK's models (which `construct` leniently when parsing).
    with httpx.Client(base_url=server.url, headers={"authorization": "Bearer sk-sdk"}) as c:
        Batch.model_validate(c.get(f"/batches/{batch.id}").json(), strict=True)
        FileObject.model_validate(c.get(f"/files/{batch.output_file_id}").json(), strict=True)
        bad_file = sdk.files.create(file=("b.jsonl", b"oops\n"), purpose="batch")
        other = sdk.batches.create(input_file_id=bad_file.id, endpoint=CHAT, completion_window="24h")
        failed = Batch.model_validate(poll(c, other.id)[-1], strict=True)
    assert failed.status == "failed" and failed.errors is not None and failed.errors.data is not None
    assert (failed.errors.data[0].code, failed.errors.data[0].line) == ("invalid_json_line", 1)
