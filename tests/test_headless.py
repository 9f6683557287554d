"""Headless models (`model.head: none`): an encoder's layers are studied without classes. The
analyses of classes are skipped with a reason that the build summary and every page that would show
them give in one line; the SAE, examples, visualisations, map and similar features are all there."""

from __future__ import annotations

import gzip
import json

import pytest

from atlasgen.config import ConfigError, load_config
from atlasgen.models import NO_HEAD_REASON
from atlasgen.pipeline import Pipeline, format_summary
from atlasgen.preflight import preflight
from atlasgen.progress import Console
from tests.test_models_real import _art, _image_folder, _sae, _write
from tests.test_own_model_pages import STAGES, _text

ENCODER = {"source": "factory", "name": "enc", "arch": "tests.tiny_models:tiny_encoder", "mean": [0.5] * 3}
ENCODER["std"] = [0.25] * 3


def _config(folder, model, **over):
    if not (folder / "data").exists():
        _image_folder(folder / "data", classes=("a", "b", "c"), per_class=6, size=(40, 40))
    data = {
        "device": "cpu",
        "dataset": {"source": "folder", "path": "data", "image_size": 32},
        "model": model,
        "layers": [{"name": n, "sae": _sae(8)} for n in ("stage1", "stage2")],
        **STAGES,
        **over,
    }
    return load_config(_write(folder, data))


@pytest.fixture(scope="module")
def headless_build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("headless")
    cfg = _config(folder, {**ENCODER, "head": "none"})
    summary = Pipeline(cfg, console=Console(0)).build()
    return folder, folder / "_site", summary


def test_an_encoder_needs_model_head_none_and_a_map_without_logits(tmp_path):
    with pytest.raises(ConfigError) as err:  # a dict is no tensor of logits: never guessed at
        preflight(_config(tmp_path, ENCODER), tmp_path / "_site")
    assert "returns a dict, not a (batch, classes) tensor" in str(err.value)
    assert "set model.head: none" in str(err.value)
    for source in ("predictions", "class_weights"):
        with pytest.raises(ConfigError) as err:
            _config(tmp_path, {**ENCODER, "head": "none"}, map={"source": source})
        assert f"map.source: {source!r} needs the model's class logits" in str(err.value)
    # An embedding of another size than the class count: the fix names model.head too.
    wide = {"source": "factory", "name": "w", "arch": "tests.tiny_models:fixed_four"}
    with pytest.raises(ConfigError) as err:
        preflight(_config(tmp_path, wide), tmp_path / "_site")
    assert "it has 4 outputs but the dataset has 3 classes" in str(err.value)
    assert "set model.head: none" in str(err.value)


def test_class_analyses_are_skipped_with_their_reason(headless_build):
    folder, _, summary = headless_build
    cache = folder / ".atlasgen"
    info = json.loads((_art(cache, "model") / "model.json").read_text())
    assert info["head"] == "none" and info["n_outputs"] is None and info["heldout_accuracy"] is None
    circuits = _art(cache, "circuits")
    assert json.loads((circuits / "classes_skipped.json").read_text())["reason"] == NO_HEAD_REASON
    assert not list(circuits.rglob("class_weights.npz")) and not list(
        circuits.rglob("class_contributions.npz")
    )
    assert (circuits / "stage2" / "upstream.npz").is_file()  # layer-to-layer weights need no classes
    assert json.loads((_art(cache, "importance") / "skipped.json").read_text())["reason"] == NO_HEAD_REASON
    metrics = json.loads((_art(cache, "sae") / "stage2" / "metrics.json").read_text())
    assert "explained_variance" in metrics and not any(k.startswith("downstream_") for k in metrics)
    text = format_summary(summary, folder / "_site", 1.0)
    for stage in ("model: no held-out accuracy", "circuits: class weights", "importance: skipped"):
        assert f"{stage}" in text and NO_HEAD_REASON in text


def test_pages_say_so_in_one_line_and_the_rest_is_there(headless_build):
    folder, site, _ = headless_build
    model_page = _text(site / "enc" / "index.html")
    assert (
        f"No held-out accuracy, class weights, class circuits or importance: {NO_HEAD_REASON}." in model_page
    )
    layer_page = _text(site / "enc" / "stage2" / "index.html")
    assert f"class weights not computed: {NO_HEAD_REASON}" in layer_page
    assert f"importance not computed: {NO_HEAD_REASON}" in layer_page
    for kind in ("f", "n"):
        unit = _text(site / "enc" / "stage2" / kind / "0" / "index.html")
        assert unit.count(f"Not computed: {NO_HEAD_REASON}.") == 1
        assert "Similar features" in unit or kind == "n"
        assert "Weights from stage1" in unit  # layer-to-layer weights
    class_page = _text(site / "enc" / "classes" / "a" / "index.html")
    assert f"not computed: {NO_HEAD_REASON}" in class_page and "that drive a" not in class_page
    assert (site / "enc" / "stage2" / "map" / "index.html").is_file()
    assert (site / "enc" / "stage2" / "map" / "data.js").is_file()
    with gzip.open(site / "data" / "enc" / "stage2" / "features.jsonl.gz", "rt") as f:
        record = json.loads(f.readline())
    assert record["class_weights"] is None and record["top_classes"]  # labels still give class shares
