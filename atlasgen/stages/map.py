"""Stage `map`: a 2-D layout of each layer's features and a named cluster hierarchy.

UMAP (cosine) of the decoder directions, normalised to the unit square;
agglomerative clustering (Ward) of the layout at each configured number of
clusters, coarse to fine. Cutting one merge tree at several heights keeps the
levels nested. Features and clusters are named from the classes of their top
dataset examples (atlasgen.hierarchy.name_group): a class name when one class
dominates, else the lowest common ancestor of the leading classes in the class
hierarchy (`map.hierarchy`, or the dataset's superclasses), else the two
leading classes. `map.source: class_weights` lays out the features' class-weight
profiles (circuits stage) instead of their decoder directions, and `coactivation`
their maximum activations on a uniform sample of images (examples stage). On data with
planted superclasses, the top-level clusters are scored against them (purity,
adjusted Rand index) in map.json's "evaluation".
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np

from atlasgen import hierarchy as hierarchy_mod
from atlasgen.cache import atomic_write_json
from atlasgen.hierarchy import Hierarchy, name_group
from atlasgen.pipeline import StageContext


def layout(W_dec: np.ndarray, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    """(F, 2) UMAP coordinates of decoder directions, scaled into [0, 1]."""
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # single-threaded UMAP is deterministic for a seed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap

        reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(W_dec) - 1), min_dist=min_dist, metric="cosine",
                            random_state=seed, n_jobs=1, init="spectral" if len(W_dec) > 16 else "random")
        xy = reducer.fit_transform(W_dec.astype(np.float32))
    xy = xy - xy.min(0)
    return xy / max(float(xy.max()), 1e-12)


DENSE_LINKAGE_MAX = 4096  # above this, Ward runs on a k-nearest-neighbour graph (memory O(n k), not O(n^2))


def nested_clusters(xy: np.ndarray, levels: list[int], n_neighbors: int = 15) -> np.ndarray:
    """(F, n_levels) cluster ids, from one Ward merge tree (scikit-learn) cut at each size.

    Replaying the first F - k merges of the tree gives k clusters, so the levels
    are nested. Up to DENSE_LINKAGE_MAX points the tree is the exact Ward tree;
    above, merges are restricted to a k-nearest-neighbour graph of the layout
    (scikit-learn's structured Ward), which keeps 16k+ features within memory.
    Clusters are numbered by their lowest member.
    """
    from sklearn.cluster import AgglomerativeClustering

    n = len(xy)
    out = np.zeros((n, len(levels)), dtype=np.int64)
    if n < 2:
        return out
    connectivity = None
    if n > DENSE_LINKAGE_MAX:
        from sklearn.neighbors import kneighbors_graph

        connectivity = kneighbors_graph(xy, n_neighbors=min(n_neighbors, n - 1), include_self=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the number of connected components ... is > 1": completed by sklearn
        tree = AgglomerativeClustering(n_clusters=1, linkage="ward", connectivity=connectivity,
                                       compute_full_tree=True).fit(xy).children_
    parent = np.arange(2 * n - 1)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    done = 0
    for col, k in sorted(enumerate(levels), key=lambda t: -t[1]):  # fine to coarse: merges only accumulate
        k = max(1, min(k, n))
        while done < n - k:
            a, b = tree[done]
            parent[find(int(a))] = n + done
            parent[find(int(b))] = n + done
            done += 1
        roots = np.array([find(i) for i in range(n)])
        _, first = np.unique(roots, return_index=True)
        order = {int(roots[i]): j for j, i in enumerate(sorted(first))}
        out[:, col] = [order[int(r)] for r in roots]
    return out


def coactivation_vectors(cooc) -> np.ndarray:
    """(F, n) per-feature vectors for ``map.source: coactivation``: each feature's maximum
    activation on the examples stage's uniform sample of images, so features that fire on the
    same images lie together, whatever their decoder directions. Features that never fire on
    the sample share one tiny constant vector (cosine needs a non-zero vector): they gather
    in one place of the map instead of scattering at random."""
    peaks = np.asarray(cooc["sample_peaks"], dtype=np.float32).T  # (F, images of the sample)
    silent = ~(peaks > 0).any(1)
    peaks[silent] = 1e-6
    return peaks


def representative(members: np.ndarray, xy: np.ndarray, alive: np.ndarray) -> int:
    """The live member nearest the cluster's centroid (any member when none is live)."""
    pool = members[alive[members]] if alive[members].any() else members
    centre = xy[members].mean(0)
    d = ((xy[pool] - centre) ** 2).sum(1)
    return int(pool[int(np.argmin(d))])


def evaluate(clusters: np.ndarray, class_w: np.ndarray, alive: np.ndarray, hierarchy: Hierarchy) -> dict:
    """Top-level clusters against the planted superclasses: purity and adjusted Rand index.

    Each live feature's reference group is the top ancestor (superclass) of the
    class with the largest share of its top examples.
    """
    from sklearn.metrics import adjusted_rand_score

    ok = alive & (class_w.sum(1) > 0)
    if ok.sum() < 2:
        return {}
    truth = np.array([hierarchy.top(int(c)) for c in class_w[ok].argmax(1)])
    pred = clusters[ok, 0]
    purity = sum(np.unique(truth[pred == k], return_counts=True)[1].max() for k in np.unique(pred)) / len(pred)
    return {"features": int(ok.sum()), "reference": "top ancestor of each feature's dominant class",
            "n_reference_groups": int(len(np.unique(truth))), "n_clusters": int(len(np.unique(pred))),
            "purity": round(float(purity), 4), "adjusted_rand_index": round(float(adjusted_rand_score(truth, pred)), 4)}


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.map
    classes = json.loads((ctx.inputs["dataset"] / "dataset.json").read_text())["classes"]
    hierarchy = hierarchy_mod.load(cfg.hierarchy, classes, ctx.cfg.resolve)
    for layer_cfg in ctx.cfg.layers:
        layer = layer_cfg.name
        W_dec = np.load(ctx.inputs["sae"] / layer / "sae.npz")["W_dec"]
        ex = np.load(ctx.inputs["examples"] / layer / "features.npz")
        # Per-feature class weights from its top examples' shares.
        class_w = np.zeros((len(W_dec), len(classes)))
        for col in range(ex["top_classes"].shape[1]):
            ok = ex["top_classes"][:, col] >= 0
            class_w[np.flatnonzero(ok), ex["top_classes"][ok, col]] += ex["top_class_weights"][ok, col]
        alive = ex["density"] > 0
        if cfg.source == "class_weights":
            vectors = np.load(ctx.inputs["circuits"] / layer / "class_weights.npz")["features"]
        elif cfg.source == "coactivation":
            vectors = coactivation_vectors(np.load(ctx.inputs["examples"] / layer / "cooccurrence.npz"))
        else:
            vectors = W_dec
        xy = layout(vectors, cfg.n_neighbors, cfg.min_dist, cfg.seed)
        clusters = nested_clusters(xy, cfg.levels)
        levels = []
        for lvl in range(clusters.shape[1]):
            entries = []
            for cid in np.unique(clusters[:, lvl]):
                members = np.flatnonzero(clusters[:, lvl] == cid)
                parent = int(clusters[members[0], lvl - 1]) if lvl > 0 else None
                entries.append({"id": int(cid), "name": name_group(class_w[members].sum(0), hierarchy),
                                "x": round(float(xy[members, 0].mean()), 5), "y": round(float(xy[members, 1].mean()), 5),
                                "size": int(len(members)), "parent": parent,
                                "representative": representative(members, xy, alive), "members": members.tolist()})
            levels.append(entries)
        features = [{"id": i, "x": round(float(xy[i, 0]), 5), "y": round(float(xy[i, 1]), 5),
                     "label": name_group(class_w[i], hierarchy) if alive[i] else "dead",
                     "clusters": clusters[i].tolist()} for i in range(len(W_dec))]
        evaluation = evaluate(clusters, class_w, alive, hierarchy)
        if evaluation:
            ctx.console.detail(f"{layer}: top clusters vs superclasses: purity {evaluation['purity']:.3f}, "
                               f"ARI {evaluation['adjusted_rand_index']:.3f}")
        atomic_write_json(ctx.out / layer / "map.json", {"source": cfg.source, "features": features, "levels": levels,
                                                        "evaluation": evaluation})
