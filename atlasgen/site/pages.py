"""Page contexts: everything a template shows, prepared in Python.

Templates only loop and print. Each ``*_page`` function returns
``(path, template, context)`` with ``path`` relative to the site root. Paths
inside a context are root-relative too; templates prefix them with ``root``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from markupsafe import Markup
from PIL import Image

from atlasgen import unitlabels
from atlasgen.saelens import ORIGINS, SAELENS_WEIGHTS
from atlasgen.site import (
    annotated,
    circuits,
    collection_pages,
    export,
    featurevis_section,
    grid,
    numbers,
    ratings_pages,
    spectrum,
    svg,
    urls,
)
from atlasgen.site.artifacts import Artifacts, Dataset, Layer
from atlasgen.site.context import base_context, citation_pins, crumbs
from atlasgen.site.fmt import bibtex_escape, fmt_count, fmt_num, fmt_pct, fmt_signed, json_num
from atlasgen.site.images import DatasetImages, HeatSprite

N_DECODER_NEURONS = 6  # neurons with the largest |W_dec[i, :]| on a feature page
N_LOADING_FEATURES = 6  # features with the largest |W_dec[:, n]| on a neuron page
N_RELATED_SHOWN = 5  # cards per related list on a feature page (the export keeps all; the size budget)
N_DRIVES = 5  # classes a unit drives most (and suppresses most: N_SUPPRESSES)
N_SUPPRESSES = 3
N_CLASS_FEATURES = 12  # facets shown per layer on a class page
N_CLASS_NEURONS = 8
N_CLASS_IMAGES = 8  # dataset images per facet (or per class) on a class page
N_HOME_FEATURES = 12  # features to look at first (numbers.look_first) of the last layer, on the home page
N_LAYER_FIRST = 12  # the same list on the layer page, above the grid

N_MAP_COLOURS = 12  # length of the palette in atlas.js (map) and atlas.css (.sw-*)

KIND_NAMES = {"f": "feature", "n": "neuron"}


@dataclass(frozen=True)
class Site:
    """Settings shared by every page."""

    title: str
    date: str
    base_url: str
    model: str
    version: str
    authors: tuple[str, ...] = ()
    doi: str = ""
    sae_dtype: str = "float16"  # site.sae_dtype: the published SAE weights' dtype
    dense_threshold: float = numbers.DEFAULT_DENSE_THRESHOLD  # site.dense_threshold
    model_sha256: str = ""  # the model weights' content hash (model/model.pt), "" when not saved
    dataset_identity: str = ""  # dataset.json's identity (the dataset's name)
    dataset_images: int = 0  # images in the dataset (training and held out)
    dataset_sha256: str = ""  # Dataset.image_list_sha256: the image list, labels and split

    def permalink(self, path: str) -> str:
        if not self.base_url:
            return path
        return self.base_url.rstrip("/") + "/" + path


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values, ties broken by lower index (deterministic)."""
    values = np.asarray(values)
    k = min(k, values.shape[0])
    return np.argsort(-values, kind="stable")[:k]


class LayerIndex:
    """Per-layer lookups shared by many pages, computed once."""

    def __init__(self, site: Site, layer: Layer, dataset: Dataset, annotations=()):
        self.site = site
        self.layer = layer
        self.dataset = dataset
        m, name = site.model, layer.name
        F, C = layer.n_features, layer.n_neurons
        # The researcher's annotations (atlasgen.annotations) by (kind, id); a human label takes precedence
        # over the automatic one on every page, card, the map, the search and the exports.
        self.annotations = {(a.kind, a.unit): a for a in annotations if a.layer == name}
        self.auto_labels = [layer.feature_label(i) for i in range(F)]
        self.labels = [self._human(("f", i)) or self.auto_labels[i] for i in range(F)]
        self.neuron_labels = [self._human(("n", i)) for i in range(C)]
        # Flags per unit (atlasgen.unitlabels) and their one-line definitions, per kind.
        self.flags = {
            kind: [tuple(unitlabels.unit_flags(ex, i)) for i in range(ex.n_units)]
            for kind, ex in (("f", layer.features), ("n", layer.neurons))
        }
        self.flag_help = {
            kind: unitlabels.flag_definitions(ex)
            for kind, ex in (("f", layer.features), ("n", layer.neurons))
        }

        fv = layer.featurevis
        self.vis_size = {
            kind: _first_image_size(fv, sub) for kind, sub in (("f", "features"), ("n", "neurons"))
        }
        # Root-relative paths of the visualisation files this site copies (see build.copy_unit_images).
        self.vis = {"f": {}, "n": {}}
        self.thumb = {"f": {}, "n": {}}
        for kind, sub, count in (("f", "features", F), ("n", "neurons", C)):
            # Thumbnails only pay off when they are much smaller than the visualisation: otherwise cards
            # show vis.webp itself (sharper, and one file less per unit; the size budget).
            thumbs = _thumbs_worthwhile(self.vis_size.get(kind), _first_image_size(fv, sub + "_thumb"))
            for i in range(count):
                folder = urls.unit_dir(m, name, kind, i)
                if fv.path(sub, i) is not None:
                    self.vis[kind][i] = f"{folder}/vis.webp"
                if thumbs and fv.path(sub + "_thumb", i) is not None:
                    self.thumb[kind][i] = f"{folder}/thumb.webp"
                elif i in self.vis[kind]:
                    self.thumb[kind][i] = self.vis[kind][i]

        # Main visualisations that failed (atlasgen.featurevis_check): their cards grey the thumbnail.
        self.vis_failed = {
            kind: featurevis_section.failure_codes(fv, kind, count) for kind, count in (("f", F), ("n", C))
        }
        self.feature_cards = [self._card("f", i) for i in range(F)]
        self.neuron_cards = [self._card("n", i) for i in range(C)]

        # Decoder geometry: similar features, and feature <-> neuron loadings.
        W = layer.W_dec.astype(np.float32)
        absW = np.abs(W)
        self.decoder_neurons = _top_k_rows(absW, N_DECODER_NEURONS)
        self.loading_features = _top_k_rows(absW.T, N_LOADING_FEATURES)
        self.similar, self.similar_cos = layer.similar, layer.similar_cos  # the similar stage's artifact

        # The features to look at first (live, not dense, by importance): home and layer pages.
        imp = layer.importance["features_topk"] if layer.importance is not None else None
        self.look_first = numbers.look_first(
            layer.features.density,
            imp,
            layer.features.label_entropy,
            site.dense_threshold,
            getattr(layer.features, "flag_low_confidence", None),
        )
        self.look_first_method = numbers.look_first_method(imp is not None, site.dense_threshold)
        self.n_scanned = numbers.images_scanned(dataset)

    def _human(self, key: tuple[str, int]) -> str:
        a = self.annotations.get(key)
        return a.label if a is not None else ""

    def unit_label(self, kind: str, i: int) -> str:
        """The label pages show: the human label when annotated, else the automatic one (features only)."""
        return self.labels[i] if kind == "f" else self.neuron_labels[i]

    def _card(self, kind: str, i: int) -> dict:
        L, m = self.layer, self.site.model
        ex = L.features if kind == "f" else L.neurons
        label = self.unit_label(kind, i)
        return {
            "id": i,
            "code": f"{kind}/{i}",
            "kind_name": KIND_NAMES[kind],
            "href": urls.unit(m, L.name, kind, i),
            "thumb": self.thumb[kind].get(i),
            "label": label,
            "top_class": self.top_class_text(ex, i),
            "density": numbers.density_text(ex.density[i]),
            "max_act": fmt_num(ex.max_act[i]),
            # Sort keys for the layer grid (fixed precision, stable bytes).
            "sort_density": f"{float(ex.density[i]):.6g}",
            "sort_max": f"{float(ex.max_act[i]):.6g}",
            "sort_importance": circuits.importance_sort_key(L, kind, i),
            "dead": float(ex.density[i]) <= 0,
            "flags": self.flags[kind][i],
            "vis_failed": bool(self.vis_failed[kind][i]),
        }

    def flag_names(self, kind: str, i: int) -> list[str]:
        """The unit's flags as pages name them ("dense", "low-confidence label", ...)."""
        return [unitlabels.FLAG_NAMES[f] for f in self.flags[kind][i]]

    def top_class_text(self, ex, i: int) -> str:
        c = int(ex.top_classes[i, 0])
        if c < 0:
            return ""
        return f"{self.dataset.class_names[c]} {fmt_pct(ex.top_class_weights[i, 0])}"


