"""Stage `circuits`: weights from SAE features and neurons to the output classes.

When a layer reaches the classifier through global average pooling and one
linear layer (InceptionV1 mixed5b -> avgpool -> softmax2; DemoNet's mixed5b
likewise), a feature's effect on the logits is exactly linear:
logit_k = sum_i mean_positions(f_i) (W_fc W_dec^T)[k, i] + const, so the
feature-to-class matrix is W_fc . W_dec^T and the neuron-to-class matrix W_fc.
atlasgen checks this on real images (the pooled layer output through the
linear layer must reproduce the logits) instead of trusting layer names. Other
layers get a gradient-based linear attribution: the expected gradient of each
logit with respect to the spatially pooled layer output, used in place of W_fc,
and the page says so.

One pass over the first ``circuits.images_per_class`` training images of every
class gives each unit's contribution to the class logit on the class's own
images (atlasgen.circuits.class_contributions: weight x activation through a
pooled linear head, gradient x activation otherwise), per class and, where the
dataset records facets, per (class, facet), and each image's largest
contributions to its own class (the class pages tell near-duplicate units by
them): L/class_contributions.npz.

Between consecutive studied layers (in forward order), it computes expanded
weights (atlasgen.circuits): per spatial offset, from every upstream unit to
every downstream unit, for SAE features and for neurons, and keeps each unit's
strongest upstream and downstream partners with their kernels.
"""

from __future__ import annotations

import numpy as np
import torch

from atlasgen.cache import atomic_save_npz, atomic_write_json
from atlasgen.circuits import (
    CircuitsError,
    class_contributions,
    class_image_indices,
    expanded_weights,
    facet_groups,
    forward_from,
    forward_order,
    layer_pair_weights,
    reaches_classifier_linearly,
)
from atlasgen.data import open_dataset
from atlasgen.models import NO_HEAD_REASON, class_outputs, classifier_head, layer_activations, load_model
from atlasgen.sae_formats import load_sae_any
from atlasgen.stage import Stage, StageContext

STAGE = Stage(
    "circuits",
    deps=("dataset", "model", "sae"),
    config=("layers", "circuits"),
    what="class and layer-to-layer weights",
)


def gradient_class_weights(
    model, layer: str, data, indices: np.ndarray, device: str, n_classes: int, batch_size: int = 64
) -> np.ndarray:
    """(K, C): mean over images of d logit_k / d (spatial mean of the layer's channel c),
    for the model output of each of the K dataset classes."""
    outputs = class_outputs(model, n_classes)
    total = None
    for _idx, images in data.batches(indices, batch_size, device):
        acts = layer_activations(model, images, [layer])[layer].detach().requires_grad_(True)
        logits = forward_from(model, layer, acts, images)
        rows = []
        for k in range(n_classes):
            (g,) = torch.autograd.grad(logits[:, outputs[k]].sum(), acts, retain_graph=k < n_classes - 1)
            # Pooled-channel gradient: d logit / d a[c, y, x] summed over positions = d logit / d mean_c.
            rows.append(g.sum(dim=(2, 3)).sum(0))
        grads = torch.stack(rows)
        total = grads if total is None else total + grads
    return (total / len(indices)).cpu().numpy()


def run(ctx: StageContext) -> None:
    data = open_dataset(ctx.inputs["dataset"], ctx.cfg)
    model = load_model(ctx.inputs["model"], ctx.cfg.model, data.n_classes, ctx.device)
    probe = data.indices("heldout")[:64]
    heads = {}  # layer -> the (K, C) linear head on its pooled channels; None where it has none
    if ctx.cfg.model.head == "none":
        write_classes_skipped(ctx, NO_HEAD_REASON)
    else:
        class_weights(ctx, model, data, probe, heads)
        write_contributions(ctx, model, data, heads)
    # Layer-to-layer weights between consecutive studied layers that are whole module outputs (a
    # channel range or a ViT token view has no kernel of its own). A path the expanded-weights
    # method cannot linearize (a functional max-pool or ReLU) is reported and skipped: class
    # weights and every other page section stay.
    whole = [
        layer.name
        for layer in ctx.cfg.layers
        if not layer.channels and (layer.module or layer.name) == layer.name
    ]
    order = forward_order(model, whole, data.image_size, ctx.device)
    for src, dst in zip(order, order[1:]):
        try:
            write_layer_weights(ctx, model, src, dst, data.image_size)
        except CircuitsError as exc:
            ctx.console.info(f"  {src} -> {dst}: no layer-to-layer weights: {exc.errors[0]}")
            reason = exc.errors[0].removeprefix("circuits: ").split(" Fix: ")[0]
            atomic_write_json(ctx.out / dst / "upstream_skipped.json", {"layer": src, "reason": reason})


def write_classes_skipped(ctx: StageContext, reason: str) -> None:
    """No class weights and no class contributions: classes_skipped.json with the reason (read by
    the site) and a line in the build summary; the layer-to-layer weights are still written."""
    atomic_write_json(ctx.out / "classes_skipped.json", {"reason": reason})
    atomic_write_json(
        ctx.out / "build_notes.json", [f"circuits: class weights and class contributions skipped: {reason}"]
    )
    ctx.console.info(f"  class weights skipped: {reason}")


