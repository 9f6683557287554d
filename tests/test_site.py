"""Site renderer: real files from fake artifacts (docs/artifacts.md), real Chromium.

``make_fake_artifacts`` writes every artifact folder the renderer reads, with
numpy and Pillow only, at any size (the benchmark and screenshots reuse it).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from conftest import serve_folder
from PIL import Image, ImageDraw

from atlasgen.geometry import similar_features
from atlasgen.site.build import SiteSummary, render_site
from atlasgen.site.resources import resource_dir
from atlasgen.unitlabels import FLAG_NAMES

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
MODEL = "demonet"
LAYERS = ["mixed4a", "mixed5b"]
STAGES = ("dataset", "model", "sae", "featurevis", "examples", "circuits", "map", "similar")

COLOURS = {
    "red": (214, 54, 44),
    "blue": (40, 90, 200),
    "green": (50, 160, 70),
    "yellow": (235, 200, 40),
    "purple": (130, 60, 170),
    "orange": (240, 130, 30),
    "teal": (30, 150, 150),
    "pink": (230, 110, 170),
}
SHAPES = ["circle", "square", "triangle", "stripe", "ring", "cross"]
TEXTURES = ["smooth", "striped", "dotted", "checkered", "wavy", "grainy"]


# ----------------------------------------------------------------------------- fake artifacts


def _draw_image(rng: np.random.Generator, size: int, colour: tuple, shape: str) -> np.ndarray:
    bg = tuple(int(v) for v in rng.integers(170, 250, 3))
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    s = size
    cx, cy = (int(v) for v in rng.integers(s // 3, 2 * s // 3, 2))
    r = int(rng.integers(s // 6, s // 3))
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=colour)
    elif shape == "square":
        d.rectangle(box, fill=colour)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif shape == "stripe":
        for x in range(0, s, max(s // 8, 2)):
            d.rectangle((x, 0, x + max(s // 16, 1), s), fill=colour)
    elif shape == "ring":
        d.ellipse(box, outline=colour, width=max(s // 12, 1))
    else:
        w = max(s // 10, 1)
        d.rectangle((cx - w, cy - r, cx + w, cy + r), fill=colour)
        d.rectangle((cx - r, cy - w, cx + r, cy + w), fill=colour)
    noise = rng.integers(-12, 13, (s, s, 3))
    return np.clip(np.asarray(im, dtype=np.int64) + noise, 0, 255).astype(np.uint8)


def _vis_image(rng: np.random.Generator, size: int, seed_colour: tuple) -> Image.Image:
    """A feature-visualisation-looking texture: coloured sinusoid interference."""
    y, x = np.mgrid[0:size, 0:size] / size
    f1, f2, phase = rng.uniform(2, 9), rng.uniform(2, 9), rng.uniform(0, 6.28)
    a = rng.uniform(0, 3.14)
    wave = np.sin(2 * np.pi * (f1 * (x * np.cos(a) + y * np.sin(a))) + phase)
    wave2 = np.sin(2 * np.pi * f2 * (x * np.sin(a) - y * np.cos(a)))
    t = (wave * wave2 + 1) / 2
    c1 = np.array(seed_colour, dtype=np.float64)
    c2 = 255 - c1
    rgb = t[..., None] * c1 + (1 - t[..., None]) * c2
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")


def _write_webp(im: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "WEBP", quality=80)


def _band_examples(rng, max_act, n_images, grid, r):
    """Band arrays for units with ``max_act``: 6 bands down from the max, up to ``r`` images each."""
    U, nb = len(max_act), 6
    edges = np.array([1.0, 0.9, 0.7, 0.5, 0.3, 0.1, 0.0], dtype=np.float32)
    count = rng.integers(0, 4 * r, size=(U, nb))
    count[max_act <= 0] = 0
    shown = np.minimum(count, r)
    idx = np.where(
        np.arange(r)[None, None, :] < shown[..., None], rng.integers(0, n_images, size=(U, nb, r)), -1
    )
    rel = edges[None, 1:, None] + rng.uniform(0, 1, size=(U, nb, r)) * (edges[:-1] - edges[1:])[None, :, None]
    val = np.where(idx >= 0, rel * max_act[:, None, None], 0).astype(np.float32)
    pos = rng.integers(0, grid, size=(U, nb, r, 2)).astype(np.int16)
    yy, xx = np.mgrid[0:grid, 0:grid]
    d2 = (yy[None, None, None] - pos[..., 0, None, None]) ** 2 + (
        xx[None, None, None] - pos[..., 1, None, None]
    ) ** 2
    maps = (val[..., None, None] * np.exp(-d2 / (0.35 * grid))).astype(np.float16)
    return dict(
        band_idx=idx.astype(np.int64),
        band_val=val,
        band_pos=pos,
        band_maps=maps,
        band_count=count,
        band_edges=edges,
        band_edges_rel=np.broadcast_to(edges, (U, nb + 1)).copy(),
    )


def _unit_examples(rng, n_units, n_images, labels, k, grid, dead=(), band_samples=0):
    """examples/L/*.npz arrays for ``n_units`` units (docs/artifacts.md); bands when ``band_samples`` > 0."""
    B = 20
    top_idx = np.full((n_units, k), -1, dtype=np.int64)
    top_val = np.zeros((n_units, k), dtype=np.float32)
    top_pos = np.zeros((n_units, k, 2), dtype=np.int16)
    top_maps = np.zeros((n_units, k, grid, grid), dtype=np.float16)
    max_act = np.zeros(n_units, dtype=np.float32)
    density = np.zeros(n_units, dtype=np.float32)
    mean_act = np.zeros(n_units, dtype=np.float32)
    hist = np.zeros((n_units, B), dtype=np.int64)
    top_classes = np.full((n_units, 3), -1, dtype=np.int64)
    top_class_weights = np.zeros((n_units, 3), dtype=np.float32)
    label_entropy = np.zeros(n_units, dtype=np.float32)
    for u in range(n_units):
        if u in dead:
            continue
        n_fire = (
            int(rng.integers(max(2, k // 2), k + 1)) if u % 5 else k
        )  # some units fire on fewer than k images
        idx = rng.choice(n_images, size=n_fire, replace=False)
        vals = np.sort(rng.uniform(0.5, 10.0, n_fire).astype(np.float32))[::-1]
        top_idx[u, :n_fire] = idx
        top_val[u, :n_fire] = vals
        yy, xx = np.mgrid[0:grid, 0:grid]
        for j in range(n_fire):
            py, px = (int(v) for v in rng.integers(0, grid, 2))
            top_pos[u, j] = (py, px)
            bump = np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (0.35 * grid))
            top_maps[u, j] = (vals[j] * bump).astype(np.float16)
        max_act[u] = vals[0]
        density[u] = float(rng.uniform(0.001, 0.6)) if u % 7 else float(rng.uniform(0.00005, 0.0009))
        mean_act[u] = float(vals.mean()) * 0.5
        hist[u] = np.sort(rng.integers(0, n_images, B))[::-1]
        cls = Counter(int(labels[i]) for i in idx).most_common(3)
        total = sum(c for _, c in cls)
        for j, (c, count) in enumerate(cls):
            top_classes[u, j] = c
            top_class_weights[u, j] = count / total
        p = top_class_weights[u][top_class_weights[u] > 0]
        label_entropy[u] = float(-(p * np.log(p)).sum())
    bands = _band_examples(rng, max_act, n_images, grid, band_samples) if band_samples else {}
    return dict(
        top_idx=top_idx,
        top_val=top_val,
        top_pos=top_pos,
        top_maps=top_maps,
        max_act=max_act,
        density=density,
        mean_act=mean_act,
        hist=hist,
        hist_edges=np.logspace(-3, 0, B + 1).astype(np.float32),
        top_classes=top_classes,
        top_class_weights=top_class_weights,
        label_entropy=label_entropy,
        **bands,
        **_fake_flags(density, top_classes, top_class_weights, label_entropy),
    )


def fake_flags(u: int, density: float) -> list[str]:
    """The flags the fake artifacts give unit ``u`` (docs/artifacts.md, flag_*)."""
    if density <= 0:
        return ["dead"]
    return [
        name
        for name, on in (
            ("dense", density > 0.1),
            ("low_confidence", u % 3 == 0),
            ("polysemantic", u % 4 == 1),
        )
        if on
    ]


def _fake_flags(density, top_classes, top_class_weights, label_entropy) -> dict:
    """Whole-range label fields and flags (atlasgen.unitlabels): the top examples' classes stand in for
    both."""
    U = len(density)
    flags = [fake_flags(u, float(density[u])) for u in range(U)]
    return {
        **{
            f"flag_{name}": np.array([name in f for f in flags])
            for name in ("dead", "dense", "low_confidence", "polysemantic")
        },
        "topk_classes": top_classes,
        "topk_class_weights": top_class_weights,
        "topk_label_entropy": label_entropy,
        "label_entropy_normalised": (label_entropy / np.log(6)).astype(np.float32),
        "dense_threshold": np.float32(0.1),
        "label_min_images": np.int64(20),
        "label_max_entropy": np.float32(0.6),
    }


def make_fake_artifacts(
    root: Path,
    *,
    n_classes: int = 6,
    n_features: int = 20,
    n_neurons: int = 8,
    n_images: int = 30,
    image_size: int = 32,
    layers=tuple(LAYERS),
    k: int = 6,
    grid: int = 4,
    vis_size: int = 64,
    thumb_size: int = 32,
    seed: int = 0,
    band_samples: int = 0,
    class_names: list[str] | None = None,
) -> dict[str, Path]:
    """Write fake artifacts for every stage under ``root``; return the stage -> folder mapping.

    ``band_samples`` > 0 adds examples across the activation range (6 bands, up to that many images each).
    ``class_names`` (one per class) replaces the demo-like colour-and-shape names, and the classes then
    have no facets, as a real dataset's (benchmarks/bench_render.py uses ImageNet's).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    art = {stage: root / stage / "key0" for stage in STAGES}
    for folder in art.values():
        folder.mkdir(parents=True)

    # dataset/
    colour_names = list(COLOURS)
    classes = []
    for c in range(n_classes):
        colour, shape = colour_names[c % len(colour_names)], SHAPES[c % len(SHAPES)]
        name = f"{colour.title()} {shape}" if c % 3 == 0 else f"{colour} {shape}"  # some capitals for slugs
        if c == 1:
            name = "blue/square (large)"
        if class_names is not None:
            name = class_names[c]
        classes.append(
            {
                "id": c,
                "name": name,
                "superclass": "warm" if colour in ("red", "orange", "yellow", "pink") else "cool",
                "facets": [f"{name} on its own", f"{name} in a crowd"] if class_names is None else [],
            }
        )
    labels = np.arange(n_images, dtype=np.int64) % n_classes
    split = (np.arange(n_images) % 5 == 4).astype(np.uint8)
    facets = (np.arange(n_images) // n_classes % 2).astype(np.int64)
    images = np.stack(
        [
            _draw_image(
                rng,
                image_size,
                COLOURS[colour_names[int(labels[i]) % len(colour_names)]],
                SHAPES[int(labels[i]) % len(SHAPES)],
            )
            for i in range(n_images)
        ]
    )
    images[n_classes] = images[0]  # a duplicate image (same class): stored once in the site
    ds = art["dataset"]
    (ds / "dataset.json").write_text(
        json.dumps(
            {
                "source": "demo",
                "identity": "demo-shapes:seed0",
                "image_size": image_size,
                "classes": classes,
                "superclasses": ["warm", "cool"],
                "n_images": n_images,
                "n_train": int((split == 0).sum()),
                "n_heldout": int((split == 1).sum()),
            }
        )
    )
    np.save(ds / "labels.npy", labels)
    np.save(ds / "split.npy", split)
    if class_names is None:
        np.save(ds / "facets.npy", facets)
    np.save(ds / "images.npy", images)

    # model/
    grids = {name: grid for name in layers}
    (art["model"] / "model.pt").write_bytes(b"fake state dict")
    (art["model"] / "model.json").write_text(
        json.dumps(
            {
                "name": MODEL,
                "source": "demo",
                "layers": {name: [n_neurons, grids[name], grids[name]] for name in layers},
                "n_classes": n_classes,
                "heldout_accuracy": 0.8125,
                "chance_accuracy": 1 / n_classes,
                "train_seconds": 12.5,
            }
        )
    )

    for li, name in enumerate(layers):
        F, C = n_features, n_neurons
        # sae/
        sae = art["sae"] / name
        sae.mkdir()
        W_dec = rng.normal(size=(F, C)).astype(np.float32)
        (art["similar"] / name).mkdir()
        ids, cos = similar_features(W_dec)
        np.savez(art["similar"] / name / "similar.npz", ids=ids, cos=cos)
        np.savez(
            sae / "sae.npz",
            W_enc=W_dec.T.copy(),
            b_enc=np.zeros(F, np.float32),
            W_dec=W_dec,
            b_dec=np.zeros(C, np.float32),
            threshold=np.float32(0.0),
        )
        (sae / "cfg.json").write_text(
            json.dumps({"architecture": "batchtopk", "d_in": C, "d_sae": F, "k": 4})
        )
        (sae / "metrics.json").write_text(
            json.dumps({"fvu": 0.123456, "explained_variance": 0.876544, "l0": 4.0, "dead_fraction": 1 / F})
        )
        # featurevis/ (one feature and one neuron lack a thumbnail; the last feature has no vis at all)
        fv = art["featurevis"] / name
        for kind, count in (("features", F), ("neurons", C)):
            for i in range(count):
                if kind == "features" and i == F - 1:
                    continue
                colour = COLOURS[colour_names[(i + li) % len(colour_names)]]
                im = _vis_image(rng, vis_size, colour)
                _write_webp(im, fv / kind / f"{i}.webp")
                if i != 2:
                    _write_webp(
                        im.resize((thumb_size, thumb_size), Image.Resampling.LANCZOS),
                        fv / f"{kind}_thumb" / f"{i}.webp",
                    )
        (fv / "meta.json").write_text(json.dumps({"steps": 64}))
        # examples/ (feature 1 is dead)
        ex = art["examples"] / name
        ex.mkdir()
        np.savez(
            ex / "features.npz",
            **_unit_examples(rng, F, n_images, labels, k, grid, dead={1}, band_samples=band_samples),
        )
        np.savez(
            ex / "neurons.npz", **_unit_examples(rng, C, n_images, labels, k, grid, band_samples=band_samples)
        )
        # circuits/
        cc = art["circuits"] / name
        cc.mkdir()
        np.savez(
            cc / "class_weights.npz",
            features=rng.normal(size=(F, n_classes)).astype(np.float32),
            neurons=rng.normal(size=(C, n_classes)).astype(np.float32),
        )
        (cc / "circuits.json").write_text(json.dumps({"exact": True, "method": "W_fc . W_dec^T"}))
        # map/ (2 levels: 3 top clusters, 6 sub-clusters)
        mp = art["map"] / name
        mp.mkdir()
        n_top = 3
        centres = rng.uniform(0.2, 0.8, (n_top, 2))
        feats = []
        for i in range(F):
            top = i % n_top
            xy = np.clip(centres[top] + rng.normal(scale=0.08, size=2), 0, 1)
            label = fake_label(i, li)
            feats.append(
                {
                    "id": i,
                    "x": float(xy[0]),
                    "y": float(xy[1]),
                    "label": label,
                    "clusters": [top, top * 2 + (i // n_top) % 2],
                }
            )
        level0 = [
            {
                "id": t,
                "name": f"{TEXTURES[t]} things",
                "x": float(centres[t][0]),
                "y": float(centres[t][1]),
                "size": sum(1 for f in feats if f["clusters"][0] == t),
                "members": [f["id"] for f in feats if f["clusters"][0] == t],
            }
            for t in range(n_top)
        ]
        level1 = []
        for s in range(2 * n_top):
            members = [f for f in feats if f["clusters"][1] == s]
            if members:
                level1.append(
                    {
                        "id": s,
                        "name": f"group {s}",
                        "x": float(np.mean([f["x"] for f in members])),
                        "y": float(np.mean([f["y"] for f in members])),
                        "size": len(members),
                        "members": [f["id"] for f in members],
                    }
                )
        (mp / "map.json").write_text(json.dumps({"features": feats, "levels": [level0, level1]}))
    return art


def fake_label(i: int, layer_index: int = 0) -> str:
    colour = list(COLOURS)[(i * 3 + layer_index) % len(COLOURS)]
    return f"{TEXTURES[i % len(TEXTURES)]} {colour} {SHAPES[(i // 2) % len(SHAPES)]} #{i}"


def render(art: dict[str, Path], out: Path, **overrides) -> SiteSummary:
    out.mkdir(parents=True, exist_ok=True)
    kwargs = dict(
        artifacts=art,
        layers=list(LAYERS),
        model_name=MODEL,
        title="Demo Atlas",
        date="2026-11-21",
        base_url="https://example.github.io/atlas/",
        out_dir=out,
    )
    kwargs.update(overrides)
    return render_site(**kwargs)


# ----------------------------------------------------------------------------- helpers


class _Links(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.links.append((tag, value))


def html_links(path: Path) -> list[tuple[str, str]]:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.links


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def contract_urls(art, n_features=20, n_neurons=8) -> list[str]:
    ds = json.loads((art["dataset"] / "dataset.json").read_text())
    from atlasgen.site.artifacts import class_slugs

    slugs = class_slugs([c["name"] for c in ds["classes"]])
    out = ["index.html", "manifest.json", "search_index.js", f"{MODEL}/index.html"]
    for layer in LAYERS:
        out += [
            f"{MODEL}/{layer}/index.html",
            f"{MODEL}/{layer}/map/index.html",
            f"data/{MODEL}/{layer}/features.json",
        ]
        out += [f"{MODEL}/{layer}/f/{i}/index.html" for i in range(n_features)]
        out += [f"{MODEL}/{layer}/n/{i}/index.html" for i in range(n_neurons)]
    out += [f"{MODEL}/classes/{s}/index.html" for s in slugs]
    return out


@pytest.fixture(scope="module")
def fake_art(tmp_path_factory) -> dict[str, Path]:
    return make_fake_artifacts(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def site(fake_art, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    calls = []
    summary = render(fake_art, out, progress=lambda done, total: calls.append((done, total)))
    assert summary.pages == len(calls) == calls[-1][0] == calls[-1][1]
    assert summary.files == sum(1 for p in out.rglob("*") if p.is_file())
    assert summary.bytes == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return out


# ----------------------------------------------------------------------------- file tests


def test_resource_dir_finds_templates_and_static():
    assert (resource_dir("templates") / "base.html").is_file()
    assert (resource_dir("static") / "atlas.css").is_file()
    with pytest.raises(FileNotFoundError):
        resource_dir("no-such-resource")


def test_every_contract_url_exists(site, fake_art):
    missing = [u for u in contract_urls(fake_art) if not (site / u).is_file()]
    assert not missing
    assert (site / "static" / "atlas.css").is_file() and (site / "static" / "atlas.js").is_file()
    # Class slugs are lowercase [a-z0-9-].
    for folder in (site / MODEL / "classes").iterdir():
        assert re.fullmatch(r"[a-z0-9-]+", folder.name), folder.name
    assert (site / MODEL / "classes" / "blue-square-large" / "index.html").is_file()


def test_internal_links_resolve_and_are_relative(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 60
    checked = 0
    for page in pages:
        if page == site / "404.html":
            # served by GitHub Pages at any depth: it links to the configured base_url (test_publish)
            continue
        for tag, link in html_links(page):
            if link.startswith("data:"):
                assert tag == "img" and link.startswith("data:image/png;base64,")
                continue
            parts = urlsplit(link)
            assert not parts.scheme and not parts.netloc, f"{page}: absolute link {link}"
            assert not link.startswith("/"), f"{page}: root-relative link {link}"
            path = unquote(parts.path)
            assert path, f"{page}: empty link {link}"
            assert not path.endswith("/"), f"{page}: link to a folder {link}"
            target = (page.parent / path).resolve()
            assert target.is_file(), f"{page}: broken link {link}"
            assert site.resolve() in target.parents, f"{page}: link leaves the site {link}"
            if (
                tag == "a"
                and target.suffix == ".html"
                and target.name not in ("glossary.html", "search.html")
            ):
                assert path.endswith("index.html"), (
                    link
                )  # glossary and search are root files: no model shadows them
            checked += 1
    assert checked > 1000


def test_rendering_twice_is_byte_identical(site, fake_art, tmp_path):
    again = tmp_path / "again"
    render(fake_art, again, progress=None)
    first, second = tree_bytes(site), tree_bytes(again)
    assert sorted(first) == sorted(second)
    different = [name for name in first if first[name] != second[name]]
    assert not different


def test_no_timestamps_only_the_configured_date(site):
    for page in sorted(site.rglob("*")):
        if page.suffix in (".html", ".json", ".js"):
            text = page.read_text(encoding="utf-8")
            dates = set(re.findall(r"\b(?:19|20)\d\d-\d\d-\d\d\b", text))
            assert dates <= {"2026-11-21"}, (page, dates)


def test_renderer_never_imports_torch(fake_art, tmp_path):
    out = tmp_path / "site"
    out.mkdir()
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from atlasgen.site.build import render_site\n"
        "art = {k: Path(v) for k, v in json.loads(sys.argv[1]).items()}\n"
        f"render_site(artifacts=art, layers={LAYERS!r}, model_name={MODEL!r}, title='t', date='2026-11-21',\n"
        "            base_url='', out_dir=Path(sys.argv[2]))\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps({k: str(v) for k, v in fake_art.items()}), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "NO-TORCH"
    assert (out / "index.html").is_file()


def test_dataset_images_written_once_and_shared(site):
    files = sorted((site / "images").iterdir())
    assert files
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]
    assert len(set(digests)) == len(files), "two image files with the same content"
    for p, digest in zip(files, digests):
        assert re.fullmatch(r"[0-9a-f]{16}\.webp", p.name)
        assert p.name[:16] == digest[:16], "image file not named by its content hash"
        with Image.open(p) as im:
            assert im.format == "WEBP" and max(im.size) <= 96
    refs = Counter()
    for page in site.rglob("*.html"):
        for name in {Path(link).name for tag, link in html_links(page) if "images/" in link}:
            refs[name] += 1
    assert set(refs) == {p.name for p in files}, "unreferenced or missing image files"
    assert max(refs.values()) >= 3
    assert sum(1 for n in refs.values() if n >= 2) >= len(files) // 2


def test_unit_visualisations_copied_once(site, fake_art):
    layer = LAYERS[0]
    src = fake_art["featurevis"] / layer
    f0 = site / MODEL / layer / "f" / "0"
    assert (f0 / "vis.webp").read_bytes() == (src / "features" / "0.webp").read_bytes()
    assert (f0 / "thumb.webp").read_bytes() == (src / "features_thumb" / "0.webp").read_bytes()
    # No thumbnail: the grid reuses vis.webp rather than writing a copy.
    assert not (site / MODEL / layer / "f" / "2" / "thumb.webp").exists()
    assert "f/2/vis.webp" in (site / MODEL / layer / "index.html").read_text()
    # No visualisation at all: the page says so.
    last = (site / MODEL / layer / "f" / "19" / "index.html").read_text()
    assert "no visualisation" in last and 'id="vis"' not in last and "f/19/vis.webp" not in last


def test_manifest(site, fake_art):
    manifest = json.loads((site / "manifest.json").read_text())
    import atlasgen

    assert manifest["model"] == MODEL
    assert manifest["atlasgen_version"] == atlasgen.__version__
    assert manifest["date"] == "2026-11-21"
    assert manifest["dataset_identity"] == "demo-shapes:seed0"
    assert sorted(manifest["layers"]) == LAYERS
    for layer in LAYERS:
        entry = manifest["layers"][layer]
        assert (
            entry["sae_sha256"]
            == hashlib.sha256((fake_art["sae"] / layer / "sae.npz").read_bytes()).hexdigest()
        )
        assert entry["n_features"] == 20 and entry["n_neurons"] == 8
    text = (site / "manifest.json").read_text()
    assert text == json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _search_index(site: Path) -> dict:
    text = (site / "search_index.js").read_text()
    prefix = "window.ATLAS_SEARCH = "
    assert text.startswith(prefix) and text.endswith(";\n")
    return json.loads(text[len(prefix) : -2])


def test_search_index_contains_every_feature(site, fake_art):
    index = _search_index(site)
    fmt_pct = __import__("atlasgen.site.fmt").site.fmt.fmt_pct
    assert [L["name"] for L in index["layers"]] == LAYERS
    for li, L in enumerate(index["layers"]):
        density = np.load(fake_art["examples"] / L["name"] / "features.npz")["density"]
        f = L["f"]
        assert f["n"] == 20 and L["n"]["n"] == 8
        for i in range(20):
            assert (site / f"{MODEL}/{L['name']}/f/{i}/index.html").is_file()
            assert f["density"][i] == fmt_pct(density[i])
            assert f["flags"][i] == ", ".join(FLAG_NAMES[x] for x in fake_flags(i, float(density[i])))
            assert f["label"][i] == fake_label(i, li)
    assert index["annotations"] == []
    assert len(index["classes"]) == 6
    assert all((site / c[0]).is_file() for c in index["classes"])


def test_features_json_export(site):
    data = json.loads((site / f"data/{MODEL}/{LAYERS[0]}/features.json").read_text())
    rows = data["features"]
    assert [r["id"] for r in rows] == list(range(20))
    assert set(rows[0]) == {"id", "label", "density", "max_act", "mean_act", "top_classes", "flags"}
    assert rows[1]["flags"] == ["dead"]
    for r in rows:
        assert r["flags"] == [f.replace("_", "-") for f in fake_flags(r["id"], r["density"])]
    assert rows[1]["density"] == 0 and rows[1]["top_classes"] == []  # the dead feature
    assert rows[0]["label"] == fake_label(0, 0)


def test_feature_page_content(site, fake_art):
    path = site / MODEL / LAYERS[1] / "f" / "3" / "index.html"
    page = path.read_text()
    assert fake_label(3, 1) in page
    assert f"{LAYERS[1]}/f/3" in page
    links = {}
    for tag, link in html_links(path):
        links.setdefault(tag, []).append(link)
    resolved = lambda link: (path.parent / link).resolve()
    prev = [a for a in links["a"] if resolved(a) == (path.parent.parent / "2" / "index.html").resolve()]
    nxt = [a for a in links["a"] if resolved(a) == (path.parent.parent / "4" / "index.html").resolve()]
    assert prev and nxt
    assert f'rel="prev" href="{prev[0]}"' in page and f'rel="next" href="{nxt[0]}"' in page
    maps = [a for a in links["a"] if a.endswith("#f=3")]
    assert (
        maps
        and resolved(maps[0].split("#")[0]) == (site / MODEL / LAYERS[1] / "map" / "index.html").resolve()
    )
    assert "<svg" in page and "@misc{" in page
    assert f"https://example.github.io/atlas/{MODEL}/{LAYERS[1]}/f/3/index.html" in page
    assert page.count('<i style="--y:') >= 3 and 'class="examples heat-on' in page
    # Top classes it drives come from class_weights.npz.
    with np.load(fake_art["circuits"] / LAYERS[1] / "class_weights.npz") as z:
        best = int(np.argmax(z["features"][3]))
    ds = json.loads((fake_art["dataset"] / "dataset.json").read_text())
    assert ds["classes"][best]["name"] in page
    # The neuron page lists the features that load on it.
    neuron = (site / MODEL / LAYERS[1] / "n" / "0" / "index.html").read_text()
    assert "SAE features loading on this neuron" in neuron and re.search(
        r'href="\.\./\.\./f/\d+/index\.html"', neuron
    )


def test_flags_on_unit_pages_and_cards_and_not_in_citations(site, fake_art):
    """Every flag a unit has shows in its page's title area with its definition, on its layer-grid card
    (text and data-flags), and a low-confidence label says so; the citation never quotes the label."""
    from atlasgen.unitlabels import flag_definitions

    layer = LAYERS[0]
    density = np.load(fake_art["examples"] / layer / "features.npz")["density"]
    grid = (site / MODEL / layer / "index.html").read_text()
    seen = set()
    for i in range(20):
        flags = fake_flags(i, float(density[i]))
        seen.update(flags)
        page = (site / MODEL / layer / "f" / str(i) / "index.html").read_text()
        head = page[page.index('<div class="unit-head">') : page.index('<dl class="stats">')]
        for name in ("dead", "dense", "low_confidence", "polysemantic"):
            badge = f'<span class="badge flag-{name}">{FLAG_NAMES[name]}</span>'
            assert (badge in head) == (name in flags), (i, name)
        definitions = flag_definitions(
            type("Ex", (), {"dense_threshold": 0.1, "label_min_images": 20, "label_max_entropy": 0.6})()
        )
        for name in flags:
            assert definitions[name] in head
        assert ("(low-confidence label)" in head) == ("low_confidence" in flags and bool(fake_label(i, 0)))
        card = re.search(rf'<li class="card[^"]*" data-id="{i}"[^>]*>.*?</li>', grid).group(0)
        shown = [f.replace("_", "-") for f in flags]
        assert (f'data-flags="{" ".join(shown)}"' in card) == bool(flags)
        visible = [f for f in shown if f != "dead"]
        assert (f"<em>{', '.join(visible)}</em>" in card) == bool(visible)
        cite = page[page.index('<section class="cite"') :]
        label = fake_label(i, 0)
        assert not label or label not in cite
    assert seen == {"dead", "dense", "low_confidence", "polysemantic"}  # the fake layer has every flag


def test_render_rejects_bad_names(fake_art, tmp_path):
    with pytest.raises(ValueError):
        render(fake_art, tmp_path / "a", model_name="demo net")
    with pytest.raises(FileExistsError):
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "x").write_text("x")
        render(fake_art, tmp_path / "b")


# ----------------------------------------------------------------------------- browser tests

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"Chromium not installed at {CHROMIUM}"
)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def http_root(site):
    # Serve the site's parent folder so the atlas lives under a sub-path, as on GitHub Pages (/<repo>/).
    with serve_folder(site.parent) as port:
        yield f"http://127.0.0.1:{port}/{site.name}/"


@pytest.fixture(params=["http", "file"])
def base(request, site):
    if request.param == "http":
        return request.getfixturevalue("http_root")
    return site.resolve().as_uri() + "/"


class _Page:
    """A fresh browser context + page that records console errors and failed requests."""

    def __init__(self, browser, **context_args):
        self.context = browser.new_context(**context_args)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on(
            "console",
            lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        # A load the page's own navigation cancels (thumbnails still loading when an arrow key
        # opens the next page) is not a failure of the site.
        self.page.on(
            "requestfailed",
            lambda r: (
                None
                if "ERR_ABORTED" in (r.failure or "")
                else self.errors.append(f"requestfailed: {r.url} ({r.failure})")
            ),
        )

    def close(self):
        self.context.close()


@pytest.fixture
def tab(browser):
    t = _Page(browser)
    yield t
    t.close()


def _all_images_loaded(page) -> bool:
    return page.evaluate("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")


@needs_chromium
def test_feature_page_in_browser(tab, base):
    page = tab.page
    layer = LAYERS[0]
    page.goto(f"{base}{MODEL}/{layer}/f/3/index.html")
    page.wait_for_load_state("load")
    assert page.evaluate("() => document.getElementById('vis').naturalWidth") > 0
    n_examples = page.locator(".examples .ex-img img").count()
    assert n_examples >= 3
    assert page.evaluate(
        "() => Array.from(document.querySelectorAll('.ex-img img')).every(i => i.naturalWidth > 0)"
    )
    # Each example has its arg-max crop (drawn by atlas.js from the image) and its heat-map tile.
    assert page.locator(".examples .ex-crop").count() == n_examples
    assert page.evaluate(
        "() => getComputedStyle(document.querySelector('.examples .ex-img i'))"
        ".backgroundImage.startsWith('url(\"data:image/png')"
    )
    assert _all_images_loaded(page)

    # Heat-maps are visible by default and the toggle hides / shows them.
    heat = page.locator(".examples .ex-img i").first
    assert heat.is_visible()
    toggle = page.locator("#heat-toggle")
    assert toggle.is_visible()
    toggle.click()
    assert not heat.is_visible()
    toggle.click()
    assert heat.is_visible()

    # Right arrow opens the next feature, left arrow comes back.
    page.locator("h1").click()
    page.keyboard.press("ArrowRight")
    page.wait_for_url(re.compile(r".*/f/4/index\.html$"))
    assert f"{layer}/f/4" in page.locator("h1").inner_text()
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(re.compile(r".*/f/3/index\.html$"))
    assert not tab.errors, tab.errors


