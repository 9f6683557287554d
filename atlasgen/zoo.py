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

# Channel ranges of InceptionV1's mixed-block branches inside the block's output (lucent's concat order).
INCEPTIONV1_BRANCH_WIDTHS = {
    "3a": (64, 128, 32, 32),
    "3b": (128, 192, 96, 64),
    "4a": (192, 204, 48, 64),
    "4b": (160, 224, 64, 64),
    "4c": (128, 256, 64, 64),
    "4d": (112, 288, 64, 64),
    "4e": (256, 320, 128, 128),
    "5a": (256, 320, 128, 128),
    "5b": (384, 384, 128, 128),
}


def branch_channels(block: str, branch: str) -> tuple[int, int]:
    """[start, stop) of a branch (1x1, 3x3, 5x5, pool_reduce) in InceptionV1's mixed<block> output."""
    widths = INCEPTIONV1_BRANCH_WIDTHS[block]
    i = ("1x1", "3x3", "5x5", "pool_reduce").index(branch)
    return sum(widths[:i]), sum(widths[: i + 1])


def layer_names(source: str) -> list[str] | None:
    """Module paths that a config may name as layers of a model source; None when only
    the built model knows them (torchvision and factory models: checked when loaded)."""
    if source == "demo":
        return list(DEMO_LAYERS)
    if source == "inceptionv1":
        return list(INCEPTIONV1_LAYERS)
    if source in ("torchvision", "factory"):
        return None
    raise ValueError(f"unknown model source {source!r}")
