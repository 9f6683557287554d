"""Quantile bands: unbiased samples of dataset images across a unit's activation range.

A unit's bands are relative to its maximum over the dataset, e.g. (0.9, 1],
(0.7, 0.9], ... (0, 0.1] of the max. In a single streaming pass the maximum is
not known until the end, so band membership cannot be decided when an image
is seen. :class:`BandReservoir` solves this exactly, with memory that does not
grow with the dataset:

* Every positive per-image activation ``v`` falls in a bucket of a fixed
  log grid, ``g = floor(GRID_PER_DECADE * log10(v))`` (60 buckets per decade).
* Each (unit, image) gets a pseudo-random key (a hash of unit, image and seed,
  see :func:`sample_keys`). A uniform sample without replacement of ``r``
  items from any set is the ``r`` items with the smallest keys ("bottom-r" or
  priority sampling), and the bottom-r of a union is the bottom-r of the
  bottom-r's of its parts. So keeping the bottom-r of every bucket is enough
  to draw an exact uniform sample of any union of buckets at the end.
* Only the buckets within ``log10(1 / lowest edge)`` decades below the running
  maximum can end up in any band but the lowest: the final maximum is at least
  the running one. Buckets that fall below that window as the maximum grows
  are merged into one "low" reservoir (which feeds the lowest band). So each
  unit holds ``slots x r`` entries, a constant.
* At the end, each band edge ``c * max`` is snapped to the nearest grid edge
  (within half a bucket, a factor of 10^(1/120), i.e. under 2 %), and a band's
  sample is the bottom-r over its buckets. The snapped edges are returned
  (``band_edges_rel``) so pages can state them.

Within a band (with its snapped edges) the sample is exactly uniform; a
brute-force computation over all (unit, image) pairs gives the same images
(tests/test_examples_stats.py).

The reservoirs live on the CPU, whatever device the scan runs on: an insert is
a few comparisons per (unit, image) pair in a compiled loop (numba, which
umap-learn brings), where tensor operations spent a sort and some sixty
elementwise passes over every pair. They take a few MiB and are updated every
few thousand images.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

GRID_PER_DECADE = 60
_EMPTY = torch.iinfo(torch.int64).max
_M32 = 0xFFFFFFFF


def grid_index(values: torch.Tensor) -> torch.Tensor:
    """Log-grid bucket of positive values (int64); meaningless for values <= 0."""
    return torch.floor(torch.log10(values.clamp_min(1e-30).double()) * GRID_PER_DECADE).long()


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for 32-bit x, without int64 overflow (c in 16-bit halves: each product < 2**48)."""
    hi = x * (c >> 16)
    hi &= 0xFFFF
    hi <<= 16
    hi += x * (c & 0xFFFF)
    return hi.bitwise_and_(_M32)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with good avalanche (Wellons' lowbias32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x ^= x >> 15
    x = _mul32(x, 0x846CA68B)
    x ^= x >> 16
    return x


def sample_keys(units: torch.Tensor, images: torch.Tensor, seed: int) -> torch.Tensor:
    """Distinct int64 sort keys: a 32-bit hash of (seed, image, unit) above the image index.

    The hash orders items uniformly at random; the image index in the low bits
    makes every key unique, so no ties and the same result on any device.
    Images must have indices below 2**31.
    """
    return pair_keys(units, image_hash(images, seed), images)


def image_hash(images: torch.Tensor, seed: int) -> torch.Tensor:
    """The part of :func:`sample_keys` that depends on the image only (hash once per image, not per pair)."""
    h = _mix32(torch.full((1,), seed & _M32, dtype=torch.long, device=images.device))
    return _mix32((images & _M32) ^ h)


def pair_keys(units: torch.Tensor, img_hash: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """:func:`sample_keys` from the images' :func:`image_hash`."""
    h = _mix32(((units + 0x9E3779B9) & _M32) ^ img_hash)
    return (h << 31) | images


_U32 = np.uint64(_M32)


@numba.njit(cache=True, nogil=True)
def _mix32_u64(x):
    """:func:`_mix32` of one uint64 value below 2**32 (products of two such values fit in uint64)."""
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & _U32
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & _U32
    x ^= x >> np.uint64(16)
    return x


@numba.njit(cache=True, nogil=True)
def _insert_sorted(keys, vals, base, r, key, value):
    """Insert ``key`` into the ascending run ``keys[base:base + r]`` (dropping its largest) if it is
    below the largest. Flat indices: a 2-D slice per item costs several times the insert."""
    if key >= keys[base + r - 1]:
        return
    j = r - 1
    while j > 0 and keys[base + j - 1] > key:
        keys[base + j] = keys[base + j - 1]
        vals[base + j] = vals[base + j - 1]
        j -= 1
    keys[base + j] = key
    vals[base + j] = value


@numba.njit(cache=True, nogil=True)
def _insert_pairs(units, cols, g, v, images, img_hash, gmax, window, keys, vals, count):
    """Count each firing pair in its (unit, slot) and insert it into that slot's bottom-r by its
    :func:`pair_keys` key. ``keys``/``vals`` (U * S * r,) and ``count`` (U * S,) are flat, C order; each
    slot's r keys stay sorted ascending."""
    S = count.shape[0] // gmax.shape[0]
    r = keys.shape[0] // count.shape[0]
    for i in range(units.shape[0]):
        u = units[i]
        c = cols[i]
        s = g[i] - (gmax[u] - window)
        if s < 0:
            s = 0
        slot = u * S + s
        count[slot] += 1
        h = _mix32_u64(((np.uint64(u) + np.uint64(0x9E3779B9)) & _U32) ^ np.uint64(img_hash[c]))
        _insert_sorted(keys, vals, slot * r, r, np.int64(h << np.uint64(31)) | images[c], v[i])


def as_numpy(t: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """A contiguous CPU numpy view (or copy) of ``t`` with the given dtype, for the compiled loops."""
    return t.detach().to(device="cpu", dtype=dtype).contiguous().numpy()


def snapped_edges(max_act: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """(U, len(edges)) grid indices of the band edges ``c * max`` snapped to the nearest grid edge."""
    with np.errstate(divide="ignore"):
        logs = (
            np.log10(np.maximum(max_act.astype(np.float64), 1e-30))[:, None]
            + np.log10(np.asarray(edges))[None]
        )
    return np.round(logs * GRID_PER_DECADE).astype(np.int64)


class BandReservoir:
    """Streaming, exact, uniform samples of images per activation band, for many units at once.

    ``edges`` are the lower edges of the bands relative to the max, descending
    (default 0.9, 0.7, 0.5, 0.3, 0.1): the bands are (edges[0], 1], ...,
    (0, edges[-1]]. ``r`` images are kept per band.
    """

    def __init__(self, n_units: int, edges: tuple[float, ...], r: int, seed: int):
        if not edges or any(b >= a for a, b in zip(edges, edges[1:])) or not 0 < edges[-1] < edges[0] <= 1:
            raise ValueError(f"band edges must descend within (0, 1], got {edges}")
        self.edges = tuple(float(e) for e in edges)
        self.r, self.seed, self.n_units = int(r), int(seed), int(n_units)
        # Window: grid indices gmax - W + 1 .. gmax in slots 1..W; slot 0 is everything below.
        self.W = math.ceil(GRID_PER_DECADE * math.log10(1 / self.edges[-1])) + 2
        S = self.W + 1
        self.keys = torch.full(
            (n_units, S, self.r), _EMPTY, dtype=torch.long
        )  # on the CPU (module docstring)
        self.val = torch.zeros((n_units, S, self.r), dtype=torch.float32)
        self.count = torch.zeros((n_units, S), dtype=torch.long)
        self.gmax = torch.full((n_units,), -(2**40), dtype=torch.long)

    @property
    def n_slots(self) -> int:
        return self.W + 1

    def state(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the reservoir holds: (keys, val, count, gmax), for :meth:`load` and :meth:`merge`."""
        return self.keys, self.val, self.count, self.gmax

    def load(self, keys, val, count, gmax) -> None:
        """Hold a :meth:`state` (of a reservoir with the same units, edges, r and seed)."""
        self.keys, self.val, self.count, self.gmax = keys, val, count, gmax

    def merge(self, states) -> None:
        """Hold the union of the reservoirs whose :meth:`state` these are (e.g. the ranks' scans of
        their images), exactly as one reservoir fed all their items: each one's window moves up to
        the common running maximum (its slots falling below merge into the low slot, as one
        reservoir would shift), every slot keeps the r smallest keys of their slots, counts are summed."""
        gmax = torch.stack([s[3] for s in states]).amax(0)
        keys, vals, counts = [], [], []
        for k, v, c, g in states:
            part = BandReservoir(self.n_units, self.edges, self.r, self.seed)
            part.load(k.clone(), v.clone(), c.clone(), g.clone())
            part._shift(gmax)  # the same window as every other one's
            keys.append(part.keys)
            vals.append(part.val)
            counts.append(part.count)
        all_keys, all_vals = torch.cat(keys, 2), torch.cat(vals, 2)
        best, pick = torch.topk(all_keys, self.r, dim=2, largest=False, sorted=True)
        dev = self.keys.device
        self.keys = best.to(dev)
        self.val = torch.where(best != _EMPTY, all_vals.gather(2, pick), 0.0).to(dev)
        self.count = torch.stack(counts).sum(0).to(dev)
        self.gmax = gmax.to(dev)

    def update(self, values: torch.Tensor, image_idx: torch.Tensor) -> None:
        """values: (U, B) per-image maxima of each unit; image_idx: (B,) dataset indices."""
        units, cols = torch.nonzero(values > 0, as_tuple=True)
        self.update_firing(units, cols, values[units, cols], image_idx)

    def update_firing(
        self,
        units: torch.Tensor,
        cols: torch.Tensor,
        v: torch.Tensor,
        image_idx: torch.Tensor,
        g: torch.Tensor | None = None,
    ) -> None:
        """The same from the firing entries only: ``v`` (> 0) of unit ``units`` on image ``image_idx[cols]``
        (``g``: their :func:`grid_index`, when known). Inputs may live on any device."""
        if units.numel() == 0:
            return
        units, v = units.to("cpu", torch.long), v.to("cpu", torch.float32)
        g = grid_index(v) if g is None else g.to("cpu", torch.long)
        batch_max = torch.full_like(self.gmax, -(2**40)).scatter_reduce(0, units, g, "amax")
        self._shift(torch.maximum(self.gmax, batch_max))
        image_idx = image_idx.to("cpu", torch.long)
        _insert_pairs(
            as_numpy(units, torch.long),
            as_numpy(cols, torch.long),
            as_numpy(g, torch.long),
            as_numpy(v, torch.float32),
            as_numpy(image_idx, torch.long),
            as_numpy(image_hash(image_idx, self.seed), torch.long),
            self.gmax.numpy(),
            self.W,
            self.keys.view(-1).numpy(),
            self.val.view(-1).numpy(),
            self.count.view(-1).numpy(),
        )

    def _shift(self, new_gmax: torch.Tensor) -> None:
        """Move each unit's window up to its new running max; slots falling off merge into slot 0."""
        d = new_gmax - self.gmax
        rows = torch.nonzero(d > 0, as_tuple=True)[0]
        if rows.numel() == 0:
            return
        S, r = self.n_slots, self.r
        dd = d[rows].clamp_max(S)[:, None]  # (R, 1)
        s = torch.arange(S, device=d.device)[None]  # (1, S)
        keys, val, count = self.keys[rows], self.val[rows], self.count[rows]
        # Slot 0 after the shift: old slot 0 and old slots 1..d.
        falls = s <= dd  # (R, S)
        low_keys = torch.where(falls[..., None], keys, _EMPTY).flatten(1)
        low_keys, pick = torch.topk(low_keys, r, dim=1, largest=False, sorted=True)
        low_val = val.flatten(1).gather(1, pick)
        low_count = torch.where(falls, count, 0).sum(1)
        # Slots 1..S-1 after the shift take old slot s + d (empty past the top).
        src = s + dd
        inside = (src < S) & (s > 0)
        src = src.clamp_max(S - 1)
        new_keys = torch.where(inside[..., None], keys.gather(1, src[..., None].expand(-1, -1, r)), _EMPTY)
        new_val = torch.where(inside[..., None], val.gather(1, src[..., None].expand(-1, -1, r)), 0.0)
        new_count = torch.where(inside, count.gather(1, src), 0)
        new_keys[:, 0], new_val[:, 0], new_count[:, 0] = low_keys, low_val, low_count
        self.keys[rows], self.val[rows], self.count[rows] = new_keys, new_val, new_count
        self.gmax[rows] = new_gmax[rows]

    def finish(self, max_act: np.ndarray) -> dict[str, np.ndarray]:
        """Per unit and band: sampled image indices (-1 padding), their values, band sizes, snapped edges.

        ``max_act`` is each unit's final maximum (the top-1 of the top-k).
        Samples are sorted by value, strongest first.
        """
        U, nb, r = self.n_units, len(self.edges) + 1, self.r
        keys = self.keys.cpu().numpy()
        val = self.val.cpu().numpy()
        count = self.count.cpu().numpy()
        gmax = self.gmax.cpu().numpy()
        e = snapped_edges(max_act, self.edges)  # (U, nb - 1), descending
        slot_g = gmax[:, None] - self.W + np.arange(self.n_slots)[None]  # grid index of each slot
        # Band of each slot: number of edges at or above which it does not reach.
        band_of = (slot_g[:, :, None] < e[:, None, :]).sum(2)  # 0 = top band .. nb - 1 = lowest
        band_of[:, 0] = nb - 1  # slot 0 holds values below the window: lowest band
        band_idx = np.full((U, nb, r), -1, dtype=np.int64)
        band_val = np.zeros((U, nb, r), dtype=np.float32)
        band_count = np.zeros((U, nb), dtype=np.int64)
        alive = max_act > 0
        for b in range(nb):
            member = (band_of == b) & alive[:, None]
            band_count[:, b] = np.where(member, count, 0).sum(1)
            k = np.where(member[..., None], keys, np.iinfo(np.int64).max).reshape(U, -1)
            v = val.reshape(U, -1)
            # Keys are distinct (the image index is in their low bits), so the r smallest are well defined.
            pick = (
                np.argpartition(k, r - 1, axis=1)[:, :r]
                if k.shape[1] > r
                else np.arange(k.shape[1])[None].repeat(U, 0)
            )
            pick = np.take_along_axis(pick, np.argsort(np.take_along_axis(k, pick, 1), axis=1), 1)
            chosen = np.take_along_axis(k, pick, 1)
            ok = chosen != np.iinfo(np.int64).max
            idx = np.where(ok, chosen & (2**31 - 1), -1)
            vals = np.where(ok, np.take_along_axis(v, pick, 1), 0.0)
            order = np.argsort(-vals, axis=1, kind="stable")
            band_idx[:, b] = np.take_along_axis(idx, order, 1)
            band_val[:, b] = np.take_along_axis(vals, order, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(
                alive[:, None], 10.0 ** (e / GRID_PER_DECADE) / np.maximum(max_act, 1e-30)[:, None], 0.0
            )
        edges_rel = np.concatenate([np.ones((U, 1)), rel, np.zeros((U, 1))], 1).astype(np.float32)
        return {
            "band_idx": band_idx,
            "band_val": band_val,
            "band_count": band_count,
            "band_edges_rel": edges_rel,
            "band_edges": np.asarray((1.0,) + self.edges + (0.0,), dtype=np.float32),
        }


def brute_force_bands(
    values: np.ndarray, image_idx: np.ndarray, edges: tuple[float, ...], r: int, seed: int
) -> dict[str, np.ndarray]:
    """The same samples computed from all values at once: (U, N) per-image maxima. For tests."""
    U, N = values.shape
    max_act = np.maximum(values.max(1), 0).astype(np.float32)
    e = snapped_edges(max_act, edges)
    g = grid_index(torch.from_numpy(values.astype(np.float32))).numpy()
    units = torch.arange(U)[:, None].expand(U, N)
    keys = sample_keys(units, torch.from_numpy(image_idx).long()[None].expand(U, N), seed).numpy()
    nb = len(edges) + 1
    band = (g[:, :, None] < e[:, None, :]).sum(2)
    band_idx = np.full((U, nb, r), -1, dtype=np.int64)
    band_count = np.zeros((U, nb), dtype=np.int64)
    for u in range(U):
        for b in range(nb):
            member = np.flatnonzero((values[u] > 0) & (band[u] == b))
            band_count[u, b] = len(member)
            chosen = member[np.argsort(keys[u, member], kind="stable")[:r]]
            chosen = chosen[np.argsort(-values[u, chosen], kind="stable")]
            band_idx[u, b, : len(chosen)] = image_idx[chosen]
    return {"band_idx": band_idx, "band_count": band_count, "max_act": max_act}
