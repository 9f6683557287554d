"""Stage `examples`: dataset examples and statistics of every SAE feature and neuron.

One pass over the training images computes, per unit, the top-k images by
maximum activation over positions (with the arg-max position), the firing
density, the mean activation when firing and a histogram of per-image maxima.
The histogram is accumulated on a fine, fixed log grid during the pass and
re-binned relative to each unit's final maximum at the end, so one pass
suffices. Memory is bounded by units x (k + grid bins), whatever the dataset's
size. A second, small pass recomputes the activation maps of the top images
only, for the heat-maps.
"""

from __future__ import annotations

import numpy as np
import torch

from atlasgen.cache import atomic_save_npz
from atlasgen.data import open_dataset
from atlasgen.models import layer_activations, load_model, positions_as_vectors, vectors_as_map
from atlasgen.pipeline import StageContext
from atlasgen.sae_formats import load_sae_any

# Fine log grid for the streaming histogram: 1e-6 .. 1e6, 30 bins per decade.
FINE_EDGES = np.logspace(-6, 6, 12 * 30 + 1)
HIST_RANGE_DECADES = 3  # the page histogram spans max * 1e-3 .. max


class TopK:
    """Running top-k per unit of per-image maxima, with the image index."""

    def __init__(self, n_units: int, k: int, device: str):
        self.val = torch.full((n_units, k), -float("inf"), device=device)
        self.idx = torch.full((n_units, k), -1, dtype=torch.long, device=device)

    def update(self, values: torch.Tensor, image_idx: torch.Tensor) -> None:
        """values: (units, batch); image_idx: (batch,)."""
        val = torch.cat([self.val, values], dim=1)
        idx = torch.cat([self.idx, image_idx.expand(values.shape[0], -1)], dim=1)
        # Sort by image index, then stably by value: ties resolve the same way every run.
        order = torch.argsort(idx, dim=1, stable=True)
        val, idx = val.gather(1, order), idx.gather(1, order)
        top = torch.argsort(-val, dim=1, stable=True)[:, : self.val.shape[1]]
        self.val, self.idx = val.gather(1, top), idx.gather(1, top)


class UnitStats:
    """Streaming statistics of one family of units (features or neurons)."""

    def __init__(self, n_units: int, k: int, device: str):
        self.top = TopK(n_units, k, device)
        self.fires = torch.zeros(n_units, dtype=torch.long, device=device)
        self.sum_max = torch.zeros(n_units, dtype=torch.float64, device=device)
        self.fine_hist = torch.zeros((n_units, len(FINE_EDGES) - 1), dtype=torch.long, device=device)
        self.edges = torch.tensor(FINE_EDGES, device=device)
        self.n_images = 0

    def update(self, maps: torch.Tensor, image_idx: torch.Tensor) -> None:
        """maps: (batch, units, H, W) activations of one batch of images."""
        flat = maps.flatten(2)
        peak = flat.max(dim=2).values  # (batch, units)
        self.top.update(peak.T, image_idx)
        firing = peak > 0
        self.fires += firing.sum(0)
        self.sum_max += torch.where(firing, peak, 0).sum(0).double()
        bins = torch.bucketize(peak.T.contiguous(), self.edges) - 1  # (units, batch)
        valid = firing.T & (bins >= 0) & (bins < self.fine_hist.shape[1])
        units = torch.arange(peak.shape[1], device=peak.device)[:, None].expand_as(bins)
        self.fine_hist.index_put_((units[valid], bins[valid]), torch.ones_like(bins[valid]), accumulate=True)
        self.n_images += maps.shape[0]

    def finish(self, labels: np.ndarray, n_classes: int, n_bins: int) -> dict[str, np.ndarray]:
        top_val = self.top.val.cpu().numpy().astype(np.float32)
        top_idx = self.top.idx.cpu().numpy()
        top_idx[~np.isfinite(top_val) | (top_val <= 0)] = -1
        top_val[top_idx < 0] = 0.0
        fires = self.fires.cpu().numpy()
        max_act = np.maximum(top_val[:, 0], 0).astype(np.float32)
        hist_edges = np.logspace(-HIST_RANGE_DECADES, 0, n_bins + 1).astype(np.float32)
        hist = _rebin(self.fine_hist.cpu().numpy(), max_act, hist_edges)
        top_classes, top_weights, entropy = _class_stats(top_idx, top_val, labels, n_classes)
        return {
            "top_idx": top_idx.astype(np.int64),
            "top_val": top_val,
            "max_act": max_act,
            "density": (fires / max(1, self.n_images)).astype(np.float32),
            "mean_act": (self.sum_max.cpu().numpy() / np.maximum(fires, 1)).astype(np.float32),
            "hist": hist,
            "hist_edges": hist_edges,
            "top_classes": top_classes,
            "top_class_weights": top_weights,
            "label_entropy": entropy,
        }