THUMB_MIN_RATIO = 2  # a thumbnail is used when the visualisation's side is at least this many times its side


def _thumbs_worthwhile(vis_size: tuple[int, int] | None, thumb_size: tuple[int, int] | None) -> bool:
    """Whether cards should load thumb.webp rather than vis.webp.

    A thumbnail saves a grid of thousands of cards bandwidth only when it is much smaller than the
    visualisation (a 224 px image against a 64 px thumbnail); at the default sizes (64 and 48 px)
    it saves little, looks blurrier in a 120 px card, and adds a file to every unit folder.
    """
    if thumb_size is None:
        return False
    if vis_size is None:
        return True
    return max(vis_size) >= THUMB_MIN_RATIO * max(thumb_size)


def _first_image_size(fv, sub: str) -> tuple[int, int] | None:
    ids = sorted(fv.available.get(sub, ()))
    if not ids:
        return None
    with Image.open(fv.path(sub, ids[0])) as im:
        return im.size


def _top_k_rows(values: np.ndarray, k: int) -> np.ndarray:
    """Row-wise ``top_k`` for a 2-D array."""
    k = min(k, values.shape[1])
    return np.argsort(-values, axis=1, kind="stable")[:, :k]


# ---------------------------------------------------------------- shared pieces


def class_link(site: Site, dataset: Dataset, c: int) -> dict:
    return {"name": dataset.class_names[c], "href": urls.class_page(site.model, dataset.class_slugs[c])}


def citation_identifiers(site: Site, arts: Artifacts | None = None) -> list[tuple[str, str]]:
    """(what, value) of everything a citation pins down besides the URL: SAE hashes, weights, dataset."""
    out = []
    if arts is not None:
        out += [(f"SAE of layer {L.name}, sha256", L.sae_sha256) for L in arts.layers]
    if site.model_sha256:
        out.append((f"model {site.model} weights, sha256", site.model_sha256))
    if site.dataset_identity or site.dataset_sha256:
        out.append(
            (
                f"dataset {site.dataset_identity} ({fmt_count(site.dataset_images)} images), image "
                "list sha256",
                site.dataset_sha256,
            )
        )
    return out


def citation(site: Site, layer: Layer, kind: str, unit: int) -> dict:
    """Permalink, BibTeX and plain text for one unit page.

    A citation names the unit by its permanent id only (``mixed5b/f/32``), never by its label: relabelling
    a feature does not change how it is cited. It carries the full SAE hash, the model weights' hash and the
    dataset's identity (name, image count, image-list hash), and the absolute URL once ``site.base_url`` is
    set.
    """
    path = urls.unit(site.model, layer.name, kind, unit)
    permalink = site.permalink(path)
    code = f"{layer.name}/{kind}/{unit}"
    name = f"{site.model} {code}"
    sae = f"sha256:{layer.sae_sha256}"
    year = site.date[:4] if site.date[:4].isdigit() else site.date
    key = (
        re.sub(r"[^A-Za-z0-9]+", "-", f"{site.title}-{site.model}-{layer.name}-{kind}{unit}")
        .strip("-")
        .lower()
    )
    what = "SAE feature" if kind == "f" else "neuron"
    pins = [f"SAE {sae}"]
    pins += citation_pins(site)
    bibtex = "\n".join(
        [
            f"@misc{{{key},",
            *([f"  author       = {{{bibtex_escape(' and '.join(site.authors))}}},"] if site.authors else []),
            f"  title        = {{{{{bibtex_escape(name)}}}}},",
            f"  howpublished = {{{bibtex_escape(site.title)}, \\url{{{permalink}}}}},",
            *([f"  url          = {{{permalink}}},"] if site.base_url else []),
            f"  year         = {{{bibtex_escape(year)}}},",
            *([f"  doi          = {{{bibtex_escape(site.doi)}}},"] if site.doi else []),
            f"  note         = {{{what} {unit} of layer {bibtex_escape(layer.name)}; "
            f"{bibtex_escape('; '.join(pins))}; version of {bibtex_escape(site.date)}}}",
            "}",
        ]
    )
    by = f"{', '.join(site.authors)}. " if site.authors else ""
    doi = f" doi:{site.doi}." if site.doi else ""
    plain = f"{by}{site.title}. \u201c{name}.\u201d {site.date}. {permalink} ({'; '.join(pins)}).{doi}"
    return {
        "permalink": permalink,
        "bibtex": bibtex,
        "plain": plain,
        "absolute": bool(site.base_url),
        "sae_sha256": layer.sae_sha256,
        "model_sha256": site.model_sha256,
        "dataset": (
            f"{site.dataset_identity}, {fmt_count(site.dataset_images)} images"
            if site.dataset_identity
            else ""
        ),
        "dataset_sha256": site.dataset_sha256,
    }


