"""Data and sprite sheets of the zoomable map page.

``map_data`` is written as ``<model>/<layer>/map/data.js`` (a classic script
that sets ``window.ATLAS_MAP``, so the page works from file://). Features are
stored as columns; thumbnails are packed into sprite sheets
(``map/sprites-<k>.webp``, ``SHEET_COLUMNS`` x ``SHEET_COLUMNS`` thumbnails
each, row-major by feature id) so the page loads a handful of images, not one
per feature. The activation atlas's icon sheets are copied from its stage; its
cells' typical images are the site's stored dataset images (``images/``).
Paths inside the data are relative to the map page.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from atlasgen.site.fmt import json_num

SHEET_COLUMNS = 64  # thumbnails per sheet row; a sheet holds up to 64 x 64 = 4,096 thumbnails
SPRITE_PX_MAX = 64  # thumbnails larger than this are downsized in the sheets


def write_sprite_sheets(images: dict[int, Path], n: int, px: int, folder: Path) -> list[str]:
    """Pack thumbnails (id -> image file; ids without one stay blank) into sheets; returns file names."""
    per_sheet = SHEET_COLUMNS * SHEET_COLUMNS
    names = []
    folder.mkdir(parents=True, exist_ok=True)
    for k, start in enumerate(range(0, max(n, 1), per_sheet)):
        count = min(per_sheet, n - start)
        if count <= 0:
            break
        rows = -(-count // SHEET_COLUMNS)
        cols = SHEET_COLUMNS if rows > 1 else count
        sheet = Image.new("RGB", (cols * px, rows * px), (128, 128, 128))
        for j in range(count):
            path = images.get(start + j)
            if path is None:
                continue
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (px, px):
                    im = im.resize((px, px), Image.LANCZOS)
                r, c = divmod(j, SHEET_COLUMNS)
                sheet.paste(im, (c * px, r * px))
        name = f"sprites-{k}.webp"
        sheet.save(folder / name, format="WEBP", quality=82, method=6)
        names.append(name)
    return names


def map_dead(f: dict, L) -> bool:
    """A feature the map leaves out: marked dead by the map stage, or of density 0 (an older map.json
    placed dead features too)."""
    i = int(f["id"])
    return bool(f.get("dead")) or "x" not in f or not float(L.features.density[i]) > 0


ATLAS_EXAMPLES = 6  # seventh field of an atlas cell: the dataset indices of its typical images


def atlas_example_indices(L) -> list[int]:
    """The dataset indices of every activation-atlas cell's typical images (atlas.json), sorted."""
    return sorted(
        {
            int(i)
            for g in L.atlas.get("grids") or []
            for c in g["cells"]
            if len(c) > ATLAS_EXAMPLES
            for i in c[ATLAS_EXAMPLES]
            if int(i) >= 0
        }
    )


def atlas_grids(L, atlas_sheets: list[str], image_url=None) -> tuple[list[dict], list[str]]:
    """The atlas's grids as map.js draws them, and the image paths their cells point to: each cell
    [gx, gy, count, top class, share, [[class, share], ...], [image, ...]] with its typical images as
    positions in that list (one entry per distinct image, in dataset order). ``image_url(index)`` gives
    a dataset image's path relative to the map page; without it cells carry no images."""
    images = atlas_example_indices(L) if image_url else []
    slot = {i: n for n, i in enumerate(images)}
    grids = []
    for g, sheet in zip(L.atlas["grids"], atlas_sheets):
        cells = []
        for c in g["cells"]:
            shown = c[ATLAS_EXAMPLES] if len(c) > ATLAS_EXAMPLES else []
            cells.append(list(c[:ATLAS_EXAMPLES]) + [[slot[int(i)] for i in shown if int(i) in slot]])
        grids.append(
            {
                "size": g["size"],
                "icon": g["icon_size"],
                "columns": g["columns"],
                "sheet": sheet,
                "cells": cells,
            }
        )
    return grids, [image_url(i) for i in images]


