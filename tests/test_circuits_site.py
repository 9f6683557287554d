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
    # mixed5a as the shipped demo studies it: main visualisations only, importance on fewer images, no atlas
    small = {
        "featurevis": {"neuron": False, "negative": False, "diverse": 0},
        "importance": {"images": 16},
        "atlas": False,
    }
    config = write_tiny_config(
        folder,
        layers=[{"name": "mixed5a", "sae": sae, **small}, {"name": "mixed5b", "sae": sae}],
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
    for layer, method, images in (("mixed5a", "batched", 16), ("mixed5b", "closed form", 24)):
        info = json.loads((folders["importance"] / layer / "importance.json").read_text())
        assert method in info["method"] and info["images"] == images  # mixed5a: layers[].importance.images
        assert info["top_k"] == resolve_top_k("auto", 16)  # importance.top_k auto over the demo's 16 classes
        z = np.load(folders["importance"] / layer / "importance.npz")
        for kind in ("features", "neurons"):
            rank = z[f"{kind}_rank"]
            assert sorted(rank.tolist()) == list(range(1, len(rank) + 1))
            assert int(z[f"{kind}_topk"][rank == 1][0]) == z[f"{kind}_topk"].max()


def test_a_weight_kernel_is_an_inline_png_of_one_pixel_per_offset_in_the_diverging_colours():
    import base64
    import io

    from PIL import Image

    from atlasgen.site.circuits import kernel_img

    kernel = np.array([[1.0, -1.0, 0.0], [0.5, -0.25, 2.0]])
    html = str(kernel_img(kernel, 1.0, "weights of f/3 <per offset>"))
    assert 'width="30" height="20"' in html and 'title="weights of f/3 &lt;per offset&gt;"' in html
    data = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
    assert pixels.shape == (2, 3, 3)
    assert pixels[0, 0].tolist() == [255, 115, 40]  # the full positive colour (orange-red)
    assert pixels[0, 1].tolist() == [40, 135, 255]  # the full negative colour (blue)
    assert pixels[0, 2].tolist() == [255, 255, 255]  # zero: white
    assert pixels[1, 2].tolist() == pixels[0, 0].tolist()  # beyond the scale: clipped to it


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


def test_layer_overrides_of_variants_and_atlas(two_layers):
    """layers[].featurevis and layers[].atlas: mixed5a renders main images only and has no atlas, mixed5b
    keeps the top-level variants and its atlas."""
    _, folders, _ = two_layers
    fv = folders["featurevis"]
    assert json.loads((fv / "mixed5a" / "meta.json").read_text())["diverse"] == 0
    assert any((fv / "mixed5a" / "features").glob("*.webp"))
    for variant in ("features_neuron", "features_negative", "features_diverse", "neurons_negative"):
        assert not (fv / "mixed5a" / variant).exists(), variant
        assert any((fv / "mixed5b" / variant).rglob("*.webp")), variant
    atlas = {
        name: json.loads((folders["atlas"] / name / "atlas.json").read_text())
        for name in ("mixed5a", "mixed5b")
    }
    assert atlas["mixed5a"] == {"enabled": False, "grids": []} and atlas["mixed5b"]["grids"]


def _circuit_groups(html: str) -> list[dict]:
    """The class page's circuit as drawn: per mixed5b feature, its contribution label, and its mixed5a
    children in order, each with (feature, edge class, edge width, edge title value, edge label)."""
    svg = html.split('<svg class="circuit"')[1].split("</svg>")[0]
    groups = []
    for part in svg.split('<g class="circuit-group">')[1:]:
        part = part.split("</g>")[0]
        upper = re.findall(r'href="[^"]*mixed5b/f/(\d+)/index\.html"', part)
        lower = [int(g) for g in re.findall(r'href="[^"]*mixed5a/f/(\d+)/index\.html"', part)]
        values = re.findall(r'<text class="edge-value (pos|neg)"[^>]*>([^<]+)</text>', part)
        edges = re.findall(
            r'<path class="edge (pos|neg)" [^>]*stroke-width="([\d.]+)"><title>weight f/(\d+) '
            r"\u2192 f/(\d+): ([^<]+)</title>",
            part,
        )
        groups.append({"upper": [int(f) for f in upper], "lower": lower, "values": values, "edges": edges})
    return groups


def test_class_circuit_draws_the_top_contributors_and_their_signed_weights(two_layers):
    """Every class page's circuit: the top mixed5b contributors, each heading the mixed5a features with the
    strongest expanded weights into it (either sign, live ones only, brute force over the full weight
    matrix), every unit a link to its page with its thumbnail, every edge signed and labelled as in
    upstream.npz."""
    from atlasgen.circuits import expanded_weights
    from atlasgen.models import load_model
    from atlasgen.sae_formats import load_sae_any
    from atlasgen.site.artifacts import class_slugs
    from atlasgen.site.circuits import N_CIRCUIT_BELOW, N_CIRCUIT_TOP
    from atlasgen.site.fmt import fmt_signed

    cfg, folders, site = two_layers
    zc = np.load(folders["circuits"] / "mixed5b" / "class_contributions.npz")
    contrib = zc["features"]
    up = np.load(folders["circuits"] / "mixed5b" / "upstream.npz")
    model = load_model(folders["model"], cfg.model, 16)
    J = expanded_weights(model, "mixed5a", "mixed5b", 32).sum(axis=(2, 3))
    enc = load_sae_any(folders["sae"] / "mixed5b").W_enc.detach().double().numpy()
    dec = load_sae_any(folders["sae"] / "mixed5a").W_dec.detach().double().numpy()
    full = enc.T @ J @ dec.T  # (mixed5b features, mixed5a features)
    live = np.load(folders["examples"] / "mixed5a" / "features.npz")["density"] > 0
    dense = np.load(folders["examples"] / "mixed5b" / "features.npz")["flag_dense"]
    ds = json.loads((folders["dataset"] / "dataset.json").read_text())
    slugs = class_slugs([k["name"] for k in ds["classes"]])
    signs = set()
    moved = lifted = 0
    for c, slug in enumerate(slugs):
        folder = site / "demonet" / "classes" / slug
        html = (folder / "index.html").read_text()
        groups = _circuit_groups(html)
        # the class pages' ranking: contribution, selective first, dense others last, duplicates apart
        order = _page_order(zc, dense, c)
        want_upper = [int(f) for f in order if contrib[f, c] > 0][:N_CIRCUIT_TOP]
        plain = [int(f) for f in _page_order(zc, dense, c, apart=False) if contrib[f, c] > 0]
        moved += want_upper != plain[:N_CIRCUIT_TOP]
        by_contribution = np.lexsort((np.arange(contrib.shape[0]), -contrib[:, c], dense))
        lifted += (
            plain[:N_CIRCUIT_TOP] != [int(f) for f in by_contribution if contrib[f, c] > 0][:N_CIRCUIT_TOP]
        )
        assert [g["upper"] for g in groups] == [[f] for f in want_upper], folder.name
        widths = []
        for g, f in zip(groups, want_upper):
            # the class edge's label: the contribution
            assert g["values"][0] == ("pos", fmt_signed(float(contrib[f, c])))
            strongest = [int(j) for j in np.argsort(-np.abs(full[f]), kind="stable") if live[j]][
                :N_CIRCUIT_BELOW
            ]
            assert g["lower"] == strongest, (folder.name, f)
            stored = dict(zip(up["features_idx"][f].tolist(), up["features_w"][f].tolist()))
            assert len(g["edges"]) == len(g["lower"]) == len(g["values"]) - 1
            for j, (cls, width, src, dst, title), (vcls, label) in zip(
                g["lower"], g["edges"], g["values"][1:]
            ):
                w = stored[j]  # the drawn weight is upstream.npz's, and it is the full matrix's entry
                assert w == pytest.approx(full[f, j], rel=1e-4, abs=1e-6)
                assert (int(src), int(dst)) == (j, f)
                assert cls == vcls == ("pos" if w > 0 else "neg")
                assert title == label == fmt_signed(w)
                widths.append((abs(w), float(width)))
                signs.add(cls)
        # edge width grows with |weight| over the whole diagram
        widths.sort()
        assert [wd for _, wd in widths] == sorted(wd for _, wd in widths)
        # every unit links to an existing page and shows its thumbnail
        for href in re.findall(
            r'<a href="([^"]+)">', html.split('<svg class="circuit"')[1].split("</svg>")[0]
        ):
            assert (folder / href).resolve().is_file(), href
        for src in re.findall(r'<image[^>]* href="([^"]+)"', html):
            assert (folder / src).resolve().is_file(), src
        assert "inhibits" in html and "excites" in html  # the legend of the two signs
    assert signs == {"pos", "neg"}  # the tiny build draws both signs somewhere
    assert moved, "no class's circuit shows a near-duplicate moved down: the test cannot tell"
    assert lifted, "no class's circuit shows a selective feature moved up: the test cannot tell"


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
                                i.src = im.href.baseVal ? new URL(im.href.baseVal, location.href).href : ''; })))""")  # noqa: E501
        assert all(loaded), loaded
        page.screenshot(path=str(tmp_path / "class.png"), full_page=True)
        browser.close()


# ---------------------------------------------------------------- class contributions


def _class_images(cfg, folders, c):
    from atlasgen.circuits import class_image_indices
    from atlasgen.data import open_dataset

    data = open_dataset(folders["dataset"])
    idx = class_image_indices(
        data.labels, data.indices("train"), data.n_classes, cfg.circuits.images_per_class
    )
    return data, idx[data.labels[idx] == c]


def _edited_logits(model, layer, images, edit):
    """The model's logits with the layer's output a replaced by edit(a)."""
    import torch

    from atlasgen.models import get_module, layer_view

    view = layer_view(model, layer)
    handle = get_module(model, view.module).register_forward_hook(
        lambda _m, _i, o: view.splice(o, edit(view.view(o)))
    )
    try:
        with torch.no_grad():
            return model(images)
    finally:
        handle.remove()


def _feature_term(sae, a, i):
    """Feature i's reconstruction term code_i(x, p) * W_dec[i] at every position, as a (B, C, H, W) map."""
    from atlasgen.models import positions_as_vectors, vectors_as_map

    b, _, h, w = a.shape
    code = sae.encode(positions_as_vectors(a))[:, i : i + 1]
    return vectors_as_map(code * sae.W_dec[i], b, h, w)