def class_weight_rows(site: Site, dataset: Dataset, weights: np.ndarray) -> dict:
    """Classes a unit drives most and suppresses most, with bar widths relative to the largest |w|."""
    scale = float(np.abs(weights).max()) if weights.size else 0.0

    def row(c: int) -> dict:
        w = float(weights[c])
        return {
            **class_link(site, dataset, c),
            "weight": fmt_signed(w),
            "bar": f"{100 * abs(w) / scale:.1f}" if scale > 0 else "0",
            "negative": w < 0,
        }

    drives = [row(int(c)) for c in top_k(weights, N_DRIVES) if weights[c] > 0]
    suppresses = [row(int(c)) for c in top_k(-weights, N_SUPPRESSES) if weights[c] < 0]
    return {"drives": drives, "suppresses": suppresses}


# ---------------------------------------------------------------- pages


def home_page(
    site: Site, arts: Artifacts, indexes: dict[str, LayerIndex], collections=()
) -> tuple[str, str, dict]:
    path = urls.home()
    layers = [
        {
            "name": L.name,
            "href": urls.layer(site.model, L.name),
            "map": urls.layer_map(site.model, L.name),
            "n_features": fmt_count(L.n_features),
            "n_neurons": fmt_count(L.n_neurons),
        }
        for L in arts.layers
    ]
    example, highlights = None, []
    # The last studied layer: the one nearest the classes, where the class circuits start.
    if arts.layers and arts.layers[-1].n_features:
        L = arts.layers[-1]
        ix = indexes[L.name]
        first = ix.look_first[:N_HOME_FEATURES]
        best = int(first[0]) if len(first) else 0
        example = {"code": f"{L.name}/f/{best}", "id": best, "href": urls.unit(site.model, L.name, "f", best)}
        highlights = {
            "layer": L.name,
            "href": urls.layer(site.model, L.name),
            "method": ix.look_first_method,
            "cards": [ix.feature_cards[int(i)] for i in first],
            "glossary": numbers.glossary_href("look-first"),
        }
    ctx = base_context(
        site,
        path,
        site.title,
        [],
        model={
            "name": site.model,
            "href": urls.model(site.model),
            "n_classes": fmt_count(arts.dataset.n_classes),
            "accuracy": _accuracy_text(arts.model_info),
        },
        layers=layers,
        dataset_identity=arts.dataset.identity,
        example=example,
        highlights=highlights,
        collections=collection_pages.home_list(site, collections),
        scripts=SEARCH_SCRIPTS,
        body_class="home",
    )
    return path, "home.html", ctx


SEARCH_SCRIPTS = ["search_index.js", "static/vendor/minisearch/minisearch.js"]  # before static/atlas.js


def search_page(site: Site, arts: Artifacts) -> tuple[str, str, dict]:
    """search.html: the search with every result (up to 500), its query from ``?q=`` (works from file://)."""
    path = "search.html"
    last = arts.layers[-1].name if arts.layers else "mixed5b"
    ctx = base_context(
        site,
        path,
        "search",
        crumbs(site, ("search", None)),
        example=f"{last}/f/12",
        scripts=SEARCH_SCRIPTS,
        body_class="search",
    )
    return path, "search.html", ctx


def not_found_page(site: Site) -> tuple[str, str, dict]:
    """404.html: GitHub Pages serves it at any missing path, so its links and scripts are absolute under
    ``site.base_url``; without one it has no search and says where the home page is."""
    base = site.base_url.rstrip("/") + "/" if site.base_url else ""
    return "404.html", "404.html", {"title": site.title, "base_url": base}


def glossary_page(site: Site) -> tuple[str, str, dict]:
    """glossary.html: every term of ``numbers.GLOSSARY`` with its definition and anchor."""
    path = urls.glossary()
    ctx = base_context(
        site,
        path,
        "glossary",
        crumbs(site, ("glossary", None)),
        terms=[{"anchor": t.anchor, "name": t.name, "short": t.short} for t in numbers.GLOSSARY],
        dense_threshold=fmt_pct(site.dense_threshold),
        body_class="glossary",
    )
    return path, "glossary.html", ctx


def _accuracy_text(model_info: dict) -> str | None:
    acc = model_info.get("heldout_accuracy")
    if acc is None:
        return None
    text = f"{fmt_pct(acc)} held-out accuracy"
    chance = model_info.get("chance_accuracy")
    if chance is not None:
        text += f" (chance {fmt_pct(chance)})"
    return text


def below_chance(model_info: dict) -> bool:
    """Held-out accuracy at or below chance (a model that does not separate the classes)."""
    acc, chance = model_info.get("heldout_accuracy"), model_info.get("chance_accuracy")
    return acc is not None and chance is not None and chance < 1 and acc <= chance


