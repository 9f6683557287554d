"""The try page (``<model>/try/index.html``): a reader's own image through the model and an SAE,
in the browser, offline.

The tryimage stage exported each layer's graph (``atlasgen.onnx_graphs``); this module writes
what the page needs, every file a classic script (a page opened from ``file://`` may not fetch
files, import modules by URL or start workers from files):

- ``static/vendor/onnxruntime-web/``: the vendored runtime's classic bundle ``ort.wasm.min.js`` and its
  licence, its Emscripten loader as a string (``ort-glue.js``, ``window.ATLAS_ORT_GLUE``) and its
  ``.wasm`` gzipped, in base64 (``ort-wasm.js``, ``window.ATLAS_ORT_WASM_GZ``: a quarter of the
  plain base64, so the page parses 5 MB of script instead of 20; the page inflates it with the
  browser's ``DecompressionStream``);
- ``<model>/try/<layer>/graph.js``: the layer's ONNX graph in base64
  (``window.ATLAS_TRY_GRAPHS[layer]``), loaded when the reader picks the layer;
- ``<model>/try/<layer>/units.js``: per feature and neuron what a result row shows (label,
  thumbnail, dataset maximum), the band edges, the check's figures (``window.ATLAS_TRY_UNITS[layer]``);
- ``<model>/try/images/<name>.js`` (``site.try_dataset_images``): each dataset image a unit page
  offers to try, the bytes of its ``images/<name>.webp`` as a ``data:`` URL
  (``window.ATLAS_TRY_IMAGES["images/<name>.webp"]``). From ``file://`` a canvas that draws another
  file's image is tainted and cannot be read, a ``data:`` URL's image can; over HTTP the page reads
  ``images/<name>.webp`` itself and never loads these.

``static/try.js`` reads them, resizes and crops the reader's image as the dataset stage does
(PIL's bicubic resampling, reimplemented exactly), runs the graph and draws the results.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atlasgen.site import urls
from atlasgen.site.context import base_context, crumbs
from atlasgen.site.fmt import dumps, js_global
from atlasgen.site.images import heat_palette
from atlasgen.site.resources import resource_dir

VENDOR = "vendor/onnxruntime-web"  # under static/ of the sources; never copied as it is
RUNTIME = "static/vendor/onnxruntime-web"  # in the site
RUNTIME_FILES = ("ort.wasm.min.js", "ort-glue.js", "ort-wasm.js")  # loaded in this order
N_PREDICTIONS = 5


@dataclass
class TryArtifact:
    """The tryimage stage's artifact: its settings and, per layer, the graph file and its check."""

    folder: Path
    info: dict
    checks: dict[str, dict]

    def graph_path(self, layer: str) -> Path:
        return self.folder / layer / "graph.onnx"


def load_try(folder: Path | None) -> TryArtifact | None:
    """The artifact, or None when there is none or the stage was skipped (try_image.enabled: false)."""
    if folder is None or not (Path(folder) / "try.json").is_file():
        return None
    folder = Path(folder)
    info = json.loads((folder / "try.json").read_text(encoding="utf-8"))
    checks = {
        layer: json.loads((folder / layer / "check.json").read_text(encoding="utf-8"))
        for layer in info["layers"]
    }
    return TryArtifact(folder, info, checks)


def mark_layers(indexes: dict, art: TryArtifact | None) -> None:
    """Tell each layer's index whether the try page runs it (its unit pages then link there)."""
    for name, ix in indexes.items():
        ix.has_try = art is not None and name in art.checks


def dataset_image_indices(arts, art: TryArtifact | None) -> list[int]:
    """The dataset images the unit pages of the try page's layers show (top examples and bands), in
    index order: those a reader can open in the try page."""
    if art is None:
        return []
    return sorted(
        {
            int(i)
            for L in arts.layers
            if L.name in art.checks
            for ex in (L.features, L.neurons)
            for shown in (ex.top_idx, ex.band_idx)
            if shown is not None
            for i in shown.ravel().tolist()
            if int(i) >= 0
        }
    )


def image_script_path(m: str, image_url: str) -> str:
    """``<model>/try/images/<name>.js`` for the site image ``images/<name>.webp``."""
    return f"{m}/try/{image_url.rsplit('.', 1)[0]}.js"


def image_script(image_url: str, data: bytes) -> str:
    return (
        "(window.ATLAS_TRY_IMAGES = window.ATLAS_TRY_IMAGES || {})"
        f'[{dumps(image_url)}] = "data:image/webp;base64,{_b64(data)}";\n'
    )


