"""Are a class's top facet features the detectors of that class's planted facets?

Reads a built demo cache (run `atlasgen build` first; the artifacts of the
config's current keys are used). Every demo image records its class and facet
(atlasgen/demo/dataset.py). One pass over the training images gives each SAE
feature's per-image maximum; a feature's *preferred facet* is the (class, facet)
group with the highest mean of that maximum, and it is that facet's *detector*
when that mean is at least twice its mean over the images of other classes
(dead and unselective features detect nothing). For a class with m planted
facets, its top m features are ranked five ways: by the circuits stage's class
weights (W_fc . W_dec^T for mixed5b); by their contribution to the class logit
on the class's own images (circuits/L/class_contributions.npz); by contribution
with the units flagged dense (examples/L/features.npz) after all the others;
by contribution with the units selective for the class (lift,
atlasgen.site.circuits.class_lift) first and the dense units that are not
selective last; and by the class pages' own ranking
(atlasgen.site.circuits.class_ranking: the same, with near-duplicates, units
whose contributions come from the same images of the class as a unit above
them, moved after the others):

- precision@m: the fraction of the top m that detect one of the class's facets;
- coverage@m: the fraction of the class's facets detected by one of the top m;
- chance: the precision of m features drawn at random (detectors of the class's
  facets / all features).

The same is reported for neurons (top m by W_fc, and by contribution) as a comparison.

Repeat ``-c`` for builds of the same config at other seeds: the table gives the
mean and each build's figure.

    python benchmarks/bench_class_facets.py [-c site_config.yaml ...] [--layer mixed5b] [--per-class]
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
from atlasgen.site.artifacts import load_artifacts  # noqa: E402
from atlasgen.site.circuits import class_ranking, selectivity_threshold  # noqa: E402


def cached_folders(
    config: Path, needed=("dataset", "model", "sae", "circuits", "examples")
) -> dict[str, Path]:
    """Artifact folders of the stages read here (None: every stage the site reads), at the config's current
    keys."""
    pipe = Pipeline(load_config(config), console=Console(0))
    out = {}
    for s in pipe.states():
        if (s.name != "site") if needed is None else (s.name in needed):
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


def ranked(values: np.ndarray, tier: np.ndarray | None = None) -> list[np.ndarray]:
    """Per class: the units by ``values`` (U, K), larger first, ties to the lower index, a lower
    ``tier`` (U, K) before a higher one."""
    tier = np.zeros(values.shape, dtype=np.int64) if tier is None else np.asarray(tier)
    return [np.lexsort((np.arange(len(values)), -values[:, c], tier[:, c])) for c in range(values.shape[1])]


def score(orders: list[np.ndarray], detected: np.ndarray, facets_of_class: list[list[int]]) -> list[dict]:
    """Per class: precision, coverage and chance of the top m units of its ranking ``orders[c]``."""
    rows = []
    for c, groups in enumerate(facets_of_class):
        m = len(groups)
        top = orders[c][:m]
        hit = [int(detected[u]) in groups for u in top]
        covered = {int(detected[u]) for u in top} & set(groups)
        chance = np.isin(detected, groups).sum() / len(detected)
        rows.append(
            {"class": c, "m": m, "precision": sum(hit) / m, "coverage": len(covered) / m, "chance": chance}
        )
    return rows


DENSE_LAST = "contribution, dense last"
SELECTIVE_FIRST = "contribution, selective first, dense last"
PAGES = "contribution, selective first, dense last, near-duplicates apart (class pages)"


def page_tiers(means: np.ndarray, images: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """(U, K) the tiers of atlasgen.site.circuits.class_ranking: 0 for the units selective for a class
    (lift at least selectivity_threshold), 2 for dense units that are not, 1 otherwise. ``means``
    (U, K): class means of the spatially averaged code; ``images`` (K,): their image counts."""
    mc, n = means.astype(np.float64), images.astype(np.float64)
    overall = (mc * n[None]).sum(1) / n.sum()
    lift = np.divide(mc, overall[:, None], out=np.zeros_like(mc), where=(overall[:, None] > 0) & (mc > 0))
    selective = lift >= selectivity_threshold(mc.shape[1])
    return np.where(selective, 0, np.where(dense[:, None], 2, 1))


def measure(config: str, layer_name: str | None, verbose: bool) -> dict[tuple[str, str], tuple[float, float]]:
    """(kind, ranking) -> (mean precision@m, mean coverage@m) over the classes of one built config."""
    cfg = load_config(config)
    layer = layer_name or cfg.layers[-1].name
    folders = cached_folders(Path(config))
    data = open_dataset(folders["dataset"])
    info = json.loads((folders["dataset"] / "dataset.json").read_text())
    facets = np.load(folders["dataset"] / "facets.npy")
    model = load_model(folders["model"], cfg.model, data.n_classes, "cpu")
    sae = load_sae_any(folders["sae"] / layer).eval()
    with np.load(folders["circuits"] / layer / "class_weights.npz") as z:
        w_feat, w_neur = z["features"], z["neurons"]
    with np.load(folders["circuits"] / layer / "class_contributions.npz") as z:
        c_feat, c_neur = z["features"], z["neurons"]
        means = {"features": z["features_mean"], "neurons": z["neurons_mean"]}
        class_images = z["images"]
    dense = {
        k: np.load(folders["examples"] / layer / f"{k}.npz")["flag_dense"] for k in ("features", "neurons")
    }
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
    maxes = {"features": fmax, "neurons": nmax}
    det = {k: detectors(maxes[k], groups, classes_of_group, labels) for k in maxes}
    results = {}
    contributions = {"features": c_feat, "neurons": c_neur}
    arts = load_artifacts(cached_folders(Path(config), needed=None), [x.name for x in cfg.layers])
    L = next(x for x in arts.layers if x.name == layer)
    rankings = [
        ("weight", {k: ranked(v) for k, v in (("features", w_feat), ("neurons", w_neur))}),
        ("contribution", {k: ranked(v) for k, v in contributions.items()}),
        (
            DENSE_LAST,
            {k: ranked(v, np.repeat(dense[k][:, None], v.shape[1], 1)) for k, v in contributions.items()},
        ),
        (
            SELECTIVE_FIRST,
            {k: ranked(v, page_tiers(means[k], class_images, dense[k])) for k, v in contributions.items()},
        ),
        (
            PAGES,  # the pages' own function
            {k: [class_ranking(L, k[0], c)[0] for c in range(len(names))] for k in ("features", "neurons")},
        ),
    ]
    for by, orders in rankings:
        for kind in ("features", "neurons"):
            rows = score(orders[kind], det[kind], facets_of_class)
            results[kind, by] = tuple(float(np.mean([r[k] for r in rows])) for k in ("precision", "coverage"))
            if not verbose:
                continue
            what = {
                "weight": method,
                "contribution": "on the class's images",
                DENSE_LAST: "dense units last",
            }.get(by, "units selective for the class first, dense units that are not last")
            print(
                f"\n{config}: {kind} of {layer} ({maxes[kind].shape[1]} units, {int((det[kind] >= 0).sum())} "
                f"detect a facet, {int(dense[kind].sum())} dense), ranked by {by} ({what})"
            )
            print("| class | facets | precision@m | coverage@m | chance |")
            print("|---|---:|---:|---:|---:|")
            for r in rows:
                print(
                    f"| {names[r['class']]} | {r['m']} | {r['precision']:.2f} | "
                    f"{r['coverage']:.2f} | {r['chance']:.3f} |"
                )
            chance = float(np.mean([r["chance"] for r in rows]))
            p, c = results[kind, by]
            print(f"| **mean** | | **{p:.2f}** | **{c:.2f}** | {chance:.3f} |")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "-c",
        "--config",
        action="append",
        help="built config (repeat for several seeds; default site_config.yaml)",
    )
    ap.add_argument("--layer", default=None, help="layer (default: the last configured)")
    ap.add_argument("--per-class", action="store_true", help="print every class's row")
    args = ap.parse_args()
    configs = args.config or ["site_config.yaml"]
    runs = [measure(c, args.layer, args.per_class) for c in configs]
    print(f"\nmean over {len(runs)} build(s) ({', '.join(configs)}); per build in brackets")
    print(
        "| ranking | features precision@m | neurons precision@m | ratio | features coverage@m | "
        "neurons coverage@m |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for by in dict.fromkeys(by for _, by in runs[0]):

        def cell(kind: str, i: int) -> str:
            vals = [r[kind, by][i] for r in runs]
            per = f" ({', '.join(f'{v:.2f}' for v in vals)})" if len(vals) > 1 else ""
            return f"{np.mean(vals):.2f}{per}"

        fp = np.mean([r["features", by][0] for r in runs])
        npr = np.mean([r["neurons", by][0] for r in runs])
        print(
            f"| {by} | {cell('features', 0)} | {cell('neurons', 0)} | {fp / max(npr, 1e-9):.2f}x "
            f"| {cell('features', 1)} | {cell('neurons', 1)} |"
        )


if __name__ == "__main__":
    main()
