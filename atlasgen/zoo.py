"""What each model source offers, known without importing torch (config checks, `atlasgen layers`)."""

from __future__ import annotations

# DemoNet's studiable module paths, in forward order (atlasgen/demo/model.py builds them).
DEMO_LAYERS = ("conv2d0", "conv2d1", "mixed5a", "mixed5b")


def layer_names(source: str) -> list[str]:
    """Module paths that a config may name as layers of a model source."""
    if source == "demo":
        return list(DEMO_LAYERS)
    raise ValueError(f"unknown model source {source!r}")
