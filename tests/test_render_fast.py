"""The fast render path: Python unit cards and forked page workers give the same bytes."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_site import MODEL, make_fake_artifacts, render, tree_bytes  # noqa: E402

from atlasgen.site import build, cards  # noqa: E402
from atlasgen.site.build import make_environment  # noqa: E402

# The reference macro the Python card must agree with byte for byte: the card of templates/macros.html as a
# Jinja macro, less its indentation and with the sort keys only where the grid sorts (size budget).
CARD_MACRO = (
    "{% macro unit_card(root, card, value=none, pixelated=false, sortable=false) -%}\n"
    '<li class="card{% if card.dead %} dead{% endif %}"{% if sortable %} '
    'data-id="{{ card.id }}" data-density="{{ card.sort_density }}" data-max="{{ card.sort_max }}"'
    '{% if card.sort_importance %} data-importance="{{ card.sort_importance }}"{% endif %}'
    '{% if card.flags %} data-flags="{{ card.flags | map("replace", "_", "-") | join(" ") }}"{% '
    "endif %}{% endif %}>"
    '<a href="{{ root }}{{ card.href }}">'
    '{% if card.thumb %}<img class="thumb{% if pixelated %} px{% endif %}{% if card.vis_failed %} '
    'vis-failed{% endif %}" '
    'src="{{ root }}{{ card.thumb }}" alt="{% if card.vis_failed %}visualisation failed{% endif %}" '
    'loading="lazy" width="120" height="120">'
    '{% else %}<span class="thumb none" role="img" aria-label="no visualisation">no vis</span>{% endif %}'
    "<p>"
    "<b>{{ card.code }}{% if value %} <i>{{ value }}</i>{% endif %}</b>"
    "{% if card.label %}<span>{{ card.label }}</span>{% elif card.top_class %}"
    '<span class="muted">{{ card.top_class }}</span>{% endif %}'
    "<small>{% if card.dead %}never fires{% else %}{{ card.density }}{% endif %}</small>"
    '{% set shown = card.flags | reject("equalto", "dead") | map("replace", "_", "-") | list %}'
    '{% if shown %}<em>{{ shown | join(", ") }}</em>{% endif %}'
    "</p></a></li>\n{%- endmacro %}"
    "[{{ unit_card(root, card, value=value, pixelated=pixelated, sortable=sortable) }}]"
)


def test_python_card_matches_the_reference_macro():
    env = make_environment()
    env.globals.pop("unit_card")
    macro = env.from_string(CARD_MACRO)
    base = {
        "id": 7,
        "code": "f/7",
        "kind_name": "feature",
        "href": "m/l/f/7/index.html",
        "density": "1.5%",
        "max_act": "2.1",
        "sort_density": "0.015",
        "sort_max": "2.1",
    }
    n = 0
    for thumb, label, top, imp, dead, value, pix, root, sortable, failed in itertools.product(
        ("m/l/f/7/thumb.webp", None),
        ("stripes <b>&\"'", ""),
        ("cat 50%", ""),
        ("12", ""),
        (False, True),
        (None, "+0.25", "", "<x>"),
        (False, True),
        ("../../../../", ""),
        (False, True),
        (False, True),
    ):
        flags = ("dead",) if dead else (("dense", "low_confidence", "polysemantic") if imp else ())
        card = {
            **base,
            "thumb": thumb,
            "label": label,
            "top_class": top,
            "sort_importance": imp,
            "dead": dead,
            "flags": flags,
            "vis_failed": failed,
        }
        want = macro.render(root=root, card=card, value=value, pixelated=pix, sortable=sortable)
        assert "[" + cards.unit_card(root, card, value=value, pixelated=pix, sortable=sortable) + "]" == want
        n += 1
    assert n == 2**9 * 4
    assert 'data-id="7"' in cards.unit_card(
        "",
        {**base, "thumb": None, "label": "", "top_class": "", "sort_importance": "", "dead": False},
        sortable=True,
    )


def test_forked_workers_write_the_same_bytes(tmp_path):
    art = make_fake_artifacts(tmp_path / "art", n_features=40, n_neurons=12)
    render(art, tmp_path / "serial", workers=1)
    original = build.PARALLEL_MIN_UNITS
    build.PARALLEL_MIN_UNITS = 2  # fork even for this small layer
    try:
        pages_seen = []
        render(
            art, tmp_path / "forked", workers=2, progress=lambda done, total: pages_seen.append((done, total))
        )
    finally:
        build.PARALLEL_MIN_UNITS = original
    serial, forked = tree_bytes(tmp_path / "serial"), tree_bytes(tmp_path / "forked")
    assert sorted(serial) == sorted(forked)
    assert [p for p in serial if serial[p] != forked[p]] == []
    assert any(p.startswith(f"{MODEL}/") and "/f/39/" in p for p in forked)
    # Progress still counts every page once, in order, up to the total.
    assert [d for d, _ in pages_seen] == list(range(1, len(pages_seen) + 1))
    assert pages_seen[-1][0] == pages_seen[-1][1]


def test_a_worker_error_reaches_the_parent(tmp_path, monkeypatch):
    art = make_fake_artifacts(tmp_path / "art", n_features=40, n_neurons=12)
    real = build.pages.unit_page

    def broken(site, ix, kind, i, *args, **kwargs):
        if kind == "f" and i == 30:
            raise ValueError("feature 30 is broken")
        return real(site, ix, kind, i, *args, **kwargs)

    monkeypatch.setattr(build.pages, "unit_page", broken)
    monkeypatch.setattr(build, "PARALLEL_MIN_UNITS", 2)
    with pytest.raises(ValueError, match="feature 30 is broken"):
        render(art, tmp_path / "site", workers=2)


# The reference template cards.example_item must agree with byte for byte: the lean example markup of the
# size budget (no indentation; heat-map tile position in --y; crop position in data-crop, drawn by atlas.js).
EXAMPLE_TEMPLATE = (
    '<li><div class="ex-img" data-crop="{{ e.crop }}">'
    '<img src="{{ root }}{{ e.src }}" '
    'alt="dataset image {{ e.index }}{% if e.facet %} ({{ e.facet }}){% endif %}">'
    '<i style="--y:{{ e.heat }}"></i></div>'
    '<p><b title="{{ e.rel }} of max">{{ e.act }}</b> '
    '<a href="{{ root }}{{ e.class_href }}">{{ e.class_name }}</a></p></li>'
)


def test_python_example_matches_the_reference_template():
    env = make_environment()
    tpl = env.from_string(EXAMPLE_TEMPLATE)
    n = 0
    for facet, name, root, crop in itertools.product(
        ("", "in a <crowd>"), ("cat", "a&b \"q\" 'x'"), ("../../../../", ""), ("10% 91%", '<"&>')
    ):
        e = {
            "src": "images/0123abcd.webp",
            "heat": "12.345%",
            "act": "1.25",
            "crop": crop,
            "rel": "<0.01%",
            "index": 42,
            "facet": facet,
            "class_name": name,
            "class_href": "m/classes/cat/index.html",
        }
        assert cards.example_item(root, e) == tpl.render(root=root, e=e)
        n += 1
    assert n == 16


def _hot(m, quantize=True):
    """The heat-map colour of a map already divided by its scale, written out (the reference for
    images.heatmap_rgba)."""
    import numpy as np

    from atlasgen.site import images

    if quantize:
        m = np.round(m * 63) / 63  # 64 levels
    rgba = np.empty(m.shape + (4,), dtype=np.uint8)
    stops = np.asarray(images._INFERNO, dtype=np.float64)  # inferno, linear between its stops
    x = np.linspace(0, 1, len(stops))
    for c in range(3):
        rgba[..., c] = np.round(np.interp(m, x, stops[:, c])).astype(np.uint8)
    rgba[..., 3] = round(0.55 * 255)
    return rgba


def test_heat_sprite_holds_every_map_with_a_repeated_border():
    import io

    import numpy as np
    from PIL import Image

    from atlasgen.site import images

    rng = np.random.default_rng(0)
    top = rng.gamma(1.0, 1.0, size=(5, 7, 6)).astype(np.float32)
    top[2] = 0
    band = rng.gamma(1.0, 1.0, size=(3, 7, 6)).astype(np.float32)
    sprite = images.HeatSprite()
    assert sprite.add(top, 3.0) == [0, 1, 2, 3, 4]
    assert sprite.add(band, 3.0) == [5, 6, 7]
    with pytest.raises(ValueError, match="share a grid"):
        sprite.add(np.zeros((1, 4, 4)), 1.0)
    png = sprite.png()
    assert sprite.data_uri().endswith(__import__("base64").b64encode(png).decode())
    assert Image.open(io.BytesIO(png)).mode == "P"  # a palette PNG
    strip = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    assert strip.shape == (8 * 9, 8, 4)
    maps = np.clip(np.concatenate([top, band]) / 3.0, 0, 1)
    for t, m in enumerate(maps):
        tile = strip[t * 9 : (t + 1) * 9]
        assert (tile == np.pad(_hot(m), ((1, 1), (1, 1), (0, 0)), mode="edge")).all()
        # 64 levels stay within half a level of the exact colour: the scale's steepest slope (colour steps per
        # unit of activation) times 1/126, plus one step of rounding.
        stops = np.asarray(images._INFERNO, dtype=np.float64)
        slope = np.abs(np.diff(stops, axis=0)).max() * (len(stops) - 1)
        bound = slope / (2 * 63) + 1
        assert np.abs(tile[1:-1, 1:-1].astype(int) - _hot(m, quantize=False).astype(int)).max() <= bound
    # Geometry: with the strip at the CSS size over a box of side B, tile t's inner 7 x 6 pixels cover the
    # box.
    size_w, size_h = (float(v.rstrip("%")) / 100 for v in sprite.css().split(":", 1)[1].split())
    assert size_w == pytest.approx(8 / 6, rel=1e-4) and size_h == pytest.approx(8 * 9 / 7, rel=1e-5)
    B = 120.0
    for t in range(8):
        p = float(sprite.position(t).rstrip("%")) / 100
        offset = p * (B - size_h * B)  # the strip's top edge relative to the box's, in px
        assert offset + (t * 9 + 1) * B / 7 == pytest.approx(0, abs=0.05)
    assert 0.5 * (B - size_w * B) + B / 6 == pytest.approx(
        0, abs=0.01
    )  # background-position-x 50 % skips the border


def test_png_encoder_round_trips():
    import io

    import numpy as np
    from PIL import Image

    from atlasgen.site import images

    rgba = np.random.default_rng(1).integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    assert (np.asarray(Image.open(io.BytesIO(images.png_rgba(rgba)))) == rgba).all()


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Chromium not installed")
def test_heat_sprite_tiles_look_like_one_image_per_map(tmp_path):
    """In Chromium, each tile of the strip, shown by atlas.css over a box, matches that map as a lone
    <img>."""
    import base64
    import io

    import numpy as np
    from PIL import Image
    from playwright import sync_api

    from atlasgen.site import images
    from atlasgen.site.resources import resource_dir

    rng = np.random.default_rng(2)
    maps = rng.gamma(1.0, 1.0, size=(9, 7, 7)).astype(np.float32)
    sprite = images.HeatSprite()
    tiles = sprite.add(maps, float(maps.max()) / 2)
    lone = [
        base64.b64encode(images.png_rgba(m)).decode()
        for m in images.heatmap_rgba(maps, float(maps.max()) / 2)
    ]
    css = (resource_dir("static") / "atlas.css").as_uri()
    boxes = "".join(
        f'<div class="ex-img" style="width:120px"><i style="--y:{sprite.position(t)}"></i></div>'
        f'<div class="ex-img" style="width:120px"><img src="data:image/png;base64,{u}" alt=""></div>'
        for t, u in zip(tiles, lone)
    )
    page_html = (
        '<!DOCTYPE html><html><head><link rel="stylesheet" '
        f'href="{css}"><style>body{{margin:0;background:#fff}}'
        f".ex-img{{border-radius:0;display:inline-block;vertical-align:top;background:#fff}}"
        f".ex-img i{{background-image:url({sprite.data_uri()});{sprite.css()};transition:none}}"
        "</style></head>"
        f"<body>{boxes}</body></html>"
    )
    (tmp_path / "p.html").write_text(page_html)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 240, "height": 120 * len(tiles)})
        page.goto((tmp_path / "p.html").as_uri())
        shot = np.asarray(Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")).astype(int)
        browser.close()
    for t in range(len(tiles)):
        strip_box, lone_box = shot[t * 120 : (t + 1) * 120, :120], shot[t * 120 : (t + 1) * 120, 120:240]
        assert np.abs(strip_box - lone_box).mean() < 2.0, t  # same picture (resampling may differ by a level)
        assert np.abs(strip_box - lone_box).max() < 40, t  # no neighbouring tile bleeds in at the edges
