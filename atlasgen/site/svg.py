"""Inline SVG charts: readable without JavaScript, styled by atlas.css."""

from __future__ import annotations

import math
from html import escape

import numpy as np
from markupsafe import Markup

from atlasgen.site.fmt import fmt_count, fmt_num, fmt_pct

_W, _H = 420, 165  # viewBox size (CSS scales it; text stays readable on a phone)
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 44, 10, 10, 34


def _log_y(count: float, top: float) -> float:
    """Fraction of plot height for ``count`` on a log(1 + n) axis."""
    return math.log1p(count) / math.log1p(top) if top > 0 else 0.0


_CHAR_W = 6.5  # the width of a tick label's character, at most (11 px text, atlas.css), in viewBox units


def _unclashed(ticks: list[tuple[float, str]], left: float, right: float) -> list[tuple[float, str]]:
    """The x ticks whose labels do not overlap, from the right: the last tick (the maximum) always stays,
    a label that would run into the one to its right is left out, its tick mark with it."""
    kept: list[tuple[float, str]] = []
    limit = math.inf
    for x, label in sorted(ticks, reverse=True):
        w = len(label) * _CHAR_W
        lo, hi = (x, x + w) if x <= left + 1 else (x - w, x) if x >= right - 1 else (x - w / 2, x + w / 2)
        if hi + 4 <= limit or not kept:
            kept.append((x, label))
            limit = lo
    return kept[::-1]