def _provenance_text(model_info: dict) -> str | None:
    """ "Trained by atlasgen on N training images" or "Used as given: ...", from model.json."""
    weights = model_info.get("weights")
    if not weights:
        return None
    text = weights[0].upper() + weights[1:]
    held = model_info.get("n_heldout_images")
    if held:
        text += f"; accuracy measured on {fmt_count(held)} held-out images"
    return text + "."


_METRIC_NAMES = {
    "fvu": "FVU (fraction of variance unexplained)",
    "explained_variance": "explained variance",
    "l0": "L0 (active features per position)",
    "dead_fraction": "dead fraction, SAE training (held-out vectors, not the dataset scan)",
    "downstream_top1_agreement": "top-1 agreement, reconstruction spliced in",
    "downstream_ce_recovered": "cross-entropy recovered (vs zero ablation)",
    "downstream_kl": "KL(clean || spliced), nats",
}


def _metric_rows(metrics: dict) -> list[dict]:
    rows = []
    for key in sorted(metrics):
        value = metrics[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                rows.append({"name": _METRIC_NAMES.get(key, key.replace("_", " ")), "value": value})
            continue
        rows.append({"name": _METRIC_NAMES.get(key, key.replace("_", " ")), "value": fmt_num(value, 4)})
        if key == "dead_fraction":  # a training metric: never read as the dataset's dead count
            rows[-1].update(
                help=numbers.TERMS["dead-fraction-training"].short,
                key="dead-fraction-training",
                href=numbers.glossary_href("dead-fraction-training"),
            )
    return rows


def sae_facts(L: Layer) -> list[dict]:
    """The layer page's lines on what the SAE is: architecture, where it came from, its sizes, k where
    it means something (topk, batchtopk), thresholds and decoder norms (from its description)."""
    d = L.sae_description
    if not d:
        return []
    arch = d["architecture"]
    if d.get("source_architecture") and d["source_architecture"] != arch:
        arch += f" (called {d['source_architecture']} in its source)"
    origin = ORIGINS.get(d.get("origin", "unknown"), d.get("origin", ""))
    if d.get("source_file"):
        origin += f": {d['source_file']}"
    facts = [{"name": "SAE architecture", "value": arch}, {"name": "SAE from", "value": origin}]
    for key in ("d_in", "d_sae"):
        if key in L.sae_cfg:
            facts.append({"name": f"SAE {key.replace('_', ' ')}", "value": str(L.sae_cfg[key])})
    if "k" in d:
        what = (
            "active latents per vector"
            if d["architecture"] == "topk"
            else "mean active latents per vector in training"
        )
        facts.append({"name": "SAE k", "value": f"{d['k']} ({what})"})
    if d.get("threshold", "none") != "none":
        facts.append(
            {
                "name": "SAE threshold",
                "value": "one per latent" if d["threshold"] == "per-latent" else "one for all latents",
            }
        )
    if d.get("decoder_unit_norm"):
        rows = "unit norm: codes are in activation units"
    else:
        rows = (
            f"norms {fmt_num(d.get('decoder_norm_min', 0), 3)} to "
            f"{fmt_num(d.get('decoder_norm_max', 0), 3)}, "
            "not unit: codes are not in activation units (latent i adds f_i x ||W_dec_i|| to x_hat)"
        )
    facts.append({"name": "SAE decoder rows", "value": rows})
    return facts


def _layer_summary(site: Site, L: Layer) -> dict:
    metrics = L.sae_metrics

    def metric(key, pct=False):
        v = metrics.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return "n/a"
        return fmt_pct(v) if pct else fmt_num(v, 3)

    return {
        "name": L.name,
        "href": urls.layer(site.model, L.name),
        "map": urls.layer_map(site.model, L.name),
        "shape": "\u00d7".join(str(s) for s in L.shape) if L.shape else "",
        "n_features": fmt_count(L.n_features),
        "n_neurons": fmt_count(L.n_neurons),
        "architecture": str(L.sae_description.get("architecture", "")),
        "fvu": metric("fvu"),
        "l0": metric("l0"),
        "dead": metric("dead_fraction", pct=True),
        "n_dead": fmt_count(int((L.features.density <= 0).sum())),
    }


def model_page(site: Site, arts: Artifacts, has_try: bool = False) -> tuple[str, str, dict]:
    """The model's page; ``has_try``: the site has the try page (the page links to it)."""
    path = urls.model(site.model)
    ds = arts.dataset
    groups: dict[str, list[dict]] = {}
    for c in range(ds.n_classes):
        groups.setdefault(ds.superclass_of[c] or "", []).append(class_link(site, ds, c))
    order = [s for s in ds.info.get("superclasses") or [] if s in groups]
    order += sorted(s for s in groups if s not in order)
    ctx = base_context(
        site,
        path,
        site.model,
        crumbs(site, (site.model, None)),
        model_name=site.model,
        accuracy=_accuracy_text(arts.model_info),
        classes_skipped=arts.classes_skipped,
        below_chance=below_chance(arts.model_info),
        provenance=_provenance_text(arts.model_info),
        source=arts.model_info.get("source"),
        dataset={
            "identity": ds.identity,
            "source": ds.info.get("source"),
            "n_images": fmt_count(len(ds.labels)),
            "n_scanned": fmt_count(numbers.images_scanned(ds)),
            "n_heldout": fmt_count(numbers.images_heldout(ds)),
            "n_classes": fmt_count(ds.n_classes),
        },
        glossary={t.anchor: numbers.glossary_href(t.anchor) for t in numbers.GLOSSARY},
        model_sha256=site.model_sha256,
        dead_help=numbers.TERMS["dead"].short,
        dead_training_help=numbers.TERMS["dead-fraction-training"].short,
        layers=[_layer_summary(site, L) for L in arts.layers],
        class_groups=[{"name": s, "classes": groups[s]} for s in order],
        try_href=urls.try_page(site.model) if has_try else None,
    )
    return path, "model.html", ctx


def layer_page(site: Site, ix: LayerIndex) -> tuple[str, str, dict]:
    L = ix.layer
    path = urls.layer(site.model, L.name)
    density = L.features.density
    alive = int((density > 0).sum())
    n_dense = int((density > site.dense_threshold).sum())
    facts = [
        {"name": "SAE features", "value": fmt_count(L.n_features)},
        {"name": "neurons (channels)", "value": fmt_count(L.n_neurons)},
        numbers.stat("images-scanned", f"{fmt_count(ix.n_scanned)} training images"),
        numbers.stat(
            "density",
            f"{fmt_count(alive)} of {fmt_count(L.n_features)} ({fmt_pct(alive / max(L.n_features, 1))})",
            name="features that fire on the images scanned",
        ),
        numbers.stat("dead", fmt_count(L.n_features - alive), name="dead features (never fire on them)"),
        numbers.stat(
            "dense",
            fmt_count(n_dense),
            name=f"dense features (fire on more than {fmt_pct(site.dense_threshold)})",
        ),
        numbers.stat(
            "density",
            fmt_pct(float(np.median(density))) if density.size else "n/a",
            name="median feature density",
        ),
    ]
    if L.tokens:
        facts.append({"name": "token studied", "value": L.tokens})
    facts += sae_facts(L)
    facts.append({"name": "SAE sha256", "value": L.sae_sha256})
    if L.importance is None and L.importance_skipped:
        facts.append({"name": "importance", "value": f"not computed: {L.importance_skipped}"})
    if L.classes_skipped:
        facts.append({"name": "class weights", "value": f"not computed: {L.classes_skipped}"})
    ctx = base_context(
        site,
        path,
        f"{L.name}",
        crumbs(site, (site.model, urls.model(site.model)), (L.name, None)),
        layer=_layer_summary(site, L),
        facts=facts,
        metrics=_metric_rows(L.sae_metrics),
        density_svg=svg.density_histogram(density),
        cooccurrence=spectrum.layer_pairs(L.cooccurrence, ix.feature_cards),
        scatter_svg=svg.density_scatter(density, L.features.mean_act, L.features.label_entropy),
        n_dead=fmt_count(L.n_features - alive) if L.n_features > alive else None,
        look_first=[ix.feature_cards[int(f)] for f in ix.look_first[:N_LAYER_FIRST]],
        look_first_method=ix.look_first_method,
        look_first_href=numbers.glossary_href("look-first"),
        vis_pixelated=_pixelated(ix.vis_size.get("f"), 120),
        export_href=export.features_jsonl_path(site.model, L.name),
        sae_href=f"{export.sae_dir_path(site.model, L.name)}/{SAELENS_WEIGHTS}",
        grids=[
            grid.grid_context(urls.root_prefix(path), ix, kind, _pixelated(ix.vis_size.get("f"), 120))
            for kind in ("f", "n")
        ],
        data_href=urls.features_data(site.model, L.name),
        try_href=f"{urls.try_page(site.model)}#layer={L.name}" if getattr(ix, "has_try", False) else None,
        ratings_layer=ratings_pages.layer_context(site, ix),
        scripts=[grid.cards_url(site.model, L.name)],
        has_importance=L.importance is not None,
        importance_help=(
            "images that lose the true class from the top "
            f"{(L.importance or {}).get('info', {}).get('top_k', 10)} when the unit is mean-ablated"
        ),
        body_class="layer",
    )
    return path, "layer.html", ctx


def _pixelated(size: tuple[int, int] | None, display: int) -> bool:
    return size is not None and max(size) < display


def _examples(site: Site, ix: LayerIndex, ex, i: int, images: DatasetImages, sprite) -> list[dict]:
    return spectrum.example_items(
        ix.dataset,
        lambda c: class_link(site, ix.dataset, c),
        ex.top_idx[i],
        ex.top_val[i],
        ex.top_maps[i],
        ex.top_pos[i] if ex.top_pos is not None else None,
        float(ex.max_act[i]),
        images,
        sprite,
    )


def _class_weight_method(L: Layer, kind: str) -> str:
    """The formula of a unit's class weights: the circuits stage names the features' one (``... . W_dec^T``);
    a neuron's weight is the same product without the decoder (its channel's row of ``W_fc``)."""
    method = str(L.circuits_info.get("method", ""))
    if kind == "n" and method.endswith(" . W_dec^T"):
        return method[: -len(" . W_dec^T")]
    return method


def _entropy_stat(ex, i: int, n_classes: int) -> dict:
    """The label entropy stat: over every firing image when the artifact has it, else over the top images."""
    value = f"{fmt_num(ex.label_entropy[i])} nats"
    if ex.label_entropy_normalised is None:
        return numbers.stat(
            "label-entropy", value, help="activation-weighted entropy of the classes of its top images"
        )
    return numbers.stat(
        "label-entropy",
        f"{value} ({fmt_num(ex.label_entropy_normalised[i], 2)} of max)",
        help=(
            "activation-weighted entropy of the classes of every image where it fires; "
            f"max ln {n_classes} (classes equally likely)"
        ),
    )


def unit_page(
    site: Site,
    ix: LayerIndex,
    kind: str,
    i: int,
    images: DatasetImages,
    indexes: dict[str, LayerIndex] | None = None,
) -> tuple[str, str, dict]:
    """A feature (kind "f") or neuron (kind "n") page; ``indexes`` (every layer) enable the layer-to-layer
    weights."""
    L, ds = ix.layer, ix.dataset
    m = site.model
    ex = L.features if kind == "f" else L.neurons
    count = ex.n_units
    path = urls.unit(m, L.name, kind, i)
    label = ix.unit_label(kind, i)
    code = f"{L.name}/{kind}/{i}"

    # Images it fires on: the band counts sum to them exactly; density x images scanned otherwise.
    fires = (
        int(ex.band_count[i].sum())
        if ex.band_count is not None
        else int(round(float(ex.density[i]) * ix.n_scanned))
    )
    stats = (
        [
            numbers.stat(
                "density",
                numbers.density_text(ex.density[i]) + f" ({fmt_count(fires)} of {fmt_count(ix.n_scanned)})",
            ),
            numbers.stat("max-activation", fmt_num(ex.max_act[i])),
            numbers.stat("mean-activation", fmt_num(ex.mean_act[i])),
            _entropy_stat(ex, i, ds.n_classes),
        ]
        + circuits.importance_stats(L, kind, i)
        + ratings_pages.unit_stats(ix, kind, i)
    )
    if ex.density_position is not None:
        stats[1:1] = [numbers.stat("density-per-position", fmt_pct(ex.density_position[i]))]
        stats.insert(4, numbers.stat("mean-per-position", fmt_num(ex.mean_act_position[i])))
    for st in stats:
        st.setdefault("href", "")
        st.setdefault("key", "")
    top_classes = [
        {**class_link(site, ds, int(c)), "share": fmt_pct(w)}
        for c, w in zip(ex.top_classes[i], ex.top_class_weights[i])
        if int(c) >= 0
    ]
    topk_classes = (
        [
            {**class_link(site, ds, int(c)), "share": fmt_pct(w)}
            for c, w in zip(ex.topk_classes[i], ex.topk_class_weights[i])
            if int(c) >= 0
        ]
        if ex.topk_classes is not None
        else []
    )
    flags = [
        {"key": f, "name": unitlabels.FLAG_NAMES[f], "help": ix.flag_help[kind][f]} for f in ix.flags[kind][i]
    ]
    weights = L.class_weights_features if kind == "f" else L.class_weights_neurons
    weights = weights[i] if weights is not None else None
    if kind == "f":
        related = [
            {
                "title": "Similar features",
                "note": "cosine similarity of decoder directions",
                "cards": [
                    {**ix.feature_cards[int(j)], "value": fmt_num(c)}
                    for j, c in zip(ix.similar[i][:N_RELATED_SHOWN], ix.similar_cos[i])
                ],
            },
            {
                "title": "Neurons it writes to",
                "note": "largest |W_dec| entries of this feature",
                "cards": [
                    {**ix.neuron_cards[int(n)], "value": fmt_signed(L.W_dec[i, int(n)])}
                    for n in ix.decoder_neurons[i][:N_RELATED_SHOWN]
                ],
            },
        ]
        together = spectrum.cooccurring(L.cooccurrence, i)
        if together:
            related.append(
                {
                    "title": "Features that fire with it",
                    "note": spectrum.cooccurring_note(L.cooccurrence),
                    "cards": [{**ix.feature_cards[j], "value": value} for j, value in together],
                }
            )
    else:
        related = [
            {
                "title": "SAE features loading on this neuron",
                "note": "largest |W_dec[:, n]|",
                "cards": [
                    {**ix.feature_cards[int(f)], "value": fmt_signed(L.W_dec[int(f), i])}
                    for f in ix.loading_features[i]
                ],
            }
        ]
    vis_size = ix.vis_size.get(kind)
    sprite = HeatSprite()  # every heat-map of the page in one strip (size budget)
    examples = _examples(site, ix, ex, i, images, sprite)
    bands = spectrum.bands(ds, lambda c: class_link(site, ds, c), ex, i, images, sprite)
    heat_css = spectrum.finish_heat(sprite, examples, *(b["examples"] for b in bands))
    ctx = base_context(
        site,
        path,
        f"{code}" + (f" \u00b7 {label}" if label else ""),
        crumbs(site, (m, urls.model(m)), (L.name, urls.layer(m, L.name)), (f"{kind}/{i}", None)),
        kind=kind,
        kind_name=KIND_NAMES[kind],
        unit_id=i,
        code=code,
        layer_name=L.name,
        label=label,
        annotation=annotated.annotation_context(
            site, ix, kind, i, urls.root_prefix(path), list(indexes or {L.name: ix})
        ),
        in_collections=collection_pages.unit_links(site, ix, kind, i),
        dead=float(ex.density[i]) <= 0,
        flags=flags,
        low_confidence="low_confidence" in ix.flags[kind][i],
        prev_href=urls.unit(m, L.name, kind, (i - 1) % count),
        next_href=urls.unit(m, L.name, kind, (i + 1) % count),
        prev_code=f"{kind}/{(i - 1) % count}",
        next_code=f"{kind}/{(i + 1) % count}",
        stats=stats,
        vis=ix.vis[kind].get(i),
        og_image=site.permalink(ix.vis[kind][i]) if site.base_url and ix.vis[kind].get(i) else "",
        vis_width=vis_size[0] if vis_size else None,
        vis_height=vis_size[1] if vis_size else None,
        vis_pixelated=_pixelated(vis_size, 256),
        fvis=featurevis_section.section(ix, kind, i),
        examples=examples,
        bands=bands,
        heat_css=Markup(heat_css),
        token_mode=L.tokens,
        heat_legend={"max": fmt_num(ex.max_act[i])},
        images_pixelated=images.pixelated,
        hist_svg=svg.activation_histogram(
            ex.hist[i], ex.hist_edges, float(ex.max_act[i]), fires, ix.n_scanned
        ),
        top_classes=top_classes,
        topk_classes=topk_classes,
        whole_range=ex.topk_classes is not None,
        circuits=class_weight_rows(site, ds, weights)
        if weights is not None
        else {"drives": [], "suppresses": []},
        classes_skipped=L.classes_skipped,
        circuits_method=_class_weight_method(L, kind),
        circuits_exact=L.circuits_info.get("exact"),
        related=related,
        weights=circuits.unit_weights(L, indexes or {ix.layer.name: ix}, kind, i),
        map_href=f"{urls.layer_map(m, L.name)}#f={i}" if kind == "f" else None,
        # the try page with this unit pinned (set on the index when the site has the page)
        try_href=f"{urls.try_page(m)}#layer={L.name}&{kind}={i}" if getattr(ix, "has_try", False) else None,
        links_title="Where it sits" if kind == "f" else "See also",
        layer_href=urls.layer(m, L.name),
        cite=citation(site, L, kind, i),
        data_href=urls.features_data(m, L.name) if kind == "f" else None,
        ratings=ratings_pages.unit_context(ix, kind, i),
        body_class="unit",
    )
    return path, "unit.html", ctx


def class_page(
    site: Site, arts: Artifacts, indexes: dict[str, LayerIndex], c: int, images: DatasetImages
) -> tuple[str, str, dict]:
    ds = arts.dataset
    m = site.model
    name = ds.class_names[c]
    path = urls.class_page(m, ds.class_slugs[c])
    layers = []
    for L in [] if arts.classes_skipped else arts.layers:
        ix = indexes[L.name]
        info = (L.contributions or {}).get("info", {})
        layers.append(
            {
                "name": L.name,
                "href": urls.layer(m, L.name),
                "features": circuits.class_facets(
                    L, ix.feature_cards, "f", c, ds.facet_names[c], N_CLASS_FEATURES
                ),
                "neurons": circuits.class_facets(
                    L, ix.neuron_cards, "n", c, ds.facet_names[c], N_CLASS_NEURONS
                ),
                "method": str(L.circuits_info.get("method", "")),
                "exact": bool(L.circuits_info.get("exact")),
                "method_note": str(L.circuits_info.get("note", "")),
                "contribution_method": str(info.get("method", "")),
                "contribution_exact": bool(info.get("exact")),
                "contribution_images": int(L.contributions["images"][c])
                if L.contributions is not None
                else 0,
                "contributions_href": numbers.glossary_href("class-contribution"),
            }
        )
    # Dataset images of this class: training images in index order, grouped by facet when known.
    members = np.flatnonzero(ds.labels == c)
    if ds.split is not None:
        train = members[ds.split[members] == 0]
        members = train if train.size else members
    groups = []
    if ds.facets is not None and ds.facet_names[c]:
        for fi, facet in enumerate(ds.facet_names[c]):
            chosen = members[ds.facets[members] == fi][:N_CLASS_IMAGES]
            if chosen.size:
                groups.append({"name": facet, "images": [images.url(int(k)) for k in chosen]})
    else:
        chosen = members[: 2 * N_CLASS_IMAGES]
        if chosen.size:
            groups.append({"name": "", "images": [images.url(int(k)) for k in chosen]})
    ctx = base_context(
        site,
        path,
        f"class {name}",
        crumbs(site, (m, urls.model(m)), ("classes", urls.model(m) + "#classes"), (name, None)),
        class_name=name,
        class_id=c,
        superclass=ds.superclass_of[c],
        facet_names=ds.facet_names[c],
        layers=layers,
        circuit=None
        if arts.classes_skipped
        else circuits.class_circuit(urls.root_prefix(path), name, c, arts.layers, indexes),
        classes_skipped=arts.classes_skipped,
        image_groups=groups,
        images_pixelated=images.pixelated,
        n_images=fmt_count(int((ds.labels == c).sum())),
        n_images_train=fmt_count(
            int(((ds.labels == c) & (ds.split == 0)).sum())
            if ds.split is not None
            else int((ds.labels == c).sum())
        ),
        images_href=numbers.glossary_href("dataset-images"),
        dense_threshold=fmt_pct(site.dense_threshold),
        dense_href=numbers.glossary_href("dense"),
        lift_href=numbers.glossary_href("class-lift"),
        lift_threshold=fmt_num(circuits.selectivity_threshold(len(ds.class_names)), 2),
        body_class="class",
    )
    return path, "class.html", ctx


def map_page(site: Site, ix: LayerIndex) -> tuple[str, str, dict]:
    """The zoomable map (static/map.js over Leaflet); the cluster lists below it work without JavaScript."""
    from atlasgen.site.mapview import evaluation_rows, map_dead

    L = ix.layer
    m = site.model
    path = urls.layer_map(m, L.name)
    levels = L.map.get("levels") or []
    top = levels[0] if levels else []
    cluster_index = {cl["id"]: n for n, cl in enumerate(top)}
    # Counts and a representative per top cluster; the member lists are drawn by map.js from data.js when a
    # cluster is opened (every feature is linked from the layer page), so the page does not carry every card.
    counts: dict[int, int] = {n: 0 for n in range(len(top))}
    unclustered = 0
    live = [f for f in L.map.get("features", []) if not map_dead(f, L)]
    for f in live:
        clusters = f.get("clusters") or []
        n = cluster_index.get(clusters[0]) if clusters else None
        if n is None:
            unclustered += 1
        else:
            counts[n] += 1
    clusters = []
    for n, cl in enumerate(top):
        rep = int(cl.get("representative", (cl.get("members") or [-1])[0]))
        clusters.append(
            {
                "name": cl.get("name") or f"cluster {cl['id']}",
                "count": counts[n],
                "index": n,
                "rep": ix.feature_cards[rep] if 0 <= rep < L.n_features else None,
                "swatch": n % N_MAP_COLOURS,
            }
        )
    n_dead = len(L.map.get("features", [])) - len(live)
    if unclustered:
        clusters.append(
            {"name": "unclustered", "count": unclustered, "index": -1, "rep": None, "swatch": None}
        )
    ctx = base_context(
        site,
        path,
        f"{L.name} map",
        crumbs(site, (m, urls.model(m)), (L.name, urls.layer(m, L.name)), ("map", None)),
        layer_name=L.name,
        layer_href=urls.layer(m, L.name),
        clusters=clusters,
        n_levels=len(levels),
        map_source={
            "class_weights": "class-weight profiles",
            "coactivation": "activations on a sample of images",
            "predictions": "model predictions on the images they fire on",
        }.get(L.map.get("source"), "decoder directions"),
        level_sizes=[len(lvl) for lvl in levels],
        has_atlas=bool(L.atlas.get("grids")),
        atlas_points=fmt_count(int(L.atlas.get("n_points", 0))),
        atlas_grids=[int(g["size"]) for g in L.atlas.get("grids") or []],
        evaluation=evaluation_rows(L),
        n_points=fmt_count(len(live)),
        n_dead=fmt_count(n_dead)
        if n_dead
        else None,  # the lede names dead features only where there are some
        scripts=["static/vendor/leaflet/leaflet.js", f"{m}/{L.name}/map/data.js", "static/map.js"],
        body_class="map",
    )
    return path, "map.html", ctx


def features_export(site: Site, ix: LayerIndex) -> dict:
    """data/<model>/<layer>/features.json."""
    L, ds = ix.layer, ix.dataset
    ex = L.features
    rows = []
    if L.importance is not None:  # the pages' rank: among live features, ties shared, none for a dead feature
        rank, ties = numbers.competition_ranks(L.importance["features_topk"], ex.density > 0)
    for i in range(L.n_features):
        rows.append(
            {
                "id": i,
                "label": ix.labels[i],
                **annotated.annotation_fields(ix, "f", i),
                "density": json_num(ex.density[i]),
                "max_act": json_num(ex.max_act[i]),
                "mean_act": json_num(ex.mean_act[i]),
                "top_classes": [
                    {"class": ds.class_names[int(c)], "share": json_num(w, 4)}
                    for c, w in zip(ex.top_classes[i], ex.top_class_weights[i])
                    if int(c) >= 0
                ],
                "flags": [f.replace("_", "-") for f in ix.flags["f"][i]],
            }
        )
        if L.importance is not None:
            rows[-1].update(
                importance=int(L.importance["features_topk"][i]),
                importance_top1=int(L.importance["features_top1"][i]),
                importance_rank=int(rank[i]) or None,
                importance_tied_with=int(ties[i]),
            )
    return {"model": site.model, "layer": L.name, "sae_sha256": L.sae_sha256, "features": rows}


def search_index(site: Site, arts: Artifacts, indexes: dict[str, LayerIndex], collections=()) -> dict:
    """search_index.js (static/atlas.js builds a MiniSearch index from it in the browser): per layer and kind
    columns with one entry per unit (automatic label, top classes, flags, density as the pages print it, and
    which thumbnail file it has: 0 none, 1 thumb.webp, 2 vis.webp); the annotations (human label, tags, notes
    as plain text); every class; every collection (href, title, the words of its description, prose and
    notes). Unit and thumbnail URLs follow from the layer, kind and id (docs/urls.md);
    hrefs are root-relative."""
    from atlasgen.annotations import notes_text

    layers, notes = [], []
    for L in arts.layers:
        ix = indexes[L.name]
        entry: dict = {"name": L.name}
        for kind, ex in (("f", L.features), ("n", L.neurons)):
            n = ex.n_units
            thumbs = []
            for i in range(n):
                t = ix.thumb[kind].get(i)
                thumbs.append(0 if not t else 1 if t.endswith("/thumb.webp") else 2)
            entry[kind] = {
                "n": n,
                "label": ix.auto_labels if kind == "f" else [""] * n,
                "classes": [
                    ", ".join(arts.dataset.class_names[int(c)] for c in ex.top_classes[i] if int(c) >= 0)
                    for i in range(n)
                ],
                "flags": [", ".join(ix.flag_names(kind, i)) for i in range(n)],
                "density": [fmt_pct(ex.density[i]) for i in range(n)],
                "thumb": thumbs,
            }
        layers.append(entry)
        for (kind, i), a in sorted(ix.annotations.items()):
            notes.append([L.name, kind, i, a.label, " ".join(a.tags), notes_text(a.notes)])
    classes = [
        [
            urls.class_page(site.model, arts.dataset.class_slugs[c]),
            arts.dataset.class_names[c],
            arts.dataset.superclass_of[c] or "",
        ]
        for c in range(arts.dataset.n_classes)
    ]
    return {
        "model": site.model,
        "layers": layers,
        "annotations": notes,
        "classes": classes,
        "collections": collection_pages.search_entries(site, collections),
    }


def manifest(site: Site, arts: Artifacts, annotations=(), collections=()) -> dict:
    from atlasgen.versions import numeric_stack

    return {
        "atlasgen_version": site.version,
        "versions": numeric_stack(),
        "date": site.date,
        "title": site.title,
        "base_url": site.base_url,
        "model": site.model,
        "dataset_identity": arts.dataset.identity,
        "model_sha256": site.model_sha256,
        "dataset": {
            "identity": site.dataset_identity,
            "n_images": site.dataset_images,
            "n_images_scanned": numbers.images_scanned(arts.dataset),
            "image_list_sha256": site.dataset_sha256,
        },
        "dense_threshold": site.dense_threshold,
        "layers": {
            L.name: {
                "sae_sha256": L.sae_sha256,
                "n_features": L.n_features,
                "n_neurons": L.n_neurons,
                "sae_weights": f"{export.sae_dir_path(site.model, L.name)}/{SAELENS_WEIGHTS}",
                "sae_weights_dtype": site.sae_dtype,
                "sae": L.sae_description,
            }
            for L in arts.layers
        },
        # The researcher's annotation files (site.annotations) by path, with their content hash.
        "annotations": {a.path: {"unit": a.code, "sha256": a.sha256} for a in annotations},
        # The collections (site.collections) by path: slug, page, members in order, content hash.
        "collections": {
            c.path: {
                "slug": c.slug,
                "url": urls.collection(site.model, c.slug),
                "units": [m.code for m in c.members],
                "sha256": c.sha256,
            }
            for c in collections
        },
        "urls": {
            "feature": "<model>/<layer>/f/<id>/index.html",
            "neuron": "<model>/<layer>/n/<id>/index.html",
            "class": "<model>/classes/<class-slug>/index.html",
            "collection": "<model>/collections/<slug>/index.html",
            "collections_data": "data/<model>/collections.json",
            "map": "<model>/<layer>/map/index.html",
            "features_data": "data/<model>/<layer>/features.json",
            "features_export": "data/<model>/<layer>/features.jsonl.gz",
            "sae_weights": "data/<model>/<layer>/sae/sae_weights.safetensors",
        },
    }
