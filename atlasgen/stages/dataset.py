"""Stage `dataset`: the images, their labels and the held-out split."""

from __future__ import annotations

import numpy as np

from atlasgen.cache import atomic_save_npy, atomic_write_json, hash_data
from atlasgen.config import ConfigError
from atlasgen.data import scan_image_folder
from atlasgen.pipeline import StageContext


def _split(n: int, holdout_fraction: float, seed: int) -> np.ndarray:
    """0 for training images, 1 for held-out ones, chosen by a seeded permutation."""
    split = np.zeros(n, dtype=np.uint8)
    order = np.random.default_rng([seed, 1]).permutation(n)
    split[order[: int(round(n * holdout_fraction))]] = 1
    return split


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.dataset
    if cfg.source == "demo":
        from atlasgen.demo.dataset import CLASSES, SUPERCLASSES, generate

        total = cfg.images_per_class * len(CLASSES)
        with ctx.progress(total, "generating") as bar:
            data = generate(seed=cfg.seed, images_per_class=cfg.images_per_class, size=cfg.image_size, progress=bar.set)
        classes = [{"id": c.id, "name": c.name, "superclass": c.superclass, "facets": list(c.facets)} for c in data.classes]
        atomic_save_npy(ctx.out / "images.npy", data.images)
        labels, facets = data.labels.astype(np.int64), data.facets.astype(np.int64)
        superclasses = list(SUPERCLASSES)
        identity = f"atlasgen-demo seed={cfg.seed} per_class={cfg.images_per_class} size={cfg.image_size}"
    else:
        root = ctx.cfg.resolve(cfg.path)
        names, paths, label_list = scan_image_folder(root, cfg.images_per_class)
        if not paths:
            raise ConfigError([f"dataset.path: no images found in class sub-folders of {str(root)!r}. Fix: use one sub-folder per class holding .jpg/.png/.webp files."])
        classes = [{"id": i, "name": n, "superclass": "", "facets": []} for i, n in enumerate(names)]
        atomic_write_json(ctx.out / "paths.json", paths)
        labels = np.asarray(label_list, dtype=np.int64)
        facets = np.full(len(labels), -1, dtype=np.int64)
        superclasses = []
        identity = "folder " + hash_data([names, [p.removeprefix(str(root.resolve())) for p in paths]])[:16]
    if len(labels) < 2:
        raise ConfigError(["dataset: fewer than 2 images. Fix: give the dataset more images."])
    split = _split(len(labels), cfg.holdout_fraction, cfg.seed)
    atomic_save_npy(ctx.out / "labels.npy", labels)
    atomic_save_npy(ctx.out / "facets.npy", facets)
    atomic_save_npy(ctx.out / "split.npy", split)
    atomic_write_json(ctx.out / "dataset.json", {
        "source": cfg.source,
        "identity": identity,
        "image_size": cfg.image_size,
        "classes": classes,
        "superclasses": superclasses,
        "n_images": int(len(labels)),
        "n_train": int((split == 0).sum()),
        "n_heldout": int((split == 1).sum()),
    })
    ctx.console.detail(f"{len(labels)} images, {len(classes)} classes")
