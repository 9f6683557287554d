"""The bulk export (features.jsonl.gz, SAE weights) and the layer page's plots."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file as load_safetensors
from test_site import LAYERS, MODEL, fake_flags, make_fake_artifacts

from atlasgen.site import svg
from atlasgen.site.build import render_site

RECORD_KEYS = {
    "id",
    "label",
    "url",
    "density",
    "max_act",
    "mean_act",
    "label_entropy",
    "dead",
    "flags",
    "top_classes",
    "top_examples_classes",
    "examples",
    "neighbours",
    "decoder_neurons",
    "class_weights",
}


def _render(art, out: Path) -> Path:
    out.mkdir()
    render_site(
        artifacts=art,
        layers=LAYERS,
        model_name=MODEL,
        title="Export test",
        date="2024-05-01",
        base_url="",
        out_dir=out,
    )
    return out


def _records(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return make_fake_artifacts(tmp_path_factory.mktemp("export-art"))


@pytest.fixture(scope="module")
def two_sites(art, tmp_path_factory):
    root = tmp_path_factory.mktemp("export-sites")
    return _render(art, root / "a"), _render(art, root / "b")


def test_jsonl_records_match_the_artifacts(two_sites, art):
    site, _ = two_sites
    with np.load(art["examples"] / LAYERS[0] / "features.npz") as z:
        density, top_idx, top_val = z["density"], z["top_idx"], z["top_val"]
    labels = np.load(art["dataset"] / "labels.npy")
    names = [
        c["name"]
        for c in sorted(
            json.loads((art["dataset"] / "dataset.json").read_text())["classes"], key=lambda c: c["id"]
        )
    ]
    recs = _records(site / f"data/{MODEL}/{LAYERS[0]}/features.jsonl.gz")
    assert len(recs) == 20 and [r["id"] for r in recs] == list(range(20))
    for r in recs:
        assert RECORD_KEYS <= set(r), set(r) ^ RECORD_KEYS
        i = r["id"]
        assert r["density"] == pytest.approx(float(density[i]), abs=1e-6)
        assert r["dead"] == (float(density[i]) <= 0)
        assert r["flags"] == [f.replace("_", "-") for f in fake_flags(i, float(density[i]))]
        shown = [j for j in range(top_idx.shape[1]) if top_idx[i, j] >= 0]
        assert [e["index"] for e in r["examples"]] == [int(top_idx[i, j]) for j in shown]
        for e, j in zip(r["examples"], shown):
            assert e["class"] == names[int(labels[e["index"]])]
            assert e["activation"] == pytest.approx(float(top_val[i, j]), rel=1e-5)
            assert (site / e["image"]).is_file()
        assert len(r["neighbours"]) == 6 and all(n["id"] != i for n in r["neighbours"])
        cos = [n["cosine"] for n in r["neighbours"]]
        assert cos == sorted(cos, reverse=True)
        assert all(c["weight"] > 0 for c in r["class_weights"]["drives"])
        assert all(c["weight"] < 0 for c in r["class_weights"]["suppresses"])
        assert (site / r["url"]).is_file()
    assert recs[1]["dead"] and recs[1]["examples"] == []  # the fake layer's dead feature


def test_export_is_byte_identical_and_gzip_header_has_no_name_or_time(two_sites):
    a, b = two_sites
    for layer in LAYERS:
        rel = f"data/{MODEL}/{layer}/features.jsonl.gz"
        data = (a / rel).read_bytes()
        assert data == (b / rel).read_bytes()
        assert data[:2] == b"\x1f\x8b" and data[3] & 0x08 == 0  # no FNAME flag
        assert data[4:8] == b"\0\0\0\0"  # mtime 0


def test_sae_weights_are_shipped_with_the_manifest_hash(two_sites, art):
    """Artifacts whose cfg.json predates descriptions (no saelens/ copy either) publish a SAELens folder
    too."""
    from sae_lens import SAE

    site, _ = two_sites
    manifest = json.loads((site / "manifest.json").read_text())
    for layer in LAYERS:
        folder = site / f"data/{MODEL}/{layer}/sae"
        assert sorted(p.name for p in folder.iterdir()) == [
            "cfg.json",
            "metrics.json",
            "sae_weights.safetensors",
        ]
        sha = hashlib.sha256((art["sae"] / layer / "sae.npz").read_bytes()).hexdigest()
        cfg = json.loads((folder / "cfg.json").read_text())
        assert cfg["atlasgen"]["float32_sae_npz_sha256"] == sha == manifest["layers"][layer]["sae_sha256"]
        assert cfg["atlasgen"]["origin"] == manifest["layers"][layer]["sae"]["origin"] == "unknown"
        assert "k" in cfg["atlasgen"] and cfg["atlasgen"]["threshold"] == "global"
        sae = SAE.load_from_disk(folder, dtype="float32")  # loads in SAELens as it is
        with np.load(art["sae"] / layer / "sae.npz") as z:
            want = z["W_dec"].astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(sae.W_dec.detach().numpy(), want)
    assert manifest["urls"]["features_export"] == "data/<model>/<layer>/features.jsonl.gz"
    page = (site / MODEL / LAYERS[0] / "index.html").read_text()
    assert 'href="../../data/demonet/mixed4a/features.jsonl.gz"' in page
    assert 'href="../../data/demonet/mixed4a/sae/sae_weights.safetensors"' in page
    assert "SAE from</th><td>not recorded" in page


def test_layer_page_plots_have_one_mark_per_feature_and_bin(two_sites, art):
    site, _ = two_sites
    with np.load(art["examples"] / LAYERS[0] / "features.npz") as z:
        density = z["density"]
    page = (site / MODEL / LAYERS[0] / "index.html").read_text()
    scatter = re.search(r'<svg class="hist scatter".*?</svg>', page, re.S).group(0)
    alive = np.flatnonzero(density > 0)
    linked = re.findall(r'<a href="f/(\d+)/index.html"><circle ', scatter)
    assert [int(i) for i in linked] == alive.tolist()
    assert all((site / MODEL / LAYERS[0] / "f" / i / "index.html").is_file() for i in linked)
    hist = re.search(
        r'<svg class="hist" viewBox.*?aria-label="Histogram of feature densities.*?</svg>', page, re.S
    ).group(0)
    counts = [int(n.replace(",", "")) for n in re.findall(r": ([\d,]+) features</title>", hist)]
    assert len(counts) == 25 and sum(counts) == len(density)  # dead bar + 24 log-density bins


def test_scatter_is_compact_for_large_layers():
    rng = np.random.default_rng(1)
    n = 16384
    density = 10 ** rng.uniform(-5, -0.1, n)
    density[::64] = 0
    mean, ent = rng.uniform(0, 4, n), rng.uniform(0, 2.5, n)
    out = str(svg.density_scatter(density, mean, ent))
    alive = int((density > 0).sum())
    assert f'data-points="{alive}"' in out
    assert sum(d.count("h0") for d in re.findall(r' d="([^"]*)"', out)) == alive
    assert "<a " not in out and len(out.encode()) < 400_000
    small = str(svg.density_scatter(density[:100], mean[:100], ent[:100]))
    assert small.count("<circle ") == int((density[:100] > 0).sum())


def test_tiny_build_exports_every_feature(tiny_build):
    _, _, site = tiny_build
    manifest = json.loads((site / "manifest.json").read_text())
    for layer, info in manifest["layers"].items():
        recs = _records(site / f"data/{manifest['model']}/{layer}/features.jsonl.gz")
        assert [r["id"] for r in recs] == list(range(info["n_features"]))
        assert all(RECORD_KEYS <= set(r) for r in recs)
        assert any(r["examples"] for r in recs)
        # the published weights: a float16 SAELens folder naming the float32 SAE the manifest's hash is of
        folder = site / f"data/{manifest['model']}/{layer}/sae"
        assert sorted(p.name for p in folder.iterdir()) == [
            "cfg.json",
            "metrics.json",
            "sae_weights.safetensors",
        ]
        assert info["sae_weights"] == f"data/{manifest['model']}/{layer}/sae/sae_weights.safetensors"
        assert info["sae_weights_dtype"] == "float16"
        cfg = json.loads((folder / "cfg.json").read_text())
        assert cfg["dtype"] == "float16" and cfg["atlasgen"]["float32_sae_npz_sha256"] == info["sae_sha256"]
        tensors = load_safetensors(str(folder / "sae_weights.safetensors"))
        assert tensors["W_dec"].dtype == torch.float16
        assert tuple(tensors["W_dec"].shape) == (info["n_features"], info["n_neurons"])
