"""Which features fire together, corrected for density: normalised pointwise mutual information.

On the co-occurrence sample of ``n`` images, feature ``a`` fires on ``n_a``
images, ``b`` on ``n_b`` and both on ``n_ab``. Raw counts rank dense features
first for everyone (a feature firing on 65 % of images co-fires with every
other). NPMI compares the joint rate with the rate independence predicts:

    NPMI(a, b) = ln(n_ab n / (n_a n_b)) / -ln(n_ab / n)

0 when the two are independent, 1 when each fires exactly where the other
does, negative when they avoid each other; bounded, so scores compare across
features. Lift (the ratio inside the log) is unbounded and favours rare
partners; Jaccard has no independence baseline (two independent features that
each fire on half the images score 1/3). A pair seen together on fewer than
``min_count`` images is not ranked at all: with a handful of images, lift and
NPMI reward one-off coincidences between rare features.

Per feature, the partners are the other features by NPMI (descending, ties to
the lower id) among those with ``n_ab >= min_count``; per layer, the pairs
``a < b`` by NPMI (ties to the lower ids). :func:`rank` computes both in
chunks of rows of the co-occurrence matrix (``units x units`` is never held).
"""

from __future__ import annotations

import numpy as np
import torch


def npmi(n_ab, n_a, n_b, n: int) -> np.ndarray:
    """NPMI from counts (module docstring), float64; 1 where ``n_ab == n`` (both fire everywhere),
    -1 where ``n_ab == 0``."""
    n_ab, n_a, n_b = (np.asarray(x, dtype=np.float64) for x in (n_ab, n_a, n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(n_ab) + np.log(float(n)) - np.log(n_a) - np.log(n_b)
        h = np.log(float(n)) - np.log(n_ab)
        out = np.where(h > 0, pmi / h, 1.0)
    return np.where(n_ab > 0, out, -1.0)


def _row_top(score: np.ndarray, valid: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the columns of the ``m`` best valid scores (descending, ties to the lower column), -1
    padded, and a mask of the filled slots: exact with ties at the m-th place."""
    R, U = score.shape
    cols_out = np.full((R, m), -1, dtype=np.int64)
    if m == 0 or R == 0:
        return cols_out, cols_out >= 0
    s = np.where(valid, score, -np.inf)
    kth = -np.partition(-s, m - 1, axis=1)[:, m - 1] if U > m else np.full(R, -np.inf)
    rows, cols = np.nonzero(valid & (s >= kth[:, None]))
    order = np.lexsort((cols, -s[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    first = np.searchsorted(rows, np.arange(R))
    rank = np.arange(len(rows)) - first[rows]
    keep = rank < m
    cols_out[rows[keep], rank[keep]] = cols[keep]
    return cols_out, cols_out >= 0


def rank(
    A: torch.Tensor, n_partners: int, n_pairs: int, min_count: int, chunk: int = 512
) -> dict[str, np.ndarray]:
    """Partners and layer pairs by NPMI from ``A`` (images x units, 1 where a unit fires on a sampled image).

    Returns ``partners`` (U, m) ids (-1 padding), ``partner_count`` and ``partner_npmi`` beside them, and
    ``pairs`` (P, 2), ``pair_count``, ``pair_npmi``, ``pair_jaccard`` for the layer's top pairs."""
    n, U = A.shape
    m = min(n_partners, max(U - 1, 0))
    # A pair in the layer's top n_pairs is within the top n_pairs of its first feature's row: every
    # entry above it in that row is a distinct pair above it overall (the tie orders agree), so one
    # row-wise selection serves both.
    m_row = min(max(m, n_pairs), max(U - 1, 0))
    alone = A.sum(0).double().cpu().numpy()  # exact: counts below 2**24 in float32
    partners = np.full((U, m), -1, dtype=np.int64)
    partner_count = np.zeros((U, m), dtype=np.int64)
    partner_npmi = np.zeros((U, m), dtype=np.float32)
    cand = []
    for start in range(0, U, chunk):
        C = (A[:, start : start + chunk].T @ A).cpu().numpy().astype(np.int64)  # (rows, U) exact counts
        R = C.shape[0]
        ids = start + np.arange(R)
        score = npmi(C, alone[ids][:, None], alone[None], n)
        valid = C >= max(int(min_count), 1)
        valid[np.arange(R), ids] = False  # not with itself
        cols, ok = _row_top(score, valid, m_row)
        safe = np.where(ok, cols, 0)
        cnt = np.take_along_axis(C, safe, 1)
        sc = np.take_along_axis(score, safe, 1)
        partners[ids] = cols[:, :m]
        partner_count[ids] = np.where(ok, cnt, 0)[:, :m]
        partner_npmi[ids] = np.where(ok, sc, 0.0)[:, :m].astype(np.float32)
        first = np.broadcast_to(ids[:, None], cols.shape)
        take = ok & (cols > first)
        cand.append((sc[take], first[take], cols[take], cnt[take]))
    if cand:
        sc, i, j, cnt = (np.concatenate(x) for x in zip(*cand))
    else:
        sc = i = j = cnt = np.zeros(0)
    order = np.lexsort((j, i, -sc))[:n_pairs]
    pairs = np.stack([i[order], j[order]], 1).astype(np.int64).reshape(-1, 2)
    pair_count = cnt[order].astype(np.int64)
    union = alone[pairs[:, 0]] + alone[pairs[:, 1]] - pair_count if len(pairs) else np.zeros(0)
    return {
        "partners": partners,
        "partner_count": partner_count,
        "partner_npmi": partner_npmi,
        "pairs": pairs,
        "pair_count": pair_count,
        "pair_npmi": sc[order].astype(np.float32),
        "pair_jaccard": (pair_count / np.maximum(union, 1)).astype(np.float32),
        "min_count": np.int64(min_count),
    }
