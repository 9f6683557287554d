"""Decoder geometry of an SAE: the features most similar to each feature (numpy only)."""

from __future__ import annotations

import numpy as np

N_SIMILAR = 6  # most similar features (decoder cosine) kept per feature


def similar_features(W: np.ndarray, k: int = N_SIMILAR, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` other features by cosine similarity of decoder rows, in chunks (F x F never held).

    ``W`` is the (F, d) float32 decoder. Returns ids (F, k) int64 and cosines (F, k) float32, most
    similar first, equal cosines in id order (where more than k tie, which of them are kept is
    numpy's argpartition's choice).
    """
    F = W.shape[0]
    k = min(k, max(F - 1, 0))
    norms = np.linalg.norm(W, axis=1, keepdims=True)
    Wn = W / np.where(norms > 0, norms, 1.0)
    ids = np.zeros((F, k), dtype=np.int64)
    cos = np.zeros((F, k), dtype=np.float32)
    if k == 0:
        return ids, cos
    for start in range(0, F, chunk):
        S = Wn[start : start + chunk] @ Wn.T
        rows = np.arange(S.shape[0])
        S[rows, start + rows] = -np.inf  # not similar to itself
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(S, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)  # by similarity, then lower id
        ids[start : start + chunk] = np.take_along_axis(part, order, axis=1)
        cos[start : start + chunk] = np.take_along_axis(vals, order, axis=1)
    return ids, cos
