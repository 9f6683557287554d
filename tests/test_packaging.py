"""A non-editable install ships templates/ and static/ inside the wheel; `clean` removes only what atlasgen
made."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_templates_and_static(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("atlasgen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("templates", "static"):
        shipped = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*") if p.is_file())
        assert shipped, f"{folder}/ is empty"
        for rel in shipped:
            assert f"atlasgen/{rel}" in names, rel
    assert "atlasgen/site/build.py" in names and "atlasgen/cli.py" in names


def test_installed_wheel_finds_its_templates(tmp_path):
    """Install the wheel into a target folder and locate the resources from there."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "w"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "w").glob("atlasgen-*.whl")
    target = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        "import atlasgen.site.resources as r; print(r.resource_dir('templates')); "
        "print(r.resource_dir('static'))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    for line in res.stdout.split():
        assert line.startswith(str(target)), line


def test_clean_removes_only_marked_folders(tiny_copy, tmp_path):
    folder, config, site = tiny_copy
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "atlasgen", *a], capture_output=True, text=True, cwd=folder, timeout=120
    )
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("keep")
    out = run("clean", "-c", str(config), "-o", str(foreign))
    assert out.returncode == 2 and "refusing" in out.stderr
    assert (foreign / "keep.txt").exists()
    out = run("clean", "-c", str(config))
    assert out.returncode == 0, out.stderr
    assert not site.exists() and not (folder / ".atlasgen").exists()
    assert config.exists()
