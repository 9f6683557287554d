"""Stage `activations`: the store of layer activation vectors the SAEs train on.

Per training image, positions of the layer's (C, H, W) output are sampled as in
Gorton 2024: with probability proportional to the L2 norm of the channel vector
there (`magnitude`), uniformly, or all positions. Each vector is stored with
its sampling probability. The images are split into fixed chunks, one raw
shard each with its own seed, so a killed run resumes at the first missing
shard; a final pass shuffles the vectors across shards. The dataset's
activations are never held in memory at once.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from atlasgen.cache import atomic_save_npy, atomic_write_json
from atlasgen.data import open_dataset
from atlasgen.errors import AtlasgenError
from atlasgen.models import layer_activations, layer_shapes, load_model
from atlasgen.stage import Stage, StageContext

STAGE = Stage(
    "activations",
    deps=("dataset", "model"),
    config=("layers", "activations"),
    what="sampled activation store",
    resumable=True,
    distributed=True,
)

# Under torchrun every rank runs this stage: the raw chunks (each with its own seed, so the bytes do
# not depend on who samples it) and the held-out vectors are split over the ranks, then the
# shuffle's output shards; rank 0 writes meta.json.


def sample_positions(
    acts: torch.Tensor, mode: str, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors (B*n, C) and their sampling probabilities from activations (B, C, H, W)."""
    b, c, h, w = acts.shape
    flat = acts.flatten(2).transpose(1, 2)  # (B, HW, C)
    if mode == "all":
        return flat.reshape(-1, c), torch.full((b * h * w,), 1.0 / (h * w))
    if mode == "magnitude":
        weights = flat.norm(dim=2) + 1e-12  # an all-zero map falls back to uniform
    else:
        weights = torch.ones(b, h * w)
    probs = weights / weights.sum(dim=1, keepdim=True)
    pos = torch.multinomial(probs.cpu(), n, replacement=True, generator=generator)  # (B, n)
    vectors = torch.gather(flat.cpu(), 1, pos[..., None].expand(b, n, c))
    return vectors.reshape(-1, c), torch.gather(probs.cpu(), 1, pos).reshape(-1)


class VectorStore:
    """The shards of one layer as one (n, d) array: ``store[indices]`` reads rows."""

    def __init__(self, folder):
        self.meta = json.loads((folder / "meta.json").read_text())
        self.shards = [np.load(folder / name, mmap_mode="r") for name in self.meta["shards"]]
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
        self.shape = (int(self.offsets[-1]), self.meta["d_in"])
        self.dtype = self.shards[0].dtype
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        index = np.asarray(index)
        out = np.empty((len(index), self.shape[1]), dtype=self.dtype)
        shard = np.searchsorted(self.offsets, index, side="right") - 1
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self.shards[s][index[sel] - self.offsets[s]]
        return out


def check_finite(acts: torch.Tensor, image_idx: np.ndarray, data, layer: str) -> None:
    """Stop with the offending image named when a layer's activations hold NaN or inf."""
    bad = ~torch.isfinite(acts.flatten(1)).all(dim=1)
    if bad.any():
        first = int(image_idx[int(torch.nonzero(bad)[0])])
        raise AtlasgenError(
            [
                f"activations: layer {layer!r} has NaN or inf values on {data.describe(first)} "
                f"({int(bad.sum())} of {len(image_idx)} images in its batch). Fix: check that image file, "
                "and the model weights (a diverged or corrupt checkpoint gives NaN)."
            ]
        )


