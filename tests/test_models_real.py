"""Real model sources (lucent's InceptionV1, torchvision, factories), layer views
(channel ranges, ViT tokens) and real dataset layouts, through the real pipeline."""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from atlasgen.config import ConfigError, load_config, parse_config
from atlasgen.models import (
    LayerView,
    attach_views,
    build_model,
    classifier_head,
    get_module,
    layer_activations,
    layer_view,
)
from atlasgen.pipeline import Pipeline
from atlasgen.progress import Console
from atlasgen.zoo import INCEPTIONV1_LAYERS

# Channel ranges of InceptionV1's mixed-block branches inside the block's output (lucent's concat order).
INCEPTIONV1_BRANCH_WIDTHS = {
    "3a": (64, 128, 32, 32),
    "3b": (128, 192, 96, 64),
    "4a": (192, 204, 48, 64),
    "4b": (160, 224, 64, 64),
    "4c": (128, 256, 64, 64),
    "4d": (112, 288, 64, 64),
    "4e": (256, 320, 128, 128),
    "5a": (256, 320, 128, 128),
    "5b": (384, 384, 128, 128),
}


def branch_channels(block: str, branch: str) -> tuple[int, int]:
    """[start, stop) of a branch (1x1, 3x3, 5x5, pool_reduce) in InceptionV1's mixed<block> output."""
    widths = INCEPTIONV1_BRANCH_WIDTHS[block]
    i = ("1x1", "3x3", "5x5", "pool_reduce").index(branch)
    return sum(widths[:i]), sum(widths[: i + 1])


@contextmanager
def splice_layer(model: torch.nn.Module, name: str, replace):
    """While active, the view ``name`` of every forward is replaced by ``replace(view)``
    ((B, C, H, W) -> (B, C, H, W), or None to keep the output as it is)."""
    view = layer_view(model, name)

    def hook(_module, _inputs, output):
        new = replace(view.view(output))
        return None if new is None else view.splice(output, new)

    handle = get_module(model, view.module).register_forward_hook(hook)
    try:
        yield view
    finally:
        handle.remove()


def _image_folder(
    root, classes=("n01440764", "n01443537", "n01484850"), per_class=4, size=(240, 200), seed=0
):
    """Class folders of small generated photos-to-be: smooth colour fields plus noise."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = np.zeros((size[1], size[0], 3)) + rng.uniform(0, 255, 3)
            base[..., c] = np.linspace(0, 255, size[0])[None, :]
            img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"img_{i}.{'png' if i % 2 else 'jpg'}")
    return root


TINY_STAGES = {
    "activations": {"positions_per_image": 4, "shard_size": 256, "batch_size": 8},
    "featurevis": {"image_size": 32, "thumb_size": 16, "steps": 1, "batch_size": 512},
    "examples": {"top_k": 2, "batch_size": 8},
    "map": {"levels": [2, 4], "n_neighbors": 3},
}


def _art(cache, stage):
    """The one artifact folder of a stage in a build's cache."""
    (folder,) = [p for p in (cache / stage).iterdir() if p.is_dir()]
    return folder


def _sae(steps=4):
    return {"expansion": 1, "k": 2, "steps": steps, "batch_size": 32}


def _write(folder, data):
    path = folder / "site_config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---------------------------------------------------------------- InceptionV1


def test_inceptionv1_modules_and_branch_channels():
    cfg = parse_config(
        {
            "model": {"source": "inceptionv1", "name": "inceptionv1", "pretrained": False},
            "dataset": {"image_size": 224},
        }
    )
    model = build_model(cfg.model, 3).eval()
    names = dict(model.named_modules())
    assert all(n in names for n in INCEPTIONV1_LAYERS)
    # Every branch's channel range inside the block equals that branch module's own output.
    views = [
        LayerView(f"b{i}", "mixed4a", branch_channels("4a", b))
        for i, b in enumerate(("1x1", "3x3", "5x5", "pool_reduce"))
    ]
    model.atlas_views = {v.name: v for v in views}
    model.atlas_views.update({b: LayerView(b, f"mixed4a_{b}") for b in ("1x1", "3x3", "5x5", "pool_reduce")})
    x = torch.rand(1, 3, 96, 96)
    acts = layer_activations(model, x, list(model.atlas_views))
    for i, b in enumerate(("1x1", "3x3", "5x5", "pool_reduce")):
        assert torch.equal(acts[f"b{i}"], acts[b])
    assert classifier_head(model).out_features == 1008


