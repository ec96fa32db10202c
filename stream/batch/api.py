"""The provider's Files and Batches endpoints, as OpenAI documents them, over one httpx client.

- Files (https://platform.openai.com/docs/api-reference/files): ``POST /files`` (multipart, ``purpose=batch``)
  uploads an input file; ``GET /files`` lists them (newest first, ``after`` cursor); ``GET /files/{id}/content``
  downloads an output or error file.
- Batches (https://platform.openai.com/docs/api-reference/batch): ``POST /batches`` with ``input_file_id``,
  ``endpoint`` and ``completion_window`` (``24h``, the only window offered); ``GET /batches/{id}``;
  ``GET /batches`` (``after`` cursor); ``POST /batches/{id}/cancel``.

Errors are translated as for completions (`stream.translate`); 429s, 5xx and dropped connections are retried
a few times with backoff, anything else is raised with the server's own message (the key scrubbed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson

from sinks.batches import BatchFile

from ..client import RetryPolicy
from ..config import Config, is_loopback
from ..endpoints import auth_headers
from ..errors import APIError, ConfigError, StreamError
from ..translate import status_error, translate

__all__ = ["BatchAPI", "COMPLETION_WINDOW", "api_config", "line_error"]

COMPLETION_WINDOW = "24h"
_PAGE = 100


def line_error(error: dict[str, Any]) -> str:
    """One of a failed batch's ``errors.data`` (OpenAI's BatchError: code, message, param, line) for people."""
    where = f"line {error['line']}: " if isinstance(error.get("line"), int) else ""
    return f"{where}{error.get('code') or 'error'}: {error.get('message') or ''}".rstrip(": ")


def api_config(cfg: Config, files: Sequence[BatchFile]) -> Config:
    """The endpoint the batches live at: where the newest was submitted (the flags' URL when none was)."""
    urls = [f.base_url for f in files if f.base_url]
    return replace(cfg, base_url=urls[-1]) if urls else cfg


class BatchAPI:
    """The Files and Batches endpoints under the run's ``--base-url``, authorised with its key."""

    def __init__(self, cfg: Config, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = (cfg.base_url or "").rstrip("/")
        if not cfg.api_key and not is_loopback(self.base_url):
            raise ConfigError(
                f"no API key: set ${cfg.api_key_env} (or name another variable with --api-key-env); "
                f"a key is needed for {self.base_url}"
            )
        self.api_key_env = cfg.api_key_env or "OPENAI_API_KEY"
        self._key = cfg.api_key
        headers = auth_headers(cfg.endpoint_kind, cfg.api_key)
        if not headers and cfg.api_key:
            headers = {"authorization": f"Bearer {cfg.api_key}"}
        timeout = httpx.Timeout(connect=cfg.connect_timeout, read=cfg.stall_timeout, write=600.0, pool=None)
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout, transport=transport)
        self.retry = RetryPolicy(max_attempts=max(1, min(cfg.max_attempts, 5)), base=cfg.backoff)

    async def __aenter__(self) -> BatchAPI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            await self._client.aclose()

    def scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    # --- files -------------------------------------------------------------------------------------------

    async def upload(self, path: Path, name: str) -> dict[str, Any]:
        """Upload a batch input file under `name` (the name a rerun finds it by)."""

        async def send() -> httpx.Response:
            with open(path, "rb") as f:
                files = {"file": (name, f, "application/jsonl")}
                return await self._client.post(self._url("/files"), data={"purpose": "batch"}, files=files)

        return await self._json(send, "/files")

    async def find_file(self, name: str) -> dict[str, Any] | None:
        """The uploaded batch file called `name`, if an earlier, interrupted submit got it there."""
        async for item in self._pages("/files", {"purpose": "batch"}):
            if item.get("filename") == name:
                return item
        return None

    async def content(self, file_id: str) -> AsyncIterator[bytes]:
        """The lines of an output or error file, as they arrive."""
        url = self._url(f"/files/{file_id}/content")
        with translate():
            async with self._client.stream("GET", url) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._error(response, url)
                async for line in response.aiter_lines():
                    if line.strip():
                        yield line.encode()

    # --- batches -----------------------------------------------------------------------------------------

    async def create(self, file_id: str, endpoint: str, metadata: dict[str, str]) -> dict[str, Any]:
        body = {
            "input_file_id": file_id,
            "endpoint": endpoint,
            "completion_window": COMPLETION_WINDOW,
            "metadata": metadata,
        }
        return await self._json(lambda: self._client.post(self._url("/batches"), json=body), "/batches")

    async def find_batch(self, file_id: str) -> dict[str, Any] | None:
        """The batch made of input file `file_id`, if an earlier, interrupted submit created it."""
        async for item in self._pages("/batches", {}):
            if item.get("input_file_id") == file_id:
                return item
        return None

    async def get(self, batch_id: str) -> dict[str, Any]:
        path = f"/batches/{batch_id}"
        return await self._json(lambda: self._client.get(self._url(path)), path)

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        path = f"/batches/{batch_id}/cancel"
        return await self._json(lambda: self._client.post(self._url(path)), path)

    # --- plumbing ----------------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _error(self, response: httpx.Response, url: str) -> APIError:
        return status_error(
            response, {}, url=url, base_url=self.base_url, api_key_env=self.api_key_env, scrub=self.scrub
        )

    async def _json(self, send: Callable[[], Awaitable[httpx.Response]], path: str) -> dict[str, Any]:
        """One call, retried while the error says a later try may work."""
        attempt = 0
        while True:
            attempt += 1
            try:
                with translate():
                    response = await send()
                if response.status_code >= 400:
                    raise self._error(response, self._url(path))
                try:
                    data = orjson.loads(response.content)
                except orjson.JSONDecodeError:
                    raise StreamError(f"{self._url(path)} answered with something other than JSON") from None
                if not isinstance(data, dict):
                    raise StreamError(f"{self._url(path)} answered with JSON that is not an object")
                return data
            except APIError as exc:
                exc.args = (self.scrub(str(exc)),)
                if not exc.retryable or attempt >= self.retry.max_attempts:
                    raise
                await anyio.sleep(self.retry.delay(attempt, exc.retry_after))

    async def _pages(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list endpoint, page by page (``has_more``, ``after`` = the last id)."""
        after: str | None = None
        while True:
            query = {**params, "limit": str(_PAGE), **({"after": after} if after else {})}
            page = await self._json(lambda q=query: self._client.get(self._url(path), params=q), path)
            items = page.get("data") or []
            for item in items:
                if isinstance(item, dict):
                    yield item
            if not page.get("has_more") or not items:
                return
            after = page.get("last_id") or items[-1].get("id")
