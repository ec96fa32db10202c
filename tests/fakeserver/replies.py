"""What the server says: the logged request and its prompt text, the default answer text (JSON for
structured requests), answers with defects and a judge's replies, the answer in pieces, the answers' JSON
and SSE shapes (OpenAI's), error bodies."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tests.fakeserver.http import reason

_FILLER = (
    "this snippet takes its inputs, does the work its name describes and returns the result to its caller."
)


@dataclass(slots=True)
class LoggedRequest:
    """One request as the server received it (logged before it is answered).

    `path` has no query string; `headers` names are lower-case (repeated headers joined with ``", "``);
    `body` is the parsed JSON body when it was a JSON object, else None; `time` is ``time.monotonic()``
    when the request had been read completely. `status` is the HTTP status answered (0 until the answer
    is decided; it is set before the response is written, so it is final once the client has it).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    time: float
    status: int = 0
    query: str = ""  # the query string, without the "?"

    @property
    def prompt_text(self) -> str:
        """The user text: for chat, every message's text content joined with ``"\\n"`` (list-of-parts
        content contributes its ``text`` parts); for legacy completions, ``prompt`` (a list of strings
        joined with ``"\\n"``); ``""`` when there is none."""
        return _prompt_text(self.body)


def _prompt_text(body: dict[str, Any] | None) -> str:
    if not isinstance(body, dict):
        return ""
    messages = body.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.append(
                    "".join(
                        p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
                    )
                )
        return "\n".join(parts)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    return ""


# ---- the answer text ------------------------------------------------------------------------------------


def default_reply(req: LoggedRequest | str) -> str:
    """The default answer text: ``"Annotation " + sha256(prompt_text)[:12] + ": " + filler words``.

    Accepts a `LoggedRequest` or the prompt text itself, so tests can compute the expected answer for a
    prompt. The filler is fixed, so the text is long enough to be split into ~100 chunks.

    A request for structured output gets JSON instead, like a server that enforces the schema: a
    request with ``response_format`` ``json_schema`` gets an instance of that schema; with
    ``json_object``, or none, but a prompt ending in "... matching this schema:" and a schema (as
    snipstream's structured tasks write), an instance of the prompt's schema. Strings in it are
    ``"<field> <digest>: <filler>"``.
    """
    text = req if isinstance(req, str) else req.prompt_text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    schema = None if isinstance(req, str) else _requested_schema(req.body, text)
    if schema is not None:
        return orjson.dumps(schema_instance(schema, digest)).decode()
    return f"Annotation {digest}: {_FILLER}"


_SCHEMA_IN_PROMPT = re.compile(r"matching this schema:\n(\{.*\})\s*\Z", re.S)


def _requested_schema(body: dict[str, Any] | None, prompt: str) -> dict[str, Any] | None:
    fmt = (body or {}).get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return schema
    m = _SCHEMA_IN_PROMPT.search(prompt)
    if m is None:
        return None
    try:
        schema = orjson.loads(m.group(1))
    except orjson.JSONDecodeError:
        return None
    return schema if isinstance(schema, dict) else None


def schema_instance(schema: dict[str, Any], digest: str, name: str = "value") -> Any:
    """A small value valid for `schema` (the subset of JSON Schema structured tasks use)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {key: schema_instance(sub, digest, key) for key, sub in props.items()}
    if kind == "array":
        count = max(2, int(schema.get("minItems", 0)))
        return [schema_instance(schema.get("items", {"type": "string"}), digest, name) for _ in range(count)]
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    return f"{name} {digest}: {_FIELD_FILLER}"


# A string field's filler: a real model's field holds a sentence or more, and a two-word one would be
# marked too_short by snipstream's cleaning step (stream/clean.py) like any answer that short.
_FIELD_FILLER = "what it does and how it is used."


def split(text: str, n: int) -> list[str]:
    """`text` in min(n, len(text)) non-empty pieces of near-equal length (n < 1 counts as 1)."""
    size = len(text)
    if size == 0:
        return []
    n = min(max(n, 1), size)
    q, r = divmod(size, n)
    pieces = []
    i = 0
    for k in range(n):
        j = i + q + (k < r)
        pieces.append(text[i:j])
        i = j
    return pieces


# ---- answers with defects, and a judge's replies (snipstream's cleaning step and judge) -------------------

#: The defects `defect_reply` can give an answer, each as models have been seen to produce it:
#: - replacement_char: text decoded token by token loses the halves of a multi-byte character as U+FFFD
#:   (kekzl/imp#1310, antonellof/ferrox#124: "per-token decode is lossy, so emoji and CJK become U+FFFD");
#: - control_chars: NUL and other non-printables in the generated text (ggml-org/llama.cpp#2756, a grammar
#:   "generating null characters"; llama.cpp#2758, "non-printables such as ASCII 28"; aegra/aegra#370,
#:   gpt-5-mini emitting ``\u0000``);
#: - too_short: an answer of a few words;
#: - repetitive: a degenerate loop repeating one sentence (mudler/LocalAI#969, QwenLM/qwen-code#1403);
#: - echoes_prompt: the request given back, as a completion server asked to ``echo`` the prompt does
#:   (OpenAI's legacy Completions API, parameter ``echo``; stanford-crfm/helm#1823);
#: - refusal: "I'm sorry, but I can't help with that." (OpenAI's structured-outputs guide, "Refusals":
#:   https://platform.openai.com/docs/guides/structured-outputs/refusals; the phrasing of GPT-OSS-120B's
#:   refusals in huggingface.co/datasets/nvidia/Privasis-USA/discussions/2).
DEFECTS = ("replacement_char", "control_chars", "too_short", "repetitive", "echoes_prompt", "refusal")


def defect_reply(req: LoggedRequest) -> str:
    """`default_reply`, except for a prompt that names a defect as ``defect_<name>`` (e.g. the code of a
    function ``def defect_refusal(...)``): then an answer with that defect (the first named, in `DEFECTS`
    order). Judge requests (`judge_answer`) are answered by `default_reply`."""
    text = req.prompt_text
    named = [d for d in DEFECTS if f"defect_{d}" in text]
    if not named or judge_answer(req) is not None:
        return default_reply(req)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return {
        "replacement_char": f"Annotation {digest}: this function \ufffd\ufffd {_FILLER}",
        "control_chars": f"Annotation {digest}:\x00 this function\x1b[0m {_FILLER}",
        "too_short": "Returns it.",
        "repetitive": "This function returns the value it is given. " * 12,
        "echoes_prompt": text,
        "refusal": "I'm sorry, but I can't help with that.",
    }[named[0]]


_ANSWER = re.compile(r"<answer>\n(.*)\n</answer>", re.S)


def judge_answer(req: LoggedRequest) -> str | None:
    """The answer a judge request judges (the text between ``<answer>`` and ``</answer>``), or None when
    `req` is no judge request: one asking for JSON (in ``response_format`` or its prompt) with exactly the
    properties ``score`` and ``error``."""
    text = req.prompt_text
    schema = _requested_schema(req.body, text)
    if schema is None or set(schema.get("properties") or {}) != {"score", "error"}:
        return None
    m = _ANSWER.search(text)
    return m.group(1) if m else ""


def judging(
    score: Callable[[str], int], base: Callable[[LoggedRequest], str] = default_reply
) -> Callable[[LoggedRequest], str]:
    """A `reply` function: a judge request gets ``{"score": score(answer), "error": ...}`` (an error named
    when the score is under 3), any other request `base`'s answer."""

    def reply(req: LoggedRequest) -> str:
        answer = judge_answer(req)
        if answer is None:
            return base(req)
        value = score(answer)
        error = f"the answer misreads the code (judged {value})" if value < 3 else ""
        return orjson.dumps({"score": value, "error": error}).decode()

    return reply


