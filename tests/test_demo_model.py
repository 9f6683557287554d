"""The demo classifier, trained by atlasgen's own code, beats chance by a wide margin on held-out images."""

from __future__ import annotations

import json

import torch

from atlasgen.config import parse_config
from atlasgen.models import build_model, layer_activations
from atlasgen.progress import Console
from atlasgen.stage import StageContext
from atlasgen.stages import dataset as dataset_stage
from atlasgen.stages import model as model_stage


def test_demo_model_learns_the_planted_classes(tmp_path):
    cfg = parse_config(
        {
            "device": "cpu",
            "dataset": {"images_per_class": 60, "image_size": 32, "seed": 1},
            "model": {"train": {"epochs": 6, "batch_size": 32, "lr": 0.004}},
        },
        root=tmp_path,
    )
    console = Console(0)
    data_dir, model_dir = tmp_path / "dataset", tmp_path / "model"
    data_dir.mkdir(), model_dir.mkdir()
    dataset_stage.run(StageContext(cfg, data_dir, {}, console, "cpu"))
    model_stage.run(StageContext(cfg, model_dir, {"dataset": data_dir}, console, "cpu"))
    info = json.loads((model_dir / "model.json").read_text())
    assert info["n_classes"] >= 12
    # 16 classes: chance is 6 %; a model that learned the planted classes is far above it.
    assert info["heldout_accuracy"] > 4 * info["chance_accuracy"], info
    assert not (model_dir / "checkpoint.pt").exists()
    assert info["layers"]["mixed5b"][0] == 128


def test_mixed5b_reaches_the_logits_through_pooling_and_one_linear_layer():
    torch.manual_seed(0)
    model = build_model(parse_config({}).model, 16).eval()
    x = torch.rand(4, 3, 64, 64)
    acts = layer_activations(model, x, ["mixed5b"])["mixed5b"]
    assert acts.shape == (4, 128, 8, 8) and (acts >= 0).all()  # post-ReLU concatenation, as in InceptionV1
    assert torch.allclose(model.fc(acts.mean(dim=(2, 3))), model(x), atol=1e-5)