def test_contributions_match_removing_each_units_term(two_layers):
    """mixed5b reaches the logits through pooling and a linear head: a unit's stored contribution to a
    class is the drop of that class's logit, averaged over the class's own images, when the unit's term
    is removed from the layer (a feature: its code times its decoder row at every position; a neuron:
    its value), and it equals the closed form (W_fc . W_dec^T)[c, i] x the class mean code."""
    import torch

    from atlasgen.models import load_model, positions_as_vectors
    from atlasgen.sae_formats import load_sae_any

    cfg, folders, _ = two_layers
    z = np.load(folders["circuits"] / "mixed5b" / "class_contributions.npz")
    info = json.loads((folders["circuits"] / "mixed5b" / "class_contributions.json").read_text())
    assert info["exact"] and "weight x activation" in info["method"]
    weights = np.load(folders["circuits"] / "mixed5b" / "class_weights.npz")["features"]
    model = load_model(folders["model"], cfg.model, 16).double().eval()
    sae = load_sae_any(folders["sae"] / "mixed5b").double().eval()
    checked = 0
    for c in (0, 5):
        data, idx = _class_images(cfg, folders, c)
        assert z["images"][c] == len(idx) > 0
        x = data.batch(idx).double()
        with torch.no_grad():
            clean = model(x)[:, c]
            acts = {}
            _edited_logits(model, "mixed5b", x, lambda a: acts.setdefault("a", a))
            a = acts["a"]
            b, _, h, w = a.shape
            image_code = sae.encode(positions_as_vectors(a)).view(b, h * w, -1).mean(1).numpy()
            mean_code = image_code.mean(0)
        scale = float(np.abs(z["features"][:, c]).max())
        assert scale > 0
        # each image's largest contributions to its own class, largest first: weight x its mean code
        rows = np.flatnonzero(z["image_class"] == c)
        assert len(rows) == len(idx)
        own = weights[:, c][None] * image_code
        kept = z["image_features_units"].shape[1]
        assert kept == min(64, own.shape[1])
        for r, k in zip(rows, range(len(idx))):
            units, values = z["image_features_units"][r], z["image_features_values"][r]
            assert np.all(np.diff(values) <= 0)
            np.testing.assert_allclose(values, np.sort(own[k])[::-1][:kept], rtol=1e-3, atol=1e-5 * scale)
            np.testing.assert_allclose(own[k][units], values, rtol=1e-3, atol=1e-5 * scale)
        top = np.argsort(-z["features"][:, c], kind="stable")
        for i in [*top[:3].tolist(), int(top[-1])]:
            with torch.no_grad():
                removed = _edited_logits(model, "mixed5b", x, lambda a, i=i: a - _feature_term(sae, a, i))[
                    :, c
                ]
            want = float((clean - removed).mean())
            assert z["features"][i, c] == pytest.approx(want, rel=1e-3, abs=1e-4 * scale)
            closed = weights[i, c] * mean_code[i]
            assert z["features"][i, c] == pytest.approx(closed, rel=1e-3, abs=1e-4 * scale)
            checked += want != 0
        for n in (int(np.argmax(z["neurons"][:, c])), 3):

            def drop(a, n=n):
                a = a.clone()
                a[:, n] = 0
                return a

            removed = _edited_logits(model, "mixed5b", x, drop)[:, c]
            nscale = float(np.abs(z["neurons"][:, c]).max())
            assert z["neurons"][n, c] == pytest.approx(
                float((clean - removed).mean()), rel=1e-3, abs=1e-4 * nscale
            )
    assert checked >= 4  # the checks compared non-zero contributions


