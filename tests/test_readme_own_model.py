"""The README's "Your own model and images" example, run as written (at a tiny size): its factory
module next to the config, its config keys, a state dict as `model.weights`, a labels file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from tests.test_models_real import TINY_STAGES, _image_folder, _sae

# Smaller still: one-step variants, no diverse set, a small atlas (a build in about a minute on 2 cores).
STAGES = {
    **TINY_STAGES,
    "featurevis": {**TINY_STAGES["featurevis"], "variant_steps": 1, "variant_image_size": 16, "diverse": 0},
    "atlas": {"grids": [4], "min_count": 2, "icon_size": 16, "steps": 4, "n_neighbors": 5},
}

ROOT = Path(__file__).resolve().parents[1]


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("## Your own model and images", 1)[1].split("\n## ", 1)[0]


def _block(section: str, lang: str) -> str:
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def test_the_readme_factory_example_builds(tmp_path):
    section = _section()
    code, config = _block(section, "python"), yaml.safe_load(_block(section, "yaml"))
    (tmp_path / "mymodels.py").write_text(code)
    spec = config["model"]["arch"]
    assert config["model"]["source"] == "factory" and spec == "mymodels:build"
    _image_folder(tmp_path / "images", classes=("n001", "n002"), per_class=5, size=(40, 40))
    (tmp_path / "labels.txt").write_text("n001 sunflower\nn002 red fox\n")
    namespace: dict = {}
    exec(compile(code, "mymodels.py", "exec"), namespace)
    torch.manual_seed(0)
    torch.save(namespace["build"](2).state_dict(), tmp_path / config["model"]["weights"])
    # As written, only smaller: the image folder, 32 px, short SAE training and tiny stage settings.
    config["dataset"].update(path="images", image_size=32)
    for layer in config["layers"]:
        layer["sae"] = _sae(8)
    config.update(device="cpu", **STAGES)
    (tmp_path / "my_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "atlasgen",
            "build",
            "-c",
            str(tmp_path / "my_config.yaml"),
            "-o",
            str(tmp_path / "my_site"),
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    site = tmp_path / "my_site" / config["model"]["name"]
    model_page = (site / "index.html").read_text(encoding="utf-8")
    assert "Used as given: loaded from net.pt (model.weights)" in model_page
    assert "sunflower" in model_page and "red fox" in model_page  # labels.txt matched to the folders
    block2 = re.sub(
        r"<[^>]+>|\s+", " ", (site / "block2" / "f" / "0" / "index.html").read_text(encoding="utf-8")
    )
    assert "Weights from block1 features" in block2  # the functional ReLUs between the layers are linearized
