"""``--task embed`` and ``search`` against the real llama.cpp server (``llama-server --embeddings``), built here
by bench/realserver.py and serving its tiny random-weight model: what the fake server emulates, checked
against the real thing. Opt-in like tests/test_realserver.py: ``pytest -m realserver``.

What the real server does, and this test holds us to: it answers ``/v1/embeddings`` with many inputs per
request and base64 vectors (float32, 64 of them: the model's width); it ignores ``dimensions``; an input
longer than its physical batch (``-ub``, 512 tokens) is refused with a 500 ``server_error`` ("input (N
tokens) is too large to process", `tests.fakeserver.embeddings.EmbeddingLimits.oversize`), which must fail
that snippet alone, without retries, while the run goes on.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from bench import realserver
from stream.embeddings import floats
from tests.test_realserver import _binary, _gguf, _only_when_asked  # noqa: F401  (the same opt-in)

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.realserver,
    pytest.mark.skipif(_binary is None, reason=f"no llama-server at {realserver.server_binary()}"),
    pytest.mark.skipif(not _gguf, reason="the gguf package is not installed (pip install -e '.[bench]')"),
    pytest.mark.timeout(420),
]


def _snipstream(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _embed_floats(base_url: str, text: str) -> list[float]:
    body = json.dumps({"model": realserver.MODEL_NAME, "input": [text], "encoding_format": "float"}).encode()
    request = urllib.request.Request(
        base_url + "/embeddings", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["data"][0]["embedding"]


def test_embed_and_search_against_llama_server(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(Path(json.__file__).parent, tree / "json", ignore=shutil.ignore_patterns("__pycache__"))
    db = tmp_path / "run.db"
    model = realserver.write_model(tmp_path / "tiny.gguf", ctx=4096, space_prefix=True)
    extra = ["--embeddings", "--pooling", "mean"]
    with realserver.start(
        model, ctx=4096, parallel=2, threads=2, extra=extra, log=tmp_path / "ls.log"
    ) as server:
        args = ["run", tree, "--task", "embed", "--embed-text", "code", "--base-url", server.base_url]
        args += ["--embed-model", realserver.MODEL_NAME, "--db", db, "-o", tmp_path / "out.ndjson"]
        args += [
            "--progress",
            "off",
            "--embed-batch",
            "32",
            "--embed-batch-tokens",
            "4000",
            "--dimensions",
            "16",
        ]
        first = _snipstream(*args)
        again = _snipstream(*args)
        with sqlite3.connect(db) as conn:
            vectors = conn.execute(
                "SELECT v.dimensions, v.vector, o.line FROM vectors v JOIN occurrences o USING (record_id)"
            ).fetchall()
            failed = conn.execute(
                "SELECT reason, count(*) FROM records WHERE status = 'failed' GROUP BY reason"
            )
            failed = dict(failed.fetchall())
        dims, blob, line = next(v for v in vectors if not json.loads(v[2])["embedding"]["truncated"])
        code = json.loads(line)["code"]
        direct = _embed_floats(server.base_url, code)
        query = code  # the same text: its own vector is the nearest (cosine 1)
        found = _snipstream("search", query, "--db", db, "--base-url", server.base_url, "--json", "-k", "3")
    report = (
        f"\nfirst:\n{first.stderr[-1500:]}\nagain:\n{again.stderr[-800:]}\nsearch:\n{found.stderr[-800:]}"
    )
    print(report)
    assert first.returncode == 0 and failed == {}, report  # inputs over the server's batch: cut to fit
    assert len(vectors) == 34 and any(json.loads(v[2])["embedding"]["truncated"] for v in vectors), report
    assert max(json.loads(v[2])["response"]["request_inputs"] for v in vectors) > 5, report  # many a request
    assert dims == 64 and len(blob) == 256  # the model's width: the server does not take `dimensions`
    assert floats(blob) == pytest.approx(direct, abs=1e-6)  # the base64 answer decoded as the float one
    assert "embedded:" not in again.stderr or "embedded: 0" in again.stderr, report  # nothing paid twice
    assert found.returncode == 0, report
    hits = json.loads(found.stdout)["hits"]
    assert hits[0]["code"] == code and hits[0]["score"] == pytest.approx(1.0, abs=1e-4), report