def test_attributed_contributions_are_gradient_times_activation(two_layers):
    """mixed5a does not reach the head linearly: its contributions are gradient x activation, the
    gradient of the class logit (autograd, one image at a time, on a float64 model) dotted with the
    unit's own term in the layer, averaged over the class's images. (Central differences are no check
    here: the pool branch of mixed5b max-pools ReLU outputs, whose ties at 0 make the logit
    non-differentiable along such terms.)"""
    import torch

    from atlasgen.models import get_module, layer_view, load_model
    from atlasgen.sae_formats import load_sae_any

    cfg, folders, _ = two_layers
    z = np.load(folders["circuits"] / "mixed5a" / "class_contributions.npz")
    info = json.loads((folders["circuits"] / "mixed5a" / "class_contributions.json").read_text())
    assert not info["exact"] and "gradient x activation" in info["method"]
    model = load_model(folders["model"], cfg.model, 16).double().eval()
    sae = load_sae_any(folders["sae"] / "mixed5a").double().eval()
    view = layer_view(model, "mixed5a")
    for c in (2, 7):
        data, idx = _class_images(cfg, folders, c)
        assert z["images"][c] == len(idx) > 0
        x = data.batch(idx).double()
        feats = np.argsort(-np.abs(z["features"][:, c]), kind="stable")[:4]
        per_feature, per_neuron = [], []
        for k in range(len(idx)):
            seen = {}

            def keep(a):
                seen["a"] = a.detach().requires_grad_(True)
                return seen["a"]

            handle = get_module(model, view.module).register_forward_hook(
                lambda _m, _i, o: view.splice(o, keep(view.view(o)))
            )
            try:
                with torch.enable_grad():
                    logit = model(x[k : k + 1])[0, c]
            finally:
                handle.remove()
            (g,) = torch.autograd.grad(logit, seen["a"])
            a = seen["a"].detach()
            with torch.no_grad():
                per_feature.append([float((g * _feature_term(sae, a, int(i))).sum()) for i in feats])
                per_neuron.append((g * a).sum((2, 3))[0].numpy())
        want_f, want_n = np.mean(per_feature, axis=0), np.mean(per_neuron, axis=0)
        assert np.abs(want_f).max() > 0
        np.testing.assert_allclose(
            z["features"][feats, c], want_f, rtol=1e-3, atol=1e-4 * np.abs(want_f).max()
        )
        np.testing.assert_allclose(z["neurons"][:, c], want_n, rtol=1e-3, atol=1e-4 * np.abs(want_n).max())


