"""Site rendering from cached artifacts: feature pages per second, no-change rebuild, site size.

1. Writes synthetic artifacts for one layer of ``--features`` SAE features over
   ``--neurons`` channels (tests/test_site.py's ``make_fake_artifacts``, scaled
   up: real npz/json/WebP files, with ``--band-samples`` examples per activation band as the
   default settings give), then renders
   the whole site with
   ``render_site`` and times the feature pages alone (from the progress
   callback: they are rendered one after another) and the whole render.
2. Reports the rendered size by part beside the site stage's projection, and with ``--real-site``
   (e.g. the demo's ``_site``) the real site's per-unit bytes and mean feature page by part, then the
   reference projection (``reference_projection``): the synthetic layer's pages, export and maps,
   class pages scaled to ``--ref-classes``, the real site's visualisations per unit,
   ``--ref-images`` distinct photographs at their stored size, the try page (``--try-mb``, its
   encoder scaled to the width) and its image copies as ``site.try_dataset_images: auto`` decides.
3. ``--rebuild``: builds the tiny test config once, then times ``atlasgen
   build`` again with nothing changed (the pipeline skips every stage and the
   site when their keys are unchanged).
4. ``--profile N``: cProfile of N feature pages (top functions by cumulative time).

Usage:
    python benchmarks/bench_render.py [--features 16384] [--neurons 1024] [--real-site _site] [--rebuild]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_site import make_fake_artifacts  # noqa: E402

from atlasgen.site import pages  # noqa: E402
from atlasgen.site.build import render_site  # noqa: E402
from atlasgen.site.publish import size_breakdown  # noqa: E402

MODEL, LAYER = "demonet", "mixed5b"


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def render(art, out: Path, F: int, workers: int | None = None):
    marks = {}

    def progress(done, total):
        # Pages: home, model, layer, map, then the F feature pages (build.render_site's order).
        if done == 4:
            marks["start"], marks["cpu_start"] = time.perf_counter(), time.process_time()
        elif done == 4 + F:
            marks["end"], marks["cpu_end"] = time.perf_counter(), time.process_time()

    out.mkdir(parents=True)
    t0 = time.perf_counter()
    summary = render_site(
        artifacts=art,
        layers=[LAYER],
        model_name=MODEL,
        title="bench",
        date="2026-01-01",
        base_url="",
        out_dir=out,
        progress=progress,
        workers=workers,
    )
    total = time.perf_counter() - t0
    return summary, total, marks["end"] - marks["start"], marks["cpu_end"] - marks["cpu_start"]


def profile_pages(art, out: Path, n: int) -> None:
    from atlasgen.site.artifacts import load_artifacts
    from atlasgen.site.build import _Writer, make_environment
    from atlasgen.site.images import DatasetImages

    arts = load_artifacts(art, [LAYER])
    site = pages.Site(title="bench", date="2026-01-01", base_url="", model=MODEL, version="0")
    ix = pages.LayerIndex(site, arts.layers[0], arts.dataset)
    out.mkdir(parents=True)
    images = DatasetImages(arts.dataset, out)
    feats = arts.layers[0].features
    shown = [feats.top_idx[:n]] + ([] if feats.band_idx is None else [feats.band_idx[:n]])
    images.prepare([i for a in shown for i in a.ravel().tolist()])  # as render_site does, before the pages
    w = _Writer(out, make_environment(), n, None)
    prof = cProfile.Profile()
    prof.enable()
    for i in range(n):
        w.page(*pages.unit_page(site, ix, "f", i, images, {LAYER: ix}))
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    pstats.Stats(prof).sort_stats("tottime").print_stats(15)


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(
                p.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest()
            )
    return h.hexdigest()


def real_unit_bytes(site: Path, layer: str | None = None) -> dict:
    """Mean bytes per feature and per neuron folder (page + visualisations) of a built site's ``layer``
    (default: its last, which the demo builds at the default featurevis variants)."""
    manifest = json.loads((site / "manifest.json").read_text())
    m = manifest["model"]
    layer = layer or list(manifest["layers"])[-1]
    info = manifest["layers"][layer]
    out = {"layer": layer, "n_features": info["n_features"], "n_neurons": info["n_neurons"]}
    for kind, count in (("f", info["n_features"]), ("n", info["n_neurons"])):
        files = [p for p in (site / m / layer / kind).rglob("*") if p.is_file()]
        out[kind] = sum(p.stat().st_size for p in files) / max(count, 1)
        out[f"{kind}_vis"] = sum(p.stat().st_size for p in files if p.suffix != ".html") / max(count, 1)
    out["images"] = sum(p.stat().st_size for p in (site / "images").glob("*") if p.is_file())
    out["n_images"] = sum(1 for _ in (site / "images").glob("*"))
    return out


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def _top_blocks(body: str) -> list[tuple[int, int]]:
    """(start, end) of each top-level element of ``body`` (the inside of <main>), by tag depth."""
    blocks, depth, start = [], 0, 0
    for mt in re.finditer(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*?(/?)>", body):
        closing, tag, selfclosing = mt.group(1), mt.group(2).lower(), mt.group(3)
        if selfclosing or (tag in _VOID and not closing):
            continue
        if closing:
            depth -= 1
            if depth == 0:
                blocks.append((start, mt.end()))
        else:
            if depth == 0:
                start = mt.start()
            depth += 1
    return blocks


# A block's name: its own aria-labelledby (less "-title") or first class, else its first heading's id.
_BLOCK_NAME = (
    r'^<[^>]*(?:aria-labelledby="([a-z0-9-]+?)(?:-title)?"|class="([a-z-]+))|id="([a-z0-9-]+)-title"'
)


def page_parts(site: Path, layer: str | None = None) -> dict[str, float]:
    """Mean bytes per feature page of a built site's ``layer`` (default: its last), by part: <head>, each
    top-level block of <main> (named by its heading's id or its class), the rest."""
    manifest = json.loads((site / "manifest.json").read_text())
    m = manifest["model"]
    layer = layer or list(manifest["layers"])[-1]
    pages = sorted((site / m / layer / "f").glob("*/index.html"))
    totals: dict[str, int] = {}
    for page in pages:
        html = page.read_text(encoding="utf-8")
        head_end = html.index("</head>")
        main_start = html.index(">", html.index("<main")) + 1
        main_end = html.index("</main>")
        body = html[main_start:main_end]
        blocks = _top_blocks(body)
        parts = {"head": head_end, "header, footer, scripts": len(html) - len(body) - head_end}
        parts["main, between blocks"] = len(body.encode()) - sum(len(body[a:b].encode()) for a, b in blocks)
        for a, b in blocks:
            block = body[a:b]
            title = re.search(_BLOCK_NAME, block)
            name = next((g for g in title.groups() if g), "other") if title else "other"
            name = {
                "related-1": "related 1 (similar)",
                "related-2": "related 2",
                "related-3": "related 3",
            }.get(name, name)
            parts[name] = parts.get(name, 0) + len(block.encode())
        for k, v in parts.items():
            totals[k] = totals.get(k, 0) + v
    return {k: v / max(len(pages), 1) for k, v in totals.items()}


def rebuild_time() -> tuple[float, float]:
    from conftest import write_tiny_config

    from atlasgen.config import load_config
    from atlasgen.pipeline import Pipeline
    from atlasgen.progress import Console

    with tempfile.TemporaryDirectory() as tmp:
        config = write_tiny_config(Path(tmp))
        t0 = time.perf_counter()
        Pipeline(load_config(config), console=Console(0)).build()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        Pipeline(load_config(config), console=Console(0)).build()
        return first, time.perf_counter() - t0


def imagenet_names(n: int) -> list[str]:
    """``n`` ImageNet class names as a site shows them with ``dataset.class_names`` set from the
    synset mapping (``tench, Tinca tinca``; timm ships them), evenly spaced over the 1,000 classes:
    20.7 characters on average, twice the demo-like names."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(int(i)) for i in np.linspace(0, 999, n).round()]


def photo_thumbnail_bytes(n: int = 96, side: int = 224, seed: int = 0) -> float:
    """Mean bytes of a dataset image as the site stores it (``encode_thumbnail``), for photographs:
    random square crops of scikit-learn's two sample photographs (``load_sample_images``, shipped with
    the package), resized to ``side`` as the dataset stage would, then encoded. The demo's rendered
    images are flat synthetic scenes and compress about 2x better."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from atlasgen.site.images import encode_thumbnail

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    rng = np.random.default_rng(seed)
    sizes = []
    for i in range(n):
        im = photos[i % len(photos)]
        s = int(rng.integers(160, min(im.size)))
        x, y = int(rng.integers(0, im.size[0] - s)), int(rng.integers(0, im.size[1] - s))
        crop = im.crop((x, y, x + s, y + s)).resize((side, side), Image.BILINEAR)
        sizes.append(len(encode_thumbnail(np.asarray(crop))))
    return float(np.mean(sizes))


