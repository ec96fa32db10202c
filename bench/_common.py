"""Shared helpers of the benchmark suite: rows, measured subprocesses, the fake server in its own process,
source trees.

Everything the suite measures runs in a child process: the fake server (`Server`, which is
``python -m bench._server``, the project's ``tests.fakeserver`` with an in-flight counter and a stats
endpoint) and each client under test (`run_proc` / `Proc`). Each is spawned by its own small launcher
(``bench/_exec.py``) and its CPU time and peak RSS come from ``os.wait4``'s rusage for exactly that pid,
taken by the launcher: two children never mix, and the runner's own work and peak RSS are never counted
(a child spawned by the runner itself would inherit the runner's peak as its own ``ru_maxrss``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
EXEC = Path(__file__).resolve().parent / "_exec.py"  # the launcher of every measured child
STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODEL = "bench"
# What `--no-default-excludes` turns off (stream/walk.py's DEFAULT_EXCLUDES; copied so that the suite's own
# file lists do not depend on the code under test).
DEFAULT_EXCLUDES = frozenset(
    {"node_modules", ".venv", "venv", "__pycache__", "build", "dist", ".tox", "site-packages"}
)
MAX_FILE_BYTES = 1 << 20  # snipstream's --max-file-bytes default


# ---------------------------------------------------------------------------------------------------------
# rows and the log of commands


@dataclass(slots=True)
class Row:
    """One line of the results table. `result` and `target` are display strings (targets are printed,
    never asserted); `note` says how the figure was obtained or what it includes."""

    bench: str
    case: str
    result: str
    target: str = ""
    note: str = ""


#: Every child command the suite ran, as (benchmark, argv), for RESULTS.md.
COMMANDS: list[tuple[str, list[str]]] = []
#: Figures one benchmark leaves for another in the same run (e.g. extraction time of a tree, for rerun).
SHARED: dict[str, Any] = {}
_current = threading.local()


@contextmanager
def benchmark(name: str) -> Iterator[None]:
    """Attribute the commands run inside to benchmark `name`."""
    old = getattr(_current, "name", "")
    _current.name = name
    try:
        yield
    finally:
        _current.name = old


def log_command(argv: Sequence[str]) -> None:
    COMMANDS.append((getattr(_current, "name", ""), [str(a) for a in argv]))


# ---------------------------------------------------------------------------------------------------------
# formatting


def rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def fnum(x: float | None, digits: int = 0) -> str:
    """A number with thousands separators (``n/a`` for None/NaN)."""
    if x is None or x != x:
        return "n/a"
    return f"{x:,.{digits}f}"


def fratio(x: float | None, digits: int = 2) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{x:.{digits}f}"


def mb(kb: int | float | None) -> str:
    """ru_maxrss (KiB on Linux) as MB."""
    return "n/a" if kb is None else f"{kb / 1024:.0f} MB"


# ---------------------------------------------------------------------------------------------------------
# rounds: a figure measured several times, and its spread


@dataclass(slots=True)
class Spread:
    """The median of a figure over rounds, its interquartile range and its range."""

    median: float
    q1: float
    q3: float
    lo: float
    hi: float
    n: int


def spread(values: Sequence[float]) -> Spread:
    xs = sorted(v for v in values if v == v)
    if not xs:
        nan = float("nan")
        return Spread(nan, nan, nan, nan, nan, 0)
    if len(xs) == 1:
        return Spread(xs[0], xs[0], xs[0], xs[0], xs[0], 1)
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return Spread(q2, q1, q3, xs[0], xs[-1], len(xs))


def fspread(values: Sequence[float], fmt: Callable[[float], str] = fratio, unit: str = "") -> str:
    """``0.70 (median of 9; IQR 0.68–0.72, range 0.64–0.75)``: the form the README's verdicts read (a
    verdict is only given when the whole IQR is on one side of the target, see bench/readme.py)."""
    sp = spread(values)
    if sp.n == 0:
        return "n/a"
    if sp.n == 1:
        return f"{fmt(sp.median)}{unit} (1 round)"
    return (
        f"{fmt(sp.median)}{unit} (median of {sp.n}; IQR {fmt(sp.q1)}–{fmt(sp.q3)}{unit}, "
        f"range {fmt(sp.lo)}–{fmt(sp.hi)}{unit})"
    )


# ---------------------------------------------------------------------------------------------------------
# measured child processes


#: Where every measured child keeps the bytecode of what it imports (PYTHONPYCACHEPREFIX), outside the
#: checkout. A child run from the checkout with PYTHONDONTWRITEBYTECODE=1 compiled every module of
#: snipstream again each time it started (~0.15 s of CPU a run, ~7% of a 2,000-request throughput run),
#: which no installed copy does (pip compiles at install time) and the reference clients, importing
#: compiled site-packages, never paid. Now the checkout is compiled once per suite run, as an install
#: would, and still gets no __pycache__ directories.
PYCACHE = Path(tempfile.gettempdir()) / f"snipstream-bench-pycache-{os.getuid()}"
_compiled: set[Path] = set()


def child_env(**extra: str) -> dict[str, str]:
    """The environment of every child: this one, the repository importable, loopback never proxied, the
    bytecode cached in `PYCACHE`."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + path if path else "")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.update(extra)
    if REPO not in _compiled:  # once per suite run: what pip does at install time
        _compiled.add(REPO)
        dirs = [str(REPO / d) for d in ("stream", "sinks", "bench", "tests")]
        subprocess.run([PY, "-m", "compileall", "-q", *dirs], env=env, capture_output=True, check=False)
    return env


