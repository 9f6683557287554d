"""A/B of the site renderer: another checkout (``--base``) against this one, on the same artifacts, in one \
run.

Writes synthetic artifacts once (tests/test_site.py's ``make_fake_artifacts``,
with examples across the activation range as default settings give), then
renders them with each tree in turn, alternating for ``--rounds`` rounds, each
render in a fresh subprocess with that tree on ``PYTHONPATH``. Prints each
tree's feature pages per second (median over rounds), the ratio this / base,
and the mean bytes of a feature page and of a feature folder. Under load both
trees see the same load, so the ratio is what to read.

Usage (base: e.g. ``git archive <commit> | tar -x -C /tmp/base``):
    python benchmarks/bench_render_ab.py --base /tmp/base [--features 4096] [--neurons 256] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_site import make_fake_artifacts  # noqa: E402

MODEL, LAYER = "demonet", "mixed5b"

RENDER = r"""
import json, sys, time
from pathlib import Path
from atlasgen.site.build import render_site
art = {k: Path(v) for k, v in json.loads(sys.argv[1]).items()}
out, F, workers = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
marks = {}
def progress(done, total):
    # Pages: home, model, layer, map, then the F feature pages (build.render_site's order).
    if done == 4:
        marks["s"] = time.perf_counter()
    elif done == 4 + F:
        marks["e"] = time.perf_counter()
render_site(artifacts=art, layers=[sys.argv[5]], model_name=sys.argv[6], title="bench", date="2026-01-01",
            base_url="", out_dir=out, progress=progress, workers=workers)
print(json.dumps({"rate": F / (marks["e"] - marks["s"])}))
"""


def folder_bytes(site: Path, F: int) -> tuple[float, float]:
    units = site / MODEL / LAYER / "f"
    pages = sum((units / str(i) / "index.html").stat().st_size for i in range(F))
    folders = sum(p.stat().st_size for p in units.rglob("*") if p.is_file())
    return pages / F, folders / F


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="the other checkout (its repository root)")
    ap.add_argument("--features", type=int, default=4096)
    ap.add_argument("--neurons", type=int, default=256)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--band-samples", type=int, default=3, help="examples per band, 6 bands (0: none)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    F = args.features
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        art = make_fake_artifacts(
            work / "art",
            n_classes=100,
            n_features=F,
            n_neurons=args.neurons,
            n_images=args.images,
            image_size=32,
            layers=(LAYER,),
            k=12,
            grid=7,
            vis_size=64,
            thumb_size=48,
            band_samples=args.band_samples,
        )
        art_json = json.dumps({k: str(v) for k, v in art.items()})
        trees = {"base": args.base.resolve(), "this": ROOT}
        rates: dict[str, list[float]] = {name: [] for name in trees}
        sizes = {}
        print(
            f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {F:,} features x "
            f"{args.neurons:,} neurons, {args.band_samples} band samples, {args.workers} workers"
        )
        for r in range(args.rounds):
            for name, tree in trees.items():
                out = work / f"site-{name}-{r}"
                out.mkdir()
                env = {**os.environ, "PYTHONPATH": str(tree)}
                res = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        RENDER,
                        art_json,
                        str(out),
                        str(F),
                        str(args.workers),
                        LAYER,
                        MODEL,
                    ],
                    env=env,
                    cwd=tree,
                    capture_output=True,
                    text=True,
                )
                if res.returncode:
                    sys.exit(f"{name} ({tree}) failed:\n{res.stderr[-3000:]}")
                rate = json.loads(res.stdout.strip().splitlines()[-1])["rate"]
                rates[name].append(rate)
                sizes[name] = folder_bytes(out, F)
                print(f"round {r + 1} {name}: {rate:,.0f} feature pages/s")
        med = {name: statistics.median(v) for name, v in rates.items()}
        for name in trees:
            page, folder = sizes[name]
            print(
                f"{name}: median {med[name]:,.0f} feature pages/s; feature page {page / 1e3:.1f} KB, "
                f"folder {folder / 1e3:.1f} KB"
            )
        print(
            f"this / base: speed {med['this'] / med['base']:.2f}x, page bytes "
            f"{sizes['this'][0] / sizes['base'][0]:.2f}x, folder bytes "
            f"{sizes['this'][1] / sizes['base'][1]:.2f}x"
        )


if __name__ == "__main__":
    main()
