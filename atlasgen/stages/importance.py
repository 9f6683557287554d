"""Stage `importance`: mean-ablation importance of every SAE feature and neuron (atlasgen.importance).

Held-out images (the first ``importance.images``) are used, as Terekhov used
validation images. A layer that reaches the logits through average pooling and
one linear layer (checked on images, as for the class weights) gets the closed
form; any other layer gets batched ablations.

Files (importance/L/): importance.npz with, per kind (features, neurons),
``<kind>_topk`` and ``<kind>_top1`` (images that lose the true class from the
top k / top 1; int64, may be negative) and ``<kind>_rank`` (1 = most
important); importance.json with the method, k, the image count and the clean
model's correct counts.
"""

from __future__ import annotations

import numpy as np
import torch

from atlasgen.cache import atomic_save_npz, atomic_write_json
from atlasgen.circuits import reaches_classifier_linearly
from atlasgen.config import ConfigError
from atlasgen.data import open_dataset
from atlasgen.importance import batched_ablation, closed_form, ranks, unit_means
from atlasgen.models import class_outputs, load_model
from atlasgen.pipeline import StageContext
from atlasgen.sae_formats import load_sae_any


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.importance
    data = open_dataset(ctx.inputs["dataset"])
    if cfg.top_k >= data.n_classes:
        raise ConfigError([f"importance.top_k: {cfg.top_k} is not below the number of classes ({data.n_classes}); "
                           "every image would keep its class in the top k. Fix: lower importance.top_k "
                           "(Terekhov's 10 is for 1,000 classes)."])
    model = load_model(ctx.inputs["model"], ctx.cfg.model, data.n_classes, ctx.device)
    indices = data.indices("heldout")
    if len(indices) == 0:
        indices = data.indices("train")
    if cfg.images:
        indices = indices[:cfg.images]

    outputs = np.asarray(class_outputs(model, data.n_classes))  # each dataset class's logit (e.g. InceptionV1's 1008)

    def batches():
        for start in range(0, len(indices), cfg.batch_size):
            idx = indices[start:start + cfg.batch_size]
            yield data.batch(idx).to(ctx.device), torch.from_numpy(outputs[data.labels[idx]]).to(ctx.device)

    for layer_cfg in ctx.cfg.layers:
        layer = layer_cfg.name
        sae = load_sae_any(ctx.inputs["sae"] / layer).to(ctx.device).eval()
        mu_a, mu_f = unit_means(model, layer, sae, batches)
        exact = reaches_classifier_linearly(model, layer, data.batch(indices[:64]).to(ctx.device))
        if exact:
            totals = closed_form(model, layer, sae, batches, mu_a, mu_f, cfg.top_k)
        else:
            with ctx.progress(len(indices), f"ablations {layer}") as bar:
                totals = batched_ablation(model, layer, sae, batches, mu_a, mu_f, cfg.top_k, cfg.units_per_pass,
                                          progress=bar.update)
        arrays = {}
        for kind in ("features", "neurons"):
            arrays[f"{kind}_topk"] = totals[f"{kind}_topk"].astype(np.int64)
            arrays[f"{kind}_top1"] = totals[f"{kind}_top1"].astype(np.int64)
            arrays[f"{kind}_rank"] = ranks(arrays[f"{kind}_topk"], arrays[f"{kind}_top1"])
        atomic_save_npz(ctx.out / layer / "importance.npz", **arrays)
        atomic_write_json(ctx.out / layer / "importance.json", {
            "method": "closed form (pool + linear head)" if exact else "batched mean ablations",
            "top_k": cfg.top_k,
            "images": int(totals["images"]),
            "clean_topk_correct": int(totals["clean_topk"]),
            "clean_top1_correct": int(totals["clean_top1"]),
        })
        best = int(np.flatnonzero(arrays["features_rank"] == 1)[0])
        ctx.console.detail(f"{layer}: importance by {'closed form' if exact else 'batched ablation'} on "
                           f"{totals['images']} images; rank 1: f/{best} ({arrays['features_topk'][best]} images lose "
                           f"the true class from the top {cfg.top_k}, {arrays['features_top1'][best]} from the top 1)")