@dataclass(slots=True)
class ProcResult:
    argv: list[str]
    returncode: int | None
    wall: float  # seconds from just before the spawn to the reaping of the child (both by the launcher)
    user: float  # CPU seconds of the child (wait4 rusage: that pid only, its threads included)
    sys: float
    maxrss_kb: int  # peak resident set of the child, KiB: its own (spawned from the small launcher)
    stdout: bytes
    stderr: bytes
    timed_out: bool = False

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    def tail(self, n: int = 600) -> str:
        return self.stderr.decode("utf-8", "replace")[-n:].strip()

    def check(self, ok: Sequence[int] = (0,)) -> ProcResult:
        """Raise with the child's stderr tail if it timed out or exited with an unexpected code."""
        if self.timed_out or self.returncode not in ok:
            what = "timed out" if self.timed_out else f"exited {self.returncode}"
            raise RuntimeError(f"{' '.join(self.argv[:6])} ... {what}: {self.tail()}")
        return self

    def json(self) -> Any:
        """The last line of stdout, as JSON (the helper clients print their figures that way)."""
        lines = self.stdout.strip().splitlines()
        if not lines:
            raise RuntimeError(f"no output from {' '.join(self.argv[:5])}: {self.tail()}")
        return orjson.loads(lines[-1])


