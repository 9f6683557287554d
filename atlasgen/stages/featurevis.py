"""Stage `featurevis`: optimised images of every SAE feature and neuron, and their quality check.

Per unit (atlasgen.featurevis's batched renderer, docs/analyses.md):

* the main image (objective averaged over positions), full size and thumbnail;
* optionally the neuron-centred view (objective at the centre position), the
  negative image (objective minimised) and a diverse set (lucid's Gram-matrix
  diversity term), smaller and with fewer steps (`featurevis.variant_*`);
* the quality check: the final objective of each image, and, on the main
  image fed at the dataset's image size, the maximum activation of every unit
  of the family: the unit's own (comparable with its top dataset activation,
  which the site reads from the examples artifact) and the strongest other
  unit's (selectivity).

Units go in chunks of `featurevis.batch_size`. A chunk writes its WebP files
atomically, then its quality shard `<family>_quality/<start>.npz`; a chunk
whose shard exists is skipped, so a killed build resumes at the first
unfinished chunk. Each image depends only on (seed, unit, variant), not on
the chunking. The shards are merged into `<family>_quality.npz` at the end.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from atlasgen.cache import atomic_save_npz, atomic_write_json
from atlasgen.featurevis import STANDARD_TRANSFORMS, SAEDirections, render_units, save_webp, unit_maxima
from atlasgen.models import load_model
from atlasgen.sae_formats import load_sae_any
from atlasgen.stage import Stage, StageContext

STAGE = Stage(
    "featurevis",
    deps=("model", "sae"),
    config=("layers", "featurevis", "dataset.image_size"),
    what="feature visualisations",
    resumable=True,
    distributed=True,
)

# Under torchrun every rank runs this stage and renders the chunks c (of each family, in
# unit order) with c % world == rank; the images depend only on (seed, unit, variant), so they are
# the same bytes whichever rank renders them. Rank 0 merges the quality shards and writes meta.json.

QUALITY_KEYS = (
    "unit",
    "objective",
    "own_act",
    "other_unit",
    "other_act",
    "rank",
    "objective_neuron",
    "objective_negative",
    "objective_diverse",
)


def _render_chunk(model, layer, units, directions, encode, cfg, eval_size, device, folder):
    """Render every image of one chunk of units, write them, return the chunk's quality arrays."""
    family = folder.name
    common = dict(
        sae=directions,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        device=device,
        precision=cfg.precision,
        return_objective=True,
    )
    main_t = STANDARD_TRANSFORMS.for_size(cfg.image_size)
    var = dict(
        image_size=cfg.variant_image_size,
        steps=cfg.variant_steps,
        transforms=STANDARD_TRANSFORMS.for_size(cfg.variant_image_size),
        **common,
    )
    nan = np.full(len(units), np.nan, np.float32)
    q = {
        "unit": np.asarray(units, np.int64),
        "objective_neuron": nan,
        "objective_negative": nan,
        "objective_diverse": np.full((len(units), max(cfg.diverse, 1)), np.nan, np.float32),
    }

    images, q["objective"] = render_units(
        model, layer, units, image_size=cfg.image_size, steps=cfg.steps, transforms=main_t, **common
    )
    save_webp(
        images, folder, units, thumb_folder=folder.with_name(f"{family}_thumb"), thumb_size=cfg.thumb_size
    )
    if cfg.neuron:
        img, q["objective_neuron"] = render_units(model, layer, units, mode="neuron", **var)
        save_webp(img, folder.with_name(f"{family}_neuron"), units)
    if cfg.negative:
        img, q["objective_negative"] = render_units(model, layer, units, negative=True, **var)
        save_webp(img, folder.with_name(f"{family}_negative"), units)
    if cfg.diverse:
        img, q["objective_diverse"] = render_units(
            model, layer, units, copies=cfg.diverse, diversity_weight=cfg.diversity_weight, **var
        )
        for k in range(cfg.diverse):
            save_webp(np.ascontiguousarray(img[:, k]), folder.with_name(f"{family}_diverse") / str(k), units)

    # Quality: every unit's maximum on each main image, at the size dataset images have.
    maxima = unit_maxima(
        model, layer, images, encode=encode, size=eval_size, batch_size=cfg.batch_size, device=device
    )
    rows = np.arange(len(units))
    own = maxima[rows, units]
    others = maxima.copy()
    others[rows, units] = -np.inf
    q["own_act"] = own
    q["other_unit"] = others.argmax(1).astype(np.int64)
    q["other_act"] = others[rows, q["other_unit"]]
    q["rank"] = 1 + (others > own[:, None]).sum(1).astype(np.int64)  # 1: its own unit is the strongest
    return q


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.featurevis
    n_classes = json.loads((ctx.inputs["model"] / "model.json").read_text())["n_classes"]
    model = load_model(ctx.inputs["model"], ctx.cfg.model, n_classes, ctx.device)
    # Channels-last convolutions run about a third faster on CPU for small conv nets (measured on DemoNet).
    model = model.to(memory_format=torch.channels_last)
    eval_size = ctx.cfg.dataset.image_size
    for layer_cfg in ctx.cfg.layers:
        layer = layer_cfg.name
        sae_dir = ctx.inputs["sae"] / layer
        sae = SAEDirections.from_npz(sae_dir / "sae.npz")
        full_sae = load_sae_any(sae_dir).to(ctx.device).eval()
        families = {"features": (sae.n_features, sae, full_sae.encode), "neurons": (sae.d_in, None, None)}
        d = ctx.dist
        chunks = {
            family: [
                list(range(start, min(n, start + cfg.batch_size))) for start in range(0, n, cfg.batch_size)
            ]
            for family, (n, _, _) in families.items()
        }
        mine = {
            family: [c for i, c in enumerate(cs) if d is None or d.mine(i)] for family, cs in chunks.items()
        }
        total = sum(len(c) for cs in mine.values() for c in cs)
        with ctx.progress(total, f"vis {layer}") as bar:
            done = 0
            for family, (_n_units, directions, encode) in families.items():
                folder, shards = ctx.out / layer / family, ctx.out / layer / f"{family}_quality"
                for units in mine[family]:
                    shard = shards / f"{units[0]:08d}.npz"
                    if not shard.exists():  # written last: its presence means the chunk is complete
                        q = _render_chunk(
                            model, layer, units, directions, encode, cfg, eval_size, ctx.device, folder
                        )
                        shards.mkdir(parents=True, exist_ok=True)
                        atomic_save_npz(shard, **q)
                    done += len(units)
                    bar.set(done)
        if d is not None:
            d.barrier()  # every rank's chunks are rendered
            if not d.main:
                continue
        for family in families:
            shards = ctx.out / layer / f"{family}_quality"
            parts = []
            for p in sorted(shards.glob("*.npz")):
                with np.load(p) as z:
                    parts.append({k: z[k] for k in QUALITY_KEYS})
            atomic_save_npz(
                ctx.out / layer / f"{family}_quality.npz",
                **{k: np.concatenate([p[k] for p in parts]) for k in QUALITY_KEYS},
            )
        atomic_write_json(
            ctx.out / layer / "meta.json",
            {
                "mode": "channel",
                "image_size": cfg.image_size,
                "thumb_size": cfg.thumb_size,
                "steps": cfg.steps,
                "variant_image_size": cfg.variant_image_size,
                "variant_steps": cfg.variant_steps,
                "neuron": cfg.neuron,
                "negative": cfg.negative,
                "diverse": cfg.diverse,
                "eval_size": eval_size,
                "precision": cfg.precision,
            },
        )
