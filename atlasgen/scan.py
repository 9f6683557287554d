"""The examples scan: dataset examples and statistics of every SAE feature and neuron of a layer.

One pass over the images (:func:`scan`) computes, per unit (SAE feature or neuron
of the layer):

* the top-k images by maximum activation over positions, with the arg-max
  position (:class:`TopK`);
* uniform samples of images in activation bands relative to the unit's final
  maximum, by reservoir sampling over a log grid (:mod:`atlasgen.bands`);
* the histogram of per-image maxima, accumulated on a fine fixed log grid and
  re-binned relative to each unit's maximum at the end (each page bin is a
  union of fine bins, edges within half a fine bin of nominal);
* firing density per image and per position, mean activation when firing
  (per image maximum and per position);
* the activation-weighted class histogram over every firing image, from which
  the label classes, label entropy and the unit flags (dense, dead,
  low-confidence label, polysemantic) come (:mod:`atlasgen.unitlabels`); the
  class statistics of the top examples alone are kept beside them (``topk_*``);
* for SAE features, co-occurrence over a uniform sample of images, partners
  ranked by NPMI (:mod:`atlasgen.cofiring`).

Memory is bounded by units x (k + grid bins + band slots x samples), whatever
the dataset's size. A second, small pass recomputes the activation maps of
the images shown (top and band examples) only, for heat-maps and crops.

A scan's state (:meth:`Scan.state`, CPU tensors) can be saved, and the states
of scans of disjoint sets of images merge exactly into the state of one scan of
their union (:func:`merge_states`): the examples stage splits its batches over
the ranks of a distributed build this way (docs/scaling.md). The second pass
(:func:`unit_maps`) can be split the same way (:func:`join_maps`, :func:`add_maps`).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from atlasgen import cofiring, unitlabels
from atlasgen.bands import BandReservoir, as_numpy, grid_index, sample_keys
from atlasgen.models import layer_activations, positions_as_vectors
from atlasgen.sae import SparseAutoencoder

# Fine log grid for the streaming histogram: 1e-6 .. 1e6, 30 bins per decade.
FINE_EDGES = np.logspace(-6, 6, 12 * 30 + 1)
HIST_RANGE_DECADES = 3  # the page histogram spans max * 1e-3 .. max
N_PARTNERS = 6  # co-occurring features kept per feature
N_PAIRS = 50  # most frequent feature pairs kept per layer


# Per-image maxima held back before they are merged into the band and histogram state
# (units x images, per family): the merges cost about the same for one batch as for eight, so they
# run once per few batches. Bounded: a constant, whatever the dataset's size.
MERGE_ELEMENTS = 1 << 20
MERGE_IMAGES = 2048


# --------------------------------------------------------------------------------------
# Compiled passes for CPU scans (numba). Each replaces several tensor passes over a batch's
# activations with one: the batch is read once, while it is in cache, and the per-unit
# reductions (max over positions, firing count, sum) are vectorised across units. Other
# devices use the tensor operations they replace (in :meth:`UnitStats.update`).


@numba.njit(cache=True, nogil=True)
def _position_pass(x, b, t, P, peak, at, fires, sums, acc_c, acc_s):
    """x: (images * P, U) values, image-major; a value is ``x + b`` where above ``t``, else 0 (SAE
    codes: ``x`` = ``(x - b_dec) @ W_enc`` without the bias, ``t`` the BatchTopK cut >= 0, the float32
    operations of :func:`encode`; activations: ``b`` = 0 and ``t`` = -inf, the values themselves).
    Per image and unit the max over its P positions into ``peak`` and its position into ``at`` (ties
    to the first, as ``argmax``); per unit, the count and sum of positive values added to ``fires``
    and ``sums`` (float64; each image's share is summed in float32 first). Values are finite (the
    activations stage refuses NaN and inf). The inner loop runs across units, so it vectorises:
    selects, no branches."""
    U = x.shape[1]
    pk = np.empty(U, np.float32)
    ps = np.empty(U, np.int32)
    for i in range(x.shape[0] // P):
        pk[:] = -np.inf
        ps[:] = 0
        acc_c[:] = 0.0
        acc_s[:] = 0.0
        for p in range(P):
            row = x[i * P + p]
            for u in range(U):
                v = row[u] + b[u]
                v = v if v > t else np.float32(0.0)
                better = v > pk[u]
                pk[u] = v if better else pk[u]
                ps[u] = p if better else ps[u]
                pos = v > 0
                acc_c[u] += np.float32(1.0) if pos else np.float32(0.0)
                acc_s[u] += v if pos else np.float32(0.0)
        for u in range(U):
            peak[i, u] = pk[u]
            at[i, u] = ps[u]
            fires[u] += acc_c[u]
            sums[u] += acc_s[u]


@numba.njit(cache=True, nogil=True)
def _histogram_pairs(units, g, v, edges, fires, hist):
    """Per firing (unit, image) pair: the unit's image count, and the fine histogram bin of ``v``:
    ``bucketize(v, FINE_EDGES) - 1`` (bin j holds FINE_EDGES[j] < v <= FINE_EDGES[j + 1]; nothing
    outside), from the band grid index g = floor(60 log10 v). The fine grid has 30 bins per decade
    from 1e-6, so the bin is g // 2 + 180 but for rounding at an edge, which one comparison on each
    side settles exactly."""
    nb = hist.shape[1]
    for i in range(units.shape[0]):
        u = units[i]
        fires[u] += 1
        j = min(max((g[i] >> 1) + 180, 0), nb - 1)
        vd = np.float64(v[i])
        if vd <= edges[j]:
            j -= 1
        elif vd > edges[j + 1]:
            j += 1
        if 0 <= j < nb:
            hist[u, j] += 1


def _pass_outputs(n_images: int, U: int):
    """Outputs of :func:`_position_pass` for ``n_images`` images of U units: per-image maxima and
    their positions, per-unit firing counts and sums (float64, zeroed), and the float32 scratch."""
    return (
        torch.empty((n_images, U), dtype=torch.float32),
        torch.empty((n_images, U), dtype=torch.long),
        torch.zeros(U, dtype=torch.float64),
        torch.zeros(U, dtype=torch.float64),
        np.empty((2, U), np.float32),
    )


def _compiled(t: torch.Tensor) -> bool:
    """Whether the compiled CPU passes take this tensor (float32 on the CPU)."""
    return t.device.type == "cpu" and t.dtype == torch.float32


@numba.njit(cache=True, nogil=True)
def _topk_insert(val, idx, pos, u, v, image, at):
    """Insert (v, image, at) into unit u's list if it beats the last entry: value descending, ties to
    the lower image index (a strict total order, so the lists do not depend on insertion order)."""
    k = val.shape[1]
    last = val[u, k - 1]
    if v < last or (v == last and image > idx[u, k - 1]):
        return
    j = k - 1
    while j > 0 and (val[u, j - 1] < v or (val[u, j - 1] == v and idx[u, j - 1] > image)):
        val[u, j] = val[u, j - 1]
        idx[u, j] = idx[u, j - 1]
        pos[u, j] = pos[u, j - 1]
        j -= 1
    val[u, j] = v
    idx[u, j] = image
    pos[u, j] = at


@numba.njit(cache=True, nogil=True)
def _topk_add(val, idx, pos, peak, images, at):
    """Every firing (image, unit) maximum of a batch (peak: (B, U), > 0) that beats its unit's k-th."""
    for b in range(peak.shape[0]):
        image = images[b]
        for u in range(peak.shape[1]):
            v = peak[b, u]
            if v > 0 and v >= val[u, val.shape[1] - 1]:
                _topk_insert(val, idx, pos, u, v, image, at[b, u])


