"""The feature map's compute: per-feature vectors -> 2-D layout -> nested, named clusters -> scores.

:func:`build_map` takes one vector per feature (what ``map.source`` lays out: decoder directions,
class-weight profiles, co-activation or prediction profiles, see :mod:`atlasgen.stages.map`), which
features are live, their class weights (from their top dataset examples) and the class hierarchy,
and returns the content of map.json.

* **Dead features** (density 0) are left out: no position, no cluster (ids -1), label "dead".
* **Layout**: UMAP (cosine) of the live features' vectors, scaled into the unit square.
* **Top level**: cut from one merge tree, of the vectors themselves (``cluster: vectors``: average
  linkage on cosine distance) or of the layout (``cluster: layout``: Ward). A slot of the top level
  is never spent on a handful of outliers: the tree is cut just below the point where ``k`` clusters
  of at least :func:`min_top_size` features exist, and the smaller pieces join the big cluster whose
  mean vector they are closest to (:func:`top_groups`). Features whose vector carries nothing (a zero
  row: a feature that never fired on a source's sample) are not clustered; they take the clusters of
  their nearest clustered neighbour on the layout.
* **Finer levels**: Ward merge trees of the 2-D layout inside each top cluster, replayed together by
  merge height (:func:`nested_within`), so finer clusters are compact on the map and every level is
  nested in the one above.
* **Names**: :func:`atlasgen.hierarchy.name_group` of each cluster's summed class weights; siblings
  (clusters of one parent, or the whole top level) that would share a name are told apart by the
  class most distinctive of each among them (:func:`sibling_names`).
* **Scores**: the top level against the superclass of each live feature's dominant class, purity and
  adjusted Rand index (:func:`evaluate`), the figures the map page states.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from atlasgen.hierarchy import Hierarchy, name_group
from atlasgen.umap_fit import umap_2d

DENSE_LINKAGE_MAX = 4096  # above this, Ward runs on a k-nearest-neighbour graph (memory O(n k), not O(n^2))


# ---------------------------------------------------------------- per-feature vectors


def class_weights(top_classes: np.ndarray, top_class_weights: np.ndarray, n_classes: int) -> np.ndarray:
    """(F, K) per-feature class weights: the shares of each class among its top dataset examples
    (the examples stage's ``top_classes`` / ``top_class_weights``, -1 for no class)."""
    F = len(top_classes)
    out = np.zeros((F, n_classes))
    for col in range(top_classes.shape[1]):
        ok = top_classes[:, col] >= 0
        out[np.flatnonzero(ok), top_classes[ok, col]] += top_class_weights[ok, col]
    return out


def coactivation_vectors(cooc) -> np.ndarray:
    """(F, n) per-feature vectors for ``map.source: coactivation``: each feature's maximum
    activation on the examples stage's uniform sample of images, so features that fire on the
    same images lie together, whatever their decoder directions. A feature that never fires on
    the sample gets a zero row (nothing to place it by: it is not clustered, see the module)."""
    return np.asarray(cooc["sample_peaks"], dtype=np.float32).T.copy()  # (F, images of the sample)


def example_images(top_idx: np.ndarray) -> np.ndarray:
    """The sorted dataset indices of every feature's top examples (-1 entries: none)."""
    return np.unique(top_idx[top_idx >= 0]).astype(np.int64)


def prediction_profiles(
    top_idx: np.ndarray, top_val: np.ndarray, images: np.ndarray, probs: np.ndarray
) -> np.ndarray:
    """(F, K) per-feature vectors for ``map.source: predictions``: the model's predicted class
    probabilities on each feature's top dataset examples (the examples stage's ``top_idx``, one per
    row and column, -1 for none), averaged with each image weighted by the feature's activation on
    it (``top_val``). Two features lie together when the model sees the same classes in the images
    they respond to most, so the layout follows the model's own class similarities (a dog feature
    and a cat feature share the mass the model gives to "animal" classes) without any label.
    ``images`` (sorted dataset indices) and ``probs`` (their predictions, one row each) cover every
    top example. The top examples, not a uniform sample, are what a feature is selective for: on a
    uniform sample a dense feature's profile is close to the dataset's mean prediction, whatever it
    detects. A feature without top examples gets a zero row."""
    top_idx = np.asarray(top_idx)
    weight = np.where(top_idx >= 0, np.clip(np.asarray(top_val, dtype=np.float64), 0, None), 0.0)
    rows = np.searchsorted(images, np.maximum(top_idx, 0))
    P = np.asarray(probs, dtype=np.float64)[np.minimum(rows, len(images) - 1)] if len(images) else None
    total = weight.sum(1)
    out = np.zeros((len(top_idx), np.asarray(probs).shape[1]))
    if P is not None:
        out = np.einsum("fe,fek->fk", weight, P) / np.maximum(total, 1e-12)[:, None]
    out[total <= 0] = 0
    return out.astype(np.float32)


def informative(vectors: np.ndarray) -> np.ndarray:
    """Rows that carry something to place a feature by (not all zero, finite)."""
    v = np.asarray(vectors, dtype=np.float64)
    return np.isfinite(v).all(1) & (np.abs(v).sum(1) > 0)


# ---------------------------------------------------------------- layout


def layout(vectors: np.ndarray, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    """(F, 2) UMAP coordinates of per-feature vectors, scaled into [0, 1] with the aspect kept
    (:func:`atlasgen.umap_fit.umap_2d`: identical rows share a point)."""
    xy = umap_2d(vectors, n_neighbors, min_dist, seed)
    xy = xy - xy.min(0)
    return xy / max(float(xy.max()), 1e-12)


# ---------------------------------------------------------------- merge trees and cuts


def _tree(X: np.ndarray, cosine: bool, n_neighbors: int = 15) -> np.ndarray:
    """scikit-learn's full merge tree (``children_``) of the rows of X: average linkage on cosine
    distance (``cosine``) or Ward; above DENSE_LINKAGE_MAX rows, merges are restricted to a
    k-nearest-neighbour graph (memory O(n k))."""
    from sklearn.cluster import AgglomerativeClustering

    n = len(X)
    connectivity = None
    if n > DENSE_LINKAGE_MAX:
        from sklearn.neighbors import kneighbors_graph

        connectivity = kneighbors_graph(
            X,
            n_neighbors=min(n_neighbors, n - 1),
            include_self=False,
            metric="cosine" if cosine else "minkowski",
        )
    linkage = {"linkage": "average", "metric": "cosine"} if cosine else {"linkage": "ward"}
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # "the number of connected components ... is > 1": completed by sklearn
        return (
            AgglomerativeClustering(
                n_clusters=1, connectivity=connectivity, compute_full_tree=True, **linkage
            )
            .fit(X)
            .children_
        )


def nested_clusters(
    xy: np.ndarray, levels: list[int], n_neighbors: int = 15, cosine: bool = False
) -> np.ndarray:
    """(n, n_levels) cluster ids, from one merge tree (Ward, or average linkage on cosine distance
    with ``cosine``) cut at each size. Replaying the first n - k merges of the tree gives k
    clusters, so the levels are nested. Clusters are numbered by their lowest member."""
    n = len(xy)
    if n < 2:
        return np.zeros((n, len(levels)), dtype=np.int64)
    tree = _tree(xy, cosine, n_neighbors)
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
        out[:, col] = _by_lowest_member(np.array([find(i) for i in range(n)]))
    return out


def _by_lowest_member(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0, 1, ... in the order of each cluster's lowest member."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def min_top_size(n: int) -> int:
    """The fewest features a top-level cluster holds: 2 % of the clustered features, at least 3."""
    return max(3, math.ceil(0.02 * n))


def top_groups(
    X: np.ndarray, k: int, cosine: bool, min_size: int | None = None, n_neighbors: int = 15
) -> np.ndarray:
    """(n,) top-level cluster ids of the rows of X (numbered by lowest member): the merge tree
    (:func:`_tree`) undone from its root, one merge at a time, until ``k`` of its clusters hold at
    least ``min_size`` rows each; every smaller piece (outliers split off on the way) then joins the
    big cluster whose mean row is closest to its own (cosine similarity, or Euclidean distance for
    Ward). With fewer rows than k * min_size the tree is cut at k as it stands."""
    n = len(X)
    k = max(1, min(k, n))
    if n < 2 or k == 1:
        return np.zeros(n, dtype=np.int64)
    min_size = min_top_size(n) if min_size is None else min_size
    children = _tree(X, cosine, n_neighbors)
    size = np.ones(2 * n - 1, dtype=np.int64)
    for i, (a, b) in enumerate(children):
        size[n + i] = size[a] + size[b]
    if n < k * min_size:
        min_size = 1
    current = {2 * n - 2}
    big = 1 if size[2 * n - 2] >= min_size else 0
    for i in range(n - 2, -1, -1):  # undo merge i (node n + i) while fewer than k big clusters
        if big >= k:
            break
        node = n + i
        if node not in current:
            continue
        current.discard(node)
        big -= int(size[node] >= min_size)
        for child in children[i]:
            current.add(int(child))
            big += int(size[child] >= min_size)
    # Leaves of each current node.
    label = np.empty(n, dtype=np.int64)
    for node in current:
        stack = [node]
        while stack:
            v = stack.pop()
            if v < n:
                label[v] = node
            else:
                stack.extend(int(c) for c in children[v - n])
    keep = [c for c in current if size[c] >= min_size]
    if len(keep) < len(current) and keep:
        Xf = np.asarray(X, dtype=np.float64)
        if cosine:
            Xf = Xf / np.maximum(np.linalg.norm(Xf, axis=1, keepdims=True), 1e-12)
        means = np.stack([Xf[label == c].mean(0) for c in keep])
        for c in current:
            if c in keep:
                continue
            m = Xf[label == c].mean(0)
            if cosine:
                score = means @ m / np.maximum(np.linalg.norm(means, axis=1) * np.linalg.norm(m), 1e-12)
                target = keep[int(np.argmax(score))]
            else:
                target = keep[int(np.argmin(((means - m) ** 2).sum(1)))]
            label[label == c] = target
    return _by_lowest_member(label)


def nested_within(xy: np.ndarray, top: np.ndarray, levels: list[int]) -> np.ndarray:
    """(n, n_levels) nested cluster ids whose coarsest level is the given partition ``top`` and whose
    finer levels are cut, inside each top cluster, from Ward merge trees of the 2-D layout. The
    groups' merges are replayed together, lowest Ward height first, and never across groups, so
    level sizes are shared out by how spread each group is. Numbered by lowest member, as
    :func:`nested_clusters`."""
    from sklearn.cluster import AgglomerativeClustering

    n = len(xy)
    events = []  # (Ward height, member of one side, member of the other)
    for g in np.unique(top):
        members = np.flatnonzero(top == g)
        if len(members) < 2:
            continue
        connectivity = None
        if len(members) > DENSE_LINKAGE_MAX:
            from sklearn.neighbors import kneighbors_graph

            connectivity = kneighbors_graph(xy[members], n_neighbors=15, include_self=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = AgglomerativeClustering(
                n_clusters=1,
                linkage="ward",
                connectivity=connectivity,
                compute_full_tree=True,
                compute_distances=True,
            ).fit(xy[members])
        events += [
            (float(h), a, b) for h, (a, b) in zip(tree.distances_, _member_pairs(tree.children_, members))
        ]
    events.sort()
    return _cut_levels(n, [(a, b) for _, a, b in events], levels, fewest=len(np.unique(top)))


# ---------------------------------------------------------------- names, representatives, scores


def cluster_name(weights: np.ndarray, hierarchy: Hierarchy, share: float = 0.6) -> str:
    """A cluster's name from its summed class weights: a class that holds ``share`` of the weight,
    else the most specific ancestor (superclass, or deeper concept of ``map.hierarchy``) whose
    classes hold ``share`` of it, else :func:`name_group` (lowest common ancestor of the leading
    classes, or the two leading classes). A cluster that is mostly animals is "animals", even with
    a few plant features among its hundreds."""
    w = np.clip(np.asarray(weights, dtype=np.float64), 0, None)
    total = w.sum()
    if total <= 0:
        return "unlabelled"
    p = w / total
    if p.max() >= share:
        return hierarchy.class_names[int(np.argmax(p))]
    held: dict[str, float] = {}
    depth: dict[str, int] = {}
    for c in range(len(p)):
        path = hierarchy.ancestors(c)
        for d, a in enumerate(path):
            held[a] = held.get(a, 0.0) + p[c]
            depth[a] = max(depth.get(a, 0), len(path) - d)  # height above the top: larger is deeper
    best = [a for a in sorted(held) if held[a] >= share]
    if best:
        return max(best, key=lambda a: (depth[a], held[a]))
    return name_group(w, hierarchy)


def sibling_names(weights: list[np.ndarray], hierarchy: Hierarchy) -> list[str]:
    """Names for sibling groups (their summed class weights, one array each): each its
    :func:`cluster_name`, and where siblings would share a name, each of them gets the class that is
    most distinctive of it among those siblings (its share of the weight minus their mean share,
    classes already in the name skipped) after the name, "animals: dog"; if two still agree,
    a number."""
    names = [cluster_name(w, hierarchy) for w in weights]
    classes = hierarchy.class_names
    for name in sorted(set(names)):
        same = [j for j, v in enumerate(names) if v == name]
        if len(same) < 2:
            continue
        W = np.stack([np.clip(np.asarray(weights[j], dtype=np.float64), 0, None) for j in same])
        share = W / np.maximum(W.sum(1, keepdims=True), 1e-12)  # each group's class distribution
        excess = share - share.mean(0, keepdims=True)  # against the colliding siblings
        in_name = set(name.replace(" / ", "/").split("/"))
        for row, j in enumerate(same):
            order = np.lexsort((-share[row], -excess[row]))
            pick = next((int(c) for c in order if classes[int(c)] not in in_name and share[row, c] > 0), None)
            if pick is not None:
                names[j] = f"{name}: {classes[pick]}"
    seen: dict[str, int] = {}
    for j, v in enumerate(names):
        if names.count(v) > 1:
            seen[v] = seen.get(v, 0) + 1
            names[j] = f"{v} {seen[v]}"
    return names


def representative(members: np.ndarray, xy: np.ndarray) -> int:
    """The member nearest the cluster's centroid on the layout."""
    centre = xy[members].mean(0)
    return int(members[int(np.argmin(((xy[members] - centre) ** 2).sum(1)))])


def evaluate(clusters: np.ndarray, class_w: np.ndarray, alive: np.ndarray, hierarchy: Hierarchy) -> dict:
    """Top-level clusters against the planted superclasses: purity and adjusted Rand index.

    Each live, clustered feature's reference group is the top ancestor (superclass) of the class
    with the largest share of its top examples.
    """
    from sklearn.metrics import adjusted_rand_score

    ok = alive & (class_w.sum(1) > 0) & (clusters[:, 0] >= 0)
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


# ---------------------------------------------------------------- the whole map


def build_map(
    vectors: np.ndarray,
    alive: np.ndarray,
    class_w: np.ndarray,
    hierarchy: Hierarchy,
    *,
    levels: list[int],
    cluster: str = "vectors",
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
) -> dict:
    """map.json's ``features``, ``levels`` and ``evaluation`` (see the module docstring)."""
    F = len(vectors)
    alive = np.asarray(alive, dtype=bool)
    live = np.flatnonzero(alive)
    xy = np.full((F, 2), np.nan)
    clusters = np.full((F, len(levels)), -1, dtype=np.int64)
    if len(live):
        xy[live] = layout(np.asarray(vectors)[live], n_neighbors, min_dist, seed)
        use = live[informative(np.asarray(vectors)[live])]
        if len(use) < 2:
            use = live
        k = min(levels)
        if cluster == "vectors":
            V = np.asarray(vectors, dtype=np.float64)[use]
            top = top_groups(V, k, cosine=True, n_neighbors=n_neighbors)
        else:
            top = top_groups(xy[use], k, cosine=False, n_neighbors=n_neighbors)
        clusters[use] = nested_within(xy[use], top, levels)
        rest = np.setdiff1d(live, use)
        if len(rest):  # live features without a vector to cluster by: their nearest clustered neighbour's
            d = ((xy[rest, None, :] - xy[None, use, :]) ** 2).sum(2)
            clusters[rest] = clusters[use[np.argmin(d, 1)]]
    out_levels = []
    for lvl in range(len(levels)):
        ids = [int(c) for c in np.unique(clusters[live, lvl])] if len(live) else []
        parents = (
            {c: int(clusters[np.flatnonzero(clusters[:, lvl] == c)[0], lvl - 1]) for c in ids} if lvl else {}
        )
        groups = {c: np.flatnonzero(clusters[:, lvl] == c) for c in ids}
        names: dict[int, str] = {}
        for parent in sorted(set(parents.values())) if lvl else [None]:
            sibs = [c for c in ids if parents.get(c) == parent]
            for c, name in zip(sibs, sibling_names([class_w[groups[c]].sum(0) for c in sibs], hierarchy)):
                names[c] = name
        out_levels.append(
            [
                {
                    "id": c,
                    "name": names[c],
                    "x": round(float(xy[groups[c], 0].mean()), 5),
                    "y": round(float(xy[groups[c], 1].mean()), 5),
                    "size": int(len(groups[c])),
                    "parent": parents.get(c) if lvl else None,
                    "representative": representative(groups[c], xy),
                    "members": groups[c].tolist(),
                }
                for c in ids
            ]
        )
    features = []
    for i in range(F):
        if alive[i]:
            features.append(
                {
                    "id": i,
                    "x": round(float(xy[i, 0]), 5),
                    "y": round(float(xy[i, 1]), 5),
                    "label": name_group(class_w[i], hierarchy),
                    "clusters": clusters[i].tolist(),
                }
            )
        else:
            features.append({"id": i, "dead": True, "label": "dead", "clusters": clusters[i].tolist()})
    return {
        "features": features,
        "levels": out_levels,
        "n_dead": int(F - len(live)),
        "evaluation": evaluate(clusters, class_w, alive, hierarchy),
    }