def test_inceptionv1_takes_lucid_input_range():
    """lucid's InceptionV1 sees x * 255 - 117 for x in [0, 1]."""
    cfg = parse_config(
        {"model": {"source": "inceptionv1", "name": "i", "pretrained": False}, "dataset": {"image_size": 224}}
    )
    model = build_model(cfg.model, 3).eval()
    seen = {}
    model.conv2d0_pre_relu_conv.register_forward_hook(lambda _m, inputs, _o: seen.update(x=inputs[0]))
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        model(x)
    # conv2d0 pads its input first; compare the un-padded middle.
    assert torch.allclose(seen["x"][..., 2:-3, 2:-3], x * 255 - 117, atol=1e-3)


def test_inceptionv1_offline_without_weights_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))

    def offline(*_a, **_k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    from atlasgen.models import ModelLoadError, pretrained_state

    cfg = parse_config({"model": {"source": "inceptionv1", "name": "i"}, "dataset": {"image_size": 224}})
    with pytest.raises(ModelLoadError) as err:
        pretrained_state(cfg.model, None)
    text = str(err.value)
    assert "inception5h.pth" in text and "model.weights" in text and "pretrained: false" in text


def test_inceptionv1_config_checks(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"source": "inceptionv1", "name": "i"}, "dataset": {"image_size": 64}})
    assert "224" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "model": {"source": "inceptionv1", "name": "i"},
                "dataset": {"image_size": 224},
                "layers": [{"name": "mixed3a_3", "module": "mixed3a_3x33"}],
            }
        )
    assert "mixed3a_3x3" in str(err.value)  # did-you-mean


def _run_stages(cfg, names, root):
    """Run the named stages in order, each into its own folder (the real stage code, without
    the rest of the pipeline); returns the folders by stage."""
    import importlib

    from atlasgen.pipeline import STAGES
    from atlasgen.stage import StageContext

    folders = {}
    for stage in STAGES:
        if stage.name not in names:
            continue
        out = root / stage.name
        out.mkdir(parents=True)
        importlib.import_module(stage.module).run(
            StageContext(cfg, out, {d: folders[d] for d in stage.deps}, Console(0), "cpu")
        )
        folders[stage.name] = out
    return folders


def _inception_config(tmp_path):
    _image_folder(tmp_path / "images")
    labels = [f"dummy{i}" for i in range(1008)]
    labels[1], labels[500], labels[1007] = "tench", "n01443537", "great white shark"
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    (tmp_path / "names.txt").write_text("n01440764 tench, Tinca tinca\nn01484850 great white shark\n")
    return _write(
        tmp_path,
        {
            "device": "cpu",
            "dataset": {
                "source": "folder",
                "path": "images",
                "image_size": 224,
                "class_names": "names.txt",
                "holdout_fraction": 0.25,
                "crop_fraction": 0.875,
            },
            "model": {
                "source": "inceptionv1",
                "name": "inceptionv1",
                "pretrained": False,
                "labels": "labels.txt",
            },
            "layers": [
                {"name": "mixed5a", "sae": _sae()},
                {"name": "mixed5b", "sae": _sae()},
                {"name": "mixed3a_3x3", "module": "mixed3a", "channels": [64, 192], "sae": _sae()},
            ],
            **TINY_STAGES,
        },
    )


