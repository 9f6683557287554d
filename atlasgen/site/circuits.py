"""Page pieces for circuits: weights to neighbouring layers, importance, the class circuit diagram.

Reads only the arrays loaded by ``artifacts`` (circuits/L/upstream|downstream,
importance/L); returns plain dicts and inline SVG (``Markup``) for the
templates ``sections/weights.html`` and ``class.html``.
"""

from __future__ import annotations

import base64
from html import escape

import numpy as np
from markupsafe import Markup

from atlasgen.site import numbers
from atlasgen.site.fmt import fmt_num, fmt_signed
from atlasgen.site.images import png_rgba

N_WEIGHTS = 6  # partners shown per direction and sign on a unit page
N_CIRCUIT_TOP = 4  # layer-L features in the class circuit
N_CIRCUIT_BELOW = 3  # layer-(L-1) features per layer-L feature
KIND_KEYS = {"f": "features", "n": "neurons"}


# ---------------------------------------------------------------- importance


def importance_stats(L, kind: str, i: int) -> list[dict]:
    """Stats entries for a unit page: images lost from the top k (with its rank among live units, ties shown
    as ties; a dead unit has no rank) and from the top 1."""
    imp = L.importance
    if imp is None:
        if L.importance_skipped:
            return [{"name": "importance", "value": "not computed", "help": L.importance_skipped}]
        return []
    key = KIND_KEYS[kind]
    info = imp["info"]
    k, n = info.get("top_k", 10), info.get("images", 0)
    topk = imp[f"{key}_topk"]
    live = (L.features if kind == "f" else L.neurons).density > 0
    rank, ties = numbers.competition_ranks(topk, live)
    return [
        numbers.stat(
            "importance",
            numbers.rank_text(int(topk[i]), int(rank[i]), int(ties[i]), int(live.sum())),
            help=f"mean ablation (Terekhov): of {n} held-out images, how many lose the true class from "
            f"the top {k} when this unit is replaced by its dataset mean; {info.get('method', '')}",
        ),
        numbers.stat("importance-top-1", numbers.net_count_text(int(imp[f"{key}_top1"][i]))),
    ]


def importance_sort_key(L, kind: str, i: int) -> str:
    """data-importance of a card: the top-k count (larger first), '' without importance."""
    if L.importance is None:
        return ""
    return str(int(L.importance[f"{KIND_KEYS[kind]}_topk"][i]))


# ---------------------------------------------------------------- class facets

FACET_SHARE = (
    0.5  # a unit detects a facet when that facet's images give at least this share of its contribution
)


