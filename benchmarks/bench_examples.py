"""The examples scan against its floor, and its memory at 1x and 10x the dataset.

The floor is the work no scan can avoid: reading the images as the build does, a bare forward
pass to the layer and the bare SAE encoder matmul ``(x - b_dec) @ W_enc`` over every position.
The scan is ``atlasgen.scan.scan`` (top-k, bands, histogram, densities,
co-occurrence), then ``finish`` (bands merged, histogram re-binned, co-occurrence counted). Both
read their batches the way the examples stage does, through ``Dataset.batches`` inside the timed
region, so image decoding is in both. Floor and scan alternate, ``--repeats`` times each, and
the fastest of each is kept (the machine is shared). The second pass that recomputes maps for
the shown images (``unit_maps``, which reads the shown images through ``Dataset.batches`` too) is
timed separately. Two more rows, labelled, explain the floor: the images read alone, and the
floor's compute alone on batches decoded before the clock starts.

Two workloads:

* demo: the demo model's mixed5b and its SAE from a built cache (``--cache``, default
  ``.atlasgen``), on the training images. The demo's dataset stage stores its generated images
  as ``images.npy``; every pass of the build reads that memory-mapped array, and so do both
  sides here (nothing to decode);
* inception: InceptionV1 mixed5b (lucent, random weights) with a 16x SAE (16,384 features over
  1,024 channels, random weights, BatchTopK threshold set for about 32 active features per
  position) on ``--n`` generated 256 px JPEGs in a folder on disk (bench_reference.py's
  ``write_images``, listed in a dataset artifact as the dataset stage writes it), decoded,
  resized and centre-cropped to 224 px by ``--workers`` decode processes (``decode.workers``;
  default -1, the machine's cores, as the config's default gives).

Wall time is the headline. CPU time counts this process and its finished decode workers.

Peak memory: the scan runs in a child process on the demo's dataset repeated 1x and 10x (as
distinct image indices); the reported figure is the growth of the child's peak RSS during the scan.

Both workloads are also compared batch by batch (:func:`interleaved`): per batch, the wait for
the decoded batch and the floor's work on it, then the same wait and the scan's work, the fastest
of several runs kept per batch, in wall and CPU time (CPU time of this process only: the decode
workers' time is not split by batch). On a shared machine this moves far less between runs than
whole-run timings.

Usage: python benchmarks/bench_examples.py [--cache .atlasgen] [--n 300] [--repeats 2] [--threads N]
       [--workers N] [--interleaved-only] [--skip-inception] [--skip-demo] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from bench_decode import write_artifact  # noqa: E402
from bench_reference import write_images  # noqa: E402

from atlasgen.config import DecodeConfig, ExamplesConfig  # noqa: E402
from atlasgen.data import Dataset, local_workers, open_dataset  # noqa: E402
from atlasgen.models import layer_activations, positions_as_vectors  # noqa: E402
from atlasgen.scan import add_maps, scan, shown_images, shown_union, unit_maps  # noqa: E402


def latest(cache: Path, stage: str) -> Path:
    key = json.loads((cache / stage / "latest.json").read_text())["key"]
    return cache / stage / key


@dataclass
class Workload:
    """A model, its SAE on ``layer``, and the dataset whose ``indices`` the scan reads."""

    model: torch.nn.Module
    sae: torch.nn.Module
    layer: str
    data: Dataset
    indices: np.ndarray
    batch_size: int

    def batches(self, n: int | None = None):
        """The batches the examples stage reads: ``Dataset.batches`` over the (first n) indices."""
        return self.data.batches(self.indices[:n], self.batch_size)


def demo_workload(cache: Path, batch_size: int) -> Workload:
    from atlasgen.config import ModelConfig
    from atlasgen.models import load_model
    from atlasgen.sae_formats import load_sae_any

    data = open_dataset(latest(cache, "dataset"))
    model = load_model(latest(cache, "model"), ModelConfig(), data.n_classes)
    sae = load_sae_any(latest(cache, "sae") / "mixed5b").eval()
    return Workload(model, sae, "mixed5b", data, data.indices("train"), batch_size)


def inception_workload(n: int, batch_size: int, folder: Path, workers: int) -> Workload:
    from lucent.modelzoo import inceptionv1

    from atlasgen.sae import SparseAutoencoder

    write_images(folder / "images", n, classes=8)
    write_artifact(folder / "images", folder / "dataset", size=224)
    data = Dataset(folder / "dataset", DecodeConfig(workers=workers))
    torch.manual_seed(0)
    model = inceptionv1(pretrained=False).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    d, F = 1024, 16 * 1024
    sae = SparseAutoencoder(d, F, "batchtopk", k=32)
    with torch.no_grad():
        W = torch.randn(d, F, generator=g) / d**0.5
        sae.W_enc.copy_(W)
        sae.W_dec.copy_(W.T / W.T.norm(dim=1, keepdim=True))
        probe = positions_as_vectors(
            layer_activations(model, data.batch(np.arange(8)), ["mixed5b"])["mixed5b"]
        )
        pre = torch.relu(sae.encode_pre(probe))
        sae.threshold.fill_(float(pre.flatten().kthvalue(pre.numel() - 32 * probe.shape[0]).values))
    sae.eval().requires_grad_(False)
    return Workload(model, sae, "mixed5b", data, np.arange(len(data)), batch_size)


class _Clock:
    """Wall time and CPU time (user + system, all threads, this process and the child processes
    that ended meanwhile: the decode workers of a finished pass) of a block."""

    @staticmethod
    def _cpu() -> float:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + kids.ru_utime + kids.ru_stime

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, self._cpu() - self.cpu


@torch.no_grad()
def floor(w: Workload, batches) -> _Clock:
    with _Clock() as clock:
        for _, x in batches:
            v = positions_as_vectors(layer_activations(w.model, x, [w.layer])[w.layer])
            (v - w.sae.b_dec) @ w.sae.W_enc
    return clock


def read_only(batches) -> _Clock:
    """The images read (decoded, resized, made tensors) and nothing else."""
    with _Clock() as clock:
        for _ in batches:
            pass
    return clock


@torch.no_grad()
def timed_scan(w: Workload, batches, cfg) -> tuple[_Clock, _Clock, tuple]:
    labels = np.zeros(len(w.data), dtype=np.int64)  # one class: the histogram's cost
    with _Clock() as t_scan:
        scanned = scan(w.model, w.sae, w.layer, batches, cfg, "cpu", labels=labels, n_classes=1)
    with _Clock() as t_finish:
        results = scanned.finish(labels, 1, cfg.histogram_bins)
        scanned.cooccurrence()
    return t_scan, t_finish, (results, scanned.grid)


@torch.no_grad()
def interleaved(w: Workload, cfg, repeats) -> dict:
    """Floor and scan batch by batch, on one pass of ``Dataset.batches``: before the scan sees a
    batch, the wait for the decoded batch and the floor's work on it are timed; the scan's own work
    on it is the time until it asks for the next batch, plus the same wait (both sides need the
    batch; the end of the pass, when the loader stops, is counted in both too; the scan's final
    merges go to its last batch). Per batch, the fastest of ``repeats`` runs is kept for each, so a
    burst of load on a shared machine spoils one batch of one run, not a whole run."""
    n = -(-len(w.indices) // w.batch_size)
    wall = np.full((2, repeats, n), np.inf)
    cpu = np.full((2, repeats, n), np.inf)
    waits = np.zeros((2, repeats, n))  # the waits counted in both sides (wall, cpu)

    def feed(r):
        loader = w.batches()
        for i in range(n + 1):
            t, c = time.perf_counter(), time.process_time()
            item = next(loader, None)
            dw, dc = time.perf_counter() - t, time.process_time() - c
            if item is None:  # the loader's end: in both sides' last batch
                wall[:, r, -1] += dw
                cpu[:, r, -1] += dc
                waits[:, r, -1] += (dw, dc)
                return
            idx, x = item
            v = positions_as_vectors(layer_activations(w.model, x, [w.layer])[w.layer])
            (v - w.sae.b_dec) @ w.sae.W_enc
            del v
            w2, c2 = time.perf_counter(), time.process_time()
            wall[0, r, i], cpu[0, r, i] = w2 - t, c2 - c
            waits[:, r, i] = (dw, dc)
            yield idx, x
            wall[1, r, i] = time.perf_counter() - w2 + dw
            cpu[1, r, i] = time.process_time() - c2 + dc

    labels = np.zeros(len(w.data), dtype=np.int64)
    for r in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        scan(w.model, w.sae, w.layer, feed(r), cfg, "cpu", labels=labels, n_classes=1)
        t, c = time.perf_counter() - t, time.process_time() - c
        wall[1, r, -1] += t - (wall[:, r].sum() - waits[0, r].sum())  # the scan's final merges
        cpu[1, r, -1] += c - (cpu[:, r].sum() - waits[1, r].sum())
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
        "wait_ms_per_batch": 1000 * waits[0].min(0).sum() / n,
    }


def _print_interleaved(prefix: str, inter: dict, repeats: int) -> None:
    print(
        f"{prefix}interleaved per batch (fastest of {repeats} per batch): floor {inter['floor_s']:.2f} s | "
        f"scan {inter['scan_s']:.2f} s (x{inter['ratio']:.2f}) | cpu of this process: floor "
        f"{inter['floor_cpu_s']:.2f} s, scan {inter['scan_cpu_s']:.2f} s (x{inter['cpu_ratio']:.2f}) | "
        f"floor {inter['floor_ms_per_batch']:.1f} ms (of which {inter['wait_ms_per_batch']:.1f} ms waiting "
        f"for the decoded batch) + scan's extra {inter['extra_ms_per_batch']:.1f} ms per batch"
    )


def compare(name: str, w: Workload, cfg, repeats: int, interleaved_only: bool = False) -> dict:
    """Floor and scan alternate ``repeats`` times, each reading its batches through
    ``Dataset.batches``; the fastest of each is kept, in wall time and in CPU time (CPU time moves
    less when other processes share the cores). Then the interleaved per-batch comparison
    (:func:`interleaved`), alone with ``interleaved_only``."""
    n_images = len(w.indices)
    reading = "memory-mapped images.npy" if w.data._paths is None else "JPEG files"
    workers = local_workers(w.data.decode.workers if w.data.decode is not None else -1)
    where = reading if w.data._paths is None else f"{reading}, decode.workers {workers}"
    floor(w, w.batches(w.batch_size))  # warm-up
    if interleaved_only:
        inter = interleaved(w, cfg, max(repeats, 3))
        print(f"{name}: {n_images} images ({where}), {torch.get_num_threads()} threads, ", end="")
        _print_interleaved("", inter, max(repeats, 3))
        return {
            "workload": name,
            "images": n_images,
            "threads": torch.get_num_threads(),
            "interleaved": inter,
        }
    timed_scan(w, w.batches(2 * w.batch_size), cfg)
    decoded = list(w.batches())  # for the compute-only row: every batch in memory before the clock
    floors, scans, finishes, computes, reads = [], [], [], [], []
    for _ in range(repeats):
        floors.append(floor(w, w.batches()))
        t_scan, t_finish, (results, grid) = timed_scan(w, w.batches(), cfg)
        scans.append(t_scan)
        finishes.append(t_finish)
        reads.append(read_only(w.batches()))
        computes.append(floor(w, decoded))
        print(
            f"  run: floor {floors[-1].wall:.2f} s (cpu {floors[-1].cpu:.2f} s) | scan {t_scan.wall:.2f} s "
            f"(cpu {t_scan.cpu:.2f} s) | finish {t_finish.wall:.2f} s | read alone {reads[-1].wall:.2f} s | "
            f"floor's compute alone {computes[-1].wall:.2f} s",
            flush=True,
        )
    del decoded
    start = time.perf_counter()
    slots = shown_images(results)
    batches = w.data.batches(shown_union(slots), cfg.batch_size, "cpu")
    add_maps(results, unit_maps(slots, w.model, w.sae, w.layer, batches, "cpu"), grid)
    t_maps = time.perf_counter() - start
    shown = len(
        np.unique(
            np.concatenate([r[k][r[k] >= 0] for r in results.values() for k in ("top_idx", "band_idx")])
        )
    )
    n_batches = -(-n_images // w.batch_size)
    row = {
        "workload": name,
        "images": n_images,
        "read": where,
        "batches": n_batches,
        "threads": torch.get_num_threads(),
        "features": int(w.sae.W_enc.shape[1]),
        "neurons": int(w.sae.W_enc.shape[0]),
        "floor_s": min(c.wall for c in floors),
        "scan_s": min(c.wall for c in scans),
        "finish_s": min(c.wall for c in finishes),
        "read_alone_s": min(c.wall for c in reads),
        "compute_only_floor_s": min(c.wall for c in computes),
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
    extra_ms = 1000 * (row["scan_cpu_s"] - row["floor_cpu_s"]) / n_batches
    print(
        f"{name}: {n_images} images ({where}), {row['features']} features + {row['neurons']} neurons, "
        f"{row['threads']} threads, best of {repeats}"
    )
    print(
        f"  wall: floor (read + forward + encoder matmul) {row['floor_s']:.2f} s | scan (read + scan) "
        f"{row['scan_s']:.2f} s (x{row['scan_ratio']:.2f}) | + finish {row['finish_s']:.2f} s "
        f"(x{row['scan_finish_ratio']:.2f}) | paired ratios "
        f"{', '.join(f'{r:.2f}' for r in row['paired_ratios'])}"
    )
    print(
        f"  cpu:  floor {row['floor_cpu_s']:.2f} s | scan {row['scan_cpu_s']:.2f} s "
        f"(x{row['scan_cpu_ratio']:.2f}) | "
        f"+ finish {row['finish_cpu_s']:.2f} s (x{row['scan_finish_cpu_ratio']:.2f}) | "
        f"scan's extra CPU time {extra_ms:.1f} ms per batch of {w.batch_size}"
    )
    print(
        f"  not the headline, to explain it: images read alone {row['read_alone_s']:.2f} s | floor's compute "
        f"alone (batches decoded before the clock) {row['compute_only_floor_s']:.2f} s "
        f"(scan / compute-only floor x{row['scan_s'] / row['compute_only_floor_s']:.2f})"
    )
    print(f"  maps pass: {t_maps:.2f} s for {shown} shown images ({shown / n_images:.0%} of the dataset)")
    inter = interleaved(w, cfg, max(repeats, 3))
    row["interleaved"] = inter
    _print_interleaved("  ", inter, max(repeats, 3))
    return row


def memory_child(cache: Path, reps: int, batch_size: int) -> None:
    """Scan the demo's training images repeated ``reps`` times (distinct indices), read through
    ``Dataset.batches`` from the memory-mapped dataset as the build reads them; print the growth of
    peak RSS during the scan (MiB) and the state size."""
    w = demo_workload(cache, batch_size)
    n = len(w.data)
    cfg = ExamplesConfig(batch_size=batch_size)
    labels = np.tile(w.data.labels, reps)  # image i + r * n has image i's class
    scan(
        w.model, w.sae, w.layer, w.batches(batch_size), cfg, "cpu", labels=labels, n_classes=w.data.n_classes
    )  # warm-up
    stream = ((idx + r * n, x) for r in range(reps) for idx, x in w.batches())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats, cooc, _ = scan(
        w.model, w.sae, w.layer, stream, cfg, "cpu", labels=labels, n_classes=w.data.n_classes
    )
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
                "images": reps * len(w.indices),
                "peak_growth_mib": (after - before) / 1024,
                "peak_rss_mib": after / 1024,
                "state_mib": state / 2**20,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=ROOT / ".atlasgen")
    ap.add_argument(
        "--n", type=int, default=300, help="generated 256 px JPEGs (read at 224 px) for InceptionV1"
    )
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-inception", action="store_true")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument(
        "--workers", type=int, default=-1, help="decode.workers for the JPEG folder (-1: the machine's cores)"
    )
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
    rows = []
    if not args.skip_demo:
        rows.append(
            compare(
                "demo", demo_workload(args.cache, args.batch_size), cfg, args.repeats, args.interleaved_only
            )
        )
    if not args.skip_inception:
        batch = min(args.batch_size, 32)
        with tempfile.TemporaryDirectory(prefix="bench-examples-") as tmp:
            w = inception_workload(args.n, batch, Path(tmp), args.workers)
            rows.append(
                compare(
                    "inceptionv1-mixed5b-16x",
                    w,
                    ExamplesConfig(batch_size=batch),
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
