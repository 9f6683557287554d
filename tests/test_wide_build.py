"""The whole pipeline at 4,096 features (the width from which UMAP builds its neighbour graph with
pynndescent, which starts numba's thread pool) on a handful of tiny images, in one process."""

from __future__ import annotations

import json

import numpy as np
from conftest import TINY, write_tiny_config

WIDE = {
    "dataset": {"images_per_class": 3, "image_size": 32, "seed": 5},
    "model": {"train": {"epochs": 1, "batch_size": 32}},
    # DemoNet's mixed5b has 128 channels: 32 x 128 = 4,096 features
    "layers": [{"name": "mixed5b", "sae": {"expansion": 32, "k": 4, "steps": 4, "batch_size": 64}}],
    "activations": {"positions_per_image": 4, "shard_size": 300},
    "featurevis": {
        "image_size": 8,
        "thumb_size": 8,
        "steps": 1,
        "batch_size": 1024,
        "neuron": False,
        "negative": False,
        "diverse": 0,
        "variant_image_size": 8,
        "variant_steps": 1,
    },
    "examples": {"top_k": 2, "batch_size": 64, "band_samples": 1, "cooccurrence_images": 16},
    "importance": {"images": 8, "batch_size": 8},
    "map": {"levels": [2, 4], "n_neighbors": 5},
    # at least 4,096 distinct atlas points would need 4,096 images; the atlas runs after the map's
    # wide UMAP in the same process, which is where its thread setting used to fail
    "atlas": {"grids": [2], "min_count": 1, "icon_size": 8, "steps": 1, "n_neighbors": 5},
    "ratings": {"per_group": 2},
    "game": {"rounds": 2},
}


def test_a_4096_feature_build_runs_every_stage_in_one_process(tmp_path):
    import numba

    from atlasgen.config import load_config
    from atlasgen.pipeline import Pipeline
    from atlasgen.progress import Console

    config = write_tiny_config(tmp_path, **{k: WIDE.get(k, TINY.get(k)) for k in {*TINY, *WIDE}})
    threads = numba.get_num_threads()
    Pipeline(load_config(config), console=Console(0)).build()
    assert numba.get_num_threads() == threads  # the UMAP layouts leave numba's thread count as they found it
    site = tmp_path / "_site"
    layer = site / "demonet" / "mixed5b"
    mp = json.loads(next((tmp_path / ".atlasgen").glob("map/*/mixed5b/map.json")).read_text())
    assert len(mp["features"]) == 4096
    # dead features have no place on the map ({"dead": true}); every live one has
    live = [f for f in mp["features"] if not f.get("dead")]
    assert len(live) == 4096 - mp["n_dead"] and len(live) > 1
    xy = [(f["x"], f["y"]) for f in live]
    assert len(set(xy)) > 1 and all(0 <= c <= 1 for p in xy for c in p)
    pages = {p.parent.relative_to(layer).as_posix() for p in layer.rglob("index.html")}
    assert "." in pages and sum(1 for p in pages if p.split("/")[-1] == "4095") >= 1
    assert any((tmp_path / ".atlasgen").glob("atlas/*/mixed5b/atlas.json"))
    # class pages rank the 4,096 features from each image's 64 largest contributions
    with np.load(next((tmp_path / ".atlasgen").glob("circuits/*/mixed5b/class_contributions.npz"))) as z:
        assert z["image_features_units"].shape[1] == 64 and z["image_features_units"].dtype == np.int32
        assert int(z["image_features_units"].max()) < 4096
    classes = list((site / "demonet" / "classes").glob("*/index.html"))
    assert classes and all('id="facets-mixed5b"' in p.read_text() for p in classes)
