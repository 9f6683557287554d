"""The examples scan against its floor, and its memory at 1x and 10x the dataset.

The floor is the work no scan can avoid: a bare forward pass to the layer and
the bare SAE encoder matmul ``(x - b_dec) @ W_enc`` over every position, on
the same batches (already in memory, so image decoding is out of both). The
scan is ``atlasgen.stages.examples.scan`` (top-k, bands, histogram, densities,
co-occurrence) on the same batches, then ``finish`` (bands merged, histogram
re-binned, co-occurrence counted). Floor and scan alternate, ``--repeats``
times each, and the fastest of each is kept (the machine is shared). The
second pass that recomputes maps for the shown images is timed separately.

Two workloads:

* demo: the demo model's mixed5b and its SAE from a built cache
  (``--cache``, default ``.atlasgen``), on the training images;
* inception: InceptionV1 mixed5b (lucent, random weights) with a 16x SAE
  (16,384 features over 1,024 channels, random weights, BatchTopK threshold set
  for about 32 active features per position) on ``--n`` generated 224 px images.

Peak memory: the scan runs in a child process on the dataset repeated 1x and
10x (as distinct image indices); the reported figure is the growth of the
child's peak RSS during the scan.

Both workloads are also compared batch by batch (:func:`interleaved`): the floor's work on a
batch, then the scan's, the fastest of several runs kept per batch, in wall and CPU time. On a
shared machine this moves far less between runs than whole-run timings.

Usage: python benchmarks/bench_examples.py [--cache .atlasgen] [--n 300] [--repeats 2] [--threads N]
       [--interleaved-only] [--skip-inception] [--skip-demo] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from atlasgen.config import ExamplesConfig
from atlasgen.models import layer_activations, positions_as_vectors
from atlasgen.stages.examples import add_maps, scan

ROOT = Path(__file__).resolve().parents[1]


def latest(cache: Path, stage: str) -> Path:
    key = json.loads((cache / stage / "latest.json").read_text())["key"]
    return cache / stage / key


def demo_workload(cache: Path, batch_size: int, load: bool = True):
    from atlasgen.config import ModelConfig
    from atlasgen.data import open_dataset
    from atlasgen.models import load_model
    from atlasgen.sae_formats import load_sae_any

    data = open_dataset(latest(cache, "dataset"))
    model = load_model(latest(cache, "model"), ModelConfig(), data.n_classes)
    sae = load_sae_any(latest(cache, "sae") / "mixed5b").eval()
    idx = data.indices("train")
    batches = (
        [
            (idx[s : s + batch_size], data.batch(idx[s : s + batch_size]))
            for s in range(0, len(idx), batch_size)
        ]
        if load
        else None
    )
    return model, sae, "mixed5b", batches, data


def inception_workload(n: int, batch_size: int):
    from lucent.modelzoo import inceptionv1

    from atlasgen.sae import SparseAutoencoder

    torch.manual_seed(0)
    model = inceptionv1(pretrained=False).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    # Smooth random images: low-resolution noise upsampled to 224 px.
    images = torch.nn.functional.interpolate(
        torch.rand(n, 3, 14, 14, generator=g), size=224, mode="bicubic"
    ).clamp(0, 1)
    d, F = 1024, 16 * 1024
    sae = SparseAutoencoder(d, F, "batchtopk", k=32)
    with torch.no_grad():
        W = torch.randn(d, F, generator=g) / d**0.5
        sae.W_enc.copy_(W)
        sae.W_dec.copy_(W.T / W.T.norm(dim=1, keepdim=True))
        probe = positions_as_vectors(layer_activations(model, images[:8], ["mixed5b"])["mixed5b"])
        pre = torch.relu(sae.encode_pre(probe))
        sae.threshold.fill_(float(pre.flatten().kthvalue(pre.numel() - 32 * probe.shape[0]).values))
    sae.eval().requires_grad_(False)
    batches = [
        (np.arange(s, min(s + batch_size, n)), images[s : s + batch_size]) for s in range(0, n, batch_size)
    ]
    return model, sae, "mixed5b", batches, None


class _Clock:
    """Wall time and this process's CPU time (user + system, all threads) of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


