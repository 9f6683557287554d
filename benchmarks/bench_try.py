"""The try page in headless Chromium: time to the first result and bytes downloaded.

Two measurements:

``--site DIR`` (a built site): opens ``<model>/try/index.html`` from file:// in a fresh page,
chooses an image through the file input as soon as the page is up, and waits for the result. The
time from navigation to the result covers loading the runtime (its .wasm gzipped, in base64),
inflating and compiling it,
creating the session from the layer's graph, decoding, resizing and one run. Reported separately:
the page's own timings (runtime ready, session ready, first result) and a second run on the warm
session. Bytes: every file the page requested, by size on disk.

``--demo``: the same harness with DemoNet at the demo's sizes (random weights: the timing does
not depend on them).

``--inceptionv1``: lucent's InceptionV1 with random weights (no download), truncated at mixed5b
(with its head, as the try page exports a model that has one), and a random BatchTopK SAE of
``--features`` features, exported as the tryimage stage does (float16 weights) and run in a minimal
page with the same runtime files and the same runtime settings as the try page (one thread, no
proxy, the .wasm and the graph as base64 classic scripts), on a 224 px image.

Usage:
    python benchmarks/bench_try.py --site _site [--image photo.png] [--repeat 3]
    python benchmarks/bench_try.py --inceptionv1 [--features 16384] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = "/usr/bin/chromium"


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


def _bytes(urls: list[str], root: Path) -> int:
    from urllib.parse import unquote, urlparse

    total = 0
    for url in set(urls):
        if url.startswith("file://"):
            path = Path(unquote(urlparse(url).path))
            if path.is_file() and root in path.parents:
                total += path.stat().st_size
    return total


def bench_site(site: Path, image: Path | None, repeat: int) -> None:
    from playwright.sync_api import sync_playwright

    pages = sorted(site.glob("*/try/index.html"))
    if not pages:
        sys.exit(f"{site}: no <model>/try/index.html (was the site built with try_image.enabled?)")
    if image is None:
        image = Path(tempfile.mkdtemp()) / "reader.png"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(image)
    walls, firsts, scripts, runtimes, sessions, warm, sizes = [], [], [], [], [], [], []
    with sync_playwright() as p:
        browser = _browser(p)
        for _ in range(repeat):
            context = browser.new_context()
            page = context.new_page()
            urls: list[str] = []
            page.on("request", lambda r: urls.append(r.url))
            start = time.perf_counter()
            page.goto(pages[0].as_uri())
            page.set_input_files("#try-file", str(image))
            page.wait_for_function("window.ATLAS_TRY_RESULT || window.ATLAS_TRY_ERROR", timeout=300_000)
            walls.append(time.perf_counter() - start)
            error = page.evaluate("window.ATLAS_TRY_ERROR || null")
            if error:
                sys.exit(f"the page failed: {error}")
            t = page.evaluate("window.ATLAS_TRY_RESULT.timing")
            firsts.append(t["first"] / 1e3)
            scripts.append(t["scripts"] / 1e3)
            runtimes.append(t["runtime"] / 1e3)
            sessions.append(t["session"] / 1e3)
            page.evaluate("window.ATLAS_TRY_RESULT = null; document.getElementById('try-file').value = ''")
            page.set_input_files("#try-file", str(image))
            page.wait_for_function("window.ATLAS_TRY_RESULT", timeout=300_000)
            warm.append(page.evaluate("window.ATLAS_TRY_RESULT.ms") / 1e3)
            sizes.append(_bytes(urls, site.resolve()))
            context.close()
        browser.close()
    med = statistics.median
    print(f"site {site} ({pages[0].relative_to(site)}), {repeat} fresh pages, medians:")
    print(f"  navigation to first result  {med(walls):.2f} s")
    print(
        f"  page clock: runtime scripts run {med(scripts):.2f} s, .wasm inflated {med(runtimes):.2f} s, "
        f"session ready {med(sessions):.2f} s, first result {med(firsts):.2f} s"
    )
    print(f"  second image (warm session) {med(warm) * 1e3:.0f} ms")
    print(f"  downloaded (files the page requested) {med(sizes) / 1e6:.1f} MB")


HARNESS = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>bench</title></head><body>
<script src="static/vendor/onnxruntime-web/ort.wasm.min.js"></script>
<script src="static/vendor/onnxruntime-web/ort-glue.js"></script>
<script src="static/vendor/onnxruntime-web/ort-wasm.js"></script>
<script src="graph.js"></script>
<script>
(async function () {
  const b64 = (s) => { if (Uint8Array.fromBase64) return Uint8Array.fromBase64(s); const t = atob(s), o = new Uint8Array(t.length); for (let i = 0; i < t.length; i++) o[i] = t.charCodeAt(i); return o; };
  const t0 = performance.now(), out = {};
  ort.env.wasm.numThreads = 1; ort.env.wasm.proxy = false;
  const gz = new Blob([b64(window.ATLAS_ORT_WASM_GZ)]);
  ort.env.wasm.wasmBinary = new Uint8Array(await new Response(gz.stream().pipeThrough(new DecompressionStream("gzip"))).arrayBuffer());
  ort.env.wasm.wasmPaths = { mjs: URL.createObjectURL(new Blob([window.ATLAS_ORT_GLUE], { type: "text/javascript" })) };
  const s = await ort.InferenceSession.create(b64(window.ATLAS_TRY_GRAPHS.g), { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  out.session = performance.now() - t0;
  const x = new Float32Array(3 * SIZE * SIZE); for (let i = 0; i < x.length; i++) x[i] = (i * 7919 % 256) / 255;
  let t = performance.now();
  await s.run({ image: new ort.Tensor("float32", x, [1, 3, SIZE, SIZE]) });
  out.first_run = performance.now() - t; out.first = performance.now() - t0;
  t = performance.now();
  await s.run({ image: new ort.Tensor("float32", x, [1, 3, SIZE, SIZE]) });
  out.warm = performance.now() - t;
  window.BENCH = out;
})().catch((e) => { window.BENCH = { error: String(e) }; });
</script></body></html>
"""  # noqa: E501


