"""What each model source offers, known without importing torch (config checks, `atlasgen layers`)."""

from __future__ import annotations

# DemoNet's studiable module paths, in forward order (atlasgen/demo/model.py builds them).
DEMO_LAYERS = ("conv2d0", "conv2d1", "mixed5a", "mixed5b")

_BRANCHES = ("pool", "1x1", "3x3_bottleneck", "5x5_bottleneck", "pool_reduce", "3x3", "5x5")


def _inceptionv1_layers() -> tuple[str, ...]:
    """lucent's InceptionV1 modules whose outputs can be studied, in forward order: the stem,
    each mixed block's branches and the block itself (its channels are the branches
    concatenated as 1x1, 3x3, 5x5, pool_reduce, e.g. mixed3a = 64 + 128 + 32 + 32)."""
    names = ["conv2d0", "maxpool0", "conv2d1", "conv2d2", "maxpool1"]
    for block in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        if block == "4a":
            names.append("maxpool4")
        if block == "5a":
            names.append("maxpool10")
        names += [f"mixed{block}_{b}" for b in _BRANCHES] + [f"mixed{block}"]
    return tuple(names)


INCEPTIONV1_LAYERS = _inceptionv1_layers()


def layer_names(source: str) -> list[str] | None:
    """Module paths that a config may name as layers of a model source; None when only
    the built model knows them (torchvision, timm, open_clip and factory models: checked when loaded)."""
    if source == "demo":
        return list(DEMO_LAYERS)
    if source == "inceptionv1":
        return list(INCEPTIONV1_LAYERS)
    if source in ("torchvision", "timm", "open_clip", "factory"):
        return None
    raise ValueError(f"unknown model source {source!r}")