class Proc:
    """A measured child process. It is spawned by a small launcher (``bench/_exec.py``, a bare interpreter
    started for it) rather than by the runner, so that its peak RSS is its own: a child spawned by the
    runner itself would inherit the runner's peak (see that module). The launcher reaps it with
    ``os.wait4`` and reports its pid, its wait status, its own CPU time and peak RSS, and the monotonic
    times of the spawn and of the exit, so the wall time is exactly the child's. stdout/stderr go to
    temporary files (no pipe can fill up and block it)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        stdout: IO[bytes] | int | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.cwd = cwd
        self.env = env if env is not None else child_env()
        self._stdout_target = stdout
        self.popen: subprocess.Popen[bytes] | None = None  # the launcher (bench/_exec.py)
        # time.monotonic() just before the launcher spawned the child (comparable with the server's clock);
        # `started` is the same figure (kept for callers that used perf_counter: the same clock on Linux)
        self.started_mono = self.started = 0.0
        self.returncode: int | None = None
        self._pid = 0
        self._report: IO[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._err: IO[bytes] | None = None
        self._usage: tuple[float, float, int] | None = None  # utime, stime, maxrss KiB of the child
        self._ended = 0.0
        self._reaper: threading.Thread | None = None

    def start(self) -> Proc:
        log_command(self.argv)
        self._out = tempfile.TemporaryFile() if self._stdout_target is None else None
        self._err = tempfile.TemporaryFile()
        rfd, wfd = os.pipe()
        try:
            self.popen = subprocess.Popen(
                [PY, "-I", "-S", str(EXEC), str(wfd), "--", *self.argv],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self._out if self._out is not None else self._stdout_target,
                stderr=self._err,
                pass_fds=(wfd,),
            )
        finally:
            os.close(wfd)
        self._report = os.fdopen(rfd, "rb")
        first = self._report.readline().split()  # the launcher writes it right after the spawn
        if first[:1] != [b"pid"] or len(first) != 3:
            rest = b" ".join(first[1:]).decode("utf-8", "replace") or "no report"
            self._report.close()
            self.popen.wait(30)
            raise RuntimeError(f"could not start {' '.join(self.argv[:4])}: {rest}")
        self._pid = int(first[1])
        self.started_mono = self.started = float(first[2])
        self._reaper = threading.Thread(target=self._reap, name=f"reap-{self._pid}", daemon=True)
        self._reaper.start()
        return self

    def _reap(self) -> None:
        assert self.popen is not None and self._report is not None
        last = self._report.read().split()  # EOF once the launcher has reaped the child and exited
        self._report.close()
        self._ended = time.monotonic()
        self.popen.wait()  # the launcher itself; its own rusage (the runner's peak) is never used
        if last[:1] == [b"exit"] and len(last) == 6:
            status = int(last[1])
            self._usage = (float(last[2]), float(last[3]), int(last[4]))
            self._ended = float(last[5])
            self.returncode = os.waitstatus_to_exitcode(status)
        else:  # the launcher died without a report (killed): no figures
            self._usage = None
            self.returncode = -1

    @property
    def pid(self) -> int:
        """The measured child's pid (not the launcher's): signals go to it."""
        return self._pid

    def running(self) -> bool:
        return self._reaper is not None and self._reaper.is_alive()

    def send_signal(self, sig: int) -> None:
        if self.running():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float, *, term_grace: float = 5.0) -> ProcResult:
        """Wait up to `timeout` s; then SIGTERM, and SIGKILL after `term_grace` s. Always reaps."""
        assert self._reaper is not None
        try:
            self._reaper.join(timeout)
        except BaseException:  # Ctrl-C of the suite: never leave the child behind
            self.send_signal(signal.SIGKILL)
            self._reaper.join(30)
            raise
        timed_out = self._reaper.is_alive()
        if timed_out:
            self.send_signal(signal.SIGTERM)
            self._reaper.join(term_grace)
            if self._reaper.is_alive():
                self.send_signal(signal.SIGKILL)
                self._reaper.join(30)
        return self._result(timed_out)

    def stop(self, *, sig: int = signal.SIGINT, grace: float = 5.0) -> ProcResult:
        """Send `sig`, then SIGKILL after `grace` s; reap."""
        assert self._reaper is not None
        self.send_signal(sig)
        self._reaper.join(grace)
        if self._reaper.is_alive():
            self.send_signal(signal.SIGKILL)
            self._reaper.join(30)
        return self._result(False)

    def _result(self, timed_out: bool) -> ProcResult:
        usage = self._usage
        out = err = b""
        for f, which in ((self._out, "out"), (self._err, "err")):
            if f is None:
                continue
            f.seek(0)
            data = f.read()
            f.close()
            if which == "out":
                out = data
            else:
                err = data
        self._out = self._err = None
        return ProcResult(
            argv=self.argv,
            returncode=self.returncode,
            wall=(self._ended or time.monotonic()) - self.started,
            user=usage[0] if usage is not None else float("nan"),
            sys=usage[1] if usage is not None else float("nan"),
            maxrss_kb=usage[2] if usage is not None else 0,
            stdout=out,
            stderr=err,
            timed_out=timed_out,
        )

    def peek_stderr(self) -> bytes:
        if self._err is None:
            return b""
        pos = self._err.tell()
        self._err.seek(0)
        data = self._err.read()
        self._err.seek(pos)
        return data


def run_proc(
    argv: Sequence[str], *, timeout: float, cwd: str | Path | None = None, env: dict[str, str] | None = None
) -> ProcResult:
    """Run a child to completion (killed after `timeout` s) and return its figures."""
    return Proc(argv, cwd=cwd, env=env).start().wait(timeout)


# ---------------------------------------------------------------------------------------------------------
# the fake server, in its own process


class Server:
    """``python -m bench._server`` (tests.fakeserver + bench instrumentation) in a child process.

    `stats()` reads its counters over HTTP (``GET /bench/stats``): requests arrived and finished, in
    flight now and at peak, first arrival / last finish (``time.monotonic()``, the same clock as this
    process's on Linux), the integral of in-flight over time, and the server process's own CPU seconds.
    `reset()` zeroes them. `stop()` ends it (SIGTERM, then SIGKILL) and returns its rusage."""

    def __init__(
        self,
        *,
        chunks: int = 20,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        min_reply_chars: int = 0,
        keep_log: bool = False,
        extra: Sequence[str] = (),
    ) -> None:
        self.argv = [
            PY,
            "-m",
            "bench._server",
            "--port",
            "0",
            "--chunks",
            str(chunks),
            "--latency",
            repr(latency),
            "--chunk-delay",
            repr(chunk_delay),
            *extra,
        ]
        if min_reply_chars:
            self.argv += ["--min-reply-chars", str(min_reply_chars)]
        if keep_log:
            self.argv.append("--keep-log")
        self.proc: Proc | None = None
        self.url = ""
        self.result: ProcResult | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self, timeout: float = 120.0) -> Server:
        self.proc = Proc(self.argv, cwd=REPO).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # The URL is the first line the server prints, but a warning may come before it: take the
            # first whole line that is a URL.
            lines = self.proc.peek_stderr().split(b"\n")[:-1]
            url = next((line for line in lines if line.startswith(b"http://")), None)
            if url is not None:
                self.url = url.decode().strip()
                return self
            if not self.proc.running():
                break
            time.sleep(0.01)
        res = self.proc.stop(sig=signal.SIGKILL, grace=1)
        raise RuntimeError(f"fake server did not start: {res.tail()}")

    def _call(self, method: str, path: str) -> dict[str, Any]:
        base = self.url.rsplit("/v1", 1)[0]
        req = urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None)
        with self._opener.open(req, timeout=10) as resp:
            return orjson.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/bench/stats")

    def reset(self) -> dict[str, Any]:
        return self._call("POST", "/bench/reset")

    def stop(self) -> ProcResult | None:
        if self.proc is not None and self.result is None:
            self.result = self.proc.stop(sig=signal.SIGTERM, grace=10)
        return self.result

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------------------
# the snipstream command line


def snipstream(
    paths: Sequence[str | Path],
    *,
    db: str | Path,
    output: str | Path = os.devnull,
    url: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    argv = [
        PY,
        "-m",
        "stream",
        "run",
        *[str(p) for p in paths],
        "--model",
        MODEL,
        "--db",
        str(db),
        "-o",
        str(output),
        "--progress",
        "off",
    ]
    if url:
        argv += ["--base-url", url]
    return argv + list(extra)


_help_cache: dict[str, str] = {}


def run_help() -> str:
    """``python -m stream run --help`` of the code as it is now (to see which options exist)."""
    if "run" not in _help_cache:
        res = run_proc([PY, "-m", "stream", "run", "--help"], timeout=60, cwd=REPO)
        _help_cache["run"] = res.stdout.decode("utf-8", "replace")
    return _help_cache["run"]


def has_option(option: str) -> bool:
    return re.search(rf"(^|[\s,\[]){re.escape(option)}\b", run_help()) is not None


def dry_run_counts(stderr: bytes) -> tuple[int | None, int | None]:
    """(snippets, files) from a dry run's summary line ``dry run: N snippets in M files`` (None if absent)."""
    m = re.search(rb"(\d[\d,]*) snippets in (\d[\d,]*) files", stderr)
    if not m:
        return None, None
    return int(m.group(1).replace(b",", b"")), int(m.group(2).replace(b",", b""))


def db_count(db: str | Path, sql: str) -> int | None:
    """A count from the checkpoint, or None when the schema does not have it (it may change)."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None


# ---------------------------------------------------------------------------------------------------------
# source trees


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed afterwards whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=f"snipstream-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_tree(root: Path, snippets: int) -> Path:
    """`snippets` distinct small functions, 50 per file (the rate-limit benchmark's generator)."""
    from bench.ratelimit import make_tree as _make_tree

    root.mkdir(parents=True, exist_ok=True)
    _make_tree(root, snippets)
    return root


def python_files(root: Path, *, default_excludes: bool = True) -> list[Path]:
    """The ``.py`` files under `root` up to --max-file-bytes, depth-first with entries sorted by name (the
    walker's order), without entering `DEFAULT_EXCLUDES` directories when `default_excludes`. Symlinks are
    not followed. Independent of stream/walk.py on purpose: it is the suite's view of the tree."""
    out: list[Path] = []

    def visit(d: Path) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            try:
                if e.is_symlink():
                    continue
                if e.is_dir():
                    if e.name == ".git" or (default_excludes and e.name in DEFAULT_EXCLUDES):
                        continue
                    visit(Path(e.path))
                elif e.name.endswith(".py") and e.is_file() and e.stat().st_size <= MAX_FILE_BYTES:
                    out.append(Path(e.path))
            except OSError:
                continue

    visit(root)
    return out


_DEF = re.compile(rb"^[ \t]*(?:async[ \t]+def|def|class)[ \t]", re.M)


def estimate_snippets(path: Path) -> int:
    """Definitions in a file by a line regex: within ~2% of the extractor's count on the stdlib."""
    try:
        return len(_DEF.findall(path.read_bytes()))
    except OSError:
        return 0


def link_tree(files: Sequence[Path], base: Path, dest: Path) -> Path:
    """A tree at `dest` with `files` at their paths relative to `base`: hard links where the file system
    allows (same device), else copies. Regular files, so the walker treats them as any source file."""
    for f in files:
        target = dest / f.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copyfile(f, target)
    return dest


def first_files_for(files: Sequence[Path], snippets: int) -> list[Path]:
    """The shortest prefix of `files` whose estimated definitions reach `snippets`."""
    total = 0
    for i, f in enumerate(files):
        total += estimate_snippets(f)
        if total >= snippets:
            return list(files[: i + 1])
    return list(files)


def bodies_from_dry_run(tree: Path, dest: Path, work: Path, *, timeout: float) -> int:
    """Write to `dest` the exact request bodies snipstream would send for `tree` (one JSON per line, from
    its --dry-run output); returns how many."""
    out = work / "dry-run.ndjson"
    db = work / "dry-run.db"
    run_proc(
        snipstream([tree], db=db, output=out, extra=["--dry-run", "-q"]), timeout=timeout, cwd=work
    ).check()
    n = 0
    with open(out, "rb") as src, open(dest, "wb") as dst:
        for line in src:
            if not line.strip():
                continue
            request = orjson.loads(line).get("request")
            if request is not None:
                dst.write(orjson.dumps(request) + b"\n")
                n += 1
    out.unlink(missing_ok=True)
    return n


def first_body(bodies: Path) -> dict[str, Any]:
    with open(bodies, "rb") as f:
        return orjson.loads(next(line for line in f if line.strip()))


def sse_events(url: str, body: dict[str, Any]) -> int:
    """How many SSE events (``data:`` lines, the ``[DONE]`` one included) one streamed answer to `body`
    holds, counted on one probe request to the fake server (made before a benchmark's counters are reset).
    Every client of a benchmark sends the same bodies to the same server, so each answer has that many
    events: CPU per event is CPU per request divided by it."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(
        url.rstrip("/") + "/chat/completions",
        data=orjson.dumps(body),
        headers={"content-type": "application/json", "accept": "text/event-stream"},
        method="POST",
    )
    with opener.open(req, timeout=60) as resp:
        return sum(1 for line in resp.read().splitlines() if line.startswith(b"data:"))


def cpu_per_event_us(cpu_ms_per_request: float, events: int) -> float:
    """CPU µs per SSE event from CPU ms per request."""
    return 1000 * cpu_ms_per_request / events if events else float("nan")


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("snipstream", "httpx", "anyio", "openai", "aiohttp", "orjson", "aiosqlite", "tiktoken"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
