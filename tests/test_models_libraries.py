"""Models by name from timm and open_clip (random init, CPU): the keys and their errors, input
size and normalisation read from each library's own config, local weights, and the checks that
run before any stage."""

from __future__ import annotations

import pytest
import torch
import yaml

from atlasgen.config import ConfigError, load_config, parse_config
from atlasgen.featurevis import render_units
from atlasgen.models import ModelLoadError, build_model, layer_activations, pretrained_state
from atlasgen.preflight import preflight
from tests.test_models_real import _image_folder

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)


def _model(**keys):
    return parse_config({"model": keys}).model


def test_config_keys_and_their_errors():
    cfg = _model(source="timm", name="vit_tiny_patch16_224", pretrained=False)
    assert cfg.arch == "vit_tiny_patch16_224" and cfg.name == "vit_tiny_patch16_224"
    cfg = _model(source="timm", name="tiny", arch="resnet18")
    assert cfg.arch == "resnet18" and cfg.pretrained is True  # empty pretrained: true, as torchvision
    assert _model(source="open_clip", name="ViT-B-32").pretrained is False  # empty: random weights
    assert _model(source="open_clip", name="ViT-B-32", pretrained="openai").pretrained == "openai"
    assert _model(source="torchvision", arch="resnet18").pretrained is True
    cases = [
        ({"source": "timm"}, "model.name: required when model.source is 'timm'"),
        ({"source": "open_clip", "name": "ViT-B-32", "pretrained": True}, "open_clip has no default weights"),
        ({"source": "timm", "name": "resnet18", "pretrained": "a1_in1k"}, "arch: resnet18.a1_in1k"),
        ({"source": "torchvision", "arch": "resnet18", "pretrained": "x"}, "model.pretrained: 'x'"),
        ({"source": "timms", "name": "resnet18"}, "Did you mean 'timm'?"),
    ]
    for keys, message in cases:
        with pytest.raises(ConfigError) as err:
            _model(**keys)
        assert message in str(err.value), (keys, str(err.value))


def test_unknown_library_names_suggest_the_nearest():
    with pytest.raises(ConfigError) as err:
        build_model(_model(source="timm", name="resnet181", pretrained=False), 3)
    assert "model.arch: 'resnet181' is not a timm model" in str(err.value) and "resnet18" in str(err.value)
    with pytest.raises(ConfigError) as err:
        build_model(_model(source="open_clip", name="ViT-B-33"), 3)
    assert "ViT-B-32" in str(err.value)
    with pytest.raises(ConfigError) as err:
        build_model(_model(source="open_clip", name="ViT-B-32", pretrained="no_such_tag"), 3)
    assert "laion2b_s34b_b79k" in str(err.value) and "model.pretrained" in str(err.value)


def test_timm_resnet18_reads_pretrained_cfg_and_runs_at_any_size():
    torch.manual_seed(0)
    model = build_model(_model(source="timm", name="resnet18", pretrained=False), 4).eval()
    pre = model.atlas_preprocess
    assert (pre.mean, pre.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert pre.input_size is None and not pre.fixed and pre.native == 224
    assert "any size (trained at 224 px)" in pre.describe()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)  # one output per class when random
    assert layer_activations(model, torch.rand(1, 3, 64, 64), ["layer4"])["layer4"].shape == (1, 512, 2, 2)
    over = build_model(
        _model(source="timm", name="resnet18", pretrained=False, mean=[0.5] * 3, input_size=96), 4
    )
    assert over.atlas_preprocess.mean == (0.5, 0.5, 0.5) and over.atlas_preprocess.input_size == 96
    assert over.atlas_preprocess.std == (0.229, 0.224, 0.225)
    assert "model.mean, model.input_size" in over.atlas_preprocess.origin


def test_timm_vit_fixed_size_and_featurevis_at_small_size():
    torch.manual_seed(0)
    model = build_model(_model(source="timm", name="vit_tiny_patch16_224", pretrained=False), 3).eval()
    pre = model.atlas_preprocess
    assert (pre.mean, pre.std, pre.input_size, pre.fixed) == ((0.5,) * 3, (0.5,) * 3, 224, True)
    # A 32 px image is resized to the 224 px the model takes, not refused by patch_embed.
    acts = layer_activations(model, torch.rand(1, 3, 32, 32), ["blocks.0"])["blocks.0"]
    assert acts.shape == (1, 192, 14, 14)  # timm's 196 patch tokens (no class token here)
    images = render_units(model, "blocks.0", [0], image_size=16, steps=1, batch_size=1)
    assert images.shape == (1, 16, 16, 3)
    assert build_model(
        _model(source="timm", name="vit_tiny_patch16_224", pretrained=False, input_size=224), 3
    )
    with pytest.raises(ConfigError) as err:
        build_model(_model(source="timm", name="vit_tiny_patch16_224", pretrained=False, input_size=128), 3)
    assert "model.input_size: 128" in str(err.value) and "only 224 px" in str(err.value)


