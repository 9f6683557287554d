"""The parts a site's bytes are counted in (by the size budget and its projection), and how to
print a size: MB of 10^6 bytes, the unit ``site.size_budget_mb`` is given in."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

PAGES = "HTML pages"
IMAGES = "dataset images (images/)"
VIS = "unit visualisations (<layer>/f|n/<id>/)"
EXPORT = "bulk export (data/)"
MAPS = "maps (<layer>/map/)"
STATIC = "scripts and styles (static/)"
TRY = "try page (<model>/try/, static/vendor/onnxruntime-web/)"
OTHER = "other"

# What to change when a part is too large (the error lists them beside the part).
KEYS = {
    PAGES: "examples.top_k, examples.band_samples, circuits.top_k; fewer layers",
    IMAGES: "examples.top_k, examples.band_samples (fewer distinct example images)",
    VIS: "featurevis.image_size, featurevis.thumb_size, featurevis.diverse, featurevis.neuron, "
    "featurevis.negative, "
    "featurevis.variant_image_size",
    EXPORT: "site.sae_dtype (float16 halves the weights), layers[].sae.expansion",
    MAPS: "atlas.grids, atlas.icon_size",
    STATIC: "",
    TRY: "try_image.enabled, try_image.float16, site.try_dataset_images",
    OTHER: "",
}


def mb(n: int) -> str:
    """Bytes in MB of 10^6 bytes, as the budget is given: '1,234.5 MB'."""
    return f"{n / 1e6:,.1f} MB"


def size_breakdown(site: Path) -> dict[str, int]:
    """Bytes per part of a built site."""
    parts: dict[str, int] = defaultdict(int)
    for path in Path(site).rglob("*"):
        if path.is_file():
            parts[part_of(path.relative_to(site).as_posix())] += path.stat().st_size
    return dict(parts)


def part_of(rel: str) -> str:
    """The part of the site a file (path relative to the site root) belongs to."""
    segments = rel.split("/")
    if rel.startswith("images/"):
        return IMAGES
    if rel.startswith("data/"):
        return EXPORT
    if rel.startswith("static/vendor/onnxruntime-web/") or (len(segments) >= 3 and segments[1] == "try"):
        return TRY
    if rel.startswith("static/"):
        return STATIC
    if rel.endswith(".html"):
        return PAGES
    if len(segments) >= 4 and segments[2] in ("f", "n") and rel.endswith((".webp", ".png", ".jpg")):
        return VIS
    if "map" in segments:
        return MAPS
    return OTHER
