"""Stage `examples`: dataset examples and statistics of every SAE feature and neuron.

Per layer: one pass over the training images (:func:`atlasgen.scan.scan`: top-k
images, activation bands, histograms, densities, class statistics and flags,
co-occurrence), then a second, small pass over the images shown for their
activation maps (:func:`atlasgen.scan.unit_maps`). Files (examples/L/):
``features.npz`` and ``neurons.npz`` (the arrays of :meth:`atlasgen.scan.Scan.finish`
and the maps), ``cooccurrence.npz`` (docs/artifacts.md).

Distributed (docs/scaling.md): the batches are split over the ranks (the same
batches as a single process, so every per-image value is the same float); each
rank keeps its scan state (``ranks.keep``: a rank whose state is kept does not
scan again on a restart), rank 0 merges the states exactly
(:func:`atlasgen.scan.merge_states`), and the second pass is split over the ranks again.
"""

from __future__ import annotations

import functools

import torch

from atlasgen import unitlabels
from atlasgen.cache import atomic_save_npz
from atlasgen.data import open_dataset
from atlasgen.models import load_model
from atlasgen.sae_formats import load_sae_any
from atlasgen.scan import Scan, add_maps, join_maps, merge_states, scan, shown_images, shown_union, unit_maps
from atlasgen.stage import Stage, StageContext

STAGE = Stage(
    "examples",
    deps=("dataset", "model", "sae"),
    config=("layers", "examples"),
    what="dataset examples",
    resumable=True,
    distributed=True,
)


@torch.no_grad()
def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.examples
    data = open_dataset(ctx.inputs["dataset"], ctx.cfg)
    model = load_model(ctx.inputs["model"], ctx.cfg.model, data.n_classes, ctx.device)
    train_idx = data.indices("train")
    ranks = ctx.ranks
    for layer_cfg in ctx.cfg.layers:
        layer = layer_cfg.name
        sae = load_sae_any(ctx.inputs["sae"] / layer).to(ctx.device).eval()

        def scan_share(sae=sae, layer=layer) -> dict:  # this rank's batches of the training images
            batches = data.batches(train_idx, cfg.batch_size, ctx.device, select=ranks.mine)
            starts = ranks.share(range(0, len(train_idx), cfg.batch_size))
            n_images = sum(min(cfg.batch_size, len(train_idx) - s) for s in starts)
            with ctx.progress(n_images, f"examples {layer}") as bar:
                return scan(
                    model,
                    sae,
                    layer,
                    batches,
                    cfg,
                    ctx.device,
                    bar,
                    data.labels,
                    data.n_classes,
                    probe=lambda: data.batch(train_idx[:1]),
                ).state()

        mine = ranks.keep(f"{layer}/scan", scan_share)
        merged = ranks.merge(mine, functools.partial(merge_states, cfg=cfg))
        results = None
        if ranks.main:
            rules = unitlabels.FlagRules.from_config(cfg)
            scanned = Scan.from_state(merged, cfg, ctx.device)
            results = scanned.finish(data.labels, data.n_classes, cfg.histogram_bins, rules)
        shown = ranks.from_main(None if results is None else shown_images(results))
        batches = data.batches(shown_union(shown), cfg.batch_size, ctx.device, select=ranks.mine)
        maps = ranks.merge(unit_maps(shown, model, sae, layer, batches, ctx.device), join_maps)
        if not ranks.main:
            continue
        add_maps(results, maps, mine["grid"])
        for name, arrays in results.items():
            atomic_save_npz(ctx.out / layer / f"{name}.npz", **arrays)
        atomic_save_npz(
            ctx.out / layer / "cooccurrence.npz", **scanned.cooccurrence(cfg.cooccurrence_min_count)
        )
