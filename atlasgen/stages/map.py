"""Stage `map`: a 2-D layout of each layer's features and a named cluster hierarchy.

Reads each layer's per-feature vectors (``map.source``), its features' class weights (from their
top dataset examples) and liveness, and writes map.json; the compute is
:func:`atlasgen.featuremap.build_map` (layout, top clusters, nested finer levels, names, scores).
``map.source``: ``decoder`` lays out the SAE's decoder directions; ``class_weights`` the features'
class-weight profiles (circuits stage); ``coactivation`` their maximum activations on a uniform
sample of images (examples stage); ``predictions`` the model's mean predicted class probabilities
on each feature's top dataset examples, weighted by its activation (one forward pass of the model
over the union of the layers' top examples). On data with planted superclasses, the top-level
clusters are scored against them (purity, adjusted Rand index) in map.json's "evaluation".
"""

from __future__ import annotations

import json

import numpy as np
import torch

from atlasgen import featuremap
from atlasgen import hierarchy as hierarchy_mod
from atlasgen.cache import atomic_write_json
from atlasgen.data import open_dataset
from atlasgen.stage import Stage, StageContext

STAGE = Stage(
    "map",
    deps=("dataset", "model", "sae", "examples", "circuits"),
    config=("layers", "map", "map_hierarchy"),
    what="feature map",
)


@torch.no_grad()
def image_predictions(
    model_dir, model_cfg, data, images: np.ndarray, device: str, batch_size: int = 128
) -> np.ndarray:
    """(n, K) softmax over the dataset's classes of the model on dataset images ``images``."""
    from atlasgen.models import class_outputs, load_model

    model = load_model(model_dir, model_cfg, data.n_classes, device).eval()
    outputs = class_outputs(model, data.n_classes)
    out = []
    for _idx, x in data.batches(images, batch_size, device):
        logits = model(x)[:, outputs]
        out.append(torch.softmax(logits.float(), 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, data.n_classes), np.float32)


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.map
    classes = json.loads((ctx.inputs["dataset"] / "dataset.json").read_text())["classes"]
    hierarchy = hierarchy_mod.load(cfg.hierarchy, classes, ctx.cfg.resolve)
    examples = {
        layer.name: np.load(ctx.inputs["examples"] / layer.name / "features.npz") for layer in ctx.cfg.layers
    }
    images = probs = None
    if cfg.source == "predictions":  # one forward pass over every layer's top examples
        images = np.unique(
            np.concatenate([featuremap.example_images(ex["top_idx"]) for ex in examples.values()])
        )
        probs = image_predictions(
            ctx.inputs["model"],
            ctx.cfg.model,
            open_dataset(ctx.inputs["dataset"], ctx.cfg),
            images,
            ctx.device,
            ctx.cfg.examples.batch_size,
        )
    for layer_cfg in ctx.cfg.layers:
        layer = layer_cfg.name
        ex = examples[layer]
        W_dec = np.load(ctx.inputs["sae"] / layer / "sae.npz")["W_dec"]
        class_w = featuremap.class_weights(ex["top_classes"], ex["top_class_weights"], len(classes))
        alive = ex["density"] > 0
        if cfg.source == "class_weights":
            vectors = np.load(ctx.inputs["circuits"] / layer / "class_weights.npz")["features"]
        elif cfg.source == "coactivation":
            vectors = featuremap.coactivation_vectors(
                np.load(ctx.inputs["examples"] / layer / "cooccurrence.npz")
            )
        elif cfg.source == "predictions":
            vectors = featuremap.prediction_profiles(ex["top_idx"], ex["top_val"], images, probs)
        else:
            vectors = W_dec
        m = featuremap.build_map(
            vectors,
            alive,
            class_w,
            hierarchy,
            levels=list(cfg.levels),
            cluster=cfg.cluster,
            n_neighbors=cfg.n_neighbors,
            min_dist=cfg.min_dist,
            seed=cfg.seed,
        )
        evaluation = m["evaluation"]
        if evaluation:
            ctx.console.detail(
                f"{layer}: top clusters vs superclasses: purity {evaluation['purity']:.3f}, "
                f"ARI {evaluation['adjusted_rand_index']:.3f}"
            )
        atomic_write_json(ctx.out / layer / "map.json", {"source": cfg.source, **m})