def test_inceptionv1_stages(tmp_path):
    """Random InceptionV1 at 224 px on 12 generated images, through the dataset, model, activations,
    sae and circuits stages: mixed5b and mixed5a, the 3x3 branch of mixed3a as a channel range,
    circuits through softmax2's 1008 outputs. (The whole pipeline, with feature visualisation of
    every unit, is test_inceptionv1_whole_pipeline: minutes on a CPU.)"""
    cfg = load_config(_inception_config(tmp_path))
    f = _run_stages(cfg, {"dataset", "model", "activations", "sae", "circuits"}, tmp_path / "art")
    info = json.loads((f["model"] / "model.json").read_text())
    assert info["n_outputs"] == 1008
    # Classes are matched to outputs by id (n01443537) or readable name ("tench, Tinca tinca" -> "tench").
    assert info["class_outputs"] == [1, 500, 1007]
    assert info["layers"]["mixed3a_3x3"] == [128, 28, 28] and info["layers"]["mixed5b"] == [1024, 7, 7]
    c5b = json.loads((f["circuits"] / "mixed5b" / "circuits.json").read_text())
    assert c5b["exact"] is True  # mixed5b -> avgpool -> softmax2 is linear
    assert json.loads((f["circuits"] / "mixed5a" / "circuits.json").read_text())["exact"] is False
    # mixed5a -> mixed5b expanded weights through lucent's pool modules (linearized, checked by the stage)
    up = json.loads((f["circuits"] / "mixed5b" / "upstream.json").read_text())
    assert up["layer"] == "mixed5a" and up["kernel"] == [5, 5]
    assert (f["circuits"] / "mixed5a" / "downstream.npz").is_file()
    W = torch.load(f["model"] / "model.pt", weights_only=True)[
        "softmax2_pre_activation_matmul.weight"
    ].numpy()
    with np.load(f["circuits"] / "mixed5b" / "class_weights.npz") as z:
        assert z["neurons"].shape == (1024, 3)
        assert np.allclose(z["neurons"], W[[1, 500, 1007]].T, atol=1e-6)
    assert json.loads((f["activations"] / "mixed3a_3x3" / "meta.json").read_text())["d_in"] == 128
    assert json.loads((f["activations"] / "mixed5a" / "meta.json").read_text())["d_in"] == 832
    metrics = json.loads((f["sae"] / "mixed3a_3x3" / "metrics.json").read_text())
    assert "downstream_ce_recovered" in json.dumps(metrics)
    dataset = json.loads((f["dataset"] / "dataset.json").read_text())
    assert [c["name"] for c in dataset["classes"]] == ["tench, Tinca tinca", "n01443537", "great white shark"]


@pytest.mark.skipif(
    not __import__("os").environ.get("ATLASGEN_SLOW_TESTS"),
    reason="about 10 minutes on a shared CPU; set ATLASGEN_SLOW_TESTS=1",
)
def test_inceptionv1_whole_pipeline(tmp_path):
    """The same build through every stage and the site."""
    Pipeline(load_config(_inception_config(tmp_path)), console=Console(0)).build()
    site = tmp_path / "_site" / "inceptionv1"
    assert all((site / name).is_dir() for name in ("mixed5a", "mixed5b", "mixed3a_3x3"))


# ---------------------------------------------------------------- views: ViT tokens, splice


def _vit():
    from tests.tiny_models import tiny_vit

    torch.manual_seed(0)
    return tiny_vit(num_classes=5).eval()


@pytest.mark.parametrize(
    "tokens,shape", [("patches", (2, 32, 4, 4)), ("class", (2, 32, 1, 1)), ("mean", (2, 32, 1, 1))]
)
def test_vit_token_views(tokens, shape):
    model = _vit()
    model.atlas_views = {"b1": LayerView("b1", "encoder.layers.encoder_layer_0", None, tokens)}
    x = torch.rand(2, 3, 32, 32)
    raw = {}
    h = model.encoder.layers.encoder_layer_0.register_forward_hook(lambda _m, _i, o: raw.update(o=o))
    with torch.no_grad():
        clean = model(x)
    h.remove()
    with torch.no_grad():
        acts = layer_activations(model, x, ["b1"])["b1"]
    assert acts.shape == shape
    tok = raw["o"]  # (2, 17, 32): class token + 16 patches
    expected = {"class": tok[:, 0], "mean": tok[:, 1:].mean(1)}.get(tokens)
    if expected is not None:
        assert torch.allclose(acts[:, :, 0, 0], expected, atol=1e-5)
    else:  # patch (row, col) of the 4x4 grid is token 1 + 4 * row + col
        assert torch.allclose(acts[:, :, 1, 2], tok[:, 1 + 4 * 1 + 2], atol=1e-5)
    # Splicing the view back unchanged leaves the model's output unchanged; splicing a
    # change moves it, and the spliced-in view is what the next capture sees.
    with torch.no_grad(), splice_layer(model, "b1", lambda v: v):
        assert torch.allclose(model(x), clean, atol=1e-5)
    with torch.no_grad(), splice_layer(model, "b1", lambda v: v * 3.0 + v.flip(1)):
        assert not torch.allclose(model(x), clean, atol=1e-3)
    view = model.atlas_views["b1"]
    spliced = view.splice(tok, acts * 3.0 + acts.flip(1))
    assert torch.allclose(view.view(spliced), acts * 3.0 + acts.flip(1), atol=1e-5)


def test_channel_range_splice_keeps_other_channels():
    view = LayerView("b", "m", (2, 5))
    out = torch.randn(2, 8, 3, 3)
    new = torch.zeros(2, 3, 3, 3)
    spliced = view.splice(out, new)
    assert (
        torch.equal(spliced[:, 2:5], new)
        and torch.equal(spliced[:, :2], out[:, :2])
        and torch.equal(spliced[:, 5:], out[:, 5:])
    )
    assert torch.equal(view.view(out), out[:, 2:5])