def map_data(
    ix,
    sheets: list[str],
    sprite_px: int,
    class_names: list[str],
    class_hrefs: list[str],
    atlas_sheets: list[str],
    image_url=None,
) -> dict:
    """Everything map.js draws: the live features (columns; dead ones are left out), cluster levels,
    sprites, the activation atlas (its cells' typical images through ``image_url``, see
    :func:`atlas_grids`)."""
    L = ix.layer
    ex = L.features
    feats = sorted((f for f in L.map.get("features", []) if not map_dead(f, L)), key=lambda f: int(f["id"]))
    levels = L.map.get("levels") or []
    # Cluster ids -> position in each level's list, per feature.
    pos = [{cl["id"]: n for n, cl in enumerate(lvl)} for lvl in levels]
    cols = {
        "id": [],
        "x": [],
        "y": [],
        "label": [],
        "density": [],
        "max": [],
        "top": [],
        "thumb": [],
        "cluster": [[] for _ in levels],
    }
    for f in feats:
        i = int(f["id"])
        cols["id"].append(i)
        cols["x"].append(json_num(f["x"], 5))
        cols["y"].append(json_num(f["y"], 5))
        cols["label"].append(ix.labels[i])
        cols["density"].append(json_num(ex.density[i], 4))
        cols["max"].append(json_num(ex.max_act[i], 4))
        cols["top"].append(ix.top_class_text(ex, i))
        cols["thumb"].append(1 if i in ix.thumb["f"] else 0)
        cl = f.get("clusters") or []
        for lvl in range(len(levels)):
            cols["cluster"][lvl].append(pos[lvl].get(cl[lvl], -1) if lvl < len(cl) else -1)
    out_levels = []
    for lvl in levels:
        out_levels.append(
            [
                {
                    "name": cl.get("name") or f"cluster {cl['id']}",
                    "x": json_num(cl["x"], 5),
                    "y": json_num(cl["y"], 5),
                    "size": int(cl.get("size", len(cl.get("members", [])))),
                    "rep": int(cl.get("representative", (cl.get("members") or [-1])[0])),
                }
                for cl in lvl
            ]
        )
    atlas = None
    if L.atlas.get("grids"):
        grids, images = atlas_grids(L, atlas_sheets, image_url)
        atlas = {
            "objective": L.atlas.get("objective", ""),
            "n_points": L.atlas.get("n_points", 0),
            "grids": grids,
            "images": images,
        }
    return {
        "layer": L.name,
        "n": len(feats),
        "n_dead": len(L.map.get("features", [])) - len(feats),
        "features": cols,
        "levels": out_levels,
        "sprites": {
            "px": sprite_px,
            "columns": SHEET_COLUMNS,
            "per_sheet": SHEET_COLUMNS * SHEET_COLUMNS,
            "sheets": sheets,
        },
        "feature_href": "../f/{id}/index.html",
        "classes": class_names,
        "class_hrefs": class_hrefs,
        "atlas": atlas,
    }


def evaluation_rows(L) -> list[dict]:
    """Purity / ARI of the top-level clusters against the superclasses, for the map page."""
    ev = L.map.get("evaluation") or {}
    if "purity" not in ev:
        return []
    return [
        {"name": "purity", "value": f"{ev['purity']:.3f}"},
        {"name": "adjusted Rand index", "value": f"{ev['adjusted_rand_index']:.3f}"},
        {"name": "superclasses / clusters", "value": f"{ev['n_reference_groups']} / {ev['n_clusters']}"},
    ]


def render_layer_map(out_dir: Path, site, ix, dataset, images=None) -> dict:
    """Write the layer's sprite sheets and atlas icon sheets under map/; return map_data for data.js.
    ``images`` (:class:`atlasgen.site.images.DatasetImages`) gives the atlas cells' typical images."""
    import shutil

    from atlasgen.site import urls

    L = ix.layer
    folder = Path(out_dir) / site.model / L.name / "map"
    fv = L.featurevis
    sources = {}
    for i in ix.thumb["f"]:
        p = fv.path("features_thumb", i) or fv.path("features", i)
        if p is not None:
            sources[i] = p
    px = 0
    if sources:
        with Image.open(sources[min(sources)]) as im:
            px = min(SPRITE_PX_MAX, im.size[0])
    sheets = write_sprite_sheets(sources, L.n_features, px, folder) if px else []
    atlas_sheets = []
    for g in L.atlas.get("grids") or []:
        name = f"atlas-{int(g['size'])}.webp"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(L.atlas_dir / g["sheet"], folder / name)
        atlas_sheets.append(name)
    prefix = urls.root_prefix(urls.layer_map(site.model, L.name))
    class_hrefs = [prefix + urls.class_page(site.model, s) for s in dataset.class_slugs]
    image_url = (lambda i: prefix + images.url(i)) if images is not None else None
    return map_data(ix, sheets, px, list(dataset.class_names), class_hrefs, atlas_sheets, image_url)
