"""The model and an SAE encoder as one ONNX graph per layer, for inference inside the site.

:class:`ImageGraph` takes one RGB image in [0, 1], ``(1, 3, S, S)`` at the dataset's size (the
model's own normalisation and resizing run inside it, as in every forward here), and returns what
the try page shows, computed as the examples stage computes it:

    feature_max  (1, F)        each SAE feature's maximum over the layer's positions
    feature_map  (1, F, H, W)  the SAE codes at every position (the heat-maps)
    neuron_max   (1, C)        each channel's maximum over positions
    neuron_map   (1, C, H, W)  the layer's activations (the neurons' heat-maps)
    logits       (1, K)        the model's output of each dataset class (``class_outputs``), only
                               when it has a classifier head

The codes are the SAE's inference codes (``encode``: the JumpReLU cut of a BatchTopK SAE, the
per-row TopK, or the ReLU), applied to every position's vector. Without a head the graph is the
model truncated after the layer (:func:`atlasgen.models.truncated_forward`); with one the graph
runs the whole model, for the predictions.

:func:`export_graph` writes it with ``torch.onnx.export`` (the TorchScript exporter: no extra
package), optionally with float16 weights (:func:`weights_to_float16`: each large float32
initialiser stored as float16 and cast back to float32 inside the graph, so the runtime computes
in float32 and only the download halves). :func:`check_graph` runs the file in onnxruntime on
dataset images and compares it with the PyTorch pipeline.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from atlasgen.models import (
    StopForward,
    get_module,
    layer_activations,
    layer_view,
    positions_as_vectors,
    truncated_forward,
)

OUTPUTS = ("feature_max", "feature_map", "neuron_max", "neuron_map", "logits")
OPSET = 17
FLOAT16_MIN_ELEMENTS = 64  # smaller initialisers (shapes, scalars, short biases) stay float32


class ImageGraph(nn.Module):
    """One image -> the layer's SAE codes and activations (max over positions and maps), and logits."""

    def __init__(self, model: nn.Module, layer: str, sae: nn.Module, outputs: list[int] | None):
        super().__init__()
        self.model, self.sae, self.layer = model, sae, layer
        self.head = outputs is not None
        self.outputs = None if outputs is None else list(outputs)
        self.view = layer_view(model, layer)
        self.forward_fn = model if self.head else truncated_forward(model, [layer])

    def forward(self, x: torch.Tensor):
        captured: dict[str, torch.Tensor] = {}

        def hook(_m, _i, output):
            captured["acts"] = self.view.view(output)
            if not self.head:
                raise StopForward

        handle = get_module(self.model, self.view.module).register_forward_hook(hook)
        try:
            logits = self.forward_fn(x)
        except StopForward:
            logits = None
        finally:
            handle.remove()
        acts = captured["acts"].float()
        b, c, h, w = acts.shape
        codes = self.sae.encode(positions_as_vectors(acts))  # (b * h * w, F)
        feature_map = codes.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        out = (
            feature_map.amax(dim=(2, 3)),
            feature_map,
            acts.amax(dim=(2, 3)),
            acts,
        )
        return out + ((logits[:, self.outputs].float(),) if self.head else ())


def output_names(head: bool) -> list[str]:
    return list(OUTPUTS if head else OUTPUTS[:-1])


def export_graph(graph: ImageGraph, image_size: int) -> bytes:
    """The ONNX file of ``graph`` for one (1, 3, image_size, image_size) image, as bytes."""
    import onnx

    buffer = io.BytesIO()
    example = torch.zeros(1, 3, image_size, image_size)
    # nn.MultiheadAttention's inference fast path is one fused operator (_native_multi_head_attention)
    # that the exporter has no ONNX for; the ordinary path computes the same attention in exportable ops.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            _export(graph, example, buffer)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    return proto.SerializeToString(deterministic=True)


def _export(graph: ImageGraph, example: torch.Tensor, buffer: io.BytesIO) -> None:
    torch.onnx.export(
        graph.eval(),
        (example,),
        buffer,
        dynamo=False,
        input_names=["image"],
        output_names=output_names(graph.head),
        opset_version=OPSET,
        do_constant_folding=True,
    )