@torch.no_grad()
def floor(model, sae, layer, batches) -> _Clock:
    with _Clock() as clock:
        for _, x in batches:
            v = positions_as_vectors(layer_activations(model, x, [layer])[layer])
            (v - sae.b_dec) @ sae.W_enc
    return clock


@torch.no_grad()
def timed_scan(model, sae, layer, batches, cfg) -> tuple[_Clock, _Clock, tuple]:
    labels = np.zeros(
        max(int(b[0].max()) for b in batches) + 1, dtype=np.int64
    )  # one class: the histogram's cost
    with _Clock() as t_scan:
        stats, cooc, grid = scan(model, sae, layer, batches, cfg, "cpu", labels=labels, n_classes=1)
    with _Clock() as t_finish:
        results = {name: s.finish(labels, 1, cfg.histogram_bins, grid) for name, s in stats.items()}
        cooc.finish()
    return t_scan, t_finish, (results, grid)


@torch.no_grad()
def interleaved(model, sae, layer, batches, cfg, repeats) -> dict:
    """Floor and scan batch by batch: before the scan sees a batch, the floor's work on that batch
    runs and is timed; the scan's own work on it is the time until it asks for the next batch (its
    final merges go to its last batch). Per batch, the fastest of ``repeats`` runs is kept for each,
    so a burst of load on a shared machine spoils one batch of one run, not a whole run."""
    n = len(batches)
    wall = np.full((2, repeats, n), np.inf)
    cpu = np.full((2, repeats, n), np.inf)

    def feed(r):
        for i, (idx, x) in enumerate(batches):
            w, c = time.perf_counter(), time.process_time()
            v = positions_as_vectors(layer_activations(model, x, [layer])[layer])
            (v - sae.b_dec) @ sae.W_enc
            del v
            w2, c2 = time.perf_counter(), time.process_time()
            wall[0, r, i], cpu[0, r, i] = w2 - w, c2 - c
            yield idx, x
            wall[1, r, i], cpu[1, r, i] = time.perf_counter() - w2, time.process_time() - c2

    labels = np.zeros(max(int(b[0].max()) for b in batches) + 1, dtype=np.int64)
    for r in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        scan(model, sae, layer, feed(r), cfg, "cpu", labels=labels, n_classes=1)
        w, c = time.perf_counter() - w, time.process_time() - c
        wall[1, r, -1] += w - wall[:, r].sum()  # the scan's final merges
        cpu[1, r, -1] += c - cpu[:, r].sum()
    fl_w, sc_w = wall[0].min(0).sum(), wall[1].min(0).sum()
    fl_c, sc_c = cpu[0].min(0).sum(), cpu[1].min(0).sum()
    return {
        "floor_s": fl_w,
        "scan_s": sc_w,
        "ratio": sc_w / fl_w,
        "floor_cpu_s": fl_c,
        "scan_cpu_s": sc_c,
        "cpu_ratio": sc_c / fl_c,
        "extra_ms_per_batch": 1000 * (sc_w - fl_w) / n,
        "floor_ms_per_batch": 1000 * fl_w / n,
    }


class _Batches:
    """A dataset view over in-memory batches, for add_maps."""

    def __init__(self, batches):
        self.x = torch.cat([x for _, x in batches])
        self.pos = {int(i): n for n, i in enumerate(np.concatenate([i for i, _ in batches]))}

    def batch(self, idx):
        return self.x[[self.pos[int(i)] for i in idx]]


