"""The fast render path (issue 8): Python unit cards and forked page workers give the same bytes."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_site import MODEL, make_fake_artifacts, render, tree_bytes  # noqa: E402

from atlasgen.site import build, cards  # noqa: E402
from atlasgen.site.build import make_environment  # noqa: E402

# The Jinja macro the Python card replaced (templates/macros.html before issue 8's render work), verbatim.
CARD_MACRO = (
    '{% from "macros.html" import thumb %}'
    '{% macro unit_card(root, card, value=none, pixelated=false) -%}\n<li class="card{% if card.dead %} dead{% endif %}" '
    'data-id="{{ card.id }}" data-density="{{ card.sort_density }}" data-max="{{ card.sort_max }}"'
    '{% if card.sort_importance %} data-importance="{{ card.sort_importance }}"{% endif %}>\n'
    '  <a href="{{ root }}{{ card.href }}">\n'
    '    {{ thumb(root, card.thumb, card.kind_name ~ " " ~ card.id ~ " visualisation", pixelated) }}\n'
    '    <span class="card-text">\n'
    '      <span class="card-id">{{ card.code }}{% if value %} <span class="card-value">{{ value }}</span>{% endif %}</span>\n'
    '      {% if card.label %}<span class="card-label">{{ card.label }}</span>{% elif card.top_class %}'
    '<span class="card-label muted">{{ card.top_class }}</span>{% endif %}\n'
    '      <span class="card-meta">{% if card.dead %}never fires{% else %}{{ card.density }}{% endif %}</span>\n'
    '    </span>\n  </a>\n</li>\n{%- endmacro %}'
    '[{{ unit_card(root, card, value=value, pixelated=pixelated) }}]'
)


def test_python_card_matches_the_jinja_macro():
    env = make_environment()
    env.globals.pop("unit_card")
    macro = env.from_string(CARD_MACRO)
    base = {"id": 7, "code": "f/7", "kind_name": "feature", "href": "m/l/f/7/index.html", "density": "1.5%",
            "max_act": "2.1", "sort_density": "0.015", "sort_max": "2.1"}
    n = 0
    for thumb, label, top, imp, dead, value, pix, root in itertools.product(
            ("m/l/f/7/thumb.webp", None), ("stripes <b>&\"'", ""), ("cat 50%", ""), ("12", ""), (False, True),
            (None, "+0.25", "", "<x>"), (False, True), ("../../../../", "")):
        card = {**base, "thumb": thumb, "label": label, "top_class": top, "sort_importance": imp, "dead": dead}
        want = macro.render(root=root, card=card, value=value, pixelated=pix)
        assert "[" + cards.unit_card(root, card, value=value, pixelated=pix) + "]" == want
        n += 1
    assert n == 2 ** 7 * 4


def test_forked_workers_write_the_same_bytes(tmp_path):
    art = make_fake_artifacts(tmp_path / "art", n_features=40, n_neurons=12)
    render(art, tmp_path / "serial", workers=1)
    original = build.PARALLEL_MIN_UNITS
    build.PARALLEL_MIN_UNITS = 2  # fork even for this small layer
    try:
        pages_seen = []
        render(art, tmp_path / "forked", workers=2, progress=lambda done, total: pages_seen.append((done, total)))
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


# templates/sections/example.html before issue 8's render work, verbatim (now cards.example_item).
EXAMPLE_TEMPLATE = (
    '    <li>\n      <figure>\n        <div class="ex-img">\n'
    '          <img class="ex-photo{% if images_pixelated %} px{% endif %}" src="{{ root }}{{ e.src }}" '
    'alt="dataset image {{ e.index }}, class {{ e.class_name }}{% if e.facet %} ({{ e.facet }}){% endif %}">\n'
    '          <img class="heat" src="{{ e.heat }}" alt="" aria-hidden="true">\n'
    '          <span class="ex-crop{% if images_pixelated %} px{% endif %}" style="background-image:url(\'{{ root }}'
    '{{ e.src }}\');{{ e.crop }}" role="img" aria-label="crop around where it fires most" '
    'title="where it fires most"></span>\n'
    '        </div>\n'
    '        <figcaption><span class="act" title="{{ e.rel }} of max">{{ e.act }}</span> '
    '<a href="{{ root }}{{ e.class_href }}">{{ e.class_name }}</a></figcaption>\n'
    '      </figure>\n    </li>\n'
)


def test_python_example_matches_the_jinja_include():
    env = make_environment()
    tpl = env.from_string(EXAMPLE_TEMPLATE)
    for facet, pix, name, root in itertools.product(("", "in a <crowd>"), (False, True), ("cat", "a&b \"q\" 'x'"),
                                                    ("../../../../", "")):
        e = {"src": "images/0123abcd.webp", "heat": "data:image/png;base64,iVBORw0KGgo=", "act": "1.25",
             "crop": "background-size:250%;background-position:10.0% 90.5%", "rel": "<0.01%", "index": 42,
             "facet": facet, "class_name": name, "class_href": "m/classes/cat/index.html"}
        assert cards.example_item(root, e, pix) + "\n" == tpl.render(root=root, e=e, images_pixelated=pix)


def test_batched_heatmaps_match_one_png_per_map():
    import base64

    import numpy as np

    from atlasgen.site import images

    rng = np.random.default_rng(0)
    maps = rng.gamma(1.0, 1.0, size=(5, 7, 6)).astype(np.float32)
    maps[2] = 0
    uris = images.heatmap_data_uris(maps, 3.0)
    v = np.clip(maps / 3.0, 0, 1)
    for m, uri in zip(v, uris):
        rgba = np.empty(m.shape + (4,), dtype=np.uint8)
        rgba[..., :3] = (m[..., None] * images._HOT).round().astype(np.uint8)
        rgba[..., 3] = np.round(np.where(m < 0.5, 0.6 * (1 - 2 * m), 0.45 * (2 * m - 1)) * 255).astype(np.uint8)
        assert base64.b64decode(uri.split(",", 1)[1]) == images.png_rgba(rgba)
