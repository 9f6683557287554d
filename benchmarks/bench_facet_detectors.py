"""Planted-structure score: do single SAE features detect the demo's facets better than single neurons?

The demo dataset records, for every image, its class and its facet (a
composition of the class's cue, e.g. a close-up or a scene). For each facet
the target is "image shows this facet of this class" over every image of the
dataset (training and held-out). Each unit scores an image by its maximum
activation over positions. A facet's score for a family of units is the best
average precision (AP) of any single unit of that family. The script prints
both distributions (over facets) and the per-facet table. The SAE has more
features than the layer has neurons, and the best of more candidates is higher
by chance alone, so a size-matched control is printed too: the best of as many
randomly drawn features as there are neurons (mean over 50 draws).

Reads a built demo atlas cache (``--cache``, default ``.atlasgen``): the
latest dataset, model and SAE artifacts.

Usage: python benchmarks/bench_facet_detectors.py [--cache .atlasgen] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from atlasgen.config import ModelConfig
from atlasgen.data import open_dataset
from atlasgen.models import layer_activations, load_model, positions_as_vectors
from atlasgen.sae_formats import load_sae_any

ROOT = Path(__file__).resolve().parents[1]


def latest(cache: Path, stage: str) -> Path:
    key = json.loads((cache / stage / "latest.json").read_text())["key"]
    return cache / stage / key


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """AP of one score vector (N,) for many binary targets (N, T), ties handled as sklearn does.

    AP = sum over distinct thresholds of (recall step) x precision at that threshold.
    """
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], targets[order].astype(np.float64)
    last = np.r_[s[1:] != s[:-1], True]  # end of each group of tied scores
    tp = np.cumsum(t, 0)[last]
    n_pred = (np.flatnonzero(last) + 1)[:, None]
    precision = tp / n_pred
    recall = tp / np.maximum(t.sum(0), 1)
    step = np.diff(np.vstack([np.zeros((1, t.shape[1])), recall]), axis=0)
    return (step * precision).sum(0)


@torch.no_grad()
def per_image_maxima(cache: Path, batch_size: int = 256):
    data = open_dataset(latest(cache, "dataset"))
    model = load_model(latest(cache, "model"), ModelConfig(), data.n_classes)
    sae = load_sae_any(latest(cache, "sae") / "mixed5b").eval()
    feats, neurons = [], []
    for s in range(0, len(data), batch_size):
        acts = layer_activations(
            model, data.batch(np.arange(s, min(s + batch_size, len(data)))), ["mixed5b"]
        )["mixed5b"]
        b, c, h, w = acts.shape
        v = positions_as_vectors(acts)
        neurons.append(v.view(b, h * w, c).amax(1).numpy())
        feats.append(sae.encode(v).view(b, h * w, -1).amax(1).numpy())
    facets = np.load(latest(cache, "dataset") / "facets.npy")
    return data, np.concatenate(feats), np.concatenate(neurons), facets


def unit_aps(maxima: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(U, T): AP of every single unit for every target."""
    return np.stack([average_precision(maxima[:, u], targets) for u in range(maxima.shape[1])])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=ROOT / ".atlasgen")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data, feats, neurons, facets = per_image_maxima(args.cache)
    names, cols = [], []
    for c in data.classes:
        for f, facet in enumerate(c["facets"]):
            names.append(facet if facet.startswith(c["name"]) else f"{c['name']}: {facet}")
            cols.append((data.labels == c["id"]) & (facets == f))
    targets = np.stack(cols, 1)
    f_aps, n_aps = unit_aps(feats, targets), unit_aps(neurons, targets)
    f_ap, f_id, n_ap, n_id = f_aps.max(0), f_aps.argmax(0), n_aps.max(0), n_aps.argmax(0)
    # Control for the larger pool: the best of as many random features as there are neurons.
    rng = np.random.default_rng(0)
    draws = [f_aps[rng.choice(len(f_aps), len(n_aps), replace=False)].max(0) for _ in range(50)]
    f_ap_matched = np.mean(draws, 0)
    base = targets.mean(0)  # AP of a random ranking
    print(
        f"{len(data)} images, {len(names)} facets; {feats.shape[1]} SAE features, {neurons.shape[1]} neurons"
    )
    print(f"{'facet':<40} {'base':>6} {'feature':>8} {'AP':>6} {'neuron':>7} {'AP':>6} {'matched':>8}")
    for i, name in enumerate(names):
        print(
            f"{name:<40} {base[i]:6.3f} {'f/' + str(f_id[i]):>8} {f_ap[i]:6.3f} {'n/' + str(n_id[i]):>7} "
            f"{n_ap[i]:6.3f} {f_ap_matched[i]:8.3f}"
        )

    def summary(x):
        q = np.percentile(x, [10, 25, 50, 75, 90])
        return (
            f"mean {x.mean():.3f}, median {q[2]:.3f}, p10 {q[0]:.3f}, p25 {q[1]:.3f}, p75 {q[3]:.3f}, "
            f"p90 {q[4]:.3f}"
        )

    print(f"best single feature AP: {summary(f_ap)}")
    print(f"best single neuron  AP: {summary(n_ap)}")
    print(f"best of {len(n_aps)} random features AP (mean of 50 draws): {summary(f_ap_matched)}")
    wins = int((f_ap > n_ap).sum())
    print(
        f"feature beats neuron on {wins} of {len(names)} facets; mean difference "
        f"{float((f_ap - n_ap).mean()):+.3f}"
    )
    print(
        f"size-matched features beat neurons on {int((f_ap_matched > n_ap).sum())} of {len(names)} facets; "
        f"mean difference {float((f_ap_matched - n_ap).mean()):+.3f}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "facets": names,
                    "base": base.tolist(),
                    "feature_ap": f_ap.tolist(),
                    "feature": f_id.tolist(),
                    "neuron_ap": n_ap.tolist(),
                    "neuron": n_id.tolist(),
                    "feature_ap_matched": f_ap_matched.tolist(),
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
