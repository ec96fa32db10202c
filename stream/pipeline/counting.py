"""Token counting for the run, with the tokenizer loaded on first use, off the event loop.

Runs that never count tokens (no --tpm, usage reported by the API, nothing to send) do not pay the ~0.2 s
that loading an encoding takes; the summary names the encoding that was used.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from ..tokens import Tokenizer, load_tokenizer
from .messages import Job
from .summary import Summary

__all__ = ["TokenCounter"]


class TokenCounter:
    def __init__(self, model: str, api: str, summary: Summary, note: Callable[[str], None]) -> None:
        self.model = model
        self.api = api
        self.summary = summary
        self.note = note
        self._tokenizer: Tokenizer | None = None
        self._ready = anyio.Event()
        self._loading = False
        self._heads: dict[str, int] = {}  # a file's shared prompt head -> its tokens

    async def tokenizer(self) -> Tokenizer:
        """The tokenizer; the first caller loads it, the others wait for it."""
        if not self._loading:
            self._loading = True
            await self._load()
        await self._ready.wait()
        assert self._tokenizer is not None
        return self._tokenizer

    async def _load(self) -> None:
        try:
            tokenizer = await anyio.to_thread.run_sync(load_tokenizer, self.model)
        except Exception as exc:
            tokenizer = Tokenizer("chars/4", lambda t: (len(t) + 3) // 4, f"tokenizer failed: {exc}")
        self._tokenizer = tokenizer
        self.summary.encoding = tokenizer.encoding
        if tokenizer.note:
            self.note(f"note: {tokenizer.note}")
        self._ready.set()

    async def prompt(self, job: Job) -> int:
        """The prompt's tokens as the API counts them (chat messages carry a few tokens each).

        The part a file's prompts share (`Job.head`: the file's context, up to the line break that ends
        it) is counted once for the file and added: the tokenizer does not merge across that line break
        (cl100k/o200k split before it), so the sum is the whole prompt's count."""
        tok = await self.tokenizer()
        if self.api == "chat":
            if not job.head:
                return tok.count_chat(job.system, job.user)
            return self._head(tok, job.user[: job.head]) + tok.count_chat(job.system, job.user[job.head :])
        return tok.count(f"{job.system}\n\n{job.user}" if job.system else job.user)

    def _head(self, tok: Tokenizer, head: str) -> int:
        n = self._heads.get(head)
        if n is None:
            if len(self._heads) >= 16:  # the files being planned and asked now
                self._heads.pop(next(iter(self._heads)))
            n = self._heads[head] = tok.count(head)
        return n

    async def text(self, text: str) -> int:
        return (await self.tokenizer()).count(text)

    async def prompt_of(self, job: Job) -> int:
        """`job.prompt_tokens`, counted (once) if not yet."""
        if job.prompt_tokens is None:
            job.prompt_tokens = await self.prompt(job)
        return job.prompt_tokens