def test_class_page_ranks_by_contribution_with_the_weight_beside_it_grouped_by_facet(two_layers):
    from atlasgen.site.artifacts import class_slugs
    from atlasgen.site.circuits import FACET_SHARE, N_CLASS_DENSE
    from atlasgen.site.pages import N_CLASS_FEATURES

    cfg, folders, site = two_layers
    ds = json.loads((folders["dataset"] / "dataset.json").read_text())
    z = np.load(folders["circuits"] / "mixed5b" / "class_contributions.npz")
    w = np.load(folders["circuits"] / "mixed5b" / "class_weights.npz")["features"]
    groups = json.loads((folders["circuits"] / "mixed5b" / "class_contributions.json").read_text())["groups"]
    slugs = class_slugs([k["name"] for k in ds["classes"]])
    c = 1
    assert ds["classes"][c]["facets"]  # the demo records facets
    html = (site / "demonet" / "classes" / slugs[c] / "index.html").read_text()
    section = html.split('id="facets-mixed5b"')[1].split('class="neurons-head"')[0]
    assert "contribution</a> to the" in section and "weight x activation" in section
    # the cards, wherever their facet group puts them, carry ranks 1..n in order of contribution
    cards = re.findall(
        r'mixed5b/f/(\d+)/index\.html".*?#(\d+)\xa0([+\-]?[^ <]*) · w\xa0([+\-]?[^ <]*)', section, re.S
    )
    assert cards, section[:800]
    ranked = sorted((int(rk), int(f)) for f, rk, _, _ in cards)
    # by contribution, brute force: the features selective for the class first (lift), the dense
    # features that are not selective after all the others
    dense = np.load(folders["examples"] / "mixed5b" / "features.npz")["flag_dense"]
    sel, lift = _selective(z, c), _lift(z)[:, c]
    crowd_of = dense & ~sel
    order = _page_order(z, dense, c)
    positive = [f for f in order if z["features"][f, c] > 0]
    others, crowd = [f for f in positive if not crowd_of[f]], [f for f in positive if crowd_of[f]]
    want = np.array(others[:N_CLASS_FEATURES] + crowd[:N_CLASS_DENSE])
    assert [f for _, f in ranked] == want.tolist()
    assert others and crowd, "this build cannot tell dense-last apart"
    assert [rk for rk, _ in ranked] == list(range(1, len(ranked) + 1))
    lifts = dict(re.findall(r'mixed5b/f/(\d+)/index\.html".*?· lift\xa0([^ <]*)', section, re.S))
    for f, _, contrib, weight in cards:
        assert float(contrib.replace("\u2212", "-")) == pytest.approx(
            z["features"][int(f), c], rel=0.05, abs=1e-3
        )
        assert float(weight.replace("\u2212", "-")) == pytest.approx(w[int(f), c], rel=0.05, abs=1e-3)
        assert float(lifts[f]) == pytest.approx(lift[int(f)], rel=0.05, abs=1e-3)
    # ranking by contribution is not ranking by weight on this build (else the test could not tell them apart)
    by_weight = np.lexsort((np.arange(w.shape[0]), -w[:, c]))[: len(ranked)]
    assert by_weight.tolist() != want.tolist()
    # each card sits under the facet whose images give at least half its positive contribution
    cols = [g for g, (gc, _) in enumerate(groups) if gc == c]
    block = np.maximum(z["features_group"][:, cols], 0)
    heads = re.split(r'<h3 class="facet-head">', section)[1:]
    names = [part.split("</h3>")[0] for part in heads]
    facet_heads = [n.removeprefix("facet: ") for n in names if n.startswith("facet: ")]
    assert facet_heads == ds["classes"][c]["facets"]
    placed = 0
    for name, part in zip(names, heads):
        for f in map(int, re.findall(r"mixed5b/f/(\d+)/index\.html", part)):
            share = block[f] / block[f].sum()
            placed += 1
            assert bool(crowd_of[f]) == name.startswith("dense, not selective ("), (f, name)
            if crowd_of[f]:
                continue
            if name == "across facets":
                assert share.max() < FACET_SHARE
            else:
                fi = ds["classes"][c]["facets"].index(name.removeprefix("facet: "))
                assert share[fi] >= FACET_SHARE and share.argmax() == fi
    assert placed == len(ranked)
    # an empty facet group counts the cards outside the dense group only
    for n in re.findall(r"None of the top (\d+) features", section):
        assert int(n) == len(others[:N_CLASS_FEATURES])
    # the circuit diagram starts from the same ranking: its mixed5b nodes are the top contributors
    svg = html.split('<svg class="circuit"')[1].split("</svg>")[0]
    nodes = list(dict.fromkeys(int(f) for f in re.findall(r"mixed5b/f/(\d+)/index\.html", svg)))
    assert nodes and nodes == [int(f) for f in want[: len(nodes)]]
    assert "contribute most to it on its own images" in html