def bar_histogram(
    counts,
    edges,
    *,
    x_label: str,
    x_ticks: list[tuple[float, str]],
    bar_titles: list[str | None],
    aria: str,
    y_label: str = "images (log)",
    highlight_first: bool | int = False,
) -> Markup:
    """Bar chart of ``counts`` over bin ``edges`` with a log count axis.

    ``x_ticks`` are (position in edge units, label); ``bar_titles`` give each
    bar a native tooltip (``<title>``); a None title leaves that bin empty (a spacer).
    ``highlight_first``: the first (True) or the first n bars are drawn as apart from the others.
    """
    counts = [int(c) for c in counts]
    edges = [float(e) for e in edges]
    lo, hi = edges[0], edges[-1]
    span = (hi - lo) or 1.0
    top = max(counts) if counts else 0
    pw, ph = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B

    def x_of(v: float) -> float:
        return _PAD_L + (v - lo) / span * pw

    parts = [
        f'<svg class="hist" viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(aria)}">',
        f'<line class="axis" x1="{_PAD_L}" y1="{_PAD_T + ph}" x2="{_PAD_L + pw}" y2="{_PAD_T + ph}"/>',
    ]
    for i, c in enumerate(counts):
        if bar_titles[i] is None:  # a spacer bin
            continue
        x0, x1 = x_of(edges[i]), x_of(edges[i + 1])
        h = _log_y(c, top) * ph
        cls = ' class="first"' if i < int(highlight_first) else ""  # atlas.css fills the others
        parts.append(
            f'<rect{cls} x="{x0 + 0.5:.1f}" y="{_PAD_T + ph - h:.1f}" '
            f'width="{max(x1 - x0 - 1.0, 0.5):.1f}" height="{h:.1f}">'
            f"<title>{escape(bar_titles[i])}</title></rect>"
        )
    # Log axis: ticks at powers of ten up to the top count. The grid lines and tick marks are one path
    # each and the labels share their group's anchor (the size budget: a dozen elements on every page).
    y_ticks = []
    if top > 0:
        p = 1
        while p <= top:
            y_ticks.append((_PAD_T + ph - _log_y(p, top) * ph, fmt_count(p)))
            p *= 10
    if y_ticks:
        grid = "".join(f"M{_PAD_L} {y:.1f}H{_PAD_L + pw}" for y, _ in y_ticks)
        parts.append(f'<path class="grid" d="{grid}"/>')
        parts.append(
            '<g text-anchor="end">'
            + "".join(f'<text x="{_PAD_L - 5}" y="{y + 3.5:.1f}">{label}</text>' for y, label in y_ticks)
            + "</g>"
        )
    if x_ticks:
        xs = _unclashed([(x_of(v), label) for v, label in x_ticks], _PAD_L, _PAD_L + pw)
        marks = "".join(f"M{x:.1f} {_PAD_T + ph}v4" for x, _ in xs)
        parts.append(f'<path class="axis" d="{marks}"/>')
        parts.append(f'<g text-anchor="middle" transform="translate(0 {_PAD_T + ph + 16})">')
        for x, label in xs:
            # Ticks at the ends of the axis are anchored inwards so their labels are never clipped.
            anchor = ' text-anchor="start"' if x <= _PAD_L + 1 else ""
            anchor = ' text-anchor="end"' if x >= _PAD_L + pw - 1 else anchor
            parts.append(f'<text x="{x:.1f}"{anchor}>{escape(label)}</text>')
        parts.append("</g>")
    parts.append(
        f'<text class="label" x="{_PAD_L + pw / 2:.1f}" y="{_H - 3}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text class="label" x="11" y="{_PAD_T + ph / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 11 {_PAD_T + ph / 2:.1f})">{escape(y_label)}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def activation_histogram(
    hist: np.ndarray, edges: np.ndarray, max_act: float, fires: int | None = None, n_images: int | None = None
) -> Markup:
    """Histogram of a unit's per-image max activation on a log activation axis, with the non-firing share.

    ``hist`` counts images in bins ``edges`` relative to ``max_act``; the examples stage makes them
    log-spaced (``np.logspace``), so each bin has the same width on the log axis drawn here. Left of the
    axis, set apart, two bars: the images where the unit does not fire (``n_images - fires``) and those
    where it fires below the axis's range (``fires - hist.sum()``), so every image scanned is counted once.
    Empty bins draw nothing (a zero-height bar shows nothing and has no tooltip to hover), so they are left
    out of the SVG (the size budget: most of a sparse feature's bins are empty). Edges that are not
    log-spaced (artifacts of another layout) are refused rather than drawn on the wrong axis.
    """
    rel = np.asarray(edges, dtype=np.float64)
    if (
        rel.size < 2
        or rel[0] <= 0
        or not np.allclose(np.diff(np.log10(rel)), np.log10(rel[1] / rel[0]), rtol=1e-3)
    ):
        raise ValueError(
            "activation histogram edges must be log-spaced fractions of the max (examples stage)"
        )
    counts = [int(c) for c in hist]
    in_range = sum(counts)
    fires = in_range if fires is None else int(fires)
    n_images = fires if n_images is None else int(n_images)
    silent, below = max(n_images - fires, 0), max(fires - in_range, 0)
    logs = np.log10(rel).tolist()
    width = (logs[-1] - logs[0]) / len(counts)
    lo = logs[0]
    # Left of the axis: [does not fire], spacer, [below the range], spacer, then the log bins.
    extra = [lo - (5 - j) * width for j in range(5)]
    all_edges = extra + logs
    share = (lambda n: f" ({fmt_pct(n / n_images)})") if n_images > 0 else (lambda n: "")
    lo_value = fmt_num(rel[0] * max_act)
    titles = [
        f"does not fire: {fmt_count(silent)} images{share(silent)}",
        None,
        f"fires below {lo_value}: {fmt_count(below)} images{share(below)}" if below else None,
        None,
    ]
    values = (rel * max_act).tolist()
    titles += [
        f"{fmt_num(values[i])} to {fmt_num(values[i + 1])}: {fmt_count(c)} images{share(c)}"
        if c > 0
        else None
        for i, c in enumerate(counts)
    ]
    ticks = [(lo - 4.5 * width, "none")] + ([(lo - 2.5 * width, "<")] if below else [])
    if max_act > 0:
        low_decade = math.ceil(math.log10(values[0]) - 1e-9)
        high_decade = math.floor(math.log10(values[-1]) + 1e-9)
        for e in range(low_decade, high_decade + 1):
            ticks.append((e - math.log10(max_act), fmt_num(10.0**e)))
        if not any(abs(t - logs[-1]) < width for t, _ in ticks):
            ticks.append((logs[-1], f"{fmt_num(max_act)} max"))
    return bar_histogram(
        [silent, 0, below, 0] + counts,
        all_edges,
        x_label="maximum activation per image (log scale)",
        x_ticks=ticks,
        bar_titles=titles,
        aria=(
            f"Histogram of this unit's maximum activation per image on a log scale; it does not fire on "
            f"{fmt_count(silent)} of {fmt_count(n_images)} images"
        ),
        highlight_first=3,
    )


