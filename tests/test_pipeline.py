"""The staged build: cache invalidation matrix, status, resume after a kill, stable bytes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import write_tiny_config

from atlasgen.config import load_config
from atlasgen.pipeline import STAGE_NAMES, Pipeline
from atlasgen.progress import Console


def build(config: Path, **kwargs):
    return Pipeline(load_config(config), console=Console(0), **kwargs).build()


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def edit(config: Path, section: str, **values) -> None:
    data = yaml.safe_load(config.read_text())
    if section == "sae":
        data["layers"][0]["sae"].update(values)
    else:
        data.setdefault(section, {}).update(values)
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def test_first_build_writes_the_site(tiny_build):
    _, _, site = tiny_build
    assert (site / "index.html").is_file()
    assert (site / "demonet" / "mixed5b" / "f" / "0" / "index.html").is_file()
    assert (site / ".atlasgen-site").is_file()


def test_rerun_with_nothing_changed_does_no_work(tiny_copy):
    _, config, _ = tiny_copy
    summary = build(config)
    assert summary.ran == []
    states = Pipeline(load_config(config), console=Console(0)).states()
    assert all(s.cached for s in states), [(s.name, s.reason) for s in states]


def test_sae_change_reruns_sae_and_downstream_only(tiny_copy):
    _, config, _ = tiny_copy
    edit(config, "sae", k=3)
    states = {s.name: s for s in Pipeline(load_config(config), console=Console(0)).states()}
    assert states["sae"].reason == "layers[0].sae.k changed"
    assert states["activations"].cached and states["model"].cached
    summary = build(config, accept_changed_features=True)  # a new SAE: the site's feature URLs change meaning
    assert summary.ran == [
        "sae",
        "examples",
        "featurevis",
        "circuits",
        "importance",
        "map",
        "game",
        "similar",
        "survey",
        "tryimage",
        "site",
    ]


def test_featurevis_change_reruns_featurevis_and_site(tiny_copy):
    _, config, _ = tiny_copy
    edit(config, "featurevis", steps=5)
    assert build(config).ran == ["featurevis", "survey", "site"]  # the survey samples drawn features


def test_site_title_change_rerenders_only_the_site(tiny_copy):
    _, config, site = tiny_copy
    edit(config, "site", title="Another title")
    assert build(config).ran == ["site"]
    assert "Another title" in (site / "index.html").read_text()


def test_template_change_rerenders_only_the_site(tiny_copy, tmp_path, monkeypatch):
    _, config, site = tiny_copy
    from atlasgen.site import resources

    theme = tmp_path / "theme"
    for name in ("templates", "static"):
        shutil.copytree(resources.resource_dir(name), theme / name)
    css = theme / "static" / "atlas.css"
    css.write_text(css.read_text() + "\n/* a template-only change */\n")
    monkeypatch.setattr(resources, "resource_dir", lambda name: theme / name)
    assert build(config).ran == ["site"]
    assert "a template-only change" in (site / "static" / "atlas.css").read_text()


def test_status_cli_explains(tiny_copy):
    folder, config, _ = tiny_copy
    edit(config, "examples", top_k=5)
    out = subprocess.run(
        [sys.executable, "-m", "atlasgen", "status", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert set(lines) == set(STAGE_NAMES)
    assert (
        "cached" in lines["sae"]
        and "stale" in lines["examples"]
        and "examples.top_k changed" in lines["examples"]
    )
    assert "waits on" in lines["map"] or "stale" in lines["map"]


def _start_build(folder: Path, config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "atlasgen", "build", "-c", str(config)],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_for(predicate, proc, timeout=300.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def test_killed_build_resumes_and_matches_an_uninterrupted_one(tiny_build, tmp_path):
    """SIGKILL during the feature-visualisation stage; the rerun keeps finished stages and
    finished chunks, never treats the half-done stage as complete, and ends with a site
    byte-identical to an uninterrupted build's."""
    _, _, reference_site = tiny_build
    config = write_tiny_config(tmp_path)
    proc = _start_build(tmp_path, config)
    partial_vis = lambda: list(
        (tmp_path / ".atlasgen" / "featurevis").glob("*.partial/mixed5b/features/*.webp")
    )
    # A chunk is finished once its quality shard is written (after all its images).
    shards = lambda: list(
        (tmp_path / ".atlasgen" / "featurevis").glob("*.partial/mixed5b/features_quality/*.npz")
    )
    assert _wait_for(lambda: len(shards()) >= 1, proc), proc.communicate()[0]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {int(p.stem) for p in shards()}
    done_before = {
        p.name: p.stat().st_mtime_ns for p in partial_vis() if (int(p.stem) // 16) * 16 in finished
    }
    complete = [
        p
        for p in (tmp_path / ".atlasgen" / "featurevis").iterdir()
        if p.is_dir() and not p.name.endswith(".partial")
    ]
    assert complete == []  # the killed stage left only its .partial folder
    status = subprocess.run(
        [sys.executable, "-m", "atlasgen", "status", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert "featurevis   stale" in status.stdout and "model        cached" in status.stdout
    rerun = subprocess.run(
        [sys.executable, "-m", "atlasgen", "build", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "featurevis: feature visualisations (resuming)" in rerun.stderr
    # The model stage was not redone: no training bar (the summary may still say how it was trained).
    assert not re.search(r"^\s*training\s+\[", rerun.stderr, re.M), rerun.stderr
    final = next(p for p in (tmp_path / ".atlasgen" / "featurevis").iterdir() if p.is_dir())
    kept = [n for n, t in done_before.items() if (final / "mixed5b" / "features" / n).stat().st_mtime_ns == t]
    assert len(kept) >= 16  # finished chunks were not rendered again
    assert tree_bytes(tmp_path / "_site") == tree_bytes(reference_site)


def test_ctrl_c_exits_130_with_a_resume_hint(tmp_path):
    config = write_tiny_config(tmp_path)
    proc = _start_build(tmp_path, config)
    # Interrupt inside the feature-visualisation stage: it runs for seconds even on a fast machine
    # (the stages before it can finish between two polls).
    assert _wait_for(
        lambda: any((tmp_path / ".atlasgen").glob("featurevis/*.partial/mixed5b/features/*.webp")), proc
    )
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, out[-2000:])
    assert "Run the same command to resume" in out
    assert "Traceback" not in out


def test_output_that_atlasgen_did_not_make_is_left_alone(tiny_copy, tmp_path):
    _, config, _ = tiny_copy
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    out = subprocess.run(
        [sys.executable, "-m", "atlasgen", "build", "-c", str(config), "-o", str(foreign)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 2 and "did not make" in out.stderr
    assert (foreign / "notes.txt").read_text() == "precious"


def test_commit_drops_temporary_files_of_killed_writers(tmp_path):
    """A writer killed between writing its temporary file and renaming it leaves `.name.tmp-PID`
    behind; sealing the artifact removes it, so a resumed build hashes the same as an uninterrupted one."""
    from atlasgen.cache import ArtifactStore, atomic_write_bytes

    hashes = []
    for killed in (False, True):
        store = ArtifactStore(tmp_path / f"cache{killed}")
        store.ensure()
        partial = store.partial("featurevis", "k")
        atomic_write_bytes(partial / "a" / "0.webp", b"image")
        if killed:
            (partial / "a" / ".1.webp.tmp-4242").write_bytes(b"half an ima")
        meta = store.commit("featurevis", "k", {"inputs": {}})
        hashes.append(meta["content_hash"])
        assert sorted(p.name for p in store.final("featurevis", "k").rglob("*")) == [
            "0.webp",
            "a",
            "meta.json",
        ]
    assert hashes[0] == hashes[1]
