"""Render the static atlas: artifacts in, a folder of HTML/CSS/JS/WebP out.

Reads the stage artifacts once (``artifacts.load_artifacts``), builds page
contexts in Python (``pages``), renders each Jinja template compiled once, and
writes files directly. Never imports torch. Same inputs give the same bytes.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2

import atlasgen
from atlasgen.cache import hash_file, tree_size
from atlasgen.site import (
    cards,
    collection_pages,
    export,
    featurevis_section,
    grid,
    mapview,
    numbers,
    pages,
    publish,
    ratings_pages,
    resources,
    trypage,
    urls,
)
from atlasgen.site.artifacts import check_segment, load_artifacts
from atlasgen.site.fmt import compact_html, dumps, js_global
from atlasgen.site.images import DatasetImages


@dataclass
class SiteSummary:
    pages: int
    files: int
    bytes: int


class _Environment(jinja2.Environment):
    """Looks ``x.key`` up as ``x["key"]`` first when ``x`` is a dict (page contexts are dicts).

    Jinja's default tries the Python attribute first, which raises and catches an
    AttributeError for every dict key a template prints: a tenth of the render
    time of a feature page (benchmarks/bench_render.py --profile).
    Templates call no dict methods, so the result is the same.
    """

    def getattr(self, obj, attribute):
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def make_environment() -> jinja2.Environment:
    """Jinja environment over ``templates/``; templates are compiled once and cached."""
    env = _Environment(
        loader=jinja2.FileSystemLoader(str(resources.resource_dir("templates"))),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
    )
    # Python functions for the most rendered pieces: same bytes as the templates they replaced.
    env.globals["unit_card"] = cards.unit_card
    env.globals["example_item"] = cards.example_item
    env.globals["links"] = grid.links_html
    return env


def finish_page(html: str, path: str) -> str:
    """A rendered page as the site stores it: links shortened (``urls.shorten_links``), indentation
    removed (``fmt.compact_html``)."""
    return compact_html(urls.shorten_links(html, path))


class _Writer:
    """Renders contexts to files under ``out_dir`` and counts pages."""

    def __init__(
        self, out_dir: Path, env: jinja2.Environment, total: int, progress: Callable[[int, int], None] | None
    ):
        self.out_dir = out_dir
        self.env = env
        self.templates: dict[str, jinja2.Template] = {}
        self.pages = 0
        self.total = total
        self.progress = progress

    def page(self, path: str, template: str, context: dict) -> None:
        tpl = self.templates.get(template)
        if tpl is None:
            tpl = self.templates[template] = self.env.get_template(template)
        self.text(path, finish_page(tpl.render(context), path))
        self.pages += 1
        if self.progress is not None:
            self.progress(self.pages, self.total)

    def count_page(self) -> None:
        """Count a page another process rendered (``render_units``) and report progress."""
        self.pages += 1
        if self.progress is not None:
            self.progress(self.pages, self.total)

    def text(self, path: str, content: str) -> None:
        target = self.out_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode("utf-8"))

    def text_bytes(self, path: str, data: bytes) -> None:
        target = self.out_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def copy(self, source: Path, path: str) -> None:
        target = self.out_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def make_site(
    arts, artifacts: dict, *, title, date, base_url, model_name, authors, doi, sae_dtype, dense_threshold
) -> pages.Site:
    """The site-wide settings every page reads, with the hashes that name the model weights and the
    dataset (citations, manifest): one definition for the renderer and the size projection."""
    weights = Path(artifacts["model"]) / "model.pt"
    return pages.Site(
        title=title,
        date=date,
        base_url=base_url,
        model=model_name,
        version=atlasgen.__version__,
        authors=tuple(authors),
        doi=doi or "",
        sae_dtype=sae_dtype,
        dense_threshold=float(dense_threshold),
        model_sha256=hash_file(weights) if weights.is_file() else "",
        dataset_identity=str(arts.dataset.identity or ""),
        dataset_images=len(arts.dataset.labels),
        dataset_sha256=arts.dataset.image_list_sha256(),
    )


def layer_indexes(site: pages.Site, arts, annotations=(), collections=()) -> dict[str, pages.LayerIndex]:
    """Every layer's LayerIndex, with its annotations and the collections holding its units. Annotations
    naming a unit a layer does not have raise AnnotationError, collections CollectionError (the build's
    preflight checks them earlier where the model tells the widths), as does a circuit collection the
    circuits artifacts cannot draw."""
    from atlasgen.annotations import AnnotationError, check_units
    from atlasgen.unit_collections import CollectionError
    from atlasgen.unit_collections import check_units as check_members

    counts = {(L.name, k): n for L in arts.layers for k, n in (("f", L.n_features), ("n", L.n_neurons))}
    errors = check_units(list(annotations), counts)
    if errors:
        raise AnnotationError(errors)
    errors = check_members(list(collections), counts)
    if errors:
        raise CollectionError(errors)
    indexes = {L.name: pages.LayerIndex(site, L, arts.dataset, annotations) for L in arts.layers}
    collection_pages.attach(indexes, collections)
    collection_pages.check(collections, arts.layers, indexes)
    return indexes


def render_site(
    *,
    artifacts: dict[str, Path],
    layers: list[str],
    model_name: str,
    title: str,
    date: str,
    base_url: str,
    out_dir: Path,
    progress=None,
    workers: int | None = None,
    authors: tuple[str, ...] = (),
    version: str = "1.0",
    doi: str | None = None,
    sae_dtype: str = "float16",
    ratings_records: list | None = None,
    ratings_cfg: dict | None = None,
    game_cfg: dict | None = None,
    dense_threshold: float = numbers.DEFAULT_DENSE_THRESHOLD,
    annotations: tuple = (),
    collections: tuple = (),
    try_dataset_images: bool = True,
) -> SiteSummary:
    """Write the whole atlas for ``model_name`` into ``out_dir`` (which exists and is empty).

    ``artifacts`` maps stage name -> artifact folder: 'dataset', 'model', 'sae',
    'featurevis', 'examples', 'circuits', 'map' (layout in docs/artifacts.md;
    per-layer subfolders named after the layer). ``try_dataset_images``: write the copies of the
    dataset images the try page reads from ``file://`` (``site.try_dataset_images``). ``annotations``: the
    researcher's
    ``atlasgen.annotations.Annotation`` records (checked against the layers' unit counts here,
    AnnotationError); ``collections``: its ``atlasgen.unit_collections.Collection`` records, one page
    each (checked the same way, CollectionError). ``progress(n_pages_done,
    n_pages_total)`` is called after each page when given. ``workers``: processes
    that render feature and neuron pages (default: the usable CPUs, at most
    ``MAX_WORKERS``); the bytes written do not depend on it.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise FileNotFoundError(f"output folder {out_dir} does not exist")
    if any(out_dir.iterdir()):
        raise FileExistsError(f"output folder {out_dir} is not empty")
    check_segment("model", model_name)
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
        dense_threshold=dense_threshold,
    )
    indexes = layer_indexes(site, arts, annotations, collections)
    try_art = trypage.load_try(artifacts.get("tryimage"))
    trypage.mark_layers(indexes, try_art)
    if ratings_cfg is not None:  # survey, game and imported ratings
        for L in arts.layers:
            game_dir = Path(artifacts["game"]) / L.name if "game" in artifacts else None
            indexes[L.name].ratings = ratings_pages.LayerRatings(
                indexes[L.name],
                ratings_records or [],
                ratings_cfg,
                game_cfg or {},
                Path(artifacts["survey"]) / L.name,
                game_dir,
            )
    images = DatasetImages(arts.dataset, out_dir)
    images.prepare(
        [
            idx
            for L in arts.layers
            for ex in (L.features, L.neurons)
            for shown in (ex.top_idx, ex.band_idx)
            if shown is not None
            for idx in shown.ravel().tolist()
        ]
        + [
            idx
            for ix in indexes.values()
            if getattr(ix, "ratings", None)
            for idx in ratings_pages.image_indices(ix.ratings)
        ]
        + [idx for L in arts.layers for idx in mapview.atlas_example_indices(L)]  # the atlas's hover
    )

    total = (
        5
        + len(collections)
        + arts.dataset.n_classes
        + sum(2 + L.n_features + L.n_neurons for L in arts.layers)
    )
    total += sum(
        (1 + (ix.ratings.game is not None)) for ix in indexes.values() if getattr(ix, "ratings", None)
    )
    w = _Writer(out_dir, make_environment(), total, progress)

    w.page(*pages.home_page(site, arts, indexes, collections))
    w.page(*pages.model_page(site, arts, try_art is not None))
    w.page(*pages.glossary_page(site))
    for L in arts.layers:
        ix = indexes[L.name]
        copy_unit_images(w, ix)
        w.page(*pages.layer_page(site, ix))
        w.text(grid.cards_url(model_name, L.name), js_global("ATLAS_CARDS", grid.cards_data(ix)))
        w.page(*pages.map_page(site, ix))
        w.text(
            f"{model_name}/{L.name}/map/data.js",
            js_global("ATLAS_MAP", mapview.render_layer_map(out_dir, site, ix, arts.dataset, images)),
        )
        render_units(w, site, ix, "f", images, indexes, workers)
        render_units(w, site, ix, "n", images, indexes, workers)
        w.text(
            urls.features_data(model_name, L.name), dumps(pages.features_export(site, ix), indent=1) + "\n"
        )
        export.write_layer_export(w, site, ix, Path(artifacts["sae"]) / L.name, images)  # bulk export
        if getattr(ix, "ratings", None) is not None:
            w.page(*ratings_pages.rate_page(site, ix, images))
            w.text(
                ratings_pages.rate_data_url(model_name, L.name),
                js_global("ATLAS_SURVEY", ratings_pages.survey_data(site, ix, images)),
            )
            if ix.ratings.game is not None:
                w.page(*ratings_pages.game_page(site, ix))
                w.text(
                    ratings_pages.game_data_url(model_name, L.name),
                    js_global("ATLAS_GAME", ratings_pages.game_data(site, ix, images)),
                )
    for c in range(arts.dataset.n_classes):
        w.page(*pages.class_page(site, arts, indexes, c, images))
    for c in collections:
        w.page(*collection_pages.collection_page(site, arts, indexes, c))
    if collections:
        w.text(
            urls.collections_data(model_name),
            dumps(collection_pages.export(site, collections), indent=1) + "\n",
        )
    if try_art is not None:  # the reader's own image, in the page
        trypage.write_try(w, site, arts, indexes, try_art)
        w.page(*trypage.try_page(site, arts, try_art, try_dataset_images, trypage.game_links(site, indexes)))
        if try_dataset_images:
            trypage.write_dataset_images(w, site, images, trypage.dataset_image_indices(arts, try_art))

    w.text("search_index.js", js_global("ATLAS_SEARCH", pages.search_index(site, arts, indexes, collections)))
    w.text("manifest.json", dumps(pages.manifest(site, arts, annotations, collections), indent=2) + "\n")
    if authors:  # CITATION.cff needs its authors (site.authors); `atlasgen check` warns when it is missing
        w.text(
            "CITATION.cff",
            publish.citation_cff(
                title=title,
                authors=list(authors),
                version=version,
                date=date,
                url=base_url,
                doi=doi,
                identifiers=pages.citation_identifiers(site, arts),
            ),
        )
    w.page(*pages.not_found_page(site))
    w.page(*pages.search_page(site, arts))
    if base_url:
        written = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("index.html"))
        w.text("sitemap.xml", publish.sitemap_xml(base_url, written))
    copy_static(out_dir)
    files, size = tree_size(out_dir)
    return SiteSummary(pages=w.pages, files=files, bytes=size)


