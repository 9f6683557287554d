"""Client-side search at 17k units in headless Chromium: index bytes, index build, time per keystroke.

Renders a small synthetic site (tests/test_site.py's fake artifacts), then replaces its
``search_index.js`` with one of ``--features`` features and ``--neurons`` neurons in the same format
(automatic labels and top classes like the fake layer's, so words repeat as real labels do, and
``--annotations`` annotated units with a human label, tags and a sentence of notes), or uses a built
site given with ``--site``. In Chromium (Playwright, Debian's chromium, file://) it opens the home page
and measures: the MiniSearch index build the page does once (on focus of the box, or the first
search); then, for each query, the time from dispatching the ``input`` event the page listens to until
it returns (the search runs synchronously in that handler: exact ids, MiniSearch with prefix and typo
tolerance, ranking and writing the result list), and the time to the next animation frame (results on
screen). "typed" queries are entered one character at a time, each character a keystroke.

Usage:
    python benchmarks/bench_search.py [--features 16384] [--neurons 1024] [--repeat 9] [--site _site]
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_site import MODEL, fake_label, make_fake_artifacts  # noqa: E402

from atlasgen.site.build import render_site  # noqa: E402
from atlasgen.site.fmt import js_global  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CLASSES = [
    "red circle",
    "blue square",
    "green triangle",
    "yellow star",
    "purple ring",
    "orange cross",
    "tabby cat",
    "golden retriever",
    "fire truck",
    "bicycle",
    "coffee mug",
    "sea anemone",
]

QUERIES = [
    ("id", "1234"),
    ("layer/f/id", "mixed5b/f/16000"),
    ("neuron id", "n/106"),
    ("one letter", "s"),
    ("word prefix", "stri"),
    ("two words", "striped red"),
    ("class name", "golden retriever"),
    ("typo", "cactsu"),
    ("notes word", "spines"),
    ("no match", "zzzz qqq"),
]
TYPED = ["cactsu", "golden retr"]
TAGS = ["desert", "plants", "birds", "heads", "wheels", "texture", "edges", "faces"]


def synthetic_index(n: int, n_neurons: int, n_annotations: int) -> dict:
    def column(count: int, kind: str) -> dict:
        return {
            "n": count,
            "label": [fake_label(i) if kind == "f" else "" for i in range(count)],
            "classes": [", ".join(CLASSES[(i * k) % len(CLASSES)] for k in (1, 5, 7)) for i in range(count)],
            "flags": ["dense" if i % 37 == 0 else "" for i in range(count)],
            "density": [f"{(i * 7919) % 1000 / 100:.2g}%" for i in range(count)],
            "thumb": [1] * count,
        }

    step = max(1, n // max(1, n_annotations))
    annotations = [
        [
            "mixed5b",
            "f",
            i,
            f"cactus spines {i}" if k % 10 == 0 else f"{TAGS[k % len(TAGS)]} detector {i}",
            " ".join(TAGS[(k + j) % len(TAGS)] for j in range(2)),
            f"Fires on {TAGS[k % len(TAGS)]} seen up close; compare mixed5b/f/{(i + 1) % n} and "
            "the spines of "
            "succulents, which it prefers to smooth stems.",
        ]
        for k, i in enumerate(range(0, n, step))
    ][:n_annotations]
    classes = [[f"{MODEL}/classes/{c.replace(' ', '-')}/index.html", c, ""] for c in CLASSES]
    return {
        "model": MODEL,
        "layers": [{"name": "mixed5b", "f": column(n, "f"), "n": column(n_neurons, "n")}],
        "annotations": annotations,
        "classes": classes,
    }


KEYSTROKE = """([q, repeat]) => {
    const input = document.querySelector('[data-search]');
    const out = [];
    for (let r = 0; r < repeat; r++) {
        input.value = '';
        input.dispatchEvent(new Event('input'));
        input.value = q;
        const t = performance.now();
        input.dispatchEvent(new Event('input'));
        out.push(performance.now() - t);
    }
    return out;
}"""

TYPE = """([q, repeat]) => {
    const input = document.querySelector('[data-search]');
    const out = [];
    for (let r = 0; r < repeat; r++) {
        input.value = '';
        input.dispatchEvent(new Event('input'));
        for (let c = 1; c <= q.length; c++) {
            input.value = q.slice(0, c);
            const t = performance.now();
            input.dispatchEvent(new Event('input'));
            out.push(performance.now() - t);
        }
    }
    return out;
}"""

PAINT = """(q) => new Promise(done => {
    const input = document.querySelector('[data-search]');
    input.value = ''; input.dispatchEvent(new Event('input'));
    const t = performance.now();
    input.value = q; input.dispatchEvent(new Event('input'));
    requestAnimationFrame(() => setTimeout(() => done(performance.now() - t), 0));
})"""


def measure(site: Path, repeat: int) -> None:
    from playwright.sync_api import sync_playwright

    raw = (site / "search_index.js").read_bytes()
    index_bytes, gz_bytes = len(raw), len(gzip.compress(raw, 9))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        t0 = time.perf_counter()
        page.goto((site / "index.html").resolve().as_uri())
        page.wait_for_load_state("load")
        load_s = time.perf_counter() - t0
        units = page.evaluate(
            "window.ATLAS_SEARCH.layers.reduce((s, L) => s + L.f.n + L.n.n, 0) + "
            "window.ATLAS_SEARCH.classes.length"
        )
        builds = []
        for _ in range(3):  # a fresh page each time: the build the reader waits for once
            page.reload()
            page.wait_for_load_state("load")
            builds.append(
                page.evaluate(
                    "() => { const t = performance.now(); window.atlasSearch.load(); return "
                    "performance.now() - t; }"
                )
            )
        build_ms = statistics.median(builds)
        page.reload()
        page.wait_for_load_state("load")
        first = page.evaluate(KEYSTROKE.replace("r < repeat", "r < 1"), ["cactus", 1])[0]
        print(
            f"index: {units:,} units, search_index.js {index_bytes / 1e6:.2f} MB "
            f"({gz_bytes / 1e6:.2f} MB gzip); "
            f"home page with the index loaded in {load_s * 1e3:.0f} ms (file://); MiniSearch index built in "
            f"{build_ms:.0f} ms (median of 3, on focus); a first search that builds it: {first:.0f} ms"
        )
        print(f"{'query':<30} {'matches':>9} {'median ms':>10} {'max ms':>8} {'to paint ms':>12}")
        worst = 0.0
        for name, q in QUERIES:
            times = page.evaluate(KEYSTROKE, [q, repeat])
            paint = page.evaluate(PAINT, q)
            status = page.evaluate("document.getElementById('search-status').textContent")
            med, mx = statistics.median(times), max(times)
            found = re.findall(r"\d+", status)
            status = found[-1] if found else "0"
            worst = max(worst, mx, paint)
            print(f"{name + ' ' + repr(q):<30} {status:>9} {med:>10.1f} {mx:>8.1f} {paint:>12.1f}")
        for q in TYPED:
            times = page.evaluate(TYPE, [q, max(1, repeat // 3)])
            med, mx = statistics.median(times), max(times)
            worst = max(worst, mx)
            print(f"{'typed ' + repr(q):<30} {'':>9} {med:>10.1f} {mx:>8.1f} {'':>12}")
        print(f"worst keystroke {worst:.1f} ms (target < 150 ms at 17k units; index target < 3 MB)")
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=int, default=16384)
    ap.add_argument("--neurons", type=int, default=1024)
    ap.add_argument("--annotations", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--site", type=Path, default=None, help="a built site (its own search_index.js)")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if args.site:
        measure(args.site, args.repeat)
        return
    with tempfile.TemporaryDirectory() as tmp:
        art = make_fake_artifacts(Path(tmp) / "art", layers=("mixed5b",))
        site = Path(tmp) / "site"
        site.mkdir()
        render_site(
            artifacts=art,
            layers=["mixed5b"],
            model_name=MODEL,
            title="bench",
            date="2026-01-01",
            base_url="",
            out_dir=site,
        )
        index = synthetic_index(args.features, args.neurons, args.annotations)
        (site / "search_index.js").write_text(js_global("ATLAS_SEARCH", index))
        measure(site, args.repeat)


if __name__ == "__main__":
    main()
