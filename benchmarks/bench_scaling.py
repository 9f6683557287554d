"""Per-stage throughput of one device for the scale-out projection (docs/scaling.md).

Measures, on this machine's CPU (or --device cuda), with lucent's InceptionV1 at random weights
(speed does not depend on the weights):

* decode: images/s of the loader alone (``Dataset.batches`` over a folder of 256 px JPEGs,
  bench_reference.py's ``write_images``, decoded, resized and centre-cropped to 224 px by
  ``--workers`` decode processes, ``decode.workers``; -1, the default, gives the machine's cores
  as the config's default does);
* scan: images/s of a pass over those JPEGs up to each mixed layer at 224 px, decoding included
  (what the activations, examples and importance passes cost per image and layer: the loader
  decodes the next batches while the model runs, as in a build), and its FLOPs; the full forward
  (the model stage's evaluation pass) likewise. Each pass is ``--repeats`` + 1 batches of
  ``--batch``; the first (the decode workers starting) is the warm-up and the fastest of the
  others, from asking the loader for the batch to the end of its forward, is kept. The model's
  forward alone on the same batches is printed beside it as "compute only" (not the headline:
  a build always reads its images);
* encode: SAE codes of every position of a layer (examples' pass), vectors/s and FLOPs;
* featurevis: unit-steps/s of the batched renderer at 128 px (forward + backward to the pixels);
* sae: training vectors/s of BatchTopK at 16x width, k 32.

FLOPs come from torch.utils.flop_counter (multiply-adds counted as 2). Prints a table and a JSON
line; docs/scaling.md turns the FLOPs into GPU estimates. Small sizes by default.

``--reference`` adds the reference workload's own rows (feature visualisation at mixed5b, SAE
training 1024 -> 16,384, JPEG decoding on one core: 500 px JPEGs, ImageNet's size) and prints \
docs/inceptionv1.md's cost table: each stage of the reference
atlas (InceptionV1 mixed5b, 16,384 features + 1,024 neurons, the guide's settings) at 100,000 and
1.28 M images, as (items) / (measured rate) on this device, and, when this device is a CPU, a GPU
column projected from the FLOPs at the assumed rates of docs/scaling.md with decoding on
``--gpu-cores`` CPU cores. Stages that do not scale with these rates (map, site) are taken from
bench_reference.py's measured figures, passed with ``--fixed map=82,site=71`` (seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from bench_decode import write_artifact  # noqa: E402
from bench_reference import write_images  # noqa: E402

from atlasgen.config import DecodeConfig, ModelConfig  # noqa: E402
from atlasgen.data import Dataset  # noqa: E402
from atlasgen.models import build_model, layer_activations  # noqa: E402

GPU_TFLOPS = {"conv": 30.0, "sae": 40.0, "featurevis": 20.0}  # assumed effective rates (docs/scaling.md)

MIXED = ["mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e", "mixed5a", "mixed5b"]


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _pass(data: Dataset, batch: int, repeats: int, fn, device) -> tuple[float, float]:
    """One pass of ``Dataset.batches`` over ``repeats`` + 1 batches, ``fn(x)`` on each: the fastest
    batch after the first (the warm-up) from asking the loader for it to the end of ``fn`` (decoding
    included), and ``fn`` alone on the batches (compute only), in seconds."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    total = compute = float("inf")
    t = time.perf_counter()
    for b, (_, x) in enumerate(data.batches(np.arange((repeats + 1) * batch), batch, device)):
        t1 = time.perf_counter()
        fn(x)
        sync()
        t2 = time.perf_counter()
        if b:
            total, compute = min(total, t2 - t), min(compute, t2 - t1)
        t = time.perf_counter()
    return total, compute


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--layers", default="mixed3b,mixed4d,mixed5b")
    ap.add_argument("--reference", action="store_true", help="reference-workload rows and the cost table")
    ap.add_argument("--fixed", default="", help="measured seconds of other stages, e.g. map=82,site=71")
    ap.add_argument("--gpu-cores", type=int, default=16, help="CPU cores beside the GPU (decoding)")
    ap.add_argument("--workers", type=int, default=-1, help="decode.workers (-1: the machine's cores)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(ModelConfig(source="inceptionv1", pretrained=False), n_classes=1008).eval().to(dev)
    model.requires_grad_(False)
    tmp = tempfile.TemporaryDirectory(prefix="bench-scaling-")
    write_images(Path(tmp.name) / "images", (args.repeats + 1) * args.batch, classes=4)
    write_artifact(Path(tmp.name) / "images", Path(tmp.name) / "dataset", size=224)
    data = Dataset(Path(tmp.name) / "dataset", DecodeConfig(workers=args.workers))
    x = data.batch(np.arange(1)).to(dev)
    rows = {}
    s, _ = _pass(data, args.batch, args.repeats, lambda x: None, dev)
    rows["decode 256->224px JPEG"] = {"per_s": args.batch / s, "unit": "images", "flops": 0}
    with torch.no_grad():
        full_flops = _flops(lambda: model(x))
        s, compute = _pass(data, args.batch, args.repeats, model, dev)
    rows["forward 224px (full)"] = {"per_s": args.batch / s, "unit": "images", "flops": full_flops}
    rows["  full forward compute only"] = {
        "per_s": args.batch / compute,
        "unit": "images",
        "flops": full_flops,
    }
    for layer in args.layers.split(","):
        with torch.no_grad():
            acts = layer_activations(model, x, [layer])[layer]
            f = _flops(lambda: layer_activations(model, x, [layer]))
            s, compute = _pass(
                data, args.batch, args.repeats, lambda x: layer_activations(model, x, [layer]), dev
            )
        c, h, w = acts.shape[1:]
        rows[f"scan to {layer} 224px"] = {"per_s": args.batch / s, "unit": "images", "flops": f}
        rows[f"  {layer} compute only"] = {"per_s": args.batch / compute, "unit": "images", "flops": f}
        # SAE encode of every position (examples pass): (P, C) @ (C, 16C)
        W = torch.randn(c, 16 * c, device=dev)
        v = torch.randn(h * w * args.batch, c, device=dev)
        s = _timed(lambda: torch.relu(v @ W), args.repeats)
        rows[f"encode {layer} 16x ({c}->{16 * c})"] = {
            "per_s": len(v) / s,
            "unit": "vectors",
            "flops": 2 * c * 16 * c,
        }
    # Feature visualisation: one step = forward to the layer and backward to the pixels, 128 px.
    rows["featurevis mixed4a 128px"] = _featurevis_row(model, "mixed4a", dev)
    # SAE training, BatchTopK, 16x of mixed4d's 528 channels, k 32.
    rows["sae train 528->8448 k32"] = _sae_row(528, dev)
    if args.reference:
        rows.update(reference_rows(model, dev))
    tmp.cleanup()
    print(f"{'case':<36} {'throughput':>16} {'GFLOP/item':>11} {'GFLOP/s':>9}")
    for name, r in rows.items():
        print(
            f"{name:<36} {r['per_s']:>10.1f} {r['unit']:<5} {r['flops'] / 1e9:>11.3f} "
            f"{r['per_s'] * r['flops'] / 1e9:>9.1f}"
        )
    print(json.dumps({"device": str(dev), "threads": torch.get_num_threads(), "rows": rows}))
    if args.reference:
        fixed = dict((k, float(v)) for k, v in (kv.split("=") for kv in args.fixed.split(",") if kv))
        for n in (100_000, 1_281_167):
            cost_table(rows, n, fixed, dev.type == "cpu", args.gpu_cores)


def _featurevis_row(model, layer: str, dev, n_units: int = 4, steps: int = 4) -> dict:
    """unit-steps/s of the batched renderer at 128 px and the FLOPs of one unit-step."""
    from atlasgen.featurevis import STANDARD_TRANSFORMS, render_units
    from atlasgen.models import capture

    t = STANDARD_TRANSFORMS.for_size(128)
    s = _timed(
        lambda: render_units(
            model,
            layer,
            list(range(n_units)),
            image_size=128,
            steps=steps,
            batch_size=n_units,
            device=dev,
            transforms=t,
        ),
        1,
    )
    img = torch.rand(1, 3, 128 + 2 * t.pad, 128 + 2 * t.pad, device=dev, requires_grad=True)

    def fwd_bwd():
        with capture(model, [layer]) as acts:
            try:
                model(img)
            except Exception:
                pass
        acts[layer].mean().backward()

    return {"per_s": n_units * steps / s, "unit": "unit-steps", "flops": _flops(fwd_bwd)}


def _sae_row(d: int, dev, warm_up: bool = False) -> dict:
    """Training vectors/s of a 16x BatchTopK SAE on ``d`` channels (k 32, 6 steps of 1,024 random
    vectors; ``warm_up``: one untimed step first) and its FLOPs per vector."""
    from atlasgen.sae import train_sae

    batch, steps = 1024, 6
    data = np.random.default_rng(0).standard_normal((batch * steps, d)).astype(np.float32)
    if warm_up:
        train_sae(data[:batch], d_sae=16 * d, k=32, steps=1, batch_size=batch, device=dev)
    _, stats = train_sae(data, d_sae=16 * d, k=32, steps=steps, batch_size=batch, device=dev)
    # dense encoder (2dF) + sparse steps; ~3x fwd
    return {"per_s": stats["samples_per_second"], "unit": "vectors", "flops": 6 * d * 16 * d}


def reference_rows(model, dev) -> dict:
    """The rows only the reference workload needs: mixed5b's visualisation step, its SAE's training,
    and JPEG decoding in atlasgen's loader."""

    rows = {"featurevis mixed5b 128px": _featurevis_row(model, "mixed5b", dev)}
    rows["sae train 1024->16384 k32"] = _sae_row(1024, dev, warm_up=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_images(tmp / "images", 128, classes=4, side=500)
        write_artifact(tmp / "images", tmp / "art")
        ds = Dataset(tmp / "art", DecodeConfig(workers=0))
        idx = np.arange(len(ds))
        s = _timed(lambda: [None for _ in ds.batches(idx, 32)], 1)
    rows["decode 500px JPEG -> 224, one core"] = {"per_s": len(idx) / s, "unit": "images", "flops": 0}
    return rows


def cost_table(rows: dict, n: int, fixed: dict, on_cpu: bool, gpu_cores: int) -> None:
    """The reference atlas's stages at ``n`` images: seconds at the rates measured here (decoding on
    this machine's cores, overlapped with the model) and, from a CPU, projected on one GPU (FLOPs /
    GPU_TFLOPS; decoding on ``gpu_cores`` cores, overlapped with the model)."""
    from atlasgen.data import local_workers

    held = 5_000 if n <= 100_000 else 50_000
    train = n - held
    units, features = 17_408, 16_384
    scan = rows["scan to mixed5b 224px"]
    enc = rows["encode mixed5b 16x (1024->16384)"]
    fv = rows["featurevis mixed5b 128px"]
    sae = rows["sae train 1024->16384 k32"]
    dec = rows["decode 500px JPEG -> 224, one core"]
    # Guide settings (docs/inceptionv1.md): main image 128 px x 256 steps; six variants (neuron,
    # negative, 4 diverse) at 32 px x 32 steps, about 10 % of the main image by canvas area x steps.
    unit_steps = units * 256 * 1.10
    sae_vectors = 20_000 * 4_096
    atlas = min(50_000, train)  # atlas.max_images default
    cores = local_workers(-1)
    # (stage, items, rate, FLOP per item, GPU rate key, images decoded)
    work = [
        ("model (held-out accuracy)", held, rows["forward 224px (full)"], "conv", held),
        ("activations", train, scan, "conv", train),
        ("sae", sae_vectors, sae, "sae", 0),
        ("featurevis", unit_steps, fv, "featurevis", 0),
        # scan + SAE codes of its 49 positions, then the heat-map pass over the shown images
        # (at most every training image again)
        (
            "examples",
            train,
            {
                "per_s": 1 / (2 / scan["per_s"] + 49 / enc["per_s"]),
                "flops": 2 * scan["flops"] + 49 * enc["flops"],
            },
            "conv",
            2 * train,
        ),
        ("atlas (sampled images)", atlas, scan, "conv", atlas),
    ]
    print(f"\nreference atlas at {n:,} images ({train:,} train, {held:,} held out), guide settings")
    head = f"{'stage':<28}{'items':>14}{'here':>12}"
    print(head + (f"{'one GPU, projected':>22}" if on_cpu else ""))
    total_here = total_gpu = 0.0
    for name, items, rate, kind, decoded in work:
        here = max(items / rate["per_s"], decoded / (dec["per_s"] * cores))  # decode workers overlap
        gpu = max(items * rate["flops"] / (GPU_TFLOPS[kind] * 1e12), decoded / (dec["per_s"] * gpu_cores))
        total_here += here
        total_gpu += gpu
        print(f"{name:<28}{items:>14,.0f}{_hm(here):>12}" + (f"{_hm(gpu):>22}" if on_cpu else ""))
    for name, seconds in fixed.items():  # measured by bench_reference.py; CPU-bound, not projected
        total_here += seconds
        total_gpu += seconds
        print(
            f"{name + ' (measured, CPU)':<28}{'':>14}{_hm(seconds):>12}"
            + (f"{_hm(seconds):>22}" if on_cpu else "")
        )
    print(f"{'total':<28}{'':>14}{_hm(total_here):>12}" + (f"{_hm(total_gpu):>22}" if on_cpu else ""))
    if on_cpu:
        print(
            f"GPU column: FLOPs / assumed {GPU_TFLOPS} TFLOP/s, or decoding on {gpu_cores} cores at the "
            f"measured {dec['per_s']:.0f} images/s per core, whichever is longer (decode overlaps the model)."
        )
    print(
        f"{features:,} features and {units - features:,} neurons; decoding {dec['per_s']:.0f} "
        "images/s per core"
    )


def _hm(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


if __name__ == "__main__":
    main()
