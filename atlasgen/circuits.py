"""Weights between units of two layers: expanded weights, computed with autograd.

Between two studied layers of a CNN lies a sub-network (for InceptionV1's
mixed5a -> mixed5b, a whole Inception block: parallel 1x1 / 3x3 / 5x5 /
pool-projection branches, ReLUs, a max-pool, a concatenation). Its *expanded
weights* (Olah et al. 2020, "Visualizing Weights") are the weights of the
linear map left when every ReLU is treated as the identity and every max-pool
as the identity (a strided max-pool as the average pool of the same window, so
the grid still shrinks): the composition of the convolutions, multiplied out.
That map is linear and translation-equivariant, so it is a convolution with
one kernel J[c_out, c_in, dy, dx] per pair of channels, and autograd gives it
exactly: the gradient of one output channel at the centre of the grid with
respect to the whole input grid is that channel's kernel.

Units are then read and written through this kernel: an upstream SAE feature
writes along its decoder row W_dec(l-1)[j]; a downstream SAE feature reads
through its encoder column W_enc(l)[:, i] (see docs/analyses.md for why the
encoder and not the decoder), so the per-offset feature-to-feature weight is
W_enc(l)[:, i]^T . J[:, :, dy, dx] . W_dec(l-1)[j]; a neuron reads and writes
through the identity. Ranking uses the sum over offsets, the effect of an
upstream unit that is active uniformly over the grid.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from atlasgen.errors import AtlasgenError
from atlasgen.models import (
    StopForward,
    capture,
    classifier_head,
    get_module,
    layer_activations,
    layer_view,
    positions_as_vectors,
)


class CircuitsError(AtlasgenError):
    headline = "circuits error"


@torch.no_grad()
def reaches_classifier_linearly(model, layer: str, images: torch.Tensor) -> bool:
    """True when logits == fc(mean over positions of the layer's output) on these images."""
    acts = layer_activations(model, images, [layer])[layer]
    fc = classifier_head(model)
    if acts.dim() != 4 or acts.shape[1] != fc.in_features:
        return False
    logits = model(images)
    return torch.allclose(
        fc(acts.mean(dim=(2, 3))), logits, rtol=1e-4, atol=1e-4 * max(1.0, float(logits.abs().max()))
    )


def _identity_hook(_module, inputs, _output):
    return inputs[0]


def _linear_pool_hook(module: nn.MaxPool2d, inputs, output):
    x = inputs[0]
    if output.shape == x.shape:
        return x  # a stride-1 max-pool that keeps the grid: the identity
    # A strided max-pool: the average of the same window keeps the grid's shape and stays linear.
    return F.avg_pool2d(
        x, module.kernel_size, module.stride, module.padding, module.ceil_mode, count_include_pad=False
    )


def _linear_call_pool_hook(_module, args, kwargs, output):
    """lucent's InceptionV1 pools through ``MaxPool2dLayer(x, kernel_size=..., stride=...)`` on an
    input padded with -inf: linearized like nn.MaxPool2d -- the window's centre (the identity in the
    unpadded grid) for stride 1, the average of the window otherwise -- with the -inf padding as 0."""
    x = args[0]
    x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    kernel = kwargs.get("kernel_size", args[1] if len(args) > 1 else (3, 3))
    stride = kwargs.get("stride", args[2] if len(args) > 2 else (1, 1))
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    h, w = output.shape[-2:]
    if (sh, sw) == (1, 1):
        return x[..., kh // 2 : kh // 2 + h, kw // 2 : kw // 2 + w]
    return F.avg_pool2d(x, (kh, kw), (sh, sw))[..., :h, :w]


def _is_call_max_pool(module: nn.Module) -> bool:
    return type(module).__name__ == "MaxPool2dLayer"  # lucent.modelzoo's functional-style pool module


def _pool_args(args, kwargs):
    """(input, kernel, stride, padding, dilation, ceil_mode) of a functional max-pool call."""
    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
    given = dict(zip(names, args)) | {k: v for k, v in kwargs.items() if k in names}
    kernel = given["kernel_size"]
    stride = given.get("stride") or kernel  # None or () means the kernel size, as in F.max_pool2d
    return (
        given["input"],
        kernel,
        stride,
        given.get("padding", 0),
        given.get("dilation", 1),
        bool(given.get("ceil_mode", False)),
    )


def _linear_max_pool(args, kwargs):
    """A functional 2-d max-pool linearized like nn.MaxPool2d: the identity when it keeps the grid,
    else the average of the same window (non-finite padding read as 0). None when it cannot be
    (dilation, or the indices asked for)."""
    x, kernel, stride, padding, dilation, ceil_mode = _pool_args(args, kwargs)
    if kwargs.get("return_indices") or (len(args) > 6 and args[6]) or dilation not in (1, (1, 1), [1, 1]):
        return None
    x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    out = F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad=False)
    return x if out.shape == x.shape else out


_RELUS = frozenset({torch.relu, torch.relu_, F.relu, F.relu_, torch.Tensor.relu, torch.Tensor.relu_})
_MAX_POOLS = frozenset({F.max_pool2d, torch.max_pool2d})
# Functions the linearization cannot treat: reported by name when the path is found not to be linear.
_NONLINEAR = {
    f: name
    for f, name in (
        (torch.sigmoid, "sigmoid"),
        (F.sigmoid, "sigmoid"),
        (torch.Tensor.sigmoid, "sigmoid"),
        (torch.tanh, "tanh"),
        (F.tanh, "tanh"),
        (torch.Tensor.tanh, "tanh"),
        (F.gelu, "gelu"),
        (F.silu, "silu"),
        (F.softplus, "softplus"),
        (F.elu, "elu"),
        (F.selu, "selu"),
        (F.leaky_relu, "leaky_relu"),
        (F.relu6, "relu6"),
        (F.hardtanh, "hardtanh"),
        (F.hardswish, "hardswish"),
        (F.mish, "mish"),
        (F.softmax, "softmax"),
        (torch.softmax, "softmax"),
        (F.layer_norm, "layer_norm"),
        (F.group_norm, "group_norm"),
        (F.local_response_norm, "local_response_norm"),
        (torch.clamp, "clamp"),
        (torch.Tensor.clamp, "clamp"),
        (torch.clamp_min, "clamp_min"),
        (torch.Tensor.clamp_min, "clamp_min"),
        (F.max_pool2d_with_indices, "max_pool2d with indices"),
        (F.adaptive_max_pool2d, "adaptive_max_pool2d"),
        (torch.abs, "abs"),
        (torch.exp, "exp"),
    )
}


class _FunctionalLinearizer(TorchFunctionMode):
    """Functional ReLUs (``torch.relu``, ``F.relu``, ``x.relu()``, in place or not) act as the
    identity and functional 2-d max-pools as in :func:`_linear_max_pool`, like their module forms.
    Calls to other nonlinear functions on tensors that depend on the source layer's output are
    recorded (with the innermost module running) so a path found not to be linear can be named."""

    def __init__(self, module_names: dict[int, str]):
        super().__init__()
        self.module_names, self.stack, self.seen = module_names, [], []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELUS:
            return args[0]
        if func in _MAX_POOLS:
            out = _linear_max_pool(args, kwargs)
            if out is not None:
                return out
            self._note("max_pool2d (dilated or with indices)", args)
        elif func in _NONLINEAR:
            self._note(_NONLINEAR[func], args)
        return func(*args, **kwargs)

    def _note(self, name: str, args) -> None:
        if any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            where = next(
                (self.module_names[id(m)] for m in reversed(self.stack) if id(m) in self.module_names), ""
            )
            self.seen.append((name, where))


def _pop(stack: list) -> None:
    if stack:
        stack.pop()  # returns nothing: a global forward hook's return value would replace the output


@contextmanager
def linearized(model: nn.Module):
    """Within the block, every ReLU acts as the identity and every 2-d max-pool as the identity
    (strided ones as the average pool of the same window): nn.ReLU and nn.MaxPool2d modules,
    lucent's MaxPool2dLayer, and the functional forms (``torch.relu``, ``F.relu``, ``x.relu()``,
    ``F.max_pool2d``). Yields the list of other nonlinear calls seen on tensors that require
    grad, as (function, module name). Hooks and the function mode are removed on exit."""
    handles, inplace = [], []
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            if module.inplace:  # an in-place ReLU would overwrite its input before the hook sees it
                inplace.append(module)
                module.inplace = False
            handles.append(module.register_forward_hook(_identity_hook))
        elif isinstance(module, nn.MaxPool2d):
            handles.append(module.register_forward_hook(_linear_pool_hook))
        elif _is_call_max_pool(module):
            handles.append(module.register_forward_hook(_linear_call_pool_hook, with_kwargs=True))
    mode = _FunctionalLinearizer({id(m): name for name, m in model.named_modules() if name})
    handles.append(nn.modules.module.register_module_forward_pre_hook(lambda m, _i: mode.stack.append(m)))
    handles.append(nn.modules.module.register_module_forward_hook(lambda m, _i, _o: _pop(mode.stack)))
    try:
        with mode:
            yield mode.seen
    finally:
        for h in handles:
            h.remove()
        for module in inplace:
            module.inplace = True


def forward_order(model: nn.Module, layers: list[str], image_size: int, device: str = "cpu") -> list[str]:
    """``layers`` sorted by when the forward pass reaches them."""
    seen: list[str] = []
    handles = [
        get_module(model, name).register_forward_hook(lambda _m, _i, _o, name=name: seen.append(name))
        for name in layers
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for h in handles:
            h.remove()
    order = list(dict.fromkeys(seen))
    return order + [name for name in layers if name not in order]


def _map_from(
    model: nn.Module, src: str, dst: str, x: torch.Tensor, image_size: int, nonlinear: list | None = None
) -> torch.Tensor:
    """The linearized model's ``dst`` output when ``src`` outputs ``x`` (any batch size); the
    nonlinear calls met on the way are appended to ``nonlinear`` when given."""
    device = x.device
    handle = get_module(model, src).register_forward_hook(lambda _m, _i, _o: x)
    try:
        with linearized(model) as seen, capture(model, [dst]) as acts:
            try:
                # The image only fixes the grid; everything upstream of src is replaced by x.
                model(torch.zeros(1, 3, image_size, image_size, device=device, dtype=x.dtype))
            except StopForward:  # the capture hook stops the pass once dst is reached
                pass
            if nonlinear is not None:
                nonlinear += seen
    finally:
        handle.remove()
    if dst not in acts:
        raise CircuitsError(
            [
                f"circuits: layer {dst!r} is not computed from {src!r}. Fix: list layers in the "
                "model's forward order."
            ]
        )
    return acts[dst]


def expanded_weights(
    model: nn.Module,
    src: str,
    dst: str,
    image_size: int,
    device: str = "cpu",
    chunk: int = 256,
    max_doublings: int = 3,
) -> np.ndarray:
    """Expanded weights from layer ``src`` to a later layer ``dst``: J (C_dst, C_src, kh, kw), float64.

    ``J[o, c, dy, dx]`` is the weight from input channel c at offset (dy, dx) of the kernel window
    to output channel o, for the model with ReLUs and max-pools linearized (see :func:`linearized`).
    The grid is enlarged (a larger input image) until the kernel's support lies strictly inside it,
    and the result is checked against the linearized model on a random input. The computation runs
    on a float64 copy of the model, so the composed weights are exact to float64 rounding.
    """
    model = copy.deepcopy(model).eval().double()
    size = image_size
    for _ in range(max_doublings + 1):
        with torch.no_grad():
            acts = layer_activations(
                model, torch.zeros(1, 3, size, size, device=device, dtype=torch.float64), [src, dst]
            )
            shapes = {k: tuple(v.shape[1:]) for k, v in acts.items()}
        (c_in, h, w), (c_out, h2, w2) = shapes[src], shapes[dst]
        cy, cx = h2 // 2, w2 // 2
        rows = []
        with torch.enable_grad():
            for start in range(0, c_out, chunk):
                n = min(chunk, c_out - start)
                x = torch.zeros(n, c_in, h, w, device=device, dtype=torch.float64, requires_grad=True)
                out = _map_from(model, src, dst, x, size)
                sel = out[
                    torch.arange(n, device=device), torch.arange(start, start + n, device=device), cy, cx
                ]
                (g,) = torch.autograd.grad(sel.sum(), x)
                rows.append(g.detach().double().cpu())
        grid = torch.cat(rows).numpy()  # (C_out, C_in, H, W)
        support = np.abs(grid).sum(axis=(0, 1)) > 1e-12 * max(np.abs(grid).max(), 1e-30)
        ys, xs = np.nonzero(support)
        if ys.size == 0:
            raise CircuitsError(
                [f"circuits: no weights from {src!r} to {dst!r} (the linearized map is zero)."]
            )
        y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
        if y0 > 0 and x0 > 0 and y1 < h - 1 and x1 < w - 1:
            J = grid[:, :, y0 : y1 + 1, x0 : x1 + 1]
            _check_linear(model, src, dst, J, (y0, x0), (cy, cx), (c_in, h, w), size, device)
            return J
        size *= 2  # the kernel reaches the border: a larger grid shows all of it
    raise CircuitsError(
        [f"circuits: the expanded kernel from {src!r} to {dst!r} does not fit a {size}px input."]
    )


def _check_linear(model, src, dst, J, origin, centre, shape, size, device) -> None:
    """The kernel must reproduce the linearized model at the centre on a random input; a nonlinearity
    other than a ReLU or a max-pool (a sigmoid gate, LRN, layer norm) would break this."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, *shape, generator=gen, dtype=torch.float64).to(device)
    with torch.no_grad():
        base = _map_from(model, src, dst, torch.zeros_like(x), size)[0, :, centre[0], centre[1]]
        out = _map_from(model, src, dst, x, size)[0, :, centre[0], centre[1]] - base
    kh, kw = J.shape[2:]
    window = x[0, :, origin[0] : origin[0] + kh, origin[1] : origin[1] + kw].double().cpu().numpy()
    want = np.einsum("ocyx,cyx->o", J, window)
    got = out.double().cpu().numpy()
    scale = max(np.abs(want).max(), 1e-6)
    if np.abs(got - want).max() > 1e-9 * scale:
        raise CircuitsError(
            [
                f"circuits: {nonlinear_reason(model, src, dst, x, size)} Fix: study two layers "
                "joined only by convolutions, linear layers, ReLUs, pools and concatenations "
                "(docs/analyses.md, expanded weights)."
            ]
        )


def nonlinear_reason(model, src: str, dst: str, x: torch.Tensor, size: int) -> str:
    """One sentence: why the path from ``src`` to ``dst`` is not linear once ReLUs and max-pools are,
    naming the first other nonlinear call on it and the module that makes it when one is seen."""
    seen: list = []
    with torch.enable_grad():
        _map_from(model, src, dst, x.detach().clone().requires_grad_(True), size, seen)
    if seen:
        name, where = seen[0]
        inside = f" in module {where!r}" if where else ""
        return (
            f"the path from {src!r} to {dst!r} goes through {name}{inside}, which expanded weights do "
            "not linearize (only ReLUs and max-pools are), so the layer-to-layer weights are not computed."
        )
    return (
        f"the path from {src!r} to {dst!r} is not linear once ReLUs and max-pools are linearized (a "
        "nonlinear operation between them), so the layer-to-layer weights are not computed."
    )


def unit_weights(J: np.ndarray, read: np.ndarray | None, write: np.ndarray | None) -> np.ndarray:
    """Per-offset weights (U_dst, U_src, kh, kw) between units: downstream unit i reads the
    output channels through ``read[:, i]`` (C_dst, U_dst), upstream unit j writes the input
    channels along ``write[j]`` (U_src, C_src). None means the neurons (identity)."""
    out = J
    if read is not None:
        out = np.einsum("oi,ocyx->icyx", read, out)
    if write is not None:
        out = np.einsum("icyx,jc->ijyx", out, write)
    return out


def top_pairs(summed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the ``k`` most positive then the ``k`` most negative columns of ``summed``
    (ties broken by lower index): indices (R, 2k) and their values."""
    k = min(k, summed.shape[1])
    pos = np.argsort(-summed, axis=1, kind="stable")[:, :k]
    neg = np.argsort(summed, axis=1, kind="stable")[:, :k]
    idx = np.concatenate([pos, neg], axis=1)
    return idx, np.take_along_axis(summed, idx, axis=1)


def layer_pair_weights(
    J: np.ndarray, read: np.ndarray | None, write: np.ndarray | None, k: int, chunk: int = 1024
) -> dict[str, np.ndarray]:
    """Top upstream units of every downstream unit and top downstream units of every upstream
    unit, by the sum over offsets, with their per-offset kernels.

    Returns ``up_idx``/``up_w``/``up_kernel`` (U_dst, 2k[, kh, kw]) and
    ``down_idx``/``down_w``/``down_kernel`` (U_src, 2k[, kh, kw]); the first k columns are the
    most positive weights, the last k the most negative.
    """
    Jsum = J.sum(axis=(2, 3))  # (C_dst, C_src): summing over offsets commutes with the projections
    summed = Jsum
    if read is not None:
        summed = read.T @ summed
    if write is not None:
        summed = summed @ write.T
    up_idx, up_w = top_pairs(summed, k)
    down_idx, down_w = top_pairs(summed.T, k)
    n_dst, n_src = summed.shape
    kh, kw = J.shape[2:]
    up_kernel = np.zeros(up_idx.shape + (kh, kw))
    down_kernel = np.zeros(down_idx.shape + (kh, kw))
    # Kernels only for the kept pairs, downstream units in chunks (U_dst x C_src x offsets per chunk).
    down_rows = [[] for _ in range(n_src)]
    for j in range(n_src):
        for col, i in enumerate(down_idx[j]):
            down_rows[j].append((col, int(i)))
    by_dst: dict[int, list[tuple[int, int]]] = {}
    for j, pairs in enumerate(down_rows):
        for col, i in pairs:
            by_dst.setdefault(i, []).append((j, col))
    for start in range(0, n_dst, chunk):
        ids = np.arange(start, min(start + chunk, n_dst))
        A = J[ids] if read is None else np.einsum("oi,ocyx->icyx", read[:, ids], J)  # (n, C_src, kh, kw)
        for r, i in enumerate(ids):
            cols = up_idx[i]
            up_kernel[i] = A[r][cols] if write is None else np.einsum("cyx,jc->jyx", A[r], write[cols])
            for j, col in by_dst.get(int(i), ()):
                down_kernel[j, col] = A[r][j] if write is None else np.einsum("cyx,c->yx", A[r], write[j])
    return {
        "up_idx": up_idx,
        "up_w": up_w,
        "up_kernel": up_kernel,
        "down_idx": down_idx,
        "down_w": down_w,
        "down_kernel": down_kernel,
    }


# ---------------------------------------------------------------- contributions to the class logits


def forward_from(model, layer: str, replacement: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The model's logits with the layer's output replaced by ``replacement`` (keeps the graph)."""
    view = layer_view(model, layer)
    handle = get_module(model, view.module).register_forward_hook(
        lambda _m, _i, o: view.splice(o, replacement)
    )
    try:
        with torch.enable_grad():
            return model(images)
    finally:
        handle.remove()


def class_image_indices(
    labels: np.ndarray, candidates: np.ndarray, n_classes: int, per_class: int
) -> np.ndarray:
    """The first ``per_class`` of ``candidates`` (in index order) of every class, all when 0; sorted."""
    candidates = np.sort(np.asarray(candidates, dtype=np.int64))
    keep = [candidates[labels[candidates] == c][: per_class or None] for c in range(n_classes)]
    return np.sort(np.concatenate(keep)) if keep else candidates[:0]


def facet_groups(labels: np.ndarray, facets: np.ndarray | None, facet_names: list[list[str]]):
    """(group of every image or -1, [(class, facet index)] of every group): one group per facet of a
    class that records facets; None for the first when the dataset records none."""
    if facets is None or not (np.asarray(facets) >= 0).any():
        return None, []
    groups: list[tuple[int, int]] = []
    group_of = np.full(len(labels), -1, dtype=np.int64)
    for c, names in enumerate(facet_names):
        for fi in range(len(names)):
            group_of[(labels == c) & (facets == fi)] = len(groups)
            groups.append((c, fi))
    return group_of, groups


class _GroupSums:
    """Float64 sums of per-image rows by group (a class, or a (class, facet) group), and counts."""

    def __init__(self, n_groups: int):
        self.n_groups = n_groups
        self.sums: dict[str, torch.Tensor] = {}
        self.count = torch.zeros(n_groups, dtype=torch.float64)

    def add(self, rows: dict[str, torch.Tensor], groups: torch.Tensor) -> None:
        keep = groups >= 0
        if not bool(keep.any()):
            return
        g = groups[keep]
        for name, r in rows.items():
            total = self.sums.setdefault(name, torch.zeros(self.n_groups, r.shape[1], dtype=torch.float64))
            total.index_add_(0, g, r.detach().cpu().double()[keep])
        self.count.index_add_(0, g, torch.ones(len(g), dtype=torch.float64))

    def means(self, name: str, width: int) -> np.ndarray:
        """(units, groups): each group's mean row (0 for a group without images)."""
        if name not in self.sums:
            return np.zeros((width, self.n_groups))
        return (self.sums[name] / self.count.clamp_min(1)[:, None]).T.numpy()


IMAGE_TOP_UNITS = 64  # per image, the units of its largest contributions kept (class pages' duplicates)


def _top_units(own: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(B, U) contributions of each image -> the E = min(IMAGE_TOP_UNITS, U) largest per image: units
    (int32, largest first, ties to the lower index) and values (float64)."""
    e = min(IMAGE_TOP_UNITS, own.shape[1])
    v = own.numpy()
    order = np.argsort(-v, axis=1, kind="stable")[:, :e]
    return order.astype(np.int32), np.take_along_axis(v, order, 1)


def class_contributions(
    model,
    saes: dict,
    heads: dict,
    data,
    indices: np.ndarray,
    outputs: np.ndarray,
    batch_size: int,
    device: str,
    group_of: np.ndarray | None = None,
    group_class: np.ndarray | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Each unit's contribution to every class's logit on that class's own images.

    ``saes``: layer -> SAE; ``heads``: layer -> (K, C) weights of the layer's spatially averaged
    channels on the K class logits where the layer reaches them through global average pooling and
    one linear layer, else None. ``indices``: the images (atlasgen.data.Dataset indices, loaded with
    ``data.batches``); ``outputs`` (K,): the logit of each dataset class; ``group_of`` (N,): each
    image's (class, facet) group or -1, ``group_class`` (G,): each group's class.

    On an image x of class c with layer activations a(x, p) at positions p, SAE feature i (decoder
    row d_i, code f_i) contributes gradient x activation ``sum_p f_i(x, p) <d_i, g_c(x, p)>`` and
    neuron n ``sum_p a_n(x, p) g_c(x, p)_n``, with g_c = d logit_c / d a. Through pooling and a
    linear head g_c = W_fc[c] / P exactly, so the contribution is ``(W_fc W_dec^T)[c, i] * mean_p
    f_i(x, p)``: weight x activation, exactly the part of the logit the unit's reconstruction term
    adds (computed in that closed form, without gradients). Any other layer gets the gradient, a
    first-order attribution. Both are averaged over the class's images (a group's: over its
    images, to its class's logit).

    Returns per layer ``features``/``neurons`` (U, K), their class means of the spatially averaged
    code/activation ``features_mean``/``neurons_mean`` (U, K), ``images`` (K,), with groups
    ``features_group``/``neurons_group`` (U, G) and ``group_images`` (G,), and each image's own
    contributions: ``image_class`` (N,), the class of each image in ``indices`` order, and
    ``image_features_units``/``image_features_values`` (N, E) (``image_neurons_*`` alike), the E =
    min(IMAGE_TOP_UNITS, U) units with the largest contributions to the image's own class logit on it,
    largest first (ties to the lower index), and those contributions.
    """
    layers = list(saes)
    n_classes = len(outputs)
    n_groups = 0 if group_class is None else len(group_class)
    per_class = {name: _GroupSums(n_classes) for name in layers}
    per_group = {name: _GroupSums(n_groups) for name in layers} if n_groups else {}
    per_image = {name: {"features": [], "neurons": []} for name in layers}
    linear = {}  # layer -> (features (F, K), neurons (C, K)) class weights where the head is linear
    for name in layers:
        if heads[name] is not None:
            Wn = torch.as_tensor(np.asarray(heads[name], dtype=np.float64).T)  # (C, K)
            linear[name] = (saes[name].W_dec.detach().double().cpu() @ Wn, Wn)
    labels = np.asarray(data.labels)
    outputs_t = torch.as_tensor(np.asarray(outputs, dtype=np.int64))
    dtype = next(model.parameters()).dtype
    for idx, images in data.batches(indices, batch_size, device):
        images = images.to(dtype)
        classes = torch.from_numpy(labels[idx].astype(np.int64))
        groups = torch.from_numpy(group_of[idx]) if n_groups else None
        acts = layer_activations(model, images, layers)
        for name in layers:
            sae, a = saes[name], acts[name]
            b, _, h, w = a.shape
            with torch.no_grad():
                codes = sae.encode(positions_as_vectors(a)).view(b, h * w, -1)  # (B, P, F)
            rows = {"features_mean": codes.mean(1), "neurons_mean": a.mean((2, 3))}
            if name in linear:  # each image's own contributions, in the closed form
                Wf, Wn = linear[name]
                for kind, W in (("features", Wf), ("neurons", Wn)):
                    own = rows[f"{kind}_mean"].detach().cpu().double() * W[:, classes].T
                    per_image[name][kind].append(_top_units(own))
            if heads[name] is None:
                leaf = a.detach().requires_grad_(True)
                logits = forward_from(model, name, leaf, images)
                chosen = logits.gather(1, outputs_t[classes].to(logits.device)[:, None])
                (g,) = torch.autograd.grad(chosen.sum(), leaf)  # images are independent: per-image grads
                with torch.no_grad():
                    reads = (positions_as_vectors(g) @ sae.W_dec.detach().to(g.dtype).T).view(b, h * w, -1)
                    rows["features"] = (codes * reads).sum(1)  # sum_p f_i <d_i, g>
                    rows["neurons"] = (a * g).sum((2, 3))
                for kind in ("features", "neurons"):
                    per_image[name][kind].append(_top_units(rows[kind].detach().cpu().double()))
            per_class[name].add(rows, classes)
            if n_groups:
                per_group[name].add(rows, groups)
    out = {}
    for name in layers:
        n_feat = int(saes[name].W_dec.shape[0])
        n_chan = int(saes[name].W_dec.shape[1])
        Wf = Wn = None
        if heads[name] is not None:
            Wn = np.asarray(heads[name], dtype=np.float64).T  # (C, K)
            Wf = saes[name].W_dec.detach().double().cpu().numpy() @ Wn  # (F, K): W_fc . W_dec^T
        res: dict[str, np.ndarray] = {"image_class": labels[np.asarray(indices)].astype(np.int64)}
        for kind, width in (("features", n_feat), ("neurons", n_chan)):
            parts = per_image[name][kind]
            e = min(IMAGE_TOP_UNITS, width)
            res[f"image_{kind}_units"] = (
                np.concatenate([u for u, _ in parts]) if parts else np.zeros((0, e), dtype=np.int32)
            )
            res[f"image_{kind}_values"] = (
                np.concatenate([v for _, v in parts]) if parts else np.zeros((0, e), dtype=np.float64)
            )
        blocks = [(per_class[name], "", np.arange(n_classes))]
        if n_groups:
            blocks.append((per_group[name], "_group", np.asarray(group_class)))
        for sums, suffix, cls in blocks:
            res["images" if not suffix else "group_images"] = sums.count.numpy().astype(np.int64)
            for kind, W, width in (("features", Wf, n_feat), ("neurons", Wn, n_chan)):
                mean = sums.means(f"{kind}_mean", width)
                if not suffix:
                    res[f"{kind}_mean"] = mean
                res[f"{kind}{suffix}"] = W[:, cls] * mean if W is not None else sums.means(kind, width)
        out[name] = res
    return out
