"""Benchmark of the map page on a synthetic layer, in headless Chromium over file://.

Writes a map page with N synthetic features (planted 3-level hierarchy:
8 top clusters x 4 x 4, Gaussian blobs), their thumbnails packed into sprite
sheets exactly as the site renderer does (atlasgen.site.mapview), then
measures in Debian's Chromium driven by Playwright:

* time to first full paint: from navigation start until map.js has drawn a
  frame with every sprite sheet it asked for loaded (window.ATLAS_MAP_PAINTED),
  for the opening view (top clusters) and for a view zoomed in to single features;
* frames per second while panning and while zooming (one pan or zoom step per
  requestAnimationFrame callback for a fixed number of frames; fps = frames /
  elapsed), at the top-cluster level and at the single-feature level.

Targets: first full paint <= 2 s, >= 30 fps, at N = 16,384.

    python benchmarks/bench_map.py                 # 1,024 and 16,384 features side by side
    python benchmarks/bench_map.py --sizes 1024    # quick check
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from atlasgen.site import pages
from atlasgen.site.build import copy_static, make_environment
from atlasgen.site.fmt import js_global
from atlasgen.site.mapview import SHEET_COLUMNS

CHROMIUM = "/usr/bin/chromium"
THUMB = 32


def synthetic_site(root: Path, n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    branching = (8, 4, 4)
    n_leaf = int(np.prod(branching))
    centres = [rng.uniform(0.15, 0.85, size=(branching[0], 2))]
    spreads = (0.12, 0.05, 0.02)
    for lvl in (1, 2):
        parent = np.repeat(centres[-1], branching[lvl], axis=0)
        centres.append(parent + rng.normal(0, spreads[lvl - 1], size=parent.shape))
    leaf = rng.integers(0, n_leaf, n)
    xy = np.clip(centres[2][leaf] + rng.normal(0, spreads[2], size=(n, 2)), 0, 1)
    cluster_ids = [leaf // (branching[1] * branching[2]), leaf // branching[2], leaf]
    levels = []
    for lvl, ids in enumerate(cluster_ids):
        entries = []
        for c in range(len(centres[lvl])):
            members = np.flatnonzero(ids == c)
            if not len(members):
                continue
            rep = int(members[np.argmin(((xy[members] - xy[members].mean(0)) ** 2).sum(1))])
            entries.append(
                {
                    "name": f"group {lvl}.{c}",
                    "x": round(float(xy[members, 0].mean()), 5),
                    "y": round(float(xy[members, 1].mean()), 5),
                    "size": int(len(members)),
                    "rep": rep,
                }
            )
        levels.append(entries)
    pos = [{int(e["name"].split(".")[1]): j for j, e in enumerate(lv)} for lv in levels]
    folder = root / "demo" / "layer" / "map"
    folder.mkdir(parents=True)
    # Sprite sheets: one noisy coloured square per feature, packed like write_sprite_sheets.
    per = SHEET_COLUMNS * SHEET_COLUMNS
    sheets = []
    for k, start in enumerate(range(0, n, per)):
        count = min(per, n - start)
        rows = -(-count // SHEET_COLUMNS)
        img = rng.integers(0, 255, size=(rows * THUMB, SHEET_COLUMNS * THUMB, 3), dtype=np.uint8)
        Image.fromarray(img).resize((SHEET_COLUMNS * THUMB // 4, rows * THUMB // 4)).resize(
            (SHEET_COLUMNS * THUMB, rows * THUMB)
        ).save(folder / f"sprites-{k}.webp", quality=80)
        sheets.append(f"sprites-{k}.webp")
    data = {
        "layer": "layer",
        "n": n,
        "features": {
            "id": list(range(n)),
            "x": [round(float(v), 5) for v in xy[:, 0]],
            "y": [round(float(v), 5) for v in xy[:, 1]],
            "label": [f"feature {i}" for i in range(n)],
            "density": [0.01] * n,
            "max": [1.0] * n,
            "top": ["class 0 50%"] * n,
            "thumb": [1] * n,
            "cluster": [[pos[lvl][int(c)] for c in ids] for lvl, ids in enumerate(cluster_ids)],
        },
        "levels": levels,
        "sprites": {"px": THUMB, "columns": SHEET_COLUMNS, "per_sheet": per, "sheets": sheets},
        "feature_href": "../f/{id}/index.html",
        "classes": ["class 0"],
        "class_hrefs": ["#"],
        "atlas": None,
    }
    (folder / "data.js").write_text(js_global("ATLAS_MAP", data))
    site = pages.Site(title="bench", date="2026-01-01", base_url="", model="demo", version="bench")
    path = "demo/layer/map/index.html"
    ctx = pages.base_context(
        site,
        path,
        "map",
        [],
        layer_name="layer",
        layer_href="demo/layer/index.html",
        clusters=[],
        n_levels=3,
        map_source="decoder directions",
        level_sizes=[len(lv) for lv in levels],
        has_atlas=False,
        atlas_points="0",
        atlas_grids=[],
        evaluation=[],
        n_points=str(n),
        scripts=["static/vendor/leaflet/leaflet.js", "demo/layer/map/data.js", "static/map.js"],
        body_class="map",
    )
    (root / path).write_text(make_environment().get_template("map.html").render(ctx))
    copy_static(root)
    return (root / path).resolve().as_uri()


FPS_JS = """async ([kind, frames]) => {
  const m = atlasMap.map;
  return await new Promise(resolve => {
    let i = 0, t0 = 0, gaps = [], last = 0;
    function step(t) {
      if (i === 0) { t0 = t; } else { gaps.push(t - last); }
      last = t;
      if (i === frames) { gaps.sort((a, b) => a - b);
        resolve({fps: 1000 * frames / (t - t0), p95: gaps[Math.floor(gaps.length * 0.95)]}); return; }
      if (kind === 'pan') m.panBy([(i % 60 < 30 ? 7 : -7), 3 * Math.sin(i / 9)], {animate: false});
      else m.setZoom(m.getZoom() + (i % 40 < 20 ? 0.05 : -0.05), {animate: false});
      i++; requestAnimationFrame(step);
    }
    requestAnimationFrame(step);
  });
}"""


def measure(url: str, browser, frames: int) -> dict:
    out = {}
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.wait_for_function("() => window.ATLAS_MAP_PAINTED !== undefined", timeout=60000)
    out["paint_top_ms"] = page.evaluate("() => window.ATLAS_MAP_PAINTED")
    out["pan_top"] = page.evaluate(FPS_JS, ["pan", frames])
    out["zoom_top"] = page.evaluate(FPS_JS, ["zoom", frames])
    rel = page.evaluate("() => atlasMap.featureZoom() - atlasMap.zFit() + 0.5")
    page.close()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + f"#m=features&z={rel:.2f}&x=0.5&y=0.5")
    page.wait_for_function("() => window.ATLAS_MAP_PAINTED !== undefined", timeout=60000)
    out["paint_features_ms"] = page.evaluate("() => window.ATLAS_MAP_PAINTED")
    out["level"] = page.evaluate("() => document.getElementById('map-view').dataset.level")
    out["visible"] = page.evaluate("() => document.getElementById('map-status').textContent")
    out["pan_features"] = page.evaluate(FPS_JS, ["pan", frames])
    out["zoom_features"] = page.evaluate(FPS_JS, ["zoom", frames])
    page.close()
    out["errors"] = errors
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1024,16384")
    ap.add_argument("--frames", type=int, default=180)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        for n in sizes:
            url = synthetic_site(Path(tmp) / f"n{n}", n)
            results[n] = measure(url, browser, args.frames)
        browser.close()
    rows = [
        ("first full paint, top clusters (ms)", lambda r: f"{r['paint_top_ms']:.0f}"),
        ("first full paint, single features (ms)", lambda r: f"{r['paint_features_ms']:.0f}"),
        ("pan fps, top clusters", lambda r: f"{r['pan_top']['fps']:.1f}"),
        ("zoom fps, top clusters", lambda r: f"{r['zoom_top']['fps']:.1f}"),
        ("pan fps, single features", lambda r: f"{r['pan_features']['fps']:.1f}"),
        ("zoom fps, single features", lambda r: f"{r['zoom_features']['fps']:.1f}"),
        ("p95 frame gap, pan features (ms)", lambda r: f"{r['pan_features']['p95']:.1f}"),
        ("features in view at feature level", lambda r: r["visible"].split(": ")[-1].split()[0]),
    ]
    print(f"{'':42s}" + "".join(f"{n:>22,d}" for n in sizes))
    for name, fn in rows:
        print(f"{name:42s}" + "".join(f"{fn(results[n]):>22s}" for n in sizes))
    if len(sizes) > 1:
        a, b = results[sizes[0]], results[sizes[-1]]
        print(
            f"ratio {sizes[-1]:,d}/{sizes[0]:,d}: paint {b['paint_top_ms'] / a['paint_top_ms']:.2f}x, "
            f"pan fps (features) {b['pan_features']['fps'] / a['pan_features']['fps']:.2f}x"
        )
    for n in sizes:
        if results[n]["errors"]:
            print(f"errors at {n}: {results[n]['errors']}")


if __name__ == "__main__":
    main()
