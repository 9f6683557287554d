"""atlasgen's batched feature-visualisation renderer against lucent's render_vis, one unit at a time.

Same model, layer, units, image size, steps, transforms (lucid's standard
transforms, pad 12), learning rate (Adam 0.05) and objective (a channel's
mean activation) for both; on each case it prints, measured side by side in
one process:

* units per second of lucent's ``render_vis`` called once per unit (as
  documented: it leaks one forward hook per module per call, computes weight
  gradients and runs the whole model), of atlasgen's ``render_units`` with
  ``--batch`` units per optimisation, and of the floor: bare forward+backward
  passes of the model truncated at the target layer, input gradients only,
  same batch, canvas and number of steps (on a CPU also in channels-last
  layout, the layout atlasgen's CPU renderer runs the model in);
* the median (and mean) final objective of both renderers, measured the same way for
  both (channel mean of the layer on the saved 8-bit image on its grey,
  padded canvas, untransformed).

Cases: lucent's InceptionV1 with random weights (``inceptionv1(pretrained=False)``)
at mixed4a and mixed5b, 128 px (lucent's default), and atlasgen's DemoNet
(random weights) at mixed5b, 64 px. InceptionV1 redirects its own ReLU
gradients (lucent's RedirectedReluLayer) for both renderers; atlasgen's
nn.ReLU override is off so the comparison is like for like. lucent renders
at ``fixed_image_size`` = the padded canvas, which is what atlasgen's model
sees (lucent would otherwise upsample 128 px images to 224).

Usage: python benchmarks/bench_featurevis.py [--units 8] [--steps 16] [--batch 8] [--repeats 1]
       [--device cpu|cuda] [--precision fp32|bf16] [--only mixed4a] [--demo-weights MODEL_PT]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings

import numpy as np
import torch

from atlasgen import models
from atlasgen.featurevis import STANDARD_TRANSFORMS, render_units

PAD = 12


class _Stop(Exception):
    pass


def _capture(model, layer):
    """Forward hook that records ``layer``'s output and stops the forward; returns (holder, handle)."""
    module = dict(model.named_modules())[layer]
    holder = {}

    def hook(_m, _i, out):
        holder["out"] = out
        raise _Stop

    return holder, module.register_forward_hook(hook)


@torch.no_grad()
def final_objective(model, layer, images: np.ndarray, units, preprocess, device) -> np.ndarray:
    """Channel mean of unit ``units[i]`` on image ``i`` (uint8, untransformed, grey pad)."""
    holder, handle = _capture(model, layer)
    try:
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().to(device) / 255.0
        x = torch.nn.functional.pad(x, [PAD] * 4, value=0.5)
        try:
            model(preprocess(x))
        except _Stop:
            pass
        acts = holder["out"]
        return acts[torch.arange(len(units)), torch.as_tensor(units)].mean((1, 2)).float().cpu().numpy()
    finally:
        handle.remove()


def floor(model, layer, n_units, batch, steps, canvas, preprocess, device, channels_last=False) -> float:
    """Seconds of bare forward+backward passes (model truncated at ``layer``, input grads only).

    ``channels_last``: the same passes with the model's 4-D weights and the input in
    channels-last layout, as atlasgen's CPU renderer runs them (weights restored after)."""
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    holder, handle = _capture(model, layer)
    layout_cm = models.channels_last(model, device) if channels_last else contextlib.nullcontext(lambda x: x)
    try:
        with layout_cm as layout:
            start = time.perf_counter()
            for b0 in range(0, n_units, batch):
                b = min(batch, n_units - b0)
                x = layout(torch.rand(b, 3, canvas, canvas, device=device)).requires_grad_(True)
                for _ in range(steps):
                    try:
                        model(preprocess(x))
                    except _Stop:
                        pass
                    holder["out"].mean().backward()
                    x.grad = None
            _sync(device)
            return time.perf_counter() - start
    finally:
        handle.remove()
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def lucent_loop(model, layer, units, size, steps, preprocess_flag, device):
    from lucent.optvis import param, render

    images = []
    start = time.perf_counter()
    for u in units:
        out = render.render_vis(
            model,
            f"{layer}:{u}",
            param_f=lambda: param.image(size),
            thresholds=(steps,),
            preprocess=preprocess_flag,
            progress=False,
            show_image=False,
            fixed_image_size=size + 2 * PAD,
        )
        images.append(out[-1][0])
    _sync(device)
    seconds = time.perf_counter() - start
    return seconds, (np.stack(images).clip(0, 1) * 255).round().astype(np.uint8)


def atlasgen_batched(
    model, layer, units, size, steps, batch, preprocess, device, precision, relu_override=False
):
    start = time.perf_counter()
    images = render_units(
        model,
        layer,
        units,
        image_size=size,
        steps=steps,
        lr=0.05,
        batch_size=batch,
        device=device,
        preprocess=preprocess,
        transforms=STANDARD_TRANSFORMS,
        relu_gradient_override=relu_override,
        precision=precision,
    )
    _sync(device)
    return time.perf_counter() - start, images


