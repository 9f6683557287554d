"""Screenshots of each page kind of a built atlas, in headless Chromium (docs/screenshots/).

    python scripts/screenshots.py SITE [--out docs/screenshots] [--review /tmp/shots]

Writes ``<kind>.png`` (light, 1280x900 viewport, the top of the page) for the
home, model, layer, feature, neuron, class, map and rating pages into
``--out``, plus ``feature-dark.png`` and ``feature-phone.png`` (390 px wide,
dark), ``class_circuit.png``: the class page's circuit figure alone (when it has one),
``search.png`` / ``search-dark.png`` (the search page's results for the first annotation tag)
and ``layer-filtered.png`` / ``layer-filtered-dark.png`` (the feature grid, features that are not dense, by \
density,
from the URL fragment).
``--review`` also writes every kind at phone width and in dark mode
(full page) into another folder, for checking layouts by eye.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def page_of_each_kind(site: Path) -> dict[str, str]:
    manifest = json.loads((site / "manifest.json").read_text())
    m = manifest["model"]
    layer = next(iter(manifest["layers"]))
    classes = sorted((site / m / "classes").glob("*/index.html"))
    collections = sorted((site / m / "collections").glob("*/index.html"))
    kinds = {
        "home": "index.html",
        "model": f"{m}/index.html",
        "layer": f"{m}/{layer}/index.html",
        "feature": f"{m}/{layer}/f/{_busy_feature(site, m, layer)}/index.html",
        "neuron": f"{m}/{layer}/n/0/index.html",
        "class": classes[0].relative_to(site).as_posix() if classes else None,
        "collection": collections[0].relative_to(site).as_posix() if collections else None,
        "map": f"{m}/{layer}/map/index.html",
        "rating": f"{m}/{layer}/rate/index.html",
    }
    return {k: v for k, v in kinds.items() if v and (site / v).exists()}


def _busy_feature(site: Path, model: str, layer: str) -> int:
    """The feature the home page shows as its example (the strongest one): a page with content."""
    home = (site / "index.html").read_text()
    marker = f"{model}/{layer}/f/"
    at = home.find(marker)
    if at < 0:
        return 0
    digits = ""
    for ch in home[at + len(marker) :]:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits or 0)


def _search_word(site: Path) -> str:
    """A word to search for: the first tag of the annotations, else the first word of a class name."""
    import json

    text = (site / "search_index.js").read_text(encoding="utf-8")
    index = json.loads(text[text.index("=") + 1 :].strip().rstrip(";"))
    names = [a[4] for a in index["annotations"] if a[4]] + [c[1] for c in index["classes"]]
    return names[0].split()[0] if names else "a"


def shoot(site: Path, out: Path, review: Path | None) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    kinds = page_of_each_kind(site)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])

        def snap(
            rel: str,
            path: Path,
            *,
            scheme="light",
            width=1280,
            height=900,
            full=False,
            element=None,
            suffix="",
            top=None,
        ):
            ctx = browser.new_context(
                color_scheme=scheme, viewport={"width": width, "height": height}, device_scale_factor=1
            )
            page = ctx.new_page()
            page.goto((site / rel).resolve().as_uri() + suffix)
            page.wait_for_load_state("load")
            page.evaluate("document.fonts.ready")
            if full:  # lazy images load once scrolled into view: scroll through, then back to the top
                page.evaluate(
                    "async () => { for (let y = 0; y < document.body.scrollHeight; y += innerHeight)"
                    " { scrollTo(0, y); await new Promise(r => setTimeout(r, 50)); } scrollTo(0, 0); }"
                )
                page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
            if top is not None:  # the viewport from this element down
                page.evaluate("(sel) => document.querySelector(sel).scrollIntoView()", top)
            page.wait_for_timeout(300)  # the map draws on a canvas after load
            if element is not None:
                if not page.locator(element).count():
                    ctx.close()
                    return
                page.locator(element).screenshot(path=str(path))
            else:
                page.screenshot(path=str(path), full_page=full)
            ctx.close()
            if not full:  # docs copies: a 256-colour palette keeps each PNG around 100 KB
                from PIL import Image

                with Image.open(path) as im:
                    small = im.convert("RGB").quantize(
                        256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
                    )
                small.save(path, optimize=True)
            written.append(path)

        for kind, rel in kinds.items():
            snap(rel, out / f"{kind}.png")
        snap(kinds["feature"], out / "feature-dark.png", scheme="dark")
        snap(kinds["feature"], out / "feature-phone.png", scheme="dark", width=390, height=844)
        if kinds["class"]:
            snap(kinds["class"], out / "class_circuit.png", element=".circuit-fig")
        # The search's page of results (its query in the URL) and the layer grid filtered by its fragment.
        query = _search_word(site)
        for scheme, name in (("light", ""), ("dark", "-dark")):
            snap("search.html", out / f"search{name}.png", scheme=scheme, suffix=f"?q={query}")
            snap(
                kinds["layer"],
                out / f"layer-filtered{name}.png",
                scheme=scheme,
                top="#features-title",
                suffix="#features.flag=-dense&features.sort=density",
            )
        if review:
            review.mkdir(parents=True, exist_ok=True)
            for kind, rel in kinds.items():
                snap(rel, review / f"{kind}-phone.png", width=390, height=844, full=True)
                snap(rel, review / f"{kind}-dark.png", scheme="dark", full=True)
        browser.close()
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("site", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "screenshots")
    ap.add_argument("--review", type=Path, default=None)
    args = ap.parse_args()
    for path in shoot(args.site, args.out, args.review):
        print(f"{path} {path.stat().st_size / 1e3:.0f} KB")


if __name__ == "__main__":
    main()