@needs_chromium
def test_home_search_finds_feature_by_label(tab, base):
    page = tab.page
    page.goto(f"{base}index.html")
    label = fake_label(7, 1)
    page.fill("#search-input", label)
    result = page.locator("#search-results a").first
    result.wait_for()
    assert label in result.inner_text()
    assert result.get_attribute("href") == f"{MODEL}/{LAYERS[1]}/f/7/index.html"
    # By id: "mixed5b/f/7" finds exactly that feature first.
    page.fill("#search-input", f"{LAYERS[1]}/f/7")
    assert (
        page.locator("#search-results a").first.get_attribute("href") == f"{MODEL}/{LAYERS[1]}/f/7/index.html"
    )
    page.fill("#search-input", label)
    page.locator("#search-results a").first.click()
    page.wait_for_url(re.compile(rf".*/{LAYERS[1]}/f/7/index\.html$"))
    assert not tab.errors, tab.errors


@needs_chromium
def test_every_page_kind_loads_cleanly(tab, base):
    page = tab.page
    layer = LAYERS[1]
    for path in [
        "index.html",
        f"{MODEL}/index.html",
        f"{MODEL}/{layer}/index.html",
        f"{MODEL}/{layer}/n/2/index.html",
        f"{MODEL}/classes/blue-square-large/index.html",
        f"{MODEL}/{layer}/map/index.html",
    ]:
        page.goto(base + path)
        page.wait_for_load_state("load")
        # Lazy images load only near the viewport (a long page can leave some never near it): ask for
        # every one now, then wait for each to finish and check that none failed.
        page.evaluate(
            "() => document.querySelectorAll('img[loading=lazy]').forEach(i => (i.loading = 'eager'))"
        )
        page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
        assert _all_images_loaded(page), path
    assert not tab.errors, tab.errors