def image_script_bytes(image_url: str, n_bytes: int) -> int:
    """Size of :func:`image_script` for an image of ``n_bytes`` (the size projection)."""
    return len(image_script(image_url, b"")) + 4 * ((n_bytes + 2) // 3)


def write_dataset_images(w, site, images, indices: list[int]) -> None:
    """Each dataset image of ``indices`` as ``<model>/try/images/<name>.js`` (read from the written site)."""
    for url in sorted({images.url(i) for i in indices}):
        w.text(image_script_path(site.model, url), image_script(url, (images.out_dir / url).read_bytes()))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_runtime(w) -> None:
    """The vendored onnxruntime-web, as classic scripts."""
    source = resource_dir("static") / VENDOR
    w.copy(source / "ort.wasm.min.js", f"{RUNTIME}/ort.wasm.min.js")
    w.copy(source / "LICENSE", f"{RUNTIME}/LICENSE")
    glue = (source / "ort-wasm-simd-threaded.mjs").read_text(encoding="utf-8")
    w.text(f"{RUNTIME}/ort-glue.js", js_global("ATLAS_ORT_GLUE", glue))
    wasm = gzip.compress((source / "ort-wasm-simd-threaded.wasm").read_bytes(), compresslevel=9, mtime=0)
    w.text(f"{RUNTIME}/ort-wasm.js", f'window.ATLAS_ORT_WASM_GZ = "{_b64(wasm)}";\n')


def _num(v: float) -> float:
    return float(f"{float(v):.6g}")


def units_data(site, ix, art: TryArtifact) -> dict:
    """units.js of one layer: what each result row shows, indexed by unit id."""
    L = ix.layer
    check = art.checks[L.name]
    out = {
        "layer": L.name,
        "dtype": check["dtype"],
        "tolerance": check["tolerance"],
        "errors": check["checks"][check["dtype"]],
        "grid": check["grid"],
        "bands": [_num(e) for e in (L.features.band_edges if L.features.band_edges is not None else [])],
    }
    for kind, key, ex in (("f", "features", L.features), ("n", "neurons", L.neurons)):
        out[key] = {
            "max": [_num(v) for v in np.asarray(ex.max_act, dtype=np.float64)],
            "thumb": [ix.thumb[kind].get(i) for i in range(ex.n_units)],
            "label": [
                (ix.labels[i] if kind == "f" else "") or ix.top_class_text(ex, i) for i in range(ex.n_units)
            ],
        }
    return out


def graph_script(layer: str, art: TryArtifact) -> str:
    data = art.graph_path(layer).read_bytes()
    return f'(window.ATLAS_TRY_GRAPHS = window.ATLAS_TRY_GRAPHS || {{}})[{dumps(layer)}] = "{_b64(data)}";\n'


def write_try(w, site, arts, indexes, art: TryArtifact) -> None:
    """Every file of the try page but its HTML (the renderer and the size projection both call it)."""
    write_runtime(w)
    for L in arts.layers:
        if L.name not in art.checks:
            continue
        w.text(urls.try_layer_file(site.model, L.name, "graph.js"), graph_script(L.name, art))
        w.text(
            urls.try_layer_file(site.model, L.name, "units.js"),
            "(window.ATLAS_TRY_UNITS = window.ATLAS_TRY_UNITS || {})"
            f"[{dumps(L.name)}] = {dumps(units_data(site, indexes[L.name], art))};\n",
        )


def game_links(site, indexes) -> dict[str, dict]:
    """Per layer with a guess-the-image page: its URL and how many features a round shows (the try
    page adds the reader's images to that game, ranked as ``ratings_pages.game_data`` ranks)."""
    from atlasgen.site.ratings_pages import game_features

    out = {}
    for name, ix in indexes.items():
        lr = getattr(ix, "ratings", None)
        if lr is not None and lr.game is not None:
            out[name] = {"href": urls.game_url(site.model, name), "features": game_features(lr)}
    return out


def page_config(site, arts, art: TryArtifact, dataset_images: bool = True, games: dict | None = None) -> dict:
    """window.ATLAS_TRY: what static/try.js needs before any layer is loaded."""
    m = site.model
    layers = [L.name for L in arts.layers if L.name in art.checks]
    ds = arts.dataset
    return {
        "model": m,
        "layers": layers,
        "layer": layers[-1],
        "image_size": int(art.info["image_size"]),
        "crop_fraction": float(art.info["crop_fraction"]),
        "logits": bool(art.info["logits"]),
        "top": int(art.info["top"]),
        "predictions": N_PREDICTIONS,
        "runtime": [f"{RUNTIME}/{name}" for name in RUNTIME_FILES],
        "files": {
            layer: {
                "graph": urls.try_layer_file(m, layer, "graph.js"),
                "units": urls.try_layer_file(m, layer, "units.js"),
                "bytes": int(art.checks[layer]["bytes"]),
            }
            for layer in layers
        },
        "unit_url": urls.unit(m, "LAYER", "KIND", 0).replace("/0/", "/ID/"),
        "classes": [
            {"name": name, "href": urls.class_page(m, slug)}
            for name, slug in zip(ds.class_names, ds.class_slugs)
        ],
        "palette": heat_palette().tolist(),
        # from file://, dataset images are read from <model>/try/images/<name>.js (write_dataset_images)
        "dataset_images": f"{m}/try/" if dataset_images else None,
        "game": games or {},
    }


def try_page(
    site, arts, art: TryArtifact, dataset_images: bool = True, games: dict | None = None
) -> tuple[str, str, dict]:
    m = site.model
    path = urls.try_page(m)
    config = page_config(site, arts, art, dataset_images, games)
    ctx = base_context(
        site,
        path,
        f"{m} · try your own image",
        crumbs(site, (m, urls.model(m)), ("try your own image", None)),
        config_json=dumps(config).replace("</", "<\\/"),
        layers=config["layers"],
        layer=config["layer"],
        image_size=config["image_size"],
        crop_fraction=config["crop_fraction"],
        short_side=f"{config['image_size'] / config['crop_fraction']:.4g}",
        logits=config["logits"],
        graph_mb={layer: f"{f['bytes'] / 1e6:.1f}" for layer, f in config["files"].items()},
        scripts=["static/try.js"],
        body_class="try",
    )
    return path, "try.html", ctx
