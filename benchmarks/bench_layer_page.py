"""Benchmark of the layer page at the reference width, in headless Chromium over file://.

Writes synthetic artifacts for one layer of ``--features`` SAE features over
``--neurons`` channels (tests/test_site.py's ``make_fake_artifacts``: real
npz/json/WebP files), renders the layer page as the site does (the page, its
``cards.js``, the unit thumbnails, ``static/``) and, beside it, the full-grid
page the renderer wrote before the grids were virtualised: the same page with
every card in the HTML and the sort script that re-appends every card. Then
measures each in Debian's Chromium (Playwright, ``--no-sandbox``):

* first usable paint: from navigation start to the first frame after
  DOMContentLoaded (every script has run, so the sort buttons work, and the
  page has been laid out); also first contentful paint;
* sort: time from a click on a sort button to the next frame (density, max
  activation, back to id), median of ``--repeats``;
* filter (the virtualised page only; the full-grid page has none): typing a
  query into the feature filter, and clearing it, to the next frame;
* page bytes (HTML + card data) and DOM nodes after load.

Targets: first usable paint < 1 s, sort and filter of 17k units < 100 ms.

    python benchmarks/bench_layer_page.py                       # 16,384 features + 1,024 neurons
    python benchmarks/bench_layer_page.py --features 2048 --neurons 128   # quick check
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

from test_site import make_fake_artifacts  # noqa: E402

from atlasgen.site import grid, pages, urls  # noqa: E402
from atlasgen.site.artifacts import load_artifacts  # noqa: E402
from atlasgen.site.build import _Writer, copy_static, copy_unit_images, make_environment  # noqa: E402
from atlasgen.site.cards import unit_card  # noqa: E402
from atlasgen.site.fmt import js_global  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
MODEL, LAYER = "demonet", "mixed5b"

# The sort script of the full-grid page (atlas.js before the grids were virtualised): sorts the <li>
# elements by their data-* attributes and appends every one again.
OLD_SORT_JS = """
Array.prototype.forEach.call(document.querySelectorAll("[data-grid-tools]"), function (tools) {
  var grid = document.querySelector('ol[data-old-grid="' + tools.getAttribute("data-grid-tools") + '"]');
  var buttons = tools.querySelectorAll("button[data-sort]");
  function num(li, key) { return parseFloat(li.getAttribute("data-" + key)) || 0; }
  function sortBy(key) {
    var items = Array.prototype.slice.call(grid.children);
    items.sort(function (a, b) {
      var ia = num(a, "id"), ib = num(b, "id");
      if (key === "id") return ia - ib;
      return (num(b, key) - num(a, key)) || (ia - ib);
    });
    var frag = document.createDocumentFragment();
    items.forEach(function (li) { frag.appendChild(li); });
    grid.appendChild(frag);
    Array.prototype.forEach.call(buttons, function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-sort") === key ? "true" : "false");
    });
  }
  Array.prototype.forEach.call(buttons, function (b) {
    b.addEventListener("click", function () { sortBy(b.getAttribute("data-sort")); });
  });
  tools.hidden = false;
});
"""

USABLE_JS = """
document.addEventListener("DOMContentLoaded", function () {
  requestAnimationFrame(function () { setTimeout(function () { window.__usable = performance.now(); }, 0); });
});
"""

# Run ``action`` (JS source of a function body), then wait for the next frame; returns milliseconds.
TIMED_JS = """async (body) => {
  const t0 = performance.now();
  (new Function(body))();
  await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
  return performance.now() - t0;
}"""


def write_pages(art: dict, out: Path) -> tuple[Path, Path]:
    """The virtualised layer page (as build.render_site writes it) and the full-grid page beside it."""
    arts = load_artifacts(art, [LAYER])
    site = pages.Site(title="bench", date="2026-01-01", base_url="", model=MODEL, version="bench")
    ix = pages.LayerIndex(site, arts.layers[0], arts.dataset)
    w = _Writer(out, make_environment(), 1, None)
    copy_unit_images(w, ix)
    w.page(*pages.layer_page(site, ix))
    w.text(grid.cards_url(MODEL, LAYER), js_global("ATLAS_CARDS", grid.cards_data(ix)))
    copy_static(out)
    new = out / urls.layer(MODEL, LAYER)
    html = new.read_text()
    root = urls.root_prefix(urls.layer(MODEL, LAYER))

    def full_grid(match: re.Match) -> str:
        name = match.group(2)
        cards = ix.feature_cards if name == "features" else ix.neuron_cards
        px = pages._pixelated(ix.vis_size.get("f"), 120)
        body = "\n".join(str(unit_card(root, c, pixelated=px, sortable=True)) for c in cards)
        return f'<ol class="grid" id="{match.group(1)}" data-old-grid="{name}">\n{body}\n</ol>'

    old = re.sub(
        r'<ol class="grid vgrid" id="([a-z-]+)" data-cards="(\w+)"[^>]*>.*?</ol>', full_grid, html, flags=re.S
    )
    old = re.sub(r"<noscript>.*?</noscript>", "", old, flags=re.S)
    old = old.replace('<script src="cards.js"></script>\n', "")
    old = old.replace("</body>", f"<script>{OLD_SORT_JS}</script>\n</body>")
    old = urls.shorten_links(old, urls.layer(MODEL, LAYER))
    old_path = new.with_name("full-grid.html")
    old_path.write_text(old)
    return new, old_path


def measure(browser, path: Path, repeats: int, virtual: bool) -> dict:
    out: dict = {"bytes": path.stat().st_size + ((path.parent / "cards.js").stat().st_size if virtual else 0)}
    loads, fcps = [], []
    for _ in range(repeats):
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        ctx.add_init_script(USABLE_JS)
        page = ctx.new_page()
        page.goto(path.as_uri(), wait_until="load", timeout=120_000)
        page.wait_for_function("() => window.__usable !== undefined", timeout=120_000)
        loads.append(page.evaluate("() => window.__usable"))
        fcps.append(
            page.evaluate("() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
        )
        if len(loads) < repeats:
            ctx.close()
    out["usable_ms"] = statistics.median(loads)
    out["fcp_ms"] = statistics.median([f for f in fcps if f is not None] or [float("nan")])
    out["dom_nodes"] = page.evaluate("() => document.getElementsByTagName('*').length")
    page.evaluate("() => document.getElementById('features-title').scrollIntoView()")
    sorts = {}
    for key in ("density", "max", "id"):
        click = f"document.querySelector('[data-grid-tools=features] button[data-sort={key}]').click()"
        times = []
        for _ in range(repeats):
            times.append(page.evaluate(TIMED_JS, click))
            if key != "id":  # back to id order, so each timed click sorts again
                page.evaluate(
                    TIMED_JS,
                    "document.querySelector('[data-grid-tools=features] button[data-sort=id]').click()",
                )
        sorts[key] = statistics.median(times)
    out["sort_ms"] = sorts
    if virtual:
        box = "document.querySelector('[data-grid-tools=features] [data-grid-filter]')"
        typed = f"const i = {box}; i.value = 'circle 1'; i.dispatchEvent(new Event('input'));"
        cleared = f"const i = {box}; i.value = ''; i.dispatchEvent(new Event('input'));"
        t_typed, t_cleared = [], []
        for _ in range(repeats):
            t_typed.append(page.evaluate(TIMED_JS, typed))
            out["filter_matches"] = page.evaluate("() => window.atlasGrids.features.ids().length")
            t_cleared.append(page.evaluate(TIMED_JS, cleared))
        out["filter_ms"] = statistics.median(t_typed)
        out["unfilter_ms"] = statistics.median(t_cleared)
        scroll = "window.scrollBy(0, 20000)"
        out["scroll_ms"] = statistics.median(page.evaluate(TIMED_JS, scroll) for _ in range(repeats))
    ctx.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=int, default=16384)
    ap.add_argument("--neurons", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = tempfile.TemporaryDirectory()
    work = args.workdir or Path(tmp.name)
    t0 = time.perf_counter()
    art = make_fake_artifacts(
        work / "art",
        n_classes=100,
        n_features=args.features,
        n_neurons=args.neurons,
        n_images=400,
        image_size=32,
        layers=(LAYER,),
        k=4,
        grid=4,
        vis_size=64,
        thumb_size=48,
    )
    site = work / "site"
    site.mkdir()
    new, old = write_pages(art, site)
    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.features:,} features + "
        f"{args.neurons:,} neurons ({time.perf_counter() - t0:.0f} s to write the artifacts and pages)"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            r_old = measure(browser, old, args.repeats, virtual=False)
            r_new = measure(browser, new, args.repeats, virtual=True)
        finally:
            browser.close()

    def row(name, a, b, unit="ms", fmt="{:,.0f}"):
        ratio = f"{a / b:,.1f}x" if a and b else ""
        print(f"  {name:<26} {fmt.format(a) + ' ' + unit:>14} {fmt.format(b) + ' ' + unit:>14} {ratio:>9}")

    print(f"  {'':<26} {'full grid':>14} {'virtualised':>14} {'ratio':>9}")
    row("first usable paint", r_old["usable_ms"], r_new["usable_ms"])
    row("first contentful paint", r_old["fcp_ms"], r_new["fcp_ms"])
    for key in ("density", "max", "id"):
        row(f"sort by {key}", r_old["sort_ms"][key], r_new["sort_ms"][key], fmt="{:,.1f}")
    row("page bytes (HTML + cards.js)", r_old["bytes"] / 1e6, r_new["bytes"] / 1e6, "MB", "{:,.2f}")
    row("DOM nodes", r_old["dom_nodes"], r_new["dom_nodes"], "")
    print(
        f"  filter ({r_new['filter_matches']:,} matches): {r_new['filter_ms']:.1f} ms, cleared: "
        f"{r_new['unfilter_ms']:.1f} ms; scroll 20,000 px to the next frame: {r_new['scroll_ms']:.1f} ms"
    )
    ok = (
        r_new["usable_ms"] < 1000
        and max(r_new["sort_ms"].values()) < 100
        and max(r_new["filter_ms"], r_new["unfilter_ms"]) < 100
    )
    print("targets (usable < 1 s, sort and filter < 100 ms): " + ("met" if ok else "NOT met"))


if __name__ == "__main__":
    main()
