"""Screenshots of the try page with a reader's image, in headless Chromium (docs/screenshots/).

    python scripts/try_screenshots.py SITE [--image photo.png] [--out docs/screenshots]

Writes ``try.png`` (light, 1280x900), ``try-dark.png`` and ``try-phone.png`` (390 px wide, the
results scrolled into view). Without ``--image`` the reader's image is a drawing made here (a
house under a sun, 400x300 px: not a dataset image, not square), so the page resizes and crops it.
The first feature is pinned (``#f=...``) so the pinned row shows too.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

CHROMIUM = "/usr/bin/chromium"


def reader_image(path: Path) -> Path:
    im = Image.new("RGB", (400, 300), (110, 170, 230))
    d = ImageDraw.Draw(im)
    d.rectangle((0, 210, 400, 300), fill=(70, 140, 60))
    d.ellipse((300, 30, 360, 90), fill=(250, 210, 60))
    d.rectangle((120, 130, 250, 230), fill=(200, 80, 60))
    d.polygon([(105, 135), (185, 70), (265, 135)], fill=(120, 60, 40))
    d.rectangle((170, 180, 200, 230), fill=(90, 50, 30))
    d.rectangle((135, 150, 160, 175), fill=(230, 230, 250))
    im.save(path)
    return path


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser()
    ap.add_argument("site", type=Path)
    ap.add_argument("--image", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = ap.parse_args()
    model = json.loads((args.site / "manifest.json").read_text())["model"]
    page_path = args.site / model / "try" / "index.html"
    image = args.image or reader_image(Path(tempfile.mkdtemp()) / "reader.png")
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for name, scheme, width in (
            ("try", "light", 1280),
            ("try-dark", "dark", 1280),
            ("try-phone", "dark", 390),
        ):
            page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
            page.goto(page_path.as_uri())
            page.set_input_files("#try-file", str(image))
            page.wait_for_function("window.ATLAS_TRY_RESULT || window.ATLAS_TRY_ERROR", timeout=300_000)
            first = page.evaluate("window.ATLAS_TRY_RESULT.features[0]")
            if first:  # pin the strongest feature: the page reruns on the hash change
                page.evaluate("window.ATLAS_TRY_RESULT = null")
                page.evaluate(f"location.hash = 'f={first['id']}'")
                page.wait_for_function("window.ATLAS_TRY_RESULT", timeout=300_000)
            if width < 600:
                page.evaluate("document.getElementById('try-result').scrollIntoView()")
            page.screenshot(path=str(args.out / f"{name}.png"))
            page.close()
            print(args.out / f"{name}.png")
        browser.close()


if __name__ == "__main__":
    main()
