"""The site's size projected before rendering (atlasgen.site.plan) against the site the build wrote."""

from __future__ import annotations

import json

import pytest

from atlasgen.config import load_config
from atlasgen.pipeline import Pipeline
from atlasgen.progress import Console, format_bytes
from atlasgen.site import plan, sizes
from atlasgen.site.publish import SizeBudgetError, size_breakdown
from atlasgen.stages import site as site_stage


def _folders(folder, cfg):
    """The artifact folders of the build in ``folder`` (each stage's latest)."""
    root = folder / ".atlasgen"
    out = {}
    for latest in root.glob("*/latest.json"):
        key = json.loads(latest.read_text())["key"]
        if (latest.parent / key).is_dir():
            out[latest.parent.name] = latest.parent / key
    return out


def test_projection_matches_the_rendered_site(tiny_build):
    folder, config, site = tiny_build
    cfg = load_config(config)
    p = plan.project(artifacts=_folders(folder, cfg), **site_stage.site_fields(cfg))
    actual = size_breakdown(site)
    assert set(p.parts) <= set(actual) | {sizes.OTHER}
    total = sum(actual.values())
    assert abs(p.total - total) <= 0.1 * total, (p.parts, actual)
    for part in (sizes.PAGES, sizes.VIS, sizes.EXPORT, sizes.STATIC):
        assert abs(p.parts[part] - actual[part]) <= 0.15 * actual[part], (part, p.parts[part], actual[part])
    assert p.parts[sizes.VIS] == actual[sizes.VIS]  # copied files: exact
    assert p.parts[sizes.STATIC] == actual[sizes.STATIC]
    # dataset images: sampled sizes times the distinct indices shown (identical pixels share a file in the
    # site)
    assert actual[sizes.IMAGES] * 0.8 <= p.parts[sizes.IMAGES] <= actual[sizes.IMAGES] * 1.5


def test_a_site_projected_over_its_budget_stops_before_rendering(tiny_copy):
    folder, config, site = tiny_copy
    before = {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}
    cfg = load_config(config)
    cfg.site.size_budget_mb = 0.05
    cfg.site.title = "changed title"  # forces a re-render of the site only
    with pytest.raises(SizeBudgetError) as info:
        Pipeline(cfg, console=Console(0)).build()
    text = "\n".join(info.value.errors)
    assert "over the budget of 0.05 MB" in text and "1 MB = 10^6 bytes" in text and "before rendering" in text
    for part, key in (
        (sizes.PAGES, "examples.top_k"),
        (sizes.IMAGES, "examples.band_samples"),
        (sizes.VIS, "featurevis.image_size"),
        (sizes.EXPORT, "site.sae_dtype"),
    ):
        line = next(line for line in text.splitlines() if part in line)
        assert key in line and " MB " in line
    assert "Nothing was rendered" in text
    assert not site.with_name(site.name + ".partial").exists()
    after = {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}
    assert after == before


def test_sizes_print_in_the_unit_the_budget_uses():
    assert sizes.mb(1_234_567_890) == "1,234.6 MB"
    assert (
        format_bytes(999) == "999 B"
        and format_bytes(1_500_000) == "1.5 MB"
        and format_bytes(2_000_000_000) == "2.0 GB"
    )