def test_class_facets_without_facets_or_contributions(two_layers):
    """Without facet names the top units are one ranked list; without contributions they rank by weight."""
    import dataclasses

    from atlasgen.site.artifacts import load_artifacts
    from atlasgen.site.circuits import N_CLASS_DENSE, class_facets

    cfg, folders, _ = two_layers
    arts = load_artifacts(folders, [layer.name for layer in cfg.layers])
    L = next(L for L in arts.layers if L.name == "mixed5b")
    cards = [{"code": f"f/{i}", "href": f"f/{i}"} for i in range(L.n_features)]
    names = arts.dataset.facet_names[1]
    grouped = class_facets(L, cards, "f", 1, names, 6)
    assert grouped["ranked_by"] == "contribution" and grouped["groups"]
    flat = class_facets(L, cards, "f", 1, [], 6)
    assert flat["groups"] == [] and [u["code"] for u in flat["units"]] == [
        u["code"] for u in grouped["units"]
    ]
    old = class_facets(dataclasses.replace(L, contributions=None), cards, "f", 1, names, 6)
    wc = L.class_weights_features[:, 1]
    assert old["ranked_by"] == "weight" and old["groups"] == []
    dense = L.features.flag_dense
    order = [i for i in np.lexsort((np.arange(len(wc)), -wc, dense)) if wc[i] > 0]  # dense features last
    want = [i for i in order if not dense[i]][:6] + [i for i in order if dense[i]][:N_CLASS_DENSE]
    assert [u["code"] for u in old["units"]] == [f"f/{i}" for i in want]
    assert all(
        " · w\xa0" not in u["value"] and u["value"].startswith(f"#{u['rank']} w\xa0") for u in old["units"]
    )


