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
their maximum activations on a uniform sample of images (examples stage), and `predictions`
the model's mean predicted class probabilities on that sample, weighted by each feature's
activation. On data with
planted superclasses, the top-level clusters are scored against them (purity,
adjusted Rand index) in map.json's "evaluation".
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import torch

from atlasgen import hierarchy as hierarchy_mod
from atlasgen.cache import atomic_write_json
from atlasgen.data import open_dataset
from atlasgen.hierarchy import Hierarchy, name_group
from atlasgen.stage import Stage, StageContext

STAGE = Stage(
    "map",
    deps=("dataset", "model", "sae", "examples", "circuits"),
    config=("layers", "map", "map_hierarchy"),
    what="feature map",
)


def layout(W_dec: np.ndarray, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    """(F, 2) UMAP coordinates of decoder directions (or other per-feature vectors), scaled into [0, 1].

    Identical rows (e.g. features that never fire, which some sources give one shared vector)
    are laid out once and share a point: many duplicates leave UMAP's neighbour graph full of
    ties, and its layout then differed from process to process."""
    import numba

    X = np.asarray(W_dec, dtype=np.float32)
    _, first, inverse = np.unique(X, axis=0, return_index=True, return_inverse=True)
    keep = np.sort(first)  # distinct rows in their original order (UMAP's result depends on the order)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    unique, inverse = X[keep], rank[inverse.reshape(-1)]
    if len(unique) < 3:  # nothing to lay out: one or two distinct vectors
        xy_unique = np.column_stack(
            [np.arange(len(unique), dtype=np.float32), np.zeros(len(unique), np.float32)]
        )
    else:
        threads = numba.get_num_threads()
        numba.set_num_threads(
            1
        )  # single-threaded UMAP is deterministic for a seed, whoever started numba first
        try:
            with warnings.catch_warnings():
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
                xy_unique = reducer.fit_transform(unique)
        finally:
            numba.set_num_threads(threads)
    xy = xy_unique[inverse]
    xy = xy - xy.min(0)
    return xy / max(float(xy.max()), 1e-12)


DENSE_LINKAGE_MAX = 4096  # above this, Ward runs on a k-nearest-neighbour graph (memory O(n k), not O(n^2))


def nested_clusters(
    xy: np.ndarray, levels: list[int], n_neighbors: int = 15, cosine: bool = False
) -> np.ndarray:
    """(F, n_levels) cluster ids, from one Ward merge tree (scikit-learn) cut at each size.

    Replaying the first F - k merges of the tree gives k clusters, so the levels
    are nested. Up to DENSE_LINKAGE_MAX points the tree is the exact Ward tree;
    above, merges are restricted to a k-nearest-neighbour graph of the layout
    (scikit-learn's structured Ward), which keeps 16k+ features within memory.
    Clusters are numbered by their lowest member. ``cosine``: the rows are the laid-out
    vectors themselves (``map.cluster: vectors``), merged by average linkage on cosine
    distance (Ward needs Euclidean distances); the k-nearest-neighbour graph above
    DENSE_LINKAGE_MAX is then a cosine one.
    """
    from sklearn.cluster import AgglomerativeClustering

    n = len(xy)
    if n < 2:
        return np.zeros((n, len(levels)), dtype=np.int64)
    connectivity = None
    if n > DENSE_LINKAGE_MAX:
        from sklearn.neighbors import kneighbors_graph

        connectivity = kneighbors_graph(
            xy,
            n_neighbors=min(n_neighbors, n - 1),
            include_self=False,
            metric="cosine" if cosine else "minkowski",
        )
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # "the number of connected components ... is > 1": completed by sklearn
        linkage = {"linkage": "average", "metric": "cosine"} if cosine else {"linkage": "ward"}
        tree = (
            AgglomerativeClustering(
                n_clusters=1, connectivity=connectivity, compute_full_tree=True, **linkage
            )
            .fit(xy)
            .children_
        )
    return _cut_levels(n, _member_pairs(tree, np.arange(n)), levels)


def _member_pairs(children: np.ndarray, members: np.ndarray) -> list[tuple[int, int]]:
    """A scikit-learn merge tree (``children_`` over the rows ``members``) as its merges, each a pair
    of members (global indices) standing for the two sides."""
    member = [int(m) for m in members]  # tree node -> one of its members
    pairs = []
    for a, b in children:
        pairs.append((member[int(a)], member[int(b)]))
        member.append(member[int(a)])
    return pairs


def _cut_levels(n: int, pairs: list[tuple[int, int]], levels: list[int], fewest: int = 1) -> np.ndarray:
    """(n, len(levels)) cluster ids: for each level size k (at least ``fewest``), the clusters after
    replaying the first n - k merges (pairs of members, in order). Replayed fine to coarse, so merges
    only accumulate and the levels are nested. Clusters are numbered by their lowest member."""
    parent = np.arange(n)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    out = np.zeros((n, len(levels)), dtype=np.int64)
    done = 0
    for col, k in sorted(enumerate(levels), key=lambda t: -t[1]):
        k = max(fewest, min(k, n))
        while done < min(n - k, len(pairs)):
            a, b = pairs[done]
            parent[find(a)] = find(b)
            done += 1
        roots = np.array([find(i) for i in range(n)])
        _, first = np.unique(roots, return_index=True)
        order = {int(roots[i]): j for j, i in enumerate(sorted(first))}
        out[:, col] = [order[int(r)] for r in roots]
    return out


def nested_within(xy: np.ndarray, top: np.ndarray, levels: list[int]) -> np.ndarray:
    """(F, n_levels) nested cluster ids whose coarsest level is the given partition ``top`` and whose
    finer levels are cut, inside each top cluster, from Ward merge trees of the 2-D layout
    (``map.cluster: vectors``: the top groups come from the vectors, and the finer clusters stay
    compact on the map). The groups' merges are replayed together, lowest Ward height first, and
    never across groups, so level sizes are shared out by how spread each group is. Numbered by
    lowest member, as :func:`nested_clusters`."""
    from sklearn.cluster import AgglomerativeClustering

    n = len(xy)
    events = []  # (Ward height, member of one side, member of the other)
    for g in np.unique(top):
        members = np.flatnonzero(top == g)
        if len(members) < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = AgglomerativeClustering(
                n_clusters=1, linkage="ward", compute_full_tree=True, compute_distances=True
            ).fit(xy[members])
        events += [
            (float(h), a, b) for h, (a, b) in zip(tree.distances_, _member_pairs(tree.children_, members))
        ]
    events.sort()
    return _cut_levels(n, [(a, b) for _, a, b in events], levels, fewest=len(np.unique(top)))


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


def prediction_profiles(cooc, probs: np.ndarray) -> np.ndarray:
    """(F, K) per-feature vectors for ``map.source: predictions``: the model's predicted class
    probabilities on the examples stage's uniform sample of images, averaged with each image
    weighted by the feature's maximum activation on it. Two features lie together when the model
    sees the same classes in the images they fire on, so the layout follows the model's own
    class similarities (a dog feature and a cat feature share the mass the model gives to
    "animal" classes) without using any label. ``probs`` is (images of the sample, K).
    Features that never fire on the sample share one tiny constant vector, as in
    coactivation_vectors."""
    peaks = np.asarray(cooc["sample_peaks"], dtype=np.float64).T  # (F, n)
    weight = peaks.sum(1, keepdims=True)
    out = (peaks @ np.asarray(probs, dtype=np.float64)) / np.maximum(weight, 1e-12)
    out[weight[:, 0] <= 0] = 1e-6
    return out.astype(np.float32)


@torch.no_grad()
def sample_predictions(
    model_dir, model_cfg, data, images: np.ndarray, device: str, batch_size: int = 128
) -> np.ndarray:
    """(n, K) softmax over the dataset's classes of the model on dataset images ``images``."""
    from atlasgen.models import class_outputs, load_model

    model = load_model(model_dir, model_cfg, data.n_classes, device).eval()
    outputs = class_outputs(model, data.n_classes)
    out = []
    for start in range(0, len(images), batch_size):
        logits = model(data.batch(images[start : start + batch_size]).to(device))[:, outputs]
        out.append(torch.softmax(logits.float(), 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, data.n_classes), np.float32)


def cosine_ready(vectors: np.ndarray) -> np.ndarray:
    """float64 rows with no zero row (cosine distance needs a norm): a zero row (a feature that
    never fired or never writes) becomes a tiny constant one, so such rows gather together."""
    out = np.array(vectors, dtype=np.float64)
    out[~(np.abs(out).sum(1) > 0)] = 1e-6
    return out


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
    purity = sum(np.unique(truth[pred == k], return_counts=True)[1].max() for k in np.unique(pred)) / len(
        pred
    )
    return {
        "features": int(ok.sum()),
        "reference": "top ancestor of each feature's dominant class",
        "n_reference_groups": int(len(np.unique(truth))),
        "n_clusters": int(len(np.unique(pred))),
        "purity": round(float(purity), 4),
        "adjusted_rand_index": round(float(adjusted_rand_score(truth, pred)), 4),
    }


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.map
    classes = json.loads((ctx.inputs["dataset"] / "dataset.json").read_text())["classes"]
    hierarchy = hierarchy_mod.load(cfg.hierarchy, classes, ctx.cfg.resolve)
    probs = None
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
        elif cfg.source == "predictions":
            cooc = np.load(ctx.inputs["examples"] / layer / "cooccurrence.npz")
            if probs is None:  # one forward pass over the sample serves every layer (same images)
                probs = sample_predictions(
                    ctx.inputs["model"],
                    ctx.cfg.model,
                    open_dataset(ctx.inputs["dataset"]),
                    cooc["sample_images"],
                    ctx.device,
                    ctx.cfg.examples.batch_size,
                )
            vectors = prediction_profiles(cooc, probs)
        else:
            vectors = W_dec
        xy = layout(vectors, cfg.n_neighbors, cfg.min_dist, cfg.seed)
        if cfg.cluster == "vectors":  # top groups from the vectors, finer clusters compact on the layout
            top = nested_clusters(cosine_ready(vectors), [min(cfg.levels)], cfg.n_neighbors, cosine=True)[
                :, 0
            ]
            clusters = nested_within(xy, top, cfg.levels)
        else:
            clusters = nested_clusters(xy, cfg.levels)
        levels = []
        for lvl in range(clusters.shape[1]):
            entries = []
            for cid in np.unique(clusters[:, lvl]):
                members = np.flatnonzero(clusters[:, lvl] == cid)
                parent = int(clusters[members[0], lvl - 1]) if lvl > 0 else None
                entries.append(
                    {
                        "id": int(cid),
                        "name": name_group(class_w[members].sum(0), hierarchy),
                        "x": round(float(xy[members, 0].mean()), 5),
                        "y": round(float(xy[members, 1].mean()), 5),
                        "size": int(len(members)),
                        "parent": parent,
                        "representative": representative(members, xy, alive),
                        "members": members.tolist(),
                    }
                )
            levels.append(entries)
        features = [
            {
                "id": i,
                "x": round(float(xy[i, 0]), 5),
                "y": round(float(xy[i, 1]), 5),
                "label": name_group(class_w[i], hierarchy) if alive[i] else "dead",
                "clusters": clusters[i].tolist(),
            }
            for i in range(len(W_dec))
        ]
        evaluation = evaluate(clusters, class_w, alive, hierarchy)
        if evaluation:
            ctx.console.detail(
                f"{layer}: top clusters vs superclasses: purity {evaluation['purity']:.3f}, "
                f"ARI {evaluation['adjusted_rand_index']:.3f}"
            )
        atomic_write_json(
            ctx.out / layer / "map.json",
            {"source": cfg.source, "features": features, "levels": levels, "evaluation": evaluation},
        )