def test_vit_pipeline_class_and_patch_tokens(tmp_path):
    """A tiny random ViT from a factory: one layer by class token, one by patch tokens."""
    config = _write(
        tmp_path,
        {
            "device": "cpu",
            "dataset": {"images_per_class": 3, "image_size": 32, "seed": 1},
            "model": {"source": "factory", "name": "vit", "arch": "tests.tiny_models:tiny_vit"},
            "layers": [
                {
                    "name": "block1_patches",
                    "module": "encoder.layers.encoder_layer_1",
                    "tokens": "patches",
                    "sae": _sae(8),
                },
                {
                    "name": "block1_cls",
                    "module": "encoder.layers.encoder_layer_1",
                    "tokens": "class",
                    "sae": _sae(8),
                },
            ],
            **TINY_STAGES,
        },
    )
    Pipeline(load_config(config), console=Console(0)).build()
    cache = tmp_path / ".atlasgen"
    acts = _art(cache, "activations")
    assert json.loads((acts / "block1_patches" / "meta.json").read_text())["grid"] == [4, 4]
    assert json.loads((acts / "block1_cls" / "meta.json").read_text())["grid"] == [1, 1]
    info = json.loads((_art(cache, "model") / "model.json").read_text())
    assert info["tokens"] == {
        "block1_patches": "the patch tokens, on their 4x4 grid",
        "block1_cls": "the class token (one vector per image: no spatial map)",
    }
    # The pages name the token studied; the class token (a 1x1 map) gets no heat-map and no crop.
    site = tmp_path / "_site" / "vit"

    def page_with_examples(layer):
        pages = [p.read_text(encoding="utf-8") for p in sorted((site / layer).glob("[fn]/*/index.html"))]
        return next(text for text in pages if 'class="ex-img"' in text)

    cls_page = page_with_examples("block1_cls")
    assert "Studied: the class token (one vector per image: no spatial map), so no heat-map." in cls_page
    assert "<style>.ex-img i" not in cls_page and "heat-legend" not in cls_page
    assert 'data-crop=""' in cls_page and "heat-toggle" not in cls_page
    patch_page = page_with_examples("block1_patches")
    assert "Studied: the patch tokens, on their 4x4 grid." in patch_page
    assert "<style>.ex-img i" in patch_page and 'data-crop=""' not in patch_page
    assert "the class token" in (site / "block1_cls" / "index.html").read_text(encoding="utf-8")


# ---------------------------------------------------------------- factory and torchvision


def test_factory_model_pipeline_and_layers_cli(tmp_path):
    config = _write(
        tmp_path,
        {
            "device": "cpu",
            "dataset": {"images_per_class": 3, "image_size": 32, "seed": 2},
            "model": {
                "source": "factory",
                "name": "tinycnn",
                "arch": "tests.tiny_models:tiny_cnn",
                "mean": [0.5, 0.5, 0.5],
                "std": [0.25, 0.25, 0.25],
            },
            "layers": [{"name": "conv2", "module": "3", "sae": _sae(8)}],
            **TINY_STAGES,
        },
    )
    Pipeline(load_config(config), console=Console(0)).build()
    circuits = json.loads((_art(tmp_path / ".atlasgen", "circuits") / "conv2" / "circuits.json").read_text())
    assert circuits["exact"] is True  # module 3 (the last ReLU) -> average pool -> linear: exact
    from click.testing import CliRunner

    from atlasgen.cli import main

    result = CliRunner().invoke(main, ["layers", "-c", str(config)])
    assert result.exit_code == 0, result.output
    lines = {line.split(None, 1)[0]: line.split()[1:] for line in result.output.splitlines()}
    from atlasgen.demo.dataset import CLASSES

    assert lines["3"] == ["16", "x", "8", "x", "8", "image", "map"]
    assert lines["6"] == [str(len(CLASSES)), "vector"]  # one output per (demo) dataset class


