"""Importance of a unit by mean ablation (Terekhov 2023, "Are important features more interpretable?").

A unit is ablated by replacing its activation, at every position of every
image, by its mean over all positions of all the images used (a constant that
keeps the value in range, unlike a zero). The importance of the unit is the
number of images whose true class is among the model's top k predictions
(k = 10 in Terekhov) and no longer is after the ablation:
``#correct(clean) - #correct(ablated)``, which can be negative. The same count
with k = 1 is reported as well.

An SAE feature i is ablated inside the layer's own activation, keeping the SAE's
reconstruction error and every other feature: ``a' = a + (mu_i - f_i) W_dec[i]``.
A neuron c is ablated by ``a'_c = mu_c``.

Two ways to compute it, with the same answer where both apply:

- closed form, for a layer that reaches the logits through average pooling and
  one linear layer: ablating unit u adds ``(mu_u - mean_positions(u)) * w_u``
  to the logits (w_u: the unit's class-weight column), so every unit's ablated
  logits come from one clean pass;
- batched ablations, for any layer: the activations of a batch of images are
  copied once per unit of a chunk, each copy ablated for its unit, and the rest
  of the model runs on them all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from atlasgen.models import (
    StopForward,
    capture,
    classifier_head,
    get_module,
    layer_view,
    positions_as_vectors,
)

Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]  # a fresh pass of (images, labels)


AUTO_TOP_K_FRACTION = 5  # importance.top_k auto: a fifth of the outputs, within [1, AUTO_TOP_K_MAX]
AUTO_TOP_K_MAX = 10


def resolve_top_k(top_k: int | str, n_outputs: int) -> int:
    """The k of importance's top-k for a model with ``n_outputs`` logits: ``auto`` is
    n_outputs // 5 clipped to [1, 10] (Terekhov's 10 for 1,000 ImageNet classes, 3 for 16)."""
    if top_k == "auto":
        return max(1, min(AUTO_TOP_K_MAX, n_outputs // AUTO_TOP_K_FRACTION))
    return int(top_k)


def hits(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Whether the true class is in the top ``k`` (..., K) logits: fewer than k classes score higher."""
    true = logits.gather(-1, labels.expand(logits.shape[:-1]).unsqueeze(-1))
    return (logits > true).sum(-1) < k


def _codes(sae, acts: torch.Tensor) -> torch.Tensor:
    """SAE codes (B, F, H, W) of a (B, C, H, W) activation map."""
    b, _, h, w = acts.shape
    return sae.encode(positions_as_vectors(acts)).reshape(b, h, w, -1).permute(0, 3, 1, 2)


def _clean_pass(model, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's activations and the logits for a batch."""
    with capture(model, [layer], stop=False) as acts:
        logits = model(x)
    return acts[layer], logits


@torch.no_grad()
def unit_sums(model, layer: str, sae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """One batch's float64 sums over every position of every image: per neuron, per feature; and the count."""
    with capture(model, [layer]) as acts:
        try:
            model(x)
        except StopForward:
            pass
    a = acts[layer].double()
    sum_f = _codes(sae, acts[layer]).double().sum((0, 2, 3)) if sae is not None else None
    return a.sum((0, 2, 3)), sum_f, a.shape[0] * a.shape[2] * a.shape[3]


def fold_means(sums) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Means from a sequence of :func:`unit_sums` results, added in that order."""
    sum_a = sum_f = None
    count = 0
    for a, f, c in sums:
        sum_a = a if sum_a is None else sum_a + a
        if f is not None:
            sum_f = f if sum_f is None else sum_f + f
        count += c
    return sum_a / count, (sum_f / count if sum_f is not None else None)


@torch.no_grad()
def unit_means(model, layer: str, sae, batches: Batches) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean over every position of every image: per neuron (C,), and per SAE feature (F,) when ``sae``."""
    return fold_means(unit_sums(model, layer, sae, x) for x, _ in batches())


@torch.no_grad()
def closed_form(model, layer: str, sae, batches: Batches, mu_a, mu_f, k: int) -> dict[str, np.ndarray]:
    """Importance of every neuron and feature of a layer that feeds the head (pool + one linear layer)."""
    W_fc = classifier_head(model).weight.double()  # (K, C)
    weights = {"neurons": W_fc.T}  # (C, K)
    if sae is not None:
        weights["features"] = sae.W_dec.double() @ W_fc.T  # (F, K)
    totals = {f"{kind}_{n}": 0 for kind in weights for n in ("topk", "top1")}
    totals.update(clean_topk=0, clean_top1=0, images=0)
    for x, y in batches():
        a, logits = _clean_pass(model, layer, x)
        logits = logits.double()
        y = y.to(logits.device)
        clean_k, clean_1 = hits(logits, y, k), hits(logits, y, 1)
        totals["clean_topk"] += int(clean_k.sum())
        totals["clean_top1"] += int(clean_1.sum())
        totals["images"] += len(y)
        deltas = {"neurons": mu_a[None] - a.double().mean((2, 3))}
        if sae is not None:
            deltas["features"] = mu_f[None] - _codes(sae, a).double().mean((2, 3))
        for kind, W in weights.items():
            for start in range(0, W.shape[0], 4096):  # (B, units, K) in chunks of units
                ablated = (
                    logits[:, None, :]
                    + deltas[kind][:, start : start + 4096, None] * W[None, start : start + 4096]
                )
                yk = y[:, None]
                lost_k = clean_k[:, None].long() - hits(ablated, yk, k).long()
                lost_1 = clean_1[:, None].long() - hits(ablated, yk, 1).long()
                _accumulate(totals, f"{kind}_topk", lost_k.sum(0), start, W.shape[0])
                _accumulate(totals, f"{kind}_top1", lost_1.sum(0), start, W.shape[0])
    return totals


def _accumulate(totals: dict, key: str, values: torch.Tensor, start: int, n: int) -> None:
    if not isinstance(totals.get(key), np.ndarray):
        totals[key] = np.zeros(n, dtype=np.int64)
    totals[key][start : start + len(values)] += values.cpu().numpy()


@torch.no_grad()
def batched_ablation(
    model,
    layer: str,
    sae,
    batches: Batches,
    mu_a,
    mu_f,
    k: int,
    units_per_pass: int = 32,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Importance of every neuron and feature of any layer: the rest of the model reruns on
    ablated copies of each batch, ``units_per_pass`` units at a time."""
    view = layer_view(model, layer)
    module = get_module(model, view.module)
    # The upstream part of the model runs once on one image and the ablated maps are spliced in for
    # all u*B copies -- exact when the studied layer is the module's whole 4-D output. A view (a
    # channel range, ViT tokens) keeps the rest of the module's output per image: the copies then run
    # from the input.
    probe: list[int] = []
    handle = module.register_forward_hook(
        lambda _m, _i, o: probe.append((o[0] if isinstance(o, (tuple, list)) else o).dim())
    )
    try:
        for x, _ in batches():
            with capture(model, [layer]):  # stops the pass at the layer
                try:
                    model(x[:1])
                except StopForward:
                    pass
            break
    finally:
        handle.remove()
    whole = view.channels is None and probe[:1] == [4]
    kinds = ["neurons"] + (["features"] if sae is not None else [])
    totals: dict = {"clean_topk": 0, "clean_top1": 0, "images": 0}
    for x, y in batches():
        a, logits = _clean_pass(model, layer, x)
        y = y.to(logits.device)
        clean_k, clean_1 = hits(logits, y, k), hits(logits, y, 1)
        totals["clean_topk"] += int(clean_k.sum())
        totals["clean_top1"] += int(clean_1.sum())
        totals["images"] += len(y)
        b = a.shape[0]
        f = _codes(sae, a) if sae is not None else None
        for kind in kinds:
            n_units = a.shape[1] if kind == "neurons" else f.shape[1]
            for start in range(0, n_units, units_per_pass):
                units = torch.arange(start, min(start + units_per_pass, n_units), device=a.device)
                u = len(units)
                ablated = a.unsqueeze(0).repeat(u, 1, 1, 1, 1)  # (u, B, C, H, W)
                if kind == "neurons":
                    ablated[torch.arange(u), :, units] = mu_a[units].to(a.dtype)[:, None, None, None]
                else:
                    # a' = a + (mu_i - f_i) W_dec[i], unit by unit of the chunk
                    delta = mu_f[units].to(a.dtype)[:, None, None, None] - f[:, units].transpose(
                        0, 1
                    )  # (u, B, H, W)
                    ablated += delta[:, :, None] * sae.W_dec[units].to(a.dtype)[:, None, :, None, None]
                replacement = ablated.reshape(u * b, *a.shape[1:])
                if whole:
                    hook = lambda _m, _i, _o: replacement
                else:
                    hook = lambda _m, _i, o: view.splice(o, replacement)
                handle = module.register_forward_hook(hook)
                try:
                    # upstream of the layer runs on one image (whole-module layers) or on every copy (views)
                    out = model(x[:1] if whole else x.repeat(u, *([1] * (x.dim() - 1))))
                finally:
                    handle.remove()
                out = out.reshape(u, b, -1)
                lost_k = clean_k[None].long() - hits(out, y[None], k).long()
                lost_1 = clean_1[None].long() - hits(out, y[None], 1).long()
                _accumulate(totals, f"{kind}_topk", lost_k.sum(1), start, n_units)
                _accumulate(totals, f"{kind}_top1", lost_1.sum(1), start, n_units)
        if progress is not None:
            progress(b)
    return totals


def ranks(topk: np.ndarray, top1: np.ndarray) -> np.ndarray:
    """Rank 1 = most important: by top-k importance, then top-1 importance, then lower id."""
    order = np.lexsort((np.arange(len(topk)), -top1, -topk))
    rank = np.empty(len(topk), dtype=np.int64)
    rank[order] = np.arange(1, len(topk) + 1)
    return rank
