"""Are a class's top facet features the detectors of that class's planted facets?

Reads a built demo cache (run `atlasgen build` first; the artifacts of the
config's current keys are used). Every demo image records its class and facet
(atlasgen/demo/dataset.py). One pass over the training images gives each SAE
feature's per-image maximum; a feature's *preferred facet* is the (class, facet)
group with the highest mean of that maximum, and it is that facet's *detector*
when that mean is at least twice its mean over the images of other classes
(dead and unselective features detect nothing). For a class with m planted
facets, its top m features are ranked two ways: by the circuits stage's class
weights (W_fc . W_dec^T for mixed5b) and by their contribution to the class
logit on the class's own images (circuits/L/class_contributions.npz, the
ranking the class pages use):

- precision@m: the fraction of the top m that detect one of the class's facets;
- coverage@m: the fraction of the class's facets detected by one of the top m;
- chance: the precision of m features drawn at random (detectors of the class's
  facets / all features).

The same is reported for neurons (top m by W_fc, and by contribution) as a comparison.

    python benchmarks/bench_class_facets.py [-c site_config.yaml] [--layer mixed5b]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atlasgen.config import load_config  # noqa: E402
from atlasgen.data import open_dataset  # noqa: E402
from atlasgen.models import layer_activations, load_model, positions_as_vectors  # noqa: E402
from atlasgen.pipeline import Pipeline  # noqa: E402
from atlasgen.progress import Console  # noqa: E402
from atlasgen.sae_formats import load_sae_any  # noqa: E402


def cached_folders(config: Path, needed=("dataset", "model", "sae", "circuits")) -> dict[str, Path]:
    """Artifact folders of the stages read here, at the config's current keys."""
    pipe = Pipeline(load_config(config), console=Console(0))
    out = {}
    for s in pipe.states():
        if s.name in needed:
            if not s.cached:
                raise SystemExit(
                    f"stage {s.name} is not built for {config}: run `atlasgen build -c {config}` first"
                )
            out[s.name] = pipe.store.final(s.name, s.key)
    return out


@torch.no_grad()
def per_image_max(model, sae, data, layer: str, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    feats, neurons = [], []
    for start in range(0, len(indices), 128):
        a = layer_activations(model, data.batch(indices[start : start + 128]), [layer])[layer]
        b, _, h, w = a.shape
        f = sae.encode(positions_as_vectors(a)).reshape(b, h * w, -1)
        feats.append(f.amax(1).numpy())
        neurons.append(a.flatten(2).amax(2).numpy())
    return np.concatenate(feats), np.concatenate(neurons)


def detectors(
    maxes: np.ndarray, groups: np.ndarray, classes_of_group: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Per unit: the (class, facet) group it detects, or -1."""
    n_groups = len(classes_of_group)
    means = np.stack([maxes[groups == g].mean(0) for g in range(n_groups)])  # (G, U)
    best = means.argmax(0)
    out = np.full(maxes.shape[1], -1)
    for u in range(maxes.shape[1]):
        c = classes_of_group[best[u]]
        outside = maxes[labels != c, u].mean()
        if means[best[u], u] > 0 and means[best[u], u] >= 2 * outside:
            out[u] = best[u]
    return out


def score(weights: np.ndarray, detected: np.ndarray, facets_of_class: list[list[int]]) -> list[dict]:
    rows = []
    for c, groups in enumerate(facets_of_class):
        m = len(groups)
        top = np.argsort(-weights[:, c], kind="stable")[:m]
        hit = [int(detected[u]) in groups for u in top]
        covered = {int(detected[u]) for u in top} & set(groups)
        chance = np.isin(detected, groups).sum() / len(detected)
        rows.append(
            {"class": c, "m": m, "precision": sum(hit) / m, "coverage": len(covered) / m, "chance": chance}
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-c", "--config", default="site_config.yaml")
    ap.add_argument("--layer", default=None, help="layer (default: the last configured)")
    args = ap.parse_args()
    cfg = load_config(args.config)
    layer = args.layer or cfg.layers[-1].name
    folders = cached_folders(Path(args.config))
    data = open_dataset(folders["dataset"])
    info = json.loads((folders["dataset"] / "dataset.json").read_text())
    facets = np.load(folders["dataset"] / "facets.npy")
    model = load_model(folders["model"], cfg.model, data.n_classes, "cpu")
    sae = load_sae_any(folders["sae"] / layer).eval()
    with np.load(folders["circuits"] / layer / "class_weights.npz") as z:
        w_feat, w_neur = z["features"], z["neurons"]
    contributions = folders["circuits"] / layer / "class_contributions.npz"
    if contributions.is_file():
        with np.load(contributions) as z:
            c_feat, c_neur = z["features"], z["neurons"]
    else:
        c_feat = c_neur = None
    method = json.loads((folders["circuits"] / layer / "circuits.json").read_text())["method"]

    idx = data.indices("train")
    labels = data.labels[idx]
    names = [c["name"] for c in info["classes"]]
    facet_names = [c["facets"] for c in info["classes"]]
    group_of = {}
    for c, fs in enumerate(facet_names):
        for fi in range(len(fs)):
            group_of[(c, fi)] = len(group_of)
    classes_of_group = np.array([c for (c, _) in group_of])
    groups = np.array([group_of[(int(c), int(f))] for c, f in zip(labels, facets[idx])])
    facets_of_class = [[group_of[(c, fi)] for fi in range(len(fs))] for c, fs in enumerate(facet_names)]

    fmax, nmax = per_image_max(model, sae, data, layer, idx)
    results = {}
    rankings = [("features", "weight", fmax, w_feat), ("neurons", "weight", nmax, w_neur)]
    if c_feat is not None:
        rankings += [("features", "contribution", fmax, c_feat), ("neurons", "contribution", nmax, c_neur)]
    for kind, by, maxes, weights in rankings:
        det = detectors(maxes, groups, classes_of_group, labels)
        rows = score(weights, det, facets_of_class)
        results[kind, by] = rows
        what = method if by == "weight" else "contribution on the class's images"
        print(
            f"\n{kind} of {layer} ({maxes.shape[1]} units, {int((det >= 0).sum())} detect a facet), "
            f"ranked by {by} ({what})"
        )
        print("| class | facets | precision@m | coverage@m | chance |")
        print("|---|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {names[r['class']]} | {r['m']} | {r['precision']:.2f} | {r['coverage']:.2f} | {r['chance']:.3f} |"
            )
        mean = {k: float(np.mean([r[k] for r in rows])) for k in ("precision", "coverage", "chance")}
        print(
            f"| **mean** | | **{mean['precision']:.2f}** | **{mean['coverage']:.2f}** | {mean['chance']:.3f} |"
        )
    print(
        "\n| ranking | features precision@m | neurons precision@m | ratio | features coverage@m | neurons coverage@m |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for by in dict.fromkeys(by for _, by in results):
        fp, npr = (np.mean([r["precision"] for r in results[k, by]]) for k in ("features", "neurons"))
        fc, nc = (np.mean([r["coverage"] for r in results[k, by]]) for k in ("features", "neurons"))
        print(f"| {by} | {fp:.2f} | {npr:.2f} | {fp / max(npr, 1e-9):.2f}x | {fc:.2f} | {nc:.2f} |")


if __name__ == "__main__":
    main()
