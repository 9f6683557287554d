"""Config errors, one by one: each names the key path and the fix, exits 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from atlasgen.config import Config, ConfigError, describe_schema, layer_featurevis, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "atlasgen", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def write_config(tmp_path: Path, data) -> Path:
    path = tmp_path / "site_config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


CASES = [
    # (config, expected fragments of the message)
    ({"featurevis": {"stepz": 10}}, ["featurevis.stepz: unknown key", "Did you mean 'steps'?"]),
    ({"layerz": []}, ["layerz: unknown key", "Did you mean 'layers'?"]),
    ({"featurevis": {"steps": "many"}}, ["featurevis.steps: expected an integer", "str 'many'", "Fix:"]),
    ({"featurevis": {"lr": "fast"}}, ["featurevis.lr: expected a number"]),
    ({"featurevis": {"steps": -5}}, ["featurevis.steps: must be at least 1, got -5", "Fix:"]),
    ({"examples": {"top_k": 0}}, ["examples.top_k: must be at least 1, got 0"]),
    (
        {"layers": [{"name": "mixed5b", "sae": {"expansion": 0}}]},
        ["layers[0].sae.expansion: must be at least 1"],
    ),
    ({"featurevis": {"lr": 0}}, ["featurevis.lr: must be greater than 0"]),
    (
        {"layers": [{"name": "mixed5c"}]},
        [
            "layers[0].name: 'mixed5c' is not a layer",
            "Nearest valid names: mixed5b, mixed5a",
            "atlasgen layers",
        ],
    ),
    (
        {"dataset": {"source": "folder", "path": "no/such/folder"}},
        ["dataset.path: folder", "does not exist", "Fix:"],
    ),
    ({"dataset": {"source": "folder"}}, ["dataset.path: required when dataset.source is 'folder'"]),
    (
        {"dataset": {"source": "imagenett"}},
        ["dataset.source: 'imagenett' is not allowed", "'demo', 'folder'"],
    ),
    (
        {"layers": [{"name": "mixed5b", "sae": {"architecture": "topkk"}}]},
        ["layers[0].sae.architecture", "Did you mean 'topk'?"],
    ),
    ({"layers": "mixed5b"}, ["layers: expected a list of a mapping"]),
    ({"layers": []}, ["layers: must not be empty"]),
    ({"map": {"levels": [12, 4]}}, ["map.levels", "coarse to fine"]),
    ({"model": {"weights": "missing.pt"}}, ["model.weights: file", "does not exist"]),
    (
        {"featurevis": {"thumb_size": 128}},
        ["featurevis.thumb_size: 128 is larger than featurevis.image_size"],
    ),
    ("featurevis: [unclosed", ["not valid YAML", "line 1"]),
    (
        {"layers": [{"name": "mixed5b", "featurevis": {"diverse": 1}}]},
        ["layers[0].featurevis.diverse: a diverse set of 1 image", "Fix:"],
    ),
]


@pytest.mark.parametrize("data,fragments", CASES, ids=[str(i) for i in range(len(CASES))])
def test_bad_values_fail_with_key_path_and_exit_2(tmp_path, data, fragments):
    config = write_config(tmp_path, data)
    result = run_cli("status", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def test_output_folder_that_is_a_file(tmp_path):
    (tmp_path / "_site").write_text("not a folder")
    config = write_config(tmp_path, {})
    result = run_cli("build", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "output: " in result.stderr and "is a file, not a folder" in result.stderr
    assert (tmp_path / "_site").read_text() == "not a folder"  # nothing lost
    (tmp_path / "_site").unlink()
    other = tmp_path / "elsewhere.txt"
    other.write_text("keep")
    result = run_cli("build", "-c", str(config), "-o", str(other), cwd=tmp_path)
    assert result.returncode == 2 and "-o: " in result.stderr and other.read_text() == "keep"


def test_missing_config_file(tmp_path):
    result = run_cli("build", "-c", "nope.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "not found" in result.stderr and "Traceback" not in result.stderr


def test_all_errors_reported_together():
    with pytest.raises(ConfigError) as info:
        parse_config({"featurevis": {"steps": 0, "lr": -1}, "examples": {"top_kk": 3}})
    assert len(info.value.errors) == 3


def test_shipped_config_is_valid_and_matches_defaults():
    cfg = load_config(ROOT / "site_config.yaml")
    assert cfg.layers[-1].name == "mixed5b"
    assert cfg.root == ROOT
    # The demo keys spelled out in the shipped file equal the schema defaults (one source of truth).
    assert parse_config({}).featurevis == cfg.featurevis


def test_docs_list_every_key_with_its_default():
    text = (ROOT / "docs" / "config.md").read_text()
    for path, _type, default, _help in describe_schema(Config):
        assert f"`{path}`" in text, path
        if default:
            assert f"`{default}`" in text, (path, default)


def test_shipped_demo_studies_two_consecutive_layers_for_its_circuit():
    """The demo's class pages draw the two-layer circuit: mixed5a listed before (below) mixed5b, both
    whole block outputs of DemoNet (layer-to-layer weights need that), mixed5b's SAE the larger one."""
    from atlasgen.demo.model import DemoNet

    cfg = load_config(ROOT / "site_config.yaml")
    assert [layer.name for layer in cfg.layers] == ["mixed5a", "mixed5b"]
    blocks = [name for name, _ in DemoNet(16).named_children()]
    assert blocks.index("mixed5a") + 1 == blocks.index("mixed5b")  # consecutive, lower first
    lower, upper = cfg.layers
    for layer in cfg.layers:
        assert layer.module is None and layer.channels is None
    assert lower.sae.expansion < upper.sae.expansion
    # mixed5a renders its main images only; mixed5b keeps every variant of the top-level settings
    assert layer_featurevis(cfg, upper) == cfg.featurevis
    small = layer_featurevis(cfg, lower)
    assert (small.neuron, small.negative, small.diverse) == (False, False, 0)
    assert small.steps == cfg.featurevis.steps and small.image_size == cfg.featurevis.image_size


def test_layer_featurevis_and_atlas_keys():
    cfg = parse_config(
        {
            "featurevis": {"diverse": 3},
            "layers": [
                {
                    "name": "mixed5a",
                    "featurevis": {"negative": False},
                    "atlas": False,
                    "importance": {"images": 64},
                },
                {"name": "mixed5b"},
            ],
        }
    )
    a, b = (layer_featurevis(cfg, layer) for layer in cfg.layers)
    assert (a.neuron, a.negative, a.diverse) == (True, False, 3)  # only the key it sets differs
    assert b == cfg.featurevis
    assert [layer.atlas for layer in cfg.layers] == [False, True]
    assert [layer.importance.images for layer in cfg.layers] == [64, None]  # None: importance.images
    for bad, fragment in (
        ({"diverse": -1}, "layers[0].featurevis.diverse: must be at least 0"),
        ({"neuron": "no"}, "layers[0].featurevis.neuron: expected true or false"),
        ({"stepz": 3}, "layers[0].featurevis.stepz: unknown key"),
        ({"importance": {"images": -2}}, "layers[0].importance.images: must be at least 0"),
        ({"atlas": "no"}, "layers[0].atlas: expected true or false"),
    ):
        layer = bad if set(bad) & {"importance", "atlas"} else {"featurevis": bad}
        with pytest.raises(ConfigError) as info:
            parse_config({"layers": [{"name": "mixed5b", **layer}]})
        assert any(fragment in e for e in info.value.errors), info.value.errors
