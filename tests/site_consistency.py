"""Read a built site's pages and JSON and list every number two places disagree on.

    python tests/site_consistency.py SITE      (prints the disagreements; exit 1 when there are any)

Compared, per studied layer: the dead count (layer page, model page, features.json, features.jsonl.gz,
the "never fires" cards); the image counts (model page, layer page, manifest, every unit page's
"fires on ... (n of N)"); each feature's density (its page, its cards on the layer page, features.json,
features.jsonl.gz, the search index) and its importance rank (its page and the export). The pages are
read as HTML text: the values carry ``data-key`` attributes (``numbers.stat``) and cards their ids.
"""

from __future__ import annotations

import gzip
import html
import json
import re
import sys
from pathlib import Path

from atlasgen.site.fmt import fmt_count, fmt_pct


def _keyed(page: str) -> dict[str, list[str]]:
    """Text of every element with a data-key (stat cards, fact rows, cells), by key, in page order."""
    out: dict[str, list[str]] = {}
    for _, key, body in re.findall(
        r'<(div|tr|td|span)\b[^>]*\bdata-key="([^"]+)"[^>]*>(.*?)</\1>', page, re.S
    ):
        value = re.search(r"<(?:dd|td)[^>]*>(.*?)</(?:dd|td)>", body, re.S)
        text = re.sub(r"<[^>]+>", "", value.group(1) if value else body)
        out.setdefault(key, []).append(html.unescape(" ".join(text.split())))
    return out


def _cards(page: str) -> list[tuple[int, str]]:
    """(feature id, density line) of every feature card of a page (its <small> text), in page order."""
    return [
        (int(i), html.unescape(meta))
        for i, meta in re.findall(
            r'<li class="card[^"]*"[^>]*><a href="[^"]*?f/(\d+)/index\.html">.*?'
            r"<small>([^<]*)</small>",
            page,
        )
    ]


def _number(text: str) -> int:
    return int(re.search(r"[\d,]+", text).group(0).replace(",", ""))


def disagreements(site: Path) -> list[str]:
    site = Path(site)
    problems: list[str] = []
    manifest = json.loads((site / "manifest.json").read_text())
    m = manifest["model"]
    ds = manifest.get("dataset") or {}
    scanned, total = ds.get("n_images_scanned"), ds.get("n_images")
    model_page = _keyed((site / m / "index.html").read_text())
    if [_number(t) for t in model_page.get("images-scanned", [])] != [scanned]:
        problems.append(
            f"images scanned: model page {model_page.get('images-scanned')} != manifest {scanned}"
        )
    if [_number(t) for t in model_page.get("dataset-images", [])] != [total]:
        problems.append(f"dataset images: model page {model_page.get('dataset-images')} != manifest {total}")
    search = (site / "search_index.js").read_text()
    search = json.loads(search[search.index("=") + 1 :].strip().rstrip(";"))
    # [href, layer, id, label, classes, flags, density as the pages print it]
    search_density = {(L["name"], i): d for L in search["layers"] for i, d in enumerate(L["f"]["density"])}

    for name, entry in sorted(manifest["layers"].items()):
        F = entry["n_features"]
        layer_html = (site / m / name / "index.html").read_text()
        layer = _keyed(layer_html)
        with gzip.open(site / "data" / m / name / "features.jsonl.gz", "rt") as fh:
            export = [json.loads(line) for line in fh]
        data = json.loads((site / "data" / m / name / "features.json").read_text())["features"]
        dead = {
            "layer page": _number(layer["dead"][0]) if layer.get("dead") else None,
            "model page": _number(model_page[f"dead-{name}"][0]) if model_page.get(f"dead-{name}") else None,
            "features.json": sum(1 for r in data if not r["density"]),
            "features.jsonl.gz": sum(1 for r in export if r["dead"]),
        }
        grid = re.search(r'<ol class="grid" id="feature-grid">(.*?)</ol>', layer_html, re.S)
        if grid and "card" in grid.group(1):
            dead["layer grid"] = grid.group(1).count('<li class="card dead"')
        if len(set(dead.values())) != 1:
            problems.append(f"{name}: dead features disagree: {dead}")
        scanned_layer = [_number(t) for t in layer.get("images-scanned", [])]
        if scanned_layer != [scanned]:
            problems.append(f"{name}: images scanned on the layer page {scanned_layer} != manifest {scanned}")
        cards: dict[int, list[str]] = {}
        for i, meta in _cards(layer_html):
            cards.setdefault(i, []).append(meta)
        for i in range(F):
            page = (site / m / name / "f" / str(i) / "index.html").read_text()
            stats = _keyed(page)
            rec, row = export[i], data[i]
            text = stats["density"][0] if stats.get("density") else ""
            got = re.fullmatch(r"fires on (\S+) of images \(([\d,]+) of ([\d,]+)\)", text)
            if not got:
                problems.append(f"{name}/f/{i}: density stat {text!r} is not 'fires on X of images (n of N)'")
                continue
            pct, n_fires, n_of = got.group(1), _number(got.group(2)), _number(got.group(3))
            if n_of != scanned:
                problems.append(f"{name}/f/{i}: density counted over {n_of} images, manifest scans {scanned}")
            places = {
                "page": pct,
                "features.jsonl.gz": fmt_pct(rec["density"] or 0),
                "features.json": fmt_pct(row["density"] or 0),
                "search index": search_density.get((name, i)),
            }
            for n, meta in enumerate(cards.get(i, [])):
                places[f"layer card {n + 1}"] = (
                    "0%"
                    if meta == "never fires"
                    else meta.removeprefix("fires on ").removesuffix(" of images")
                )
            if len(set(places.values())) != 1:
                problems.append(f"{name}/f/{i}: density disagrees: {places}")
            if (n_fires == 0) != bool(rec["dead"]) or (
                (n_fires == 0) != bool(re.search(r'<span class="badge[^"]*">dead</span>', page))
            ):
                problems.append(
                    f"{name}/f/{i}: dead on the page / in the export disagree ({n_fires} firing images)"
                )
            if scanned and abs(n_fires / scanned - (rec["density"] or 0)) > 1e-5:
                problems.append(
                    f"{name}/f/{i}: {n_fires} of {scanned} images is not its density {rec['density']}"
                )
            imp = rec.get("importance")
            if imp is not None and stats.get("importance"):
                shown = stats["importance"][0]
                want = (
                    f"{imp['top_k']} (dead: no rank)"
                    if imp["rank"] is None
                    else f"{imp['top_k']}, tied with {fmt_count(imp['tied_with'])} other"
                    + ("s" if imp["tied_with"] > 1 else "")
                    if imp["tied_with"]
                    else f"{imp['top_k']} (rank {fmt_count(imp['rank'])} of"
                )
                if not shown.startswith(want):
                    problems.append(f"{name}/f/{i}: importance on the page {shown!r}, export says {want!r}")
    return problems


if __name__ == "__main__":
    found = disagreements(Path(sys.argv[1]))
    print("\n".join(found) if found else f"{sys.argv[1]}: every number agrees")
    sys.exit(1 if found else 0)
