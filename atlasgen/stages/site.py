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


def render_into(
    cfg: Config, artifacts: dict[str, Path], out_dir: Path, console: Console, try_dataset_images: bool = True
):
    """Render every page into ``out_dir``; returns the renderer's SiteSummary (pages, files, bytes).
    ``try_dataset_images``: whether the try page's copies of the dataset images are written, as
    :func:`check_projection` decided."""
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
        **{**site_fields(cfg), "try_dataset_images": try_dataset_images},
        progress=lambda done, total: (setattr(bar, "total", max(1, total)), bar.set(done)),
    )
    bar.close()
    return summary


def check_projection(cfg: Config, artifacts: dict[str, Path], console: Console) -> bool:
    """Project the site's size from counts (atlasgen.site.plan) and stop before rendering when it is
    over site.size_budget_mb. Returns whether the try page's copies of the dataset images are to be
    written: site.try_dataset_images, where ``auto`` keeps them only while the site stays within the
    budget with them."""
    from atlasgen.site import publish
    from atlasgen.site.plan import mb, project

    budget_mb = cfg.site.size_budget_mb
    projection = project(artifacts=artifacts, **site_fields(cfg))
    copies = cfg.site.try_dataset_images
    if copies == "auto":
        copies = not (budget_mb > 0 and projection.total > budget_mb * 1e6)
        if not copies and projection.copies:
            with_copies = projection.total
            dropped = projection.drop_copies()
            console.info(
                f"site: the try page's copies of the dataset images ({mb(dropped)}) are left out: with "
                f"them the site would be {mb(with_copies)}, over the budget of {budget_mb:g} MB. Over "
                "HTTP the try page reads images/; from file:// it asks the reader to choose the file "
                "(site.try_dataset_images: true keeps the copies)."
            )
    budget = f"budget {budget_mb:g} MB" if budget_mb > 0 else "no budget"
    console.detail(f"site: projected {mb(projection.total)} ({budget}; 1 MB = 10^6 bytes)")
    publish.check_projected_size(projection, budget_mb)
    return bool(copies)
