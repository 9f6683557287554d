"""The site's size, projected from counts before anything is rendered.

The site stage calls :func:`project` first and stops (``SizeBudgetError``) when the projection exceeds
``site.size_budget_mb``, so an atlas that cannot be published is found out in seconds rather than after
rendering every page. Parts are those of :func:`atlasgen.site.sizes.size_breakdown`:

- HTML pages: a sample of feature, neuron and class pages is rendered in memory (evenly spaced ids,
  :data:`SAMPLE_PAGES` per kind and layer), their mean size times the page count; the few pages of
  each layer (layer, map), home, model and 404 are rendered whole.
- dataset images: the distinct dataset images the pages show (by index) times the mean size of a sample
  of them encoded as the site stores them (WebP thumbnails).
- unit visualisations: the sizes of the featurevis files the site copies (exact).
- bulk export: ``features.jsonl.gz`` encoded whole up to :data:`SAMPLE_EXPORT` features (above, a
  sample of that many, scaled), ``features.json`` whole, the SAE weights from their shape and
  ``site.sae_dtype``.
- maps: each layer's map data and sprite sheets, written to a temporary folder and measured.
- scripts and styles, other: the static files, cards.js, the search index and manifest, and the site
  marker (``.atlasgen-site``), which lists every file the build writes: one line per file counted above.

Sizes are bytes; the budget is in MB of 10^6 bytes.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atlasgen.cache import tree_size
from atlasgen.site import (
    collection_pages,
    export,
    grid,
    mapview,
    numbers,
    pages,
    resources,
    trypage,
    urls,
    weights,
)
from atlasgen.site.artifacts import load_artifacts
from atlasgen.site.build import finish_page
from atlasgen.site.fmt import dumps, js_global
from atlasgen.site.images import DatasetImages, encode_thumbnail
from atlasgen.site.keep import marker_text
from atlasgen.site.sizes import EXPORT, IMAGES, KEYS, MAPS, OTHER, PAGES, STATIC, TRY, mb, part_of

SAMPLE_PAGES = 128  # unit pages rendered per kind and layer for the projection (all, up to this many)
SAMPLE_IMAGES = 48  # dataset images encoded for the projection
SAMPLE_EXPORT = 1024  # features whose export records are encoded for the projection (all, up to this many)


def marker_bytes(path: str, count: int = 1) -> int:
    """Bytes of ``count`` lines like ``path``'s in the site marker's file list."""
    return count * len(marker_text("", [path]).splitlines()[-1].encode("utf-8")) + count


@dataclass
class Projection:
    parts: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # how each part was counted
    listed: int = 0  # bytes of the site marker's file list: one line per file projected
    copies: int = 0  # bytes of the try page's copies of the dataset images, counted in TRY

    def drop_copies(self) -> int:
        """Take the try page's copies of the dataset images out of the projection; returns their bytes."""
        dropped, self.copies = self.copies, 0
        self.parts[TRY] -= dropped
        self.notes[TRY] = "without its copies of the dataset images"
        return dropped

    def list_file(self, path: str, count: int = 1) -> None:
        self.listed += marker_bytes(path, count)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def add(self, part: str, n: int) -> None:
        self.parts[part] = self.parts.get(part, 0) + int(n)

    def lines(self) -> list[str]:
        out = []
        for name, size in sorted(self.parts.items(), key=lambda kv: -kv[1]):
            extra = "; ".join(
                x for x in (self.notes.get(name, ""), f"keys: {KEYS[name]}" if KEYS.get(name) else "") if x
            )
            out.append(f"  {mb(size):>12}  {name}" + (f" ({extra})" if extra else ""))
        return out


class _PlannedImages(DatasetImages):
    """Dataset image URLs of the same length as the real ones, without encoding or writing anything."""

    def prepare(self, indices, workers: int = 8) -> None:
        pass

    def url(self, index: int) -> str:
        return f"images/{int(index) & (16**16 - 1):016x}.webp"