PHONE = {"width": 390, "height": 844}


@needs_chromium
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_kind_fits_a_phone(browser, site, scheme):
    # At a phone's width no page scrolls sideways: long hashes, URLs, BibTeX and wide tables wrap or
    # scroll inside their own box.
    t = _Page(browser, viewport=PHONE, color_scheme=scheme)
    try:
        page = t.page
        base = site.resolve().as_uri() + "/"
        layer = LAYERS[1]
        wide = {}
        for path in [
            "index.html",
            "glossary.html",
            f"{MODEL}/index.html",
            f"{MODEL}/{layer}/index.html",
            f"{MODEL}/{layer}/f/3/index.html",
            f"{MODEL}/{layer}/n/2/index.html",
            f"{MODEL}/classes/blue-square-large/index.html",
            f"{MODEL}/{layer}/map/index.html",
        ]:
            page.goto(base + path)
            page.wait_for_load_state("load")
            width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            if width[0] > width[1]:
                wide[path] = width
        assert not wide, (
            f"pages wider than the {PHONE['width']} px viewport (scrollWidth, innerWidth): {wide}"
        )
        assert not t.errors, t.errors
    finally:
        t.close()


@needs_chromium
def test_layer_grid_sorts(tab, base, site):
    page = tab.page
    page.goto(f"{base}{MODEL}/{LAYERS[0]}/index.html")
    # Chart colours: the scatter legend's swatches keep their own fill, class-free bars take the stylesheet's.
    swatches = page.eval_on_selector_all(
        "svg.scatter rect[fill]", "els => els.map(e => [e.getAttribute('fill'), getComputedStyle(e).fill])"
    )
    assert swatches
    for attr, computed in swatches:
        assert computed == "rgb({}, {}, {})".format(*(int(attr[k : k + 2], 16) for k in (1, 3, 5)))
    bars = page.eval_on_selector_all(
        "svg.hist rect:not([fill])", "els => els.map(e => getComputedStyle(e).fill)"
    )
    assert bars and "rgb(0, 0, 0)" not in bars  # not SVG's default black
    ids = lambda: page.eval_on_selector_all("#feature-grid > li", "els => els.map(e => +e.dataset.id)")
    assert ids() == list(range(20))
    page.click("button[data-sort=density]")
    data = json.loads((site / f"data/{MODEL}/{LAYERS[0]}/features.json").read_text())["features"]
    expected = sorted(range(20), key=lambda i: (-data[i]["density"], i))
    assert ids() == expected
    page.click("button[data-sort=id]")
    assert ids() == list(range(20))
    assert not tab.errors, tab.errors


