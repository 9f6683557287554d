"""Collections (atlasgen/unit_collections.py, atlasgen/site/collection_pages.py): the files' validation, the
sanitised prose and notes, the collection page (cards in order, circuit, citation) and its links from the
member pages, the home page, the export, the manifest and the search index; the build re-renders the site
only when a collection changes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_annotations import INJECTION, write
from test_site import LAYERS, MODEL, make_fake_artifacts, render

from atlasgen.unit_collections import CollectionError, check_units, identity, load_collections

L0, L1 = LAYERS  # mixed4a, mixed5b

GOOD = f"""---
title: Red things, two layers
description: Units that like red.
author: Ada Lovelace
date: 2026-11-20
units:
  - unit: {L1}/f/5
    note: The *first* one; compare {L1}/f/6.
  - unit: {L0}/f/3
    note: One layer down.
  - {{unit: {L1}/n/2}}
---
Why these: {L1}/f/5 fires on red, and [this neuron]({L1}/n/2) reads it.
"""


def errors_of(folder: Path) -> list[str]:
    with pytest.raises(CollectionError) as exc:
        load_collections(folder, LAYERS)
    return exc.value.errors


# ----------------------------------------------------------------------------- files


def test_valid_file(tmp_path):
    write(tmp_path, "red-things.md", GOOD)
    write(tmp_path, "README.md", "# our collections\n")  # skipped
    (c,) = load_collections(tmp_path, LAYERS)
    assert (c.slug, c.path, c.title, c.author, c.date) == (
        "red-things",
        "red-things.md",
        "Red things, two layers",
        "Ada Lovelace",
        "2026-11-20",
    )
    assert [m.code for m in c.members] == [f"{L1}/f/5", f"{L0}/f/3", f"{L1}/n/2"]
    assert c.members[0].note == f"The *first* one; compare {L1}/f/6." and c.members[2].note == ""
    assert set(c.links) == {(L1, "f", 6), (L1, "f", 5), (L1, "n", 2)}
    assert c.layers() == [L1, L0] and not c.circuit and len(c.sha256) == 64
    assert identity(tmp_path) == {"red-things.md": c.sha256}


@pytest.mark.parametrize(
    "rel, text, expected",
    [
        (
            "a.md",
            f"---\ntitle: x\ntitel: y\nunits: [{{unit: {L1}/f/1}}]\n---\n",
            "titel: unknown key. Did you mean 'title'?",
        ),
        (
            "a.md",
            f"---\ntitle: x\nunits: [{{unit: {L1}/f/1, nte: y}}]\n---\n",
            "units[0]: nte: unknown key. Did you mean 'note'?",
        ),
        (
            "Bad Name.md",
            f"---\ntitle: x\nunits: [{{unit: {L1}/f/1}}]\n---\n",
            "'Bad Name' is not a collection slug",
        ),
        ("sub/a.md", f"---\ntitle: x\nunits: [{{unit: {L1}/f/1}}]\n---\n", "is not a collection slug"),
        (
            "a.md",
            "---\ntitle: x\nunits: [{unit: mixed5c/f/1}]\n---\n",
            "units[0]: unit: 'mixed5c' is not a studied layer (did you mean 'mixed5b'?)",
        ),
        ("a.md", "---\ntitle: x\nunits: [{unit: f/1}]\n---\n", "units[0]: unit: 'f/1' is not a unit id"),
        (
            "a.md",
            f"---\ntitle: x\nunits: [{{unit: {L1}/f/1}}, {{unit: {L1}/f/1}}]\n---\n",
            "units[1]: unit: mixed5b/f/1 is already units[0]",
        ),
        ("a.md", f"---\nunits: [{{unit: {L1}/f/1}}]\n---\n", "title: missing"),
        ("a.md", "---\ntitle: x\n---\n", "units: missing"),
        ("a.md", "---\ntitle: x\nunits: []\n---\n", "units: expected a non-empty list"),
        ("a.md", f"---\ntitle: x\nunits: [{L1}/f/1]\n---\n", "units[0]: expected a mapping"),
        (
            "a.md",
            f"---\ntitle: x\ncircuit: yes please\nunits: [{{unit: {L1}/f/1}}]\n---\n",
            "circuit: 'yes please' is not true or false",
        ),
        (
            "a.md",
            f"---\ntitle: x\ncircuit: true\nunits: [{{unit: {L1}/f/1}}]\n---\n",
            "circuit: a circuit needs units of exactly two layers",
        ),
        (
            "a.md",
            f"---\ntitle: x\ncircuit: true\nunits: [{{unit: {L1}/f/1}}, {{unit: {L0}/n/1}}]\n---\n",
            "and one kind",
        ),
        (
            "a.md",
            f"---\ntitle: x\ndate: soon\nunits: [{{unit: {L1}/f/1}}]\n---\n",
            "date: 'soon' is not a date",
        ),
        ("a.md", "just prose\n", "no front matter"),
        ("a.md", "---\ntitle: [x\n---\n", "front matter is not valid YAML"),
    ],
)
def test_invalid_files(tmp_path, rel, text, expected):
    write(tmp_path, rel, text)
    errors = errors_of(tmp_path)
    assert len(errors) == 1 and errors[0].startswith(f"collections/{rel}: ") and expected in errors[0], errors


def test_unknown_units_and_links(tmp_path):
    write(tmp_path, "a.md", f"---\ntitle: x\nunits: [{{unit: {L1}/f/25, note: see {L1}/n/99}}]\n---\n")
    (c,) = load_collections(tmp_path, LAYERS)
    assert check_units([c], {(L1, "f"): 20, (L1, "n"): 8}) == [
        f"collections/a.md: units[0]: {L1}/f/25 is not a unit: {L1} has 20 features (ids 0 to 19). "
        "Fix: correct the id, or remove the entry.",
        f"collections/a.md: text links to {L1}/n/99, which is not a unit ({L1} has 8 neurons). "
        "Fix: correct the id.",
    ]


def test_missing_folder(tmp_path):
    with pytest.raises(CollectionError, match="site.collections: .* is not a folder"):
        load_collections(tmp_path / "nope", LAYERS)


# ----------------------------------------------------------------------------- a rendered site


def add_layer_weights(art: dict[str, Path], k: int = 3, seed: int = 1) -> dict[str, np.ndarray]:
    """Fake circuits artifacts between mixed4a (below) and mixed5b: the full summed weight matrices
    (upper x lower) per kind, of which each unit keeps its k most positive and k most negative partners
    in upstream.npz (mixed5b) and downstream.npz (mixed4a), as the circuits stage writes them."""
    rng = np.random.default_rng(seed)
    full = {"features": rng.normal(size=(20, 20)), "neurons": rng.normal(size=(8, 8))}

    def top(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.argsort(-m, axis=1, kind="stable")[:, :k]
        neg = np.argsort(m, axis=1, kind="stable")[:, :k]
        idx = np.concatenate([pos, neg], axis=1)
        return idx, np.take_along_axis(m, idx, axis=1).astype(np.float32)

    for layer, other, side, transpose in ((L1, L0, "upstream", False), (L0, L1, "downstream", True)):
        arrays = {}
        for key, m in full.items():
            idx, w = top(m.T if transpose else m)
            arrays[f"{key}_idx"], arrays[f"{key}_w"] = idx, w
            arrays[f"{key}_kernel"] = w[:, :, None, None]
        folder = art["circuits"] / layer
        np.savez(folder / f"{side}.npz", **arrays)
        (folder / f"{side}.json").write_text(
            json.dumps({"layer": other, "kernel": [1, 1], "method": "W_dec . J . W_enc", "top_k": k})
        )
    return full


@pytest.fixture(scope="module")
def collection_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("collections")
    art = make_fake_artifacts(root / "art")
    full = add_layer_weights(art)
    folder = root / "collections"
    write(folder, "red-things.md", GOOD)
    write(
        folder,
        "injected.md",
        INJECTION.replace("label:", "title:").replace("---\n", f"---\nunits: [{{unit: {L1}/f/7}}]\n", 1),
    )
    # A circuit: the mixed5b features 1, 2 and the mixed4a features their strongest partners name, plus one
    # more.
    up = np.load(art["circuits"] / L1 / "upstream.npz")
    lows = sorted({int(g) for f in (1, 2) for g in up["features_idx"][f][:2]} | {19})
    units = [f"{{unit: {L1}/f/1, note: top}}", f"{{unit: {L1}/f/2}}"] + [
        f"{{unit: {L0}/f/{g}}}" for g in lows
    ]
    write(
        folder,
        "two-step.md",
        f"---\ntitle: A two-step circuit\ncircuit: true\nunits: [{', '.join(units)}]\n---\n",
    )
    collections = tuple(load_collections(folder, LAYERS))
    out = root / "site"
    render(art, out, collections=collections)
    return out, collections, art, full, lows


def _page(site: Path, slug: str) -> str:
    return (site / MODEL / "collections" / slug / "index.html").read_text()


def test_collection_page_shows_members_in_order_with_notes(collection_site):
    site, *_ = collection_site
    html = _page(site, "red-things")
    assert "<h1>Red things, two layers</h1>" in html and '<p class="lede">Units that like red.</p>' in html
    codes = [c.strip() for c in re.findall(r"<p><b>([^<]+)", html)]
    assert codes == [f"{L1}/f/5", f"{L0}/f/3", f"{L1}/n/2"]
    assert re.findall(r'<li class="member"><ol class="grid"><li class="card"><a href="([^"]+)"', html) == [
        "../../mixed5b/f/5/index.html",
        "../../mixed4a/f/3/index.html",
        "../../mixed5b/n/2/index.html",
    ]
    assert '<img class="thumb" src="../../mixed5b/f/5/' in html and "fires on" in html
    # The note beside its card, its unit id linked; the prose's ids linked, relative to the page.
    assert (
        '<p class="member-note">The <em>first</em> one; compare <a href="../../mixed5b/f/6/index.html">'
        "mixed5b/f/6</a>.</p>" in html
    )
    assert '<a href="../../mixed5b/f/5/index.html">mixed5b/f/5</a> fires on red' in html
    assert '<a href="../../mixed5b/n/2/index.html">this neuron</a>' in html
    # Its own citation block, pinned by the file's hash and both layers' SAE hashes.
    cite = html.split('<section class="cite"')[1]
    assert (
        "Cite this collection" in cite
        and "https://example.github.io/atlas/demonet/collections/red-things/" in cite
    )
    assert cite.count("SAE of ") >= 2 and "@misc{demo-atlas-demonet-collection-red-things," in cite


def test_injected_markup_does_not_reach_the_page(collection_site):
    site, *_ = collection_site
    html = _page(site, "injected")
    prose = html.split('<div class="notes collection-prose"')[1].split("</div>")[0]
    assert set(re.findall(r"<([a-z]+)[\s>]", prose)) <= {"p", "a", "em", "strong", "code"}
    assert re.findall(r'<a href="([^"]*)"', prose) == [
        "https://example.org/x",
        "https://example.org/pixel.png",
    ]
    assert "&lt;script&gt;" in prose and "<script>alert" not in html and "<img src=x" not in html


def test_member_pages_and_home_link_to_it(collection_site):
    site, *_ = collection_site
    page = (site / MODEL / L1 / "f" / "5" / "index.html").read_text()
    assert (
        '<p class="in-collections">In collections: <a href="../../../collections/red-things/index.html">'
        "Red things, two layers</a></p>" in page
    )
    neuron = (site / MODEL / L1 / "n" / "2" / "index.html").read_text()
    assert "collections/red-things/index.html" in neuron
    assert "In collections" not in (site / MODEL / L1 / "f" / "4" / "index.html").read_text()
    home = (site / "index.html").read_text()
    section = home.split('<section id="collections"')[1].split("</section>")[0]
    assert re.findall(r'<a href="([^"]+)">([^<]+)</a>', section) == [
        ("demonet/collections/injected/index.html", "&lt;img src=x onerror=alert(1)&gt;"),
        ("demonet/collections/red-things/index.html", "Red things, two layers"),
        ("demonet/collections/two-step/index.html", "A two-step circuit"),
    ]
    assert "3 units" in section and "circuit" in section


def test_export_manifest_and_search_index(collection_site):
    site, collections, *_ = collection_site
    data = json.loads((site / f"data/{MODEL}/collections.json").read_text())
    red = next(c for c in data["collections"] if c["slug"] == "red-things")
    assert red["url"] == f"{MODEL}/collections/red-things/index.html" and red["author"] == "Ada Lovelace"
    assert [u["unit"] for u in red["units"]] == [f"{L1}/f/5", f"{L0}/f/3", f"{L1}/n/2"]
    assert red["units"][1] == {
        "unit": f"{L0}/f/3",
        "url": f"{MODEL}/{L0}/f/3/index.html",
        "note": "One layer down.",
    }
    assert red["prose"].startswith("Why these:") and red["sha256"] == collections[1].sha256
    manifest = json.loads((site / "manifest.json").read_text())
    assert manifest["collections"]["red-things.md"] == {
        "slug": "red-things",
        "url": f"{MODEL}/collections/red-things/index.html",
        "units": [f"{L1}/f/5", f"{L0}/f/3", f"{L1}/n/2"],
        "sha256": collections[1].sha256,
    }
    text = (site / "search_index.js").read_text()
    index = json.loads(text[len("window.ATLAS_SEARCH = ") : -2])
    entry = next(e for e in index["collections"] if e[1] == "Red things, two layers")
    assert entry[0] == f"{MODEL}/collections/red-things/index.html" and "reads it" in entry[2]


def test_circuit_collection_draws_the_known_weights(collection_site):
    site, _, art, full, lows = collection_site
    html = _page(site, "two-step")
    svg = html.split('<svg class="circuit"')[1].split("</svg>")[0]
    up = np.load(art["circuits"] / L1 / "upstream.npz")
    down = np.load(art["circuits"] / L0 / "downstream.npz")
    want = []
    for f in (1, 2):
        for g in lows:
            if g in up["features_idx"][f] or f in down["features_idx"][g]:
                want.append((g, f, full["features"][f, g]))
    drawn = re.findall(r"<title>weight mixed4a/f/(\d+) \u2192 mixed5b/f/(\d+): ([^<]+)</title>", svg)
    assert [(int(g), int(f)) for g, f, _ in drawn] == [(g, f) for g, f, _ in want] and len(want) >= 4
    for (_, _, text), (_, _, w) in zip(drawn, want):
        assert float(text.replace("\u2212", "-")) == pytest.approx(w, abs=0.006)
    assert svg.count('class="edge pos"') + svg.count('class="edge neg"') == len(want)
    # Every member is a node linking to its page; the table lists the same edges.
    assert svg.count("<a href=") == 2 + len(lows)
    assert html.count("<tr") - 1 == len(want)
    assert f"{len(want)} of the {2 * len(lows)} pairs are drawn" in html


def test_a_circuit_the_data_cannot_draw_is_an_error(tmp_path):
    art = make_fake_artifacts(tmp_path / "art")  # no layer-to-layer weights
    write(
        tmp_path / "c",
        "a.md",
        f"---\ntitle: x\ncircuit: true\nunits: [{{unit: {L1}/f/1}}, {{unit: {L0}/f/2}}]\n---\n",
    )
    collections = tuple(load_collections(tmp_path / "c", LAYERS))
    with pytest.raises(
        CollectionError, match=r"collections/a.md: circuit: no weights between mixed5b and mixed4a"
    ):
        render(art, tmp_path / "site", collections=collections)
    add_layer_weights(art, k=1)
    up = np.load(art["circuits"] / L1 / "upstream.npz")
    down = np.load(art["circuits"] / L0 / "downstream.npz")
    g = next(g for g in range(20) if g not in up["features_idx"][1] and 1 not in down["features_idx"][g])
    write(
        tmp_path / "c",
        "a.md",
        f"---\ntitle: x\ncircuit: true\nunits: [{{unit: {L1}/f/1}}, {{unit: {L0}/f/{g}}}]\n---\n",
    )
    collections = tuple(load_collections(tmp_path / "c", LAYERS))
    with pytest.raises(CollectionError, match=r"none of its mixed4a units is among the 1 strongest partners"):
        render(art, tmp_path / "site2", collections=collections)


def test_collection_of_a_missing_unit_stops_the_render(tmp_path):
    art = make_fake_artifacts(tmp_path / "art")
    write(tmp_path / "c", "a.md", f"---\ntitle: x\nunits: [{{unit: {L1}/f/20}}]\n---\n")
    with pytest.raises(
        CollectionError, match=r"units\[0\]: mixed5b/f/20 is not a unit: mixed5b has 20 features"
    ):
        render(art, tmp_path / "site", collections=tuple(load_collections(tmp_path / "c", LAYERS)))


# ----------------------------------------------------------------------------- the build


def _build(config: Path):
    from atlasgen.config import load_config
    from atlasgen.pipeline import Pipeline
    from atlasgen.progress import Console

    return Pipeline(load_config(config), console=Console(0)).build()


def test_changing_a_collection_rerenders_only_the_site(tiny_copy):
    from atlasgen.config import ConfigError

    folder, config, site = tiny_copy
    path = write(
        folder / "collections",
        "wheels.md",
        "---\ntitle: Wheels\nunits:\n  - {unit: mixed5b/f/3, note: round}\n  - {unit: "
        "mixed5b/n/1}\n---\nSee mixed5b/f/3.\n",
    )
    assert _build(config).ran == ["site"]  # no stage recomputed
    page = (site / "demonet/collections/wheels/index.html").read_text()
    assert "<h1>Wheels</h1>" in page and '<p class="member-note">round</p>' in page
    assert "collections/wheels/index.html" in (site / "demonet/mixed5b/f/3/index.html").read_text()
    before = json.loads((site / "manifest.json").read_text())["collections"]["wheels.md"]["sha256"]
    assert _build(config).ran == []  # unchanged: nothing to do
    path.write_text(path.read_text().replace("note: round", "note: round and black"))
    assert _build(config).ran == ["site"]
    after = json.loads((site / "manifest.json").read_text())["collections"]["wheels.md"]
    assert after["sha256"] != before and after["units"] == ["mixed5b/f/3", "mixed5b/n/1"]
    # Bad files stop the build before any stage runs, one line per problem naming the file and key.
    write(folder / "collections", "wheels.md", "---\ntitle: x\nunit: [{unit: mixed5b/f/3}]\n---\n")
    write(folder / "collections", "far.md", "---\ntitle: x\nunits: [{unit: mixed5b/f/100000}]\n---\n")
    with pytest.raises(ConfigError) as exc:
        _build(config)
    assert exc.value.errors == [
        "collections/wheels.md: unit: unknown key. Did you mean 'units'?",
        "collections/wheels.md: units: missing. Fix: list the units, e.g. units: [{unit: "
        "mixed5b/f/32, note: ...}].",
    ]
    (folder / "collections/wheels.md").unlink()
    with pytest.raises(ConfigError) as exc:
        _build(config)
    assert len(exc.value.errors) == 1
    assert re.match(
        r"collections/far.md: units\[0\]: mixed5b/f/100000 is not a unit: mixed5b has \d+ features",
        exc.value.errors[0],
    )


def test_the_demo_collection_is_valid_and_names_annotated_units():
    from atlasgen.annotations import annotations_dir, load_annotations
    from atlasgen.config import load_config
    from atlasgen.unit_collections import collections_dir

    cfg = load_config(Path(__file__).resolve().parents[1] / "site_config.yaml")
    layers = [layer.name for layer in cfg.layers]
    (c,) = load_collections(collections_dir(cfg), layers)
    annotated = {a.code for a in load_annotations(annotations_dir(cfg), layers)}
    assert c.slug == "cactus-and-train-facets" and {m.code for m in c.members} <= annotated
