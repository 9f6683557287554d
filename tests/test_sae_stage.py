"""The sae stage: downstream and uniform metrics, the SAELens export, and SAEs loaded from elsewhere."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import torch
import yaml

from atlasgen.sae_formats import load_external_sae, load_sae_any


def _sae_dir(folder):
    return next(p for p in (folder / ".atlasgen" / "sae").iterdir() if p.is_dir()) / "mixed5b"


def test_metrics_cover_both_distributions_and_downstream_fidelity(tiny_build):
    folder, _, site = tiny_build
    metrics = json.loads((_sae_dir(folder) / "metrics.json").read_text())
    for key in ("fvu", "l0", "dead_fraction", "dense_fraction", "cosine", "l2_ratio", "density_log10_hist"):
        assert key in metrics and f"uniform_{key}" in metrics
    assert metrics["uniform_n_vectors"] == metrics["downstream_images"] * 16  # all 4x4 positions at 32 px
    assert 0.0 <= metrics["downstream_top1_agreement"] <= 1.0 and metrics["downstream_kl"] >= 0.0
    assert metrics["downstream_ce_zero"] >= metrics["downstream_ce_clean"] - 1e-6
    layer_page = (site / "demonet" / "mixed5b" / "index.html").read_text()
    assert "top-1 agreement, reconstruction spliced in" in layer_page


def test_batchtopk_threshold_reproduces_the_training_l0(tiny_build):
    folder, _, _ = tiny_build
    training = json.loads((_sae_dir(folder) / "training.json").read_text())
    metrics = json.loads((_sae_dir(folder) / "metrics.json").read_text())
    assert abs(metrics["l0"] - training["train_l0"]) <= 0.1 * training["train_l0"], (
        metrics["l0"],
        training["train_l0"],
    )


def test_saelens_export_loads_back_identically(tiny_build):
    folder, _, _ = tiny_build
    ours = load_sae_any(_sae_dir(folder))
    exported = load_external_sae(_sae_dir(folder) / "saelens", d_in=ours.d_in)
    x = torch.rand(64, ours.d_in)
    with torch.no_grad():
        assert torch.allclose(exported(x), ours(x), atol=1e-6)
    cfg = json.loads((_sae_dir(folder) / "saelens" / "cfg.json").read_text())
    assert cfg["d_sae"] == ours.d_sae and cfg["metadata"]["hook_name"] == "mixed5b"


def test_build_with_an_sae_from_elsewhere_and_a_clear_error_for_a_broken_one(tiny_copy, tmp_path):
    folder, config, site = tiny_copy
    external = tmp_path / "external_sae"
    shutil.copytree(_sae_dir(folder) / "saelens", external)
    data = yaml.safe_load(config.read_text())
    data["layers"][0]["sae"]["weights"] = str(external)
    config.write_text(yaml.safe_dump(data))
    run = lambda: subprocess.run(
        [sys.executable, "-m", "atlasgen", "build", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=600,
    )
    out = run()
    assert out.returncode == 0, out.stderr
    assert "loaded" in out.stderr and "training" not in out.stderr.split("sae:")[1].split("featurevis")[0]
    ours = np.load(_sae_dir(folder) / "sae.npz")
    assert ours["W_dec"].shape[0] == json.loads((external / "cfg.json").read_text())["d_sae"]
    # A truncated weights file: one line naming the key and the file, exit 2, the previous site kept.
    weights = external / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    before = (site / "index.html").read_bytes()
    out = run()
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "layers.mixed5b.sae.weights:" in out.stderr and "sae_weights.safetensors" in out.stderr
    assert (site / "index.html").read_bytes() == before
