"""Client-side search latency in headless Chromium (results in < 100 ms for 16,384 features).

Renders a small synthetic site (tests/test_site.py's fake artifacts), then
replaces its ``search_index.js`` with one of ``--features`` features in the
same format (labels and top classes like the fake layer's, so words repeat
as real labels do), or uses a built site given with ``--site``. In Chromium
(Playwright, Debian's chromium, file://) it opens the home page and, for each
query, sets the search box and dispatches the ``input`` event the page
listens to; the search runs synchronously in that handler, so the time from
dispatch to return covers matching, sorting and writing the result list.
Layout and paint of the list come after; the benchmark also reports the time
to the next animation frame (results on screen).

Usage:
    python benchmarks/bench_search.py [--features 16384] [--repeat 15] [--site _site]
"""

from __future__ import annotations

import argparse
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
    ("one letter", "s"),
    ("word prefix", "stri"),
    ("two words", "striped red"),
    ("class name", "golden retriever"),
    ("no match", "zzzz qqq"),
]


def synthetic_index(n: int) -> dict:
    features = []
    for i in range(n):
        classes = ", ".join(CLASSES[(i * k) % len(CLASSES)] for k in (1, 5, 7))
        features.append([f"{MODEL}/mixed5b/f/{i}/index.html", "mixed5b", i, fake_label(i), classes])
    classes = [[f"{MODEL}/classes/{c.replace(' ', '-')}/index.html", c, ""] for c in CLASSES]
    return {"model": MODEL, "features": features, "classes": classes}


def measure(site: Path, repeat: int) -> None:
    from playwright.sync_api import sync_playwright

    index_bytes = (site / "search_index.js").stat().st_size
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        t0 = time.perf_counter()
        page.goto((site / "index.html").resolve().as_uri())
        page.wait_for_load_state("load")
        load_s = time.perf_counter() - t0
        n = page.evaluate("window.ATLAS_SEARCH.features.length")
        print(
            f"index: {n:,} features, search_index.js {index_bytes / 1e6:.2f} MB; home page with the index "
            f"loaded in {load_s * 1e3:.0f} ms (file://)"
        )
        print(f"{'query':<28} {'matches':>9} {'median ms':>10} {'max ms':>8} {'to paint ms':>12}")
        worst = 0.0
        for name, q in QUERIES:
            times = page.evaluate(
                """([q, repeat]) => {
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
            }""",
                [q, repeat],
            )
            paint = page.evaluate(
                """(q) => new Promise(done => {
                const input = document.querySelector('[data-search]');
                input.value = ''; input.dispatchEvent(new Event('input'));
                const t = performance.now();
                input.value = q; input.dispatchEvent(new Event('input'));
                requestAnimationFrame(() => setTimeout(() => done(performance.now() - t), 0));
            })""",
                q,
            )
            status = page.evaluate("document.getElementById('search-status').textContent")
            med, mx = statistics.median(times), max(times)
            found = re.findall(r"\d+", status)
            status = found[-1] if found else "0"
            worst = max(worst, mx, paint)
            print(f"{name + ' ' + repr(q):<28} {status:>9} {med:>10.1f} {mx:>8.1f} {paint:>12.1f}")
        print(f"worst case {worst:.1f} ms (target < 100 ms for 16,384 features)")
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=int, default=16384)
    ap.add_argument("--repeat", type=int, default=15)
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
        (site / "search_index.js").write_text(js_global("ATLAS_SEARCH", synthetic_index(args.features)))
        measure(site, args.repeat)


if __name__ == "__main__":
    main()
