"""One definition per number: rankings, ties, the activation histogram, the heat-map palette, citations,
CITATION.cff and the glossary (atlasgen/site/numbers.py, svg.py, images.py, pages.py, publish.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from atlasgen.site import numbers, pages, publish, svg
from atlasgen.site.images import HEAT_LEVELS, heat_gradient_css, heat_palette

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- ranking and ties


def test_look_first_leaves_out_dead_and_dense_and_orders_by_importance_then_entropy_then_id():
    density = np.array([0.0, 0.05, 0.5, 0.05, 0.10, 0.11, 0.02, 0.05])
    importance = np.array([9, 3, 50, 3, 1, 40, 3, 7])
    entropy = np.array([0.0, 0.9, 0.1, 0.2, 0.3, 0.0, 0.2, 2.0])
    order = numbers.look_first(density, importance, entropy, dense_threshold=0.10)
    # 0 dead, 2 and 5 dense (0.10 itself is not dense); 7 leads on importance; 3 and 6 tie on importance
    # and entropy, so the lower id comes first; 1 has the higher entropy of the importance-3 group.
    assert order.tolist() == [7, 3, 6, 1, 4]
    assert numbers.look_first(density, None, entropy, 0.10).tolist() == [3, 6, 4, 1, 7]
    assert numbers.look_first(density, None, None, 0.10).tolist() == [1, 3, 4, 6, 7]
    assert numbers.look_first(np.zeros(3), np.ones(3), np.ones(3)).tolist() == []
    # A low-confidence label goes after every confident one, whatever its importance.
    doubtful = np.array([False, False, False, False, False, False, False, True])
    assert numbers.look_first(density, importance, entropy, 0.10, doubtful).tolist() == [3, 6, 1, 4, 7]
    method = numbers.look_first_method(True, 0.10)
    assert "importance" in method and "10%" in method


def test_ranks_share_ties_and_dead_units_have_none():
    values = np.array([0, 5, 0, 7, 5, 0, 2])
    live = np.array([True, True, True, True, True, False, True])
    rank, ties = numbers.competition_ranks(values, live)
    assert rank.tolist() == [5, 2, 5, 1, 2, 0, 4]
    assert ties.tolist() == [1, 1, 1, 0, 1, 0, 0]
    assert numbers.rank_text(0, 5, 1, 6) == "0, tied with 1 other"
    assert numbers.rank_text(0, 190, 300, 480) == "0, tied with 300 others"
    assert numbers.rank_text(7, 1, 0, 6) == "7 (rank 1 of 6 live)"
    assert numbers.rank_text(0, 0, 0, 6) == "0 (dead: no rank)"
    # A negative net count says what it means on the page, not only in the tooltip.
    assert numbers.net_count_text(3) == "3" and numbers.net_count_text(0) == "0"
    assert numbers.net_count_text(-1) == "-1 (the model does better without it)"


# ---------------------------------------------------------------- activation histogram


def _bars(markup: str) -> list[tuple[float, float, str]]:
    return [
        (float(x), float(w), t)
        for x, w, t in re.findall(
            r'<rect(?: class="[^"]*")? x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="[\d.]+">'
            r"<title>([^<]*)</title>",
            str(markup),
        )
    ]


def test_activation_histogram_draws_log_bins_on_a_log_axis_with_the_non_firing_share():
    edges = np.logspace(-3, 0, 21).astype(np.float32)  # as the examples stage writes them
    hist = np.zeros(20, dtype=np.int64)
    hist[[0, 5, 10, 19]] = [4, 10, 20, 6]
    markup = svg.activation_histogram(hist, edges, max_act=95.7, fires=43, n_images=200)
    bars = _bars(markup)
    titles = [t for _, _, t in bars]
    assert titles[0] == "does not fire: 157 images (78.5%)"
    assert titles[1] == "fires below 0.0957: 3 images (1.5%)"  # 43 firing, 40 in the axis's range
    # Every image is counted once: silent + below + the bins.
    counts = [int(re.search(r": ([\d,]+) images", t).group(1).replace(",", "")) for t in titles]
    assert sum(counts) == 200
    # Equal-width log bins on a log axis: the x of bin j grows linearly in j, one width per bin.
    log_bars = bars[2:]
    widths = {round(w, 1) for _, w, _ in log_bars}
    assert len(widths) == 1
    step = (log_bars[1][0] - log_bars[0][0]) / 5  # bins 0 and 5
    assert log_bars[2][0] - log_bars[0][0] == pytest.approx(10 * step, abs=0.15)
    assert log_bars[3][0] - log_bars[0][0] == pytest.approx(19 * step, abs=0.15)
    assert "(log scale)" in markup and ">none<" in markup and ">1<" in markup and ">10<" in markup
    # The silent bar is set apart, left of the first log bin.
    assert bars[0][0] < bars[1][0] < log_bars[0][0]


def test_activation_histogram_leaves_out_a_tick_label_that_would_run_into_the_maximum():
    edges = np.logspace(-3, 0, 21).astype(np.float32)
    hist = np.zeros(20, dtype=np.int64)
    hist[[0, 19]] = [3, 5]

    def labels(markup) -> list[str]:  # the x axis's labels, in their group
        axis = re.search(r'<g text-anchor="middle"[^>]*>(.*?)</g>', str(markup)).group(1)
        return re.findall(r">([^<]*)</text>", axis)

    # A maximum of 1.78: the decade tick 1 sits 0.25 decades left of the "1.78 max" label, under it.
    assert labels(svg.activation_histogram(hist, edges, max_act=1.78, fires=8, n_images=20)) == [
        "none",
        "0.01",
        "0.1",
        "1.78 max",
    ]
    # A maximum of 9.5: the tick 1 is a decade away and stays; 10 is within a bin of it and stands for it.
    assert labels(svg.activation_histogram(hist, edges, max_act=9.5, fires=8, n_images=20))[-3:] == [
        "0.1",
        "1",
        "9.5 max",
    ]


def test_activation_histogram_refuses_edges_that_are_not_log_spaced():
    with pytest.raises(ValueError, match="log-spaced"):
        svg.activation_histogram(np.ones(4), np.linspace(0.1, 1, 5), 2.0, 4, 10)


def test_activation_histogram_of_a_dead_unit_shows_only_the_silent_bar():
    markup = svg.activation_histogram(np.zeros(20), np.logspace(-3, 0, 21), 0.0, 0, 50)
    assert [t for _, _, t in _bars(markup)] == ["does not fire: 50 images (100%)"]


# ---------------------------------------------------------------- heat-map palette


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722])


def test_heat_palette_is_monotone_over_any_background_dark_at_zero_brightest_at_the_max():
    pal = heat_palette().astype(np.float64)
    assert pal.shape == (HEAT_LEVELS, 4)
    alpha = pal[:, 3:4] / 255
    for background in (0.0, 40.0, 128.0, 255.0):  # a black, a dark, a grey and a white pixel
        seen = _luminance(alpha * pal[:, :3] + (1 - alpha) * background)
        assert np.all(np.diff(seen) >= 0), background
        assert seen[-1] > seen[0] + 25, background  # the maximum stands out, on a dark image too
    assert _luminance(pal[:1, :3])[0] < 5  # zero: a dark veil
    assert _luminance(pal[-1:, :3])[0] > 200  # the maximum: the brightest colour
    stops = re.findall(r"rgb\((\d+),(\d+),(\d+)\)", heat_gradient_css())
    legend = _luminance(np.array(stops, dtype=np.float64))
    assert len(legend) >= 3 and np.all(np.diff(legend) > 0)  # the legend runs the same way
    # The legend's colours live in the stylesheet, written once for every page.
    css = (ROOT / "static" / "atlas.css").read_text(encoding="utf-8")
    assert f"background: {heat_gradient_css()};" in css


# ---------------------------------------------------------------- citations


class _Layer:
    name = "mixed5b"
    sae_sha256 = "ab" * 32


def _site(**kw) -> pages.Site:
    base = dict(
        title="Tiny atlas",
        date="2026-11-21",
        base_url="",
        model="demonet",
        version="1",
        model_sha256="cd" * 32,
        dataset_identity="atlasgen-demo seed=3",
        dataset_images=192,
        dataset_sha256="ef" * 32,
    )
    return pages.Site(**{**base, **kw})


def test_citation_is_absolute_with_base_url_and_carries_every_hash_but_no_label():
    cite = pages.citation(
        _site(base_url="https://user.github.io/atlas/", authors=("Ada Lovelace",)), _Layer(), "f", 32
    )
    url = "https://user.github.io/atlas/demonet/mixed5b/f/32/index.html"
    assert cite["permalink"] == url and cite["absolute"]
    for text in (cite["bibtex"], cite["plain"]):
        assert url in text
        assert "ab" * 32 in text and "cd" * 32 in text and "ef" * 32 in text
        assert "atlasgen-demo seed=3" in text and "192 images" in text
    assert f"url          = {{{url}}}" in cite["bibtex"]
    relative = pages.citation(_site(), _Layer(), "n", 3)
    assert relative["permalink"] == "demonet/mixed5b/n/3/index.html" and not relative["absolute"]


def test_citation_does_not_change_when_a_label_changes(tiny_build):
    # The unit page's citation is built from the id alone: the same text whatever the label says.
    _, _, site = tiny_build
    model = json.loads((site / "manifest.json").read_text())["model"]
    page = (site / model / "mixed5b" / "f" / "0" / "index.html").read_text()
    bib = re.search(r'<pre class="bibtex"[^>]*>(.*?)</pre>', page, re.S).group(1)
    label = re.search(r'<span class="unit-label">([^<]*)</span>', page)
    if label:
        assert label.group(1) not in bib
    assert "title        = {{" + f"{model} mixed5b/f/0" + "}}" in bib


def test_citation_cff_takes_authors_and_hashes_and_refuses_no_authors():
    text = publish.citation_cff(
        title="T",
        authors=["Ada Lovelace", "Plato"],
        version="1",
        date="2026-11-21",
        url="https://x.org/",
        doi=None,
        identifiers=[("SAE of layer m, sha256", "ab" * 32)],
    )
    cff = yaml.safe_load(text)
    assert cff["authors"] == [{"given-names": "Ada", "family-names": "Lovelace"}, {"name": "Plato"}]
    assert cff["identifiers"] == [
        {"type": "other", "value": "ab" * 32, "description": "SAE of layer m, sha256"}
    ]
    with pytest.raises(ValueError, match="site.authors"):
        publish.citation_cff(title="T", authors=[], version="1", date="d", url="", doi=None)


# ---------------------------------------------------------------- glossary


def test_docs_glossary_holds_every_definition_the_pages_use():
    docs = (ROOT / "docs" / "analyses.md").read_text()
    glossary = " ".join(docs[docs.index("## Glossary") :].split())  # unwrapped
    for term in numbers.GLOSSARY:
        assert f"**{term.name}**: {term.short}." in glossary, term.anchor
    assert len({t.anchor for t in numbers.GLOSSARY}) == len(numbers.GLOSSARY)
    with pytest.raises(KeyError):
        numbers.glossary_href("no-such-term")
