"""Shared fixtures: a tiny demo config that builds in well under a minute on 2 cores."""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import yaml

TINY = {
    "device": "cpu",
    "dataset": {"images_per_class": 12, "image_size": 32, "seed": 3},
    "model": {"train": {"epochs": 1, "batch_size": 32}},
    "layers": [{"name": "mixed5b", "sae": {"expansion": 2, "k": 4, "steps": 60, "batch_size": 128}}],
    "activations": {"positions_per_image": 4, "shard_size": 300},
    "featurevis": {
        "image_size": 32,
        "thumb_size": 16,
        "steps": 20,
        "batch_size": 16,
        "variant_image_size": 16,
        "variant_steps": 8,
        "diverse": 2,
    },
    "examples": {"top_k": 4, "batch_size": 64},
    "map": {"levels": [2, 4, 8], "n_neighbors": 5},
    "atlas": {"grids": [4, 8], "min_count": 2, "icon_size": 16, "steps": 8, "n_neighbors": 10},
}


def _default_torch_threads() -> int:
    import torch

    return torch.get_num_threads()


DEFAULT_TORCH_THREADS = _default_torch_threads()  # read at import, before any test pins a thread count


def write_tiny_config(folder: Path, **overrides) -> Path:
    """A tiny config in ``folder``; ``overrides`` replace top-level sections."""
    data = {**TINY, **overrides}
    path = folder / "site_config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory):
    """One complete tiny build, shared read-only by tests: (folder, config path, site folder)."""
    import torch

    from atlasgen.config import load_config
    from atlasgen.pipeline import Pipeline
    from atlasgen.progress import Console

    folder = tmp_path_factory.mktemp("tiny")
    config = write_tiny_config(folder)
    # Built with torch's default thread count, as a `python -m atlasgen build` subprocess would be
    # (a test module may have pinned one thread when this fixture is first used): float results, and
    # so optimised images, are reproducible for the same seed, device and thread count.
    before = torch.get_num_threads()
    torch.set_num_threads(DEFAULT_TORCH_THREADS)
    try:
        Pipeline(load_config(config), console=Console(0)).build()
    finally:
        torch.set_num_threads(before)
    return folder, config, folder / "_site"


@pytest.fixture
def tiny_copy(tiny_build, tmp_path):
    """A private copy of the tiny build (cache and site) that a test may change."""
    folder, _, _ = tiny_build
    for name in ("site_config.yaml", ".atlasgen", "_site"):
        src = folder / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name)
    return tmp_path, tmp_path / "site_config.yaml", tmp_path / "_site"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server that does not log every request into the test output."""

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_folder(folder: Path, handler: type = QuietHandler):
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) while the block runs; yields the port."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
