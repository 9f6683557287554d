"""The one UMAP call of a build: the feature map's layout and the activation atlas's both go here.

UMAP (umap-learn, with pynndescent for its neighbour graph from 4,096 points on) runs on numba.
A seeded UMAP is reproducible only single-threaded, so the layout runs with numba's thread count
set to 1 through ``numba.set_num_threads`` for the duration of the fit and restored afterwards.
The count is never set through the ``NUMBA_NUM_THREADS`` environment variable: once any numba code
has started numba's thread pool (umap-learn and pynndescent start it on every fit), a changed
variable makes numba's next compilation raise ``RuntimeError: Cannot set NUMBA_NUM_THREADS to a
different value once the threads have been launched``. ``set_num_threads`` works whenever and
however numba was imported.

Identical rows (features that never fire, which some sources give one shared vector) are laid out
once and share a point: many duplicates leave UMAP's neighbour graph full of ties, and its layout
then differed from process to process.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np


@contextlib.contextmanager
def numba_threads(n: int):
    """numba's thread count set to ``n`` (at most the pool's size) while the block runs, then restored."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def umap_2d(vectors: np.ndarray, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    """(N, 2) float32 UMAP coordinates (cosine metric, seeded, single-threaded) of the rows of ``vectors``,
    unscaled. Identical rows share a point; with fewer than 3 distinct rows nothing is laid out and the
    distinct rows are put on a line (0, 0), (1, 0)."""
    X = np.asarray(vectors, dtype=np.float32)
    _, first, inverse = np.unique(X, axis=0, return_index=True, return_inverse=True)
    keep = np.sort(first)  # distinct rows in their original order (UMAP's result depends on the order)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    unique, inverse = X[keep], rank[inverse.reshape(-1)]
    if len(unique) < 3:
        xy = np.column_stack([np.arange(len(unique), dtype=np.float32), np.zeros(len(unique), np.float32)])
        return xy[inverse]
    with numba_threads(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap

        reducer = umap.UMAP(
            n_neighbors=min(n_neighbors, len(unique) - 1),
            min_dist=min_dist,
            metric="cosine",
            random_state=seed,
            n_jobs=1,
            init="spectral" if len(unique) > 16 else "random",
        )
        xy = reducer.fit_transform(unique)
    return np.asarray(xy, dtype=np.float32)[inverse]
