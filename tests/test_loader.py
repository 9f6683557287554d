"""The one image loader every pass uses, and forwards stopped at the studied layer.

Decoding in worker processes must give exactly the pixels (and order) of decoding in this process;
sampling a folder must open only the files it draws; a traced forward must give the whole model's
activations while computing nothing past the layer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import FunctionalResNet, tiny_cnn

from atlasgen import data as data_mod
from atlasgen.config import DecodeConfig
from atlasgen.data import Dataset, list_image_folder, sample_image_folder
from atlasgen.models import layer_activations, truncated_forward


def _jpeg_folder(root, classes: int, per_class: int, side: int = 40, bad: int = 0):
    """Class folders of small JPEGs (a few of odd sizes and modes); ``bad`` truncated files per class."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            w, h = side + (i % 3) * 7, side + (i % 2) * 11
            im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            (im.convert("L") if i % 5 == 4 else im).save(folder / f"{i:03d}.jpg", quality=85)
        for j in range(bad):
            (folder / f"bad{j}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    return root


def _folder_dataset(tmp_path, decode=None) -> Dataset:
    root = _jpeg_folder(tmp_path / "images", classes=3, per_class=7)
    classes, paths, labels, _ = list_image_folder(root)
    art = tmp_path / "art"
    art.mkdir()
    info = {
        "classes": [{"id": i, "name": n} for i, n in enumerate(classes)],
        "image_size": 24,
        "crop_fraction": 0.875,
    }
    (art / "dataset.json").write_text(json.dumps(info), encoding="utf-8")
    (art / "paths.json").write_text(json.dumps(paths), encoding="utf-8")
    np.save(art / "labels.npy", np.asarray(labels, np.int64))
    np.save(art / "split.npy", np.zeros(len(labels), np.uint8))
    return Dataset(art, decode)


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_hold_the_pixels_of_batch_in_order(tmp_path, workers):
    data = _folder_dataset(tmp_path, DecodeConfig(workers=workers, prefetch_batches=1))
    order = np.random.default_rng(1).permutation(len(data))
    got = list(data.batches(order, 4))
    assert [len(idx) for idx, _ in got] == [4, 4, 4, 4, 4, 1]
    assert np.array_equal(np.concatenate([idx for idx, _ in got]), order)
    for idx, x in got:
        assert x.dtype == torch.float32 and tuple(x.shape[1:]) == (3, 24, 24)
        assert torch.equal(x, data.batch(idx))
    # a rank's share: the same batches, only those it owns
    mine = list(data.batches(order, 4, select=lambda b: b % 2 == 1))
    assert [i.tolist() for i, _ in mine] == [got[b][0].tolist() for b in (1, 3, 5)]
    assert all(torch.equal(a, got[b][1]) for (_, a), b in zip(mine, (1, 3, 5)))


def test_listing_opens_no_file_and_sampling_decodes_only_what_it_draws(tmp_path, monkeypatch):
    root = _jpeg_folder(tmp_path / "images", classes=4, per_class=30, side=16, bad=2)
    (root / "class0" / "notes.txt").write_text("not an image")
    opened = []
    real_open = Image.open

    def counting_open(fp, *a, **k):
        opened.append(str(fp))
        return real_open(fp, *a, **k)

    monkeypatch.setattr(Image, "open", counting_open)
    classes, paths, labels, skipped = list_image_folder(root)
    assert opened == [] and len(paths) == 4 * 32
    assert skipped and skipped[0][1].startswith("not an image file")

    checked = []
    real_check = data_mod._checked_mode
    monkeypatch.setattr(data_mod, "_checked_mode", lambda p, m: checked.append(str(p)) or real_check(p, m))
    keep, bad, _ = sample_image_folder(paths, labels, per_class=3, limit=0, seed=0, workers=0)
    assert len(keep) == 12 and sorted(np.asarray(labels)[keep].tolist()) == sorted([0, 1, 2, 3] * 3)
    # Only the drawn files (and the replacements of drawn files that were bad) were decoded.
    assert len(checked) == 12 + len(bad) and len(set(checked)) == len(checked)
    assert all("bad" in p for p, _ in bad)
    assert set(checked) >= {paths[i] for i in keep}


def test_truncated_forward_gives_the_models_activations_and_stops_at_the_layer():
    torch.manual_seed(0)
    model = FunctionalResNet().eval()
    x = torch.rand(3, 3, 32, 32)
    layers = ["stage1"]
    forward = truncated_forward(model, layers)
    assert isinstance(forward, torch.fx.GraphModule)
    called = [str(n.target) for n in forward.graph.nodes if n.op == "call_module"]
    assert called == ["stem", "stage1"]  # nothing after the layer is computed
    acts = {}
    hook = model.stage1.register_forward_hook(lambda m, i, o: acts.setdefault("full", o.detach()))
    with torch.no_grad():
        model(x)
    hook.remove()
    got = layer_activations(model, x, layers)["stage1"]
    assert torch.equal(got, acts["full"])


def test_truncated_forward_falls_back_to_the_model_when_it_cannot_trace():
    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_cnn(4)

        def forward(self, x):
            if x.mean() > 2:  # data-dependent control flow: torch.fx cannot trace it
                x = x * 0
            return self.net(x)

    model = Branchy().eval()
    layer = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d))
    assert truncated_forward(model, [layer]) is model
    x = torch.rand(2, 3, 32, 32)
    assert layer_activations(model, x, [layer])[layer].shape[0] == 2