@numba.njit(cache=True, nogil=True)
def _topk_absorb(val, idx, pos, other_val, other_idx, other_pos):
    """Insert the entries of another (U, k) top-k (empty slots hold -inf)."""
    for u in range(other_val.shape[0]):
        for j in range(other_val.shape[1]):
            if other_val[u, j] > -np.inf:
                _topk_insert(val, idx, pos, u, other_val[u, j], other_idx[u, j], other_pos[u, j])


class TopK:
    """Running top-k per unit of per-image maxima, with the image index and the arg-max position.

    Order: value descending, ties to the lower image index (the same whatever order images come in).
    The lists live on the CPU whatever the scan's device: per batch one compiled pass compares each
    unit's maxima with its k-th value and inserts the few that beat it (a sort or a top-k per batch
    cost more than the rest of the statistics together)."""

    def __init__(self, n_units: int, k: int):
        self.val = torch.full((n_units, k), -float("inf"))
        self.idx = torch.full((n_units, k), -1, dtype=torch.long)
        self.pos = torch.zeros((n_units, k), dtype=torch.long)

    def add(self, peak: torch.Tensor, image_idx: torch.Tensor, at: torch.Tensor) -> None:
        """peak: (batch, units) per-image maxima; at: (batch, units) their positions; image_idx: (batch,).
        Images where a unit does not fire (value <= 0) never enter: they are never shown."""
        _topk_add(
            self.val.numpy(),
            self.idx.numpy(),
            self.pos.numpy(),
            as_numpy(peak, torch.float32),
            as_numpy(image_idx, torch.long),
            as_numpy(at, torch.long),
        )

    def absorb(self, val: torch.Tensor, idx: torch.Tensor, pos: torch.Tensor) -> None:
        """Keep the k best of these lists and another top-k's (``val``, ``idx``, ``pos``: (units, k), as
        :attr:`val` etc.; e.g. another rank's)."""
        _topk_absorb(
            self.val.numpy(),
            self.idx.numpy(),
            self.pos.numpy(),
            as_numpy(val, torch.float32),
            as_numpy(idx, torch.long),
            as_numpy(pos, torch.long),
        )