def test_factory_errors(tmp_path):
    cfg = parse_config({"model": {"source": "factory", "name": "x", "arch": "tests.tiny_models:nope"}})
    with pytest.raises(ConfigError) as err:
        build_model(cfg.model, 3)
    assert "no callable 'nope'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"source": "factory", "name": "x"}})
    assert "model.arch: required" in str(err.value)
    cfg = parse_config(
        {
            "model": {"source": "factory", "name": "x", "arch": "tests.tiny_models:tiny_cnn"},
            "layers": [{"name": "c", "module": "encoder"}],
        }
    )
    model = build_model(cfg.model, 3)
    with pytest.raises(ConfigError) as err:
        attach_views(model, cfg.layers)
    assert "no module 'encoder'" in str(err.value)


def test_torchvision_resnet18_random(tmp_path):
    cfg = parse_config(
        {
            "model": {"source": "torchvision", "name": "r18", "arch": "resnet18", "pretrained": False},
            "layers": [{"name": "layer4"}, {"name": "layer4_0", "module": "layer4.0"}],
        }
    )
    torch.manual_seed(0)
    model = build_model(cfg.model, 4).eval()
    attach_views(model, cfg.layers)
    assert classifier_head(model) is model.fc and model.fc.out_features == 4
    assert model.atlas_preprocess.mean == (0.485, 0.456, 0.406)
    x = torch.rand(2, 3, 64, 64)
    acts = layer_activations(model, x, ["layer4", "layer4_0"])
    assert acts["layer4"].shape == (2, 512, 2, 2)
    from atlasgen.stages.circuits import reaches_classifier_linearly

    assert reaches_classifier_linearly(model, "layer4", x)  # layer4 -> avgpool -> fc
    assert not reaches_classifier_linearly(model, "layer4_0", x)
    with pytest.raises(ConfigError) as err:
        build_model(
            parse_config({"model": {"source": "torchvision", "name": "r", "arch": "resnet181"}}).model, 4
        )
    assert "resnet18" in str(err.value)


# ---------------------------------------------------------------- datasets


def test_csv_dataset_class_names_and_subsampling(tmp_path):
    from atlasgen.data import read_class_names, read_image_csv, subsample

    _image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=3, size=(50, 40))
    rows = ["path,label"] + [
        f"imgs/{c}/img_{i}.{'png' if i % 2 else 'jpg'},{c}" for c in "ab" for i in range(3)
    ]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    classes, paths, labels = read_image_csv(tmp_path / "list.csv")
    assert (
        classes == ["a", "b"]
        and labels == [0, 0, 0, 1, 1, 1]
        and all(p.endswith((".png", ".jpg")) for p in paths)
    )
    (tmp_path / "names.txt").write_text("a\tapple pie\nb,banana\n# comment\n")
    assert read_class_names(tmp_path / "names.txt") == {"a": "apple pie", "b": "banana"}
    keep = subsample([0] * 10 + [1] * 10 + [2] * 3, per_class=4, limit=0, seed=0)
    assert [sum(1 for i in keep if i // 10 == c) for c in range(2)] == [4, 4] and len(keep) == 11
    assert keep == sorted(keep) == subsample([0] * 10 + [1] * 10 + [2] * 3, per_class=4, limit=0, seed=0)
    assert keep != subsample([0] * 10 + [1] * 10 + [2] * 3, per_class=4, limit=0, seed=1)
    assert len(subsample(list(range(20)), per_class=0, limit=7, seed=0)) == 7
    (tmp_path / "bad.csv").write_text("imgs/a/missing.png,a\n")
    from atlasgen.errors import AtlasgenError

    with pytest.raises(AtlasgenError) as err:
        read_image_csv(tmp_path / "bad.csv")
    assert "missing.png" in str(err.value)


def test_csv_dataset_stage(tmp_path):
    _image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=3, size=(50, 40))
    rows = [f"imgs/{c}/img_{i}.{'png' if i % 2 else 'jpg'},{c}" for c in "ab" for i in range(3)]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "names.txt").write_text("a apple\nb banana\n")
    config = _write(
        tmp_path,
        {
            "device": "cpu",
            "dataset": {
                "source": "csv",
                "path": "list.csv",
                "class_names": "names.txt",
                "image_size": 16,
                "images_per_class": 2,
                "limit": 3,
            },
        },
    )
    cfg = load_config(config)
    from atlasgen.stage import StageContext
    from atlasgen.stages import dataset as stage

    out = tmp_path / "ds"
    out.mkdir()
    stage.run(StageContext(cfg, out, {}, Console(0), "cpu"))
    from atlasgen.data import open_dataset

    data = open_dataset(out)
    assert len(data) == 3 and [c["name"] for c in data.classes] == ["apple", "banana"]
    assert data.pixels([0, 1, 2]).shape == (3, 16, 16, 3)
