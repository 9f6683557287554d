"""Sparse autoencoders (SAEs) on cached activation vectors: model, trainer, evaluator, save/load.

The recipe (Gao et al. 2024; Bussmann et al. 2024; Conerly et al. 2024; docs/analyses.md):

    model      x_hat = f @ W_dec + b_dec,   f = codes(pre),   pre = (x - b_dec) @ W_enc + b_enc
    batchtopk  training: keep the k * batch largest relu(pre) over the whole batch;
               inference: JumpReLU with one learned global threshold (f = pre where pre > threshold)
    topk       keep the k largest relu(pre) of each row (training and inference)
    relu       f = relu(pre), loss MSE + l1_coefficient * sum_i f_i * ||W_dec_i||

Conventions of a trained (returned, saved, loaded) model -- the caller must know these:

* It works on RAW activations. Training runs on x * scale, with scale chosen so that the centred
  vectors have E||x - mean|| = sqrt(d_in); the scale is folded back into the weights at the end.
* Decoder rows W_dec[i] have unit L2 norm for every architecture (for relu the row norms are folded
  into the encoder at the end, which is exact because relu commutes with positive scaling).
* Therefore a code f_i is in activation units: the length of latent i's contribution to x_hat.
  encode_pre(x) of the returned model equals the pre-activation of the scaled training model
  divided by scale (times ||W_dec_i|| for relu); for the TopK family it is exactly pre_scaled / scale.
* threshold (batchtopk only, 0 otherwise) is in the same activation units: encode() keeps
  relu(encode_pre(x))_i when it is > threshold. It is learned as a running average of the smallest
  activation that BatchTopK selected in each training batch (dictionary_learning's rule).

Files (docs/artifacts.md, sae/L/): sae.npz (float32 W_enc, b_enc, W_dec, b_dec, threshold),
cfg.json, metrics.json. Feature i is row i of W_dec. Writing is byte-deterministic.
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from atlasgen.cache import atomic_save_npz, atomic_write_bytes, atomic_write_text
from atlasgen.saelens import FORMAT_VERSION, describe

ARCHITECTURES = ("batchtopk", "topk", "relu")

# training recipe constants (sae.md section 1)
WARMUP_FRACTION = 0.05  # linear lr (and relu l1) warm-up over the first 5% of steps
DECAY_FRACTION = 0.20  # linear lr decay to 0 over the last 20% of steps
GRAD_CLIP = 1.0
AUXK_ALPHA = 1 / 32  # Gao et al.
DEAD_AFTER_SAMPLES_MAX = 10_000_000  # Gao et al.: a latent is dead after 10M samples without firing
INIT_SAMPLE = 32_768  # vectors used to estimate the mean (b_dec init) and the global scale
RELU_DECODER_INIT_NORM = 0.1  # Conerly et al. 2024 (SAELens standard SAE); topk family uses 1.0
CHECKPOINT_FORMAT = "atlasgen.sae.checkpoint/2"


# -----------------------------------------------------------------------------
# the model


class SparseAutoencoder(torch.nn.Module):
    """A plain SAE. Parameters start at zero: train_sae() or atlasgen.sae_formats.load_sae_any() fills
    them."""

    def __init__(self, d_in: int, d_sae: int, architecture: str = "batchtopk", k: int = 32):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if architecture != "relu" and not 1 <= k <= d_sae:
            raise ValueError(f"k must be in [1, d_sae={d_sae}], got {k}")
        self.d_in, self.d_sae, self.architecture, self.k = int(d_in), int(d_sae), architecture, int(k)
        self.W_enc = torch.nn.Parameter(torch.zeros(d_in, d_sae))
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))
        self.W_dec = torch.nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))
        self.register_buffer("threshold", torch.tensor(0.0))  # batchtopk inference threshold

    def encode_pre(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Inference codes (batch-independent for every architecture)."""
        acts = F.relu(self.encode_pre(x))
        if self.architecture == "batchtopk":
            return acts * (acts > self.threshold)  # JumpReLU with one global threshold
        if self.architecture == "topk":
            return topk_codes(acts, self.k)
        return acts

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_sae={self.d_sae}, architecture={self.architecture!r}, k={self.k}"