def _rebin(fine: np.ndarray, max_act: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Move fine-grid counts into bins relative to each unit's max (by fine-bin centre)."""
    centres = np.sqrt(FINE_EDGES[:-1] * FINE_EDGES[1:])
    out = np.zeros((len(fine), len(edges) - 1), dtype=np.int64)
    for u in np.flatnonzero(max_act > 0):
        rel = np.minimum(centres / max_act[u], 1.0)
        b = np.clip(np.searchsorted(edges, rel, side="right") - 1, 0, len(edges) - 2)
        keep = (rel >= edges[0]) & (fine[u] > 0)
        np.add.at(out[u], b[keep], fine[u][keep])
    return out


def _class_stats(top_idx, top_val, labels, n_classes):
    """Activation-weighted class shares among the top examples, and their entropy (nats)."""
    n_units = len(top_idx)
    weights = np.zeros((n_units, n_classes))
    valid = top_idx >= 0
    rows = np.repeat(np.arange(n_units)[:, None], top_idx.shape[1], axis=1)
    np.add.at(weights, (rows[valid], labels[top_idx[valid]]), top_val[valid])
    total = weights.sum(1, keepdims=True)
    share = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(share > 0, share * np.log(share), 0.0), axis=1)
    order = np.argsort(-share, axis=1, kind="stable")[:, :3]
    top_w = np.take_along_axis(share, order, 1)
    classes = np.where(top_w > 0, order, -1)
    return classes.astype(np.int64), top_w.astype(np.float32), entropy.astype(np.float32)


def _unit_maps(model, sae, layer, images, device):
    """(features (B, F, H, W), neurons (B, C, H, W)) for a batch of images."""
    acts = layer_activations(model, images.to(device), [layer])[layer].float()
    b, _, h, w = acts.shape
    return vectors_as_map(sae.encode(positions_as_vectors(acts)), b, h, w), acts


@torch.no_grad()
def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.examples
    data = open_dataset(ctx.inputs["dataset"])
    model = load_model(ctx.inputs["model"], ctx.cfg.model, data.n_classes, ctx.device)
    train_idx = data.indices("train")
    for layer_cfg in ctx.cfg.layers:
        layer = layer_cfg.name
        sae = load_sae_any(ctx.inputs["sae"] / layer).to(ctx.device).eval()
        stats = None
        with ctx.progress(len(train_idx), f"examples {layer}") as bar:
            for start in range(0, len(train_idx), cfg.batch_size):
                idx = train_idx[start:start + cfg.batch_size]
                feats, acts = _unit_maps(model, sae, layer, data.batch(idx), ctx.device)
                if stats is None:
                    stats = {"features": UnitStats(feats.shape[1], cfg.top_k, ctx.device),
                             "neurons": UnitStats(acts.shape[1], cfg.top_k, ctx.device)}
                image_idx = torch.from_numpy(idx).to(ctx.device)
                stats["features"].update(feats, image_idx)
                stats["neurons"].update(acts, image_idx)
                bar.update(len(idx))
        grid = acts.shape[2:]
        results = {name: s.finish(data.labels, data.n_classes, cfg.histogram_bins) for name, s in stats.items()}
        _add_maps(results, model, sae, layer, data, ctx.device, grid, cfg.batch_size)
        for name, arrays in results.items():
            atomic_save_npz(ctx.out / layer / f"{name}.npz", **arrays)


def _add_maps(results, model, sae, layer, data, device, grid, batch_size) -> None:
    """Activation maps (heat-maps) and arg-max positions of every unit on its top images."""
    wanted = np.unique(np.concatenate([r["top_idx"][r["top_idx"] >= 0] for r in results.values()]))
    maps = {name: np.zeros(r["top_idx"].shape + tuple(grid), dtype=np.float16) for name, r in results.items()}
    for start in range(0, len(wanted), batch_size):
        batch = wanted[start:start + batch_size]
        feats, acts = _unit_maps(model, sae, layer, data.batch(batch), device)
        per_family = {"features": feats.cpu().numpy(), "neurons": acts.cpu().numpy()}
        row_of = {int(img): i for i, img in enumerate(batch)}
        for name, r in results.items():
            units, slots = np.nonzero(np.isin(r["top_idx"], batch))
            rows = np.array([row_of[int(i)] for i in r["top_idx"][units, slots]], dtype=np.int64)
            maps[name][units, slots] = per_family[name][rows, units]
    for name, r in results.items():
        r["top_maps"] = maps[name]
        flat = maps[name].reshape(maps[name].shape[:2] + (-1,)).astype(np.float32).argmax(2)
        r["top_pos"] = np.stack([flat // grid[1], flat % grid[1]], axis=-1).astype(np.int16)
