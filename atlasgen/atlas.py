"""Activation atlas (Carter, Armstrong, Schubert, Johnson and Olah 2019, Distill).

The recipe of lucid's ``recipes/activation_atlas`` scaled down:

1. one spatial activation vector per image (a random position, off the border
   when the map is at least 3 wide), with the image's label;
2. a 2-D UMAP (cosine) of those vectors, normalised as lucid's
   ``normalize_layout``: clipped to the 1st-99th percentile plus a 10% margin,
   rescaled to [0, 1];
3. for each grid size, the points binned into cells; a cell with at least
   ``min_count`` points keeps its mean activation vector, its count, its leading
   classes and a few typical images (the points most like the mean);
4. one icon per cell: a feature visualisation of the cell's mean vector ``v``
   with the atlas objective ``(h . v) * max(0.1, cos(h, v)) ** p`` at the centre
   position ``h`` of the layer's map (lucid's ``direction_neuron_cossim``).

Icons are rendered by :func:`atlasgen.featurevis.render_directions` (the
batched renderer of every feature visualisation, with the atlas objective
``direction_objective``), seeded by cell number. Whitening of the directions
(lucid's option for mixed4a and later) is not implemented.
"""

from __future__ import annotations

import numpy as np
import torch

from atlasgen.umap_fit import umap_2d


def one_position_per_image(acts: torch.Tensor, image_ids: np.ndarray, seed: int) -> torch.Tensor:
    """(B, C) vectors: one position of each (B, C, H, W) map, drawn from (seed, image id)."""
    b, c, h, w = acts.shape
    ys, xs = np.empty(b, dtype=np.int64), np.empty(b, dtype=np.int64)
    for j, i in enumerate(image_ids):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(i)])
        # Avoid the border when there is an interior (padding artefacts live there).
        ys[j] = rng.integers(1, h - 1) if h >= 3 else rng.integers(0, h)
        xs[j] = rng.integers(1, w - 1) if w >= 3 else rng.integers(0, w)
    rows = torch.arange(b, device=acts.device)
    return acts[rows, :, torch.as_tensor(ys, device=acts.device), torch.as_tensor(xs, device=acts.device)]


def normalize_layout(xy: np.ndarray, lo: float = 1.0, hi: float = 99.0, margin: float = 0.1) -> np.ndarray:
    """lucid's normalize_layout: clip to percentiles widened by a margin, rescale each axis to [0, 1]."""
    mins = np.percentile(xy, lo, axis=0)
    maxs = np.percentile(xy, hi, axis=0)
    span = maxs - mins
    mins, maxs = mins - margin * span, maxs + margin * span
    out = np.clip(xy, mins, maxs) - mins
    return out / np.maximum(maxs - mins, 1e-12)


def umap_layout(vectors: np.ndarray, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    """(N, 2) float64 UMAP coordinates of the activation vectors (:func:`atlasgen.umap_fit.umap_2d`)."""
    return umap_2d(vectors, n_neighbors, min_dist, seed).astype(np.float64)


TOP_CLASSES = 3  # leading classes kept per cell (the map's hover)
EXAMPLES = 3  # example images kept per cell (the map's hover)


def grid_cells(
    xy: np.ndarray, vectors: np.ndarray, labels: np.ndarray, grid: int, min_count: int, n_classes: int
) -> dict:
    """Cells of a ``grid`` x ``grid`` binning with at least ``min_count`` points.

    Returns ``cells`` (M, 2) int (gx, gy; y grows downwards as in the layout),
    ``count`` (M,), ``mean`` (M, C) mean activation, ``top_class`` (M,),
    ``top_share`` (M,), ``classes`` (M, TOP_CLASSES, 2): the leading classes and their
    shares (class -1, share 0 where fewer), and ``examples`` (M, EXAMPLES): the rows of the cell's
    points whose vectors are most like the cell's mean (cosine similarity, ties to the lower row;
    -1 where fewer). Cells are ordered by (gy, gx).
    """
    g = np.clip((xy * grid).astype(np.int64), 0, grid - 1)
    key = g[:, 1] * grid + g[:, 0]
    order = np.argsort(key, kind="stable")
    uniq, start, counts = np.unique(key[order], return_index=True, return_counts=True)
    keep = counts >= min_count
    cells, count, mean, top, share, leading, examples = [], [], [], [], [], [], []
    for k, s, n in zip(uniq[keep], start[keep], counts[keep]):
        members = order[s : s + n]
        cells.append((int(k % grid), int(k // grid)))
        count.append(int(n))
        mean.append(vectors[members].astype(np.float64).mean(0))
        hist = np.bincount(labels[members], minlength=n_classes)
        top.append(int(hist.argmax()))
        share.append(float(hist.max() / n))
        lead = np.argsort(-hist, kind="stable")[:TOP_CLASSES]
        rows = [[int(c), float(hist[c] / n)] if hist[c] else [-1, 0.0] for c in lead]
        leading.append(rows + [[-1, 0.0]] * (TOP_CLASSES - len(rows)))  # fewer classes than TOP_CLASSES
        examples.append(typical(vectors[members], members, mean[-1]))
    C = vectors.shape[1]
    return {
        "cells": np.asarray(cells, dtype=np.int64).reshape(-1, 2),
        "count": np.asarray(count, dtype=np.int64),
        "mean": np.asarray(mean, dtype=np.float32).reshape(-1, C),
        "top_class": np.asarray(top, dtype=np.int64),
        "top_share": np.asarray(share, dtype=np.float64),
        "classes": np.asarray(leading, dtype=np.float64).reshape(-1, TOP_CLASSES, 2),
        "examples": np.asarray(examples, dtype=np.int64).reshape(-1, EXAMPLES),
    }


def typical(vectors: np.ndarray, rows: np.ndarray, mean: np.ndarray, k: int = EXAMPLES) -> list[int]:
    """The ``k`` of ``rows`` (sorted) whose ``vectors`` have the highest cosine similarity to
    ``mean`` (ties to the lower row), padded with -1. Similarities are rounded to 6 decimals so
    float noise does not reorder near-ties."""
    v = np.asarray(vectors, dtype=np.float64)
    m = np.asarray(mean, dtype=np.float64)
    cos = v @ m / np.maximum(np.linalg.norm(v, axis=1) * np.linalg.norm(m), 1e-12)
    order = np.lexsort((rows, -np.round(cos, 6)))[:k]
    return [int(rows[j]) for j in order] + [-1] * (k - len(order))


def sprite_sheet(icons: np.ndarray, columns: int | None = None) -> tuple[np.ndarray, int]:
    """Icons (M, S, S, 3) tiled row-major into one image; returns (sheet, columns)."""
    m, s = len(icons), icons.shape[1] if len(icons) else 1
    cols = columns or max(1, int(np.ceil(np.sqrt(max(m, 1)))))
    rows = max(1, -(-m // cols))
    sheet = np.full((rows * s, cols * s, 3), 255, dtype=np.uint8)
    for i in range(m):
        r, c = divmod(i, cols)
        sheet[r * s : (r + 1) * s, c * s : (c + 1) * s] = icons[i]
    return sheet, cols