def _collect(model, data, layer, indices, cfg, device, seed, bar=None):
    """Sampled vectors and probabilities for a set of images."""
    gen = torch.Generator().manual_seed(seed)
    vecs, probs = [], []
    for idx, images in data.batches(indices, cfg.batch_size, device):
        with torch.no_grad():
            acts = layer_activations(model, images, [layer])[layer].float()
        check_finite(acts, idx, data, layer)
        v, p = sample_positions(acts, cfg.sampling, cfg.positions_per_image, gen)
        vecs.append(v.numpy())
        probs.append(p.numpy())
        if bar is not None:
            bar.update(len(idx))
    return np.concatenate(vecs), np.concatenate(probs).astype(np.float32)


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.activations
    data = open_dataset(ctx.inputs["dataset"], ctx.cfg)
    model = load_model(ctx.inputs["model"], ctx.cfg.model, data.n_classes, ctx.device)
    dtype = np.dtype(cfg.dtype)
    train_idx = data.indices("train")
    heldout_idx = data.indices("heldout")
    ranks = ctx.ranks
    for layer_cfg in ctx.cfg.layers:
        layer = layer_cfg.name
        folder = ctx.out / layer
        folder.mkdir(exist_ok=True)
        if (folder / "meta.json").exists():
            continue  # finished before an interruption
        shape = layer_shapes(model, [layer], data.image_size, ctx.device)[layer]
        per_image = shape[1] * shape[2] if cfg.sampling == "all" else cfg.positions_per_image
        images_per_shard = max(1, cfg.shard_size // per_image)
        chunks = [train_idx[i : i + images_per_shard] for i in range(0, len(train_idx), images_per_shard)]
        raw_names = [f"raw_{i:05d}.npy" for i in range(len(chunks))]

        def sample(items, layer=layer, folder=folder, chunks=chunks, raw_names=raw_names):
            """The raw chunks ``i`` and (item ``HELDOUT``) the held-out vectors, each written last."""
            total = sum(len(heldout_idx) if i == HELDOUT else len(chunks[i]) for i in items)
            with ctx.progress(total, f"acts {layer}") as bar:
                for i in items:
                    if i == HELDOUT:  # sampled the same way, for honest SAE metrics
                        if not (folder / "heldout_prob.npy").exists():
                            seed = cfg.seed * 100003 - 1
                            vecs, probs = _collect(
                                model, data, layer, heldout_idx, cfg, ctx.device, seed, bar
                            )
                            atomic_save_npy(folder / "heldout.npy", vecs.astype(dtype))
                            atomic_save_npy(folder / "heldout_prob.npy", probs)  # written last
                        continue
                    if (folder / raw_names[i]).exists() and (folder / f"rawprob_{i:05d}.npy").exists():
                        bar.update(len(chunks[i]))
                        continue
                    seed = cfg.seed * 100003 + i
                    vecs, probs = _collect(model, data, layer, chunks[i], cfg, ctx.device, seed, bar)
                    atomic_save_npy(folder / f"rawprob_{i:05d}.npy", probs)
                    atomic_save_npy(
                        folder / raw_names[i], vecs.astype(dtype)
                    )  # written last: the chunk is done

        ranks.split([*range(len(chunks)), HELDOUT], sample)
        ranks.split(range(len(raw_names)), _Shuffle(folder, raw_names, cfg, dtype).write)
        if not ranks.main:
            continue
        for i, name in enumerate(raw_names):  # only the shuffled shards are left
            (folder / name).unlink(missing_ok=True)
            (folder / f"rawprob_{i:05d}.npy").unlink(missing_ok=True)
        atomic_write_json(
            folder / "meta.json",
            {
                "n_vectors": int(
                    sum(
                        len(np.load(folder / f"shard_{i:05d}.npy", mmap_mode="r"))
                        for i in range(len(raw_names))
                    )
                ),
                "d_in": int(shape[0]),
                "shards": [f"shard_{i:05d}.npy" for i in range(len(raw_names))],
                "prob_shards": [f"prob_{i:05d}.npy" for i in range(len(raw_names))],
                "sampling": cfg.sampling,
                "positions_per_image": per_image,
                "dtype": cfg.dtype,
                "grid": shape[1:],
            },
        )
        ctx.console.detail(
            f"{layer}: {len(train_idx)} images -> {len(train_idx) * per_image} vectors of {shape[0]} channels"
        )


HELDOUT = "heldout"  # the work item of the held-out vectors, beside the raw chunks


class _Shuffle:
    """All vectors shuffled across shards: output shard j takes a slice of one global permutation,
    gathered from the memory-mapped raw shards (never all in RAM)."""

    def __init__(self, folder, raw_names, cfg, dtype):
        self.folder, self.raw_names, self.seed, self.dtype = folder, raw_names, cfg.seed, dtype

    def write(self, shards) -> None:
        """Write the output shards ``shards`` that are not there yet (each written last: it is done)."""
        folder = self.folder
        todo = [j for j in shards if not (folder / f"shard_{j:05d}.npy").exists()]
        if not todo:
            return  # the raw shards may be gone already
        raw = [np.load(folder / n, mmap_mode="r") for n in self.raw_names]
        raw_p = [np.load(folder / f"rawprob_{i:05d}.npy") for i in range(len(self.raw_names))]
        sizes = [len(r) for r in raw]
        offsets = np.cumsum([0] + sizes)
        perm = np.random.default_rng([self.seed, 7]).permutation(int(offsets[-1]))
        for j in todo:
            size = sizes[j]
            take = perm[offsets[j] : offsets[j] + size]
            src = np.searchsorted(offsets, take, side="right") - 1
            vecs = np.empty((size, raw[0].shape[1]), dtype=self.dtype)
            probs = np.empty(size, dtype=np.float32)
            for s in np.unique(src):
                sel = src == s
                local = take[sel] - offsets[s]
                order = np.argsort(local)  # sequential reads within a raw shard
                rows = np.asarray(raw[s][local[order]])
                vecs[np.flatnonzero(sel)[order]] = rows
                probs[np.flatnonzero(sel)[order]] = raw_p[s][local[order]]
            atomic_save_npy(folder / f"prob_{j:05d}.npy", probs)
            atomic_save_npy(folder / f"shard_{j:05d}.npy", vecs)
