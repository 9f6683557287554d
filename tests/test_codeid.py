"""Stages declare themselves; a stage's code identity is its static atlasgen import closure.

A comment changed in any atlasgen module makes stale exactly the stages whose import closure
holds it; the static closure covers every module that importing a stage really runs; the
import graph has no cycle and no stage imports the runner.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from atlasgen import pipeline
from atlasgen.codeid import import_closure, imports, modules, package_root
from atlasgen.stage import DeclarationError

REPO = package_root()


def _copy_package(dest: Path) -> Path:
    """A copy of the atlasgen sources (and the site's resources) under ``dest``; returns its root."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "atlasgen", dest / "atlasgen", ignore=ignore)
    for name in ("templates", "static"):
        shutil.copytree(REPO / name, dest / name)
    return dest


def _codes(root: Path) -> dict[str, str]:
    return {s.name: pipeline.stage_code(s, root) for s in pipeline.discover(root)}


def test_a_comment_in_each_module_restales_exactly_its_importers(tmp_path):
    root = _copy_package(tmp_path)
    stages = pipeline.discover(root)
    closures = {s.name: set(import_closure(s.module, root)) for s in stages}
    before = _codes(root)
    assert before == _codes(REPO)  # a copy has the same identity: only sources count, not paths
    changed_any = set()
    for name in modules(root):
        path = root.joinpath(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        text = path.read_text(encoding="utf-8")
        path.write_text(text + "\n# a comment that changes nothing but the source\n", encoding="utf-8")
        try:
            after = _codes(root)
        finally:
            path.write_text(text, encoding="utf-8")
        stale = {s for s in before if after[s] != before[s]}
        assert stale == {s for s, closure in closures.items() if name in closure}, name
        changed_any |= stale
    assert changed_any == set(before)
    # The closures are the ones that matter: the SAE loader re-keys every stage that loads an SAE,
    # the renderer's modules re-key the site alone, a stage's own module re-keys only itself.
    assert {s for s, c in closures.items() if "atlasgen.sae_formats" in c} == {
        "sae",
        "featurevis",
        "examples",
        "circuits",
        "importance",
        "game",
        "tryimage",
    }
    assert {s for s, c in closures.items() if "atlasgen.site.pages" in c} == {"site"}
    assert {s for s, c in closures.items() if "atlasgen.stages.examples" in c} == {"examples"}


_RUNTIME = r"""
import importlib, json, sys
# Third-party modules stay loaded; every atlasgen module is dropped before each stage is imported.
import numpy, torch, PIL.Image  # noqa: F401
out = {}
for module in sys.argv[1:]:
    for name in [m for m in sys.modules if m == "atlasgen" or m.startswith("atlasgen.")]:
        del sys.modules[name]
    importlib.import_module(module)
    out[module] = sorted(m for m in sys.modules if m == "atlasgen" or m.startswith("atlasgen."))
print(json.dumps(out))
"""


def test_the_static_closure_holds_every_module_an_import_runs():
    stages = pipeline.discover()
    out = subprocess.run(
        [sys.executable, "-c", _RUNTIME, *(s.module for s in stages)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        cwd=REPO,
    )
    loaded = json.loads(out.stdout.splitlines()[-1])
    for stage in stages:
        missed = set(loaded[stage.module]) - set(import_closure(stage.module, REPO))
        assert not missed, (stage.name, missed)


def test_no_import_cycle_and_no_stage_imports_the_runner():
    graph = {}
    for name in modules(REPO):
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = imports(name, REPO) - ancestors - {name}  # a submodule runs its packages first
    for name, targets in graph.items():
        if name.startswith("atlasgen.stages."):
            assert "atlasgen.pipeline" not in targets, name
    # Depth-first search for a cycle.
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            assert state.get(target) != 1, "import cycle: " + " -> ".join(
                path[path.index(target) :] + [target]
            )
            if target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_status_says_code_changed_for_the_stages_a_module_edit_touches(tiny_copy, tmp_path):
    """End to end: `atlasgen status` from a copy of the package with one module edited."""
    folder, config, _ = tiny_copy
    root = _copy_package(tmp_path / "src")
    bands = root / "atlasgen" / "bands.py"
    bands.write_text(bands.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "atlasgen", "status", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "stale" in lines["examples"] and "code changed" in lines["examples"], lines["examples"]
    for name in (
        "dataset",
        "model",
        "activations",
        "sae",
        "circuits",
        "importance",
        "atlas",
        "game",
    ):
        assert "cached" in lines[name], lines[name]
    for name in ("featurevis", "map"):  # their own code is unchanged; they read the examples
        assert "waits on examples" in lines[name], lines[name]


def test_a_bad_declaration_is_a_clear_error(tmp_path):
    root = _copy_package(tmp_path)
    game = root / "atlasgen" / "stages" / "game.py"
    text = game.read_text(encoding="utf-8")
    game.write_text(
        text.replace('deps=("dataset", "model", "sae")', 'deps=("dataset", "modle", "sae")'), encoding="utf-8"
    )
    with pytest.raises(DeclarationError, match="'modle', which is no stage"):
        pipeline.discover(root)
    game.write_text(
        text.replace('deps=("dataset", "model", "sae")', 'deps=("dataset", "model", "sae", "site")'),
        encoding="utf-8",
    )
    with pytest.raises(DeclarationError, match="no stage"):
        pipeline.discover(root)
    (root / "atlasgen" / "stages" / "extra.py").write_text(
        'from atlasgen.stage import Stage\n\nSTAGE = Stage("extra", deps=("dataset",))\n', encoding="utf-8"
    )
    game.write_text(text, encoding="utf-8")
    with pytest.raises(DeclarationError, match="no stage reads the artifact of stage 'extra'"):
        pipeline.discover(root)