def density_histogram(density: np.ndarray, bins: int = 24) -> Markup:
    """Histogram of log10(feature density) across a layer; dead features in the first bar."""
    d = np.asarray(density, dtype=np.float64)
    alive = d[d > 0]
    lo = math.floor(float(np.log10(alive.min()))) if alive.size else -4
    lo = min(lo, -1)
    hi = 0.0
    width = (hi - lo) / bins
    # First bin: dead features, then empty spacer bins so its label has room.
    spacers = 3
    edges = [lo - (spacers + 1 - j) * width for j in range(spacers + 1)] + [
        lo + i * width for i in range(bins + 1)
    ]
    counts = [int((d <= 0).sum())] + [0] * spacers
    if alive.size:
        logs = np.log10(alive)
        idx = np.clip(((logs - lo) / width).astype(np.int64), 0, bins - 1)
        counts += np.bincount(idx, minlength=bins).tolist()
    else:
        counts += [0] * bins
    titles = (
        [f"dead (never fires): {fmt_count(counts[0])} features"]
        + [None] * spacers
        + [
            f"density {fmt_pct(10.0 ** edges[i + spacers + 1])} to "
            f"{fmt_pct(10.0 ** edges[i + spacers + 2])}: "
            f"{fmt_count(counts[i + spacers + 1])} features"
            for i in range(bins)
        ]
    )
    step = 1 if -lo <= 5 else 2  # keep decade labels apart on very wide ranges
    ticks = [(lo - (spacers + 0.5) * width, "dead")] + [
        (float(e), f"{100 * 10.0**e:.{max(0, -e - 2)}f}%") for e in range(0, int(lo) - 1, -step)[::-1]
    ]
    return bar_histogram(
        counts,
        edges,
        x_label="density: fraction of images where the feature fires (log scale)",
        x_ticks=ticks,
        bar_titles=titles,
        aria="Histogram of feature densities on a log scale",
        y_label="features (log)",
        highlight_first=True,
    )


# ---------------------------------------------------------------- layer scatter

# Eight stops of viridis (perceptually uniform, readable on light and dark backgrounds).
_VIRIDIS = ("#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725")
SCATTER_LINK_LIMIT = 4096  # layers up to this many live features get one link per point


