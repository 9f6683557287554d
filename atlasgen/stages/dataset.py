"""Stage `dataset`: the images, their labels and the held-out split."""

from __future__ import annotations

import json
import os

import numpy as np

from atlasgen.cache import atomic_save_npy, atomic_write_json, hash_data
from atlasgen.config import ConfigError
from atlasgen.data import (
    in_listing_order,
    list_image_folder,
    local_workers,
    match_class_names,
    read_class_names,
    read_image_csv,
    sample_image_folder,
    subsample,
)
from atlasgen.stage import Stage, StageContext

STAGE = Stage("dataset", config=("dataset",), what="images and labels")


def _split(n: int, holdout_fraction: float, seed: int) -> np.ndarray:
    """0 for training images, 1 for held-out ones, chosen by a seeded permutation."""
    split = np.zeros(n, dtype=np.uint8)
    order = np.random.default_rng([seed, 1]).permutation(n)
    split[order[: int(round(n * holdout_fraction))]] = 1
    return split


N_LISTED = 20  # skipped files named in the build summary (all are in skipped.json)


def _report_bad_files(ctx: StageContext, root, skipped: list, converted: dict) -> None:
    """skipped.json and build_notes.json (printed in the build summary), also when the stage is cached."""
    atomic_write_json(ctx.out / "skipped.json", [{"path": p, "reason": r} for p, r in skipped])
    notes = []
    if converted:
        modes = ", ".join(f"{n} {mode}" for mode, n in converted.items())
        notes.append(f"dataset: converted to 8-bit RGB: {modes}")
    if skipped:
        notes.append(
            f"dataset: skipped {len(skipped)} file(s) of {str(root.resolve())!r} (all in "
            "skipped.json of the dataset artifact):"
        )
        for path, reason in skipped[:N_LISTED]:
            notes.append(f"  {os.path.abspath(path)}: {reason}")
        if len(skipped) > N_LISTED:
            notes.append(f"  ... and {len(skipped) - N_LISTED} more")
    if skipped:
        ctx.console.detail(f"{len(skipped)} file(s) skipped; listed in the build summary")
    atomic_write_json(ctx.out / "build_notes.json", notes)


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.dataset
    if cfg.source == "demo":
        from atlasgen.demo.dataset import CLASSES, SUPERCLASSES, generate

        total = cfg.images_per_class * len(CLASSES)
        with ctx.progress(total, "generating") as bar:
            data = generate(
                seed=cfg.seed, images_per_class=cfg.images_per_class, size=cfg.image_size, progress=bar.set
            )
        classes = [
            {"id": c.id, "name": c.name, "superclass": c.superclass, "facets": list(c.facets)}
            for c in data.classes
        ]
        atomic_save_npy(ctx.out / "images.npy", data.images)
        labels, facets = data.labels.astype(np.int64), data.facets.astype(np.int64)
        superclasses = list(SUPERCLASSES)
        skipped, converted = [], {}
        identity = f"atlasgen-demo seed={cfg.seed} per_class={cfg.images_per_class} size={cfg.image_size}"
    else:
        root = ctx.cfg.resolve(cfg.path)
        if cfg.source == "csv":
            names, paths, label_list = read_image_csv(root)
            skipped, converted = [], {}
            keep = subsample(label_list, cfg.images_per_class, cfg.limit, cfg.seed)
        else:  # listed by name, sampled, and only the sampled files decoded (in parallel)
            names, paths, label_list, skipped = list_image_folder(root)
            keep, bad, converted = sample_image_folder(
                paths,
                label_list,
                cfg.images_per_class,
                cfg.limit,
                cfg.seed,
                cfg.min_image_side,
                local_workers(ctx.cfg.decode.workers),
            )
            skipped = in_listing_order(skipped + bad, root)
        _report_bad_files(ctx, root, skipped, converted)
        paths, label_list = [paths[i] for i in keep], [label_list[i] for i in keep]
        if not paths:
            raise ConfigError(
                [
                    f"dataset.path: no images found in class sub-folders of {str(root)!r}. Fix: "
                    "use one sub-folder per class holding .jpg/.png/.webp files."
                ]
                if cfg.source == "folder"
                else [f"dataset.path: {str(root)!r} lists no images. Fix: add path,label rows."]
            )
        readable, warning = match_class_names(
            names, read_class_names(ctx.cfg.resolve(cfg.class_names)) if cfg.class_names else {}
        )
        if warning:
            notes = json.loads((ctx.out / "build_notes.json").read_text(encoding="utf-8"))
            atomic_write_json(ctx.out / "build_notes.json", notes + [warning])
        classes = [
            {"id": i, "name": readable.get(n, n), "key": n, "superclass": "", "facets": []}
            for i, n in enumerate(names)
        ]
        atomic_write_json(ctx.out / "paths.json", paths)
        labels = np.asarray(label_list, dtype=np.int64)
        facets = np.full(len(labels), -1, dtype=np.int64)
        superclasses = []
        base = str(root.resolve().parent if cfg.source == "csv" else root.resolve())
        identity = (
            f"{cfg.source} "
            + hash_data([names, [p.removeprefix(base) for p in paths], cfg.crop_fraction])[:16]
        )
    if len(labels) < 2:
        raise ConfigError(["dataset: fewer than 2 images. Fix: give the dataset more images."])
    split = _split(len(labels), cfg.holdout_fraction, cfg.seed)
    atomic_save_npy(ctx.out / "labels.npy", labels)
    atomic_save_npy(ctx.out / "facets.npy", facets)
    atomic_save_npy(ctx.out / "split.npy", split)
    atomic_write_json(
        ctx.out / "dataset.json",
        {
            "source": cfg.source,
            "identity": identity,
            "image_size": cfg.image_size,
            "crop_fraction": cfg.crop_fraction,
            "classes": classes,
            "superclasses": superclasses,
            "n_images": int(len(labels)),
            "n_train": int((split == 0).sum()),
            "n_heldout": int((split == 1).sum()),
            **({"n_skipped": len(skipped), "converted": converted} if cfg.source == "folder" else {}),
        },
    )
    ctx.console.detail(f"{len(labels)} images, {len(classes)} class{'es' if len(classes) != 1 else ''}")