@needs_chromium
def test_map_highlights_and_opens_feature(tab, base):
    page = tab.page
    page.goto(f"{base}{MODEL}/{LAYERS[0]}/map/index.html#f=5")
    view = page.locator("#map-view")
    assert view.is_visible()
    page.wait_for_function("() => window.ATLAS_MAP_PAINTED !== undefined")
    assert page.evaluate("() => window.ATLAS_MAP.features.id[window.atlasMap.state.highlight]") == 5
    assert view.get_attribute("data-level") == "features"
    assert fake_label(5, 0) in page.locator("#map-status").inner_text()
    # The highlighted feature sits at the centre: hovering there shows its label, clicking opens it.
    box = view.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert fake_label(5, 0) in page.locator("#map-tip").inner_text()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(re.compile(r".*/f/5/index\.html$"))
    assert not tab.errors, tab.errors


@needs_chromium
def test_pages_readable_without_javascript(browser, site):
    t = _Page(browser, java_script_enabled=False)
    try:
        page = t.page
        base = site.resolve().as_uri() + "/"
        page.goto(f"{base}{MODEL}/{LAYERS[0]}/f/3/index.html")
        assert page.locator(".examples .ex-img i").first.is_visible()  # heat-maps shown by default
        assert not page.locator("#heat-toggle").is_visible()  # a button that would do nothing stays hidden
        assert page.locator("svg.hist rect").count() > 5
        assert page.locator(".bibtex").is_visible()
        page.goto(f"{base}{MODEL}/{LAYERS[0]}/map/index.html")
        assert not page.locator("#map-view").is_visible()
        assert page.locator(".clusters details").count() == 3
        page.goto(f"{base}{MODEL}/{LAYERS[0]}/index.html")
        assert page.locator("#feature-grid > li").count() == 20
        assert not t.errors, t.errors
    finally:
        t.close()
