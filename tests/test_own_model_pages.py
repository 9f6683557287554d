"""A user's own model in the functional style, built end to end: the pages say where the weights
came from, and give the reason where layer-to-layer weights cannot be computed."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest

from atlasgen.config import load_config
from atlasgen.pipeline import Pipeline
from atlasgen.progress import Console
from atlasgen.site.circuits import N_CLASS_DENSE
from atlasgen.site.pages import N_CLASS_FEATURES, _provenance_text, below_chance
from tests.test_circuits_site import _page_order, _selective
from tests.test_models_real import TINY_STAGES, _art, _image_folder, _sae, _write

# Smaller still: one-step variants, no diverse set, a small atlas (a build in about a minute on 2 cores).
STAGES = {
    **TINY_STAGES,
    "featurevis": {**TINY_STAGES["featurevis"], "variant_steps": 1, "variant_image_size": 16, "diverse": 0},
    "atlas": {"grids": [4], "min_count": 2, "icon_size": 16, "steps": 4, "n_neighbors": 5},
}


@pytest.fixture(scope="module")
def gated_build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gated")
    _image_folder(folder / "data", classes=("a", "b", "c"), per_class=6, size=(40, 40))
    config = _write(
        folder,
        {
            "device": "cpu",
            "dataset": {"source": "folder", "path": "data", "image_size": 32},
            "model": {"source": "factory", "name": "gres", "arch": "tests.tiny_models:gated_resnet"},
            "layers": [{"name": n, "sae": _sae(8)} for n in ("stage1", "stage2", "stage3")],
            **STAGES,
        },
    )
    summary = Pipeline(load_config(config), console=Console(0)).build()
    return folder, folder / "_site", summary


def _text(path) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))))


def test_functional_relus_give_weights_and_a_gate_gives_a_reason(gated_build):
    folder, site, _ = gated_build
    circuits = _art(folder / ".atlasgen", "circuits")
    assert (circuits / "stage2" / "upstream.npz").is_file()  # torch.relu / F.relu linearized
    skipped = json.loads((circuits / "stage3" / "upstream_skipped.json").read_text())
    assert skipped["layer"] == "stage2"
    assert "goes through sigmoid in module 'stage3'" in skipped["reason"]
    assert not (circuits / "stage3" / "upstream.npz").exists()

    because = "The path from 'stage2' to 'stage3' goes through sigmoid in module 'stage3'"
    stage2_page = _text(site / "gres" / "stage2" / "f" / "0" / "index.html")
    assert "Weights from stage1 features" in stage2_page and "Excitatory" in stage2_page
    assert f"Weights into stage3 {because}" in stage2_page
    stage3_page = _text(site / "gres" / "stage3" / "f" / "0" / "index.html")
    assert f"Weights from stage2 {because}" in stage3_page
    class_page = _text(site / "gres" / "classes" / "a" / "index.html")
    # The circuit is drawn where the weights exist, and says where it stops and why.
    assert 'aria-label="Circuit of class a: its top stage2 features and the stage1 features' in (
        site / "gres" / "classes" / "a" / "index.html"
    ).read_text(encoding="utf-8")
    assert f"The circuit stops at stage2: no weights from stage2 to stage3. {because}" in class_page
    assert "needs a second studied layer" not in class_page


def test_class_pages_without_facets_rank_by_contribution_in_one_list(gated_build):
    """A folder dataset records no facets: the class page ranks each layer's units by contribution, the
    weight beside each, in one list with no facet headings."""
    folder, site, _ = gated_build
    circuits = _art(folder / ".atlasgen", "circuits")
    info = json.loads((circuits / "stage3" / "class_contributions.json").read_text())
    assert info["groups"] == []
    with np.load(circuits / "stage3" / "class_contributions.npz") as z:
        assert "features_group" not in z.files
        contrib = z["features"][:, 0]
        z = dict(z)
    page = (site / "gres" / "classes" / "a" / "index.html").read_text(encoding="utf-8")
    assert 'class="facet-head"' not in page and "Known facets" not in page
    section = page.split('id="facets-stage3"')[1].split('class="neurons-head"')[0]
    assert "contribution</a> to the a logit" in section
    ranked = [int(f) for f in re.findall(r"stage3/f/(\d+)/index\.html", section)]
    dense = np.load(_art(folder / ".atlasgen", "examples") / "stage3" / "features.npz")["flag_dense"]
    # the class pages' ranking, brute force: selective first, the dense features that are not last,
    # near-duplicates apart
    crowd_of = dense & ~_selective(z, 0)
    order = [int(f) for f in _page_order(z, dense, 0) if contrib[f] > 0]
    want = [f for f in order if not crowd_of[f]][:N_CLASS_FEATURES] + [f for f in order if crowd_of[f]][
        :N_CLASS_DENSE
    ]
    assert ranked and ranked == want
    assert re.findall(r"#1\xa0[+]?[^ <]+ · w\xa0[+\-]?[^ <]+", section)


def test_model_page_says_the_model_was_used_as_given(gated_build):
    folder, site, summary = gated_build
    info = json.loads((_art(folder / ".atlasgen", "model") / "model.json").read_text())
    assert info["trained_by_atlasgen"] is False and info["n_heldout_images"] > 0
    page = _text(site / "gres" / "index.html")
    assert "Used as given: as built by tests.tiny_models:gated_resnet (its own initialisation)" in page
    assert "Trained on" not in page
    flagged = info["heldout_accuracy"] <= info["chance_accuracy"]
    assert ("Below chance." in page) == flagged
    assert any("at or below chance" in n for n in summary.notes) == flagged


def test_provenance_and_below_chance_wording():
    trained = {
        "weights": "trained by atlasgen on 120 training images",
        "n_heldout_images": 40,
        "heldout_accuracy": 0.9,
        "chance_accuracy": 0.25,
    }
    assert (
        _provenance_text(trained)
        == "Trained by atlasgen on 120 training images; accuracy measured on 40 held-out images."
    )
    assert not below_chance(trained)
    assert below_chance({**trained, "heldout_accuracy": 0.18})
    assert below_chance({**trained, "heldout_accuracy": 0.25})
    assert not below_chance({**trained, "heldout_accuracy": None})
    assert not below_chance({"heldout_accuracy": 1.0, "chance_accuracy": 1.0})  # one class: no chance to beat
    assert _provenance_text({}) is None


def test_a_one_class_folder_builds_and_says_what_it_skipped(tmp_path):
    _image_folder(tmp_path / "data", classes=("only",), per_class=8, size=(40, 40))
    config = _write(
        tmp_path,
        {
            "device": "cpu",
            "dataset": {"source": "folder", "path": "data", "image_size": 32},
            "model": {"source": "factory", "name": "one", "arch": "tests.tiny_models:functional_resnet"},
            "layers": [{"name": "stage2", "sae": _sae(8)}],
            **STAGES,
        },
    )
    summary = Pipeline(load_config(config), console=Console(0)).build()
    notes = "\n".join(summary.notes)
    assert "importance: skipped: importance needs a model with at least 2 outputs" in notes
    assert "game: skipped: the game asks which class an image shows, so it needs at least 2 classes" in notes
    assert "chance" not in notes  # one class: no chance level to fall below
    layer = _text(tmp_path / "_site" / "one" / "stage2" / "index.html")
    assert "importance not computed: importance needs a model with at least 2 outputs" in layer
    unit = _text(tmp_path / "_site" / "one" / "stage2" / "f" / "0" / "index.html")
    assert "importance not computed" in unit
    assert "Below chance." not in _text(tmp_path / "_site" / "one" / "index.html")
