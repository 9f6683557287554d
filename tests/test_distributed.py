"""Distributed builds under torchrun: 2 ranks, gloo, on 127.0.0.1.

* A distributed build that recomputes the activation store and every stage after the SAE gives
  the same bytes as the single-process build (the shared ``tiny_build``): activations, feature
  visualisations, dataset examples (top-k, bands, histograms), importance, and the site. The SAE
  artifact is copied from the single-process build and reused only because the distributed
  activation store hashes to the same content -- a single differing byte would retrain it.
* In that build rank 1 is SIGKILLed during feature visualisation; the rerun keeps every chunk
  already written (same inode and mtime) and renders the rest.
* The SAE trained with DistributedDataParallel on 2 ranks matches the single-process SAE's
  metrics within floating-point tolerance.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DEFAULT_TORCH_THREADS

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="finds the ranks' processes in /proc"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(DEFAULT_TORCH_THREADS))
    env.pop("WORLD_SIZE", None)
    return env


def _torchrun(args: list[str], cwd: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        *args,
    ]
    return subprocess.Popen(
        cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the worker with RANK=rank among the launcher's children (from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != launcher:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def _hashes(cache: Path) -> dict[str, str]:
    out = {}
    for meta in cache.glob("*/*/meta.json"):
        if meta.parent.name.endswith(".partial") or meta.parent.parent.name == "site":
            continue
        out[meta.parent.parent.name] = json.loads(meta.read_text())["content_hash"]
    return out


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_distributed_build_equals_single_and_a_killed_rank_resumes(tiny_build, tmp_path):
    src, _, src_site = tiny_build
    cache = tmp_path / ".atlasgen"
    cache.mkdir()
    shutil.copy2(src / "site_config.yaml", tmp_path / "site_config.yaml")
    shutil.copy2(src / ".atlasgen" / ".atlasgen-cache", cache / ".atlasgen-cache")
    for stage in ("dataset", "model", "sae"):  # everything else is recomputed on 2 ranks
        shutil.copytree(src / ".atlasgen" / stage, cache / stage)
    expected = _hashes(src / ".atlasgen")

    # Run 1: SIGKILL rank 1 as soon as it has written its first feature-visualisation chunk. With
    # featurevis.batch_size 16 a family's chunk c covers units 16c..16c+15 and rank 1 renders the odd
    # chunks, so its first shard is features_quality/00000016.npz; it has 11 more chunks to render.
    proc = _torchrun(["-m", "atlasgen", "build", "-c", "site_config.yaml", "-q"], tmp_path)
    first = None
    while proc.poll() is None:
        found = list(cache.glob("featurevis/*.partial/mixed5b/features_quality/00000016.npz"))
        if found:
            first = found[0]
            break
        time.sleep(0.02)
    assert first is not None, f"the build ended before rank 1 rendered a chunk:\n{proc.communicate()[0]}"
    pid = _rank_pid(proc.pid, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0, output
    partial = first.parents[2]
    assert not (cache / "featurevis" / partial.name.removesuffix(".partial")).exists()  # not committed
    kept = {
        p.relative_to(partial): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in partial.glob("mixed5b/*_quality/*.npz")
    }
    assert Path("mixed5b/features_quality/00000016.npz") in kept
    assert len(kept) < 24  # 16 feature chunks and 8 neuron chunks: some were left to do

    # Run 2: resumes; the chunks already rendered are kept, not rendered again.
    proc = _torchrun(["-m", "atlasgen", "build", "-c", "site_config.yaml", "-q"], tmp_path)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    final = cache / "featurevis" / partial.name.removesuffix(".partial")
    for rel, identity in kept.items():
        p = final / rel
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == identity, f"{rel} was rewritten"
    assert len(list(final.glob("mixed5b/*_quality/*.npz"))) == 24
    assert not list(cache.glob("*/*/_ranks")), "per-rank scan states must not stay in an artifact"

    # Byte for byte the single-process build: every artifact and the site.
    assert _hashes(cache) == expected
    for stage in ("featurevis", "examples", "importance"):
        assert stage in expected
    got, want = _tree(tmp_path / "_site"), _tree(src_site)
    assert got.keys() == want.keys()
    assert [k for k in want if got[k] != want[k]] == []


DDP_SCRIPT = """
import json, sys
from pathlib import Path
import torch
from atlasgen.dist import init_from_env, shutdown
from atlasgen.sae import save_sae, train_sae
from atlasgen.stages.activations import VectorStore

d = init_from_env("cpu")
store = VectorStore(Path(sys.argv[1]))
kw = json.loads(sys.argv[3])
sae, stats = train_sae(store, dist=d, **kw)
if d.main:
    save_sae(sae.cpu(), Path(sys.argv[2]), metrics={})
    Path(sys.argv[2], "stats.json").write_text(json.dumps(stats))
shutdown(d)
"""


@pytest.mark.parametrize("architecture", ["batchtopk", "relu"])
def test_ddp_sae_matches_single_process(tiny_build, tmp_path, architecture):
    import torch

    from atlasgen.sae import evaluate_sae, train_sae
    from atlasgen.sae_formats import load_sae_any
    from atlasgen.stages.activations import VectorStore

    src, _, _ = tiny_build
    acts = next((src / ".atlasgen" / "activations").glob("*/mixed5b"))
    kw = dict(d_sae=256, architecture=architecture, k=4, steps=60, batch_size=128, lr=1e-3, seed=0)
    script = tmp_path / "ddp_sae.py"
    script.write_text(DDP_SCRIPT)
    proc = _torchrun([str(script), str(acts), str(tmp_path / "ddp"), json.dumps(kw)], tmp_path)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output

    before = torch.get_num_threads()
    torch.set_num_threads(DEFAULT_TORCH_THREADS)
    try:
        single, single_stats = train_sae(VectorStore(acts), **kw)
    finally:
        torch.set_num_threads(before)
    ddp = load_sae_any(tmp_path / "ddp")
    ddp_stats = json.loads((tmp_path / "ddp" / "stats.json").read_text())
    assert ddp_stats["ranks"] == 2 and ddp_stats["batch_size"] == 128
    heldout = np.load(acts / "heldout.npy")
    m1, m2 = evaluate_sae(single.eval(), heldout), evaluate_sae(ddp.eval(), heldout)
    for key in ("explained_variance", "fvu", "mse", "cosine", "l0", "dead_fraction", "l2_ratio"):
        assert m2[key] == pytest.approx(m1[key], rel=2e-3, abs=1e-6), key
    for key in ("mse", "train_fvu", "train_l0"):
        assert ddp_stats[key] == pytest.approx(single_stats[key], rel=2e-3), key
    # The same dictionary, not merely similar numbers: decoder rows agree one by one.
    cos = torch.nn.functional.cosine_similarity(single.W_dec, ddp.W_dec, dim=1)
    assert float(cos.min()) > 0.99
    if architecture == "batchtopk":
        assert float(ddp.threshold) == pytest.approx(float(single.threshold), rel=2e-3)
