"""Page pieces for the blind rating survey, "guess the image", and imported ratings.

``LayerRatings`` is computed once per layer (the survey sample, the imported
ratings of this layer's SAE, the game rounds); page builders read it. Every
string that came from a rater is left to Jinja's autoescape (templates) or
passed through ``html.escape`` (inline SVG); data for the scripts is JSON
with ``</`` escaped (``fmt.js_global``).
"""

from __future__ import annotations

import hashlib
import json
from html import escape
from pathlib import Path

import numpy as np
from markupsafe import Markup

from atlasgen import ratings as R
from atlasgen.site import urls
from atlasgen.site.context import base_context, crumbs
from atlasgen.site.fmt import fmt_num, json_num
from atlasgen.site.urls import game_data_url, game_url, rate_data_url, rate_url

GROUP_NAMES = {
    "top": "most important",
    "middle": "middle of the ranking",
    "bottom": "least important",
    "random": "random",
}
N_PHRASES = 6  # raters' Q2 phrases shown on a feature page
N_GAME_FEATURES_MAX = 12


class LayerRatings:
    """Survey sample, imported ratings and game rounds of one layer."""

    def __init__(
        self,
        ix,
        records: list[dict],
        ratings_cfg: dict,
        game_cfg: dict,
        survey_dir: Path,
        game_dir: Path | None,
    ):
        L = ix.layer
        self.cfg = ratings_cfg
        self.game_cfg = game_cfg
        # The sample and the importance it is cut from: the survey stage's artifact (stages/survey.py).
        info = json.loads((survey_dir / "survey.json").read_text(encoding="utf-8"))
        with np.load(survey_dir / "survey.npz") as z:
            self.importance = {
                "values": np.asarray(z["importance"]),
                "rank": np.asarray(z["importance_rank"]),
                "source": info["importance_source"],
                "exact": bool(info["importance_exact"]),
            }
            self.sample = [(int(f), info["groups"][int(g)]) for f, g in zip(z["features"], z["groups"])]
        self.group_of = {f: g for f, g in self.sample}
        self.by_feature, self.other_sae = R.per_feature(records, ix.site.model, L.name, L.sae_sha256)
        ident = R.FORMAT + "|" + L.sae_sha256 + "|" + ",".join(str(f) for f, _ in self.sample)
        self.survey_id = hashlib.sha256(ident.encode()).hexdigest()[:12]
        self.game = None
        if game_dir is not None and (game_dir / "game.npz").is_file():
            with np.load(game_dir / "game.npz") as z:
                self.game = {k: np.asarray(z[k]) for k in z.files}


def image_indices(lr: LayerRatings) -> list[int]:
    """Dataset images the game pages show (candidates), to prepare with the other images."""
    if lr.game is None:
        return []
    return [int(i) for i in lr.game["candidates"].ravel().tolist()]


# ---------------------------------------------------------------- survey page


def rate_page(site, ix, images) -> tuple[str, str, dict]:
    lr: LayerRatings = ix.ratings
    L, m = ix.layer, site.model
    path = rate_url(m, L.name)
    ctx = base_context(
        site,
        path,
        f"{L.name} · rate features",
        crumbs(site, (m, urls.model(m)), (L.name, urls.layer(m, L.name)), ("rate", None)),
        layer_name=L.name,
        layer_href=urls.layer(m, L.name),
        n_items=len(lr.sample),
        n_examples=int(lr.cfg["examples"]),
        groups=[GROUP_NAMES[g] for g in lr.cfg["groups"]],
        # The first item's visualisation in the HTML (an <img> needs a src; rate.js swaps it per item).
        first_vis=ix.vis["f"].get(lr.sample[0][0]) if lr.sample else None,
        scripts=[rate_data_url(m, L.name), "static/rate.js"],
        body_class="rate",
    )
    return path, "rate.html", ctx


def survey_data(site, ix, images) -> dict:
    """rate/survey.js: what the page needs, image paths relative to the rate page. No group labels (blind)."""
    lr: LayerRatings = ix.ratings
    L, m = ix.layer, site.model
    root = urls.root_prefix(rate_url(m, L.name))
    k = int(lr.cfg["examples"])
    items = []
    for f, _group in lr.sample:
        idx = [int(j) for j in L.features.top_idx[f] if j >= 0][:k]
        items.append({"id": f, "vis": root + ix.vis["f"][f], "examples": [root + images.url(j) for j in idx]})
    return {
        "format": R.FORMAT,
        "version": R.VERSION,
        "model": m,
        "layer": L.name,
        "sae_sha256": L.sae_sha256,
        "survey": lr.survey_id,
        "key": f"atlasgen-rate:{m}/{L.name}:{lr.survey_id}",
        "pixelated": bool(images.pixelated),
        "items": items,
    }


