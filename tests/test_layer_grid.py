"""The layer page's virtualised unit grids and the map page without every card, on a layer wider than
the cards the HTML carries (atlasgen/site/grid.py, static/atlas.js), checked in Chromium over file://."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_site import (  # noqa: F401
    CHROMIUM,
    LAYERS,
    MODEL,
    _Page,
    browser,
    fake_label,
    html_links,
    make_fake_artifacts,
    needs_chromium,
    render,
)

from atlasgen.site import grid
from atlasgen.site.pages import N_LAYER_FIRST

N_FEATURES, N_NEURONS = 400, 72
LAYER = LAYERS[0]


@pytest.fixture(scope="module")
def wide_site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wide")
    art = make_fake_artifacts(
        root / "art",
        n_features=N_FEATURES,
        n_neurons=N_NEURONS,
        n_images=60,
        layers=(LAYER,),
        k=3,
        vis_size=32,
        thumb_size=16,
    )
    out = root / "site"
    render(art, out, layers=[LAYER])
    return out


def _layer(site: Path) -> Path:
    return site / MODEL / LAYER / "index.html"


def _cards(site: Path) -> dict:
    text = (site / MODEL / LAYER / "cards.js").read_text()
    assert text.startswith("window.ATLAS_CARDS = ") and text.endswith(
        ";\n"
    )  # a classic script: works from file://
    return json.loads(text[len("window.ATLAS_CARDS = ") : -2])


def _features(site: Path) -> list[dict]:
    return json.loads((site / f"data/{MODEL}/{LAYER}/features.json").read_text())["features"]


def test_layer_page_carries_first_cards_and_links_every_unit(wide_site):
    html = _layer(wide_site).read_text()
    first = html.split('id="first-title"')[1].split("</section>")[0].count('<li class="card')
    assert 0 < first <= N_LAYER_FIRST  # the features to look at first, then the grids
    assert (
        html.count('<li class="card') == first + 2 * grid.N_SERVER_CARDS
    )  # the first cards of both grids, not all
    linked = {h for _, h in html_links(_layer(wide_site))}
    for kind, n in (("f", N_FEATURES), ("n", N_NEURONS)):
        missing = [i for i in range(n) if f"{kind}/{i}/index.html" not in linked]
        assert not missing, f"{kind} pages not linked from the layer page: {missing[:10]}"
    assert '<script src="cards.js"></script>' in html


def test_card_data_columns_cover_every_unit(wide_site):
    data = _cards(wide_site)["grids"]
    feats = data["features"]
    assert feats["n"] == N_FEATURES and data["neurons"]["n"] == N_NEURONS
    for g in data.values():
        for key, column in g["columns"].items():
            assert len(column) == g["n"], key
        assert [s["key"] for s in g["sorts"]][:3] == ["id", "density", "max"]
        assert all(spec["key"] in g["columns"] for spec in g["flags"] + g["shown"] + g["sorts"][1:])
    expected = _features(wide_site)
    assert feats["columns"]["label"] == [f["label"] for f in expected]
    assert feats["columns"]["dead"] == [int(f["density"] <= 0) for f in expected]


def test_map_page_does_not_embed_every_card(wide_site):
    page = wide_site / MODEL / LAYER / "map" / "index.html"
    links = [h for _, h in html_links(page) if re.search(r"/f/\d+/index\.html$", h)]
    n_clusters = page.read_text().count("<details")
    assert len(links) <= n_clusters < N_FEATURES  # one representative per cluster at most
    assert page.stat().st_size < 20_000


@pytest.fixture
def tab(browser):  # noqa: F811
    t = _Page(browser, viewport={"width": 1000, "height": 800})
    yield t
    t.close()


def _ids(page) -> list[int]:
    return page.eval_on_selector_all("#feature-grid > li", "els => els.map(e => +e.dataset.id)")


@needs_chromium
def test_virtual_grid_sorts_filters_scrolls_and_links(tab, wide_site):
    page = tab.page
    page.goto(_layer(wide_site).resolve().as_uri())
    page.wait_for_function("() => window.atlasGrids && window.atlasGrids.features")
    shown = _ids(page)
    assert (
        shown == list(range(len(shown))) and 0 < len(shown) < N_FEATURES
    )  # only the rows in view and a few more
    assert page.locator("[data-grid-tools=features]").is_visible()

    feats = _features(wide_site)
    page.click("[data-grid-tools=features] button[data-sort=density]")
    density = _cards(wide_site)["grids"]["features"]["columns"]["density"]  # 6 significant digits (sort keys)
    assert all(abs(d - f["density"]) <= 1e-6 for d, f in zip(density, feats))
    by_density = sorted(range(N_FEATURES), key=lambda i: (-density[i], i))
    assert page.evaluate("() => window.atlasGrids.features.ids()") == by_density
    assert _ids(page) == by_density[: len(_ids(page))]
    page.click("[data-grid-tools=features] button[data-sort=id]")
    assert _ids(page)[:5] == [0, 1, 2, 3, 4]

    # Scrolling to the end of the grid draws its last cards (and not the first ones any more).
    page.evaluate(
        "() => { const g = document.getElementById('feature-grid'); window.scrollTo(0, g.offsetTop "
        "+ g.offsetHeight - 400); }"
    )
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#feature-grid > li')).some(li => "
        f"+li.dataset.id === {N_FEATURES - 1})"
    )
    assert 0 not in _ids(page)
    page.evaluate("() => document.getElementById('features-title').scrollIntoView()")

    # Text filter: every word in the code, label or top class; the flag menu: dead features out.
    query = "checkered red"
    words = query.split()
    hay = [f"f/{i} {i} {f['label']} " for i, f in enumerate(feats)]
    cards = _cards(wide_site)["grids"]["features"]["columns"]
    hay = [(h + cards["top"][i]).lower() for i, h in enumerate(hay)]
    expected = [i for i in range(N_FEATURES) if all(w in hay[i] for w in words)]
    assert 0 < len(expected) < N_FEATURES
    page.fill("[data-grid-tools=features] [data-grid-filter]", query)
    assert page.evaluate("() => window.atlasGrids.features.ids()") == expected
    assert _ids(page) == expected[: len(_ids(page))]
    assert (
        f"{len(expected)} of {N_FEATURES}"
        in page.locator("[data-grid-tools=features] .grid-status").inner_text()
    )
    page.fill("[data-grid-tools=features] [data-grid-filter]", "")
    page.select_option("[data-grid-tools=features] [data-grid-flag]", "-dead")
    alive = [i for i in range(N_FEATURES) if feats[i]["density"] > 0]
    assert len(alive) < N_FEATURES and page.evaluate("() => window.atlasGrids.features.ids()") == alive
    page.select_option("[data-grid-tools=features] [data-grid-flag]", "")

    # A drawn card is a link to its page.
    page.fill("[data-grid-tools=features] [data-grid-filter]", "f/321")
    assert _ids(page) == [321]
    page.click("#feature-grid > li a")
    page.wait_for_url(re.compile(r".*/f/321/index\.html$"))
    assert fake_label(321, 0) in page.content()
    assert not tab.errors, tab.errors


@needs_chromium
def test_map_cluster_lists_filled_from_data(tab, wide_site):
    page = tab.page
    page.goto((wide_site / MODEL / LAYER / "map" / "index.html").resolve().as_uri())
    box = page.locator("details[data-cluster]").first
    count = int(re.search(r"\((\d+)\)", box.locator("summary").inner_text()).group(1))
    box.locator("summary").click()
    page.wait_for_function(
        "() => document.querySelector('details[data-cluster]').hasAttribute('data-filled')"
    )
    assert box.locator(".cluster-list li").count() == count
    assert not tab.errors, tab.errors


@needs_chromium
def test_layer_page_without_javascript(browser, wide_site):  # noqa: F811
    t = _Page(browser, java_script_enabled=False)
    try:
        t.page.goto(_layer(wide_site).resolve().as_uri())
        assert t.page.locator("#feature-grid > li").count() == grid.N_SERVER_CARDS
        assert not t.page.locator("[data-grid-tools=features]").is_visible()
        # The noscript list links every further feature.
        assert (
            t.page.locator(
                f'noscript a[href="f/{N_FEATURES - 1}/index.html"], a[href="f/{N_FEATURES - 1}/index.html"]'
            ).count()
            >= 1
        )
    finally:
        t.close()
