"""OpenAI's Files API on the fake server: the file store, a small multipart/form-data parser, and the
routes ``POST/GET /v1/files``, ``GET/DELETE /v1/files/{id}`` and ``GET /v1/files/{id}/content``.

The wire format is the one OpenAI documents (API reference, https://platform.openai.com/docs/api-reference/
files) and its Python SDK types (openai/openai-python, ``src/openai/types/file_object.py``,
``file_deleted.py``, ``file_list_params.py``, ``file_purpose.py``). Batches (`batchapi`, `batches`) keep
their input, output and error files here too.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from tests.fakeserver import http

if TYPE_CHECKING:
    from tests.fakeserver.routes import Exchange

#: The purposes an upload may have: ``FilePurpose`` in openai-python ``src/openai/types/file_purpose.py``.
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
#: Batch input files expire 30 days after upload by default (``expires_after`` in openai-python
#: ``src/openai/types/file_create_params.py``).
BATCH_FILE_TTL = 30 * 24 * 3600


@dataclass(slots=True)
class StoredFile:
    """One file: its File object as served, and its bytes."""

    obj: dict[str, Any]
    data: bytes


@dataclass(slots=True)
class FileStore:
    """Every file the server holds, oldest first; `lock` guards it and the batches (`batches.BatchState`)."""

    files: dict[str, StoredFile] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def add(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        """Store `data`; returns its File object (``status`` is always ``processed``: the field is
        deprecated and a file is usable at once)."""
        now = int(time.time())
        obj: dict[str, Any] = {
            "id": f"file-{uuid.uuid4().hex[:24]}",
            "object": "file",
            "bytes": len(data),
            "created_at": now,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": now + BATCH_FILE_TTL if purpose == "batch" else None,
            "status_details": None,
        }
        with self.lock:
            self.files[obj["id"]] = StoredFile(obj, data)
        return obj

    def get(self, file_id: str) -> StoredFile | None:
        with self.lock:
            return self.files.get(file_id)

    def page(self, query: str) -> dict[str, Any] | tuple[str, str]:
        """``GET /v1/files``: a cursor page (``object``, ``data``, ``first_id``, ``last_id``, ``has_more``)
        filtered by ``purpose``, in ``order`` of creation (``desc`` by default), ``limit`` 1..10,000
        (default 10,000), after the ``after`` id (see ``file_list_params.py``); or (param, message) of a
        bad query."""
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        order = params.get("order", "desc")
        if order not in ("asc", "desc"):
            return "order", f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'."
        limit = parse_limit(params.get("limit"), 10_000, 10_000)
        if limit is None:
            return "limit", "Invalid 'limit': expected an integer between 1 and 10000."
        with self.lock:
            objs = [f.obj for f in self.files.values()]
        if "purpose" in params:
            objs = [o for o in objs if o["purpose"] == params["purpose"]]
        if order == "desc":
            objs.reverse()
        return cursor_page(objs, params.get("after"), limit)


def parse_limit(text: str | None, default: int, most: int) -> int | None:
    """The ``limit`` query parameter (1..`most`), `default` when absent, None when invalid."""
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        return None
    return int(text)


def cursor_page(objs: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """OpenAI's cursor page of `objs` (already in list order): the `limit` objects after the one whose id
    is `after` (none when that id is not in the list)."""
    start = 0
    if after is not None:
        ids = [o["id"] for o in objs]
        start = ids.index(after) + 1 if after in ids else len(objs)
    data = objs[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(objs),
    }


# ---- multipart/form-data --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """One form field: its value, and the filename when it is a file."""

    data: bytes
    filename: str | None


def parse_multipart(content_type: str, body: bytes) -> dict[str, Part] | None:
    """The fields of a ``multipart/form-data`` body (RFC 7578; the last of repeated names wins), or None
    when it is not one. Parameters are read with `email.message.Message`, so quoted and RFC 2231
    (``filename*=utf-8''...``) values work."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        return None
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    if len(chunks) < 2 or not chunks[-1].startswith(b"--"):
        return None  # no closing delimiter: a truncated body
    fields: dict[str, Part] = {}
    for chunk in chunks[1:-1]:
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            return None
        disposition = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon and name.strip().lower() == "content-disposition":
                disposition["content-disposition"] = value.strip()
        name = _param(disposition, "name")
        if name is None:
            return None
        fields[name] = Part(data, _param(disposition, "filename"))
    return fields


def _param(header: Message, key: str) -> str | None:
    value = header.get_param(key, header="content-disposition")
    if value is None:
        return None
    return collapse_rfc2231_value(value)  # type: ignore[arg-type]


# ---- the routes -----------------------------------------------------------------------------------------