# ---------------------------------------------------------------- game page


def game_page(site, ix) -> tuple[str, str, dict]:
    lr: LayerRatings = ix.ratings
    L, m = ix.layer, site.model
    path = game_url(m, L.name)
    ctx = base_context(
        site,
        path,
        f"{L.name} · guess the image",
        crumbs(site, (m, urls.model(m)), (L.name, urls.layer(m, L.name)), ("guess the image", None)),
        layer_name=L.name,
        layer_href=urls.layer(m, L.name),
        n_rounds=0 if lr.game is None else int(len(lr.game["images"])),
        try_href=f"{urls.try_page(m)}#layer={L.name}" if getattr(ix, "has_try", False) else None,
        scripts=[game_data_url(m, L.name), "static/game.js"],
        body_class="game",
    )
    return path, "game.html", ctx


def game_features(lr: LayerRatings) -> int:
    """How many features a round shows (game.features, at most N_GAME_FEATURES_MAX)."""
    return min(int(lr.game_cfg["features"]), N_GAME_FEATURES_MAX)


def game_data(site, ix, images) -> dict:
    """game/rounds.js: per round the most active features (relative to their max) and the candidates."""
    lr: LayerRatings = ix.ratings
    L, m = ix.layer, site.model
    root = urls.root_prefix(game_url(m, L.name))
    g = lr.game
    n_feat = game_features(lr)
    max_act = L.features.max_act.astype(np.float64)
    rounds = []
    for r in range(len(g["images"])):
        acts = g["acts"][r].astype(np.float64)
        rel = np.divide(acts, max_act, out=np.zeros_like(acts), where=max_act > 0)
        order = np.lexsort((np.arange(len(rel)), -rel))[:n_feat]
        feats = [
            {
                "id": int(f),
                "href": root + urls.unit(m, L.name, "f", int(f)),
                "thumb": root + ix.vis["f"][int(f)] if int(f) in ix.vis["f"] else None,
                "label": ix.labels[int(f)] or ix.top_class_text(L.features, int(f)),
                "rel": json_num(rel[f], 3),
            }
            for f in order
            if rel[f] > 0
        ]
        rounds.append(
            {
                "features": feats,
                "candidates": [root + images.url(int(c)) for c in g["candidates"][r]],
                "answer": int(g["answer"][r]),
            }
        )
    return {
        "key": f"atlasgen-game:{m}/{L.name}:{L.sae_sha256[:12]}",
        "pixelated": bool(images.pixelated),
        "rounds": rounds,
        # the reader's images, added on the try page (static/try.js keeps them in localStorage)
        "model": m,
        "layer": L.name,
        "root": root,
        "unit_url": root + urls.unit(m, L.name, "f", 0).replace("/0/", "/ID/"),
        "try_href": root + urls.try_page(m) + f"#layer={L.name}" if getattr(ix, "has_try", False) else None,
    }


# ---------------------------------------------------------------- feature page section


def unit_context(ix, kind: str, i: int) -> dict | None:
    lr: LayerRatings | None = getattr(ix, "ratings", None)
    if lr is None or kind != "f":
        return None
    m, L = ix.site.model, ix.layer
    d = lr.by_feature.get(i)
    out = {"in_sample": i in lr.group_of, "rate_href": rate_url(m, L.name), "rated": d is not None}
    if d is not None:
        lo, hi = R.bootstrap_interval(d["I"], seed=i)
        out.update(
            mean_I=fmt_num(d["mean_I"], 2),
            n=d["n"],
            raters="rater" if d["n"] == 1 else "raters",
            interval=f"{fmt_num(lo, 2)}\u2013{fmt_num(hi, 2)}" if d["n"] > 1 else None,
            phrases=sorted(set(d["phrases"]))[:N_PHRASES],
        )
    return out


def unit_stats(ix, kind: str, i: int) -> list[dict]:
    """Stats entries for the feature page's number row (mean I and raters), [] when not rated."""
    ctx = unit_context(ix, kind, i)
    if not ctx or not ctx["rated"]:
        return []
    return [
        {
            "name": "interpretability I",
            "value": f"{ctx['mean_I']} ({ctx['n']} {ctx['raters']})",
            "help": "mean over raters of Terekhov's I = (q1 q3 + q4)/2 from the blind survey",
        }
    ]