class _Counter:
    """A site writer (the renderer's interface) that counts bytes per part instead of writing files."""

    def __init__(self, projection: Projection, out_dir: Path):
        self.projection, self.out_dir, self._part = projection, out_dir, part_of

    def text(self, path: str, content: str) -> None:
        self.projection.add(self._part(path), len(content.encode("utf-8")))
        self.projection.list_file(path)

    def text_bytes(self, path: str, data: bytes) -> None:
        self.projection.add(self._part(path), len(data))
        self.projection.list_file(path)

    def copy(self, source: Path, path: str) -> None:
        self.projection.add(self._part(path), Path(source).stat().st_size)
        self.projection.list_file(path)


def _render(env, path: str, template: str, context: dict) -> int:
    return len(finish_page(env.get_template(template).render(context), path).encode("utf-8"))


def _spread(n: int, k: int) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, n - 1, num=min(n, k))}) if n else []


def project(
    *,
    artifacts: dict[str, Path],
    layers: list[str],
    model_name: str,
    title: str,
    date: str,
    base_url: str,
    sae_dtype: str = "float16",
    authors: tuple[str, ...] = (),
    doi: str | None = None,
    dense_threshold: float | None = None,
    annotations: tuple = (),
    collections: tuple = (),
    try_dataset_images: bool | str = True,
) -> Projection:
    """The projected size of the site :func:`atlasgen.site.build.render_site` would write, by part.

    ``try_dataset_images`` true or ``"auto"``: the try page's copies of the dataset images are counted
    (in ``Projection.copies`` too, so that :meth:`Projection.drop_copies` can take them out)."""
    from atlasgen.site.build import layer_indexes, make_environment, make_site

    arts = load_artifacts({k: Path(v) for k, v in artifacts.items()}, list(layers))
    site = make_site(
        arts,
        artifacts,
        title=title,
        date=date,
        base_url=base_url,
        model_name=model_name,
        authors=authors,
        doi=doi,
        sae_dtype=sae_dtype,
        dense_threshold=numbers.DEFAULT_DENSE_THRESHOLD if dense_threshold is None else dense_threshold,
    )
    indexes = layer_indexes(site, arts, annotations, collections)
    try_art = trypage.load_try(artifacts.get("tryimage"))
    trypage.mark_layers(indexes, try_art)
    env = make_environment()
    p = Projection()
    tmp = Path(tempfile.mkdtemp(prefix="atlasgen-plan-"))
    try:
        images = _PlannedImages(arts.dataset, tmp)
        w = _Counter(p, tmp)
        shown = sorted(
            {
                int(i)
                for L in arts.layers
                for ex in (L.features, L.neurons)
                for s in (ex.top_idx, ex.band_idx)
                if s is not None
                for i in s.ravel().tolist()
                if int(i) >= 0
            }
            | {i for L in arts.layers for i in mapview.atlas_example_indices(L)}  # the atlas's hover
        )
        if shown:
            sample = [shown[j] for j in _spread(len(shown), SAMPLE_IMAGES)]
            mean = np.mean([len(encode_thumbnail(arts.dataset.image(i))) for i in sample])
            p.add(IMAGES, round(mean * len(shown)))
            p.list_file(images.url(shown[0]), len(shown))
            p.notes[IMAGES] = f"{len(shown):,} distinct images, {mean / 1e3:.1f} KB each"
            if try_dataset_images and try_art is not None:  # their data: URL copies for file://
                tried = trypage.dataset_image_indices(arts, try_art)
                one = trypage.image_script_bytes(images.url(0), round(mean))
                # Their lines of the site marker go with them.
                path = trypage.image_script_path(model_name, images.url(0))
                p.copies = one * len(tried) + marker_bytes(path, len(tried))
                p.add(TRY, p.copies)
        n_pages = 0
        fixed = [
            pages.home_page(site, arts, indexes, collections),
            pages.model_page(site, arts, try_art is not None),
        ]
        fixed += [collection_pages.collection_page(site, arts, indexes, c) for c in collections]
        if collections:
            w.text(
                urls.collections_data(model_name),
                dumps(collection_pages.export(site, collections), indent=1) + "\n",
            )
        for L in arts.layers:
            ix = indexes[L.name]
            from atlasgen.site.build import copy_unit_images

            copy_unit_images(w, ix)
            fixed += [pages.layer_page(site, ix), pages.map_page(site, ix)]
            w.text(grid.cards_url(model_name, L.name), js_global("ATLAS_CARDS", grid.cards_data(ix)))
            w.text(
                f"{model_name}/{L.name}/map/data.js",
                js_global("ATLAS_MAP", mapview.render_layer_map(tmp, site, ix, arts.dataset, images)),
            )
            for kind, count in (("f", L.n_features), ("n", L.n_neurons)):
                ids = _spread(count, SAMPLE_PAGES)
                if ids:
                    sizes = [_render(env, *pages.unit_page(site, ix, kind, i, images, indexes)) for i in ids]
                    p.add(PAGES, round(float(np.mean(sizes)) * count))
                    n_pages += count
                    for i in range(count):
                        p.list_file(urls.unit(model_name, L.name, kind, i))
            w.text(
                urls.features_data(model_name, L.name),
                dumps(pages.features_export(site, ix), indent=1) + "\n",
            )
            if L.n_features <= SAMPLE_EXPORT:
                p.add(EXPORT, len(export.features_jsonl_gz(site, ix, images)))
            else:  # the records of evenly spaced features, compressed together, scaled to the layer
                ids = _spread(L.n_features, SAMPLE_EXPORT)
                p.add(
                    EXPORT,
                    round(len(export.features_jsonl_gz(site, ix, images, ids)) * L.n_features / len(ids)),
                )
            p.add(EXPORT, weights.projected_weight_bytes(L.n_neurons, L.n_features, sae_dtype) + 4096)
        n_classes = arts.dataset.n_classes
        ids = _spread(n_classes, SAMPLE_PAGES)
        if ids:
            classes = [pages.class_page(site, arts, indexes, c, images) for c in ids]
            p.add(PAGES, round(float(np.mean([_render(env, *page) for page in classes])) * n_classes))
            n_pages += n_classes
            p.list_file(classes[0][0], n_classes)
        fixed += [pages.not_found_page(site), pages.search_page(site, arts)]
        for page in fixed:
            p.add(PAGES, _render(env, *page))
            p.list_file(page[0])
        n_pages += len(fixed)
        p.notes[PAGES] = f"{n_pages:,} pages, {p.parts[PAGES] / max(1, n_pages) / 1e3:.1f} KB each"
        w.text(
            "search_index.js", js_global("ATLAS_SEARCH", pages.search_index(site, arts, indexes, collections))
        )
        w.text("manifest.json", dumps(pages.manifest(site, arts, annotations, collections), indent=2) + "\n")
        if try_art is not None:
            trypage.write_try(w, site, arts, indexes, try_art)
            p.add(TRY, _render(env, *trypage.try_page(site, arts, try_art, try_dataset_images)))
        p.add(MAPS, tree_size(tmp)[1])  # the sprite sheets render_layer_map wrote
        for f in tmp.rglob("*"):
            if f.is_file():
                p.list_file(f.relative_to(tmp).as_posix())
        static = resources.resource_dir("static")
        shipped = [
            f
            for f in static.rglob("*")
            if f.is_file()
            and not any(part.startswith(".") for part in f.relative_to(static).parts)
            and Path(trypage.VENDOR) not in f.relative_to(static).parents  # counted by write_try
        ]
        p.add(STATIC, sum(f.stat().st_size for f in shipped))
        for f in shipped:
            p.list_file(f"static/{f.relative_to(static).as_posix()}")
        p.add(OTHER, len(marker_text("0" * 20, []).encode("utf-8")) + p.listed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return p
