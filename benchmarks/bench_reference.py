"""The reference workload end to end: InceptionV1 at mixed5b with a 16x SAE (16,384 features over
1,024 neurons), on a generated folder of N JPEG images, every stage and the site.

For each N of ``--images`` (two values by default, so each stage's growth shows), the script writes
a folder of N 256 px JPEGs in ``--classes`` class folders (smooth random colour fields with a few
shapes: they decode and compress like photographs, not like noise), a config (random InceptionV1
weights unless ``--weights`` is given, 224 px, tiny SAE and visualisation settings by default), and
runs ``atlasgen build`` in a fresh process. It prints per stage the seconds and images per second
(for the stages that pass over the images), the build's peak resident memory, the site's bytes by
part beside the site stage's projection (MB = 10^6 bytes), and the ratio between the two sizes.

    python benchmarks/bench_reference.py                                # N = 64 and 128 on the CPU
    python benchmarks/bench_reference.py --images 1000 4000 --device cuda --guide   # a GPU machine

``--guide`` uses the settings of docs/inceptionv1.md (SAE steps, visualisation sizes) instead of the
tiny ones; ``--default-examples`` keeps the tiny ones but shows the default number of examples a page
(the pages' size at the default settings). ``--features`` changes the width (4,096 is a quicker
check of the same paths).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
IMAGE_STAGES = (
    "dataset",
    "activations",
    "sae",
    "examples",
    "importance",
    "atlas",
    "game",
)  # pass over images


def write_images(folder: Path, n: int, classes: int, seed: int = 0, side: int = 256) -> None:
    """n JPEGs (quality 90) in ``classes`` folders: low-frequency colour fields plus a few discs."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for c in range(classes):
        (folder / f"class{c:03d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % classes
        coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        im = Image.fromarray(coarse, "RGB").resize((side, side), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(im)
        for _ in range(3):
            x, y, r = rng.integers(0, side, 2).tolist() + [int(rng.integers(10, side // 4))]
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        im.save(folder / f"class{c:03d}" / f"img{i:06d}.jpg", quality=90)


def write_config(folder: Path, args) -> Path:
    labels = [f"class{i:03d}" for i in range(1008)]
    (folder / "labels.txt").write_text("\n".join(labels) + "\n")
    expansion = args.features // 1024
    tiny = not args.guide
    cfg = {
        "device": args.device,
        "dataset": {
            "source": "folder",
            "path": "images",
            "image_size": 224,
            "images_per_class": 0,
            "holdout_fraction": 0.2,
            "crop_fraction": 0.875,
        },
        "model": {
            "source": "inceptionv1",
            "name": "inceptionv1",
            "pretrained": args.weights is not None,
            **({"weights": str(Path(args.weights).resolve())} if args.weights else {}),
            "labels": "labels.txt",
            "batch_size": 32,
        },
        "layers": [
            {
                "name": "mixed5b",
                "sae": {
                    "expansion": expansion,
                    "k": 32,
                    "steps": 20 if tiny else 3000,
                    "batch_size": 256 if tiny else 4096,
                    "eval_batch_size": 32,
                },
            }
        ],
        "activations": {"positions_per_image": 8, "batch_size": 32},
        "featurevis": (
            {
                "image_size": 32,
                "thumb_size": 16,
                "steps": 2,
                "batch_size": 512,
                "neuron": False,
                "negative": False,
                "diverse": 0,
                "variant_image_size": 16,
                "variant_steps": 1,
            }
            if tiny
            else {}
        ),
        "examples": {
            "batch_size": 32,
            **({"top_k": 6, "band_samples": 1} if tiny and not args.default_examples else {}),
        },
        "circuits": {"batch_size": 16},
        "importance": {"images": 32 if tiny else 512, "batch_size": 16},
        "map": {"levels": [8, 32, 128]},
        "atlas": ({"grids": [8, 16], "icon_size": 32, "steps": 4, "batch_size": 64} if tiny else {}),
        "game": {"batch_size": 32},
        "decode": {"workers": args.workers},
        "site": {"size_budget_mb": 0},
    }
    if args.device == "cpu":
        cfg["featurevis"]["precision"] = "fp32"
    path = folder / "site_config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def child(config: Path) -> None:
    """Run one build in this process; print its figures as JSON on the last line."""
    sys.path.insert(0, str(ROOT))
    from atlasgen.config import load_config
    from atlasgen.pipeline import Pipeline
    from atlasgen.progress import Console
    from atlasgen.site.plan import project
    from atlasgen.site.publish import size_breakdown

    cfg = load_config(config)
    import atlasgen.stages.site as site_stage

    projected = {}

    def keep(cfg_, folders, console):  # the site stage's projection, kept for the report (no budget here)
        start = time.perf_counter()
        p = project(artifacts=folders, **site_stage.site_fields(cfg_))
        projected.update(parts=p.parts, seconds=time.perf_counter() - start)
        return bool(cfg_.site.try_dataset_images)  # with no budget, auto keeps the try page's copies

    site_stage.check_projection = keep
    start = time.perf_counter()
    summary = Pipeline(cfg, console=Console(1)).build()
    total = time.perf_counter() - start
    site = config.parent / "_site"
    print(
        json.dumps(
            {
                "seconds": summary.seconds,
                "total_seconds": total,
                "pages": summary.pages,
                "site_bytes": summary.site_bytes,
                "parts": size_breakdown(site),
                "projected": projected,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, nargs="+", default=[64, 128], help="dataset sizes N (two: growth)")
    ap.add_argument("--classes", type=int, default=16)
    ap.add_argument("--features", type=int, default=16384, help="SAE width (a multiple of 1,024)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--workers", type=int, default=-1, help="decode.workers (-1: the machine's cores)")
    ap.add_argument(
        "--weights", default=None, help="InceptionV1 weights (lucent's inception5h.pth); default random"
    )
    ap.add_argument(
        "--guide", action="store_true", help="docs/inceptionv1.md's settings instead of tiny ones"
    )
    ap.add_argument(
        "--default-examples",
        action="store_true",
        help="examples.top_k and examples.band_samples at their defaults (the pages' real size) with tiny "
        "settings elsewhere",
    )
    ap.add_argument("--keep", default=None, help="folder to build in (kept); default a temporary folder")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child))
        return
    results = {}
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="atlasgen-ref-"))
    for n in args.images:
        folder = base / f"n{n}"
        folder.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        write_images(folder / "images", n, args.classes)
        print(f"N={n}: wrote {n} JPEGs in {time.perf_counter() - t:.1f} s; building ...", flush=True)
        config = write_config(folder, args)
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(config)],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
        )
        if out.returncode:
            sys.exit(f"build at N={n} failed (exit {out.returncode}); its folder: {folder}")
        results[n] = json.loads(out.stdout.strip().splitlines()[-1])
    report(results, args)
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def report(results: dict, args) -> None:
    ns = sorted(results)
    print(
        f"\nInceptionV1 mixed5b, {args.features:,} features x 1,024 neurons, {args.device}, "
        f"{'guide' if args.guide else 'tiny'} settings; N = {', '.join(map(str, ns))} images"
    )
    stages = [s for s in results[ns[0]]["seconds"]]
    head = "".join(f"{'N=' + str(n) + ' s':>12}{'img/s':>9}" for n in ns)
    print(f"{'stage':<13}{head}{'growth':>9}")
    for s in stages:
        row = f"{s:<13}"
        for n in ns:
            sec = results[n]["seconds"].get(s, 0.0)
            ips = f"{n / sec:.1f}" if s in IMAGE_STAGES and sec > 0 else ""
            row += f"{sec:>12.1f}{ips:>9}"
        a, b = results[ns[0]]["seconds"].get(s, 0.0), results[ns[-1]]["seconds"].get(s, 0.0)
        row += f"{(b / a if a > 0 else float('nan')):>8.2f}x" if len(ns) > 1 else ""
        print(row)
    row = f"{'total':<13}" + "".join(f"{results[n]['total_seconds']:>12.1f}{'':>9}" for n in ns)
    print(row)
    print("peak RSS      " + "   ".join(f"N={n}: {results[n]['peak_rss_bytes'] / 1e9:.2f} GB" for n in ns))
    for n in ns:
        r = results[n]
        proj = r["projected"].get("parts", {})
        print(
            f"\nsite at N={n}: {r['pages']:,} pages, {r['site_bytes'] / 1e6:.1f} MB "
            f"(projected {sum(proj.values()) / 1e6:.1f} MB in "
            f"{r['projected'].get('seconds', 0):.1f} s; MB = 10^6 bytes)"
        )
        for part, size in sorted(r["parts"].items(), key=lambda kv: -kv[1]):
            p = proj.get(part, 0)
            print(
                f"  {size / 1e6:>9.2f} MB  projected {p / 1e6:>9.2f} MB  "
                f"({p / size if size else float('nan'):.2f}x)  {part}"
            )


if __name__ == "__main__":
    main()