# ---------------------------------------------------------------- layer page section


def layer_context(site, ix) -> dict | None:
    lr: LayerRatings | None = getattr(ix, "ratings", None)
    if lr is None:
        return None
    m, L = site.model, ix.layer
    groups = []
    for g in lr.cfg["groups"]:
        members = [f for f, gg in lr.sample if gg == g]
        vals = [lr.by_feature[f]["mean_I"] for f in members if f in lr.by_feature]
        lo, hi = R.bootstrap_interval(vals, seed=len(groups))
        imp = lr.importance["values"][members] if members else np.zeros(0)
        groups.append(
            {
                "key": g,
                "name": GROUP_NAMES[g],
                "n_sample": len(members),
                "n_rated": len(vals),
                "mean": float(np.mean(vals)) if vals else None,
                "lo": lo,
                "hi": hi,
                "values": vals,
                "mean_importance": fmt_num(float(imp.mean())) if len(imp) else "n/a",
            }
        )
    rated = [(f, g) for f, g in lr.sample if f in lr.by_feature]
    extra = sorted(f for f in lr.by_feature if f not in lr.group_of)
    n_raters = len({r for d in lr.by_feature.values() for r in d["raters"]})
    rows = [
        {
            "key": gr["key"],
            "name": gr["name"],
            "n_sample": gr["n_sample"],
            "n_rated": gr["n_rated"],
            "mean": fmt_num(gr["mean"], 2) if gr["mean"] is not None else "n/a",
            "interval": (
                f"{fmt_num(gr['lo'], 2)}\u2013{fmt_num(gr['hi'], 2)}" if gr["n_rated"] > 1 else "n/a"
            ),
            "mean_importance": gr["mean_importance"],
            "hist": i_histogram(gr["values"], gr["name"]),
        }
        for gr in groups
    ]
    return {
        "rate_href": rate_url(m, L.name),
        "game_href": game_url(m, L.name) if lr.game is not None else None,
        "n_sample": len(lr.sample),
        "importance_source": lr.importance["source"],
        "importance_exact": lr.importance["exact"],
        "any": bool(rated),
        "n_rated": len(rated),
        "n_raters": n_raters,
        "n_outside": len(extra),
        "other_sae": lr.other_sae,
        "groups": rows,
        "means_svg": means_chart(groups) if rated else None,
        "scatter_svg": importance_scatter(site, ix, lr) if rated else None,
    }


# ---------------------------------------------------------------- inline SVG charts

_W, _H = 300, 130
_PL, _PR, _PT, _PB = 34, 8, 8, 30


def i_histogram(values: list[float], group: str, bins: int = 10) -> Markup:
    """Histogram of per-feature mean I over [0, 1] (linear count axis)."""
    counts = (
        np.histogram(np.clip(values, 0, 1), bins=bins, range=(0.0, 1.0))[0] if values else np.zeros(bins, int)
    )
    top = max(int(counts.max()), 1)
    pw, ph = _W - _PL - _PR, _H - _PT - _PB
    parts = [
        f'<svg class="hist rating-hist" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{escape(f"Histogram of interpretability I, {group} group")}">',
        f'<line class="axis" x1="{_PL}" y1="{_PT + ph}" x2="{_PL + pw}" y2="{_PT + ph}"/>',
    ]
    for b, c in enumerate(counts):
        x0 = _PL + b / bins * pw
        h = c / top * ph
        parts.append(
            f'<rect class="bar" x="{x0 + 0.5:.1f}" y="{_PT + ph - h:.1f}" width="{pw / bins - 1:.1f}" '
            f'height="{h:.1f}"><title>I {b / bins:.1f} to {(b + 1) / bins:.1f}: {int(c)} '
            "features</title></rect>"
        )
    for v in (0.0, 0.5, 1.0):
        x = _PL + v * pw
        anchor = "start" if v == 0 else "end" if v == 1 else "middle"
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{_PT + ph + 13}" text-anchor="{anchor}">{v:g}</text>'
        )
    parts.append(f'<text class="tick" x="{_PL - 4}" y="{_PT + 8}" text-anchor="end">{top}</text>')
    parts.append(f'<text class="tick" x="{_PL - 4}" y="{_PT + ph}" text-anchor="end">0</text>')
    parts.append(
        f'<text class="label" x="{_PL + pw / 2:.1f}" y="{_H - 3}" text-anchor="middle">I (mean '
        "over raters)</text>"
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def means_chart(groups: list[dict]) -> Markup:
    """Group means of I with their 95% bootstrap intervals, one row per group, on [0, 1]."""
    W, row = 560, 26
    pl, pr, pt = 250, 14, 8
    H = pt + row * len(groups) + 30
    pw = W - pl - pr
    parts = [
        f'<svg class="means" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="Mean interpretability I per group with 95% intervals">'
    ]
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = pl + v * pw
        parts.append(
            f'<line class="grid" x1="{x:.1f}" y1="{pt}" x2="{x:.1f}" y2="{pt + row * len(groups)}"/>'
        )
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{pt + row * len(groups) + 13}" '
            f'text-anchor="middle">{v:g}</text>'
        )
    for n, g in enumerate(groups):
        y = pt + row * n + row / 2
        parts.append(
            f'<text class="tick" x="{pl - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(g["name"])} '
            f"(n={g['n_rated']})</text>"
        )
        if g["mean"] is None:
            continue
        x0, x1, xm = (pl + g["lo"] * pw, pl + g["hi"] * pw, pl + g["mean"] * pw)
        parts.append(f'<line class="ci g-{g["key"]}" x1="{x0:.1f}" y1="{y:.1f}" x2="{x1:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<circle class="dot g-{g["key"]}" cx="{xm:.1f}" cy="{y:.1f}" r="5">'
            f"<title>{escape(g['name'])}: mean I {g['mean']:.3f}, 95% interval {g['lo']:.3f} to {g['hi']:.3f}"
            f"</title></circle>"
        )
    parts.append(
        f'<text class="label" x="{pl + pw / 2:.1f}" y="{H - 3}" text-anchor="middle">'
        "mean I, with 95% bootstrap interval</text></svg>"
    )
    return Markup("".join(parts))