def compare(name, model, sae, layer, batches, cfg, repeats, interleaved_only=False) -> dict:
    """Floor and scan alternate ``repeats`` times; the fastest of each is kept, in wall time and in
    CPU time (CPU time moves less when other processes share the cores). Then the interleaved
    per-batch comparison (:func:`interleaved`), alone with ``interleaved_only``."""
    n_images = sum(len(i) for i, _ in batches)
    if interleaved_only:
        floor(model, sae, layer, batches[:1])  # warm-up
        inter = interleaved(model, sae, layer, batches, cfg, max(repeats, 3))
        print(
            f"{name}: {n_images} images, {torch.get_num_threads()} threads, interleaved per batch (fastest of "
            f"{max(repeats, 3)} per batch): floor {inter['floor_s']:.2f} s | scan {inter['scan_s']:.2f} s "
            f"(x{inter['ratio']:.2f}) | cpu: floor {inter['floor_cpu_s']:.2f} s, scan {inter['scan_cpu_s']:.2f} s "
            f"(x{inter['cpu_ratio']:.2f}) | floor {inter['floor_ms_per_batch']:.1f} ms + scan's extra "
            f"{inter['extra_ms_per_batch']:.1f} ms per batch"
        )
        return {
            "workload": name,
            "images": n_images,
            "threads": torch.get_num_threads(),
            "interleaved": inter,
        }
    floor(model, sae, layer, batches[:1])  # warm-up
    timed_scan(model, sae, layer, batches[:2], cfg)
    floors, scans, finishes = [], [], []
    for _ in range(repeats):
        floors.append(floor(model, sae, layer, batches))
        t_scan, t_finish, (results, grid) = timed_scan(model, sae, layer, batches, cfg)
        scans.append(t_scan)
        finishes.append(t_finish)
        print(
            f"  run: floor {floors[-1].wall:.2f} s (cpu {floors[-1].cpu:.2f} s) | scan {t_scan.wall:.2f} s "
            f"(cpu {t_scan.cpu:.2f} s) | finish {t_finish.wall:.2f} s",
            flush=True,
        )
    start = time.perf_counter()
    add_maps(results, model, sae, layer, _Batches(batches), "cpu", grid, cfg.batch_size)
    t_maps = time.perf_counter() - start
    shown = len(
        np.unique(
            np.concatenate([r[k][r[k] >= 0] for r in results.values() for k in ("top_idx", "band_idx")])
        )
    )
    row = {
        "workload": name,
        "images": n_images,
        "batches": len(batches),
        "threads": torch.get_num_threads(),
        "features": int(sae.W_enc.shape[1]),
        "neurons": int(sae.W_enc.shape[0]),
        "floor_s": min(c.wall for c in floors),
        "scan_s": min(c.wall for c in scans),
        "finish_s": min(c.wall for c in finishes),
        "maps_s": t_maps,
        "maps_images": shown,
        "floor_cpu_s": min(c.cpu for c in floors),
        "scan_cpu_s": min(c.cpu for c in scans),
        "finish_cpu_s": min(c.cpu for c in finishes),
    }
    row["scan_ratio"] = row["scan_s"] / row["floor_s"]
    row["scan_finish_ratio"] = (row["scan_s"] + row["finish_s"]) / row["floor_s"]
    row["scan_cpu_ratio"] = row["scan_cpu_s"] / row["floor_cpu_s"]
    row["scan_finish_cpu_ratio"] = (row["scan_cpu_s"] + row["finish_cpu_s"]) / row["floor_cpu_s"]
    # Each repeat's own ratio (floor and scan taken back to back), the least loaded one first.
    row["paired_ratios"] = sorted(s.wall / f.wall for f, s in zip(floors, scans))
    extra_ms = 1000 * (row["scan_cpu_s"] - row["floor_cpu_s"]) / len(batches)
    print(
        f"{name}: {n_images} images, {row['features']} features + {row['neurons']} neurons, "
        f"{row['threads']} threads, best of {repeats}"
    )
    print(
        f"  wall: floor (forward + encoder matmul) {row['floor_s']:.2f} s | scan {row['scan_s']:.2f} s "
        f"(x{row['scan_ratio']:.2f}) | + finish {row['finish_s']:.2f} s (x{row['scan_finish_ratio']:.2f}) | "
        f"paired ratios {', '.join(f'{r:.2f}' for r in row['paired_ratios'])}"
    )
    print(
        f"  cpu:  floor {row['floor_cpu_s']:.2f} s | scan {row['scan_cpu_s']:.2f} s (x{row['scan_cpu_ratio']:.2f}) | "
        f"+ finish {row['finish_cpu_s']:.2f} s (x{row['scan_finish_cpu_ratio']:.2f}) | "
        f"scan's extra CPU time {extra_ms:.1f} ms per batch of {cfg.batch_size}"
    )
    print(f"  maps pass: {t_maps:.2f} s for {shown} shown images ({shown / n_images:.0%} of the dataset)")
    inter = interleaved(model, sae, layer, batches, cfg, max(repeats, 3))
    row["interleaved"] = inter
    print(
        f"  interleaved per batch (fastest of {max(repeats, 3)} per batch): floor {inter['floor_s']:.2f} s | "
        f"scan {inter['scan_s']:.2f} s (x{inter['ratio']:.2f}) | cpu: floor {inter['floor_cpu_s']:.2f} s, "
        f"scan {inter['scan_cpu_s']:.2f} s (x{inter['cpu_ratio']:.2f}) | floor {inter['floor_ms_per_batch']:.1f} ms "
        f"+ scan's extra {inter['extra_ms_per_batch']:.1f} ms per batch"
    )
    return row


