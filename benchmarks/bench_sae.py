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

Timing: the machine may be shared, so samples/s comes from alternating short bursts of every
trainer (and the floor), repeated --speed-reps times, median per trainer; the full runs' own
samples/s is printed too. Use --threads to pin torch's thread count (under CPU contention two
OpenMP threads can be far slower than one, and not by the same factor for every trainer).

Also reported: the floor, i.e. samples/s of the same encoder/decoder matmuls (x @ W_enc,
f @ W_dec with dense f, and their three backward matmuls) timed alone; and FVU under exact
batch top-k at evaluation (L0 = k for every model), so FVU can be compared at equal L0 even when
the learned inference thresholds give different L0s.

Usage:
    python benchmarks/bench_sae.py [--steps N] [--batch-size B] [--k K] [--expansion E] [--quick]
           [--datasets demo,synthetic] [--threads T] [--speed-only] [--json results.json]
--steps/--batch-size/--k/--expansion override both data sets' defaults (demo: the shipped
site_config.yaml's sae settings, 3000 steps x 512, k 8, 4x; synthetic: 600 steps x 512, k 16, 4x;
50k training vectors from 2048 true atoms, 16 per vector).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
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


def gao_criterion(d_in: int, d_sae: int, batch_size: int, steps: int):
    """atlasgen's loss for overcomplete's train_sae: summed MSE + 1/32 AuxK on dead latents."""
    k_aux = max(1, min(d_in // 2, d_sae // 2))
    dead_after = min(asae.DEAD_AFTER_SAMPLES_MAX, max(batch_size, steps * batch_size // 20))
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


def train_overcomplete(train, *, d_sae, k, steps, batch_size, lr, seed, loss, dead_steps=None):
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
        criterion = gao_criterion(d, d_sae, batch_size, dead_steps or steps)
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


def matmul_floor(batch_size: int, d: int, d_sae: int, seconds: float = 3.0) -> float:
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
# main


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


PEER_LABEL = {"own": "overcomplete", "matched": "overcomplete-matched"}
ATLASGEN_INPUT = {"kind": "numpy"}


def ours_input(train: torch.Tensor):
    """What atlasgen trains on: by default a numpy array (zero-copy view of the same float32 rows),
    as the sae stage passes its numpy memmap; --atlasgen-tensor passes the torch tensor instead."""
    return train if ATLASGEN_INPUT["kind"] == "tensor" else train.numpy()


def speed_bursts(train, *, d_sae, k, batch_size, seed, peers, burst_steps, reps, full_steps):
    """Median samples/s of each trainer (and the floor) over `reps` alternating bursts.

    A burst treats latents as dead after as many samples as the full run would (not 5% of the
    burst), so AuxK does in a burst what it does in the middle of a real run."""
    dead_after = min(asae.DEAD_AFTER_SAMPLES_MAX, max(batch_size, full_steps * batch_size // 20))
    runs = {"floor": [], "atlasgen": [], **{PEER_LABEL[p]: [] for p in peers}}
    for _ in range(reps):
        runs["floor"].append(matmul_floor(batch_size, train.shape[1], d_sae, seconds=1.0))
        _, stats = asae.train_sae(
            ours_input(train),
            d_sae=d_sae,
            architecture="batchtopk",
            k=k,
            steps=burst_steps,
            batch_size=batch_size,
            lr=LR,
            seed=seed,
            dead_after_samples=dead_after,
        )
        runs["atlasgen"].append(stats["samples_per_second"])
        for loss in peers:
            _, speed = train_overcomplete(
                train,
                d_sae=d_sae,
                k=k,
                steps=burst_steps,
                batch_size=batch_size,
                lr=LR,
                seed=seed,
                loss=loss,
                dead_steps=full_steps,
            )
            runs[PEER_LABEL[loss]].append(speed["samples_per_second"])
    return {label: float(np.median(v)) for label, v in runs.items()}, runs


def run_dataset(
    name,
    train,
    heldout,
    *,
    d_sae,
    k,
    steps,
    batch_size,
    seed,
    atoms=None,
    peers=("own", "matched"),
    burst_steps=20,
    speed_reps=3,
    speed_only=False,
):
    d = train.shape[1]
    print(
        f"\n== {name}: {len(train)} training x {d} dims, {len(heldout)} held-out; d_sae {d_sae}, k {k}, "
        f"{steps} steps x {batch_size} (lr {LR}, atlasgen schedule) -- load {loadavg()}",
        flush=True,
    )
    rows = {}
    speed, bursts = speed_bursts(
        train,
        d_sae=d_sae,
        k=k,
        batch_size=batch_size,
        seed=seed,
        peers=peers,
        burst_steps=burst_steps,
        reps=speed_reps,
        full_steps=steps,
    )
    floor = speed["floor"]
    print(
        f"  speed, median of {speed_reps} alternating bursts of {burst_steps} steps (samples/s): "
        + ", ".join(f"{label} {v:,.0f}" for label, v in speed.items())
        + f" -- load {loadavg()}",
        flush=True,
    )
    result = {
        "floor_samples_per_second": floor,
        "d_in": d,
        "d_sae": d_sae,
        "k": k,
        "steps": steps,
        "batch_size": batch_size,
        "n_train": len(train),
        "n_heldout": len(heldout),
        "rows": rows,
        "burst_steps": burst_steps,
        "speed_reps": speed_reps,
        "bursts": bursts,
        "speed_only": speed_only,
    }
    if speed_only:
        for label in speed:
            if label != "floor":
                rows[label] = {"samples_per_second": speed[label], "floor_fraction": speed[label] / floor}
        return result

    def score(label, adapter, run_speed):
        ev = asae.evaluate_sae(adapter, heldout)
        exact = asae.evaluate_sae(ExactBatchTopK(adapter, k), heldout)
        row = {
            "samples_per_second": speed[label],
            "full_run_samples_per_second": run_speed["samples_per_second"],
            "full_run_seconds": run_speed["loop_seconds"],
            "fvu": ev["fvu"],
            "l0": ev["l0"],
            "dead_fraction": ev["dead_fraction"],
            "dense_fraction": ev["dense_fraction"],
            "fvu_at_l0_k": exact["fvu"],
            "dead_at_l0_k": exact["dead_fraction"],
            "load_after": loadavg(),
        }
        if atoms is not None:
            row.update(recovery(atoms, adapter.W_dec))
        row["floor_fraction"] = row["samples_per_second"] / floor
        rows[label] = row
        print(
            f"  {label:<20} full run {row['full_run_samples_per_second']:9,.0f} samples/s  fvu {row['fvu']:.4f}  l0 {row['l0']:.2f}  "
            f"dead {row['dead_fraction']:.3f}  fvu@L0=k {row['fvu_at_l0_k']:.4f}"
            + (f"  recovery {row['recovery']:.3f}" if atoms is not None else "")
            + f"  (load {row['load_after']})",
            flush=True,
        )

    sae, stats = asae.train_sae(
        ours_input(train),
        d_sae=d_sae,
        architecture="batchtopk",
        k=k,
        steps=steps,
        batch_size=batch_size,
        lr=LR,
        seed=seed,
    )
    score("atlasgen", OursAdapter(sae.eval()), stats)
    for loss in peers:
        model, run_speed = train_overcomplete(
            train, d_sae=d_sae, k=k, steps=steps, batch_size=batch_size, lr=LR, seed=seed, loss=loss
        )
        score(PEER_LABEL[loss], model, run_speed)
    return result


def print_table(name, res):
    rows = res["rows"]
    labels = list(rows)
    metrics = [
        ("samples/s (bursts, median)", "samples_per_second", "{:,.0f}"),
        ("x floor", "floor_fraction", "{:.3f}"),
    ]
    if not res["speed_only"]:
        metrics += [
            ("samples/s (full run)", "full_run_samples_per_second", "{:,.0f}"),
            ("FVU (inference)", "fvu", "{:.4f}"),
            ("L0 (inference)", "l0", "{:.2f}"),
            ("dead fraction", "dead_fraction", "{:.3f}"),
            ("FVU at L0 = k", "fvu_at_l0_k", "{:.4f}"),
            ("dead at L0 = k", "dead_at_l0_k", "{:.3f}"),
        ]
        if "recovery" in rows[labels[0]]:
            metrics += [
                ("recovery (mean best cos)", "recovery", "{:.3f}"),
                ("atoms with cos > 0.9", "recovered_0.9", "{:.3f}"),
            ]
    print(
        f"\n{name}: d {res['d_in']} -> {res['d_sae']}, k {res['k']}, {res['steps']} steps x {res['batch_size']}; "
        f"floor {res['floor_samples_per_second']:,.0f} samples/s; speed = median of {res['speed_reps']} "
        f"alternating bursts of {res['burst_steps']} steps"
    )
    print(f"| {'measure':<26} | " + " | ".join(f"{lab:>20}" for lab in labels) + " |")
    print(f"|{'-' * 28}|" + "|".join("-" * 21 + ":" for _ in labels) + "|")
    for title, key, fmt in metrics:
        print(f"| {title:<26} | " + " | ".join(f"{fmt.format(rows[lab][key]):>20}" for lab in labels) + " |")
    ours = rows["atlasgen"]
    for lab in labels[1:]:
        peer = rows[lab]
        line = f"  atlasgen vs {lab}: speed {ours['samples_per_second'] / peer['samples_per_second']:.2f}x (target >= 1.5)"
        if not res["speed_only"]:
            line += (
                f", full runs {ours['full_run_samples_per_second'] / peer['full_run_samples_per_second']:.2f}x; "
                f"FVU {ours['fvu']:.4f} vs {peer['fvu']:.4f} at L0 {ours['l0']:.1f} vs {peer['l0']:.1f}; "
                f"at L0 = k {ours['fvu_at_l0_k']:.4f} vs {peer['fvu_at_l0_k']:.4f} (target <=); "
                f"dead {ours['dead_fraction']:.3f} vs {peer['dead_fraction']:.3f} (target <=)"
            )
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="training steps (default: demo 3000, synthetic 600)")
    parser.add_argument("--batch-size", type=int, help="vectors per step (default: demo 512, synthetic 512)")
    parser.add_argument("--k", type=int, help="average actives per vector (default: demo 8, synthetic 16)")
    parser.add_argument("--expansion", type=int, default=4, help="d_sae / d_in (default 4)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps, small synthetic set")
    parser.add_argument("--datasets", default="demo,synthetic", help="comma-separated: demo, synthetic")
    parser.add_argument("--peers", default="own,matched", help="overcomplete variants: own, matched")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument(
        "--atlasgen-tensor",
        action="store_true",
        help="give atlasgen's trainer the torch tensor instead of a numpy array (see the docs)",
    )
    parser.add_argument(
        "--speed-only", action="store_true", help="only the alternating speed bursts, no full runs"
    )
    parser.add_argument(
        "--speed-reps", type=int, default=3, help="alternating speed bursts per trainer (default 3)"
    )
    parser.add_argument("--synthetic-n", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    try:  # fail early when the bench extra is missing
        import overcomplete  # noqa: F401
    except ImportError as exc:
        sys.exit(
            f"bench_sae needs the bench extra (overcomplete 0.3.0, Python < 3.13): "
            f"pip install -e '.[bench]' -c constraints.txt ({exc})"
        )

    if args.threads:
        torch.set_num_threads(args.threads)
    ATLASGEN_INPUT["kind"] = "tensor" if args.atlasgen_tensor else "numpy"
    print(
        f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"overcomplete {_version('overcomplete')}; {platform.machine()}, {os.cpu_count()} CPUs; load {loadavg()}"
    )
    results = {
        "load_before": loadavg(),
        "threads": torch.get_num_threads(),
        "argv": sys.argv[1:],
        "atlasgen_input": ATLASGEN_INPUT["kind"],
    }
    peers = tuple(p for p in args.peers.split(",") if p)
    if any(p not in PEER_LABEL for p in peers):
        parser.error(f"--peers: choose from {sorted(PEER_LABEL)}")
    common = dict(seed=args.seed, peers=peers, speed_reps=args.speed_reps, speed_only=args.speed_only)
    for name in [n for n in args.datasets.split(",") if n]:
        if name == "demo":
            demo = load_demo(ROOT)
            if demo is None:
                print(
                    "\n== demo: no cached activations under .atlasgen/activations; run `atlasgen build -q` first"
                )
                continue
            train, heldout, where = demo
            print(f"\n(demo activations: {where})")
            steps = args.steps or (300 if args.quick else 3000)
            res = run_dataset(
                "demo mixed5b",
                train,
                heldout,
                d_sae=args.expansion * train.shape[1],
                k=args.k or 8,
                steps=steps,
                batch_size=args.batch_size or 512,
                burst_steps=min(steps, 100),
                **common,
            )
            res["source"] = where
        elif name == "synthetic":
            n = 8_192 if args.quick else args.synthetic_n
            d, k_true = 1024, 16
            d_sae = args.expansion * d
            # a seed of its own: atlasgen's init draws from torch.Generator(seed), and the same stream
            # would hand it the true atoms as its initial decoder
            train, heldout, atoms = make_synthetic(
                n, 2_048 if args.quick else 8_192, d, d_sae // 2, k_true, seed=1_000_003 + args.seed
            )
            steps = args.steps or (30 if args.quick else 600)
            res = run_dataset(
                "synthetic",
                train,
                heldout,
                d_sae=d_sae,
                k=args.k or k_true,
                steps=steps,
                batch_size=args.batch_size or 512,
                atoms=atoms,
                burst_steps=min(steps, 30),
                **common,
            )
            res.update({"n_atoms": d_sae // 2, "k_true": k_true})
        else:
            parser.error(f"unknown data set {name!r}")
        results[name] = res
    results["load_after"] = loadavg()
    for name in ("demo", "synthetic"):
        if name in results:
            print_table(name, results[name])
    print(
        f"\nload average before {results['load_before']}, after {results['load_after']}; "
        f"{results['threads']} torch threads"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def _version(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    sys.exit(main())
