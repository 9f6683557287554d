"""Checks before any stage: each problem exits 2 with its key path and a fix; the cache stays untouched."""

from __future__ import annotations

import pytest
import yaml

from atlasgen.config import ConfigError, load_config
from atlasgen.data import match_class_names
from atlasgen.models import build_model
from atlasgen.preflight import preflight
from atlasgen.site.keep import carry_over, clean_site, kept_patterns, marker_text
from tests.test_models_real import _image_folder


def _cfg(tmp_path, **over):
    data = {
        "device": "cpu",
        "dataset": {"source": "folder", "path": "data", "image_size": 32},
        "model": {"source": "factory", "name": "fres", "arch": "tests.tiny_models:functional_resnet"},
        "layers": [{"name": "stage1"}, {"name": "stage2"}],
    }
    data.update(over)
    (tmp_path / "site_config.yaml").write_text(yaml.safe_dump(data))
    return load_config(tmp_path / "site_config.yaml")


def _errors(cfg, out):
    with pytest.raises(ConfigError) as err:
        preflight(cfg, out)
    return "\n".join(err.value.errors)


def test_three_class_folder_passes_and_class_count_reaches_n_classes(tmp_path):
    _image_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=1, size=(40, 40))
    found = preflight(_cfg(tmp_path), tmp_path / "_site")
    assert found.n_outputs == 3 and found.class_ids == ["a", "b", "c"]  # functional_resnet takes n_classes
    assert not (tmp_path / ".atlasgen").exists()


def test_each_problem_names_its_key_and_a_fix(tmp_path):
    _image_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=1, size=(40, 40))
    text = _errors(
        _cfg(tmp_path, layers=[{"name": "stage1"}, {"name": "stage9"}], importance={"top_k": 10}),
        tmp_path / "_site",
    )
    assert "layers[1].name: 'stage9'" in text and "stage1" in text.split("layers[1].name")[1]
    assert "importance.top_k: 10 is not below the model's 3 outputs" in text and "auto" in text
    text = _errors(
        _cfg(tmp_path, model={"source": "factory", "name": "x", "arch": "tests.tiny_models:fixed_four"}),
        tmp_path / "_site",
    )
    assert "4 outputs but the dataset has 3 classes" in text and "num_classes" in text
    text = _errors(
        _cfg(tmp_path, model={"source": "factory", "name": "x", "arch": "tests.tiny_models:broken_factory"}),
        tmp_path / "_site",
    )
    assert "model.arch: 'tests.tiny_models:broken_factory' raised RuntimeError: weights file corrupt" in text
    (tmp_path / "_site").mkdir()
    (tmp_path / "_site" / "mine.txt").write_text("x")
    assert "output: " in _errors(_cfg(tmp_path), tmp_path / "_site")
    assert not (tmp_path / ".atlasgen").exists()


def test_parent_of_train_is_caught(tmp_path):
    _image_folder(tmp_path / "data" / "train", classes=("a", "b"), per_class=1, size=(40, 40))
    text = _errors(_cfg(tmp_path), tmp_path / "_site")
    assert "dataset.path:" in text and "'data/train'" in text


def test_factory_exception_is_one_line(tmp_path):
    (tmp_path / "data").mkdir()
    cfg = _cfg(tmp_path, model={"source": "factory", "name": "x", "arch": "tests.tiny_models:broken_factory"})
    with pytest.raises(Exception) as err:
        build_model(cfg.model, 3)
    assert "model.arch" in err.value.errors[0] and isinstance(err.value.__cause__, RuntimeError)


def test_class_names_match_by_prefix_and_case():
    names = {"n01440764": "tench", "n01443537": "goldfish", "n99": "other"}
    out, warning = match_class_names(["n01440764_tench", "Goldfish", "zebra"], names)
    assert out == {"n01440764_tench": "tench", "Goldfish": "goldfish"}
    assert "2 of 3 classes" in warning and "'zebra'" in warning and "'n99'" in warning
    assert match_class_names(["n01440764"], {"n01440764": "tench"}) == ({"n01440764": "tench"}, None)


def test_rebuild_and_clean_keep_the_users_files(tmp_path):
    old, new = tmp_path / "_site", tmp_path / "_site.partial"
    (old / "m").mkdir(parents=True)
    (old / "index.html").write_text("old")
    (old / "m" / "page.html").write_text("old")
    (old / ".atlasgen-site").write_text(marker_text("k", ["index.html", "m/page.html"]))
    (old / "CNAME").write_text("atlas.example.org\n")
    (old / "m" / "notes.txt").write_text("mine")
    (new / "m").mkdir(parents=True)
    (new / "index.html").write_text("new")
    moved = carry_over(old, new, kept_patterns([]))
    assert sorted(moved) == ["CNAME", "m/notes.txt"] and (new / "CNAME").read_text() == "atlas.example.org\n"
    (new / ".atlasgen-site").write_text(marker_text("k", ["index.html"]))
    assert clean_site(new, kept_patterns([])) == ["CNAME", "m/notes.txt"]
    assert sorted(p.name for p in new.iterdir()) == ["CNAME", "m"] and not (new / "index.html").exists()
