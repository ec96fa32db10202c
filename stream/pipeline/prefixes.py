"""The dry run's estimate of what a provider's prompt cache would serve: each prompt's prefix shared with
one of the few prompts sent just before it, counted as OpenAI counts cache hits (from 1,024 tokens, in
128-token steps: https://platform.openai.com/docs/guides/prompt-caching).

A run sends a file's snippets one after another, and with ``--context`` their prompts begin with what the
file's snippets share, so the recent prompts are where a prefix is found again. An estimate: the shared
characters are turned into tokens at the prompt's own ratio, and the provider may have evicted or routed
elsewhere what this assumes cached.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["PrefixCache", "MINIMUM", "STEP"]

MINIMUM = 1024  # the shortest prompt prefix cached
STEP = 128  # hits grow in steps of this many tokens
RECENT = 8  # prompts looked back at


@dataclass
class PrefixCache:
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT))

    def cached(self, text: str, tokens: int) -> int:
        """The tokens of `text` (a prompt of `tokens` tokens) a prompt cache would likely serve."""
        shared = max((_common(text, before) for before in self.recent), default=0)
        self.recent.append(text)
        shared_tokens = tokens * shared // max(1, len(text))
        if shared_tokens < MINIMUM:
            return 0
        return MINIMUM + (shared_tokens - MINIMUM) // STEP * STEP


def _common(a: str, b: str) -> int:
    """The length of the common prefix of `a` and `b` (a binary search over slice comparisons)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low
