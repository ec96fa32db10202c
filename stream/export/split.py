"""Train/valid/test splits: a stable hash of each file's path picks its split, so all examples of one file
land together and an export of a grown checkpoint keeps every file where it was."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from ..errors import ConfigError

__all__ = ["SPLIT_NAMES", "parse_split", "split_of", "split_targets"]

SPLIT_NAMES = ("train", "valid", "test")


def parse_split(text: str) -> tuple[float, ...]:
    """``"0.9/0.1"`` → (0.9, 0.1); two or three parts (train/valid/test), fractions adding up to 1 or
    percentages adding up to 100."""
    parts = text.split("/")
    if len(parts) not in (2, 3):
        raise ConfigError(f"--split takes train/valid or train/valid/test, e.g. 0.9/0.1; got {text!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--split parts must be numbers, e.g. 0.9/0.1; got {text!r}") from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"--split parts must be positive; got {text!r}")
    total = sum(values)
    for whole in (1.0, 100.0):
        if math.isclose(total, whole, rel_tol=1e-6):
            return tuple(v / whole for v in values)
    raise ConfigError(f"--split parts must add up to 1 (or 100); {text!r} adds up to {total:g}")


def split_of(path: str, fractions: tuple[float, ...]) -> int:
    """Which split (index into `fractions`) a file's path belongs to, by a stable hash of the path.

    The hash maps the path to a point in [0, 1); the splits are consecutive intervals of that line. The same
    path always lands in the same place, and changing the fractions moves only the paths it must."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    point = int.from_bytes(digest, "big") / 2**64
    edge = 0.0
    for index, fraction in enumerate(fractions[:-1]):
        edge += fraction
        if point < edge:
            return index
    return len(fractions) - 1


def split_targets(output: str, splits: int) -> list[Path]:
    """``data.jsonl`` → ``data.train.jsonl``, ``data.valid.jsonl`` (, ``data.test.jsonl``)."""
    path = Path(output)
    stem = path.with_suffix("") if path.suffix else path
    return [stem.with_name(f"{stem.name}.{name}.jsonl") for name in SPLIT_NAMES[:splits]]
