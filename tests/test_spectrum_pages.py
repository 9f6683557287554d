"""Feature and neuron pages show examples across the activation range, with heat-maps and arg-max crops."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from atlasgen.site.spectrum import crop_position

CHROMIUM = "/usr/bin/chromium"


def _examples_npz(cache: Path, name: str):
    (path,) = cache.glob(f"examples/*/mixed5b/{name}.npz")
    return np.load(path)


def test_crop_centres_on_the_argmax_position():
    assert crop_position((0, 0), (4, 4)) == "0% 0%"
    assert crop_position((3, 3), (4, 4)) == "100% 100%"
    # A middle position: the box centre shows the position's centre, cx * zoom - 0.5 = p * (zoom - 1).
    assert crop_position((1, 2), (4, 4)) == "71% 29%"


@pytest.mark.parametrize("kind,name", [("f", "features"), ("n", "neurons")])
def test_unit_pages_show_every_band(tiny_build, kind, name):
    folder, _, site = tiny_build
    ex = _examples_npz(folder / ".atlasgen", name)
    u = int(np.argmax(ex["band_count"].sum(1)))
    html = (site / f"demonet/mixed5b/{kind}/{u}/index.html").read_text()
    section = html[html.index('id="bands-title"') :]
    bands = re.findall(
        r'<div class="band" id="band-(\d)">(.*?)(?=<div class="band" id="band-|</section>)', section, re.S
    )
    assert [int(b) for b, _ in bands] == list(range(ex["band_idx"].shape[1]))
    top = set(ex["top_idx"][u][ex["top_idx"][u] >= 0].tolist())
    for b, body in bands:
        b = int(b)
        n_shown = len(re.findall(r'class="ex-img', body))
        sampled = ex["band_idx"][u, b][ex["band_idx"][u, b] >= 0]
        assert len(sampled) == min(ex["band_count"][u, b], ex["band_idx"].shape[2])
        # Images already among the top examples are not repeated in a band.
        in_top = sum(int(j) in top for j in sampled)
        assert n_shown == len(sampled) - in_top
        assert (f"and {in_top} of the top examples above" in body) == (in_top > 0 and n_shown > 0)
        assert body.count('data-crop="') == n_shown and body.count('<i style="--y:') == n_shown
        assert f"{ex['band_count'][u, b]:,} image" in body
    # Every example on the page, top or band, has a crop and a heat-map tile, all in one strip in the page's
    # <style>.
    assert html.count('data-crop="') == html.count('class="ex-img') == html.count('<i style="--y:') > 0
    assert html.count("data:image/png;base64,") == 1


def test_layer_page_lists_cofiring_pairs(tiny_build):
    folder, _, site = tiny_build
    (path,) = (folder / ".atlasgen").glob("examples/*/mixed5b/cooccurrence.npz")
    cooc = np.load(path)
    html = (site / "demonet/mixed5b/index.html").read_text()
    assert 'id="cooc-title"' in html
    a, b = cooc["pairs"][0]
    assert f"f/{a}</a>" in html and f"f/{b}</a>" in html
    # Counts are consistent: a pair never fires together more often than either alone.
    assert (
        cooc["pair_count"]
        <= np.minimum(cooc["fires"][cooc["pairs"][:, 0]], cooc["fires"][cooc["pairs"][:, 1]])
    ).all()
    # The layer's pairs are ranked by normalised PMI (atlasgen.cofiring), not by raw counts.
    assert (np.diff(cooc["pair_npmi"].astype(np.float64)) <= 0).all()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium not installed")
def test_band_heatmaps_toggle_and_crops_render(tiny_build):
    from playwright import sync_api

    folder, _, site = tiny_build
    ex = _examples_npz(folder / ".atlasgen", "features")
    u = int(np.argmax(ex["band_count"].sum(1)))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto((site / f"demonet/mixed5b/f/{u}/index.html").as_uri())
        page.wait_for_load_state("load")
        heat = page.locator("#bands .ex-img i").first
        crop = page.locator("#bands .ex-crop").first
        assert heat.is_visible() and crop.is_visible()
        assert page.evaluate(
            "() => getComputedStyle(document.querySelector('#bands .ex-crop')).backgroundImage"
        ).startswith('url("file:')
        toggle = page.locator('[data-heat-toggle="bands"]')
        toggle.click()
        assert not heat.is_visible() and crop.is_visible()
        toggle.click()
        assert heat.is_visible()
        browser.close()