def density_scatter(
    density, mean_act, label_entropy, *, href: str = "f/{id}/index.html", link_limit: int = SCATTER_LINK_LIMIT
) -> Markup:
    """Scatter of log10 density against mean activation, coloured by label entropy (as SAE Explorer plots it).

    Dead features (density 0) have no log density and are left out. Up to
    ``link_limit`` points, each is a circle linking to its feature page
    (``href`` with ``{id}``, relative to the page) with its id as a tooltip;
    above, the points are drawn compactly (one path per colour, ~15 bytes a
    point) without links, so a 16,384-feature layer stays a few hundred KB.
    """
    d = np.asarray(density, dtype=np.float64)
    mean = np.asarray(mean_act, dtype=np.float64)
    ent = np.asarray(label_entropy, dtype=np.float64)
    alive = np.flatnonzero((d > 0) & np.isfinite(mean) & np.isfinite(ent))
    W, H = _W, 220
    pl, pr, pt, pb = _PAD_L, 10, 10, 34
    pw, ph = W - pl - pr - 56, H - pt - pb  # room on the right for the colour legend
    logs = np.log10(d[alive]) if alive.size else np.zeros(0)
    lo = min(math.floor(float(logs.min())) if alive.size else -4, -1)
    y_hi = float(mean[alive].max()) if alive.size else 1.0
    y_hi = y_hi if y_hi > 0 else 1.0
    e_hi = float(ent[alive].max()) if alive.size else 1.0
    e_hi = e_hi if e_hi > 0 else 1.0

    def x_of(v):
        return pl + (v - lo) / (0 - lo) * pw

    def y_of(v):
        return pt + ph - max(v, 0.0) / y_hi * ph

    # With links, the points are interactive: no role="img" (it would hide them from assistive technology).
    role = "" if alive.size <= link_limit else 'role="img" '
    parts = [
        f'<svg class="hist scatter" viewBox="0 0 {W} {H}" {role}'
        f'aria-label="Scatter of {fmt_count(alive.size)} '
        'features: log density against mean activation, coloured by label entropy" '
        f'data-points="{alive.size}">',
        f'<line class="axis" x1="{pl}" y1="{pt + ph}" x2="{pl + pw}" y2="{pt + ph}"/>',
        f'<line class="axis" x1="{pl}" y1="{pt}" x2="{pl}" y2="{pt + ph}"/>',
    ]
    # Grid and ticks: decades on x, four steps on y.
    step = 1 if -lo <= 5 else 2
    for e in range(0, lo - 1, -step):
        x = x_of(e)
        anchor = "start" if e == lo else "end" if e == 0 else "middle"
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{pt}" x2="{x:.1f}" y2="{pt + ph}"/>')
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{pt + ph + 16}" text-anchor="{anchor}">'
            f"{100 * 10.0**e:.{max(0, -e - 2)}f}%</text>"
        )
    raw = y_hi / 4  # a round tick step (1, 2 or 5 times a power of ten), about four ticks
    mag = 10.0 ** math.floor(math.log10(raw))
    y_step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    for q in range(1, int(y_hi / y_step + 1e-9) + 1):
        v = q * y_step
        y = y_of(v)
        parts.append(f'<line class="grid" x1="{pl}" y1="{y:.1f}" x2="{pl + pw}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="tick" x="{pl - 5}" y="{y + 3.5:.1f}" text-anchor="end">{fmt_num(v, 2)}</text>'
        )
    bins = (
        np.clip((ent[alive] / e_hi * len(_VIRIDIS)).astype(np.int64), 0, len(_VIRIDIS) - 1)
        if alive.size
        else []
    )
    xs = [x_of(v) for v in logs]
    ys = [y_of(v) for v in mean[alive]]
    if alive.size <= link_limit:
        for n, i in enumerate(alive.tolist()):
            parts.append(
                f'<a href="{escape(href.format(id=i))}"><circle cx="{xs[n]:.1f}" cy="{ys[n]:.1f}" r="2.4" '
                f'fill="{_VIRIDIS[bins[n]]}"><title>f/{i}</title></circle></a>'
            )
    else:
        for b, colour in enumerate(_VIRIDIS):
            pts = "".join(f"M{xs[n]:.1f} {ys[n]:.1f}h0" for n in np.flatnonzero(bins == b).tolist())
            if pts:
                parts.append(
                    f'<path class="dots" stroke="{colour}" stroke-width="3" stroke-linecap="round" '
                    f'd="{pts}"/>'
                )
    # Colour legend: label entropy from 0 (one class) to the layer's maximum.
    lx, ly, lh = pl + pw + 24, pt, ph
    seg = lh / len(_VIRIDIS)
    for b, colour in enumerate(_VIRIDIS):
        parts.append(
            f'<rect x="{lx}" y="{ly + lh - (b + 1) * seg:.1f}" width="10" height="{seg + 0.2:.1f}" '
            f'fill="{colour}"/>'
        )
    parts.append(f'<text class="tick" x="{lx + 13}" y="{ly + 8}">{fmt_num(e_hi, 2)}</text>')
    parts.append(f'<text class="tick" x="{lx + 13}" y="{ly + lh}">0</text>')
    parts.append(
        f'<text class="label" x="{lx - 6}" y="{ly + lh / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 {lx - 6} {ly + lh / 2:.1f})">label entropy (nats)</text>'
    )
    parts.append(
        f'<text class="label" x="{pl + pw / 2:.1f}" y="{H - 3}" text-anchor="middle">'
        f"density (log scale)</text>"
    )
    parts.append(
        f'<text class="label" x="11" y="{pt + ph / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 11 {pt + ph / 2:.1f})">mean activation</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))