def test_timm_local_weights_round_trip(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = build_model(_model(source="timm", name="resnet18", pretrained=False), 1000)
    save_file(source.state_dict(), tmp_path / "r18.safetensors")
    torch.save({"state_dict": source.state_dict()}, tmp_path / "r18.pt")
    for name in ("r18.safetensors", "r18.pt"):
        cfg = parse_config(
            {"model": {"source": "timm", "name": "resnet18", "weights": name}}, root=tmp_path
        ).model
        state = pretrained_state(cfg, tmp_path / name)
        torch.manual_seed(2)
        model = build_model(cfg, 4)  # weights given: the model keeps its own 1000-way head
        model.load_state_dict(state)
        x = torch.rand(1, 3, 32, 32)
        assert torch.equal(model.eval()(x), source.eval()(x)), name


def test_open_clip_visual_tower_preprocess_and_weights(tmp_path):
    torch.manual_seed(0)
    cfg = _model(source="open_clip", name="ViT-B-32")
    tower = build_model(cfg, 3).eval()
    assert type(tower).__name__ == "VisionTransformer" and "transformer.resblocks.11" in dict(
        tower.named_modules()
    )
    pre = tower.atlas_preprocess
    assert pre.mean == OPENAI_CLIP_MEAN and pre.input_size == 224 and pre.fixed
    assert pre.origin == "open_clip's preprocess_cfg"
    x = torch.rand(1, 3, 48, 48)
    assert tower(x).shape == (1, 512)  # image embeddings: no head
    # A whole-model state dict as open_clip saves it: atlasgen takes its visual.* entries.
    whole = {f"visual.{k}": v for k, v in tower.state_dict().items()} | {"logit_scale": torch.ones(())}
    torch.save(whole, tmp_path / "clip.pt")
    torch.manual_seed(5)
    other = build_model(cfg, 3).eval()
    other.load_state_dict(pretrained_state(cfg, tmp_path / "clip.pt"))
    assert torch.equal(other(x), tower(x))
    # model.pretrained as a local checkpoint file goes through open_clip's own loader.
    file_cfg = parse_config(
        {"model": {"source": "open_clip", "name": "ViT-B-32", "pretrained": "clip.pt"}}, root=tmp_path
    ).model
    with pytest.raises(ModelLoadError) as err:
        pretrained_state(file_cfg, None)  # a tower alone is no CLIP checkpoint: refused, with a fix
    assert "model.pretrained to a local checkpoint file" in str(err.value)
    with pytest.raises(ConfigError) as err, torch.device("meta"):  # as preflight builds it: no memory
        build_model(_model(source="open_clip", name="ViT-B-32", input_size=256), 3)
    assert "model.input_size: 256" in str(err.value)


def _folder_config(tmp_path, model, **over):
    tmp_path.mkdir(exist_ok=True)
    _image_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=1, size=(40, 40))
    data = {
        "device": "cpu",
        "dataset": {"source": "folder", "path": "data", "image_size": 32},
        "model": model,
        "layers": [{"name": "stage1"}],
        **over,
    }
    (tmp_path / "site_config.yaml").write_text(yaml.safe_dump(data))
    return load_config(tmp_path / "site_config.yaml")


def test_preflight_stops_wrong_size_and_headless_tower_before_any_stage(tmp_path):
    model = {"source": "timm", "name": "vit_tiny_patch16_224", "pretrained": False, "input_size": 96}
    cfg = _folder_config(tmp_path, model, layers=[{"name": "blocks.0"}])
    with pytest.raises(ConfigError) as err:
        preflight(cfg, tmp_path / "_site")
    assert "model.input_size: 96" in str(err.value)
    assert not (tmp_path / ".atlasgen").exists()
    cfg = _folder_config(
        tmp_path / "clip", {"source": "open_clip", "name": "ViT-B-32"}, layers=[{"name": "ln_post"}]
    )
    with pytest.raises(ConfigError) as err:
        preflight(cfg, tmp_path / "_site")
    assert "512-d image embeddings, not class logits" in str(err.value)
    assert "set model.head: none" in str(err.value)
    headless = {"source": "open_clip", "name": "ViT-B-32", "head": "none"}
    found = preflight(
        _folder_config(tmp_path / "clip_headless", headless, layers=[{"name": "ln_post", "tokens": "class"}]),
        tmp_path / "_site",
    )
    assert found.n_outputs is None and "ln_post" in found.module_names


def test_factory_of_unknown_normalisation_is_warned_about(tmp_path):
    model = {"source": "factory", "name": "fres", "arch": "tests.tiny_models:functional_resnet"}
    found = preflight(_folder_config(tmp_path, model), tmp_path / "_site")
    (warning,) = [w for w in found.warnings if "model.mean" in w]
    assert "model.std" in warning and "mean 0 and std 1" in warning
    assert found.model_input.startswith("input any size, mean (0, 0, 0)")
    given = preflight(
        _folder_config(tmp_path / "b", {**model, "mean": [0.5] * 3, "std": [0.2] * 3}), tmp_path / "_s"
    )
    assert not [w for w in given.warnings if "model.mean" in w]


def test_models_doc_examples_are_valid_and_the_readme_links_them():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "models.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b.split("```")[0]) for b in text.split("```yaml\n")[1:]]
    sources = []
    for block in blocks:
        model = {k: v for k, v in block["model"].items() if k not in ("weights", "labels")}  # files
        dataset = {"image_size": block.get("dataset", {}).get("image_size", 64)}
        sources.append(parse_config({"model": model, "dataset": dataset}).model.source)
    assert sources == ["torchvision", "timm", "open_clip", "open_clip", "inceptionv1", "factory", "factory"]
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "docs/models.md" in readme.split("## Your own model and images", 1)[1].split("\n## ", 1)[0]
