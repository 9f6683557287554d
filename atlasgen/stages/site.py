"""Stage `site`: render the artifacts into the static site (no torch here)."""

from __future__ import annotations

from pathlib import Path

from atlasgen.config import Config
from atlasgen.progress import Console
from atlasgen.stage import Stage

STAGE = Stage(
    "site",
    deps=(
        "dataset",
        "model",
        "activations",
        "sae",
        "featurevis",
        "examples",
        "circuits",
        "importance",
        "map",
        "atlas",
        "game",
        "similar",
        "survey",
        "tryimage",
    ),
    config=("site", "model.name", "layer_names", "ratings", "ratings_merged", "annotations", "collections"),
    what="the static site",
)


def site_fields(cfg: Config) -> dict:
    """The config's site settings as the renderer and the size projection take them, with the annotations
    and collections read from their files (atlasgen.annotations, atlasgen.unit_collections; checked again,
    AnnotationError, CollectionError)."""
    from atlasgen.annotations import annotations_dir, load_annotations
    from atlasgen.unit_collections import collections_dir, load_collections

    layers = [layer.name for layer in cfg.layers]

    return dict(
        layers=layers,
        model_name=cfg.model.name,
        title=cfg.site.title,
        date=cfg.site.date,
        base_url=cfg.site.base_url,
        authors=tuple(cfg.site.authors),
        doi=cfg.site.doi,
        sae_dtype=cfg.site.sae_dtype,
        dense_threshold=cfg.examples.dense_threshold,
        try_dataset_images=cfg.site.try_dataset_images,
        annotations=tuple(load_annotations(annotations_dir(cfg), layers)),
        collections=tuple(load_collections(collections_dir(cfg), layers)),
    )


def render_into(cfg: Config, artifacts: dict[str, Path], out_dir: Path, console: Console):
    """Render every page into ``out_dir``; returns the renderer's SiteSummary (pages, files, bytes)."""
    from atlasgen.config import to_dict
    from atlasgen.ratings import load_merged, merged_path
    from atlasgen.site.build import render_site

    records = load_merged(merged_path(cfg))  # imported ratings (validated again here)
    bar = console.progress(1, "pages")
    summary = render_site(
        ratings_records=records,
        ratings_cfg=to_dict(cfg.ratings),
        game_cfg=to_dict(cfg.game),
        artifacts=artifacts,
        out_dir=out_dir,
        version=cfg.site.version,
        **site_fields(cfg),
        progress=lambda done, total: (setattr(bar, "total", max(1, total)), bar.set(done)),
    )
    bar.close()
    return summary


def check_projection(cfg: Config, artifacts: dict[str, Path], console: Console) -> None:
    """Project the site's size from counts (atlasgen.site.plan) and stop before rendering when it is
    over site.size_budget_mb."""
    from atlasgen.site import publish
    from atlasgen.site.plan import mb, project

    projection = project(artifacts=artifacts, **site_fields(cfg))
    budget = f"budget {cfg.site.size_budget_mb:g} MB" if cfg.site.size_budget_mb > 0 else "no budget"
    console.detail(f"site: projected {mb(projection.total)} ({budget}; 1 MB = 10^6 bytes)")
    publish.check_projected_size(projection, cfg.site.size_budget_mb)