MAX_WORKERS = 8
PARALLEL_MIN_UNITS = 512  # fewer unit pages than this render in-process (a fork costs more than it saves)
_FORKED: tuple | None = None  # what forked workers render from (inherited, never pickled)


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_WORKERS))


def render_units(
    w: _Writer,
    site: pages.Site,
    ix: pages.LayerIndex,
    kind: str,
    images: DatasetImages,
    indexes: dict[str, pages.LayerIndex],
    workers: int | None = None,
    min_units: int | None = None,
) -> None:
    """Every feature (``kind`` "f") or neuron ("n") page of a layer, in ``workers`` forked processes.

    Each page is a pure function of the artifacts, so the files are the same
    whichever process writes them. Workers inherit the loaded artifacts by
    fork (nothing is pickled but chunk bounds) and ignore SIGINT: the parent's
    progress callback raises on Ctrl-C and leaving the pool terminates them.
    Dataset images were all written by ``DatasetImages.prepare`` beforehand;
    a worker that would write one more fails loudly rather than lose count.
    """
    global _FORKED
    count = ix.layer.n_features if kind == "f" else ix.layer.n_neurons
    workers = default_workers() if workers is None else max(1, int(workers))
    min_units = PARALLEL_MIN_UNITS if min_units is None else min_units
    if workers == 1 or count < min_units or "fork" not in multiprocessing.get_all_start_methods():
        for i in range(count):
            w.page(*pages.unit_page(site, ix, kind, i, images, indexes))
        return
    # The first page in-process: its templates and includes compile once, before the fork.
    w.page(*pages.unit_page(site, ix, kind, 0, images, indexes))
    chunk = max(16, min(256, count // (workers * 8)))
    bounds = [(start, min(start + chunk, count)) for start in range(1, count, chunk)]
    _FORKED = (w, site, ix, kind, images, indexes)
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init) as pool:
            for done in pool.imap(_render_chunk, bounds):  # in order: progress counts pages as in serial
                for _ in range(done):
                    w.count_page()
    finally:
        _FORKED = None


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _render_chunk(bounds: tuple[int, int]) -> int:
    w, site, ix, kind, images, indexes = _FORKED
    writer = _Writer(w.out_dir, w.env, 0, None)
    writer.templates = w.templates
    stored = images.files
    for i in range(*bounds):
        writer.page(*pages.unit_page(site, ix, kind, i, images, indexes))
    if images.files != stored:
        raise RuntimeError(f"a {kind} page used a dataset image that DatasetImages.prepare did not write")
    return writer.pages


def copy_unit_images(w: _Writer, ix: pages.LayerIndex) -> None:
    """Copy each feature/neuron visualisation and thumbnail into its unit folder, once."""
    fv = ix.layer.featurevis
    for kind, sub in (("f", "features"), ("n", "neurons")):
        for i, path in sorted(ix.vis[kind].items()):
            w.copy(fv.path(sub, i), path)
        for i, path in sorted(ix.thumb[kind].items()):
            if path != ix.vis[kind].get(i):  # thumbnail missing: pages reuse vis.webp
                w.copy(fv.path(sub + "_thumb", i), path)
    featurevis_section.copy_variant_images(w, ix)


def copy_static(out_dir: Path) -> None:
    """Copy ``static/`` (CSS, JS, icons) into the site's ``static/``."""
    source = resources.resource_dir("static")
    for name in sorted(os.listdir(source)):
        if name.startswith("."):
            continue
        src = source / name
        if src.is_file():
            (out_dir / "static").mkdir(exist_ok=True)
            shutil.copyfile(src, out_dir / "static" / name)
        elif src.is_dir():  # vendored libraries (static/vendor/<lib>/)
            # onnxruntime-web goes out as classic scripts, with the try page only (atlasgen.site.trypage)
            ignore = shutil.ignore_patterns(".*", Path(trypage.VENDOR).name)
            shutil.copytree(src, out_dir / "static" / name, ignore=ignore, dirs_exist_ok=True)
