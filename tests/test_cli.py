"""The command line: help everywhere, serve over real HTTP, layers, quiet builds."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest


def atlasgen(*args, cwd, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "atlasgen", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


@pytest.mark.parametrize("command", [[], ["build"], ["status"], ["serve"], ["clean"], ["layers"]])
def test_help_on_everything(command, tmp_path):
    out = atlasgen(*command, "--help", cwd=tmp_path)
    assert out.returncode == 0 and "Usage:" in out.stdout


def test_layers_lists_shapes(tmp_path):
    out = atlasgen("layers", cwd=tmp_path)  # no config file: the defaults, i.e. the demo
    assert out.returncode == 2  # ... but a missing config file is an error with a fix
    (tmp_path / "site_config.yaml").write_text("{}\n")
    out = atlasgen("layers", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(None, 1) for line in out.stdout.splitlines())
    assert lines["mixed5b"].split() == ["128", "x", "8", "x", "8", "image", "map"]
    assert "mixed5a" in lines and "conv2d0" in lines
    assert lines["(output)"].split()[0] == "16"  # the demo's 16 classes


def test_serve_over_http(tiny_build):
    folder, config, site = tiny_build
    proc = subprocess.Popen(
        [sys.executable, "-m", "atlasgen", "serve", "-c", str(config), "--port", "0"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert "http://127.0.0.1:" in first, first
        url = next(word for word in first.split() if word.startswith("http"))
        with urllib.request.urlopen(url + "demonet/mixed5b/f/0/index.html", timeout=10) as resp:
            assert resp.status == 200
            assert "mixed5b/f/0" in resp.read().decode()
        with urllib.request.urlopen(url + "manifest.json", timeout=10) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_without_a_site_says_what_to_do(tmp_path):
    (tmp_path / "site_config.yaml").write_text("{}\n")
    out = atlasgen("serve", "--port", "0", cwd=tmp_path)
    assert out.returncode == 2 and "atlasgen build" in out.stderr


def test_quiet_rerun_prints_nothing_and_verbose_explains(tiny_copy):
    folder, config, _ = tiny_copy
    out = atlasgen("build", "-q", "-c", str(config), cwd=folder)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""
    out = atlasgen("build", "-v", "-c", str(config), cwd=folder)
    assert out.returncode == 0
    assert "sae: cached" in out.stderr and "build summary" in out.stderr and "site unchanged" in out.stderr


def test_status_quiet_lists_only_stale_stages_and_verbose_shows_keys(tiny_copy):
    folder, config, _ = tiny_copy
    out = atlasgen("status", "-q", "-c", str(config), cwd=folder)
    assert out.returncode == 0 and out.stdout == ""  # everything cached
    out = atlasgen("status", "-v", "-c", str(config), cwd=folder)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    from atlasgen.pipeline import STAGE_NAMES

    assert len(lines) == len(STAGE_NAMES) and all("[" in line and "]" in line for line in lines)