def cases(device, demo_weights=None):
    """(name, model, layer, size, preprocess, lucent preprocess flag, atlasgen's ReLU gradient override)."""
    from lucent.modelzoo import inceptionv1

    from atlasgen.demo.model import DemoNet

    torch.manual_seed(0)
    inception = inceptionv1(pretrained=False).to(device).eval()
    incep_pre = lambda x: x * 255 - 117  # noqa: E731  (lucent's preprocess_inceptionv1)
    demo = DemoNet(16)
    demo_name = "DemoNet mixed5b"
    if demo_weights:
        state = torch.load(demo_weights, map_location="cpu", weights_only=False)
        demo.load_state_dict(state.get("model", state) if isinstance(state, dict) else state.state_dict())
        demo_name += " (trained)"
    demo = demo.to(device).eval()
    yield "InceptionV1 mixed4a", inception, "mixed4a", 128, incep_pre, True, False
    yield "InceptionV1 mixed5b", inception, "mixed5b", 128, incep_pre, True, False
    yield demo_name, demo, "mixed5b", 64, (lambda x: x), False, False
    # atlasgen as the build runs it: lucid's redirected-ReLU gradient on DemoNet's nn.ReLU modules
    # (lucent's render_vis has no such override for models that are not its own InceptionV1).
    yield demo_name + ", atlasgen ReLU override on", demo, "mixed5b", 64, (lambda x: x), False, True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=8)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument(
        "--repeats", type=int, default=1, help="interleaved repeats of each timing; the best is kept"
    )
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    ap.add_argument(
        "--demo-weights",
        default="",
        help="DemoNet weights (a build's <cache>/model/<key>/model.pt); default: random weights",
    )
    args = ap.parse_args()
    # lucent warns at every call that layers after the target could not run at 152 px, and the lucent
    # InceptionV1 uses torch.jit.script; neither matters here.
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.device == "cpu" and torch.cuda.is_available():
        raise SystemExit("lucent pins its tensors to cuda:0 when a GPU exists; run with --device cuda")
    print(
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{args.units} units x {args.steps} steps, batch {args.batch}, precision {args.precision}"
    )
    cl = args.device == "cpu"  # atlasgen's CPU renderer runs channels-last: report that floor too
    header = (
        "case",
        "lucent units/s",
        "atlasgen units/s",
        "floor units/s",
        "atlasgen/lucent",
        "atlasgen/floor",
        "floor channels-last units/s",
        "atlasgen/floor channels-last",
        "median obj lucent",
        "median obj atlasgen",
        "mean obj lucent",
        "mean obj atlasgen",
    )
    rows = []
    for name, model, layer, size, pre, lucent_pre, override in cases(args.device, args.demo_weights):
        if args.only and args.only not in name:
            continue
        units = list(range(args.units))
        # Warm-up (allocator, kernels) outside the timings.
        atlasgen_batched(model, layer, units[:2], size, 2, 2, pre, args.device, args.precision)
        # Interleaved repeats, best of each: on a shared machine load drifts during a run.
        t_floor = t_floor_cl = t_ours = t_lucent = float("inf")
        for _ in range(args.repeats):
            t_floor = min(
                t_floor,
                floor(model, layer, len(units), args.batch, args.steps, size + 2 * PAD, pre, args.device),
            )
            if cl:
                t_floor_cl = min(
                    t_floor_cl,
                    floor(
                        model,
                        layer,
                        len(units),
                        args.batch,
                        args.steps,
                        size + 2 * PAD,
                        pre,
                        args.device,
                        channels_last=True,
                    ),
                )
            t, ours = atlasgen_batched(
                model, layer, units, size, args.steps, args.batch, pre, args.device, args.precision, override
            )
            t_ours = min(t_ours, t)
            t, theirs = lucent_loop(model, layer, units, size, args.steps, lucent_pre, args.device)
            t_lucent = min(t_lucent, t)
            for m in model.modules():  # render_vis leaves its hooks behind
                m._forward_hooks.clear()
        obj_ours = final_objective(model, layer, ours, units, pre, args.device)
        obj_lucent = final_objective(model, layer, theirs, units, pre, args.device)
        n = len(units)
        rows.append(
            (
                name,
                f"{n / t_lucent:.2f}",
                f"{n / t_ours:.2f}",
                f"{n / t_floor:.2f}",
                f"{t_lucent / t_ours:.2f}x",
                f"{t_floor / t_ours:.0%}",
                f"{n / t_floor_cl:.2f}" if cl else "-",
                f"{t_floor_cl / t_ours:.0%}" if cl else "-",
                f"{statistics.median(obj_lucent.tolist()):.3g}",
                f"{statistics.median(obj_ours.tolist()):.3g}",
                f"{obj_lucent.mean():.3g}",
                f"{obj_ours.mean():.3g}",
            )
        )
        print(" | ".join(rows[-1]), flush=True)
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
