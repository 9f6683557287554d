"""Stage `map`: a 2-D layout of each layer's features and a named cluster hierarchy.

UMAP (cosine) of the decoder directions, normalised to the unit square;
agglomerative clustering (Ward) of the layout at each configured number of
clusters, coarse to fine. Cutting one merge tree at several heights keeps the
levels nested. Features and clusters are named from the classes of their top
dataset examples: a class name when one class dominates, the superclass when
the members share one, otherwise the two leading classes.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np

from atlasgen.cache import atomic_write_json
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


def nested_clusters(xy: np.ndarray, levels: list[int]) -> np.ndarray:
    """(F, n_levels) cluster ids, from one Ward merge tree cut at each size."""
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(xy, method="ward")
    return np.stack([fcluster(tree, t=min(n, len(xy)), criterion="maxclust") - 1 for n in levels], axis=1)


def name_from_classes(weights: np.ndarray, classes: list[dict]) -> str:
    """A name for a set of class weights (activation shares summed over members)."""
    total = weights.sum()
    if total <= 0:
        return "unlabelled"
    share = weights / total
    order = np.argsort(-share, kind="stable")
    if share[order[0]] >= 0.5:
        return classes[order[0]]["name"]
    supers: dict[str, float] = {}
    for c, s in zip(classes, share):
        if c.get("superclass"):
            supers[c["superclass"]] = supers.get(c["superclass"], 0.0) + s
    if supers:
        best = max(sorted(supers), key=supers.get)
        if supers[best] >= 0.6:
            return best
    return f"{classes[order[0]]['name']} / {classes[order[1]]['name']}"


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.map
    classes = json.loads((ctx.inputs["dataset"] / "dataset.json").read_text())["classes"]
    for layer_cfg in ctx.cfg.layers:
        layer = layer_cfg.name
        W_dec = np.load(ctx.inputs["sae"] / layer / "sae.npz")["W_dec"]
        ex = np.load(ctx.inputs["examples"] / layer / "features.npz")
        # Per-feature class weights from its top examples' shares.
        class_w = np.zeros((len(W_dec), len(classes)))
        for col in range(ex["top_classes"].shape[1]):
            ok = ex["top_classes"][:, col] >= 0
            class_w[np.flatnonzero(ok), ex["top_classes"][ok, col]] += ex["top_class_weights"][ok, col]
        xy = layout(W_dec, cfg.n_neighbors, cfg.min_dist, cfg.seed)
        clusters = nested_clusters(xy, cfg.levels)
        levels = []
        for lvl in range(clusters.shape[1]):
            entries = []
            for cid in np.unique(clusters[:, lvl]):
                members = np.flatnonzero(clusters[:, lvl] == cid)
                entries.append({"id": int(cid), "name": name_from_classes(class_w[members].sum(0), classes),
                                "x": round(float(xy[members, 0].mean()), 5), "y": round(float(xy[members, 1].mean()), 5),
                                "size": int(len(members)), "members": members.tolist()})
            levels.append(entries)
        features = [{"id": i, "x": round(float(xy[i, 0]), 5), "y": round(float(xy[i, 1]), 5),
                     "label": name_from_classes(class_w[i], classes) if ex["density"][i] > 0 else "dead",
                     "clusters": clusters[i].tolist()} for i in range(len(W_dec))]
        atomic_write_json(ctx.out / layer / "map.json", {"features": features, "levels": levels})