# ---- the answers' shapes --------------------------------------------------------------------------------


def answer_object(
    kind: str,
    rid: str,
    created: int,
    model: str,
    pieces: list[str],
    finish: str | None,
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """A non-streamed answer: ``chat.completion`` (`kind` ``"chat"``) or ``text_completion``; `usage` None
    leaves the field out."""
    if kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": "".join(pieces), "refusal": None},
            "logprobs": None,
            "finish_reason": finish,
        }
        obj = "chat.completion"
    else:
        choice = {"text": "".join(pieces), "index": 0, "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    answer: dict[str, Any] = {
        "id": rid,
        "object": obj,
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [choice],
    }
    if usage is not None:
        answer["usage"] = usage
    return answer


def stream_events(
    kind: str,
    rid: str,
    created: int,
    model: str,
    pieces: list[str],
    finish: str,
    usage: dict[str, int] | None,
    extras: bool,
) -> list[bytes]:
    """The SSE events of one streamed answer, [DONE] excluded; each item holds exactly one data line.
    `usage` None: no usage chunk. `extras` (`FakeOpenAI.sse_extras`): a ``: keep-alive`` comment, an
    ``event: message`` line, a leading ``choices: []`` chunk and CRLF line endings."""
    nl = b"\r\n" if extras else b"\n"
    end = nl + nl
    obj = b"chat.completion.chunk" if kind == "chat" else b"text_completion"
    head = (
        b'data: {"id":"%s","object":"%s","created":%d,"model":%s,"system_fingerprint":"fp_fake","choices":'
    ) % (rid.encode(), obj, created, orjson.dumps(model))
    tail = (b',"usage":null}' if usage is not None else b"}") + end
    events: list[bytes] = []
    if extras:
        events.append(b": keep-alive" + end + head + b"[]" + tail)
    if kind == "chat":
        first = b'[{"index":0,"delta":{"role":"assistant","content":'
        pre = b'[{"index":0,"delta":{"content":'
        post = b'},"logprobs":null,"finish_reason":null}]'
        if not pieces:
            events.append(head + first + b'""' + post + tail)
        for i, piece in enumerate(pieces):
            events.append(head + (pre if i else first) + orjson.dumps(piece) + post + tail)
        final = b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":"%s"}]' % finish.encode()
    else:
        pre = b'[{"text":'
        post = b',"index":0,"logprobs":null,"finish_reason":null}]'
        for piece in pieces:
            events.append(head + pre + orjson.dumps(piece) + post + tail)
        final = b'[{"text":"","index":0,"logprobs":null,"finish_reason":"%s"}]' % finish.encode()
    events.append(head + final + tail)
    if usage is not None:
        events.append(head + b'[],"usage":' + orjson.dumps(usage) + b"}" + end)
    if extras:
        first_content = 1
        events[first_content] = b"event: message" + nl + events[first_content]
        middle = len(events) // 2
        if middle > first_content:
            events[middle] = b": keep-alive" + end + events[middle]
    return events


# ---- errors ---------------------------------------------------------------------------------------------


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to perform this request.", "invalid_request_error", "forbidden"),
    404: ("The requested resource does not exist.", "invalid_request_error", "not_found"),
    408: ("Request timed out.", "invalid_request_error", "timeout"),
    409: ("Conflict.", "invalid_request_error", "conflict"),
    413: ("Request too large.", "invalid_request_error", "request_too_large"),
    422: ("Unprocessable request.", "invalid_request_error", None),
    429: ("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


def default_error(status: int) -> dict[str, Any]:
    message, type_, code = _DEFAULT_ERRORS.get(
        status, (reason(status) + ".", "server_error" if status >= 500 else "invalid_request_error", None)
    )
    return error_body(message, type_, code)