def reference_projection(args, site: Path, parts: dict[str, int], real: dict) -> None:
    """The site of a one-layer atlas at this width with --ref-classes classes and --ref-images distinct
    example images, by part: pages, export, maps and the rest measured on the synthetic layer just
    rendered (class pages scaled to the class count), visualisations per unit from the real site,
    dataset images at the photographs' thumbnail size, the try page as --try-mb with its encoder
    scaled to the width, and the try page's
    copies of the dataset images as site.try_dataset_images: auto decides (kept when they fit)."""
    from atlasgen.site import sizes, trypage

    F, C = args.features, args.neurons
    layer = site / MODEL / LAYER
    classes = [p.stat().st_size for p in (site / MODEL / "classes").glob("*/index.html")]
    html_units = sum(p.stat().st_size for kind in ("f", "n") for p in (layer / kind).glob("*/index.html"))
    synth_vis = parts.get(sizes.VIS, 0)
    class_bytes = sum(classes) / max(len(classes), 1) * args.ref_classes
    html = parts[sizes.PAGES] - sum(classes) + class_bytes
    vis = F * real["f_vis"] + C * real["n_vis"]
    photo = photo_thumbnail_bytes()
    images = args.ref_images * photo
    copies = args.ref_images * trypage.image_script_bytes("images/0123456789abcdef.webp", round(photo))

    def encoder(f: int) -> int:  # the try page's float16 SAE encoder, as base64
        return 4 * ((2 * f * C + 2) // 3)

    try_bytes = args.try_mb * 1e6 - encoder(16384) + encoder(F)
    rows = {
        f"HTML pages ({F + C + args.ref_classes:,} unit and class pages, "
        f"{html_units / (F + C) / 1e3:.1f} KB per unit page)": html,
        f"unit visualisations ({real['f_vis'] / 1e3:.1f} KB per unit, the real site's)": vis,
        f"dataset images ({args.ref_images:,} photographs, {photo / 1e3:.2f} KB each)": images,
        "bulk export (data/, float16 SAE weights)": parts.get(sizes.EXPORT, 0),
        f"try page (bench_reference.py's {args.try_mb:g} MB at 16,384 features, encoder scaled)": try_bytes,
        "maps": parts.get(sizes.MAPS, 0),
        "other and static": parts.get(sizes.OTHER, 0) + parts.get(sizes.STATIC, 0),
    }
    total = sum(rows.values())
    fits = total + copies <= args.budget_mb * 1e6
    print(
        f"reference projection (one layer, {F:,} features, {C:,} neurons, {args.ref_classes:,} classes, "
        f"{args.ref_images:,} distinct example images; synthetic pages {mb(parts[sizes.PAGES])} "
        f"and visualisations {mb(synth_vis)} replaced as above):"
    )
    for name, size in sorted(rows.items(), key=lambda kv: -kv[1]):
        print(f"  {mb(size):>12}  {name}")
    print(
        f"  {mb(copies):>12}  the try page's copies of the dataset images: "
        + (
            "kept (they fit)"
            if fits
            else f"left out by site.try_dataset_images: auto ({mb(total + copies)} with them)"
        )
    )
    total += copies if fits else 0
    print(
        f"  {mb(total):>12}  total; budget {args.budget_mb:g} MB: "
        f"{'fits' if total <= args.budget_mb * 1e6 else 'OVER'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=int, default=16384)
    ap.add_argument("--neurons", type=int, default=1024)
    ap.add_argument("--images", type=int, default=3000, help="dataset images of the synthetic layer")
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument(
        "--class-names",
        choices=("imagenet", "demo"),
        default="imagenet",
        help="the synthetic classes' names: ImageNet's (timm's lemmas, evenly spaced over the 1,000; "
        "no facets) or the demo-like colour-and-shape names with facets",
    )
    ap.add_argument("--k", type=int, default=12, help="top examples per unit (examples.top_k default)")
    ap.add_argument(
        "--band-samples",
        type=int,
        default=3,
        help="examples per activation band, 6 bands (examples.band_samples default; 0: no bands)",
    )
    ap.add_argument("--vis-size", type=int, default=64, help="featurevis.image_size default")
    ap.add_argument("--thumb-size", type=int, default=48, help="featurevis.thumb_size default")
    ap.add_argument(
        "--real-site", type=Path, default=None, help="a built site for per-unit sizes (projection)"
    )
    ap.add_argument("--real-layer", default=None, help="layer of --real-site (default: its last)")
    ap.add_argument("--budget-mb", type=float, default=900.0)
    ap.add_argument("--ref-classes", type=int, default=1000, help="classes of the reference projection")
    ap.add_argument(
        "--ref-images", type=int, default=100_000, help="distinct example images of the reference projection"
    )
    ap.add_argument(
        "--try-mb",
        type=float,
        default=70.0,
        help="try page of the reference projection (benchmarks/bench_reference.py at 16,384 features)",
    )
    ap.add_argument("--rebuild", action="store_true", help="also time a no-change rebuild of the tiny config")
    ap.add_argument("--profile", type=int, default=0, help="cProfile this many feature pages")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--workers",
        default="1,2",
        help="comma-separated render process counts to compare (the last one's site is measured)",
    )
    args = ap.parse_args()
    F, C = args.features, args.neurons

    tmp = tempfile.TemporaryDirectory()
    work = args.workdir or Path(tmp.name)
    t0 = time.perf_counter()
    art = make_fake_artifacts(
        work / "art",
        n_classes=args.classes,
        n_features=F,
        n_neurons=C,
        n_images=args.images,
        image_size=32,
        layers=(LAYER,),
        k=args.k,
        grid=7,
        vis_size=args.vis_size,
        thumb_size=args.thumb_size,
        band_samples=args.band_samples,
        class_names=imagenet_names(args.classes) if args.class_names == "imagenet" else None,
    )
    # The SAE stage's SAELens copy, which the site publishes in site.sae_dtype (float16 by default).
    from atlasgen.sae_formats import load_sae_any, save_saelens

    save_saelens(load_sae_any(art["sae"] / LAYER), art["sae"] / LAYER / "saelens", hook_name=LAYER)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(
        f"synthetic artifacts: {F:,} features x {C:,} neurons, {args.images:,} images "
        f"({time.perf_counter() - t0:.1f} s to write)"
    )

    if args.profile:
        profile_pages(art, work / "profile", args.profile)

    rates = {}
    for n in [int(x) for x in args.workers.split(",")]:
        site_dir = work / f"site-w{n}"
        summary, total, feat, cpu = render(art, site_dir, F, n)
        rates[n] = F / feat
        # With one worker the pages render in this process: pages per CPU-second is what one idle core does.
        per_cpu = f"; {F / cpu:,.0f} pages per CPU-second in-process" if n == 1 else ""
        print(
            f"workers={n}: render {summary.pages:,} pages, {summary.files:,} files, {mb(summary.bytes)} in "
            f"{total:.1f} s; feature pages: {F:,} in {feat:.1f} s = {F / feat:,.0f} pages/s{per_cpu} "
            f"(target >= 500/s on 2 cores)"
        )
    if len(rates) > 1:
        base = next(iter(rates.values()))
        print("speed-up: " + ", ".join(f"{n} workers {r / base:.2f}x" for n, r in rates.items()))
    if len(rates) > 1:
        digests = {n: tree_digest(work / f"site-w{n}") for n in rates}
        print(
            "same bytes for every worker count: "
            + ("yes" if len(set(digests.values())) == 1 else f"NO {digests}")
        )
    site = site_dir
    # The build's site marker, which the pipeline (not render_site) writes after the render.
    from atlasgen.cache import SITE_MARKER
    from atlasgen.site.keep import files_under, marker_text

    (site / SITE_MARKER).write_text(marker_text("0" * 20, files_under(site)), encoding="utf-8")
    parts = size_breakdown(site)
    from atlasgen.site.plan import project

    t0 = time.perf_counter()
    projected = project(
        artifacts=art, layers=[LAYER], model_name=MODEL, title="bench", date="2026-01-01", base_url=""
    ).parts
    print(
        f"by part (MB = 10^6 bytes), beside the site stage's projection before rendering "
        f"({time.perf_counter() - t0:.1f} s): rendered {mb(sum(parts.values()))}, projected "
        f"{mb(sum(projected.values()))}"
    )
    for name, size in sorted(parts.items(), key=lambda kv: -kv[1]):
        p = projected.get(name, 0)
        print(f"  {mb(size):>12}  projected {mb(p):>12} ({p / size if size else float('nan'):.2f}x)  {name}")
    layer_page = (site / MODEL / LAYER / "index.html").stat().st_size
    export = (site / "data" / MODEL / LAYER / "features.jsonl.gz").stat().st_size
    print(f"layer page {mb(layer_page)}, features.jsonl.gz {mb(export)}")

    if args.real_site:
        real = real_unit_bytes(args.real_site, args.real_layer)
        print(
            f"real site {args.real_site} ({real['layer']}: {real['n_features']} features, "
            f"{real['n_neurons']} neurons): {real['f'] / 1e3:.1f} KB per feature folder, of it "
            f"{real['f_vis'] / 1e3:.1f} KB visualisations; {real['n'] / 1e3:.1f} KB per neuron folder; "
            f"{real['images'] / max(real['n_images'], 1) / 1e3:.1f} KB per dataset image"
        )
        for name, size in sorted(page_parts(args.real_site, real["layer"]).items(), key=lambda kv: -kv[1]):
            print(f"  {size / 1e3:8.1f} KB  per feature page: {name}")
        reference_projection(args, site, parts, real)

    if args.rebuild:
        first, again = rebuild_time()
        print(
            f"tiny config: first build {first:.1f} s, no-change rebuild {again:.2f} s "
            f"({first / again:.0f}x faster)"
        )


if __name__ == "__main__":
    main()
