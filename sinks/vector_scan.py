"""The exact search: every current vector's cosine with the query, with numpy, a chunk at a time.

Where sqlite-vec cannot be loaded (`sinks.vectors`), this is the search: memory is bounded by the chunk, not
by the checkpoint. Ties are broken as the index breaks them (the score to `tie` decimals, then the lowest
rowid), so both engines give the same hits.
"""

from __future__ import annotations

from typing import Any

__all__ = ["exact_nearest"]


def exact_nearest(
    cursor: Any, places: dict[int, int], query: bytes, k: int, *, chunk: int, tie: int
) -> list[tuple[int, int, float]]:
    """(vector rowid, occurrence rowid, cosine) of the `k` vectors nearest to `query` among `cursor`'s
    (rowid, float32 blob) rows that are current (`places`: vector rowid → its place's occurrence rowid)."""
    import numpy as np

    q = np.frombuffer(query, dtype="<f4").astype(np.float32)
    q = q / (np.linalg.norm(q) or 1.0)
    best_ids, best_scores = np.empty(0, np.int64), np.empty(0, np.float32)
    while rows := cursor.fetchmany(chunk):
        rows = [(rowid, blob) for rowid, blob in rows if rowid in places]
        if not rows:
            continue
        ids = np.fromiter((r for r, _ in rows), np.int64, len(rows))
        matrix = np.frombuffer(b"".join(b for _, b in rows), dtype="<f4").reshape(len(rows), -1)
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        scores = (matrix @ q) / np.where(norms > 0, norms, 1.0)
        ids, scores = np.concatenate([best_ids, ids]), np.concatenate([best_scores, scores])
        order = np.lexsort((ids, -np.round(scores, tie)))[:k]
        best_ids, best_scores = ids[order], scores[order]
    return [(int(i), places[int(i)], float(s)) for i, s in zip(best_ids, best_scores, strict=True)]
