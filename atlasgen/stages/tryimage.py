"""Stage `tryimage`: the model and each layer's SAE encoder as ONNX graphs, for the try page.

Per studied layer, :class:`atlasgen.onnx_graphs.ImageGraph` (the model, truncated after the
layer unless it has a classifier head, then the SAE's inference codes and the maxima over
positions) is exported to ONNX and checked in onnxruntime against the PyTorch pipeline on
``try_image.check_images`` held-out images: at each image's ``try_image.top`` largest features
(and neurons), and at the logits, the difference relative to the image's largest value must stay
within ``try_image.tolerance``, and the top features must be the same. Weights are stored in
float16 (``try_image.float16``) when that file passes, else in float32; a float32 file that
fails stops the build.

Files (tryimage/): ``try.json`` (image size, crop fraction, layers, whether logits are there,
the check's settings); per layer ``L/graph.onnx`` and ``L/check.json`` (the dtype kept and the
errors of both files). With ``try_image.enabled: false``, ``skipped.json`` only.
"""

from __future__ import annotations

import torch

from atlasgen.cache import atomic_write_bytes, atomic_write_json
from atlasgen.data import open_dataset
from atlasgen.errors import AtlasgenError
from atlasgen.models import class_outputs, load_model
from atlasgen.onnx_graphs import (
    OPSET,
    ImageGraph,
    compare,
    export_graph,
    onnx_outputs,
    pipeline_outputs,
    weights_to_float16,
)
from atlasgen.sae_formats import load_sae_any
from atlasgen.stage import Stage, StageContext

STAGE = Stage(
    "tryimage",
    deps=("dataset", "model", "sae"),
    config=("layers", "try_image", "model.head"),
    what="ONNX graphs for the try page",
)


def _errors(result) -> dict:
    return {
        "feature_error": result.feature_error,
        "neuron_error": result.neuron_error,
        "logit_error": result.logit_error,
        "same_top": result.same_top,
    }


@torch.no_grad()
def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.try_image
    if not cfg.enabled:
        ctx.skip("tryimage", "try_image.enabled is false")
        return
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise AtlasgenError(
            [
                f"tryimage: the try page needs the packages onnx and onnxruntime ({exc}). "
                "Fix: pip install onnx onnxruntime (constraints.txt pins the tested versions), "
                "or set try_image.enabled: false."
            ]
        ) from None
    data = open_dataset(ctx.inputs["dataset"], ctx.cfg)
    model = load_model(ctx.inputs["model"], ctx.cfg.model, data.n_classes, "cpu")
    outputs = None if ctx.cfg.model.head == "none" else class_outputs(model, data.n_classes)
    check_idx = data.indices("heldout")[: cfg.check_images]
    if len(check_idx) == 0:
        check_idx = data.indices("train")[: cfg.check_images]
    images = data.batch(check_idx).contiguous()
    layers = []
    with ctx.progress(len(ctx.cfg.layers), "export") as bar:
        for layer_cfg in ctx.cfg.layers:
            layer = layer_cfg.name
            sae = load_sae_any(ctx.inputs["sae"] / layer).eval()
            graph = ImageGraph(model, layer, sae, outputs)
            ref = pipeline_outputs(model, layer, sae, images, outputs)
            try:
                full = export_graph(graph, data.image_size)
            except Exception as exc:  # an operation the TorchScript exporter cannot write, and the like
                first = (str(exc).splitlines() or [""])[0][:200]
                raise AtlasgenError(
                    [
                        f"tryimage: torch.onnx.export cannot export layer {layer!r} of this model "
                        f"({type(exc).__name__}: {first}). Fix: set try_image.enabled: false (the rest of "
                        "the atlas does not need the try page)."
                    ]
                ) from exc
            checks = {"float32": compare(ref, onnx_outputs(full, images.numpy(), graph.head), cfg.top)}
            kept, data_bytes = "float32", full
            if cfg.float16:
                half = weights_to_float16(full)
                checks["float16"] = compare(ref, onnx_outputs(half, images.numpy(), graph.head), cfg.top)
                if checks["float16"].passes(cfg.tolerance):
                    kept, data_bytes = "float16", half
            if not checks["float32"].passes(cfg.tolerance):
                r = checks["float32"]
                raise AtlasgenError(
                    [
                        f"tryimage: the ONNX graph of layer {layer!r} differs from PyTorch by "
                        f"{max(r.feature_error, r.neuron_error, r.logit_error or 0):.3g} "
                        f"(relative, at the top {cfg.top}; same top features: {r.same_top}), over "
                        f"try_image.tolerance {cfg.tolerance:g}. "
                        "Fix: raise try_image.tolerance, or set try_image.enabled: false for a "
                        "model onnxruntime computes differently."
                    ]
                )
            atomic_write_bytes(ctx.out / layer / "graph.onnx", data_bytes)
            atomic_write_json(
                ctx.out / layer / "check.json",
                {
                    "dtype": kept,
                    "images": [int(i) for i in check_idx],
                    "top": cfg.top,
                    "tolerance": cfg.tolerance,
                    "checks": {name: _errors(r) for name, r in checks.items()},
                    "bytes": len(data_bytes),
                    "features": int(ref["feature_max"].shape[1]),
                    "neurons": int(ref["neuron_max"].shape[1]),
                    "grid": list(ref["feature_map"].shape[2:]),
                },
            )
            ctx.console.detail(
                f"  {layer}: {kept} graph, {len(data_bytes) / 1e6:.2f} MB; error at the top {cfg.top}: "
                + ", ".join(f"{n} {r.feature_error:.2g}" for n, r in checks.items())
            )
            layers.append(layer)
            bar.update()
    atomic_write_json(
        ctx.out / "try.json",
        {
            "image_size": data.image_size,
            "crop_fraction": float(data.info.get("crop_fraction", 1.0)),
            "layers": layers,
            "logits": outputs is not None,
            "top": cfg.top,
            "tolerance": cfg.tolerance,
            "opset": OPSET,
        },
    )
