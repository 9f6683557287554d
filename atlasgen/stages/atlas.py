"""Stage `atlas`: the activation atlas of each layer (Carter et al. 2019; see atlasgen.atlas).

One activation vector per training image (at most `atlas.max_images`), laid
out by UMAP, binned at each grid size of `atlas.grids`; cells with at least
`atlas.min_count` points get an icon rendered with the atlas objective.
A layer with `layers[].atlas: false` gets only atlas.json {"enabled": false}.
Per layer it writes atlas.json (grids, cells, counts, top classes, the dataset
indices of a few typical images per cell) and one
sprite sheet per grid (icons_<grid>.webp, row-major in the cells' order).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from atlasgen.atlas import grid_cells, normalize_layout, one_position_per_image, sprite_sheet, umap_layout
from atlasgen.cache import atomic_write_json
from atlasgen.data import open_dataset
from atlasgen.featurevis import STANDARD_TRANSFORMS, render_directions
from atlasgen.models import layer_activations, load_model
from atlasgen.stage import Stage, StageContext

STAGE = Stage(
    "atlas",
    deps=("dataset", "model"),
    config=("layers", "atlas", "examples.batch_size", "layers_without_atlas"),
    what="activation atlas",
)


def collect(
    model, data, layer: str, indices: np.ndarray, batch_size: int, seed: int, device: str
) -> np.ndarray:
    out = []
    with torch.no_grad():
        for idx, images in data.batches(indices, batch_size, device):
            acts = layer_activations(model, images, [layer])[layer].float()
            if acts.ndim == 2:
                acts = acts[:, :, None, None]
            out.append(one_position_per_image(acts, idx, seed).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.atlas
    data = open_dataset(ctx.inputs["dataset"], ctx.cfg)
    for layer_cfg in ctx.cfg.layers:
        (ctx.out / layer_cfg.name).mkdir(parents=True, exist_ok=True)
    for layer_cfg in ctx.cfg.layers:
        if not (cfg.enabled and layer_cfg.atlas):
            atomic_write_json(ctx.out / layer_cfg.name / "atlas.json", {"enabled": False, "grids": []})
    built = [layer_cfg for layer_cfg in ctx.cfg.layers if cfg.enabled and layer_cfg.atlas]
    if not built:
        return
    model = load_model(ctx.inputs["model"], ctx.cfg.model, data.n_classes, ctx.device)
    model = model.to(memory_format=torch.channels_last)
    indices = data.indices("train")
    if cfg.max_images and len(indices) > cfg.max_images:
        rng = np.random.default_rng(cfg.seed)
        indices = np.sort(rng.choice(indices, cfg.max_images, replace=False))
    labels = data.labels[indices].astype(np.int64)
    transforms = STANDARD_TRANSFORMS.for_size(cfg.icon_size)
    for layer_cfg in built:
        layer = layer_cfg.name
        vectors = collect(model, data, layer, indices, ctx.cfg.examples.batch_size, cfg.seed, ctx.device)
        xy = normalize_layout(umap_layout(vectors, cfg.n_neighbors, cfg.min_dist, cfg.seed))
        grids, offset = [], 0
        binned = [(g, grid_cells(xy, vectors, labels, g, cfg.min_count, data.n_classes)) for g in cfg.grids]
        total = sum(len(b["count"]) for _, b in binned)
        with ctx.progress(total, f"atlas {layer}") as bar:
            for g, b in binned:
                m = len(b["count"])
                ids = np.arange(offset, offset + m)  # seeds: unique per icon across grids
                # A cell whose mean activation is the zero vector has no direction: its icon stays grey.
                live = np.flatnonzero(np.linalg.norm(b["mean"], axis=1) > 0)
                icons = np.full((m, cfg.icon_size, cfg.icon_size, 3), 128, dtype=np.uint8)
                if len(live):
                    icons[live] = render_directions(
                        model,
                        layer,
                        b["mean"][live],
                        ids=ids[live],
                        mode="neuron",
                        cossim_pow=cfg.cossim_pow,
                        image_size=cfg.icon_size,
                        steps=cfg.steps,
                        lr=cfg.lr,
                        batch_size=cfg.batch_size,
                        seed=cfg.seed,
                        device=ctx.device,
                        transforms=transforms,
                        progress=lambda n, o=offset: bar.set(o + n),
                    )
                offset += m
                sheet, cols = sprite_sheet(icons)
                Image.fromarray(sheet).save(
                    ctx.out / layer / f"icons_{g}.webp", format="WEBP", quality=85, method=6
                )
                grids.append(
                    {
                        "size": int(g),
                        "icon_size": cfg.icon_size,
                        "columns": cols,
                        "sheet": f"icons_{g}.webp",
                        # [gx, gy, count, top class, share of the top class, [[class, share], ...],
                        #  [dataset index of a typical image, ...]]
                        "cells": [
                            [
                                int(c[0]),
                                int(c[1]),
                                int(n),
                                int(k),
                                round(float(s), 4),
                                [[int(a), round(float(w), 4)] for a, w in lead if a >= 0],
                                [int(indices[r]) for r in rows if r >= 0],
                            ]
                            for c, n, k, s, lead, rows in zip(
                                b["cells"],
                                b["count"],
                                b["top_class"],
                                b["top_share"],
                                b["classes"],
                                b["examples"],
                            )
                        ],
                    }
                )
        atomic_write_json(
            ctx.out / layer / "atlas.json",
            {
                "enabled": True,
                "n_points": int(len(indices)),
                "objective": f"(h.v) * max(0.1, cos(h, v))^{cfg.cossim_pow:g}",
                "umap": {"n_neighbors": cfg.n_neighbors, "min_dist": cfg.min_dist, "metric": "cosine"},
                "min_count": cfg.min_count,
                "steps": cfg.steps,
                "grids": grids,
            },
        )
        ctx.console.detail(f"{layer}: activation atlas of {len(indices)} images, {total} icons")
