"""The activation store: magnitude sampling follows its probabilities; bad activations name their image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chisquare

from atlasgen.config import parse_config
from atlasgen.data import open_dataset
from atlasgen.errors import AtlasgenError
from atlasgen.progress import Console
from atlasgen.stage import StageContext
from atlasgen.stages import dataset as dataset_stage
from atlasgen.stages.activations import check_finite, sample_positions


def test_magnitude_sampling_frequencies_match_their_probabilities():
    torch.manual_seed(0)
    acts = torch.rand(1, 6, 3, 4) * torch.linspace(0.1, 3.0, 12).reshape(1, 1, 3, 4)
    norms = acts.flatten(2).transpose(1, 2).norm(dim=2)[0]
    expected_p = (norms / norms.sum()).double().numpy()
    expected_p /= expected_p.sum()
    draws = 20_000
    vectors, probs = sample_positions(
        acts.expand(draws, -1, -1, -1), "magnitude", 1, torch.Generator().manual_seed(1)
    )
    flat = acts.flatten(2).transpose(1, 2)[0]
    # Which position did each draw pick? Match the vector back to its position.
    picked = torch.cdist(vectors, flat).argmin(dim=1).numpy()
    counts = np.bincount(picked, minlength=12)
    assert chisquare(counts, expected_p * draws).pvalue > 1e-3
    # The stored probability of each vector is its position's probability.
    assert np.allclose(probs.numpy(), expected_p[picked], atol=1e-6)


def test_uniform_and_all_positions():
    acts = torch.rand(2, 4, 2, 3)
    v, p = sample_positions(acts, "all", 0, torch.Generator())
    assert v.shape == (12, 4) and torch.allclose(p, torch.full((12,), 1 / 6))
    v, p = sample_positions(acts, "uniform", 5, torch.Generator().manual_seed(0))
    assert v.shape == (10, 4) and torch.allclose(p, torch.full((10,), 1 / 6))


def test_nan_activations_name_the_image_file(tmp_path):
    root = tmp_path / "images"
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 30), (i * 40, 100, 50)).save(root / cls / f"{i}.png")
    cfg = parse_config({"dataset": {"source": "folder", "path": str(root), "image_size": 16}}, root=tmp_path)
    out = tmp_path / "dataset"
    out.mkdir()
    dataset_stage.run(StageContext(cfg, out, {}, Console(0), "cpu"))
    data = open_dataset(out)
    assert len(data) == 6 and data.n_classes == 2 and data.pixels([0]).shape == (1, 16, 16, 3)
    acts = torch.ones(3, 4, 2, 2)
    acts[2, 1, 0, 0] = float("nan")
    idx = np.array([0, 3, 4])
    with pytest.raises(AtlasgenError) as info:
        check_finite(acts, idx, data, "mixed5b")
    message = info.value.errors[0]
    assert data.describe(4) in message and data.describe(4).endswith("dogs/1.png")
    assert "NaN or inf" in message and "Fix:" in message
    check_finite(torch.ones(3, 4, 2, 2), idx, data, "mixed5b")  # finite: no error