class UnitStats:
    """Streaming statistics of one family of units (features or neurons)."""

    def __init__(
        self,
        n_units: int,
        k: int,
        device: str,
        edges,
        band_samples: int,
        seed: int,
        nonnegative: bool = False,
        labels: np.ndarray | None = None,
        n_classes: int = 0,
    ):
        self.nonnegative = nonnegative  # activations are never negative (SAE codes)
        # The dataset's labels (when scanning) and the whole-range class histogram (atlasgen.unitlabels).
        self.labels = None if labels is None else unitlabels.check_labels(labels, n_classes)
        self.class_weight = unitlabels.new_class_weight(n_units, n_classes)
        self.top = TopK(n_units, k)
        self.bands = BandReservoir(n_units, tuple(edges), band_samples, seed)
        self.fires = torch.zeros(n_units, dtype=torch.long)  # fires and fine_hist: on the CPU, as the bands
        self.sum_max = torch.zeros(n_units, dtype=torch.float64, device=device)
        self.fires_pos = torch.zeros(n_units, dtype=torch.long, device=device)
        self.sum_pos = torch.zeros(n_units, dtype=torch.float64, device=device)
        self.fine_hist = torch.zeros((n_units, len(FINE_EDGES) - 1), dtype=torch.long)
        self.n_images = 0
        self.n_positions = 0
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (per-image maxima, image indices)
        self._pending_elements = 0
        self._pending_images = 0

    def update(self, vectors: torch.Tensor, image_idx: torch.Tensor, consume: bool = False) -> torch.Tensor:
        """vectors: (batch, positions, units) activations of one batch of images; with ``consume``
        they may be overwritten (off the CPU no temporary copies of the batch's activations are
        allocated). On the CPU one compiled pass reads them (:func:`_position_pass`); elsewhere tensor
        operations compute the same. Returns the per-image maxima (batch, units)."""
        b, P, U = vectors.shape
        if _compiled(vectors):
            peak, at, fires_pos, sum_pos, acc = _pass_outputs(b, U)
            _position_pass(
                vectors.contiguous().view(b * P, U).numpy(),
                np.zeros(U, np.float32),
                np.float32(-np.inf),
                P,
                peak.numpy(),
                at.numpy(),
                fires_pos.numpy(),
                sum_pos.numpy(),
                acc[0],
                acc[1],
            )
        else:
            peak, at = vectors.amax(dim=1), vectors.argmax(dim=1)  # argmax: the first maximum
            flat = vectors.reshape(-1, U)
            if not self.nonnegative:  # SAE codes are never negative; other units count only where > 0
                flat = flat.clamp_min_(0) if consume else flat.clamp_min(0)
            # Column sums as matrix-vector products (BLAS, one read each); on non-negative values
            # sign() is 1 exactly where firing, and float32 holds these counts (< 2**24) exactly.
            ones = torch.ones(flat.shape[0], dtype=flat.dtype, device=flat.device)
            sum_pos = (ones @ flat).double()
            fires_pos = ones @ (flat.sign_() if consume or not self.nonnegative else flat.sign())
        self.add(peak, at, fires_pos, sum_pos, image_idx, b * P)
        return peak

    def add(
        self,
        peak: torch.Tensor,
        at: torch.Tensor,
        fires_pos: torch.Tensor,
        sum_pos: torch.Tensor,
        image_idx: torch.Tensor,
        n_positions: int,
    ) -> None:
        """One batch's reductions: per-image maxima (batch, units) and their positions; per unit the
        count and sum (float64) of firing positions over its ``n_positions`` positions. The band and
        histogram merges run every few batches (:meth:`merge`; :meth:`finish` merges what is left)."""
        self.top.add(peak, image_idx, at)
        # Float32 sum per batch, accumulated in float64 batch by batch.
        self.sum_max += torch.where(peak > 0, peak, 0).sum(0).double()
        self.sum_pos += sum_pos
        self.fires_pos += fires_pos.long()
        self.n_images += peak.shape[0]
        self.n_positions += n_positions
        self._pending.append((peak, image_idx))
        self._pending_elements += peak.numel()
        self._pending_images += peak.shape[0]
        if self._pending_elements >= MERGE_ELEMENTS or self._pending_images >= MERGE_IMAGES:
            self.merge()

    def merge(self) -> None:
        """Merge the pending batches' per-image maxima into the bands, firing counts and histogram."""
        if not self._pending:
            return
        pending, self._pending, self._pending_elements, self._pending_images = self._pending, [], 0, 0
        peak_t = torch.cat([p for p, _ in pending]).T  # (units, images)
        image_idx = torch.cat([i for _, i in pending])
        units, cols = torch.nonzero(peak_t > 0, as_tuple=True)
        v = peak_t[units, cols].float().cpu()
        units, cols = units.cpu(), cols.cpu()
        g = grid_index(v)  # 60 per decade
        self.bands.update_firing(units, cols, v, image_idx, g)
        if self.labels is not None:
            unitlabels.add_class_weight(self.class_weight, self.labels, units, cols, v, image_idx)
        _histogram_pairs(
            units.numpy(), g.numpy(), v.numpy(), FINE_EDGES, self.fires.numpy(), self.fine_hist.numpy()
        )

    def finish(
        self,
        labels: np.ndarray,
        n_classes: int,
        n_bins: int,
        grid: tuple[int, int],
        rules: unitlabels.FlagRules | None = None,
    ) -> dict[str, np.ndarray]:
        rules = unitlabels.FlagRules() if rules is None else rules
        self.merge()
        top_val = self.top.val.cpu().numpy().astype(np.float32)
        top_idx = self.top.idx.cpu().numpy()
        top_idx[~np.isfinite(top_val) | (top_val <= 0)] = -1
        top_val[top_idx < 0] = 0.0
        flat_pos = self.top.pos.cpu().numpy()
        top_pos = np.stack([flat_pos // grid[1], flat_pos % grid[1]], axis=-1).astype(np.int16)
        top_pos[top_idx < 0] = 0
        fires = self.fires.cpu().numpy()
        fires_pos = self.fires_pos.cpu().numpy()
        max_act = np.maximum(top_val[:, 0], 0).astype(np.float32)
        hist_edges = np.logspace(-HIST_RANGE_DECADES, 0, n_bins + 1).astype(np.float32)
        hist = _rebin(self.fine_hist.cpu().numpy(), max_act, hist_edges)
        top_classes, top_weights, entropy = _class_stats(top_idx, top_val, labels, n_classes)
        if self.class_weight.shape[1] != n_classes:
            raise ValueError(
                f"the scan's class histogram has {self.class_weight.shape[1]} classes, the dataset "
                f"{n_classes}: scan with the dataset's labels (scan(..., labels=, n_classes=))"
            )
        whole = unitlabels.summarise(
            self.class_weight.numpy(), fires, self.n_images, top_classes[:, 0], rules
        )
        return {
            "top_idx": top_idx.astype(np.int64),
            "top_val": top_val,
            "top_pos": top_pos,
            "max_act": max_act,
            "density": (fires / max(1, self.n_images)).astype(np.float32),
            "density_position": (fires_pos / max(1, self.n_positions)).astype(np.float32),
            "mean_act": (self.sum_max.cpu().numpy() / np.maximum(fires, 1)).astype(np.float32),
            "mean_act_position": (self.sum_pos.cpu().numpy() / np.maximum(fires_pos, 1)).astype(np.float32),
            "hist": hist,
            "hist_edges": hist_edges,
            "topk_classes": top_classes,
            "topk_class_weights": top_weights,
            "topk_label_entropy": entropy,
            **whole,
            **self.bands.finish(max_act),
        }


class CooccurrenceSample:
    """The features' per-image maxima on a uniform random sample of images (bottom-n by a hash of
    the image index): which features fire together, and each feature's activation profile over the
    sample (``map.source: coactivation`` lays features out by it)."""

    def __init__(self, n_units: int, n_images: int, seed: int, device: str):
        self.n, self.seed = n_images, seed
        self.keys = torch.empty(0, dtype=torch.long, device=device)
        self.peaks = torch.empty((0, n_units), dtype=torch.float32, device=device)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._pending_rows = 0

    def update(self, peak: torch.Tensor, image_idx: torch.Tensor) -> None:
        """peak: (batch, units) per-image maxima. Merged into the sample every n images (:meth:`flush`)."""
        self._pending.append((peak, image_idx))
        self._pending_rows += len(image_idx)
        if self._pending_rows >= self.n:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending, self._pending_rows = self._pending, [], 0
        image_idx = torch.cat([i for _, i in pending]).long()
        keys = sample_keys(torch.full_like(image_idx, -1), image_idx, self.seed)
        self.keep(torch.cat([self.keys, keys]), torch.cat([self.peaks] + [p.float() for p, _ in pending]))

    def keep(self, keys: torch.Tensor, peaks: torch.Tensor) -> None:
        """Keep the n smallest keys of these (and their rows): the sample of any union of image sets."""
        if len(keys) > self.n:
            keep = torch.topk(keys, self.n, largest=False, sorted=True).indices
            keys, peaks = keys[keep], peaks[keep]
        self.keys, self.peaks = keys, peaks

    def finish(self, chunk: int = 512, min_count: int = 5) -> dict[str, np.ndarray]:
        """Per feature: the features that fire with it, by NPMI, and per layer the pairs that do most
        (pairs on fewer than ``min_count`` sampled images left out; :mod:`atlasgen.cofiring`); the sample
        itself (image indices and per-image maxima, in key order)."""
        self.flush()
        order = torch.argsort(self.keys)  # canonical order, whatever order the images came in
        keys, peaks = self.keys[order], self.peaks[order]
        A = (peaks > 0).float()
        f16 = torch.finfo(torch.float16).max
        return {
            "n_images": np.int64(len(self.keys)),
            "sample_images": (keys & ((1 << 31) - 1)).cpu().numpy().astype(np.int64),  # see bands.sample_keys
            "sample_peaks": peaks.clamp(max=f16).half().cpu().numpy(),
            "fires": A.sum(0).cpu().numpy().astype(np.int64),
            **cofiring.rank(A, N_PARTNERS, N_PAIRS, min_count, chunk),
        }


def _rebin(fine: np.ndarray, max_act: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Move fine-grid counts into bins relative to each unit's max (by fine-bin centre)."""
    centres = np.sqrt(FINE_EDGES[:-1] * FINE_EDGES[1:])
    U, B = len(fine), len(edges) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.minimum(centres[None] / max_act[:, None].astype(np.float64), 1.0)  # (U, fine bins)
    b = np.clip(np.searchsorted(edges, rel, side="right") - 1, 0, B - 1)
    keep = (max_act[:, None] > 0) & (rel >= edges[0]) & (fine > 0)
    flat = (np.arange(U)[:, None] * B + b)[keep]
    return np.bincount(flat, weights=fine[keep], minlength=U * B).reshape(U, B).astype(np.int64)


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


def encode(sae, x: torch.Tensor) -> torch.Tensor:
    """The SAE's inference codes, in fewer passes over memory for the plain BatchTopK SAE.

    ``relu(pre) * (relu(pre) > t)`` is ``pre`` where ``pre > max(t, 0)``, else 0: the bias is
    added in place and the cut is one in-place ``threshold_`` pass. Other SAEs use their
    own ``encode``."""
    if type(sae) is SparseAutoencoder and sae.architecture == "batchtopk":
        # mm then add_ is addmm's result bit for bit (the product, then the bias, each rounded once), and
        # cheaper on CPU than addmm, which first copies the bias into every row of its output.
        pre = torch.mm(x - sae.b_dec, sae.W_enc).add_(sae.b_enc)
        return torch.nn.functional.threshold_(pre, max(float(sae.threshold), 0.0), 0.0)  # one in-place pass
    return sae.encode(x)


def _unit_vectors(model, sae, layer, images, device):
    """(features (B, P, F), neurons (B, P, C), (H, W)) for a batch of images; P = H * W positions."""
    acts = layer_activations(model, images.to(device), [layer])[layer].float()
    b, c, h, w = acts.shape
    neurons = positions_as_vectors(acts)  # (B*P, C): a copy in position-major order
    feats = encode(sae, neurons)
    return feats.view(b, h * w, -1), neurons.view(b, h * w, c), (h, w)


class _FusedEncoder:
    """The plain BatchTopK SAE's statistics of each batch on CPU, chunk by chunk: each chunk's
    matmul goes into one small buffer, read once by a compiled pass (:func:`_position_pass`: bias,
    cut, per-image maxima and positions, per-position firing counts and sums) while it is in
    cache. The codes are never written out. Maxima, positions and counts are those of
    :func:`encode` up to float rounding: the bias add and the cut are the same float32
    operations, but a BLAS may round a row of a chunk's product differently from the same row
    of the whole batch's product (so a near tie or a code at the cut may differ; checked by
    tests/test_examples_stats.py). Other devices and SAEs take the unfused path."""

    CHUNK_BYTES = 1 << 18  # per thread

    def __init__(self, sae):
        self.sae = sae
        self.t = np.float32(max(float(sae.threshold), 0.0))
        self.b_enc = sae.b_enc.detach().float().contiguous()
        self.buffer = torch.empty(0)

    MAX_WEIGHT_BYTES = 1 << 22

    @staticmethod
    def applies(sae, device) -> bool:
        """For a plain BatchTopK SAE on CPU with a small encoder: the matmul per chunk repacks the
        encoder weights, which is cheap for a few MiB and not for InceptionV1's 64 MiB (there the
        matmul dominates and the passes after it weigh little)."""
        return (
            type(sae) is SparseAutoencoder
            and sae.architecture == "batchtopk"
            and torch.device(device).type == "cpu"
            and sae.W_enc.dtype == torch.float32
            and sae.W_enc.numel() * sae.W_enc.element_size() <= _FusedEncoder.MAX_WEIGHT_BYTES
        )

    def __call__(self, x: torch.Tensor, b: int):
        """x: (b * P, C) neuron vectors; returns the codes' maxima (b, F) and their positions, and
        per-unit firing counts and sums over the positions (F,) float64."""
        sae = self.sae
        n, F = x.shape[0], sae.W_enc.shape[1]
        xc = x - sae.b_dec
        P = n // b
        # Images per chunk: a quarter MiB of codes per thread (measured best on the demo at 1 thread).
        per = max(1, self.CHUNK_BYTES * torch.get_num_threads() // (P * F * 4))
        if self.buffer.numel() < per * P * F:
            self.buffer = torch.empty(per * P * F, dtype=torch.float32)
        peak, at, counts, sums, acc = _pass_outputs(b, F)
        b_enc, peak_np, at_np, counts_np, sums_np = (
            self.b_enc.numpy(),
            peak.numpy(),
            at.numpy(),
            counts.numpy(),
            sums.numpy(),
        )
        for i in range(0, b, per):
            m = min(per, b - i)
            chunk = torch.mm(xc[i * P : (i + m) * P], sae.W_enc, out=self.buffer[: m * P * F].view(m * P, F))
            _position_pass(
                chunk.numpy(),
                b_enc,
                self.t,
                P,
                peak_np[i : i + m],
                at_np[i : i + m],
                counts_np,
                sums_np,
                acc[0],
                acc[1],
            )
        return peak, at, counts, sums


class Scan:
    """What a pass over images accumulated for one layer: the statistics of each family of units
    (``features``, ``neurons``: :class:`UnitStats`), the co-occurrence sample and the layer's grid."""

    FAMILIES = ("features", "neurons")
    _SUMS = ("fires", "sum_max", "fires_pos", "sum_pos", "fine_hist", "class_weight")

    def __init__(self, stats: dict[str, UnitStats], cooc: CooccurrenceSample, grid: tuple[int, int]):
        self.stats, self.cooc, self.grid = stats, cooc, tuple(int(g) for g in grid)

    def state(self) -> dict:
        """Everything the scan accumulated, as CPU tensors: what :func:`merge_states` merges and
        :meth:`from_state` reads back."""
        for s in self.stats.values():
            s.merge()
        self.cooc.flush()
        state = {"grid": self.grid, "cooc_keys": self.cooc.keys.cpu(), "cooc_peaks": self.cooc.peaks.cpu()}
        for name, s in self.stats.items():
            state[name] = {
                "top": (s.top.val.cpu(), s.top.idx.cpu(), s.top.pos.cpu()),
                "bands": tuple(t.cpu() for t in s.bands.state()),
                **{k: getattr(s, k).cpu() for k in self._SUMS},
                "n_images": int(s.n_images),
                "n_positions": int(s.n_positions),
            }
        return state

    @classmethod
    def from_state(cls, state: dict, cfg, device) -> Scan:
        """The scan whose :meth:`state` this is (``cfg``: the examples settings it ran with)."""
        stats = {}
        for name in cls.FAMILIES:
            part = state[name]
            u = _new_stats(name, part["fires"].shape[0], cfg, device, n_classes=part["class_weight"].shape[1])
            u.top.val, u.top.idx, u.top.pos = part["top"]
            u.bands.load(*part["bands"])
            for k in cls._SUMS:
                setattr(u, k, part[k].to(getattr(u, k).device))
            u.n_images, u.n_positions = part["n_images"], part["n_positions"]
            stats[name] = u
        cooc = CooccurrenceSample(stats["features"].fires.shape[0], cfg.cooccurrence_images, cfg.seed, device)
        cooc.keys, cooc.peaks = state["cooc_keys"].to(device), state["cooc_peaks"].to(device)
        return cls(stats, cooc, state["grid"])

    def finish(self, labels, n_classes: int, n_bins: int, rules=None) -> dict[str, dict[str, np.ndarray]]:
        """Each family's arrays (:meth:`UnitStats.finish`)."""
        return {name: s.finish(labels, n_classes, n_bins, self.grid, rules) for name, s in self.stats.items()}

    def cooccurrence(self, min_count: int = 5) -> dict[str, np.ndarray]:
        """The features' co-firing partners and the sample (:meth:`CooccurrenceSample.finish`)."""
        return self.cooc.finish(min_count=min_count)


def _new_stats(name: str, n_units: int, cfg, device, labels=None, n_classes: int = 0) -> UnitStats:
    return UnitStats(
        n_units,
        cfg.top_k,
        device,
        cfg.band_edges,
        cfg.band_samples,
        cfg.seed,
        name == "features",  # SAE codes are never negative
        labels,
        n_classes,
    )


@torch.no_grad()
def scan(
    model, sae, layer: str, batches, cfg, device, progress=None, labels=None, n_classes: int = 0, probe=None
) -> Scan:
    """The one pass: feed ``(image indices, images)`` batches, return the :class:`Scan`.
    ``labels`` (the dataset's, indexed by image) and ``n_classes``: for the whole-range class histogram.
    ``probe()``: one image (not counted) that shapes the scan of no batches (e.g. a rank's share of
    fewer batches than ranks); without it no batches is an error."""
    stats, cooc, grid = None, None, None
    fused = _FusedEncoder(sae) if _FusedEncoder.applies(sae, device) else None
    for idx, images in batches:
        image_idx = torch.as_tensor(idx).to(device)
        if fused is None:
            feats, acts, grid = _unit_vectors(model, sae, layer, images, device)
        else:
            a = layer_activations(model, images.to(device), [layer])[layer].float()
            grid = tuple(a.shape[2:])
            acts = positions_as_vectors(a).view(a.shape[0], grid[0] * grid[1], a.shape[1])
        if stats is None:
            n_feats = feats.shape[2] if fused is None else sae.W_enc.shape[1]
            n = {"features": n_feats, "neurons": acts.shape[2]}
            stats = {
                name: _new_stats(name, n[name], cfg, device, labels, n_classes) for name in Scan.FAMILIES
            }
            cooc = CooccurrenceSample(n_feats, cfg.cooccurrence_images, cfg.seed, device)
        if fused is None:
            peak = stats["features"].update(feats, image_idx, consume=True)  # both are this batch's own
        else:
            peak, at, counts, sums = fused(acts.reshape(-1, acts.shape[2]), acts.shape[0])
            stats["features"].add(peak, at, counts, sums, image_idx, acts.shape[0] * acts.shape[1])
        stats["neurons"].update(acts, image_idx, consume=True)
        cooc.update(peak, image_idx)
        if progress is not None:
            progress.update(len(idx))
    if stats is None:
        if probe is None:
            raise ValueError("scan: no batches to scan (pass probe= to shape an empty scan)")
        feats, acts, grid = _unit_vectors(model, sae, layer, probe(), device)
        n = {"features": feats.shape[2], "neurons": acts.shape[2]}
        stats = {name: _new_stats(name, n[name], cfg, device, n_classes=n_classes) for name in Scan.FAMILIES}
        cooc = CooccurrenceSample(feats.shape[2], cfg.cooccurrence_images, cfg.seed, device)
    for s in stats.values():
        s.merge()
    cooc.flush()
    return Scan(stats, cooc, grid)


def merge_states(states: list[dict], cfg) -> dict:
    """The :meth:`Scan.state` of the union of the images of several scans (e.g. the ranks'),
    exactly as one scan of them all would have it:

    * top-k: the k best of the scans' top-k lists, ordered as :class:`TopK` orders
      (value descending, ties to the lower image index);
    * band reservoirs: :meth:`atlasgen.bands.BandReservoir.merge` (the bottom-r of every slot of a
      common window; keys are a function of (seed, image, unit), so this is what one scan keeps);
    * histograms (the class histogram too), firing counts and sums: summed (counts exactly; float64
      sums of float32 batch sums in the states' order, equal to the sequential sum unless they
      need more than 53 bits);
    * co-occurrence sample: the n smallest keys of the union.
    """
    merged = {"grid": states[0]["grid"]}
    for name in Scan.FAMILIES:
        parts = [s[name] for s in states]
        n_units = parts[0]["fires"].shape[0]
        top = TopK(n_units, cfg.top_k)
        for val, idx, pos in (p["top"] for p in parts):
            top.absorb(val, idx, pos)  # the k best of the lists, in the single-scan order
        bands = BandReservoir(n_units, tuple(cfg.band_edges), cfg.band_samples, cfg.seed)
        bands.merge([p["bands"] for p in parts])
        sums = {}
        for k in Scan._SUMS:
            total = parts[0][k].clone()
            for p in parts[1:]:
                total += p[k]
            sums[k] = total
        merged[name] = {
            "top": (top.val, top.idx, top.pos),
            "bands": bands.state(),
            **sums,
            "n_images": sum(p["n_images"] for p in parts),
            "n_positions": sum(p["n_positions"] for p in parts),
        }
    cooc = CooccurrenceSample(merged["features"]["fires"].shape[0], cfg.cooccurrence_images, cfg.seed, "cpu")
    cooc.keep(torch.cat([s["cooc_keys"] for s in states]), torch.cat([s["cooc_peaks"] for s in states]))
    merged["cooc_keys"], merged["cooc_peaks"] = cooc.keys, cooc.peaks
    return merged


# ---------------------------------------------------------------- the second pass: activation maps


def shown_images(results: dict) -> dict[str, dict[str, np.ndarray]]:
    """The images each unit shows, per family: ``top`` (U, k) and ``band`` (U, bands, r) image
    indices (-1: none), from the arrays of :meth:`Scan.finish`."""
    return {name: {"top": r["top_idx"], "band": r["band_idx"]} for name, r in results.items()}


def shown_union(shown: dict) -> np.ndarray:
    """Every image shown by any unit, ascending: the images the second pass reads."""
    return np.unique(np.concatenate([a[a >= 0] for s in shown.values() for a in s.values()]))


@torch.no_grad()
def unit_maps(shown: dict, model, sae, layer: str, batches, device) -> list:
    """The activation maps of every unit on the images it shows (:func:`shown_images`) that are in
    ``batches`` (``(image indices, images)``, e.g. a rank's share of :func:`shown_union`): a list
    of (family, ``top`` or ``band``, slots, float16 maps (n, H, W)), for :func:`add_maps`. Each
    image is in one batch, so each map is computed once, whoever computes it."""
    found = []
    for batch, images in batches:
        feats, acts, grid = _unit_vectors(model, sae, layer, images, device)
        per_family = {"features": feats.cpu().numpy(), "neurons": acts.cpu().numpy()}  # (B, P, U)
        row_of = np.full(int(batch.max()) + 1, -1, dtype=np.int64)
        row_of[batch] = np.arange(len(batch))
        for name, s in shown.items():
            for key, a in s.items():
                hit = np.nonzero(np.isin(a, batch))
                units = hit[0]
                rows = row_of[a[hit]]
                maps = per_family[name][rows, :, units].reshape((len(units),) + tuple(grid))
                found.append((name, key, hit, maps.astype(np.float16)))
    return found


def join_maps(parts: list[list]) -> list:
    """The maps of several :func:`unit_maps` calls together (each on other images)."""
    return [m for part in parts for m in part]


def add_maps(results: dict, maps: list, grid: tuple[int, int]) -> None:
    """Add to each family's arrays the activation maps (heat-maps) of every unit on the images it
    shows, from :func:`unit_maps`: ``top_maps`` (U, k, H, W) and ``band_maps`` (U, bands, r, H, W)
    (float16, zero where no image is shown) and ``band_pos`` (the arg-max position of each band
    example)."""
    full = {
        name: {key: np.zeros(a.shape + tuple(grid), dtype=np.float16) for key, a in s.items()}
        for name, s in shown_images(results).items()
    }
    for name, key, hit, values in maps:
        full[name][key][hit] = values
    for name, r in results.items():
        r["top_maps"] = full[name]["top"]
        r["band_maps"] = full[name]["band"]
        flat = full[name]["band"].reshape(r["band_idx"].shape + (-1,)).astype(np.float32).argmax(-1)
        r["band_pos"] = np.stack([flat // grid[1], flat % grid[1]], axis=-1).astype(np.int16)
