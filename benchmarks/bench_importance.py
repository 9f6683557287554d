"""Mean-ablation importance: the closed form against batched ablations, side by side.

On the layer that feeds the head (the demo's mixed5b), both methods must give
the same counts; the closed form needs one clean pass, the batched ablations
one pass of the rest of the model per unit. Reads a built demo cache (or the
cache of any config given with -c). Both methods read the held-out images as
the importance stage does, through ``Dataset.batches`` with the config's
``decode`` settings and ``importance.batch_size``, inside their timed regions:
the demo's generated images come from the dataset stage's memory-mapped
``images.npy``, a folder dataset's files are decoded by ``decode.workers``
processes. The unit means both methods need are computed once, before either
clock starts.

    python benchmarks/bench_importance.py [-c site_config.yaml] [--images 128]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_class_facets import cached_folders  # noqa: E402

from atlasgen.config import load_config  # noqa: E402
from atlasgen.data import open_dataset  # noqa: E402
from atlasgen.importance import batched_ablation, closed_form, unit_means  # noqa: E402
from atlasgen.models import load_model  # noqa: E402
from atlasgen.sae_formats import load_sae_any  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-c", "--config", default="site_config.yaml")
    ap.add_argument("--layer", default="mixed5b")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--k", type=int, default=3, help="top-k (3 for the 16-class demo; Terekhov: 10 of 1,000)")
    args = ap.parse_args()
    cfg = load_config(args.config)
    folders = cached_folders(Path(args.config))
    data = open_dataset(folders["dataset"], cfg)
    model = load_model(folders["model"], cfg.model, data.n_classes, "cpu")
    sae = load_sae_any(folders["sae"] / args.layer).eval()
    idx = data.indices("heldout")[: args.images]

    def batches():  # the importance stage's pass over the held-out images
        for i, x in data.batches(idx, cfg.importance.batch_size):
            yield x, torch.from_numpy(data.labels[i])

    mu_a, mu_f = unit_means(model, args.layer, sae, batches)
    t0 = time.perf_counter()
    fast = closed_form(model, args.layer, sae, batches, mu_a, mu_f, args.k)
    t1 = time.perf_counter()
    slow = batched_ablation(model, args.layer, sae, batches, mu_a, mu_f, args.k, units_per_pass=64)
    t2 = time.perf_counter()
    same = all(
        np.array_equal(fast[k], slow[k])
        for k in ("features_topk", "features_top1", "neurons_topk", "neurons_top1")
    )
    units = sae.d_sae + sae.d_in
    moved = {
        k: int(np.count_nonzero(fast[k]))
        for k in ("features_topk", "features_top1", "neurons_topk", "neurons_top1")
    }
    print(
        f"{args.layer}: {units} units x {len(idx)} held-out images, k {args.k}; identical counts: {same}; "
        f"units with a non-zero count: {moved}"
    )
    print("| method | seconds | ratio |\n|---|---:|---:|")
    print(f"| closed form | {t1 - t0:.2f} | 1 |")
    print(f"| batched ablations | {t2 - t1:.2f} | {(t2 - t1) / max(t1 - t0, 1e-9):.0f}x |")
    if not same:
        raise SystemExit("closed form and batched ablations disagree")


if __name__ == "__main__":
    main()