def _lift(z, kind: str = "features") -> np.ndarray:
    """Brute force of the class pages' lift: each unit's class mean of the spatially averaged code over
    its mean on all the images read (the class means weighted by their image counts)."""
    mc, n = z[f"{kind}_mean"].astype(np.float64), z["images"].astype(np.float64)
    overall = (mc * n).sum(1) / n.sum()
    return np.divide(mc, overall[:, None], out=np.zeros_like(mc), where=(overall[:, None] > 0) & (mc > 0))


def _selective(z, c: int, kind: str = "features") -> np.ndarray:
    lift = _lift(z, kind)
    return lift[:, c] >= min(8.0, lift.shape[1] / 2)


def _page_order(z, dense: np.ndarray, c: int, apart: bool = True) -> np.ndarray:
    """Brute force of the class pages' ranking of features: by contribution, the selective ones first,
    the dense ones that are not selective last; among the positive ones (separately for those dense
    ones and the rest), each of the first 64 whose per-image contributions on the class's images have
    cosine >= 0.5 with one kept above it moves after the kept ones."""
    contrib = z["features"][:, c]
    sel = _selective(z, c)
    crowd = dense & ~sel
    order = np.lexsort((np.arange(len(contrib)), -contrib, ~sel, crowd))
    if not apart:
        return order
    rows = np.flatnonzero(z["image_class"] == c)

    def spread(units):
        head = [int(u) for u in units[:64]]
        vec = {u: np.zeros(len(rows)) for u in head}
        for j, r in enumerate(rows):
            for u, v in zip(z["image_features_units"][r], z["image_features_values"][r]):
                if int(u) in vec:
                    vec[int(u)][j] = max(float(v), 0.0)

        def cos(a, b):
            na, nb = np.linalg.norm(vec[a]), np.linalg.norm(vec[b])
            return 0.0 if na == 0 or nb == 0 else float(vec[a] @ vec[b]) / (na * nb)

        kept, later = [], []
        for u in head:
            (later if any(cos(u, k) >= 0.5 for k in kept) else kept).append(u)
        return kept + later + [int(u) for u in units[64:]]

    positive = contrib[order] > 0
    return np.array(
        spread(order[positive & ~crowd[order]])
        + spread(order[positive & crowd[order]])
        + list(order[~positive])
    )
