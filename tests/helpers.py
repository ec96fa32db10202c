"""Helpers shared by the test files: running the command line (to the end, in the background to be
interrupted, or one subcommand in this process), the small source tree with known contents (`make_tree`),
reading what a run wrote, waiting for events instead of sleeping, holding a checkpoint the way a run does,
building checkpoints with known rows, and the fake server's own usage numbers.

Waiting is event-driven: `wait_until` polls a condition and returns as soon as it holds; its timeout is
only a safety net (reaching it fails the test with what was awaited), never what a test asserts.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from tests.fakeserver import FakeOpenAI, LoggedRequest

REPO = Path(__file__).resolve().parent.parent

T = TypeVar("T")


# --- running the command line ------------------------------------------------------------------------------


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a test run gets: ours without any OPENAI_* variable, the repo on PYTHONPATH."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    full["PYTHONPATH"] = str(REPO)
    full.update(env or {})
    return full


def run_args(
    server: FakeOpenAI, tree: Path, *extra: str | Path, model: str = "m", backoff: str | None = "0.01"
) -> list[str]:
    """``run TREE`` against `server` with `model` and a short back-off (None: the default one), then `extra`."""
    backoff_args = [] if backoff is None else ["--backoff", backoff]
    return ["run", str(tree), "--base-url", server.url, "--model", model, *backoff_args, *map(str, extra)]


@dataclass
class Result:
    code: int
    stdout: bytes
    stderr: str

    @property
    def records(self) -> list[dict]:
        return [orjson.loads(line) for line in self.stdout.splitlines()]


def snipstream(
    *args: str | Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    input: bytes | None = None,
) -> Result:
    """Run the real command line in a subprocess, as a user would, to its end."""
    proc = subprocess.run(
        [sys.executable, "-m", "stream", *map(str, args)],
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        timeout=timeout,
        input=input,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def subcommand(
    command: Any, name: str, argv: Sequence[str | Path], capsysbinary: pytest.CaptureFixture[bytes]
) -> tuple[int, bytes, bytes]:
    """``snipstream NAME ARGV`` in this process, through the subcommand's own parser and run() (`command`
    is its module, e.g. ``stream.cli.export``): (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="snipstream")
    command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([name, *map(str, argv)])
    capsysbinary.readouterr()
    code = command.run(args)
    out, err = capsysbinary.readouterr()
    return code, out, err


