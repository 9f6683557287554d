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
    from atlasgen.featurevis import STANDARD_TRANSFORMS, render_units

    layer = "mixed4a"
    n_units, steps = 4, 4
    s = _timed(
        lambda: render_units(
            model,
            layer,
            list(range(n_units)),
            image_size=128,
            steps=steps,
            batch_size=n_units,
            device=dev,
            transforms=STANDARD_TRANSFORMS.for_size(128),
        ),
        1,
    )
    img = torch.rand(
        1,
        3,
        128 + 2 * STANDARD_TRANSFORMS.for_size(128).pad,
        128 + 2 * STANDARD_TRANSFORMS.for_size(128).pad,
        device=dev,
        requires_grad=True,
    )

    def fwd_bwd():
        from atlasgen.models import capture

        with capture(model, [layer]) as acts:
            try:
                model(img)
            except Exception:
                pass
        acts[layer].mean().backward()

    rows[f"featurevis {layer} 128px"] = {
        "per_s": n_units * steps / s,
        "unit": "unit-steps",
        "flops": _flops(fwd_bwd),
    }
    # SAE training, BatchTopK, 16x of mixed4d's 528 channels, k 32.
    from atlasgen.sae import train_sae

    d, batch, steps = 528, 1024, 6
    data = np.random.default_rng(0).standard_normal((batch * steps, d)).astype(np.float32)
    _, stats = train_sae(data, d_sae=16 * d, k=32, steps=steps, batch_size=batch, device=dev)
    rows[f"sae train {d}->{16 * d} k32"] = {
        "per_s": stats["samples_per_second"],
        "unit": "vectors",
        "flops": 6 * d * 16 * d,
    }  # dense encoder (2dF) + sparse steps; ~3x fwd
    tmp.cleanup()
    print(f"{'case':<36} {'throughput':>16} {'GFLOP/item':>11} {'GFLOP/s':>9}")
    for name, r in rows.items():
        print(
            f"{name:<36} {r['per_s']:>10.1f} {r['unit']:<5} {r['flops'] / 1e9:>11.3f} {r['per_s'] * r['flops'] / 1e9:>9.1f}"
        )
    print(json.dumps({"device": str(dev), "threads": torch.get_num_threads(), "rows": rows}))


if __name__ == "__main__":
    main()
