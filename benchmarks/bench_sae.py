"""SAE training benchmark: atlasgen's BatchTopK against overcomplete 0.3.0's BatchTopK, side by side.

Two data sets, each trained by every trainer with the same width, k, steps, batch size and
learning-rate schedule, and scored by one evaluator (atlasgen.sae.evaluate_sae) on the same
held-out vectors:

* demo:      the demo model's cached mixed5b activations (.atlasgen/activations/<key>/mixed5b,
             shards for training, heldout.npy for evaluation); d = 128.
* synthetic: d = 1024 vectors drawn from a known sparse non-negative dictionary (plus a constant
             offset, as post-ReLU activations have, and a little noise), so that recovery can be
             scored: the mean over true atoms of the best cosine with a learned decoder row.

Trainers (all on the same in-memory float32 rows, one batch gathered per step):

* atlasgen:           atlasgen.sae.train_sae(architecture="batchtopk"), as the sae stage calls it, on
                      a numpy view of the rows (the stage passes a numpy memmap). --atlasgen-tensor
                      passes the torch tensor instead: on CPU with more than one torch thread its
                      background batch gather then competes with the training step (see the docs).
* overcomplete:       overcomplete.sae.BatchTopKSAE(top_k = k * batch) trained by overcomplete's
                      own train_sae (monitoring=0) with its own loss (top_k_auxiliary_loss).
* overcomplete-matched: the same model class and loop, made like-for-like where the two differ by
                      choice rather than by mechanism: atlasgen's criterion (summed MSE + 1/32 Gao
                      AuxK over dead latents, atlasgen.sae.auxk_loss) and atlasgen's initialisation
                      (encoder = dictionary transpose, via overcomplete's own `untied(bias=True)`).

Differences neutralised: overcomplete has no decoder bias, so it
is fed (x - mean) * scale with atlasgen's mean and scale (E||x - mean|| = sqrt(d)) and the mean is
added back by the evaluation adapter; top_k counts actives per batch (k * batch); the learning
rate follows atlasgen's schedule exactly (Adam 0.9/0.999, linear warm-up over the first 5% of
steps, linear decay to 0 over the last 20%) through a LambdaLR that overcomplete's train_sae
steps once per batch, as atlasgen does; gradient clipping at 1.0 in both. Left as they are (the
trainers' mechanisms): decoder-norm handling (overcomplete renormalises the rows inside every
forward; atlasgen projects the gradient and renormalises after the step), the inference-threshold
rule (overcomplete: EMA 0.9 of the k*batch-th value; atlasgen: running mean of the smallest selected
activation from mid-run), sorted vs unsorted top-k, overcomplete's per-step dead-code tracker.

Speed is measured on FULL training runs, the same runs that give the FVU, so every trainer pays
its auxiliary loss for as long as a real run of that length has dead latents (atlasgen skips
AuxK while no latent is dead; overcomplete's own loss always runs its auxiliary term):

* warm-up: before any timing, every trainer runs one identical untimed warm-up (--warmup-steps
  steps on the same rows and shapes, latents counted dead after a quarter of them, so the AuxK
  path runs too);
* alternation: the full runs are repeated --speed-reps times in alternating order (A B C, then
  C B A, then A B C, ...), each repetition starting with the floor; samples/s is the median per
  trainer (the training loop's samples/s, batch reads included). On the CPU every run of a
  trainer gives the same weights (checked), so FVU is taken from the first;
* threads: every figure is measured at each of --threads (default 1 and 2) torch threads, each
  thread count in its own child process (this script re-invoked with a hidden --child option)
  that sets torch's thread count before any other work; one table per data set puts them side
  by side, with atlasgen / peer ratios at each thread count.

The floor is the samples/s of the same encoder/decoder matmuls (x @ W_enc, f @ W_dec with dense
f, and their three backward matmuls) timed alone. FVU is also given under exact batch top-k at
evaluation (L0 = k for every model), so FVU can be compared at equal L0 even when the learned
inference thresholds give different L0s.

Usage:
    python benchmarks/bench_sae.py [--steps N] [--batch-size B] [--k K] [--expansion E] [--quick]
           [--datasets demo,synthetic] [--threads 1 2] [--speed-reps R] [--warmup-steps W]
           [--json results.json]
--steps/--batch-size/--k/--expansion override both data sets' defaults (demo: the shipped
site_config.yaml's sae settings, 3000 steps x 512, k 8, 4x; synthetic: 100 steps x 512, k 16, 4x;
50k training vectors from 2048 true atoms, 16 per vector).

Expected time on an idle 2-core machine with the defaults (2 alternating rounds, 1 and 2 threads):
26.5 minutes measured (2026-12-02): per round, the demo about 185 s at 2 threads and 235 s at 1
(three trainers), the synthetic set about 105 s and 195 s, plus warm-ups; each further
--speed-reps round adds about 12 minutes. --quick (300 demo steps, 30 synthetic steps on 8k vectors) is a \
smoke run
of a few minutes. Run it alone: other jobs on the machine skew the 2-thread figures most.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from atlasgen import sae as asae

ROOT = Path(__file__).resolve().parents[1]
LR = 1e-3  # the demo config's sae lr, used for every trainer


# -----------------------------------------------------------------------------
# data


def load_demo(root: Path):
    """(train, heldout) float32 tensors of the demo's cached mixed5b activations, or None."""
    from atlasgen.stages.activations import VectorStore

    base = root / ".atlasgen" / "activations"
    latest = base / "latest.json"
    folders = []
    if latest.exists():
        folders.append(base / json.loads(latest.read_text())["key"] / "mixed5b")
    folders += sorted(base.glob("*/mixed5b")) if base.exists() else []
    for folder in folders:
        if (folder / "meta.json").exists() and (folder / "heldout.npy").exists():
            store = VectorStore(folder)
            train = torch.from_numpy(np.asarray(store[np.arange(len(store))], dtype=np.float32))
            heldout = torch.from_numpy(np.load(folder / "heldout.npy").astype(np.float32))
            return train, heldout, str(folder.relative_to(root))
    return None