def weights_to_float16(data: bytes) -> bytes:
    """The graph with every float32 initialiser of at least ``FLOAT16_MIN_ELEMENTS`` values stored
    as float16 and cast back to float32 by a Cast node at the start of the graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load_from_string(data)
    g = proto.graph
    casts, kept = [], []
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= FLOAT16_MIN_ELEMENTS:
            array = numpy_helper.to_array(init).astype(np.float16)
            half = numpy_helper.from_array(array, init.name + "__f16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
        else:
            kept.append(init)
    del g.initializer[:]
    g.initializer.extend(kept)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(proto)
    return proto.SerializeToString(deterministic=True)


@dataclass
class CheckResult:
    """How the ONNX graph's outputs compare with PyTorch's on the images checked.

    ``feature_error``: the largest difference at a top feature (the ``top`` largest maxima of
    each image, by PyTorch), relative to that image's largest feature maximum; ``neuron_error``
    the same for channels; ``logit_error`` the largest logit difference relative to the image's
    largest absolute logit (None without a head); ``same_top``: each image's top features are
    the same set in both (a swap between values closer than the tolerance counts as the same)."""

    feature_error: float
    neuron_error: float
    logit_error: float | None
    same_top: bool
    images: int

    def passes(self, tolerance: float) -> bool:
        errors = [self.feature_error, self.neuron_error] + (
            [self.logit_error] if self.logit_error is not None else []
        )
        return self.same_top and max(errors) <= tolerance


def _top_error(ref: np.ndarray, got: np.ndarray, top: int) -> tuple[float, bool]:
    """(largest error at the ``top`` largest of ``ref`` relative to its maximum, same top set)."""
    top = min(top, ref.shape[0])
    order = np.argsort(-ref, kind="stable")[:top]
    scale = max(float(np.abs(ref).max()), 1e-12)
    error = float(np.abs(got[order] - ref[order]).max()) / scale
    mine = set(np.argsort(-got, kind="stable")[:top].tolist())
    swapped = mine.symmetric_difference(order.tolist())
    # a feature that changes places with another only counts when they are more than rounding apart
    kth = ref[order[-1]]
    same = all(abs(float(ref[i]) - float(kth)) <= 1e-3 * scale for i in swapped)
    return error, same


@torch.no_grad()
def pipeline_outputs(
    model: nn.Module, layer: str, sae, images: torch.Tensor, outputs
) -> dict[str, np.ndarray]:
    """What the build's own pipeline computes for ``images``: the layer's activations
    (``layer_activations``, as every stage takes them), the SAE's inference codes (``encode``,
    whose values the examples stage's faster pass reproduces), their maxima over positions, and
    the model's logits of the dataset classes."""
    acts = layer_activations(model, images, [layer])[layer].float()
    b, c, h, w = acts.shape
    codes = sae.encode(positions_as_vectors(acts)).reshape(b, h, w, -1).permute(0, 3, 1, 2)
    out = {
        "feature_max": codes.amax(dim=(2, 3)).numpy(),
        "feature_map": codes.numpy(),
        "neuron_max": acts.amax(dim=(2, 3)).numpy(),
        "neuron_map": acts.numpy(),
    }
    if outputs is not None:
        out["logits"] = model(images)[:, list(outputs)].float().numpy()
    return out


def onnx_outputs(data: bytes, images: np.ndarray, head: bool) -> dict[str, np.ndarray]:
    """The ONNX graph's outputs in onnxruntime (CPU, one thread), one image at a time."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    names = output_names(head)
    rows = [session.run(names, {"image": images[i : i + 1].astype(np.float32)}) for i in range(len(images))]
    return {name: np.concatenate([r[j] for r in rows]) for j, name in enumerate(names)}


def compare(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], top: int) -> CheckResult:
    """The errors of ``got`` (onnxruntime) against ``ref`` (PyTorch), image by image."""
    feature, neuron, logit, same = 0.0, 0.0, None, True
    for i in range(ref["feature_max"].shape[0]):
        e, s = _top_error(ref["feature_max"][i], got["feature_max"][i], top)
        feature, same = max(feature, e), same and s
        e, _ = _top_error(ref["neuron_max"][i], got["neuron_max"][i], top)
        neuron = max(neuron, e)
        if "logits" in ref and "logits" in got:
            r, g = ref["logits"][i], got["logits"][i]
            e = float(np.abs(r - g).max()) / max(float(np.abs(r).max()), 1e-12)
            logit = max(logit or 0.0, e)
    return CheckResult(feature, neuron, logit, same, int(ref["feature_max"].shape[0]))