class _Writer:
    def __init__(self, root: Path):
        self.root = root

    def _target(self, path: str) -> Path:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def text(self, path: str, content: str) -> None:
        self._target(path).write_text(content, encoding="utf-8")

    def copy(self, source: Path, path: str) -> None:
        self._target(path).write_bytes(Path(source).read_bytes())


def bench_inceptionv1(features: int, repeat: int) -> None:
    import torch

    from atlasgen.config import ModelConfig
    from atlasgen.models import build_model

    torch.manual_seed(0)
    model = (
        build_model(ModelConfig(source="inceptionv1", pretrained=False), 1008).eval().requires_grad_(False)
    )
    title = f"InceptionV1 to mixed5b + head, random weights, BatchTopK SAE of {features:,} features, 224 px"
    bench_graph(title, model, 1024, features, 224, 1008, repeat)


def bench_demo(repeat: int) -> None:
    """DemoNet at the demo's sizes (64 px, mixed5b: 128 channels, SAE expansion 4), random weights."""
    import torch

    from atlasgen.demo.model import DemoNet

    torch.manual_seed(0)
    model = DemoNet(16).eval().requires_grad_(False)
    bench_graph(
        "DemoNet to mixed5b + head, random weights, BatchTopK SAE of 512 features, 64 px",
        model,
        128,
        512,
        64,
        16,
        repeat,
    )


def bench_graph(title: str, model, d_in: int, features: int, size: int, n_out: int, repeat: int) -> None:
    import torch
    from playwright.sync_api import sync_playwright

    from atlasgen.onnx_graphs import ImageGraph, export_graph, weights_to_float16
    from atlasgen.sae import SparseAutoencoder
    from atlasgen.site import trypage

    sae = SparseAutoencoder(d_in, features, "batchtopk", 8)
    with torch.no_grad():
        sae.W_enc.normal_(0, 0.03)
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(features, d_in), dim=1))
        sae.threshold.fill_(0.1)
    t = time.perf_counter()
    graph = ImageGraph(model, "mixed5b", sae.eval(), list(range(n_out)))
    data = weights_to_float16(export_graph(graph, size))
    export_s = time.perf_counter() - t
    root = Path(tempfile.mkdtemp(prefix="bench-try-"))
    w = _Writer(root)
    trypage.write_runtime(w)
    (root / "graph.js").write_text(
        f'window.ATLAS_TRY_GRAPHS = {{"g": "{trypage._b64(data)}"}};\n', encoding="utf-8"
    )
    (root / "index.html").write_text(HARNESS.replace("SIZE", str(size)), encoding="utf-8")
    runtime_bytes = sum(f.stat().st_size for f in (root / "static").rglob("*.js"))
    results = []
    with sync_playwright() as p:
        browser = _browser(p)
        for _ in range(repeat):
            context = browser.new_context()
            page = context.new_page()
            start = time.perf_counter()
            page.goto((root / "index.html").as_uri())
            page.wait_for_function("window.BENCH", timeout=600_000)
            wall = time.perf_counter() - start
            r = page.evaluate("window.BENCH")
            if "error" in r:
                sys.exit(f"the harness failed: {r['error']}")
            results.append({**r, "wall": wall})
            context.close()
        browser.close()
    med = statistics.median
    print(f"{title}, {repeat} fresh pages, medians:")
    print(
        f"  export + float16: {export_s:.1f} s; graph {len(data) / 1e6:.1f} MB (graph.js "
        f"{(root / 'graph.js').stat().st_size / 1e6:.1f} MB)"
    )
    print(
        f"  runtime scripts {runtime_bytes / 1e6:.1f} MB; download in all "
        f"{(runtime_bytes + (root / 'graph.js').stat().st_size) / 1e6:.1f} MB"
    )
    print(f"  navigation to first result {med(r['wall'] for r in results):.2f} s")
    print(
        f"  page clock: session ready {med(r['session'] for r in results) / 1e3:.2f} s, first run "
        f"{med(r['first_run'] for r in results) / 1e3:.2f} s, first result "
        f"{med(r['first'] for r in results) / 1e3:.2f} s"
    )
    print(f"  warm run {med(r['warm'] for r in results) / 1e3:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--site", type=Path)
    ap.add_argument("--image", type=Path)
    ap.add_argument("--inceptionv1", action="store_true")
    ap.add_argument("--demo", action="store_true", help="DemoNet's graph at the demo's sizes, in the harness")
    ap.add_argument("--features", type=int, default=16384)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.site:
        bench_site(args.site, args.image, args.repeat)
    if args.inceptionv1:
        bench_inceptionv1(args.features, args.repeat)
    if args.demo:
        bench_demo(args.repeat)
    if not (args.site or args.inceptionv1 or args.demo):
        ap.error("give --site DIR, --demo and/or --inceptionv1")


if __name__ == "__main__":
    main()
