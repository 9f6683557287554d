"""The activation pass over a folder of JPEGs, decoded in 0, 1 and 2 worker processes, and the
pass's peak memory with the traced (truncated) forward against the whole model's forward.

The pass is what the activations, examples, importance and atlas stages run: ``Dataset.batches``
(decode, resize and centre-crop to 224 px, prefetched by ``decode.workers`` processes) feeding
InceptionV1 (lucent's, random weights) up to mixed5b. Image decoding is inside the timed region.
Beside the pass, the same loader alone (decoding only, no model) at each worker count, and the model
alone on batches already in memory: the pass cannot beat the slower of the two, so the model-alone
rate bounds what decode workers can give when the model, not decoding, is the bottleneck (a CPU
running InceptionV1 at 224 px), and the decoding-alone rows show the workers' own scaling (what
a GPU run, where the model is fast, gets from them). Each configuration runs in a fresh process
(so peak RSS is its own); the rounds alternate.

    python benchmarks/bench_decode.py                      # 256 images, batch 32, workers 0 1 2
    python benchmarks/bench_decode.py --images 512 --memory-batch 256 --side 500
    python benchmarks/bench_decode.py --side 500 --model demonet   # a pass that decoding bounds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from bench_reference import write_images  # noqa: E402


def write_artifact(images: Path, art: Path, size: int = 224) -> None:
    """A dataset artifact (docs/artifacts.md) listing the JPEG folder, as the dataset stage writes it."""
    from atlasgen.data import list_image_folder

    classes, paths, labels, _ = list_image_folder(images)
    art.mkdir(parents=True, exist_ok=True)
    info = {
        "classes": [{"id": i, "name": n} for i, n in enumerate(classes)],
        "image_size": size,
        "crop_fraction": 0.875,
    }
    (art / "dataset.json").write_text(json.dumps(info), encoding="utf-8")
    (art / "paths.json").write_text(json.dumps(paths), encoding="utf-8")
    np.save(art / "labels.npy", np.asarray(labels, np.int64))
    np.save(art / "split.npy", np.zeros(len(labels), np.uint8))


def child(art: str, workers: int, batch: int, mode: str, model_name: str = "inceptionv1") -> None:
    """One pass in this process; prints a JSON line (seconds, images/s, peak RSS).

    ``mode``: "pass" (loader and model, traced forward), "whole" (loader and the whole model's
    forward, every intermediate kept), "decode" (the loader alone), "model" (the model alone on
    batches decoded before the timing)."""
    import resource

    import torch

    from atlasgen import models
    from atlasgen.config import DecodeConfig
    from atlasgen.data import Dataset

    torch.manual_seed(0)
    if model_name == "demonet":
        from atlasgen.demo.model import DemoNet

        model = DemoNet(8).eval()
    else:
        model = models._inceptionv1().eval()
    data = Dataset(Path(art), DecodeConfig(workers=workers, prefetch_batches=2))
    idx = np.arange(len(data))
    if mode == "whole":
        models.truncated_forward = lambda m, layers: m  # the whole forward, every intermediate kept
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    models.layer_activations(model, data.batch(idx[:2]), ["mixed5b"])  # warm-up, outside the timing
    batches = list(data.batches(idx, batch)) if mode == "model" else None
    start = time.perf_counter()
    n = 0
    for _, x in batches if batches is not None else data.batches(idx, batch):
        if mode != "decode":
            x = models.layer_activations(model, x, ["mixed5b"])["mixed5b"]
        n += x.shape[0]
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux
    print(json.dumps({"seconds": seconds, "images_per_s": n / seconds, "peak_rss_mib": rss}))


def run_child(art: Path, workers: int, batch: int, mode: str, model: str = "inceptionv1") -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(art), str(workers), str(batch), mode, model],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--memory-batch", type=int, default=64, help="batch of the memory comparison")
    ap.add_argument("--side", type=int, default=256, help="side of the generated JPEGs (ImageNet's: ~500)")
    ap.add_argument(
        "--model",
        default="inceptionv1",
        choices=["inceptionv1", "demonet"],
        help="the model of the pass: InceptionV1 (random weights; model-bound on a CPU) or the demo's "
        "DemoNet at 224 px (random weights; a model fast enough that decoding bounds the pass, as on a GPU)",
    )
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        art, workers, batch, mode, model = args.child
        return child(art, int(workers), int(batch), mode, model)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_images(tmp / "images", args.images, classes=8, side=args.side)
        write_artifact(tmp / "images", tmp / "art")
        name = {"inceptionv1": "InceptionV1", "demonet": "DemoNet"}[args.model]
        print(f"{args.images} JPEGs ({args.side} px) -> 224 px, {name} to mixed5b, batch {args.batch}")
        print(f"load average {os.getloadavg()[0]:.2f} on {len(os.sched_getaffinity(0))} CPUs")
        rates: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for mode in ("pass", "decode"):
                for w in args.workers:
                    rate = run_child(tmp / "art", w, args.batch, mode, args.model)["images_per_s"]
                    rates.setdefault((mode, w), []).append(rate)
            rate = run_child(tmp / "art", 0, args.batch, "model", args.model)["images_per_s"]
            rates.setdefault(("model", 0), []).append(rate)
        best = {key: max(v) for key, v in rates.items()}
        w0 = args.workers[0]
        for mode, what in (("pass", "pass (decode + model)"), ("decode", "decoding alone")):
            for w in args.workers:
                r = best[(mode, w)]
                print(
                    f"{what:<22} decode.workers={w}: {r:7.1f} images/s (best of {args.rounds}), "
                    f"{r / best[(mode, w0)]:.2f}x workers={w0}"
                )
        model = best[("model", 0)]
        print(
            f"{'model alone':<22} (decoded beforehand): {model:7.1f} images/s; the pass's bound with "
            f"decoding hidden: {model / best[('pass', w0)]:.2f}x workers={w0}"
        )
        mem = {
            name: run_child(tmp / "art", 0, args.memory_batch, mode, args.model)["peak_rss_mib"]
            for name, mode in (("whole forward", "whole"), ("traced forward", "pass"))
        }
        for name, rss in mem.items():
            print(f"peak RSS, batch {args.memory_batch}, {name}: {rss:,.0f} MiB ({rss * 2**20 / 1e9:.2f} GB)")
        print(f"traced / whole: {mem['traced forward'] / mem['whole forward']:.2f}")


if __name__ == "__main__":
    main()
