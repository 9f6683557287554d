"""Page context for a unit's examples across its activation spectrum.

Each example shown (top or band) carries its image, a heat-map overlay the
page can toggle (a tile of the page's heat-map strip, ``images.HeatSprite``),
and the position of a crop around its arg-max, which atlas.js draws from the
same stored image (no extra file, no extra bytes per example in the page). Bands and co-occurrence come from
the
examples stage (atlasgen/scan.py, atlasgen/bands.py).
"""

from __future__ import annotations

import numpy as np

from atlasgen.site.fmt import fmt_count, fmt_num, fmt_pct
from atlasgen.site.images import DatasetImages, HeatSprite

CROP_ZOOM = 2.5  # the crop shows 1 / CROP_ZOOM of the image's side, centred on the arg-max position
N_COOCCURRING = 5  # features that fire together with a feature, on its page
N_LAYER_PAIRS = 20  # most frequent feature pairs on the layer page


def crop_position(pos, grid: tuple[int, int], zoom: float = CROP_ZOOM) -> str:
    """CSS background position that, at ``background-size: zoom*100%``, centres layer position ``pos`` (row,
    col).

    The size, 250 %, is in atlas.css (``.ex-crop``); atlas.js sets this position.
    """
    h, w = grid
    cy, cx = (int(pos[0]) + 0.5) / h, (int(pos[1]) + 0.5) / w
    # background-position p% puts the image's p% point at the box's p% point.
    px = min(max((cx * zoom - 0.5) / (zoom - 1), 0.0), 1.0)
    py = min(max((cy * zoom - 0.5) / (zoom - 1), 0.0), 1.0)
    return f"{px * 100:.0f}% {py * 100:.0f}%"  # 1 % of the 1.5-box overhang: under 2 px at 120 px


def example_items(
    dataset, class_link, idx, val, maps, pos, scale: float, images: DatasetImages, sprite: HeatSprite
) -> list[dict]:
    """One dict per shown example (index >= 0): image, heat-map tile, crop, value, class and facet.

    The heat-maps go into ``sprite`` (one per page); ``finish_heat`` sets each item's tile position once
    every example of the page is in.
    """
    shown = [j for j in range(len(idx)) if idx[j] >= 0]
    if not shown:
        return []
    grid = maps.shape[-2:]
    spatial = grid[0] * grid[1] > 1  # a class token (1x1) has no place on the image: no heat-map, no crop
    tiles = sprite.add(maps[shown], scale) if spatial else [None] * len(shown)
    out = []
    for j, tile in zip(shown, tiles):
        i = int(idx[j])
        c = int(dataset.labels[i])
        facet = ""
        if dataset.facets is not None and dataset.facet_names[c]:
            fi = int(dataset.facets[i])
            if 0 <= fi < len(dataset.facet_names[c]):
                facet = dataset.facet_names[c][fi]
        p = pos[j] if pos is not None else np.unravel_index(int(np.argmax(maps[j])), grid)
        out.append(
            {
                "src": images.url(i),
                "tile": tile,
                "heat": "",
                "crop": crop_position(p, grid) if spatial else "",
                "act": fmt_num(val[j]),
                "rel": fmt_pct(float(val[j]) / scale) if scale > 0 else "",
                "index": i,
                "facet": facet,
                **{"class_" + k: v for k, v in class_link(c).items()},
            }
        )
    return out


def finish_heat(sprite: HeatSprite, *groups: list[dict]) -> str:
    """Set every item's ``heat`` (its tile's vertical position in the strip); return the page's heat-map
    CSS."""
    if not len(sprite):
        return ""
    for items in groups:
        for e in items:
            if e["tile"] is not None:
                e["heat"] = sprite.position(e["tile"])
    return f".ex-img i{{background-image:url({sprite.data_uri()});{sprite.css()}}}"


