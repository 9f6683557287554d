"""Stage `importance`: mean-ablation importance of every SAE feature and neuron (atlasgen.importance).

Held-out images (the first ``importance.images``, or the layer's own
``layers[].importance.images``) are used, as Terekhov used validation images. A layer that reaches the logits
through average pooling and
one linear layer (checked on images, as for the class weights) gets the closed
form; any other layer gets batched ablations.

Files (importance/L/): importance.npz with, per kind (features, neurons),
``<kind>_topk`` and ``<kind>_top1`` (images that lose the true class from the
top k / top 1; int64, may be negative) and ``<kind>_rank`` (1 = most
important); importance.json with the method, k, the image count and the clean
model's correct counts.

Distributed: the batches are split over the ranks (``ctx.ranks``). The unit
means are folded from every batch's float64 sums in batch order (the same
additions as one process), and the importance counts are integers, summed.
Each rank keeps its per-batch sums and its counts (``ranks.keep``) so a
restarted rank redoes only what it had not finished.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from atlasgen.cache import atomic_save_npz, atomic_write_json
from atlasgen.circuits import reaches_classifier_linearly
from atlasgen.data import open_dataset
from atlasgen.importance import (
    batched_ablation,
    closed_form,
    fold_means,
    ranks,
    resolve_top_k,
    unit_sums,
)
from atlasgen.models import NO_HEAD_REASON, class_outputs, load_model
from atlasgen.sae_formats import load_sae_any
from atlasgen.stage import Stage, StageContext

STAGE = Stage(
    "importance",
    deps=("dataset", "model", "sae"),
    config=("layers", "importance", "layer_importance"),
    what="mean-ablation importance",
    resumable=True,
    distributed=True,
)


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.importance
    data = open_dataset(ctx.inputs["dataset"], ctx.cfg)
    if ctx.cfg.model.head == "none":  # importance is the loss of top-k accuracy: it needs class logits
        ctx.skip("importance", NO_HEAD_REASON)
        return
    n_outputs = int(json.loads((ctx.inputs["model"] / "model.json").read_text())["n_outputs"])
    top_k = resolve_top_k(cfg.top_k, n_outputs)
    if (
        top_k >= n_outputs
    ):  # the preflight check refuses a set top_k this large; auto reaches here with 1 output
        reason = (
            f"importance needs a model with at least 2 outputs to rank (this one has {n_outputs}): "
            "every image keeps its class in the top 1, so no ablation can change it"
        )
        ctx.skip("importance", reason)
        return
    model = load_model(ctx.inputs["model"], ctx.cfg.model, data.n_classes, ctx.device)
    heldout = data.indices("heldout")
    if len(heldout) == 0:
        heldout = data.indices("train")

    outputs = np.asarray(
        class_outputs(model, data.n_classes)
    )  # each dataset class's logit (e.g. InceptionV1's 1008)

    for layer_cfg in ctx.cfg.layers:
        layer = layer_cfg.name
        n_images = cfg.images if layer_cfg.importance.images is None else layer_cfg.importance.images
        indices = heldout[:n_images] if n_images else heldout
        n_batches = len(range(0, len(indices), cfg.batch_size))

        def batches(indices=indices):  # this rank's share of the batches
            for idx, images in data.batches(indices, cfg.batch_size, ctx.device, select=ctx.ranks.mine):
                yield images, torch.from_numpy(outputs[data.labels[idx]]).to(ctx.device)

        sae = load_sae_any(ctx.inputs["sae"] / layer).to(ctx.device).eval()
        exact = reaches_classifier_linearly(model, layer, data.batch(indices[:64]).to(ctx.device))

        def batch_sums(
            batches=batches, sae=sae, layer=layer, n_batches=n_batches
        ):  # per batch number: the float64 sums of unit_sums, on the CPU
            return {
                b: _on_cpu(unit_sums(model, layer, sae, x))
                for b, (x, _) in zip(ctx.ranks.share(range(n_batches)), batches(), strict=True)
            }

        every = ctx.ranks.merge(ctx.ranks.keep(f"{layer}/sums", batch_sums), _union, everywhere=True)
        mu_a, mu_f = fold_means(every[b] for b in sorted(every))  # in batch order, as one process
        mu_a, mu_f = mu_a.to(ctx.device), (None if mu_f is None else mu_f.to(ctx.device))

        def counts(batches=batches, indices=indices, sae=sae, layer=layer, exact=exact, mu_a=mu_a, mu_f=mu_f):
            if exact:
                return closed_form(model, layer, sae, batches, mu_a, mu_f, top_k)
            mine = ctx.ranks.share(range(0, len(indices), cfg.batch_size))
            n_mine = sum(min(cfg.batch_size, len(indices) - start) for start in mine)
            with ctx.progress(n_mine, f"ablations {layer}") as bar:
                return batched_ablation(
                    model, layer, sae, batches, mu_a, mu_f, top_k, cfg.units_per_pass, progress=bar.update
                )

        totals = ctx.ranks.merge(ctx.ranks.keep(f"{layer}/totals", counts), _add_counts)
        if not ctx.ranks.main:
            continue
        arrays = {}
        for kind in ("features", "neurons"):
            arrays[f"{kind}_topk"] = totals[f"{kind}_topk"].astype(np.int64)
            arrays[f"{kind}_top1"] = totals[f"{kind}_top1"].astype(np.int64)
            arrays[f"{kind}_rank"] = ranks(arrays[f"{kind}_topk"], arrays[f"{kind}_top1"])
        atomic_save_npz(ctx.out / layer / "importance.npz", **arrays)
        atomic_write_json(
            ctx.out / layer / "importance.json",
            {
                "method": "closed form (pool + linear head)" if exact else "batched mean ablations",
                "top_k": top_k,
                "images": int(totals["images"]),
                "clean_topk_correct": int(totals["clean_topk"]),
                "clean_top1_correct": int(totals["clean_top1"]),
            },
        )
        best = int(np.flatnonzero(arrays["features_rank"] == 1)[0])
        ctx.console.detail(
            f"{layer}: importance by {'closed form' if exact else 'batched ablation'} on "
            f"{totals['images']} images; rank 1: f/{best} ({arrays['features_topk'][best]} images lose "
            f"the true class from the top {top_k}, {arrays['features_top1'][best]} from the top 1)"
        )


def _on_cpu(sums):
    a, f, count = sums
    return a.cpu(), (None if f is None else f.cpu()), count


def _union(parts: list[dict]) -> dict:
    """The ranks' per-batch sums together (each batch is one rank's)."""
    every = {}
    for part in parts:
        every.update(part)
    return every


def _add_counts(parts: list[dict]) -> dict:
    """The ranks' importance counts summed (integers: exact)."""
    return {key: sum(p.get(key, 0) for p in parts) for key in set().union(*parts)}