def importance_scatter(site, ix, lr: LayerRatings) -> Markup:
    """Importance (x) against mean I (y), one linked dot per rated feature, coloured by group."""
    W, H = 420, 220
    pl, pr, pt, pb = 44, 12, 10, 34
    pw, ph = W - pl - pr, H - pt - pb
    pts = [
        (f, lr.group_of.get(f, "other"), float(lr.importance["values"][f]), lr.by_feature[f]["mean_I"])
        for f in sorted(lr.by_feature)
        if f < len(lr.importance["values"])
    ]
    xs = [p[2] for p in pts]
    lo, hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if hi - lo <= 0:
        lo, hi = lo - 1, hi + 1
    root = urls.root_prefix(urls.layer(site.model, ix.layer.name))
    parts = [
        f'<svg class="scatter" viewBox="0 0 {W} {H}" role="img" aria-label="Importance against '
        'interpretability I">',
        f'<line class="axis" x1="{pl}" y1="{pt + ph}" x2="{pl + pw}" y2="{pt + ph}"/>',
        f'<line class="axis" x1="{pl}" y1="{pt}" x2="{pl}" y2="{pt + ph}"/>',
    ]
    for v in (0.0, 0.5, 1.0):
        y = pt + ph - v * ph
        parts.append(f'<text class="tick" x="{pl - 5}" y="{y + 3.5:.1f}" text-anchor="end">{v:g}</text>')
    for v, anchor in ((lo, "start"), (hi, "end")):
        x = pl + (v - lo) / (hi - lo) * pw
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{pt + ph + 14}" '
            f'text-anchor="{anchor}">{escape(fmt_num(v))}</text>'
        )
    for f, g, x, y in pts:
        cx = pl + (x - lo) / (hi - lo) * pw
        cy = pt + ph - min(max(y, 0.0), 1.0) * ph
        href = root + urls.unit(site.model, ix.layer.name, "f", f)
        parts.append(
            f'<a href="{escape(href)}"><circle class="dot g-{escape(g)}" cx="{cx:.1f}" cy="{cy:.1f}" r="4">'
            f"<title>f/{f} ({escape(GROUP_NAMES.get(g, 'outside the sample'))}): importance "
            f"{escape(fmt_num(x))}, "
            f"I {y:.2f} from {lr.by_feature[f]['n']} rater(s)</title></circle></a>"
        )
    parts.append(
        f'<text class="label" x="{pl + pw / 2:.1f}" y="{H - 3}" text-anchor="middle">importance</text>'
    )
    parts.append(
        f'<text class="label" x="11" y="{pt + ph / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 11 {pt + ph / 2:.1f})">mean I</text></svg>'
    )
    return Markup("".join(parts))