def class_weights(ctx: StageContext, model, data, probe: np.ndarray, heads: dict) -> None:
    """Every layer's (features, classes) and (neurons, classes) weights: L/class_weights.npz;
    ``heads`` gets each layer's linear head on its pooled channels (None where it has none)."""
    for layer_cfg in ctx.cfg.layers:
        layer = layer_cfg.name
        sae = load_sae_any(ctx.inputs["sae"] / layer)
        W_dec = sae.W_dec.detach().cpu().numpy().astype(np.float64)  # (F, C)
        if reaches_classifier_linearly(model, layer, data.batch(probe).to(ctx.device)):
            W_class = classifier_head(model).weight.detach().cpu().numpy().astype(np.float64)  # (outputs, C)
            W_class = W_class[class_outputs(model, data.n_classes)]  # (K, C): each dataset class's output
            info = {
                "exact": True,
                "method": "W_fc . W_dec^T",
                "note": "exact: the layer reaches the logits through average pooling and one linear layer",
            }
        else:
            sample = data.indices("train")[:256]
            W_class = gradient_class_weights(
                model, layer, data, sample, ctx.device, data.n_classes, ctx.cfg.circuits.batch_size
            ).astype(np.float64)
            info = {
                "exact": False,
                "method": "mean gradient of the logits w.r.t. the pooled layer . W_dec^T",
                "note": f"linear attribution (not exact): gradients averaged over {len(sample)} training "
                "images",
            }
        atomic_save_npz(
            ctx.out / layer / "class_weights.npz",
            features=(W_dec @ W_class.T).astype(np.float32),
            neurons=W_class.T.astype(np.float32),
        )
        atomic_write_json(ctx.out / layer / "circuits.json", dict(info, top_k=ctx.cfg.circuits.top_k))
        ctx.console.detail(f"{layer}: class weights {'exact' if info['exact'] else 'by attribution'}")
        heads[layer] = W_class if info["exact"] else None


def write_contributions(ctx: StageContext, model, data, heads: dict) -> None:
    """Every unit's contribution to each class logit on the class's own training images, per class
    and per (class, facet) group where the dataset records facets: L/class_contributions.npz."""
    cfg = ctx.cfg.circuits
    saes = {name: load_sae_any(ctx.inputs["sae"] / name).to(ctx.device).eval() for name in heads}
    indices = class_image_indices(data.labels, data.indices("train"), data.n_classes, cfg.images_per_class)
    group_of, groups = facet_groups(data.labels, data.facets, data.facet_names)
    outputs = np.asarray(class_outputs(model, data.n_classes), dtype=np.int64)
    group_class = np.array([c for c, _ in groups], dtype=np.int64) if groups else None
    results = class_contributions(
        model, saes, heads, data, indices, outputs, cfg.batch_size, ctx.device, group_of, group_class
    )
    for layer, res in results.items():
        exact = heads[layer] is not None
        atomic_save_npz(
            ctx.out / layer / "class_contributions.npz",
            **{k: v if np.issubdtype(v.dtype, np.integer) else v.astype(np.float32) for k, v in res.items()},
        )
        atomic_write_json(
            ctx.out / layer / "class_contributions.json",
            {
                "method": "weight x activation: (W_fc . W_dec^T)[class, feature] x mean code"
                if exact
                else "gradient x activation: sum over positions of code x (decoder row . d logit / d layer)",
                "exact": exact,
                "images": int(len(indices)),
                "images_per_class": int(cfg.images_per_class),
                "split": "train",
                "groups": [[int(c), int(f)] for c, f in groups],
            },
        )
    ctx.console.detail(f"class contributions on {len(indices)} training images")


def write_layer_weights(ctx: StageContext, model, src: str, dst: str, image_size: int) -> None:
    """Expanded weights src -> dst, for features and neurons: dst/upstream.npz and src/downstream.npz."""
    J = expanded_weights(model, src, dst, image_size, ctx.device)  # (C_dst, C_src, kh, kw)
    sae_dst, sae_src = load_sae_any(ctx.inputs["sae"] / dst), load_sae_any(ctx.inputs["sae"] / src)
    read = sae_dst.W_enc.detach().cpu().numpy().astype(np.float64)  # (C_dst, F_dst): encoder columns
    write = sae_src.W_dec.detach().cpu().numpy().astype(np.float64)  # (F_src, C_src): decoder rows
    k = ctx.cfg.circuits.top_k
    up, down = {}, {}
    for kind, r, w in (("features", read, write), ("neurons", None, None)):
        pairs = layer_pair_weights(J, r, w, k)
        for side, store in (("up", up), ("down", down)):
            store[f"{kind}_idx"] = pairs[f"{side}_idx"].astype(np.int64)
            store[f"{kind}_w"] = pairs[f"{side}_w"].astype(np.float32)
            store[f"{kind}_kernel"] = pairs[f"{side}_kernel"].astype(np.float32)
    kh, kw = J.shape[2:]
    info = {
        "method": "expanded weights (ReLUs and max-pools linearized), autograd",
        "kernel": [int(kh), int(kw)],
        "features_read": "W_enc (downstream encoder)",
        "features_write": "W_dec (upstream decoder)",
        "top_k": k,
    }
    atomic_save_npz(ctx.out / dst / "upstream.npz", **up)
    atomic_write_json(ctx.out / dst / "upstream.json", dict(info, layer=src))
    atomic_save_npz(ctx.out / src / "downstream.npz", **down)
    atomic_write_json(ctx.out / src / "downstream.json", dict(info, layer=dst))
    ctx.console.detail(f"{src} -> {dst}: expanded weights, {kh}x{kw} kernel")