def bands(dataset, class_link, ex, i: int, images: DatasetImages, sprite: HeatSprite) -> list[dict]:
    """The unit's activation bands, strongest first: nominal and actual edges, size, sampled examples."""
    if ex.band_idx is None or float(ex.max_act[i]) <= 0:
        return []
    scale = float(ex.max_act[i])
    # A band image already among the top examples is not shown again: the top band of a sparse
    # unit is often exactly its top examples. The rest stay a uniform sample of the band's other images.
    top = ex.top_idx[i][ex.top_idx[i] >= 0]
    band_idx = ex.band_idx[i]
    in_top = (band_idx[..., None] == top).any(-1) & (band_idx >= 0)  # (bands, r)
    out = []
    for b in range(band_idx.shape[0]):
        repeated = in_top[b]
        idx = np.where(repeated, -1, band_idx[b])
        hi, lo = float(ex.band_edges[b]), float(ex.band_edges[b + 1])
        rel_hi, rel_lo = float(ex.band_edges_rel[i, b]), float(ex.band_edges_rel[i, b + 1])
        out.append(
            {
                "id": b,
                "name": f"{lo * 100:.0f}\u2013{hi * 100:.0f} % of max",
                "range": f"{fmt_num(rel_lo * scale)} \u2013 {fmt_num(rel_hi * scale)}",
                "edges_note": f"edges used: {rel_lo:.3f}\u2013{rel_hi:.3f} of max (snapped to a log grid)",
                "count": fmt_count(int(ex.band_count[i, b])),
                "n": int(ex.band_count[i, b]),
                "in_top": int(repeated.sum()),
                "examples": example_items(
                    dataset,
                    class_link,
                    idx,
                    ex.band_val[i, b],
                    ex.band_maps[i, b],
                    ex.band_pos[i, b],
                    scale,
                    images,
                    sprite,
                ),
            }
        )
    return out


def _ranked_by_npmi(cooc: dict) -> bool:
    return "partner_npmi" in cooc


def cooccurring(cooc: dict | None, i: int) -> list[tuple[int, str]]:
    """(feature id, shown value) of the features that fire with feature ``i``: by NPMI ("NPMI 0.42")
    in artifacts that rank by it (atlasgen.cofiring), else by count ("P(fires | this fires)")."""
    if not cooc or cooc["partners"].shape[1] == 0:
        return []
    n_i = int(cooc["fires"][i])
    if n_i == 0:
        return []
    rows = zip(cooc["partners"][i][:N_COOCCURRING], cooc["partner_count"][i][:N_COOCCURRING])
    if _ranked_by_npmi(cooc):
        return [
            (int(j), f"NPMI {fmt_num(float(v), 2)}")
            for (j, c), v in zip(rows, cooc["partner_npmi"][i])
            if int(j) >= 0 and c > 0
        ]
    return [(int(j), fmt_pct(int(c) / n_i)) for j, c in rows if c > 0]


def cooccurring_note(cooc: dict) -> str:
    """The one-line definition of the partners' ranking, for the unit page."""
    if not _ranked_by_npmi(cooc):
        return "share of the sampled images where this feature fires on which the other fires too"
    return (
        f"ranked by normalised PMI over a uniform sample of {fmt_count(int(cooc['n_images']))} images: "
        "0 = independent, 1 = fire only together (corrects for density); pairs seen together on fewer than "
        f"{int(cooc['min_count'])} sampled images are left out"
    )


def layer_pairs(cooc: dict | None, cards: list[dict]) -> dict | None:
    """The feature pairs of a layer that fire together most (by NPMI where the artifact has it), for its
    page."""
    if not cooc or len(cooc["pairs"]) == 0:
        return None
    n = int(cooc["n_images"])
    npmi = cooc["pair_npmi"] if "pair_npmi" in cooc else [None] * len(cooc["pairs"])
    rows = [
        {
            "a": cards[int(a)],
            "b": cards[int(b)],
            "count": fmt_count(int(c)),
            "share": fmt_pct(int(c) / max(n, 1)),
            "jaccard": fmt_num(float(jac), 2),
            "npmi": "" if v is None else fmt_num(float(v), 2),
        }
        for (a, b), c, jac, v in zip(
            cooc["pairs"][:N_LAYER_PAIRS], cooc["pair_count"], cooc["pair_jaccard"], npmi
        )
    ]
    return {
        "rows": rows,
        "n_images": fmt_count(n),
        "npmi": "pair_npmi" in cooc,
        "min_count": int(cooc["min_count"]) if "min_count" in cooc else None,
    }