def make_synthetic(n: int, n_heldout: int, d: int, n_atoms: int, k_true: int, seed: int = 0):
    """Vectors x = sum of k_true non-negative multiples of random unit atoms + offset + noise."""
    gen = torch.Generator().manual_seed(seed)
    atoms = torch.randn(n_atoms, d, generator=gen)
    atoms /= atoms.norm(dim=1, keepdim=True)
    offset = torch.randn(d, generator=gen).abs()
    offset *= 4.0 / offset.norm()  # a large positive mean, about the norm of the sparse signal
    out = torch.empty(n + n_heldout, d)
    chunk = 1024
    for start in range(0, n + n_heldout, chunk):
        rows = min(chunk, n + n_heldout - start)
        idx = torch.rand(rows, n_atoms, generator=gen).argsort(dim=1)[:, :k_true]
        mags = 0.5 + torch.rand(rows, k_true, generator=gen)  # U(0.5, 1.5)
        x = torch.einsum("nk,nkd->nd", mags, atoms[idx]) + offset
        out[start : start + rows] = x + 0.01 * torch.randn(rows, d, generator=gen)
    return out[:n].contiguous(), out[n:].contiguous(), atoms


def recovery(atoms: torch.Tensor, decoder_rows: torch.Tensor) -> dict:
    """Mean over true atoms of the best cosine with a learned decoder row (and the share above 0.9)."""
    a = atoms / atoms.norm(dim=1, keepdim=True)
    w = decoder_rows / decoder_rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    best = (a @ w.T).max(dim=1).values
    return {"recovery": float(best.mean()), "recovered_0.9": float((best > 0.9).float().mean())}


def mean_and_scale(vectors: torch.Tensor, seed: int):
    """atlasgen's preprocessing statistics: mean and scale with scale * E||x - mean|| = sqrt(d)."""
    n, d = vectors.shape
    gen = torch.Generator().manual_seed(seed)
    idx = torch.arange(n) if n <= asae.INIT_SAMPLE else torch.randint(n, (asae.INIT_SAMPLE,), generator=gen)
    sample = vectors[idx].double()
    mean = sample.mean(0)
    scale = math.sqrt(d) / max((sample - mean).norm(dim=1).mean().item(), 1e-12)
    return mean.float(), scale