def topk_codes(acts: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest entries of each row (acts are already >= 0)."""
    top = acts.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(acts).scatter_(-1, top.indices, top.values)


def batch_topk_codes(acts: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the k * batch largest entries of the whole batch; also return the smallest positive kept."""
    flat = acts.flatten()
    top = flat.topk(min(k * acts.shape[0], flat.numel()), sorted=False)
    codes = torch.zeros_like(flat).scatter_(0, top.indices, top.values).view_as(acts)
    positive = torch.where(top.values > 0, top.values, torch.full_like(top.values, math.inf))
    return codes, positive.min()  # +inf when nothing positive was selected (no device sync here)


# -----------------------------------------------------------------------------
# training


def train_sae(
    vectors,
    *,
    d_sae: int,
    architecture: str = "batchtopk",
    k: int = 32,
    l1_coefficient: float = 5.0,
    steps: int = 2000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress=None,
    autocast_bf16: bool = False,
    dead_after_samples: int | None = None,
    checkpoint: Path | None = None,
    checkpoint_every: int = 500,
    dist=None,
) -> tuple[SparseAutoencoder, dict]:
    """Train an SAE on the rows of `vectors` and return it (in raw activation units) with stats.

    vectors: 2-D (n, d_in) numpy array / np.memmap (any float dtype; read one batch at a time, never
    loaded whole) or a torch tensor (indexed where it lives, e.g. already on the GPU).
    Batches are drawn without replacement, a fresh permutation per epoch, from a torch.Generator
    seeded with `seed`; on CPU the same seed and data give identical weights.
    dead_after_samples: AuxK treats a latent as dead after this many training samples without
    firing; default min(10M, 5% of all training samples) -- Gao's 10M for a full-size run (50k steps
    x 4096), scaled down for short runs.
    progress(step) is called after each step with that step's 0-based index (0..steps-1).
    checkpoint: a file where the training state is saved (atomically) every `checkpoint_every` steps;
    when it exists at the start, training continues from it and ends with the same weights as an
    uninterrupted run (the batches of the skipped steps are regenerated from the seed, not re-read).
    stats: loss / mse / auxk (or l1) / train_fvu / train_l0 averaged over the last 5% of steps, in
    the scaled training units; samples_per_second counts the whole loop, data reads included.
    dist: an atlasgen.dist.Dist to train data-parallel under torchrun: every rank draws
    the same global batches of `batch_size` rows from the same generator and trains on its slice of
    each; the model is wrapped in DistributedDataParallel, whose gradient all-reduce makes the step
    the gradient of the global batch's loss. BatchTopK selects the k x batch_size largest codes of the
    GLOBAL batch (a threshold found from every rank's candidates), the dead-latent counts and AuxK's
    residual variance are global too, so the training is the single-process one up to the order of
    float sums (docs/scaling.md); it is the same loop either way. Only rank 0 writes the checkpoint.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ValueError(f"vectors must be 2-D (n > 0, d_in), got shape {tuple(vectors.shape)}")
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be >= 1")
    t_start = time.perf_counter()
    device = torch.device(device)
    if autocast_bf16 and device.type != "cuda":
        raise ValueError("autocast_bf16 is supported on CUDA only")
    n, d_in = int(vectors.shape[0]), int(vectors.shape[1])
    batch_size = min(int(batch_size), n)
    topk_family = architecture != "relu"
    generator = torch.Generator().manual_seed(seed)

    # mean and global scale from a sample: scale * E||x - mean|| = sqrt(d_in)
    if n <= INIT_SAMPLE:
        sample_idx = torch.arange(n)
    else:
        sample_idx = torch.randint(n, (INIT_SAMPLE,), generator=generator)
    sample = _gather(vectors, sample_idx).double()
    mean = sample.mean(0)
    scale = math.sqrt(d_in) / max((sample - mean).norm(dim=1).mean().item(), 1e-12)
    centred_sq_norm = (scale**2) * (sample - mean).pow(2).sum(1).mean().item()  # for the train FVU

    # init (on CPU, so weights do not depend on the device): random W_dec rows, W_enc = W_dec^T
    sae = SparseAutoencoder(d_in, d_sae, architecture, k)
    with torch.no_grad():
        W_dec = torch.randn(d_sae, d_in, generator=generator)
        W_dec *= (1.0 if topk_family else RELU_DECODER_INIT_NORM) / W_dec.norm(dim=1, keepdim=True)
        sae.W_dec.copy_(W_dec)
        sae.W_enc.copy_(W_dec.T)
        sae.b_dec.copy_((mean * scale).float())
    sae.to(device)

    # The TopK family trains the encoder as enc_t = W_enc^T (d_sae, d_in): its rows are what the sparse
    # steps gather and scatter. It is copied back into W_enc at the end.
    enc_t = torch.nn.Parameter(sae.W_enc.detach().T.contiguous()) if topk_family else None
    params = [enc_t, sae.b_enc, sae.W_dec, sae.b_dec] if topk_family else list(sae.parameters())
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), **adam_options(device))
    warmup = max(1, round(WARMUP_FRACTION * steps))
    decay = max(1, round(DECAY_FRACTION * steps))

    def schedule(step: int) -> float:  # multiplier for the update made at (0-based) `step`
        return min(1.0, (step + 1) / warmup, (steps - step) / decay)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    # AuxK bookkeeping (topk family)
    k_aux = max(1, min(d_in // 2, d_sae // 2))
    if dead_after_samples is None:
        dead_after_samples = min(DEAD_AFTER_SAMPLES_MAX, max(batch_size, steps * batch_size // 20))
    samples_since_fired = torch.zeros(d_sae, dtype=torch.long, device=device)
    # BatchTopK threshold: running average of the smallest selected activation, from half-way (at
    # most step 1000, as dictionary_learning) with an averaging window of a quarter of the remaining
    # steps (at most 1000 steps, i.e. dictionary_learning's beta = 0.999)
    threshold_start = min(1000, steps // 2)
    threshold_beta = 1.0 - 1.0 / max(1, min(1000, (steps - threshold_start) // 4))
    threshold = torch.tensor(-1.0, device=device)  # < 0: not set yet
    selector = _BatchTopKSelector()

    history = torch.zeros(steps, 4, device=device)  # loss, mse, auxk or l1, train l0 (no per-step sync)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if autocast_bf16 else nullcontext()
    first_step = 0
    batches = _batch_indices(n, batch_size, steps, generator)
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"{checkpoint}: a training checkpoint of another atlasgen version; delete it to start over"
            )
        sae.load_state_dict(state["sae"])
        if topk_family:
            with torch.no_grad():
                enc_t.copy_(state["enc_t"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        threshold, samples_since_fired = (
            state["threshold"].to(device),
            state["samples_since_fired"].to(device),
        )
        history = state["history"].to(device)
        selector.guess = state["selector_guess"]
        first_step = state["step"]
        for _ in range(first_step):  # the batch order is a function of the seed: replay it
            next(batches)
    # A background thread reads the next batch while this one trains -- but only from a memory map or
    # a GPU's data: on CPU, gathering rows of an in-memory tensor in a second thread competes with the
    # step for the same cores and slows both, so that gather runs in line.
    inline = isinstance(vectors, torch.Tensor) and vectors.device.type == "cpu"
    # The step's reductions over the global batch: one process holds all of it, or each rank a slice.
    whole = (
        _WholeBatch(batch_size, selector)
        if dist is None
        else _DataParallel(dist, batch_size, selector, sae, enc_t if topk_family else None, device)
    )
    t_loop = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:

        def fetch(idx):
            idx = whole.rows(idx)
            if inline:
                done = Future()
                done.set_result(_gather(vectors, idx))
                return done
            return pool.submit(_gather, vectors, idx)

        pending = fetch(next(batches)) if first_step < steps else None
        for step in range(first_step, steps):
            x = pending.result().to(device, non_blocking=True) * scale
            if step + 1 < steps:
                pending = fetch(next(batches))

            def forward(x=x, step=step, since=samples_since_fired):
                """The step's loss, its mse, auxk (or l1) and L0 parts, the smallest selected code
                (batchtopk) and the latents' samples since they fired."""
                if topk_family:
                    x_hat, vals, _, min_selected, since, aux = _topk_family_step(
                        x, sae, enc_t, architecture, k, whole, since, dead_after_samples, k_aux, autocast
                    )
                    mse = whole.mean((x - x_hat).pow(2).sum(-1))
                    l0 = (vals > 0).sum().float() / whole.size
                    return mse + AUXK_ALPHA * aux, mse, aux, l0, min_selected, since
                with autocast:
                    pre = sae.encode_pre(x)
                f = F.relu(pre.float())
                with autocast:
                    x_hat = sae.decode(f)
                residual = x - x_hat.float()
                mse = whole.mean(residual.pow(2).sum(-1))
                l1_scale = min(1.0, (step + 1) / warmup)  # warm the l1 coefficient up with the lr
                aux = whole.mean((f * sae.W_dec.norm(dim=1)).sum(-1))
                l0 = whole.mean((f > 0).sum(-1).float())
                return mse + l1_coefficient * l1_scale * aux, mse, aux, l0, None, since

            loss, mse, aux, l0, min_selected, samples_since_fired = whole.forward(forward)
            _update(sae, whole.loss(loss), optimizer, scheduler, params, topk_family)
            if architecture == "batchtopk" and step >= threshold_start:
                threshold = _blend_threshold(threshold, min_selected, threshold_beta)

            history[step] = whole.total(torch.stack([loss.detach(), mse.detach(), aux.detach(), l0]))
            if (
                checkpoint is not None
                and whole.main
                and (step + 1) % checkpoint_every == 0
                and step + 1 < steps
            ):
                _save_checkpoint(
                    checkpoint,
                    sae,
                    enc_t,
                    optimizer,
                    scheduler,
                    threshold,
                    samples_since_fired,
                    history,
                    selector,
                    step + 1,
                )
            if progress is not None:
                progress(step)
    whole.close()

    if topk_family:
        with torch.no_grad():
            sae.W_enc.copy_(enc_t.T)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    loop_seconds = time.perf_counter() - t_loop

    with torch.no_grad():
        sae.threshold.copy_(threshold.clamp_min(0.0))
    fold_scale(sae, scale)

    tail = history[-max(1, steps // 20) :].mean(0).tolist()  # averages over the last 5% of steps
    stats = {
        "architecture": architecture,
        "d_in": d_in,
        "d_sae": d_sae,
        "k": k,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "n_train_vectors": n,
        "loss": tail[0],
        "mse": tail[1],  # in the scaled units (centred E||x|| = sqrt(d_in))
        "train_fvu": tail[1] / max(centred_sq_norm, 1e-30),
        ("auxk" if topk_family else "l1"): tail[2],
        "train_l0": tail[3],
        "train_dead_fraction": (
            float((samples_since_fired >= dead_after_samples).float().mean()) if topk_family else None
        ),
        "dead_after_samples": dead_after_samples if topk_family else None,
        "l1_coefficient": None if topk_family else l1_coefficient,
        "scale": scale,
        "threshold": float(sae.threshold),
        "seconds": time.perf_counter() - t_start,
        "loop_seconds": loop_seconds,
        "samples_per_second": (steps - first_step) * batch_size / max(loop_seconds, 1e-9),
        "device": str(device),
        "autocast_bf16": autocast_bf16,
        **whole.stats(),
    }
    return sae, stats


class _WholeBatch:
    """A training step's reductions over its batch when this process holds all of it (``size`` rows):
    the means, the BatchTopK selection and the latents that fired are this batch's own."""

    main = True

    def __init__(self, size: int, selector: _BatchTopKSelector):
        self.size, self.selector = size, selector

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """The rows of a batch's indices that this process trains on: all."""
        return idx

    def forward(self, step):
        return step()

    def loss(self, loss: torch.Tensor) -> torch.Tensor:
        """What the backward pass starts from."""
        return loss

    def mean(self, per_row: torch.Tensor) -> torch.Tensor:
        """The batch mean of a per-row quantity."""
        return per_row.mean()

    def variance(self, rows: torch.Tensor) -> torch.Tensor:
        """The batch's E||row - mean row||^2."""
        return (rows - rows.mean(0)).pow(2).sum(-1).mean()

    def select(self, acts: torch.Tensor, k: int):
        """BatchTopK: the k x rows largest entries of relu(pre) (``acts``), grouped by row: their rows,
        latents and values, and the smallest positive one (+inf if none; the threshold rule)."""
        d_sae = acts.shape[1]
        flat_idx, values = self.selector.select(acts.view(-1), k * acts.shape[0])
        order = flat_idx.argsort()
        flat_idx, values = flat_idx[order], values[order]
        min_selected = torch.where(values > 0, values, torch.full_like(values, math.inf)).min()
        return flat_idx // d_sae, flat_idx % d_sae, values, min_selected

    def fired(self, fired: torch.Tensor) -> torch.Tensor:
        """Which latents fired anywhere in the batch, from those that fired in these rows."""
        return fired

    def total(self, row: torch.Tensor) -> torch.Tensor:
        """The batch's loss, mse, aux and L0 from these rows' (:meth:`mean`) parts."""
        return row

    def close(self) -> None:
        pass

    def stats(self) -> dict:
        return {}


class _DDPStep(torch.nn.Module):
    """What DistributedDataParallel wraps: the SAE and the TopK family's encoder copy. Its forward
    runs the step closure it is given, so that DDP sees the forward and all-reduces the gradients."""

    def __init__(self, sae, enc_t):
        super().__init__()
        self.sae = sae
        self.enc_t = enc_t

    def forward(self, step):
        return step()


class _DataParallel(_WholeBatch):
    """The same reductions when each rank of a distributed build holds a slice of every global
    batch of ``size`` rows (train_sae's ``dist``): a rank's :meth:`mean` is its share of the global
    mean (sum over its rows / size), DistributedDataParallel all-reduces the gradients, BatchTopK
    keeps the k x size largest codes of the whole global batch, and the fired latents, AuxK's
    residual variance and the reported losses are global."""

    def __init__(self, dist, size: int, selector, sae, enc_t, device: torch.device):
        from torch.nn.parallel import DistributedDataParallel

        super().__init__(size, selector)
        self.world, self.main, self.sae = dist.world, dist.main, sae
        # This rank's rows of each (sorted) global batch.
        self.lo, self.hi = dist.rank * size // dist.world, (dist.rank + 1) * size // dist.world
        if enc_t is not None:
            sae.W_enc.requires_grad_(False)  # trained as enc_t; DDP reduces only what gets gradients
        self.ddp = DistributedDataParallel(
            _DDPStep(sae, enc_t),
            broadcast_buffers=False,
            device_ids=[device.index] if device.type == "cuda" else None,
        )

    def rows(self, idx):
        return idx.sort().values[self.lo : self.hi]

    def forward(self, step):
        return self.ddp(step)

    def loss(self, loss):
        return loss * self.world  # DDP averages the ranks' gradients: world x (share of the mean) / world

    def mean(self, per_row):
        return per_row.sum() / self.size

    def variance(self, rows):
        import torch.distributed as td

        moments = torch.cat([rows.sum(0), rows.pow(2).sum().view(1)]).double()
        td.all_reduce(moments)  # the global batch's sums
        mean = moments[:-1] / self.size
        return (moments[-1] / self.size - mean.pow(2).sum()).float()

    def select(self, acts, k):
        """Each rank sends its local top k x size candidates; every rank finds the same global
        cut-off t and keeps its own codes >= t."""
        import torch.distributed as td

        d_sae = acts.shape[1]
        count = k * self.size
        width = min(count, -(-self.size // self.world) * d_sae)  # the most candidates any rank can send
        _, local_vals = self.selector.select(acts.view(-1), min(count, acts.numel()))
        cand = torch.full((width,), -1.0, device=acts.device)
        cand[: len(local_vals)] = local_vals
        gathered = [torch.empty_like(cand) for _ in range(self.world)]
        td.all_gather(gathered, cand)
        every = torch.cat(gathered)
        t = every.topk(min(count, every.numel()), sorted=False).values.min()
        chosen = every[(every >= t) & (every > 0)]
        min_selected = chosen.min() if chosen.numel() else torch.tensor(math.inf, device=acts.device)
        flat = acts.view(-1)
        flat_idx = torch.nonzero((flat >= t) & (flat > 0)).squeeze(1)  # ascending: grouped by row
        return flat_idx // d_sae, flat_idx % d_sae, flat[flat_idx], min_selected

    def fired(self, fired):
        import torch.distributed as td

        anywhere = fired.int()
        td.all_reduce(anywhere)
        return anywhere > 0

    def total(self, row):
        import torch.distributed as td

        row = row.float()
        td.all_reduce(row)  # each rank's share summed
        return row

    def close(self):
        self.sae.W_enc.requires_grad_(True)

    def stats(self):
        return {"ranks": self.world}


def _auxk_reconstruction(xc, enc_t, sae, acts, dead, k_aux: int, arange) -> torch.Tensor:
    """AuxK's reconstruction from the top ``k_aux`` dead latents of each row (sparse, as the main step)."""
    b = acts.shape[0]
    dead_idx = torch.nonzero(dead).squeeze(1)
    ka = min(k_aux, dead_idx.numel())
    top = acts[:, dead_idx].topk(ka, dim=1, sorted=False)
    a_rows, a_cols = arange.repeat_interleave(ka), dead_idx[top.indices].reshape(-1)
    a_vals = F.relu(_SelectedPre.apply(xc, enc_t, sae.b_enc, top.values.reshape(-1), a_rows, a_cols))
    return F.embedding_bag(a_cols.view(b, ka), sae.W_dec, mode="sum", per_sample_weights=a_vals.view(b, ka))


def _save_checkpoint(
    path, sae, enc_t, optimizer, scheduler, threshold, samples_since_fired, history, selector, step: int
) -> None:
    """Everything a resumed run needs to continue exactly, written atomically."""
    buffer = BytesIO()
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "sae": sae.state_dict(),
            "enc_t": enc_t,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "threshold": threshold,
            "samples_since_fired": samples_since_fired,
            "history": history,
            "selector_guess": selector.guess,
            "step": step,
        },
        buffer,
    )
    atomic_write_bytes(Path(path), buffer.getvalue())


def _update(sae, loss, optimizer, scheduler, params, topk_family: bool) -> None:
    """One optimiser step: backward, decoder-parallel gradient removed and gradients clipped,
    Adam and the schedule, decoder rows back to unit norm (TopK family)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if topk_family:
        remove_parallel_decoder_grad(sae)
    torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
    optimizer.step()
    scheduler.step()
    if topk_family:
        with torch.no_grad():
            sae.W_dec /= sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def _blend_threshold(threshold: torch.Tensor, min_selected: torch.Tensor, beta: float) -> torch.Tensor:
    """BatchTopK's inference threshold: a running average of the smallest selected activation
    (the first value seen starts it; a step that selected nothing leaves it)."""
    seen = torch.isfinite(min_selected)
    first = threshold < 0
    blended = beta * threshold + (1 - beta) * min_selected
    return torch.where(seen, torch.where(first, min_selected, blended), threshold)


def adam_options(device: torch.device | str) -> dict:
    """Adam's fused kernel (one pass over each parameter) where this torch has it for the device."""
    try:
        torch.optim.Adam([torch.zeros(1, device=device, requires_grad=True)], fused=True)
        return {"fused": True}
    except (RuntimeError, ValueError):
        return {"foreach": True}


class _BatchTopKSelector:
    """The `count` largest entries of a flattened batch, exactly, without a top-k over all of it.

    Entries above a guessed cut-off are gathered first (a small fraction of the batch) and the top
    `count` is taken among them; that is the exact answer whenever at least `count` entries pass.
    Otherwise the whole batch is searched. The guess is MARGIN x the previous batch's smallest
    selected value, which moves slowly during training, so the fallback is rare after the first step.
    """

    MARGIN = 0.8

    def __init__(self):
        self.guess: float | None = None

    def select(self, flat: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        count = min(count, flat.numel())
        found = None
        if self.guess is not None and self.guess > 0:
            idx = torch.nonzero(flat > self.guess).squeeze(1)
            if idx.numel() >= count:
                top = flat[idx].topk(count, sorted=False)
                found = idx[top.indices], top.values
        if found is None:
            top = flat.topk(count, sorted=False)
            found = top.indices, top.values
        self.guess = float(found[1].min()) * self.MARGIN
        return found


class _SelectedPre(torch.autograd.Function):
    """Encoder pre-activations of selected (row, latent) pairs, pre = xc[row] . enc_t[latent] + b_enc[latent].

    The values come from the dense encoder pass, which ran without autograd; the backward pass sends
    gradient only to the selected pairs (an embedding-bag per row for xc, per latent for enc_t), so
    no (batch, d_sae) gradient and no (batch, d_sae) x (d_sae, d_in) matmul is ever made. `rows` must
    be sorted (pairs grouped by row).
    """

    @staticmethod
    def forward(ctx, xc, enc_t, b_enc, values, rows, cols):
        ctx.save_for_backward(xc, enc_t, rows, cols)
        return values.clone()

    @staticmethod
    def backward(ctx, grad):
        xc, enc_t, rows, cols = ctx.saved_tensors
        grad_xc = grad_enc = grad_b = None
        if ctx.needs_input_grad[0]:
            by_row = torch.searchsorted(rows, torch.arange(xc.shape[0], device=rows.device))
            grad_xc = F.embedding_bag(cols, enc_t, by_row, mode="sum", per_sample_weights=grad)
        if ctx.needs_input_grad[1]:
            order = torch.argsort(cols, stable=True)
            sorted_cols = cols[order]
            by_col = torch.searchsorted(sorted_cols, torch.arange(enc_t.shape[0], device=cols.device))
            grad_enc = F.embedding_bag(rows[order], xc, by_col, mode="sum", per_sample_weights=grad[order])
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(enc_t.shape[0], dtype=grad.dtype, device=grad.device).index_add_(
                0, cols, grad
            )
        return grad_xc, grad_enc, grad_b, None, None, None


def _topk_family_step(
    x, sae, enc_t, architecture, k, whole, samples_since_fired, dead_after_samples, k_aux, autocast
):
    """The forward pass of one TopK / BatchTopK training step, sparse after the encoder.

    Only the encoder runs dense (and without autograd): it is needed to choose the active latents.
    The chosen pre-activations get their gradient through _SelectedPre and the reconstruction is an
    embedding-bag over the chosen decoder rows, so the decoder's dense matmuls and the encoder's dense
    backward -- four of the five matmuls of a dense step -- are never made. The result equals the
    dense formulation (codes = top-k of relu(pre), x_hat = codes @ W_dec + b_dec) up to float
    summation order. AuxK is computed over the dead latents' columns only, and only when some are dead.
    ``whole`` (:class:`_WholeBatch`, or :class:`_DataParallel` on a rank's rows of a global batch)
    makes the BatchTopK selection, the fired latents and AuxK's means over the whole batch.

    Returns x_hat, the chosen codes and their latents, the smallest selected value (batchtopk; the
    threshold rule), the updated samples_since_fired, and the AuxK loss (this process's share).
    """
    b, d_sae = x.shape[0], sae.d_sae
    xc = x - sae.b_dec
    with torch.no_grad(), autocast:
        pre = torch.addmm(sae.b_enc, xc, enc_t.T)
    acts = F.relu(pre.float())
    arange = torch.arange(b, device=x.device)
    if architecture == "batchtopk":
        rows, cols, values, min_selected = whole.select(acts, k)
    else:
        top = acts.topk(k, dim=1, sorted=False)
        rows, cols, values = arange.repeat_interleave(k), top.indices.reshape(-1), top.values.reshape(-1)
        min_selected = None
    vals = F.relu(_SelectedPre.apply(xc, enc_t, sae.b_enc, values, rows, cols))
    by_row = torch.searchsorted(rows, arange)
    x_hat = F.embedding_bag(cols, sae.W_dec, by_row, mode="sum", per_sample_weights=vals) + sae.b_dec

    fired = torch.zeros(d_sae, dtype=torch.bool, device=x.device)
    fired[cols[vals > 0]] = True
    samples_since_fired = torch.where(whole.fired(fired), 0, samples_since_fired + whole.size)
    dead = samples_since_fired >= dead_after_samples
    aux = torch.zeros((), device=x.device)
    if bool(dead.any()):  # the same answer on every rank
        aux_recon = _auxk_reconstruction(xc, enc_t, sae, acts, dead, k_aux, arange)
        residual = (x - x_hat).detach()
        aux_sq = whole.mean((residual - aux_recon).pow(2).sum(-1))
        aux = torch.nan_to_num(aux_sq / whole.variance(residual), nan=0.0, posinf=0.0)
    return x_hat, vals, cols, min_selected, samples_since_fired, aux


def auxk_loss(sae, acts, dead, residual, k_aux):
    """AuxK (Gao et al.): reconstruct the residual from the top k_aux dead latents, normalised by
    the residual's variance. Zero (with zero gradient) while no latent is dead; no device sync."""
    dead_acts = torch.where(dead, acts, torch.zeros_like(acts))
    aux_codes = topk_codes(dead_acts, min(k_aux, acts.shape[1]))
    aux_recon = aux_codes @ sae.W_dec  # no b_dec: it models the residual
    aux_sq = (residual - aux_recon).pow(2).sum(-1).mean()
    residual_var = (residual - residual.mean(0)).pow(2).sum(-1).mean()
    return torch.nan_to_num(aux_sq.float() / residual_var.float(), nan=0.0, posinf=0.0) * dead.any()


def remove_parallel_decoder_grad(sae):
    """Project out of each W_dec row's gradient its component along the (unit) row."""
    if sae.W_dec.grad is not None:
        W, G = sae.W_dec.data, sae.W_dec.grad
        G -= (G * W).sum(1, keepdim=True) * W


@torch.no_grad()
def fold_scale(sae: SparseAutoencoder, scale: float) -> None:
    """Turn a model trained on x * scale into one on raw x with unit-norm decoder rows.

    The scaled model's code f_i becomes f_i * ||W_dec_i|| / scale (activation units); the
    reconstruction becomes x_hat_scaled / scale. ||W_dec_i|| is 1 for the TopK family (and not
    touched, as per-latent rescaling would change their top-k / threshold selection)."""
    if sae.architecture == "relu":
        norms = sae.W_dec.norm(dim=1).clamp_min(1e-12)
    else:
        norms = torch.ones(sae.d_sae, device=sae.W_dec.device)
    sae.W_enc *= norms
    sae.b_enc *= norms / scale
    sae.W_dec /= norms[:, None]
    sae.b_dec /= scale
    sae.threshold /= scale


def _batch_indices(n, batch_size, steps, generator):
    """Row indices of each batch: a fresh permutation per epoch, the last partial batch dropped."""
    perm, pos = None, n
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=generator), 0
        yield perm[pos : pos + batch_size]
        pos += batch_size


def _gather(vectors, idx: torch.Tensor) -> torch.Tensor:
    """Rows idx of vectors as a float32 tensor (sorted reads: kinder to a memmap; order is irrelevant)."""
    idx = idx.sort().values
    if isinstance(vectors, torch.Tensor):
        return vectors[idx.to(vectors.device)].float()
    return torch.from_numpy(np.asarray(vectors[idx.numpy()], dtype=np.float32))


# -----------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate_sae(sae: SparseAutoencoder, vectors, batch_size: int = 4096) -> dict:
    """Metrics of the inference model on (held-out) vectors, with float64 streaming sums.

    fvu = sum||x - x_hat||^2 / sum||x - mean||^2 (per-dimension mean over these vectors);
    explained_variance = 1 - fvu; mse = mean ||x - x_hat||^2; l0 / l0_std = mean / std of active
    latents per vector; dead_fraction = latents that never fire here; dense_fraction = latents firing
    on > 1e-2 of vectors (dense_fraction_1e-1: > 0.1); cosine = mean cos(x, x_hat);
    l2_ratio = mean ||x_hat|| / ||x||; relative_reconstruction_bias = E||x_hat||^2 / E<x, x_hat>;
    density_log10_hist = latent counts by firing frequency: [never, < 1e-6, [1e-6, 1e-5), ..., [1e-1, 1]].
    """
    device = sae.W_dec.device
    n = int(vectors.shape[0])
    if n == 0:
        raise ValueError("no vectors to evaluate")
    dd = dict(dtype=torch.float64, device=device)
    shift = None  # the first batch's mean: a shifted-data variance, safe against a large mean
    sum_x, sum_sq_dev = torch.zeros(sae.d_in, **dd), torch.zeros((), **dd)
    sum_err, sum_xhat_sq, sum_dot = (torch.zeros((), **dd) for _ in range(3))
    sum_cos, sum_ratio, sum_l0, sum_l0_sq = (torch.zeros((), **dd) for _ in range(4))
    fire_count = torch.zeros(sae.d_sae, dtype=torch.long, device=device)
    for start in range(0, n, batch_size):
        x = _as_tensor(vectors[start : start + batch_size]).to(device)
        f = sae.encode(x)
        x_hat = sae.decode(f)
        x64, x_hat64 = x.double(), x_hat.double()
        if shift is None:
            shift = x64.mean(0)
        sum_x += (x64 - shift).sum(0)
        sum_sq_dev += (x64 - shift).pow(2).sum()
        sum_err += (x64 - x_hat64).pow(2).sum()
        sum_xhat_sq += x_hat64.pow(2).sum()
        dot = (x64 * x_hat64).sum(1)
        sum_dot += dot.sum()
        x_norm, x_hat_norm = x64.norm(dim=1), x_hat64.norm(dim=1)
        sum_cos += (dot / (x_norm * x_hat_norm).clamp_min(1e-30)).sum()
        sum_ratio += (x_hat_norm / x_norm.clamp_min(1e-30)).sum()
        active = f > 0
        l0 = active.sum(1).double()
        sum_l0 += l0.sum()
        sum_l0_sq += l0.pow(2).sum()
        fire_count += active.sum(0)

    total_var = (sum_sq_dev - sum_x.pow(2).sum() / n).item()  # sum ||x - mean||^2
    fvu = sum_err.item() / total_var if total_var > 0 else math.nan
    density = fire_count.double().cpu() / n
    l0_mean = sum_l0.item() / n
    positive = density[density > 0].numpy()
    decade = np.clip(np.floor(np.log10(positive)), -7, -1)  # -7: below 1e-6; density 1 joins [1e-1, 1]
    hist = [int((density == 0).sum())] + [int((decade == b).sum()) for b in range(-7, 0)]
    return {
        "n_vectors": n,
        "fvu": fvu,
        "explained_variance": 1.0 - fvu,
        "mse": sum_err.item() / n,
        "l0": l0_mean,
        "l0_std": math.sqrt(max(sum_l0_sq.item() / n - l0_mean**2, 0.0)),
        "dead_fraction": float((fire_count == 0).double().mean()),
        "dense_fraction": float((density > 1e-2).double().mean()),
        "dense_fraction_1e-1": float((density > 1e-1).double().mean()),
        "density_log10_hist": hist,
        "cosine": sum_cos.item() / n,
        "l2_ratio": sum_ratio.item() / n,
        "relative_reconstruction_bias": sum_xhat_sq.item() / sum_dot.item() if sum_dot.item() else math.nan,
    }


def _as_tensor(rows) -> torch.Tensor:
    if isinstance(rows, torch.Tensor):
        return rows.float()
    return torch.from_numpy(np.asarray(rows, dtype=np.float32))


# -----------------------------------------------------------------------------
# save / load (byte-deterministic: same weights and metrics -> same files)


def sae_cfg(sae: SparseAutoencoder, description: dict | None = None) -> dict:
    """atlasgen's cfg.json of an SAE: format, d_in, d_sae and its description
    (:func:`atlasgen.saelens.describe`; default: the one a loader attached as ``sae.description``, else
    trained by atlasgen, measured from the weights)."""
    if description is None:
        description = getattr(sae, "description", None)
    if description is None:
        description = describe(
            sae.W_dec.detach().cpu().numpy(),
            sae.threshold.detach().cpu().numpy(),
            architecture=sae.architecture,
            k=sae.k,
            origin="trained",
        )
    return {
        "format": "atlasgen.sae",
        "format_version": FORMAT_VERSION,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        **description,
    }


def save_sae(
    sae: SparseAutoencoder, folder, metrics: dict | None = None, description: dict | None = None
) -> None:
    """Write folder/sae.npz (float32 weights), folder/cfg.json (:func:`sae_cfg`) and metrics.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")
    arrays = {name: getattr(sae, name).detach().cpu().float().numpy() for name in names}
    atomic_save_npz(folder / "sae.npz", **arrays)
    _write_json(folder / "cfg.json", sae_cfg(sae, description))
    if metrics is not None:
        _write_json(folder / "metrics.json", metrics)


def _write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(_plain(obj), sort_keys=True, indent=1, allow_nan=False) + "\n")


def _plain(obj):
    """JSON-ready copy: floats rounded to 9 significant digits (NaN/inf -> null), numpy -> python."""
    if isinstance(obj, dict):
        return {str(key): _plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(value) for value in obj]
    if isinstance(obj, torch.Tensor):
        return _plain(obj.tolist())
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return float(f"{value:.9g}") if math.isfinite(value) else None
    return obj