def memory_child(cache: Path, reps: int, batch_size: int) -> None:
    """Scan the demo's training images repeated ``reps`` times (distinct indices), read lazily from
    the memory-mapped dataset; print the growth of peak RSS during the scan (MiB) and the state size."""
    model, sae, layer, _, data = demo_workload(cache, batch_size, load=False)
    idx, n = data.indices("train"), len(data)
    cfg = ExamplesConfig(batch_size=batch_size)
    labels = np.tile(data.labels, reps)  # image i + r * n has image i's class
    scan(
        model,
        sae,
        layer,
        iter([(idx[:batch_size], data.batch(idx[:batch_size]))]),
        cfg,
        "cpu",
        labels=labels,
        n_classes=data.n_classes,
    )  # warm-up
    stream = (
        (idx[s : s + batch_size] + r * n, data.batch(idx[s : s + batch_size]))
        for r in range(reps)
        for s in range(0, len(idx), batch_size)
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats, cooc, _ = scan(model, sae, layer, stream, cfg, "cpu", labels=labels, n_classes=data.n_classes)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    state = sum(
        t.numel() * t.element_size()
        for s in stats.values()
        for t in (s.top.val, s.top.idx, s.top.pos, s.fine_hist, s.bands.keys, s.bands.val, s.bands.count)
    )
    state += cooc.peaks.numel() * 4 + cooc.keys.numel() * 8
    print(
        json.dumps(
            {
                "reps": reps,
                "images": reps * len(idx),
                "peak_growth_mib": (after - before) / 1024,
                "peak_rss_mib": after / 1024,
                "state_mib": state / 2**20,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=ROOT / ".atlasgen")
    ap.add_argument("--n", type=int, default=300, help="generated 224 px images for InceptionV1")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-inception", action="store_true")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument(
        "--interleaved-only", action="store_true", help="only the per-batch interleaved comparison"
    )
    ap.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.cache, args.memory_child, args.batch_size)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    cfg = ExamplesConfig(batch_size=args.batch_size)
    rows = (
        []
        if args.skip_demo
        else [
            compare(
                "demo",
                *demo_workload(args.cache, args.batch_size)[:4],
                cfg,
                args.repeats,
                args.interleaved_only,
            )
        ]
    )
    if not args.skip_inception:
        model, sae, layer, batches, _ = inception_workload(args.n, min(args.batch_size, 32))
        rows.append(
            compare(
                "inceptionv1-mixed5b-16x",
                model,
                sae,
                layer,
                batches,
                ExamplesConfig(batch_size=min(args.batch_size, 32)),
                args.repeats,
                args.interleaved_only,
            )
        )
    if not args.skip_memory:
        for reps in (1, 10):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--cache",
                    str(args.cache),
                    "--batch-size",
                    str(args.batch_size),
                    "--threads",
                    str(args.threads),
                    "--memory-child",
                    str(reps),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            m = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"memory: demo x{reps} ({m['images']} images): peak RSS {m['peak_rss_mib']:.0f} MiB, grew "
                f"{m['peak_growth_mib']:.1f} MiB during the scan (after a one-batch warm-up); "
                f"scan state {m['state_mib']:.1f} MiB"
            )
            rows.append(m)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
