"""open_clip's zero-shot head (`model.zero_shot`): the visual tower returns CLIP's class logits,
computed from the text tower's embeddings of one prompt per dataset class, equal to open_clip's own
model; a build then has class weights, class pages and importance. A small open_clip architecture
registered from a JSON config (random weights) keeps it at CPU speed."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from click.testing import CliRunner
from torchvision.transforms import Normalize

from atlasgen.cli import main
from atlasgen.config import ConfigError, load_config, parse_config
from atlasgen.models import ZERO_SHOT_HEAD, build_model, classifier_head, zero_shot_weights
from atlasgen.pipeline import Pipeline
from atlasgen.preflight import preflight
from atlasgen.progress import Console
from tests.test_models_real import _art, _image_folder, _sae, _write
from tests.test_own_model_pages import STAGES, _text

ARCH = "atlasgen-tiny-clip"
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TEMPLATE = "a photo of a {}."
CLASSES = ("cat", "dog", "car")


@pytest.fixture(scope="module", autouse=True)
def tiny_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clipcfg") / f"{ARCH}.json"
    path.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(path)


def _data(folder):
    if not (folder / "data").exists():
        _image_folder(folder / "data", classes=CLASSES, per_class=6, size=(40, 40))
    return folder / "data"


def _model(**over):
    return {"source": "open_clip", "name": ARCH, "zero_shot": {"template": TEMPLATE}, **over}


def _config(folder, model=None, **over):
    data = {
        "device": "cpu",
        "dataset": {"source": "folder", "path": str(_data(folder)), "image_size": 32},
        "model": model or _model(),
        "layers": [{"name": "transformer.resblocks.1", "sae": _sae(8)}],
        **STAGES,
        **over,
    }
    return _write(folder, data)


@pytest.mark.parametrize("arch", [ARCH, "ViT-B-32"])
def test_logits_equal_open_clips_own_and_the_prompts_are_the_class_names(tmp_path, arch):
    cfg = load_config(_config(tmp_path, _model(name=arch))).model
    side = open_clip.get_model_config(arch)["vision_cfg"]["image_size"]
    torch.manual_seed(0)
    model = build_model(cfg, len(CLASSES)).eval()
    assert classifier_head(model) is getattr(model, ZERO_SHOT_HEAD)
    torch.manual_seed(0)  # as the model stage does: both towers from one seeded model
    model.zero_shot_head.weight.data.copy_(zero_shot_weights(cfg, ["cat", "dog, domestic dog", "car"], None))

    torch.manual_seed(0)
    clip = open_clip.create_model(arch).eval()
    same_tower = zip(model.state_dict().items(), clip.visual.state_dict().items())
    assert all(ka == kb and torch.equal(a, b) for (ka, a), (kb, b) in same_tower)
    images = torch.rand(4, 3, side, side)
    normalise = Normalize(clip.visual.preprocess_cfg["mean"], clip.visual.preprocess_cfg["std"])
    prompts = open_clip.get_tokenizer(arch)([TEMPLATE.format(n) for n in ("cat", "dog", "car")])
    with torch.no_grad():
        image_features, text_features, scale = clip(normalise(images), prompts)
        expected = scale * image_features @ text_features.T
        logits = model(images)  # [0, 1] pixels: the tower normalises them itself
    assert logits.shape == (4, 3)
    assert torch.allclose(logits, expected, atol=1e-5, rtol=1e-5)


def test_config_errors_name_the_key(tmp_path):
    base = {"dataset": {"source": "folder", "path": str(_data(tmp_path)), "image_size": 32}}
    cases = [
        (
            {"source": "timm", "name": "resnet18", "zero_shot": {"template": TEMPLATE}},
            "needs open_clip's text",
        ),
        (_model(zero_shot={"template": "a photo"}), "exactly one '{}'"),
        (_model(zero_shot={"template": "{} and {}"}), "exactly one '{}'"),
        (_model(head="none"), "model.head is 'none'"),
        (_model(labels="labels.txt"), "model.labels: the zero-shot head has one output per dataset class"),
        (_model(zero_shot={"templates": TEMPLATE}), "model.zero_shot.templates: unknown key"),
    ]
    for model, message in cases:
        with pytest.raises(ConfigError) as err:
            parse_config({**base, "model": model}, root=tmp_path)
        assert message in str(err.value), (model, str(err.value))


def test_weights_without_a_text_tower_and_folder_ids_are_refused(tmp_path):
    torch.manual_seed(0)
    clip = open_clip.create_model(ARCH)
    torch.save(clip.visual.state_dict(), tmp_path / "visual.pt")
    cfg = parse_config(
        {
            "dataset": {"source": "folder", "path": str(_data(tmp_path)), "image_size": 32},
            "model": _model(weights="visual.pt"),
        },
        root=tmp_path,
    ).model
    with pytest.raises(ConfigError) as err:
        zero_shot_weights(cfg, list(CLASSES), tmp_path / "visual.pt")
    assert "visual.pt (model.weights) holds no text tower" in str(err.value)
    with pytest.raises(ConfigError) as err:
        zero_shot_weights(cfg, ["n01440764", "n01443537"], None)
    assert "folder ids such as 'n01440764'" in str(err.value)
    assert "dataset.class_names" in str(err.value)


@pytest.fixture(scope="module")
def clip_build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zeroshot")
    # The whole model's state dict as open_clip saves it: the visual tower from its visual.*
    # entries, the zero-shot head from its text tower.
    torch.manual_seed(3)
    clip = open_clip.create_model(ARCH)
    torch.save(clip.state_dict(), folder / "clip.pt")
    # Rendering in the build's own process: spawned ones would not know the registered architecture.
    cfg = load_config(_config(folder, _model(weights="clip.pt"), parallel={"featurevis": 1}))
    summary = Pipeline(cfg, console=Console(0)).build()
    return folder, folder / "_site", summary, clip


def test_a_build_has_class_logits_from_the_text_tower(clip_build):
    folder, site, _, clip = clip_build
    model_dir = _art(folder / ".atlasgen", "model")
    info = json.loads((model_dir / "model.json").read_text())
    assert info["class_outputs"] == [0, 1, 2] and info["n_outputs"] == 3
    classes = sorted(CLASSES)  # the folder's classes, in order
    assert info["zero_shot"]["prompts"] == [TEMPLATE.format(c) for c in classes]
    assert "zero-shot head" in info["weights"] and "'a photo of a {}.'" in info["weights"]
    assert info["heldout_accuracy"] is not None

    state = torch.load(model_dir / "model.pt", weights_only=True)
    tokens = open_clip.get_tokenizer(ARCH)([TEMPLATE.format(c) for c in classes])
    with torch.no_grad():
        rows = clip.logit_scale.exp() * clip.encode_text(tokens, normalize=True)
    assert torch.allclose(state[f"{ZERO_SHOT_HEAD}.weight"], rows, atol=1e-6)
    assert torch.equal(state["conv1.weight"], clip.visual.conv1.weight)

    # The analyses of classes ran on the zero-shot logits: class weights, pages, importance.
    circuits = _art(folder / ".atlasgen", "circuits")
    assert (circuits / "transformer.resblocks.1").is_dir()
    assert not list(folder.glob(".atlasgen/importance/*/skipped.json"))
    for c in CLASSES:
        page = site / ARCH / "classes" / c / "index.html"
        assert page.is_file(), page
    model_page = _text(site / ARCH / "index.html")
    assert (
        "zero-shot head: the text tower's embeddings of 'a photo of a {}.' for the 3 class names"
        in model_page
    )


def test_layers_reports_the_head_from_the_model(tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["layers", "-c", str(_config(tmp_path))])
    assert out.exit_code == 0, out.output
    assert "(output)" in out.output
    assert "class logits of the zero-shot head: one per dataset class (3)" in out.output
    (tmp_path / "h").mkdir()
    headless = _config(tmp_path / "h", {"source": "open_clip", "name": ARCH, "head": "none"})
    out = runner.invoke(main, ["layers", "-c", str(headless)])
    assert out.exit_code == 0, out.output
    assert "an embedding (model.head: none" in out.output
    (tmp_path / "r").mkdir()
    resnet = {"source": "torchvision", "name": "r18", "arch": "resnet18", "pretrained": False}
    out = runner.invoke(
        main, ["layers", "-c", str(_config(tmp_path / "r", resnet, layers=[{"name": "layer4"}]))]
    )
    assert out.exit_code == 0, out.output
    assert "class logits from 'fc' (512 -> 3, sized to the dataset's 3 classes)" in out.output


def test_the_whole_clip_model_is_never_guessed_at(tmp_path):
    """A factory returning the whole CLIP model (a tuple out of forward): the checks before the build
    name model.head: none; with it, the visual tower's modules are studied inside the whole model."""
    whole = {"source": "factory", "name": "clip", "arch": "tests.tiny_models:whole_clip"}
    whole |= {"mean": [0.5] * 3, "std": [0.25] * 3}
    layers = [{"name": "visual.transformer.resblocks.0"}]
    with pytest.raises(ConfigError) as err:
        preflight(load_config(_config(tmp_path, whole, layers=layers)), tmp_path / "_site")
    assert "returns a tuple, not a (batch, classes) tensor" in str(err.value)
    assert "set model.head: none" in str(err.value)
    found = preflight(
        load_config(_config(tmp_path, {**whole, "head": "none"}, layers=layers)), tmp_path / "_s"
    )
    assert "visual.transformer.resblocks.0" in found.module_names