def lr_schedule(steps: int):
    """atlasgen's schedule (atlasgen/sae.py train_sae), from its constants."""
    warmup = max(1, round(asae.WARMUP_FRACTION * steps))
    decay = max(1, round(asae.DECAY_FRACTION * steps))
    return lambda step: min(1.0, (step + 1) / warmup, (steps - step) / decay)


# -----------------------------------------------------------------------------
# the peer: overcomplete 0.3.0


class Batches:
    """Exactly `steps` batches of (x - mean) * scale, a fresh permutation per epoch (as atlasgen)."""

    def __init__(self, prepared: torch.Tensor, batch_size: int, steps: int, seed: int):
        self.prepared, self.batch_size, self.steps, self.seed = prepared, batch_size, steps, seed

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed)
        for idx in asae._batch_indices(len(self.prepared), self.batch_size, self.steps, gen):
            yield asae._gather(self.prepared, idx)

    def __len__(self):
        return self.steps


def dead_after_samples(steps: int, batch_size: int) -> int:
    """atlasgen's default dead-latent horizon for a run of `steps` x `batch_size` (train_sae)."""
    return min(asae.DEAD_AFTER_SAMPLES_MAX, max(batch_size, steps * batch_size // 20))


def gao_criterion(d_in: int, d_sae: int, dead_after: int):
    """atlasgen's loss for overcomplete's train_sae: summed MSE + 1/32 AuxK on dead latents."""
    k_aux = max(1, min(d_in // 2, d_sae // 2))
    state = {"since": torch.zeros(d_sae, dtype=torch.long)}

    def criterion(x, x_hat, pre_codes, codes, dictionary):
        residual = x - x_hat
        mse = residual.pow(2).sum(-1).mean()
        fired = (codes > 0).any(0)
        state["since"] = torch.where(fired, 0, state["since"] + x.shape[0])
        dead = state["since"] >= dead_after
        aux = asae.auxk_loss(
            types.SimpleNamespace(W_dec=dictionary), torch.relu(pre_codes), dead, residual.detach(), k_aux
        )
        return mse + asae.AUXK_ALPHA * aux

    return criterion


def train_overcomplete(train, *, d_sae, k, steps, batch_size, lr, seed, loss, dead_after=None):
    from overcomplete.sae import BatchTopKSAE
    from overcomplete.sae import train_sae as oc_train_sae
    from overcomplete.sae.losses import top_k_auxiliary_loss

    d = train.shape[1]
    mean, scale = mean_and_scale(train, seed)
    prepared = ((train - mean) * scale).contiguous()
    torch.manual_seed(seed)
    model = BatchTopKSAE(d, nb_concepts=d_sae, top_k=k * batch_size, device="cpu")
    if loss == "own":
        criterion = top_k_auxiliary_loss
    else:  # matched: atlasgen's init (encoder = dictionary^T, zero bias) and atlasgen's loss
        model.untied(bias=True, copy_from_dictionary=True)  # a new encoder: before the optimizer
        criterion = gao_criterion(d, d_sae, dead_after or dead_after_samples(steps, batch_size))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(steps))
    batches = Batches(prepared, batch_size, steps, seed)
    start = time.perf_counter()
    oc_train_sae(
        model,
        batches,
        criterion,
        optimizer,
        scheduler,
        nb_epochs=1,
        clip_grad=1.0,
        monitoring=0,
        device="cpu",
    )
    seconds = time.perf_counter() - start
    model.eval()
    return PeerAdapter(model, mean, scale), {
        "loop_seconds": seconds,
        "samples_per_second": steps * batch_size / seconds,
    }


class PeerAdapter:
    """overcomplete's BatchTopKSAE seen through atlasgen's SAE interface, in raw activation units."""

    def __init__(self, model, mean: torch.Tensor, scale: float):
        self.model, self.mean, self.scale = model, mean, scale
        with torch.no_grad():
            self.W_dec = model.get_dictionary().detach().clone()  # eval: fused, unit-norm rows
        self.d_sae, self.d_in = self.W_dec.shape

    @torch.no_grad()
    def encode_acts(self, x):  # relu(pre) in raw units, before any top-k / threshold
        return torch.relu(self.model.encoder((x - self.mean) * self.scale)[0]) / self.scale

    @torch.no_grad()
    def encode(self, x):  # inference: the running threshold (eval mode)
        return self.model.encode((x - self.mean) * self.scale)[1] / self.scale

    def decode(self, f):
        return f @ self.W_dec + self.mean  # = decode(f * scale) / scale + mean


class OursAdapter:
    def __init__(self, sae):
        self.sae, self.W_dec, self.d_in, self.d_sae = sae, sae.W_dec.detach(), sae.d_in, sae.d_sae

    @torch.no_grad()
    def encode_acts(self, x):
        return torch.relu(self.sae.encode_pre(x))

    @torch.no_grad()
    def encode(self, x):
        return self.sae.encode(x)

    @torch.no_grad()
    def decode(self, f):
        return self.sae.decode(f)


class ExactBatchTopK:
    """Either model evaluated with exact batch top-k (k * rows actives per evaluation batch): L0 = k."""

    def __init__(self, adapter, k: int):
        self.a, self.k, self.W_dec, self.d_in, self.d_sae = (
            adapter,
            k,
            adapter.W_dec,
            adapter.d_in,
            adapter.d_sae,
        )

    def encode(self, x):
        return asae.batch_topk_codes(self.a.encode_acts(x), self.k)[0]

    def decode(self, f):
        return self.a.decode(f)


# -----------------------------------------------------------------------------
# floor


def matmul_floor(batch_size: int, d: int, d_sae: int, seconds: float = 1.0) -> float:
    """Samples/s of the bare encoder/decoder matmuls of one training step, forward + backward:
    pre = x @ W_enc, x_hat = f @ W_dec (f dense), dW_dec = f^T @ g, df = g @ W_dec^T, dW_enc = x^T @ dpre."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, d, generator=gen)
    W_enc = torch.randn(d, d_sae, generator=gen)
    W_dec = torch.randn(d_sae, d, generator=gen)
    g = torch.randn(batch_size, d, generator=gen)

    def step():
        f = x @ W_enc
        _ = f @ W_dec
        _ = f.T @ g
        df = g @ W_dec.T
        _ = x.T @ df

    for _ in range(3):
        step()
    reps, start = 0, time.perf_counter()
    while reps < 5 or time.perf_counter() - start < seconds:
        step()
        reps += 1
    return reps * batch_size / (time.perf_counter() - start)


# -----------------------------------------------------------------------------
# one thread count (the child process)


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


PEER_LABEL = {"own": "overcomplete", "matched": "overcomplete-matched"}
LOSS_OF = {label: loss for loss, label in PEER_LABEL.items()}
ATLASGEN_INPUT = {"kind": "numpy"}


def ours_input(train: torch.Tensor):
    """What atlasgen trains on: by default a numpy array (zero-copy view of the same float32 rows),
    as the sae stage passes its numpy memmap; --atlasgen-tensor passes the torch tensor instead."""
    return train if ATLASGEN_INPUT["kind"] == "tensor" else train.numpy()


def train_one(label, train, *, d_sae, k, steps, batch_size, seed, dead_after=None):
    """One full training run of one trainer: (model behind atlasgen's SAE interface, loop samples/s).
    dead_after: the dead-latent horizon in samples (default: atlasgen's for a run of this length)."""
    if label == "atlasgen":
        sae, stats = asae.train_sae(
            ours_input(train),
            d_sae=d_sae,
            architecture="batchtopk",
            k=k,
            steps=steps,
            batch_size=batch_size,
            lr=LR,
            seed=seed,
            dead_after_samples=dead_after,
        )
        return OursAdapter(sae.eval()), stats["samples_per_second"]
    model, speed = train_overcomplete(
        train,
        d_sae=d_sae,
        k=k,
        steps=steps,
        batch_size=batch_size,
        lr=LR,
        seed=seed,
        loss=LOSS_OF[label],
        dead_after=dead_after,
    )
    return model, speed["samples_per_second"]


def score(adapter, heldout, k, atoms=None) -> dict:
    ev = asae.evaluate_sae(adapter, heldout)
    exact = asae.evaluate_sae(ExactBatchTopK(adapter, k), heldout)
    row = {
        "fvu": ev["fvu"],
        "l0": ev["l0"],
        "dead_fraction": ev["dead_fraction"],
        "dense_fraction": ev["dense_fraction"],
        "fvu_at_l0_k": exact["fvu"],
        "dead_at_l0_k": exact["dead_fraction"],
    }
    if atoms is not None:
        row.update(recovery(atoms, adapter.W_dec))
    return row


def run_dataset(name, train, heldout, *, d_sae, k, steps, batch_size, seed, labels, reps, warmup, atoms=None):
    """Warm-up, then `reps` alternating rounds of full runs (each led by the floor), then FVU."""
    d = train.shape[1]
    threads = torch.get_num_threads()
    print(
        f"\n== {name} ({threads} thread{'s' if threads > 1 else ''}): {len(train)} training x {d} dims, "
        f"{len(heldout)} held-out; d_sae {d_sae}, k {k}, {steps} steps x {batch_size} (lr {LR}, atlasgen "
        f"schedule) -- load {loadavg()}",
        flush=True,
    )
    fit = dict(d_sae=d_sae, k=k, batch_size=batch_size, seed=seed)
    start = time.perf_counter()
    for label in labels:  # the same untimed warm-up for every trainer; AuxK after a quarter of it
        train_one(label, train, steps=warmup, dead_after=max(1, warmup // 4) * batch_size, **fit)
    print(f"  warm-up: {warmup} steps per trainer, {time.perf_counter() - start:.1f} s", flush=True)

    runs = {label: [] for label in labels}
    fingerprints = {label: [] for label in labels}
    floors, orders, first = [], [], {}
    for rep in range(reps):
        order = labels if rep % 2 == 0 else labels[::-1]
        orders.append(list(order))
        floors.append(matmul_floor(batch_size, d, d_sae))
        for label in order:
            t0 = time.perf_counter()
            model, samples_per_second = train_one(label, train, steps=steps, **fit)
            runs[label].append(samples_per_second)
            fingerprints[label].append(float(model.W_dec.double().sum()))
            if rep == 0:
                first[label] = model
            print(
                f"  round {rep + 1}/{reps}  {label:<20} {samples_per_second:9,.0f} samples/s "
                f"({time.perf_counter() - t0:5.1f} s)  load {loadavg()}",
                flush=True,
            )
        print(f"  round {rep + 1}/{reps}  {'floor':<20} {floors[-1]:9,.0f} samples/s", flush=True)

    quality = {label: score(first[label], heldout, k, atoms) for label in labels}
    return {
        "d_in": d,
        "d_sae": d_sae,
        "k": k,
        "steps": steps,
        "batch_size": batch_size,
        "n_train": len(train),
        "n_heldout": len(heldout),
        "warmup_steps": warmup,
        "speed_reps": reps,
        "orders": orders,
        "floor_runs": floors,
        "floor": float(np.median(floors)),
        "runs": runs,
        "speed": {label: float(np.median(v)) for label, v in runs.items()},
        "same_weights_every_run": {label: len(set(v)) == 1 for label, v in fingerprints.items()},
        "quality": quality,
        "threads": threads,
    }


def child(args, threads: int, out: Path) -> None:
    torch.set_num_threads(threads)  # before any other torch work
    ATLASGEN_INPUT["kind"] = "tensor" if args.atlasgen_tensor else "numpy"
    labels = ["atlasgen"] + [PEER_LABEL[p] for p in args.peers]
    result = {"threads": torch.get_num_threads(), "load_before": loadavg(), "datasets": {}}
    print(
        f"\n-- child process: torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"load {loadavg()}",
        flush=True,
    )
    common = dict(seed=args.seed, labels=labels, reps=args.speed_reps)
    for name in args.datasets:
        if name == "demo":
            demo = load_demo(ROOT)
            if demo is None:
                print(
                    "\n== demo: no cached activations under .atlasgen/activations; run `atlasgen "
                    "build -q` first"
                )
                continue
            train, heldout, where = demo
            steps = args.steps or (300 if args.quick else 3000)
            res = run_dataset(
                "demo mixed5b",
                train,
                heldout,
                d_sae=args.expansion * train.shape[1],
                k=args.k or 8,
                steps=steps,
                batch_size=args.batch_size or 512,
                warmup=min(steps, args.warmup_steps),
                **common,
            )
            res["source"] = where
        else:  # synthetic
            n = 8_192 if args.quick else args.synthetic_n
            d, k_true = 1024, 16
            d_sae = args.expansion * d
            # a seed of its own: atlasgen's init draws from torch.Generator(seed), and the same stream
            # would hand it the true atoms as its initial decoder
            train, heldout, atoms = make_synthetic(
                n, 2_048 if args.quick else 8_192, d, d_sae // 2, k_true, seed=1_000_003 + args.seed
            )
            steps = args.steps or (30 if args.quick else SYNTHETIC_STEPS)
            res = run_dataset(
                "synthetic",
                train,
                heldout,
                d_sae=d_sae,
                k=args.k or k_true,
                steps=steps,
                batch_size=args.batch_size or 512,
                warmup=min(steps, args.warmup_steps),
                atoms=atoms,
                **common,
            )
            res.update({"n_atoms": d_sae // 2, "k_true": k_true})
        result["datasets"][name] = res
    result["load_after"] = loadavg()
    out.write_text(json.dumps(result, indent=1))


# -----------------------------------------------------------------------------
# the parent: one child per thread count, then the side-by-side tables


def _threads_label(t: int) -> str:
    return f"{t} thread" + ("s" if t > 1 else "")


def print_table(name: str, by_threads: dict[int, dict]) -> None:
    threads = sorted(by_threads)
    res = by_threads[threads[0]]
    labels = list(res["speed"])
    width = max(20, *(len(lab) for lab in labels))

    def line(title, cells):
        print(f"| {title:<34} | " + " | ".join(f"{c:>{width}}" for c in cells) + " |")

    floors = ", ".join(f"{_threads_label(t)} {by_threads[t]['floor']:,.0f}" for t in threads)
    print(
        f"\n{name}: d {res['d_in']} -> {res['d_sae']}, k {res['k']}, {res['steps']} steps x "
        f"{res['batch_size']}; "
        f"speed = median of {res['speed_reps']} full runs per trainer, alternated, after a "
        f"{res['warmup_steps']}-step warm-up each; floor (samples/s): {floors}"
    )
    line("measure", labels)
    print(f"|{'-' * 36}|" + "|".join("-" * (width + 1) + ":" for _ in labels) + "|")
    for t in threads:
        r = by_threads[t]
        line(f"samples/s, {_threads_label(t)}", [f"{r['speed'][lab]:,.0f}" for lab in labels])
        line(
            f"  range of the {len(r['runs'][labels[0]])} runs",
            [f"{min(r['runs'][lab]):,.0f}-{max(r['runs'][lab]):,.0f}" for lab in labels],
        )
        line(f"  x floor, {_threads_label(t)}", [f"{r['speed'][lab] / r['floor']:.3f}" for lab in labels])
    for t in threads:
        r = by_threads[t]
        ours = r["speed"]["atlasgen"]
        line(
            f"atlasgen / this, {_threads_label(t)}",
            ["-"] + [f"{ours / r['speed'][lab]:.2f}x" for lab in labels[1:]],
        )
    metrics = [
        ("FVU (inference)", "fvu", "{:.4f}"),
        ("L0 (inference)", "l0", "{:.2f}"),
        ("dead fraction", "dead_fraction", "{:.3f}"),
        ("FVU at L0 = k", "fvu_at_l0_k", "{:.4f}"),
        ("dead at L0 = k", "dead_at_l0_k", "{:.3f}"),
    ]
    if "recovery" in res["quality"][labels[0]]:
        metrics += [
            ("recovery (mean best cos)", "recovery", "{:.3f}"),
            ("atoms with cos > 0.9", "recovered_0.9", "{:.3f}"),
        ]
    for title, key, fmt in metrics:
        cells = []
        for lab in labels:  # one value when every thread count gives the same, else one per count
            values = list(dict.fromkeys(fmt.format(by_threads[t]["quality"][lab][key]) for t in threads))
            cells.append(" / ".join(values))
        line(title, cells)
    for lab in labels[1:]:
        q, p = res["quality"]["atlasgen"], res["quality"][lab]
        ratios = ", ".join(
            f"{by_threads[t]['speed']['atlasgen'] / by_threads[t]['speed'][lab]:.2f}x at {_threads_label(t)}"
            for t in threads
        )
        print(
            f"  atlasgen vs {lab}: speed {ratios} (target >= 1.5); FVU {q['fvu']:.4f} vs {p['fvu']:.4f} "
            f"at L0 {q['l0']:.1f} vs {p['l0']:.1f}; at L0 = k {q['fvu_at_l0_k']:.4f} vs "
            f"{p['fvu_at_l0_k']:.4f} "
            f"(target <=); dead {q['dead_fraction']:.3f} vs {p['dead_fraction']:.3f} (target <=)"
        )
    varied = [
        f"{lab} ({_threads_label(t)})"
        for t in threads
        for lab, same in by_threads[t]["same_weights_every_run"].items()
        if not same
    ]
    if varied:
        print(f"  note: the runs of {', '.join(varied)} did not all end with the same weights")


def parent(args) -> None:
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, overcomplete "
        f"{_version('overcomplete')}; "
        f"{platform.machine()}, {os.cpu_count()} CPUs; threads {args.threads}; load {loadavg()}",
        flush=True,
    )
    results = {"argv": sys.argv[1:], "load_before": loadavg(), "threads": args.threads, "children": {}}
    results["atlasgen_input"] = "tensor" if args.atlasgen_tensor else "numpy"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_sae_") as tmp:
        for t in args.threads:
            out = Path(tmp) / f"threads_{t}.json"
            env = dict(os.environ, OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t))
            cmd = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--child", str(t), str(out)]
            done = subprocess.run(cmd, env=env, check=False)
            if done.returncode != 0:
                sys.exit(f"bench_sae: the {_threads_label(t)} child process failed (exit {done.returncode})")
            results["children"][str(t)] = json.loads(out.read_text())
    results["load_after"] = loadavg()
    results["seconds"] = time.perf_counter() - start
    for name in args.datasets:
        by_threads = {
            t: results["children"][str(t)]["datasets"][name]
            for t in args.threads
            if name in results["children"][str(t)]["datasets"]
        }
        if by_threads:
            print_table(name, by_threads)
    print(
        f"\nload average before {results['load_before']}, after {results['load_after']}; "
        f"whole run {results['seconds'] / 60:.1f} min"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


SYNTHETIC_STEPS = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, help=f"training steps (default: demo 3000, synthetic {SYNTHETIC_STEPS})"
    )
    parser.add_argument("--batch-size", type=int, help="vectors per step (default: demo 512, synthetic 512)")
    parser.add_argument("--k", type=int, help="average actives per vector (default: demo 8, synthetic 16)")
    parser.add_argument("--expansion", type=int, default=4, help="d_sae / d_in (default 4)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps, small synthetic set")
    parser.add_argument("--datasets", default="demo,synthetic", help="comma-separated: demo, synthetic")
    parser.add_argument("--peers", default="own,matched", help="overcomplete variants: own, matched")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 2],
        help="torch thread counts, each measured in its own process (default: 1 2)",
    )
    parser.add_argument(
        "--atlasgen-tensor",
        action="store_true",
        help="give atlasgen's trainer the torch tensor instead of a numpy array (see the docs)",
    )
    parser.add_argument(
        "--speed-reps", type=int, default=2, help="alternating full runs per trainer (default 2; median)"
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=20, help="untimed warm-up steps per trainer (default 20)"
    )
    parser.add_argument("--synthetic-n", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", nargs=2, metavar=("THREADS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    args.datasets = [n for n in args.datasets.split(",") if n]
    if any(n not in ("demo", "synthetic") for n in args.datasets):
        parser.error(f"--datasets: choose from demo, synthetic (got {','.join(args.datasets)})")
    args.peers = [p for p in args.peers.split(",") if p]
    if any(p not in PEER_LABEL for p in args.peers):
        parser.error(f"--peers: choose from {sorted(PEER_LABEL)}")
    if any(t < 1 for t in args.threads):
        parser.error("--threads: thread counts must be >= 1")
    if args.speed_reps < 1 or args.warmup_steps < 1:
        parser.error("--speed-reps and --warmup-steps must be >= 1")

    try:  # fail early when the bench extra is missing
        import overcomplete  # noqa: F401
    except ImportError as exc:
        sys.exit(
            f"bench_sae needs the bench extra (overcomplete 0.3.0, Python < 3.13): "
            f"pip install -e '.[bench]' -c constraints.txt ({exc})"
        )
    if args.child:
        child(args, int(args.child[0]), Path(args.child[1]))
    else:
        parent(args)


def _version(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    sys.exit(main())