class Running:
    """A snipstream process started in the background (stdout discarded); its stderr is collected line by
    line by a thread, so a test can wait for a message (`wait_for`) while the process goes on."""

    def __init__(self, args: Sequence[str | Path], cwd: Path, env: dict[str, str] | None, stderr: bool):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream", *map(str, args)],
            cwd=cwd,
            env=cli_env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE if stderr else subprocess.DEVNULL,
        )
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None
        if stderr:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._changed:
                self._lines.append(raw.decode("utf-8", "replace"))
                self._changed.notify_all()
        with self._changed:
            self._lines.append("")  # end of stream
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """Block until a line of stderr contains `text`; return that line (fails if the process ends first
        or, as a safety net, after `timeout` seconds)."""
        assert self._reader is not None, "started without stderr"
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self._lines[seen:]:
                    if text in line:
                        return line
                    if line == "":
                        pytest.fail(f"the process ended before printing {text!r}:\n{''.join(self._lines)}")
                seen = len(self._lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no {text!r} on stderr within {timeout:g}s:\n{''.join(self._lines)}")
                self._changed.wait(left)

    def running(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        """Wait for the end (the timeout is a safety net); (exit code, all of stderr)."""
        self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        return self.proc.returncode, self.stderr

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        if self._reader is not None:
            self._reader.join(30)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@contextmanager
def running(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None, stderr: bool = True
) -> Iterator[Running]:
    """Start ``snipstream ARGS`` in the background; on leaving the block it is killed if still running."""
    run = Running(args, cwd, env, stderr)
    try:
        yield run
    finally:
        run.close()


def wait_until(
    condition: Callable[[], T],
    what: str,
    *,
    timeout: float = 30,
    proc: Running | None = None,
    interval: float = 0.002,
) -> T:
    """Poll `condition` until it returns something true, and return that. Fails the test if `proc` ends
    first, or, as a safety net only, after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and not proc.running():
            pytest.fail(f"the process ended (exit {proc.proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} within {timeout:g}s")
        time.sleep(interval)


# --- building a source tree with known contents ------------------------------------------------------------

SHAPES = '''\
"""Shapes and helpers."""
import functools


def plain(a, b=1):
    """Add two numbers."""
    # a comment inside
    return a + b


@functools.lru_cache(maxsize=None)
@staticmethod
def decorated(x):  # trailing comment
    return x * 2


async def fetch(url: str) -> bytes:
    """Fetch a URL."""
    return b""


class Shape:
    """A shape."""

    sides = 0

    def area(self) -> float:
        return 0.0

    @property
    def name(self):
        return type(self).__name__

    async def refresh(self):
        self.sides = 0

    class Meta:
        def describe(self):
            return "meta"


def outer():
    def inner():
        return 1
    return inner()
'''

# (path, qualname) → kind, for everything the tree must yield
EXPECTED = {
    ("pkg/shapes.py", "plain"): "function",
    ("pkg/shapes.py", "decorated"): "function",
    ("pkg/shapes.py", "fetch"): "async_function",
    ("pkg/shapes.py", "Shape"): "class",
    ("pkg/shapes.py", "Shape.area"): "method",
    ("pkg/shapes.py", "Shape.name"): "method",
    ("pkg/shapes.py", "Shape.refresh"): "async_method",
    ("pkg/shapes.py", "Shape.Meta"): "class",
    ("pkg/shapes.py", "Shape.Meta.describe"): "method",
    ("pkg/shapes.py", "outer"): "function",
    ("pkg/shapes.py", "outer.<locals>.inner"): "function",
    ("pkg/legacy.py", "greet"): "function",
    ("main.py", "main"): "function",
}


def make_tree(root: Path) -> Path:
    """A small project: good files, a syntax error, a latin-1 file, an ignored and a vendored file."""
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "shapes.py").write_text(SHAPES)
    (root / "pkg" / "broken.py").write_text("def broken(:\n    pass\n")
    (root / "pkg" / "legacy.py").write_bytes(
        '# -*- coding: latin-1 -*-\ndef greet():\n    """Say h\u00e9llo."""\n    return \'caf\u00e9\'\n'.encode(
            "latin-1"
        )
    )
    (root / "pkg" / "blob.py").write_bytes(b"\x00\x01\x02binary")
    (root / ".gitignore").write_text("generated_*.py\n")
    (root / "pkg" / "generated_api.py").write_text("def generated():\n    pass\n")
    (root / "node_modules").mkdir()
    (root / "node_modules" / "vendored.py").write_text("def vendored():\n    pass\n")
    (root / "main.py").write_text(
        textwrap.dedent("""\
        def main():
            return 0
    """)
    )
    return root


# --- reading what a run wrote ------------------------------------------------------------------------------


def read_ndjson(path: Path) -> list[dict]:
    """Every line of an NDJSON file, parsed (a torn line fails the test)."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def count_lines(path: Path) -> int:
    """Whole lines in a file that is being written (0 when it does not exist yet)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def db_count(db: Path, sql: str) -> int:
    """A count from the checkpoint a process is writing: 0 while it has no such file or table yet."""
    if not db.exists():
        return 0
    try:
        return db_rows(db, sql)[0][0]
    except sqlite3.OperationalError:
        return 0


def db_rows(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(sql, params).fetchall()
    conn.close()
    return rows


# --- the fake server's own numbers -------------------------------------------------------------------------


def server_usage(server: FakeOpenAI, req: LoggedRequest) -> tuple[int, int]:
    """(prompt tokens, completion tokens) the fake server reports for a generated answer to `req`, by its
    documented rules: prompt tokens are the prompt's whitespace-separated words; the reply is cut into
    `chunks` pieces (no more than its characters, nor than the request's max tokens), one token each."""
    assert req.body is not None
    prompt = len(req.prompt_text.split())
    completion = min(max(server.chunks, 1), len(server.reply(req)))
    limit = req.body.get("max_completion_tokens", req.body.get("max_tokens"))
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
        completion = min(completion, limit)
    return prompt, completion


# --- holding a checkpoint as a run does --------------------------------------------------------------------

_HOLDER = """\
import sys, anyio, orjson, stream
from sinks.checkpoint import Checkpoint
async def main():
    async with Checkpoint(sys.argv[1]) as ckpt:
        if len(sys.argv) > 2:
            await ckpt.start_run(orjson.loads(sys.argv[2]))
        print("locked", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
anyio.run(main)
"""


@contextmanager
def checkpoint_held(db: Path, run_config: dict[str, Any] | None = None) -> Iterator[None]:
    """Another process holds `db` for the block as a running snipstream does: its flock and an open write
    connection, and a started run when `run_config` is given. It lets go when the block ends."""
    extra = [] if run_config is None else [orjson.dumps(run_config).decode()]
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=cli_env(),
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == b"locked\n"
        yield
    finally:
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()
    assert holder.returncode == 0


# --- building checkpoints with known rows ------------------------------------------------------------------


def make_record(
    qualname: str,
    *,
    path: str = "pkg/mod.py",
    template: str = "annotate",
    model: str = "m",
    fingerprint: str | None = None,
    annotation: str | None = None,
    data: Any = None,
    truncated: bool = False,
    code: str | None = None,
    kind: str = "function",
    language: str = "python",
    start_line: int = 1,
    usage: tuple[int, int] = (100, 20),
    usage_estimated: bool = False,
) -> dict[str, Any]:
    """A done record shaped like the NDJSON line `snipstream run` writes (with the new `data` field)."""
    from stream.model import snippet_id, stable_hash

    code = code if code is not None else f"def {qualname}(x):\n    return x\n"
    fingerprint = fingerprint or stable_hash("task", template, model)
    sid = snippet_id(language, code)
    if annotation is None:
        annotation = orjson.dumps(data).decode() if data is not None else f"About {qualname}."
    return {
        "schema_version": 1,
        "record_id": stable_hash(sid, fingerprint),
        "snippet_id": sid,
        "path": path,
        "language": language,
        "kind": kind,
        "qualname": qualname,
        "parent": None,
        "start_line": start_line,
        "end_line": start_line + code.count("\n") - 1,
        "signature": f"def {qualname}(x)",
        "docstring": None,
        "code": code,
        "task": {
            "template": template,
            "fingerprint": fingerprint,
            "api": "chat",
            "model": model,
            "params": {},
        },
        "annotation": annotation,
        "data": data,
        "truncated": truncated,
        "response": {
            "id": "r-" + qualname,
            "model": model,
            "created": 1,
            "finish_reason": "length" if truncated else "stop",
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
            "usage_estimated": usage_estimated,
            "system_fingerprint": None,
        },
        "attempts": 1,
        "latency_s": 0.1,
        "annotated_at": "2026-01-01T00:00:00+00:00",
    }


_RESULT_KEYS = (
    "task",
    "annotation",
    "data",
    "truncated",
    "response",
    "attempts",
    "latency_s",
    "annotated_at",
)


def store(
    db: Path,
    records: Sequence[dict[str, Any]] = (),
    *,
    failed: Sequence[tuple[str, str, str, str]] = (),  # (template, model, reason, "path:qualname")
    skips: Sequence[tuple[str, str]] = (),  # (path, reason)
    unwritten: int = 0,
) -> None:
    """Commit records (grouped into answers by record id), failures and skips through `Checkpoint`.

    The last `unwritten` places are left unemitted; the others are marked written."""
    import anyio

    from sinks.checkpoint import Checkpoint
    from sinks.schema import Done, Failed, Occurrence
    from stream.model import stable_hash

    async def main() -> None:
        by_id: dict[str, list[dict[str, Any]]] = {}
        for rec in records:
            by_id.setdefault(rec["record_id"], []).append(rec)
        done = [
            Done(
                rid,
                places[0]["snippet_id"],
                places[0]["task"]["fingerprint"],
                places[0]["task"]["model"],
                orjson.dumps({k: places[0][k] for k in _RESULT_KEYS}),
                1,
                [
                    Occurrence(
                        stable_hash(rid, p["path"], p["qualname"]),
                        p["path"],
                        p["qualname"],
                        orjson.dumps(p) + b"\n",
                    )
                    for p in places
                ],
            )
            for rid, places in by_id.items()
        ]
        fails = [
            Failed(
                stable_hash("failed", place, template),
                stable_hash("snippet", place),
                stable_hash("task", template, model),
                model,
                reason,
                f"attempt 1: {reason}: the server said no\nattempt 2: {reason}: the server said no again",
                2,
                place.split(":")[0],
                place.split(":")[1],
            )
            for template, model, reason, place in failed
        ]
        async with Checkpoint(db) as ckpt:
            await ckpt.commit(done, fails, [(f"/src/{p}", p, r, "detail") for p, r in skips], None)
            places = [o[0] for d in done for o in d.occurrences]
            if places:
                await ckpt.mark_emitted(places[: len(places) - unwritten], None, None)

    anyio.run(main)
