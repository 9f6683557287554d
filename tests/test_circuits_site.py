"""Circuits, importance and class pages on a real two-layer build (mixed5a -> mixed5b)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import TINY, write_tiny_config

from atlasgen.importance import resolve_top_k


@pytest.fixture(scope="module")
def two_layers(tmp_path_factory):
    from atlasgen.config import load_config
    from atlasgen.pipeline import Pipeline
    from atlasgen.progress import Console

    folder = tmp_path_factory.mktemp("two")
    sae = {"expansion": 2, "k": 4, "steps": 40, "batch_size": 128}
    config = write_tiny_config(
        folder,
        layers=[{"name": "mixed5a", "sae": sae}, {"name": "mixed5b", "sae": sae}],
        featurevis={**TINY["featurevis"], "steps": 4},
        importance={"images": 24, "batch_size": 12, "units_per_pass": 64},
    )
    cfg = load_config(config)
    pipe = Pipeline(cfg, console=Console(0))
    pipe.build()
    folders = {s.name: pipe.store.final(s.name, s.key) for s in pipe.states() if s.name != "site"}
    return cfg, folders, folder / "_site"


def test_layer_weights_match_the_models_expanded_weights(two_layers):
    from atlasgen.circuits import expanded_weights
    from atlasgen.models import load_model
    from atlasgen.sae_formats import load_sae_any

    cfg, folders, _ = two_layers
    up = np.load(folders["circuits"] / "mixed5b" / "upstream.npz")
    down = np.load(folders["circuits"] / "mixed5a" / "downstream.npz")
    assert json.loads((folders["circuits"] / "mixed5b" / "upstream.json").read_text())["layer"] == "mixed5a"
    model = load_model(folders["model"], cfg.model, 16)
    J = expanded_weights(model, "mixed5a", "mixed5b", 32)
    assert J.shape == (128, 112, 5, 5)  # the 5x5 branch sets the extent
    # neurons: the stored kernels are slices of J, ranked by their sums
    i = 7
    j = int(up["neurons_idx"][i, 0])
    np.testing.assert_allclose(up["neurons_kernel"][i, 0], J[i, j], rtol=1e-5, atol=1e-6)
    assert up["neurons_w"][i, 0] == pytest.approx(J[i].sum(axis=(1, 2)).max(), rel=1e-5)
    # features: W_enc(5b)^T J W_dec(5a)^T, summed over offsets
    enc = load_sae_any(folders["sae"] / "mixed5b").W_enc.detach().double().numpy()
    dec = load_sae_any(folders["sae"] / "mixed5a").W_dec.detach().double().numpy()
    summed = enc.T @ J.sum(axis=(2, 3)) @ dec.T
    k = up["features_w"].shape[1] // 2  # columns: k most positive, then k most negative
    for f in (0, 5):
        assert up["features_w"][f, 0] == pytest.approx(summed[f].max(), rel=1e-4)
        assert up["features_w"][f, k] == pytest.approx(summed[f].min(), rel=1e-4)
    g = 3
    assert int(down["features_idx"][g, 0]) == int(np.argmax(summed[:, g]))


def test_importance_is_stored_for_both_layers(two_layers):
    _, folders, _ = two_layers
    for layer, method in (("mixed5a", "batched"), ("mixed5b", "closed form")):
        info = json.loads((folders["importance"] / layer / "importance.json").read_text())
        assert method in info["method"] and info["images"] == 24
        assert info["top_k"] == resolve_top_k("auto", 16)  # importance.top_k auto over the demo's 16 classes
        z = np.load(folders["importance"] / layer / "importance.npz")
        for kind in ("features", "neurons"):
            rank = z[f"{kind}_rank"]
            assert sorted(rank.tolist()) == list(range(1, len(rank) + 1))
            assert int(z[f"{kind}_topk"][rank == 1][0]) == z[f"{kind}_topk"].max()


def test_pages_show_weights_importance_and_the_circuit(two_layers):
    _, _, site = two_layers
    feature = (site / "demonet" / "mixed5b" / "f" / "0" / "index.html").read_text()
    assert "Weights from mixed5a features" in feature and 'class="kernel"' in feature
    # A rank among the live features, a tie, or no rank for a dead feature (atlasgen.site.numbers.rank_text).
    assert "importance" in feature
    assert re.search(r"\(rank [\d,]+ of [\d,]+ live\)|, tied with [\d,]+ others?|\(dead: no rank\)", feature)
    assert re.search(r'href="(\.\./){3}mixed5a/f/\d+/index\.html"', feature)  # the shortest relative link
    lower = (site / "demonet" / "mixed5a" / "n" / "3" / "index.html").read_text()
    assert "Weights into mixed5b neurons" in lower
    layer = (site / "demonet" / "mixed5b" / "index.html").read_text()
    assert 'data-sort="importance"' in layer and "data-importance=" in layer
    classes = sorted((site / "demonet" / "classes").iterdir())
    page = (classes[0] / "index.html").read_text()
    assert '<svg class="circuit"' in page and "mixed5a/f/" in page and "W_fc . W_dec^T" in page


def test_class_page_in_a_browser(two_layers, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    _, _, site = two_layers
    page_path = sorted((site / "demonet" / "classes").iterdir())[0] / "index.html"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(page_path.as_uri())
        box = page.locator("svg.circuit").bounding_box()
        assert box and box["width"] > 200 and box["height"] > 200
        images = page.locator("svg.circuit image")
        assert images.count() >= 2
        # every thumbnail in the diagram loads from file://
        loaded = page.evaluate("""() => Promise.all(Array.from(document.querySelectorAll('svg.circuit image')).map(im =>
            new Promise(ok => { const i = new Image(); i.onload = () => ok(true); i.onerror = () => ok(false);
                                i.src = im.href.baseVal ? new URL(im.href.baseVal, location.href).href : ''; })))""")
        assert all(loaded), loaded
        page.screenshot(path=str(tmp_path / "class.png"), full_page=True)
        browser.close()
