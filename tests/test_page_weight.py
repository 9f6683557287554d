"""Unit pages stay small (the size budget): shortest relative links, one heat-map strip per page."""

from __future__ import annotations

import posixpath
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from test_site import make_fake_artifacts, render  # noqa: E402

from atlasgen.site import fmt, urls  # noqa: E402


def test_shorten_links_keeps_every_target():
    page = "demonet/mixed5b/f/3/index.html"
    html = (
        '<a href="../../../../demonet/mixed5b/f/5/index.html">'
        '<img src="../../../../demonet/mixed5b/f/3/vis.webp">'
        '<a href="../../../../demonet/mixed5b/map/index.html#f=3">'
        '<a href="../../../../demonet/classes/cat/index.html">'
        '<a href="../../../../index.html"><link href="../../../../static/atlas.css">'
        '<a href="../../data/x.json"><a href="https://example.org/">'
        "<p>href=&quot;../../../../demonet/x&quot;</p>"
    )
    out = urls.shorten_links(html, page)
    assert out == (
        '<a href="../5/index.html">'
        '<img src="vis.webp">'
        '<a href="../../map/index.html#f=3">'
        '<a href="../../../classes/cat/index.html">'
        '<a href="../../../../index.html"><link href="../../../../static/atlas.css">'
        '<a href="../../data/x.json"><a href="https://example.org/">'
        "<p>href=&quot;../../../../demonet/x&quot;</p>"
    )
    # Every rewritten URL resolves to the same file as the root-prefixed one.
    before = re.findall(r'(?:href|src)="([^"]*)"', html)
    after = re.findall(r'(?:href|src)="([^"]*)"', out)
    for b, a in zip(before, after):
        if "://" not in b:
            assert posixpath.normpath(posixpath.join("demonet/mixed5b/f/3", b)) == posixpath.normpath(
                posixpath.join("demonet/mixed5b/f/3", a)
            )
    assert urls.shorten_links(html, "index.html") == html  # the root page has no prefix to shorten


def test_compact_html_drops_indentation_but_keeps_preformatted_text():
    html = (
        "<main>\n  <section>\n\n    <h2>x</h2>\n    text  <b>y</b>\n  </section>\n"
        '  <pre class="bibtex">@misc{a,\n  title = {t},\n    <i>kept</i>\n}</pre>\n'
        "  <textarea>\n  typed\n</textarea>\n</main>"
    )
    assert fmt.compact_html(html) == (
        "<main>\n<section>\n<h2>x</h2>\n    text  <b>y</b>\n</section>\n"
        '<pre class="bibtex">@misc{a,\n  title = {t},\n    <i>kept</i>\n}</pre>\n'
        "<textarea>\n  typed\n</textarea>\n</main>"
    )


def test_unit_page_carries_one_heat_strip_and_no_root_detours(tmp_path):
    art = make_fake_artifacts(
        tmp_path / "art",
        n_features=12,
        n_neurons=6,
        k=6,
        grid=7,
        band_samples=3,
        layers=("mixed5b",),
        n_images=60,
    )
    render(art, tmp_path / "site", layers=["mixed5b"], workers=1)
    for kind in ("f", "n"):
        html = (tmp_path / "site" / f"demonet/mixed5b/{kind}/3/index.html").read_text()
        n_examples = html.count('class="ex-img"')
        assert n_examples > 6  # top examples and band examples
        assert html.count("data:image/png;base64,") == 1 and html.count('<i style="--y:') == n_examples
        assert html.count("data-crop=") == n_examples
        # Links to the same layer's units go straight there, not up to the root and down again.
        assert "../../../../demonet/mixed5b/" not in html
        assert re.search(r'href="\.\./\d+/index\.html"', html)


def test_bands_do_not_repeat_top_examples():
    from types import SimpleNamespace

    import numpy as np

    from atlasgen.site import spectrum
    from atlasgen.site.images import HeatSprite

    class Images:
        pixelated = False

        def url(self, i):
            return f"images/{i}.webp"

    ds = SimpleNamespace(labels=np.zeros(100, dtype=np.int64), facets=None, facet_names=[[]])
    ex = SimpleNamespace(
        max_act=np.array([4.0]),
        top_idx=np.array([[7, 8, 9, -1]]),
        band_idx=np.array([[[7, 8, -1], [9, 50, 51], [60, -1, -1]]]),  # band 0: all top; band 1: one top
        band_val=np.ones((1, 3, 3), np.float32),
        band_pos=np.zeros((1, 3, 3, 2), np.int16),
        band_maps=np.ones((1, 3, 3, 2, 2), np.float16),
        band_count=np.array([[2, 40, 1]]),
        band_edges=np.array([1.0, 0.7, 0.3, 0.0]),
        band_edges_rel=np.array([[1.0, 0.7, 0.3, 0.0]]),
    )
    sprite = HeatSprite()
    bands = spectrum.bands(ds, lambda c: {"name": "c", "href": "c.html"}, ex, 0, Images(), sprite)
    assert [[e["index"] for e in b["examples"]] for b in bands] == [[], [50, 51], [60]]
    assert [b["in_top"] for b in bands] == [2, 1, 0]
    assert len(sprite) == 3  # no heat-map tile for an image that is not shown


def test_thumbnails_only_when_much_smaller(tmp_path):
    from atlasgen.site.pages import _thumbs_worthwhile

    assert _thumbs_worthwhile((224, 224), (64, 64)) and _thumbs_worthwhile((64, 64), (32, 32))
    assert not _thumbs_worthwhile((64, 64), (48, 48)) and not _thumbs_worthwhile((64, 64), None)
    art = make_fake_artifacts(
        tmp_path / "art", n_features=6, n_neurons=3, vis_size=64, thumb_size=48, layers=("mixed5b",)
    )
    render(art, tmp_path / "site", layers=["mixed5b"], workers=1)
    assert not list((tmp_path / "site").rglob("thumb.webp"))
    layer = (tmp_path / "site" / "demonet/mixed5b/index.html").read_text()
    assert 'src="f/0/vis.webp"' in layer and "thumb.webp" not in layer
