"""``python -m bench.realserver build|model|serve|probe``: the real llama.cpp server, built here, with a tiny
random-weight model written here, so snipstream can be run against a real OpenAI-compatible server without
downloading a model or a prebuilt binary.

* ``build``: builds ``llama-server`` from the llama.cpp tree vendored in the ``llama-cpp-python`` sdist
  (``pip download --no-deps --no-binary :all: llama-cpp-python==VERSION``; ``vendor/llama.cpp``) with cmake and
  ninja, into a cache directory outside the repository (default ``~/.cache/snipstream/llama.cpp``, or
  ``$SNIPSTREAM_CACHE/llama.cpp``). An existing binary is reused. About 14 minutes on 2 cores. Nothing of
  llama.cpp is ever copied into the repository.
* ``model``: writes a llama-architecture GGUF (0.9 MB) with random weights (2 layers, width 64, 4 heads) and a
  1,161-token SentencePiece (``llama``) vocabulary with ``<0xNN>`` byte fallback, a ChatML chat template and
  a 4,096-token trained context, with the ``gguf`` package. It answers gibberish and never ends an answer by
  itself (see ``write_model``); everything else is the real server's: the tokenizer, the chat template (jinja
  and built-in), SSE, usage, slots, grammar-constrained JSON, errors.
* ``serve``: starts the server on 127.0.0.1 only (a free port unless ``--port``), in its default (jinja) mode
  or ``--no-jinja``, waits for ``/health``, prints the base URL, and stops it on Ctrl-C or SIGTERM.
* ``probe``: starts it in each mode and prints, as JSON, what it answers to the requests snipstream makes
  (streamed chat with and without usage, ``response_format``, JSON cut at ``max_tokens``, a prompt over the
  context, ``max_tokens`` vs ``max_completion_tokens``, ``/props``, ``/v1/models``, errors).

The binary is found at ``$SNIPSTREAM_LLAMA_SERVER`` if set, else in the cache (see ``server_binary``).
``tests/test_realserver.py`` uses this module; it runs with ``-m realserver`` and is skipped when no binary
is found. The server gets ``LLAMA_ARG_*`` variables removed from its environment, ``--offline``, no web UI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream.prompt import TASKS

LLAMA_CPP_PYTHON = "0.3.36"  # the sdist whose vendor/llama.cpp is built
CMAKE_FLAGS = (
    "-G",
    "Ninja",
    "-DLLAMA_CURL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DGGML_NATIVE=ON",
)
MODEL_NAME = "tiny-random-llama"
MODEL_FORMAT = 2  # bump when write_model changes
DEFAULT_CTX = 4096  # the trained context; the server's -c, split among its -np slots (2048 each with -np 2)


def cache_dir() -> Path:
    base = os.environ.get("SNIPSTREAM_CACHE")
    root = (
        Path(base)
        if base
        else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "snipstream"
    )
    return root / "llama.cpp"


def server_binary(version: str = LLAMA_CPP_PYTHON) -> Path:
    """Where the binary is (or would be): ``$SNIPSTREAM_LLAMA_SERVER``, else ``<cache>/<version>/llama-server``."""
    env = os.environ.get("SNIPSTREAM_LLAMA_SERVER")
    if env:
        return Path(env)
    return cache_dir() / version / "llama-server"


def find_server() -> Path | None:
    """The binary if it exists and is executable, else None."""
    path = server_binary()
    return path if path.is_file() and os.access(path, os.X_OK) else None


# --------------------------------------------------------------------------------------------------- build


def _run(cmd: Sequence[str | os.PathLike[str]], **kw: Any) -> None:
    print("+ " + " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    subprocess.run(list(map(str, cmd)), check=True, **kw)


def fetch_source(version: str, dest: Path) -> Path:
    """Download the llama-cpp-python sdist with pip and extract its ``vendor/llama.cpp``; returns that tree."""
    tree = dest / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if (tree / "CMakeLists.txt").is_file():
        return tree
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"llama-cpp-python=={version}",
                "-d",
                tmp,
            ]
        )
        (sdist,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            tar.extractall(dest, members=members, filter="data")
    return tree


def build(
    version: str = LLAMA_CPP_PYTHON,
    *,
    source: Path | None = None,
    jobs: int | None = None,
    force: bool = False,
) -> Path:
    """Build ``llama-server`` (or reuse ``$SNIPSTREAM_LLAMA_SERVER`` or the cache's) and return its path."""
    found = find_server()
    if found is not None and os.environ.get("SNIPSTREAM_LLAMA_SERVER") and not force:
        print(f"reusing $SNIPSTREAM_LLAMA_SERVER: {found}", file=sys.stderr)
        return found
    target = cache_dir() / version / "llama-server"
    if target.is_file() and not force:
        print(f"reusing {target}", file=sys.stderr)
        return target
    for tool in ("cmake", "ninja"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed to build llama-server (apt-get install cmake ninja-build)")
    tree = source or fetch_source(version, cache_dir() / version / "src")
    started = time.monotonic()
    _run(["cmake", "-S", tree, "-B", tree / "build", *CMAKE_FLAGS])
    _run(
        [
            "nice",
            "cmake",
            "--build",
            tree / "build",
            "--target",
            "llama-server",
            "-j",
            str(jobs or os.cpu_count() or 2),
        ]
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    shutil.copy2(tree / "build" / "bin" / "llama-server", tmp)
    tmp.replace(target)
    print(f"built {target} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return target


# --------------------------------------------------------------------------------------------------- model

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_WORDS = (
    # Python's keywords and common names, and common English words of docs and docstrings: each is in the
    # vocabulary with every prefix (so SentencePiece's pairwise merges can reach it), with and without the
    # word-start mark U+2581
    "and as assert async await break class continue def del elif else except finally for from global if "
    "import in is lambda nonlocal not or pass raise return try while with yield None True False self cls "
    "args kwargs init str int float bool list dict set tuple bytes object type len range print isinstance "
    "value values key keys items name path file data result error encode decode encoder decoder string "
    "number array index parse scan match default indent separator format obj function method module "
    "the of to that this it be are was for on by an which can should will when there their these use used "
    "returns message header email parser policy content"
).split()
# the keys of the built-in tasks' schemas, so that grammar-constrained JSON needs few tokens
_KEYS = "summary questions pairs question answer docstring problem solution".split()
_JSON_PIECES = ['"', '{"', '":', '","', '"}', '"]', '"]}', '"}]', '"}]}', '":"', '":["', '":[{"', '},{"']
_JSON_PIECES += ["{", "}", "[", "]"]


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of a small SentencePiece (``llama``) vocabulary with byte fallback."""
    import gguf

    tt = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [tt.UNKNOWN, tt.CONTROL, tt.CONTROL, tt.CONTROL, tt.CONTROL]
    scores = [0.0] * len(tokens)
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(tt.BYTE)
        scores.append(0.0)
    pieces: list[str] = ["\u2581"]
    pieces += [chr(c) for c in range(33, 127)]  # printable ASCII, no space (SentencePiece spells it U+2581)
    pieces += ["\u2581" + chr(c) for c in range(33, 127)]
    for word in _WORDS:
        for start in ("\u2581", ""):
            pieces += [start + word[:n] for n in range(1, len(word) + 1)]
    pieces += ["\u2581" * n for n in range(2, 17)]  # indentation
    pieces += _KEYS + _JSON_PIECES + ["()", "):", "__", "self."]
    for i, piece in enumerate(dict.fromkeys(pieces)):
        tokens.append(piece)
        types.append(tt.NORMAL)
        scores.append(-float(i) if len(piece) == 1 else float(len(piece)) - i / 1000)
    return tokens, scores, [int(t) for t in types]


def write_model(
    path: Path,
    *,
    ctx: int = DEFAULT_CTX,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 4,
    n_ff: int = 128,
    seed: int = 0,
    space_prefix: bool = True,
    never_stops: bool = True,
    json_bias: float = 3.0,
) -> Path:
    """Write a random-weight llama GGUF to ``path`` (atomically) and return it.

    The weights are random but for one channel of the embedding, held at 1 for every token, which the
    output layer reads as a per-token bias: with `never_stops` the control tokens (``<|im_end|>``, the end
    of a turn, among them) get -20, so the model never ends an answer by itself (it runs to ``max_tokens``
    unless a grammar ends it); the JSON pieces (quotes, braces, the schemas' keys) get `json_bias`, so that
    grammar-constrained JSON closes within a few dozen tokens. `space_prefix` is SentencePiece's
    ``add_space_prefix`` (llama.cpp's default for this tokenizer; it puts a space after ``<|im_start|>``
    when the generation prompt is tokenized, see the README of bench/ and the probe results).
    """
    import gguf
    import numpy as np

    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)
    head_dim = n_embd // n_head
    rng = np.random.default_rng(seed)

    def w(*shape: int, scale: float = 0.3) -> Any:  # numpy shape is ggml's ne reversed: (out, in)
        return (rng.standard_normal(shape) * scale / np.sqrt(shape[-1])).astype(np.float32)

    embd = (rng.standard_normal((n_vocab, n_embd)) * 0.5).astype(np.float32)
    embd[:, 0] = 1.0  # the bias channel
    h0 = float(
        np.mean(1.0 / np.sqrt(np.mean(embd.astype(np.float64) ** 2, axis=1)))
    )  # its value after the norm
    out = (rng.standard_normal((n_vocab, n_embd)) * 0.25).astype(np.float32)
    out[:, 0] = 0.0
    bias = np.zeros(n_vocab)
    if never_stops:
        for i, t in enumerate(types):
            if t in (gguf.TokenType.CONTROL, gguf.TokenType.UNKNOWN):
                bias[i], out[i, :] = -20.0, 0.0
    for piece in _KEYS + _JSON_PIECES:
        bias[tokens.index(piece)] = json_bias
    out[:, 0] = (bias / h0).astype(np.float32)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    writer = gguf.GGUFWriter(tmp, "llama")
    writer.add_name(MODEL_NAME)
    writer.add_context_length(ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(space_prefix)
    writer.add_chat_template(CHATML_TEMPLATE)

    writer.add_tensor("token_embd.weight", embd)
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", out)
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", w(n_head * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", w(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", w(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w(n_embd, n_head * head_dim))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(n_embd, n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
    return path


def default_model_path(ctx: int = DEFAULT_CTX, space_prefix: bool = True) -> Path:
    """The cached model's path; MODEL_FORMAT is in the name, so a changed generator writes a new file."""
    tail = "" if space_prefix else "-nsp"
    return cache_dir() / "models" / f"{MODEL_NAME}-v{MODEL_FORMAT}-ctx{ctx}{tail}.gguf"


def ensure_model(ctx: int = DEFAULT_CTX, space_prefix: bool = True) -> Path:
    path = default_model_path(ctx, space_prefix)
    return path if path.is_file() else write_model(path, ctx=ctx, space_prefix=space_prefix)


# --------------------------------------------------------------------------------------------------- serve


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(
    method: str, url: str, body: Any = None, timeout: float = 120.0
) -> tuple[int, dict[str, str], bytes]:
    """One request, no proxy; returns (status, headers, body) for every status."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"} if data else {}
    )
    try:
        with _NO_PROXY.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


@dataclass
class RealServer:
    """A running ``llama-server`` on 127.0.0.1; use ``start`` (a context manager)."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def server_args(
    model: Path,
    port: int,
    *,
    jinja: bool = True,
    ctx: int | None = None,
    parallel: int = 2,
    threads: int = 2,
    alias: str = MODEL_NAME,
    extra: Sequence[str] = (),
) -> list[str]:
    args = [
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--jinja" if jinja else "--no-jinja",
        "--alias",
        alias,
        "-np",
        str(parallel),
        "-t",
        str(threads),
        "-tb",
        str(threads),
        "--no-webui",
        "--offline",
    ]
    if ctx is not None:
        args += ["-c", str(ctx)]
    return args + list(extra)


@contextlib.contextmanager
def start(
    model: Path,
    *,
    binary: Path | None = None,
    jinja: bool = True,
    ctx: int | None = None,
    parallel: int = 2,
    threads: int = 2,
    alias: str = MODEL_NAME,
    port: int | None = None,
    extra: Sequence[str] = (),
    log: Path | None = None,
    ready_timeout: float = 120.0,
) -> Iterator[RealServer]:
    """Start the server, wait until ``/health`` answers 200, yield it, stop it (SIGTERM, then SIGKILL)."""
    binary = binary or find_server()
    if binary is None:
        raise FileNotFoundError(
            f"no llama-server at {server_binary()}: run `python -m bench.realserver build`"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_") and k != "LLAMA_API_KEY"}
    own_log = log is None
    log = log or Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    for attempt in range(3):  # a free port can be taken between probing it and the server binding it
        p = port or free_port()
        args = server_args(
            model, p, jinja=jinja, ctx=ctx, parallel=parallel, threads=threads, alias=alias, extra=extra
        )
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [str(binary), *args],
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        server = RealServer(proc, p, log, args)
        try:
            if _wait_ready(server, ready_timeout):
                break
        except BaseException:
            server.stop()
            raise
        server.stop()
        if port is not None or attempt == 2:
            raise RuntimeError(f"llama-server did not become ready; its log:\n{server.log_text()[-4000:]}")
    try:
        yield server
    finally:
        server.stop()
        if own_log:
            with contextlib.suppress(OSError):
                log.unlink()


def _wait_ready(server: RealServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        try:
            status, _, _ = http("GET", server.url + "/health", timeout=2.0)
            if status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


# --------------------------------------------------------------------------------------------------- probe

_SCHEMA = {
    "type": "object",
    "required": ["docstring"],
    "additionalProperties": False,
    "properties": {"docstring": {"type": "string"}},
}


def _sse(raw: bytes) -> list[Any]:
    events = []
    for line in raw.decode(errors="replace").splitlines():
        if line.startswith("data: "):
            payload = line[6:]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def _answer(status: int, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "content-type": headers.get("Content-Type")}
    try:
        out["body"] = json.loads(raw)
    except ValueError:
        out["body"] = raw.decode(errors="replace")[:2000]
    return out


def _stream_summary(status: int, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
    if status != 200 or not headers.get("Content-Type", "").startswith("text/event-stream"):
        return _answer(status, headers, raw)
    events = _sse(raw)
    chunks = [e for e in events if isinstance(e, dict) and e.get("choices")]
    return {
        "status": status,
        "content": "".join((c["choices"][0].get("delta", {}).get("content") or "") for c in chunks),
        "finish_reason": next(
            (
                c["choices"][0].get("finish_reason")
                for c in reversed(chunks)
                if c["choices"][0].get("finish_reason")
            ),
            None,
        ),
        "error_events": [e["error"] for e in events if isinstance(e, dict) and "error" in e],
        "usage": next((e["usage"] for e in events if isinstance(e, dict) and e.get("usage")), None),
        "done": events[-1] == "[DONE]" if events else False,
    }


def probe(server: RealServer, model: str = MODEL_NAME, repeats: int = 20) -> dict[str, Any]:
    """What the server answers to the requests snipstream makes (status, bodies, the interesting headers)."""
    chat = server.base_url + "/chat/completions"
    msg = [{"role": "user", "content": "Write a docstring for: def add(a, b): return a + b"}]
    base = {"model": model, "messages": msg, "max_tokens": 16}
    res: dict[str, Any] = {"args": server.args}
    status, headers, raw = http("GET", server.url + "/props")
    props = json.loads(raw)
    res["GET /props (excerpt)"] = {
        "status": status,
        "default_generation_settings.n_ctx": props["default_generation_settings"]["n_ctx"],
        "total_slots": props["total_slots"],
        "chat_format": props["default_generation_settings"]["params"]["chat_format"],
        "model_alias": props.get("model_alias"),
        "build_info": props.get("build_info"),
        "keys": sorted(props),
    }
    for path in ("/v1/models", "/health"):
        status, headers, raw = http("GET", server.url + path)
        res["GET " + path] = _answer(status, headers, raw)

    status, headers, raw = http(
        "POST", chat, {**base, "stream": True, "stream_options": {"include_usage": True}}
    )
    events = _sse(raw)
    res["stream with include_usage"] = {
        "status": status,
        "headers": {k: v for k, v in headers.items() if k.lower() != "date"},
        "events": len(events),
        "first": events[0] if events else None,
        "last_two_before_done": events[-3:-1],
        "done": events[-1] if events else None,
    }
    status, headers, raw = http("POST", chat, {**base, "stream": True})
    events = _sse(raw)
    res["stream without include_usage: last chunk"] = events[-2] if len(events) > 1 else None
    status, headers, raw = http("POST", chat, base)
    res["no stream"] = {
        **_answer(status, headers, raw),
        "headers": {k: v for k, v in headers.items() if k.lower() != "date"},
    }

    rf_schema = {
        "type": "json_schema",
        "json_schema": {"name": "docstring", "schema": _SCHEMA, "strict": True},
    }
    for name, rf in (
        ("json_schema", rf_schema),
        ("json_object", {"type": "json_object"}),
        ("text", {"type": "text"}),
        ("bogus", {"type": "bogus"}),
    ):
        for stream in (False, True):
            body = {**base, "response_format": rf, "stream": stream, "max_tokens": 48}
            res[f"response_format {name}" + (" stream" if stream else "")] = _stream_summary(
                *http("POST", chat, body)
            )

    # grammar-constrained JSON cut at max_tokens: how often each answer comes back, over `repeats` tries
    qa = TASKS["qa"].schema  # the qa task's own schema
    for stream in (False, True):
        seen: dict[str, int] = {}
        example: dict[str, Any] = {}
        for i in range(repeats):
            body = {
                **base,
                "messages": [{"role": "user", "content": f"Ask about f{i}"}],
                "max_tokens": 24,
                "stream": stream,
                "response_format": {"type": "json_schema", "json_schema": {"name": "qa", "schema": qa}},
            }
            got = _stream_summary(*http("POST", chat, body))
            if got["status"] != 200:
                key = f"{got['status']} {json.dumps(got['body'])[:160]}"
            elif got.get("error_events"):
                key = f"200 then error event {json.dumps(got['error_events'][0])[:160]}"
            else:
                fr = got.get("finish_reason") or got.get("body", {}).get("choices", [{}])[0].get(
                    "finish_reason"
                )
                key = f"200 finish_reason={fr}"
            seen[key] = seen.get(key, 0) + 1
            example.setdefault(key, got)
        res[f"json_schema cut at 24 tokens, {repeats} tries" + (" stream" if stream else "")] = {
            "outcomes": seen,
            "examples": example,
        }

    long_text = "def f(x):\n" + "    x = x + 1  # counting along\n" * 400
    for stream in (False, True):
        body = {
            "model": model,
            "messages": [{"role": "user", "content": long_text}],
            "max_tokens": 16,
            "stream": stream,
        }
        res["over the context" + (" stream" if stream else "")] = _answer(*http("POST", chat, body))

    for name, extra in (
        ("max_tokens 5", {"max_tokens": 5}),
        ("max_completion_tokens 5", {"max_completion_tokens": 5}),
        ("max_tokens 8 + max_completion_tokens 3", {"max_tokens": 8, "max_completion_tokens": 3}),
        ("max_tokens 3 + max_completion_tokens 8", {"max_tokens": 3, "max_completion_tokens": 8}),
        ("reasoning_effort low", {"max_tokens": 5, "reasoning_effort": "low"}),
        ("unknown parameter", {"max_tokens": 5, "frobnicate": 1}),
    ):
        status, headers, raw = http("POST", chat, {"model": model, "messages": msg, **extra})
        body = json.loads(raw)
        res[name] = (
            {
                "status": status,
                "finish_reason": body["choices"][0]["finish_reason"],
                "completion_tokens": body["usage"]["completion_tokens"],
            }
            if status == 200
            else {"status": status, "body": body}
        )
    status, headers, raw = http("POST", chat, {"model": "some-other-name", "messages": msg, "max_tokens": 3})
    res["another model name"] = {"status": status, "model": json.loads(raw).get("model")}
    res["GET /v1/nonexistent"] = _answer(*http("GET", server.base_url + "/nonexistent"))
    res["messages not a list"] = _answer(*http("POST", chat, {"model": model, "messages": "hi"}))
    return res


# --------------------------------------------------------------------------------------------------- cli


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.realserver", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build llama-server into the cache (or reuse it); prints its path")
    b.add_argument(
        "--version", default=LLAMA_CPP_PYTHON, help="llama-cpp-python sdist (default: %(default)s)"
    )
    b.add_argument("--source", type=Path, help="an already extracted llama.cpp tree to build instead")
    b.add_argument("--jobs", type=int, help="parallel compile jobs (default: all cores)")
    b.add_argument("--force", action="store_true", help="build even if the cache has a binary")
    m = sub.add_parser("model", help="write the tiny random-weight GGUF; prints its path")
    m.add_argument("-o", "--output", type=Path, help="default: in the cache")
    m.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("serve", help="start the server on 127.0.0.1, print its base URL, stop it on Ctrl-C")
    s.add_argument("--no-jinja", action="store_true", help="the built-in chat templates instead of jinja")
    s.add_argument("--port", type=int, help="default: a free one")
    s.add_argument("extra", nargs="*", help="more llama-server arguments, after --")
    pr = sub.add_parser("probe", help="start it in each mode and print what it answers, as JSON")
    for parser in (m, s, pr):
        parser.add_argument(
            "--ctx",
            type=int,
            default=DEFAULT_CTX,
            help="the model's context and the server's -c (default: %(default)s)",
        )
    for parser in (m, s):
        parser.add_argument(
            "--no-space-prefix",
            dest="space_prefix",
            action="store_false",
            default=True,
            help="the model whose tokenizer adds no space prefix (jinja mode's grammars work)",
        )
    for parser in (s, pr):
        parser.add_argument("--model", type=Path, help="a GGUF (default: the tiny model, written if missing)")
        parser.add_argument(
            "--parallel", type=int, default=2, help="server slots, -np (default: %(default)s)"
        )
        parser.add_argument("--threads", type=int, default=2, help="-t and -tb (default: %(default)s)")
    a = ap.parse_args(argv)

    if a.cmd == "build":
        print(build(a.version, source=a.source, jobs=a.jobs, force=a.force))
        return 0
    if a.cmd == "model":
        out = a.output or default_model_path(a.ctx, a.space_prefix)
        print(write_model(out, ctx=a.ctx, seed=a.seed, space_prefix=a.space_prefix))
        return 0
    if a.cmd == "serve":
        model = a.model or ensure_model(a.ctx, a.space_prefix)
        signal.signal(
            signal.SIGTERM, signal.default_int_handler
        )  # SIGTERM stops the server too, as Ctrl-C does
        with start(
            model,
            jinja=not a.no_jinja,
            ctx=a.ctx,
            parallel=a.parallel,
            threads=a.threads,
            port=a.port,
            extra=a.extra,
        ) as server:
            print(server.base_url, flush=True)
            print(f"model name {MODEL_NAME}; server log {server.log}; Ctrl-C stops it", file=sys.stderr)
            with contextlib.suppress(KeyboardInterrupt):
                server.proc.wait()
        return 0
    report = {}
    variants = (
        [(True, True), (False, True), (True, False)] if a.model is None else [(True, True), (False, True)]
    )
    for jinja, space_prefix in variants:
        model = a.model or ensure_model(a.ctx, space_prefix)
        with start(model, jinja=jinja, ctx=a.ctx, parallel=a.parallel, threads=a.threads) as server:
            name = ("jinja" if jinja else "no-jinja") + ("" if space_prefix else ", no space prefix")
            report[name] = probe(server)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