async def upload(ex: Exchange) -> bool:
    """``POST /v1/files`` (https://platform.openai.com/docs/api-reference/files/create): fields ``purpose``
    and ``file``; answers the File object. A ``batch`` file must be ``.jsonl`` and at most
    `FakeOpenAI.max_file_bytes` (200 MB: the docstring of ``files.create`` in openai-python
    ``src/openai/resources/files.py`` limits Batch API uploads to .jsonl files of up to 200 MB; OpenAI
    answers a larger one with a 400 ``invalid_request_error``, as reported in bespokelabsai/curator#111).
    The file is stored (and in `FakeOpenAI.uploads`) before `FakeOpenAI.upload_delay` is slept, then the
    answer is written."""
    server = ex.server
    fields = parse_multipart(ex.headers.get("content-type", ""), ex.raw)
    if fields is None:
        return await ex.error(400, "The request body must be multipart/form-data.", None)
    purpose = fields.get("purpose")
    part = fields.get("file")
    for name, given in (("purpose", purpose is not None), ("file", part is not None and part.filename)):
        if not given:
            message = f"Missing required parameter: '{name}'."
            return await ex.error(400, message, "missing_required_parameter", param=name)
    assert purpose is not None and part is not None and part.filename is not None
    purpose_text = purpose.data.decode("utf-8", "replace")
    if purpose_text not in PURPOSES:
        message = f"Invalid value: '{purpose_text}'. Supported values are: {', '.join(PURPOSES)}."
        return await ex.error(400, message, "invalid_value", param="purpose")
    if purpose_text == "batch":
        if not part.filename.endswith(".jsonl"):
            return await ex.error(400, "A file for the Batch API must be a .jsonl file.", None, param="file")
        if len(part.data) > server.max_file_bytes:
            message = (
                f"File is too large: {len(part.data)} bytes; a batch file may have {server.max_file_bytes}."
            )
            return await ex.error(400, message, None, param="file")
    obj = server._batches.files.add(part.data, part.filename, purpose_text)
    server._batches.note_upload(obj, part.data)
    if server.upload_delay > 0:
        await asyncio.sleep(server.upload_delay)
    return await ex.json(200, obj, server._current_ratelimit_headers())


async def listing(ex: Exchange) -> bool:
    """``GET /v1/files`` (https://platform.openai.com/docs/api-reference/files/list)."""
    page = ex.server._batches.files.page(ex.req.query)
    if isinstance(page, tuple):
        return await ex.error(400, page[1], "invalid_value", param=page[0])
    return await ex.json(200, page, ex.server._current_ratelimit_headers())


async def retrieve(ex: Exchange, file_id: str) -> bool:
    """``GET /v1/files/{id}`` (https://platform.openai.com/docs/api-reference/files/retrieve)."""
    stored = ex.server._batches.files.get(file_id)
    if stored is None:
        return await not_found(ex, file_id)
    return await ex.json(200, stored.obj, ex.server._current_ratelimit_headers())


async def delete(ex: Exchange, file_id: str) -> bool:
    """``DELETE /v1/files/{id}``: ``{id, object: "file", deleted: true}`` (``file_deleted.py``)."""
    store = ex.server._batches.files
    with store.lock:
        stored = store.files.pop(file_id, None)
    if stored is None:
        return await not_found(ex, file_id)
    return await ex.json(200, {"id": file_id, "object": "file", "deleted": True}, None)


async def content(ex: Exchange, file_id: str) -> bool:
    """``GET /v1/files/{id}/content`` (https://platform.openai.com/docs/api-reference/files/retrieve-contents):
    the raw bytes, ``application/octet-stream`` with a Content-Length. With `FakeOpenAI.content_delay`,
    the body goes out in pieces of `FakeOpenAI.content_chunk_lines` lines with that pause before each
    piece after the first, so a client can be stopped mid-download."""
    server = ex.server
    stored = server._batches.files.get(file_id)
    if stored is None:
        return await not_found(ex, file_id)
    headers = {"content-type": "application/octet-stream"}
    if server.content_delay <= 0:
        return await ex.json(200, stored.data, headers)
    ex.req.status = 200
    lines = stored.data.splitlines(keepends=True)
    step = max(1, server.content_chunk_lines)
    head = http.response_head(200, headers | {"content-length": str(len(stored.data))}, ex.keep)
    ex.writer.write(head)
    for i in range(0, max(len(lines), 1), step):
        if i:
            await asyncio.sleep(server.content_delay)
        ex.writer.write(b"".join(lines[i : i + step]))
        await ex.writer.drain()
    return ex.keep


async def not_found(ex: Exchange, file_id: str) -> bool:
    return await ex.error(404, f"No such File object: {file_id}", None, param="id")


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    """JSON Lines: one compact object per line, each ending in ``\\n``."""
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)