def facet_assignment(group_contrib: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which facet of a class each unit's contribution to the class comes from.

    ``group_contrib`` (U, n_facets): each unit's contribution to the class logit on the images of each
    of the class's facets. A unit's share of facet f is its positive contribution on f over the sum of
    its positive contributions on all the class's facets; the unit is assigned the facet of the largest
    share when that share is at least FACET_SHARE (it adds at least as much on that facet's images as
    on all the others' together), else -1 (it contributes across facets). Returns (facet or -1, share)."""
    pos = np.maximum(np.asarray(group_contrib, dtype=np.float64), 0.0)
    total = pos.sum(1)
    share = np.divide(pos, total[:, None], out=np.zeros_like(pos), where=total[:, None] > 0)
    if not share.shape[1]:
        return np.full(len(share), -1, dtype=np.int64), np.zeros(len(share))
    best = share.argmax(1)
    top = share[np.arange(len(share)), best]
    return np.where(top >= FACET_SHARE, best, -1), top


def dense_units(L, kind: str) -> np.ndarray:
    """(U,) bool: the units of one kind ('f' or 'n') flagged dense (atlasgen.unitlabels; all False in
    artifacts written before the flags)."""
    ex = L.features if kind == "f" else L.neurons
    if ex.flag_dense is None:
        return np.zeros(ex.n_units, dtype=bool)
    return np.asarray(ex.flag_dense, dtype=bool)


SELECTIVE_LIFT = 8.0  # a unit is selective for a class at this lift (at most half the class count)


def class_lift(L, kind: str) -> np.ndarray | None:
    """(U, K) the lift of each unit of one kind ('f' or 'n') on each class (``L.class_lift``)."""
    return L.class_lift[KIND_KEYS[kind]]


def selectivity_threshold(n_classes: int) -> float:
    """The lift at which a unit counts as selective for a class: SELECTIVE_LIFT, or half the class
    count when there are fewer than 2 x SELECTIVE_LIFT classes (half its activation mass on the class)."""
    return min(SELECTIVE_LIFT, n_classes / 2)


DUPLICATE_COSINE = 0.5  # per-image contributions this similar to a unit ranked above: a near-duplicate
N_DUPLICATE_CANDIDATES = 64  # the leading units of a ranking compared for near-duplicates


def _image_contributions(L, kind: str, c: int, units: np.ndarray) -> np.ndarray | None:
    """(images of class c, len(units)): the positive contribution of each of ``units`` to class c on
    each of the class's images, from the largest contributions kept per image (0 where a unit is not
    among an image's kept units); None in artifacts without them."""
    C = L.contributions
    key = f"image_{KIND_KEYS[kind]}_units"
    if C is None or key not in C:
        return None
    rows = np.flatnonzero(C["image_class"] == c)
    kept = C[key][rows]
    vals = np.maximum(C[f"image_{KIND_KEYS[kind]}_values"][rows], 0.0)
    col = np.full(C[KIND_KEYS[kind]].shape[0], -1, dtype=np.int64)
    col[units] = np.arange(len(units))
    cols = col[kept]
    hit = cols >= 0
    out = np.zeros((len(rows), len(units)))
    out[np.nonzero(hit)[0], cols[hit]] = vals[hit]
    return out


def _set_apart_duplicates(L, kind: str, c: int, units: np.ndarray) -> np.ndarray:
    """``units`` (ranked) with each near-duplicate moved after the units that are not: walking the
    first N_DUPLICATE_CANDIDATES in order, a unit whose per-image contributions on the class's images
    have cosine at least DUPLICATE_COSINE with a unit kept above it is set apart; the set-apart units
    follow the kept ones in their own order, then the rest."""
    head = units[:N_DUPLICATE_CANDIDATES]
    V = _image_contributions(L, kind, c, head)
    if V is None or len(head) < 2:
        return units
    norm = np.linalg.norm(V, axis=0)
    unit_vectors = np.divide(V, norm[None], out=np.zeros_like(V), where=norm[None] > 0)
    cosine = unit_vectors.T @ unit_vectors
    kept: list[int] = []
    apart: list[int] = []
    for j in range(len(head)):
        (apart if kept and cosine[j, kept].max() >= DUPLICATE_COSINE else kept).append(j)
    return np.concatenate([head[kept], head[apart], units[N_DUPLICATE_CANDIDATES:]])


def class_ranking(L, kind: str, c: int) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
    """Units of one kind ('f' or 'n') ranked for class c: (order, the ranking values, what they are,
    which units are selective for c).

    By contribution to the class logit on the class's images where the circuits stage computed it, else
    by weight. With contributions, the units selective for the class (lift at least
    :func:`selectivity_threshold`, :func:`class_lift`) come first: a unit that adds to the logit but
    fires as much on every class is no facet of this one. Units flagged dense and not selective come
    after all the others (a unit that fires on a large share of the images scanned adds to many
    classes' logits; it stays in the list, ranked among those units). Ties go to the lower index.
    Among the units with a positive contribution, near-duplicates (their contributions come from the
    same images of the class as a unit above them, :func:`_set_apart_duplicates`) move after the
    others, separately for the dense unselective units and the rest."""
    weights = (L.class_weights_features if kind == "f" else L.class_weights_neurons)[:, c]
    dense = dense_units(L, kind)
    lift = class_lift(L, kind)
    if L.contributions is None or lift is None:
        selective = np.zeros(len(weights), dtype=bool)
        values, by = weights, "weight"
        if L.contributions is not None:
            values, by = L.contributions[KIND_KEYS[kind]][:, c], "contribution"
    else:
        selective = lift[:, c] >= selectivity_threshold(lift.shape[1])
        values, by = L.contributions[KIND_KEYS[kind]][:, c], "contribution"
    crowd = dense & ~selective
    order = np.lexsort((np.arange(len(values)), -values, ~selective, crowd))
    if by == "contribution":
        positive = values[order] > 0
        order = np.concatenate(
            [
                _set_apart_duplicates(L, kind, c, order[positive & ~crowd[order]]),
                _set_apart_duplicates(L, kind, c, order[positive & crowd[order]]),
                order[~positive],
            ]
        )
    return order, values, by, selective


N_CLASS_DENSE = 4  # dense units shown on a class page after the others, per layer and kind


def class_facets(L, cards: list[dict], kind: str, c: int, facet_names: list[str], n: int) -> dict:
    """The top ``n`` units of a class with a positive ranking value that are not dense-and-unselective
    (:func:`class_ranking`: the selective ones first), then the top N_CLASS_DENSE dense units that are
    not selective, as cards carrying their rank, contribution, raw weight and lift. When the dataset
    records the class's facets they are grouped by the facet they detect (:func:`facet_assignment`),
    the dense units in a group of their own. Returns {"units", "groups" ([] without facets),
    "ranked_by", "n_selective" and "n_dense" (selective and dense units among "units")}."""
    order, values, ranked_by, selective = class_ranking(L, kind, c)
    weights = (L.class_weights_features if kind == "f" else L.class_weights_neurons)[:, c]
    crowd_of = dense_units(L, kind) & ~selective
    lift = class_lift(L, kind)
    positive = [int(u) for u in order if values[u] > 0]
    # the top n others, then the strongest dense units: they often add the most, and the page says so
    top = [u for u in positive if not crowd_of[u]][:n] + [u for u in positive if crowd_of[u]][:N_CLASS_DENSE]
    units = []
    for rank, u in enumerate(top, 1):
        # no-break spaces inside each pair: a narrow card wraps between pairs, never inside one
        if ranked_by == "contribution":
            value = f"#{rank}\u00a0{fmt_signed(float(values[u]))} · w\u00a0{fmt_signed(float(weights[u]))}"
            if lift is not None:
                value += f" · lift\u00a0{fmt_num(float(lift[u, c]), 2)}"
        else:
            value = f"#{rank} w\u00a0{fmt_signed(float(weights[u]))}"
        units.append({**cards[u], "value": value, "rank": rank, "selective": bool(selective[u])})
    groups = []
    info = L.contributions["info"] if L.contributions is not None else {}
    cols = [g for g, (gc, _) in enumerate(info.get("groups", [])) if gc == c]
    key = f"{KIND_KEYS[kind]}_group"
    if facet_names and cols and top and key in L.contributions:
        facet_col = {int(info["groups"][g][1]): j for j, g in enumerate(cols)}
        assigned, _ = facet_assignment(L.contributions[key][:, cols][top])
        others = [r for r in range(len(top)) if not crowd_of[top[r]]]
        for fi, name in enumerate(facet_names):
            if fi in facet_col:
                members = [units[r] for r in others if assigned[r] == facet_col[fi]]
                groups.append({"name": name, "units": members, "dense": False})
        rest = [units[r] for r in others if assigned[r] < 0]
        if rest:
            groups.append({"name": "", "units": rest, "dense": False})
        crowd = [units[r] for r in range(len(top)) if crowd_of[top[r]]]
        if crowd:
            groups.append({"name": "", "units": crowd, "dense": True})
    return {
        "units": units,
        "groups": groups,
        "ranked_by": ranked_by,
        "n_selective": sum(bool(selective[u]) for u in top),
        "n_dense": sum(bool(crowd_of[u]) for u in top),
    }


# ---------------------------------------------------------------- weight kernels


def _rgb(v: float, scale: float) -> tuple[int, int, int]:
    """Diverging colour: orange-red for positive, blue for negative, white for zero."""
    t = 0.0 if scale <= 0 else max(-1.0, min(1.0, v / scale))
    if t >= 0:
        return 255, round(255 - 140 * t), round(255 - 215 * t)
    return round(255 + 215 * t), round(255 + 120 * t), 255


def kernel_img(kernel: np.ndarray, scale: float, title: str) -> Markup:
    """A kernel (kh, kw) as a grid of coloured cells, like the Circuits weight explorer: a PNG of one
    pixel per offset, inline and drawn 10 px a cell without smoothing (atlas.css), about a fifth of
    the bytes of an SVG rectangle per cell (a feature page lists a dozen kernels per adjacent layer)."""
    kh, kw = kernel.shape
    rgba = np.full((kh, kw, 4), 255, dtype=np.uint8)
    for y in range(kh):
        for x in range(kw):
            rgba[y, x, :3] = _rgb(float(kernel[y, x]), scale)
    data = base64.b64encode(png_rgba(rgba)).decode("ascii")
    return Markup(
        f'<img class="kernel" src="data:image/png;base64,{data}" width="{kw * 10}" height="{kh * 10}" '
        f'alt="{escape(title)}" title="{escape(title)}">'
    )


def _partners(
    other_ix, kind: str, idx: np.ndarray, w: np.ndarray, kernels: np.ndarray, sign: int
) -> list[dict]:
    """Cards of the partner units with one sign, strongest first, each with its kernel."""
    k = len(idx) // 2
    cols = range(k) if sign > 0 else range(k, 2 * k)
    chosen = [c for c in cols if (w[c] > 0 if sign > 0 else w[c] < 0)][:N_WEIGHTS]
    scale = float(np.abs(kernels).max()) if kernels.size else 0.0
    cards = other_ix.feature_cards if kind == "f" else other_ix.neuron_cards
    out = []
    for c in chosen:
        card = cards[int(idx[c])]
        out.append(
            {
                **card,
                "value": fmt_signed(float(w[c])),
                "kernel": kernel_img(kernels[c], scale, f"weights of {card['code']} per spatial offset"),
            }
        )
    return out


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[0].upper() + text[1:]) if text else "the weights could not be computed."


def unit_weights(L, indexes: dict, kind: str, i: int) -> list[dict]:
    """Upstream and downstream weight groups for a unit page (empty without a neighbouring layer)."""
    key = KIND_KEYS[kind]
    groups = []
    for side, data, verb in (("up", L.upstream, "from"), ("down", L.downstream, "into")):
        skipped = L.upstream_skipped if side == "up" else L.downstream_skipped
        if data is None and skipped and skipped.get("layer") in indexes:
            groups.append(
                {
                    "id": f"weights-{side}",
                    "title": f"Weights {verb} {skipped['layer']}",
                    "skipped": _sentence(skipped.get("reason", "")),
                }
            )
            continue
        if data is None or data["info"].get("layer") not in indexes:
            continue
        other = indexes[data["info"]["layer"]]
        idx, w, kern = data[f"{key}_idx"][i], data[f"{key}_w"][i], data[f"{key}_kernel"][i]
        what = "features" if kind == "f" else "neurons"
        groups.append(
            {
                "id": f"weights-{side}",
                "title": f"Weights {verb} {other.layer.name} {what}",
                "excite": _partners(other, kind, idx, w, kern, +1),
                "inhibit": _partners(other, kind, idx, w, kern, -1),
                "layer": other.layer.name,
                "upstream": side == "up",
                "skipped": None,
                "kernel": "\u00d7".join(str(v) for v in data["info"].get("kernel", [])),
            }
        )
    return groups


# ---------------------------------------------------------------- class circuit

# Geometry of the class circuit (SVG user units; the figure scrolls sideways where it does not fit).
_C_PAD, _C_TIER = 10, 22  # outer margin; left column of the rotated layer names
_C_UP, _C_LOW, _C_PITCH, _C_GROUP_GAP = 72, 56, 84, 26  # node sides (top, bottom row), pitch, group gap
_C_CHAR = 5.6  # mean width of a 10 px caption character, for truncating labels to their column


def _fit(text: str, width: float) -> str:
    """``text`` cut with an ellipsis to about ``width`` units of 10 px caption."""
    n = max(3, int(width / _C_CHAR))
    return text if len(text) <= n else text[: n - 1].rstrip() + "\u2026"


def _node_parts(root: str, card: dict, x: float, y: float, size: int, width: float, tip: str) -> list[str]:
    """A linked unit: thumbnail (greyed when its visualisation failed), its code and its label below."""
    code, label = card["code"], card.get("label") or ""
    title = f"{code}{(' ' + label) if label else ''}: {tip}"
    parts = [f'<a href="{escape(root + card["href"])}"><title>{escape(title)}</title>']
    left = f"{x - size / 2:.1f}"
    if card.get("thumb"):
        failed = ' class="vis-failed"' if card.get("vis_failed") else ""
        parts.append(
            f'<image{failed} href="{escape(root + card["thumb"])}" x="{left}" y="{y:.1f}" width="{size}" '
            f'height="{size}" preserveAspectRatio="xMidYMid slice"/>'
        )
    else:
        parts.append(f'<rect class="node-empty" x="{left}" y="{y:.1f}" width="{size}" height="{size}"/>')
    parts.append(f'<rect class="node-frame" x="{left}" y="{y:.1f}" width="{size}" height="{size}"/>')
    parts.append(
        f'<text class="node-code" x="{x:.1f}" y="{y + size + 13:.1f}" '
        f'text-anchor="middle">{escape(code)}</text>'
    )
    if label:
        parts.append(
            f'<text class="node-label" x="{x:.1f}" y="{y + size + 26:.1f}" text-anchor="middle">'
            f"{escape(_fit(label, width))}</text>"
        )
    parts.append("</a>")
    return parts


def _edge(x1, y1, x2, y2, w: float, scale: float, tip: str) -> str:
    """A signed edge: solid warm for a positive value, dashed blue for a negative one, width by |value|."""
    width = 1.0 + 5.0 * (abs(w) / scale if scale > 0 else 0)
    cls = "edge pos" if w > 0 else "edge neg"
    ym = (y1 + y2) / 2
    return (
        f'<path class="{cls}" d="M{x1:.1f},{y1:.1f} C{x1:.1f},{ym:.1f} {x2:.1f},{ym:.1f} {x2:.1f},{y2:.1f}" '
        f'stroke-width="{width:.2f}"><title>{escape(tip)}</title></path>'
    )


def _edge_label(x: float, y: float, w: float, came_from: float) -> str:
    """The value of the edge that enters a node at x, just above the node (haloed), on the side of the
    edge away from the one it comes from (``came_from``: the x it starts at)."""
    cls = "edge-value pos" if w > 0 else "edge-value neg"
    if came_from > x + 1:  # from the right: the label on the left
        return f'<text class="{cls}" x="{x - 6:.1f}" y="{y:.1f}" text-anchor="end">{fmt_signed(w)}</text>'
    return f'<text class="{cls}" x="{x + 6:.1f}" y="{y:.1f}">{fmt_signed(w)}</text>'


def circuit_links(upstream: dict, f: int, n: int, live: np.ndarray) -> list[tuple[int, float]]:
    """The ``n`` lower-layer features with the strongest expanded weights into feature ``f``, either sign:
    (feature, weight), largest |weight| first (ties: the stored order, positives first). Features that
    never fire on the scanned images and zero weights are left out."""
    idx, w = upstream["features_idx"][f], upstream["features_w"][f]
    cols = [c for c in np.argsort(-np.abs(w), kind="stable") if w[c] != 0 and live[int(idx[c])]]
    out: list[tuple[int, float]] = []
    for c in cols:
        g = int(idx[c])
        if g not in (x for x, _ in out):
            out.append((g, float(w[c])))
        if len(out) == n:
            break
    return out


def class_circuit(root: str, class_name: str, c: int, layers: list, indexes: dict) -> dict | None:
    """Class -> its top contributing features of the last layer -> for each, the features one studied layer
    below with the strongest expanded weights into it (either sign), as SVG.

    Each top feature heads a group of its own lower features (a lower feature that drives two of them
    appears in both groups), so no edges cross and every edge carries its value beside it, just above the
    node it
    enters. Returns None without layers; with one studied layer, ``svg`` is None and ``note`` explains.
    """
    if not layers:
        return None
    top = next(
        (
            L
            for L in reversed(layers)
            if L.upstream is not None and L.upstream["info"].get("layer") in indexes
        ),
        None,
    )
    if top is None:
        skipped = next((L for L in reversed(layers) if L.upstream_skipped), None)
        if skipped is not None:
            note = (
                f"No circuit from {skipped.upstream_skipped.get('layer')} to {skipped.name}: "
                f"{_sentence(skipped.upstream_skipped.get('reason', ''))}"
            )
        elif len(layers) > 1:
            note = (
                "No circuit: layer-to-layer weights link consecutive studied layers that are whole module "
                "outputs, and no pair of the studied layers is (a channel range or a token view "
                "has no kernel)."
            )
        else:
            note = (
                "The circuit's second step needs a second studied layer below this one "
                "(add it to `layers` in the config): its SAE features are then linked to these by "
                "expanded weights."
            )
        return {"svg": None, "layer": layers[-1].name, "note": note, "stops": None}
    below = indexes[top.upstream["info"]["layer"]]
    ix = indexes[top.name]
    later = layers[layers.index(top) + 1 :]
    cut = next((L for L in later if L.upstream_skipped), None)
    stops = (
        (
            f"The circuit stops at {top.name}: no weights from {cut.upstream_skipped.get('layer')} "
            f"to {cut.name}. "
            f"{_sentence(cut.upstream_skipped.get('reason', ''))}"
        )
        if cut is not None
        else None
    )
    # The same ranking as the class page's lists: contribution on the class's images, else weight,
    # selective features first, dense features that are not selective last.
    order, wc, ranked_by, _ = class_ranking(top, "f", c)
    upper = [int(f) for f in order if wc[f] > 0][:N_CIRCUIT_TOP]
    if not upper:
        what = "contributes positively to" if ranked_by == "contribution" else "has a positive weight on"
        return {
            "svg": None,
            "layer": top.name,
            "note": f"No {top.name} feature {what} this class.",
            "stops": stops,
        }
    live = below.layer.features.density > 0
    groups = [(f, circuit_links(top.upstream, f, N_CIRCUIT_BELOW, live)) for f in upper]
    # Columns: each group is as wide as its children (at least the upper node and its caption).
    widths = [max(_C_UP + 24, len(kids) * _C_PITCH) for _, kids in groups]
    width = 2 * _C_PAD + _C_TIER + sum(widths) + _C_GROUP_GAP * (len(groups) - 1)
    y_class, class_h = _C_PAD, 34
    y_up = y_class + class_h + 64
    y_low = y_up + _C_UP + 30 + 70  # below the upper captions, room for the edges and their values
    height = y_low + _C_LOW + 32  # the bottom row's two caption lines
    cx = _C_PAD + _C_TIER + (width - 2 * _C_PAD - _C_TIER) / 2
    class_scale = float(max(wc[f] for f in upper))
    link_scale = max((abs(w) for _, kids in groups for _, w in kids), default=0.0)
    what = "contribution" if ranked_by == "contribution" else "weight"
    parts = [
        f'<svg class="circuit" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'height="{height:.0f}" '
        f'role="img" aria-label="Circuit of class {escape(class_name)}: its top {top.name} features and the '
        f'{below.layer.name} features with the strongest weights into each">'
    ]
    # Class edges first (under everything), then one <g> per top feature: its node, the edges into it from
    # below, and their values.
    x, xs, groups_svg = _C_PAD + _C_TIER, [], []
    for (f, kids), gw in zip(groups, widths):
        xu = x + gw / 2
        xs.append(xu)
        card = ix.feature_cards[f]
        v = float(wc[f])
        tip = f"{what} to {class_name}: {fmt_signed(v)}"
        parts.append(_edge(cx, y_class + class_h, xu, y_up, v, class_scale, f"{card['code']} {tip}"))
        g_parts = ['<g class="circuit-group">', _edge_label(xu, y_up - 8, v, cx)]
        g_parts += _node_parts(root, card, xu, y_up, _C_UP, gw, tip)
        x0 = xu - (len(kids) - 1) * _C_PITCH / 2
        nodes = []
        for j, (g, w) in enumerate(kids):
            xl = x0 + j * _C_PITCH
            low = below.feature_cards[g]
            edge_tip = f"weight {low['code']} \u2192 {card['code']}: {fmt_signed(w)}"
            g_parts.append(_edge(xu, y_up + _C_UP + 30, xl, y_low, w, link_scale, edge_tip))
            nodes += [_edge_label(xl, y_low - 8, w, xu)]
            nodes += _node_parts(root, low, xl, y_low, _C_LOW, _C_PITCH - 4, edge_tip)
        groups_svg += g_parts + nodes + ["</g>"]
        x += gw + _C_GROUP_GAP
    box_w = max(120, 9 * len(class_name) + 24)
    parts.append(
        f'<rect class="class-node" x="{cx - box_w / 2:.1f}" y="{y_class}" width="{box_w}" '
        f'height="{class_h}" rx="6"/>'
    )
    parts.append(
        f'<text class="class-label" x="{cx:.1f}" y="{y_class + 22}" '
        f'text-anchor="middle">{escape(class_name)}</text>'
    )
    parts += groups_svg
    for name, y_mid in ((top.name, y_up + _C_UP / 2), (below.layer.name, y_low + _C_LOW / 2)):
        tx = _C_PAD + 12
        parts.append(
            f'<text class="tier" x="{tx}" y="{y_mid:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 {tx} {y_mid:.1f})">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return {
        "svg": Markup("".join(parts)),
        "layer": top.name,
        "below": below.layer.name,
        "stops": stops,
        "method": top.circuits_info.get("method", ""),
        "exact": bool(top.circuits_info.get("exact")),
        "ranked_by": ranked_by,
        "contribution": str((top.contributions or {}).get("info", {}).get("method", "")),
        "note": "",
    }


# ---------------------------------------------------------------- a collection's circuit


def collection_edges(collection, lower, upper) -> list[tuple[int, int, float]]:
    """The weights between a circuit collection's units of ``lower`` and of ``upper`` (the layer whose
    ``upstream`` artifact reads from ``lower``): (lower id, upper id, weight summed over offsets), in the
    collection's order of the upper then the lower units. A pair is known when one unit is among the
    other's stored strongest partners (circuits.top_k of each sign, upstream.npz or downstream.npz);
    both files hold the same expanded weight for it. Other pairs are not drawn."""
    kind = collection.members[0].kind
    key = KIND_KEYS[kind]
    low = [m.unit for m in collection.members if m.layer == lower.name]
    up = [m.unit for m in collection.members if m.layer == upper.name]
    known: dict[tuple[int, int], float] = {}
    for f in up:
        for g, w in zip(upper.upstream[f"{key}_idx"][f], upper.upstream[f"{key}_w"][f]):
            known.setdefault((int(g), f), float(w))
    down = lower.downstream
    if down is not None:
        for g in low:
            for f, w in zip(down[f"{key}_idx"][g], down[f"{key}_w"][g]):
                known.setdefault((g, int(f)), float(w))
    return [(g, f, known[(g, f)]) for f in up for g in low if known.get((g, f), 0.0) != 0.0]


def collection_circuit(root: str, collection, lower, upper, indexes: dict) -> dict:
    """A circuit collection as SVG: its ``upper`` units on top, its ``lower`` units below, in the
    collection's order, each known weight between them an edge (signed colour, width by |weight|; the
    value in its tooltip and in the table the page prints under the figure)."""
    kind = collection.members[0].kind
    edges = collection_edges(collection, lower, upper)
    low_ix, up_ix = indexes[lower.name], indexes[upper.name]
    cards = {"f": "feature_cards", "n": "neuron_cards"}[kind]
    up = [m.unit for m in collection.members if m.layer == upper.name]
    low = [m.unit for m in collection.members if m.layer == lower.name]
    n = max(len(up), len(low))
    width = 2 * _C_PAD + _C_TIER + n * _C_PITCH
    y_up = _C_PAD + 16
    y_low = y_up + _C_UP + 30 + 80
    height = y_low + _C_LOW + 32
    left = _C_PAD + _C_TIER

    def xs(count: int) -> list[float]:
        x0 = left + (n - count) * _C_PITCH / 2 + _C_PITCH / 2
        return [x0 + j * _C_PITCH for j in range(count)]

    x_up, x_low = dict(zip(up, xs(len(up)))), dict(zip(low, xs(len(low))))
    scale = max((abs(w) for *_, w in edges), default=0.0)
    what = "features" if kind == "f" else "neurons"
    parts = [
        f'<svg class="circuit" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'height="{height:.0f}" '
        f'role="img" aria-label="Weights from the collection\'s {lower.name} {what} into its '
        f'{upper.name} {what}">'
    ]
    rows = []
    for g, f, w in edges:
        a = {**getattr(low_ix, cards)[g], "code": f"{lower.name}/{kind}/{g}"}
        b = {**getattr(up_ix, cards)[f], "code": f"{upper.name}/{kind}/{f}"}
        tip = f"weight {a['code']} \u2192 {b['code']}: {fmt_signed(w)}"
        parts.append(_edge(x_low[g], y_low, x_up[f], y_up + _C_UP + 30, w, scale, tip))
        rows.append({"lower": a, "upper": b, "weight": fmt_signed(w), "negative": w < 0})
    for units, x_of, ix, layer, y, size in (
        (up, x_up, up_ix, upper.name, y_up, _C_UP),
        (low, x_low, low_ix, lower.name, y_low, _C_LOW),
    ):
        for u in units:
            card = {**getattr(ix, cards)[u], "code": f"{layer}/{kind}/{u}"}
            parts += _node_parts(
                root, card, x_of[u], y, size, _C_PITCH - 4, f"{layer} {KIND_KEYS[kind][:-1]} {u}"
            )
        tx, y_mid = _C_PAD + 12, y + size / 2
        parts.append(
            f'<text class="tier" x="{tx}" y="{y_mid:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 {tx} {y_mid:.1f})">{escape(layer)}</text>'
        )
    parts.append("</svg>")
    info = upper.upstream["info"]
    return {
        "svg": Markup("".join(parts)),
        "upper": upper.name,
        "lower": lower.name,
        "what": what,
        "edges": rows,
        "n_pairs": len(up) * len(low),
        "top_k": int(info.get("top_k") or upper.upstream[f"{KIND_KEYS[kind]}_idx"].shape[1] // 2),
        "method": str(info.get("method", "")),
        "kernel": "\u00d7".join(str(v) for v in info.get("kernel", [])),
    }
