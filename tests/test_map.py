"""Class hierarchy naming, the activation atlas, and the zoomable map page in a real browser."""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from atlasgen.atlas import grid_cells, normalize_layout, sprite_sheet
from atlasgen.config import ConfigError, parse_config
from atlasgen.featuremap import evaluate
from atlasgen.featurevis import direction_objective
from atlasgen.hierarchy import Hierarchy, HierarchyError, name_group
from atlasgen.site.artifacts import load_dataset
from atlasgen.site.images import encode_thumbnail

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu"]

CLASSES = [
    {"name": n, "superclass": s}
    for n, s in [
        ("dog", "animal"),
        ("cat", "animal"),
        ("rose", "plant"),
        ("fern", "plant"),
        ("car", "vehicle"),
    ]
]


# ------------------------------------------------------------------ hierarchy and naming


def test_names_from_dataset_superclasses():
    h = Hierarchy.from_dataset(CLASSES)
    assert name_group(np.array([0.9, 0.1, 0, 0, 0]), h) == "dog"  # one class dominates
    assert name_group(np.array([0.5, 0.45, 0.05, 0, 0]), h) == "animal"  # lowest common ancestor
    assert name_group(np.array([0.4, 0, 0.4, 0, 0.2]), h) == "dog / rose"  # no common ancestor
    assert name_group(np.zeros(5), h) == "unlabelled"


def test_hierarchy_file_deeper_tree(tmp_path):
    path = tmp_path / "h.tsv"
    path.write_text(
        "# child\tparent\ndog\tmammal\ncat\tmammal\nmammal\tanimal\nrose\tflower\nflower\tplant\n"
        "fern\tplant\ncar\tvehicle\n"
    )
    h = Hierarchy.from_file(path, [c["name"] for c in CLASSES])
    assert h.lca([0, 1]) == "mammal" and h.lca([2, 3]) == "plant" and h.lca([0, 4]) == ""
    assert name_group(np.array([0.5, 0.45, 0.05, 0, 0]), h) == "mammal"
    assert h.top(0) == "animal"
    yml = tmp_path / "h.yaml"
    yml.write_text("dog: mammal\ncat: mammal\nmammal: animal\n")
    assert Hierarchy.from_file(yml, [c["name"] for c in CLASSES]).lca([0, 1]) == "mammal"


@pytest.mark.parametrize(
    "text, message",
    [
        ("dog\tcat\ncat\tdog\n", "cycle"),
        ("dog mammal extra\n", "line 1"),
        ("x\ty\n", "none of the dataset's classes"),
    ],
)
def test_bad_hierarchy_files_say_why(tmp_path, text, message):
    path = tmp_path / "h.txt"
    path.write_text(text)
    with pytest.raises(HierarchyError, match=message):
        Hierarchy.from_file(path, [c["name"] for c in CLASSES])


def test_config_rejects_missing_hierarchy_and_unsorted_grids(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_config({"map": {"hierarchy": "nope.txt"}, "atlas": {"grids": [16, 8]}}, root=tmp_path)
    text = str(err.value)
    assert "map.hierarchy" in text and "atlas.grids" in text


def test_evaluate_purity_and_ari():
    h = Hierarchy.from_dataset(CLASSES)
    class_w = np.eye(5)[[0, 1, 0, 2, 3, 2, 4, 4]]  # dominant classes -> animal x3, plant x3, vehicle x2
    alive = np.ones(8, bool)
    perfect = np.array([[0], [0], [0], [1], [1], [1], [2], [2]])
    ev = evaluate(perfect, class_w, alive, h)
    assert ev["purity"] == 1.0 and ev["adjusted_rand_index"] == 1.0
    merged = np.array([[0], [0], [0], [0], [0], [0], [1], [1]])
    ev = evaluate(merged, class_w, alive, h)
    assert ev["purity"] == pytest.approx(5 / 8, abs=1e-4) and ev["adjusted_rand_index"] < 1.0


@pytest.mark.parametrize("dense_max", [10_000, 100])  # exact Ward tree, and Ward on a k-NN graph
def test_nested_clusters_are_nested_and_sized(monkeypatch, dense_max):
    from atlasgen import featuremap as map_stage

    monkeypatch.setattr(map_stage, "DENSE_LINKAGE_MAX", dense_max)
    rng = np.random.default_rng(1)
    centres = rng.random((4, 2))
    xy = np.concatenate([c + rng.normal(0, 0.02, (60, 2)) for c in centres])
    out = map_stage.nested_clusters(xy, [4, 8, 20])
    assert [len(np.unique(out[:, j])) for j in range(3)] == [4, 8, 20]
    for j in (1, 2):  # each finer cluster lies inside one coarser cluster
        for c in np.unique(out[:, j]):
            assert len(np.unique(out[out[:, j] == c, j - 1])) == 1
    # The four planted blobs are the four top clusters.
    blob = np.repeat(np.arange(4), 60)
    assert all(len(np.unique(out[blob == b, 0])) == 1 for b in range(4))
    np.testing.assert_array_equal(out, map_stage.nested_clusters(xy, [4, 8, 20]))  # deterministic


# ------------------------------------------------------------------ activation atlas


def test_grid_cells_means_counts_and_threshold():
    xy = np.array([[0.1, 0.1], [0.2, 0.2], [0.15, 0.3], [0.9, 0.9], [0.6, 0.1], [0.7, 0.2]])
    vec = np.arange(12, dtype=np.float32).reshape(6, 2)
    labels = np.array([0, 0, 1, 2, 1, 1])
    out = grid_cells(xy, vec, labels, grid=2, min_count=2, n_classes=3)
    assert out["cells"].tolist() == [[0, 0], [1, 0]]  # the lone point at (0.9, 0.9) is below min_count
    assert out["count"].tolist() == [3, 2]
    np.testing.assert_allclose(out["mean"][0], vec[:3].mean(0))
    assert out["top_class"].tolist() == [0, 1] and out["top_share"][0] == pytest.approx(2 / 3)
    np.testing.assert_allclose(out["classes"][0], [[0, 2 / 3], [1, 1 / 3], [-1, 0]])  # leading classes


def test_grid_cells_keep_the_points_most_like_the_mean_as_examples():
    """Each cell's examples are its own points, by cosine similarity to the cell's mean (ties to the
    lower row), padded with -1 where the cell has fewer points."""
    xy = np.array([[0.1, 0.1], [0.2, 0.2], [0.3, 0.1], [0.1, 0.3], [0.2, 0.4], [0.8, 0.8], [0.9, 0.9]])
    vec = np.array([[1, 0], [0, 1], [1, 1], [2, 2], [5, 1], [1, 0], [3, 0]], dtype=np.float32)
    labels = np.zeros(7, dtype=np.int64)
    out = grid_cells(xy, vec, labels, grid=2, min_count=2, n_classes=1)
    assert out["cells"].tolist() == [[0, 0], [1, 1]]
    # cell (0, 0): mean (1.8, 1), rows 2 and 3 point the same way (a tie, lower row first), then row 4
    assert out["examples"].tolist() == [[2, 3, 4], [5, 6, -1]]
    mean = vec[:5].mean(0)
    cos = vec[:5] @ mean / (np.linalg.norm(vec[:5], axis=1) * np.linalg.norm(mean))
    assert set(out["examples"][0]) == set(np.argsort(-cos, kind="stable")[:3].tolist())


def test_normalize_layout_clips_outliers_into_unit_square():
    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.normal(size=(500, 2)), [[1e3, -1e3]]])
    out = normalize_layout(xy)
    assert out.min() >= 0 and out.max() <= 1
    assert out[:-1].std() > 0.1  # the outlier did not squash everyone else


def test_atlas_objective_is_dot_times_cossim_power():
    v = torch.tensor([[1.0, 0.0, 0.0]])
    acts = torch.zeros(1, 3, 3, 3)
    acts[0, :, 1, 1] = torch.tensor([2.0, 2.0, 0.0])  # the centre position
    got = direction_objective(v, cossim_pow=2.0, mode="neuron")(acts)
    cos = 2.0 / (np.sqrt(8.0) * 1.0)
    assert got.item() == pytest.approx(2.0 * cos**2, rel=1e-4)
    acts[0, :, 1, 1] = torch.tensor([-1.0, 5.0, 0.0])  # cos < 0.1: floored at 0.1
    assert direction_objective(v, cossim_pow=2.0, mode="neuron")(acts).item() == pytest.approx(
        -1.0 * 0.01, rel=1e-4
    )


def test_sprite_sheet_layout():
    icons = np.stack([np.full((4, 4, 3), i, np.uint8) for i in range(5)])
    sheet, cols = sprite_sheet(icons)
    assert cols == 3 and sheet.shape == (8, 12, 3)
    assert sheet[4, 4, 0] == 4 and sheet[0, 8, 0] == 2


def test_tiny_build_has_atlas_and_named_hierarchy(tiny_build):
    folder, _, site = tiny_build
    cache = folder / ".atlasgen"
    atlas_dir = next((cache / "atlas").glob("*/mixed5b"))
    atlas = json.loads((atlas_dir / "atlas.json").read_text())
    assert [g["size"] for g in atlas["grids"]] == [4, 8]
    for g in atlas["grids"]:
        assert g["cells"] and all(c[2] >= 2 for c in g["cells"])
        assert (atlas_dir / g["sheet"]).exists()
    m = json.loads(next((cache / "map").glob("*/mixed5b/map.json")).read_text())
    assert [len(level) for level in m["levels"]] == [2, 4, 8]
    for lvl in (1, 2):  # nested: each cluster's members lie inside its parent
        parents = {c["id"]: set(c["members"]) for c in m["levels"][lvl - 1]}
        assert all(set(c["members"]) <= parents[c["parent"]] for c in m["levels"][lvl])
    assert 0 <= m["evaluation"]["purity"] <= 1
    mp = site / "demonet" / "mixed5b" / "map"
    assert (mp / "data.js").exists() and (mp / "sprites-0.webp").exists() and (mp / "atlas-8.webp").exists()
    assert (site / "static" / "vendor" / "leaflet" / "leaflet.js").exists()
    assert (site / "static" / "vendor" / "leaflet" / "LICENSE").exists()


# ------------------------------------------------------------------ the page in Chromium

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium not installed")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def served(tiny_build):
    """`atlasgen serve` on the tiny build; yields its base URL."""
    folder, config, _ = tiny_build
    proc = subprocess.Popen(
        [sys.executable, "-m", "atlasgen", "serve", "-q", "-c", str(config), "--port", "0"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert "http://127.0.0.1:" in first, first + proc.stderr.read()
        yield next(word for word in first.split() if word.startswith("http")).rstrip("/") + "/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["file", "serve"])
def base(request, tiny_build):
    if request.param == "serve":
        return request.getfixturevalue("served")
    return tiny_build[2].resolve().as_uri() + "/"


class Tab:
    def __init__(self, browser, base):
        self.context = browser.new_context(viewport={"width": 1100, "height": 850})
        self.page = self.context.new_page()
        self.errors, self.outside = [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "requestfailed",
            lambda r: (
                None
                if "ERR_ABORTED" in (r.failure or "")  # cancelled by a navigation
                else self.errors.append("failed " + r.url)
            ),
        )
        self.page.on(
            "request",
            lambda r: (
                None if r.url.startswith(base) or r.url.startswith("data:") else self.outside.append(r.url)
            ),
        )

    def open_map(self, base, hash_=""):
        self.page.goto(f"{base}demonet/mixed5b/map/index.html{hash_}")
        self.page.wait_for_function("() => window.ATLAS_MAP_PAINTED !== undefined")

    def state(self):
        return self.page.evaluate("""() => ({level: document.getElementById('map-view').dataset.level,
            status: document.getElementById('map-status').textContent,
            names: document.getElementById('map-legend').textContent, hash: location.hash})""")


@pytest.fixture
def tab(browser, base):
    t = Tab(browser, base)
    yield t
    t.context.close()


@needs_chromium
def test_zooming_changes_level_and_names(tab, base):
    tab.open_map(base)
    start = tab.state()
    assert start["level"] == "0" and "2 clusters" in start["status"]
    tab.page.locator("#map-view").focus()
    tab.page.keyboard.press("+")
    tab.page.wait_for_function("() => location.hash.indexOf('z=0.50') > 0")
    tab.page.keyboard.press("+")  # two keyboard steps of 0.5: one hierarchy level down
    tab.page.wait_for_function("() => document.getElementById('map-view').dataset.level === '1'")
    one = tab.state()
    assert "4 clusters" in one["status"] and one["names"] != start["names"]
    assert re.search(r"#m=features&l=1&z=1\.00", one["hash"])
    box = tab.page.locator("#map-view").bounding_box()
    tab.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(12):  # the wheel all the way in: single features
        tab.page.mouse.wheel(0, -200)
        tab.page.wait_for_timeout(60)
    tab.page.wait_for_function("() => document.getElementById('map-view').dataset.level === 'features'")
    assert "Single features" in tab.state()["status"]
    # The view survives a reload through the hash (once the wheel's zoom animation has settled).
    view = tab.state()["hash"]
    for _ in range(50):
        tab.page.wait_for_timeout(200)
        settled, view = view, tab.state()["hash"]
        if settled == view:
            break
    tab.page.reload()
    tab.page.wait_for_function("() => window.ATLAS_MAP_PAINTED !== undefined")
    assert tab.state()["level"] == "features" and tab.state()["hash"] == view
    assert not tab.errors, tab.errors
    assert not tab.outside, tab.outside


@needs_chromium
def test_hash_centres_on_feature_and_click_opens_it(tab, base):
    data = None
    tab.open_map(base)
    data = tab.page.evaluate(
        "() => ({ids: ATLAS_MAP.features.id, thumb: ATLAS_MAP.features.thumb, label: "
        "ATLAS_MAP.features.label})"
    )
    k = next(i for i, (t, lab) in enumerate(zip(data["thumb"], data["label"])) if t and lab != "dead")
    fid = data["ids"][k]
    tab.open_map(base, f"#f={fid}")
    s = tab.state()
    assert s["level"] == "features" and f"f/{fid}: {data['label'][k]}" in s["status"]
    centre = tab.page.evaluate("""() => { const m = atlasMap.map, c = m.getCenter();
        return [c.lng / atlasMap.S, -c.lat / atlasMap.S]; }""")
    xy = tab.page.evaluate(f"() => [ATLAS_MAP.features.x[{k}], ATLAS_MAP.features.y[{k}]]")
    assert centre == pytest.approx(xy, abs=1e-3)
    box = tab.page.locator("#map-view").bounding_box()
    tab.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert f"f/{fid}" in tab.page.locator("#map-tip").inner_text()
    tab.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tab.page.wait_for_url(re.compile(rf".*/f/{fid}/index\.html$"))
    # ... and the feature page links back to the map centred on it.
    link = tab.page.locator(f"a[href$='map/index.html#f={fid}']")
    assert link.count() == 1
    assert not tab.errors, tab.errors
    assert not tab.outside, tab.outside


@needs_chromium
def test_activation_atlas_mode(tab, base):
    tab.open_map(base)
    tab.page.click("[data-map-mode=atlas]")
    tab.page.wait_for_function("() => document.getElementById('map-view').dataset.level === 'atlas-0'")
    s = tab.state()
    assert "4 × 4 grid" in s["status"] and s["hash"].startswith("#m=atlas")
    tab.page.locator("#map-view").focus()
    tab.page.keyboard.press("+")
    tab.page.wait_for_function("() => location.hash.indexOf('z=0.50') > 0")
    tab.page.keyboard.press("+")
    tab.page.wait_for_function("() => document.getElementById('map-view').dataset.level === 'atlas-1'")
    assert "8 × 8 grid" in tab.state()["status"]
    assert not tab.errors, tab.errors
    assert not tab.outside, tab.outside


@needs_chromium
def test_atlas_hover_shows_top_classes_and_example_images(tab, base, tiny_build):
    """Hovering an atlas cell shows its count, its leading classes with their shares and its typical
    images (dataset images of the site, loaded from file:// as from a server), in a tooltip that is
    the topmost element where it stands."""
    folder, _, site = tiny_build
    atlas = json.loads(next((folder / ".atlasgen" / "atlas").glob("*/mixed5b/atlas.json")).read_text())
    tab.open_map(base, "#m=atlas")
    tab.page.evaluate("() => document.getElementById('map-view').scrollIntoView({block: 'start'})")
    tab.page.evaluate("() => new Promise(r => setTimeout(r, 300))")
    data = tab.page.evaluate("() => ({images: ATLAS_MAP.atlas.images, classes: ATLAS_MAP.classes})")
    assert data["images"] and len(set(data["images"])) == len(data["images"])
    page_dir = site / "demonet" / "mixed5b" / "map"
    assert all((page_dir / p).resolve().is_file() for p in data["images"])
    # each dataset index's stored file (images/<sha256 of its encoding>.webp), as the site names it
    dataset = load_dataset(next((folder / ".atlasgen" / "dataset").glob("*/dataset.json")).parent)
    indices = sorted({i for g in atlas["grids"] for c in g["cells"] for i in c[6]})
    stored = {
        i: hashlib.sha256(encode_thumbnail(dataset.image(i))).hexdigest()[:16] + ".webp" for i in indices
    }
    assert [p.rsplit("/", 1)[-1] for p in data["images"]] == [stored[i] for i in indices]
    box = tab.page.locator("#map-view").bounding_box()
    cells = tab.page.evaluate("() => atlasMap.drawn().filter(d => d.kind === 'cell')")
    bottom = min(box["height"], 850 - box["y"]) - 2
    cells = [d for d in cells if 2 < d["x"] < box["width"] - 2 and 2 < d["y"] < bottom]
    assert cells
    grid = atlas["grids"][0]
    for d in cells[:12]:
        cell = grid["cells"][d["i"]]
        tab.page.mouse.move(box["x"] + d["x"], box["y"] + d["y"])
        tip = tab.page.locator("#map-tip")
        text = tip.inner_text()
        assert f"{cell[2]} images in this cell" in text
        for c, share in cell[5]:
            assert f"{math.floor(100 * share + 0.5)}% {data['classes'][c]}" in text  # JS Math.round
        srcs = tab.page.evaluate(
            "() => Array.from(document.querySelectorAll('#map-tip .tip-images img')).map(i => i.src)"
        )
        # the tooltip's images are the cell's typical images of atlas.json, in its order
        assert len(srcs) == len(cell[6]) >= 1
        assert [src.rsplit("/", 1)[-1] for src in srcs] == [stored[i] for i in cell[6]]
        tab.page.wait_for_function(
            "() => Array.from(document.querySelectorAll('#map-tip .tip-images img'))"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        assert _tip_on_top(tab, d["x"], d["y"]) is True
    assert not tab.errors, tab.errors
    assert not tab.outside, tab.outside


def _in_frame(tab):
    """The features' container positions and the map's size."""
    return tab.page.evaluate("""() => { const m = atlasMap.map, s = m.getSize(), F = ATLAS_MAP.features;
        const pts = F.x.map((x, i) => { const p = m.latLngToContainerPoint(L.latLng(-F.y[i] * atlasMap.S, x * atlasMap.S));
            return [p.x, p.y]; });
        return {w: s.x, h: s.y, pts: pts}; }""")  # noqa: E501


@needs_chromium
def test_map_opens_fitted_to_the_data(tab, base):
    """Every feature is inside the frame at the opening view, and the data fill most of it along
    their longer side (not a third of it)."""
    tab.open_map(base)
    got = _in_frame(tab)
    xs, ys = [p[0] for p in got["pts"]], [p[1] for p in got["pts"]]
    assert min(xs) >= 0 and min(ys) >= 0 and max(xs) <= got["w"] and max(ys) <= got["h"]
    fill = max((max(xs) - min(xs)) / got["w"], (max(ys) - min(ys)) / got["h"])
    assert fill > 0.6, fill
    assert not tab.errors, tab.errors


@needs_chromium
def test_every_zoom_step_shows_a_feature(tab, base):
    """From the opening view, every step of the + button, and every wheel step with the cursor in an
    empty corner, leaves at least one feature in view, down to the deepest zoom."""
    tab.open_map(base)
    settle = "() => new Promise(r => setTimeout(r, 400))"
    steps = 0
    while True:
        before = tab.page.evaluate("() => atlasMap.map.getZoom()")
        tab.page.click("[data-map-zoom=in]")
        tab.page.evaluate(settle)
        after = tab.page.evaluate("() => atlasMap.map.getZoom()")
        assert tab.page.evaluate("() => atlasMap.featuresInView()") >= 1, (steps, after)
        steps += 1
        if after <= before:
            break
    assert steps > 4 and tab.state()["level"] == "features"
    tab.page.click("[data-map-zoom=reset]")
    tab.page.evaluate(settle)
    box = tab.page.locator("#map-view").bounding_box()
    tab.page.mouse.move(box["x"] + 5, box["y"] + 5)  # a corner, outside the data
    for _ in range(14):
        tab.page.mouse.wheel(0, -240)
        tab.page.evaluate(settle)
        assert tab.page.evaluate("() => atlasMap.featuresInView()") >= 1
    assert not tab.errors, tab.errors


def _tip_on_top(tab, x, y):
    """Whether the tooltip shown for the point (x, y) of the page is the topmost element where it is."""
    return tab.page.evaluate(
        """([x, y]) => { const t = document.getElementById('map-tip');
        if (t.hidden) return 'hidden';
        const r = t.getBoundingClientRect(); t.style.pointerEvents = 'auto';
        const e = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        t.style.pointerEvents = ''; return e === t || t.contains(e); }""",
        [x, y],
    )


@needs_chromium
@pytest.mark.parametrize("where", ["clusters", "features", "atlas"])
def test_tooltip_is_drawn_above_the_tiles(tab, base, where):
    """Hovering every tile drawn at one level (top clusters, single features, the atlas's cells)
    shows a tooltip that is the topmost element where it stands."""
    tab.open_map(base, "#m=atlas" if where == "atlas" else "")
    if where == "features":
        tab.page.evaluate("() => atlasMap.map.setZoom(atlasMap.featureZoom(), {animate: false})")
        tab.page.wait_for_function("() => document.getElementById('map-view').dataset.level === 'features'")
    tab.page.evaluate("() => document.getElementById('map-view').scrollIntoView({block: 'start'})")
    tab.page.evaluate("() => new Promise(r => setTimeout(r, 300))")
    box = tab.page.locator("#map-view").bounding_box()
    targets = tab.page.evaluate("() => atlasMap.drawn().map(d => [d.x, d.y])")
    assert targets
    bottom = min(box["height"], 850 - box["y"]) - 2  # the part of the map inside the window
    inside = [(x, y) for x, y in targets if 2 < x < box["width"] - 2 and 2 < y < bottom]
    assert inside
    for x, y in inside[:60]:
        tab.page.mouse.move(box["x"] + x, box["y"] + y)
        assert _tip_on_top(tab, x, y) is True, (where, x, y)
    assert not tab.errors, tab.errors


@needs_chromium
def test_dead_features_are_left_out_and_counted(tab, base, tiny_build):
    folder, _, site = tiny_build
    m = json.loads(next((folder / ".atlasgen" / "map").glob("*/mixed5b/map.json")).read_text())
    dead = {f["id"] for f in m["features"] if f.get("dead")}
    tab.open_map(base)
    data = tab.page.evaluate("() => ({ids: ATLAS_MAP.features.id, n: ATLAS_MAP.n, dead: ATLAS_MAP.n_dead})")
    assert not dead & set(data["ids"])
    assert data["n"] + data["dead"] == len(m["features"]) and data["dead"] == len(dead)
    lede = tab.page.locator("p.lede").inner_text()
    assert f"{data['n']} live features" in lede
    assert (f"{len(dead)} dead" in lede) == bool(dead)


def test_map_lede_names_dead_features_only_when_there_are_some(tiny_build):
    """The map page's lede counts the dead features it leaves out, and says nothing of dead features
    on a layer that has none."""
    import dataclasses

    from atlasgen.config import load_config
    from atlasgen.pipeline import Pipeline
    from atlasgen.progress import Console
    from atlasgen.site import pages
    from atlasgen.site.artifacts import load_artifacts
    from atlasgen.site.build import layer_indexes, make_environment, make_site

    _, config, _ = tiny_build
    pipe = Pipeline(load_config(config), console=Console(0))
    folders = {s.name: pipe.store.final(s.name, s.key) for s in pipe.states() if s.name != "site"}

    def lede(arts):
        site = make_site(
            arts,
            folders,
            title="t",
            date="2026-01-01",
            base_url="",
            model_name="demonet",
            authors=(),
            doi=None,
            sae_dtype="float16",
            dense_threshold=0.2,
        )
        ix = layer_indexes(site, arts)["mixed5b"]
        path, template, ctx = pages.map_page(site, ix)
        html = make_environment().get_template(template).render(ctx)
        return re.sub(r"\s+", " ", re.search(r'<p class="lede">(.*?)</p>', html, re.S).group(1))

    arts = load_artifacts(folders, ["mixed5b"])
    L = arts.layers[0]
    dead = [f for f in L.map["features"] if f.get("dead")]
    text = lede(arts)
    assert (f"({len(dead)} dead ones, which never fire, are left out)" in text) == bool(dead)
    # The same layer with every feature live: no word of dead features.
    density = np.where(L.features.density > 0, L.features.density, 1e-3)
    live_map = {
        **L.map,
        "features": [
            {**{k: v for k, v in f.items() if k != "dead"}, "x": 0.5, "y": 0.5} if f.get("dead") else f
            for f in L.map["features"]
        ],
    }
    arts.layers[0] = dataclasses.replace(
        L, map=live_map, features=dataclasses.replace(L.features, density=density)
    )
    text = lede(arts)
    assert f"{len(L.map['features'])} live features" in text
    assert "dead" not in text


@needs_chromium
def test_url_fragment_round_trip(tab, base, browser):
    """Level, centre and the selected feature go into the fragment; a new tab opened on it shows
    the same view with the same selection."""
    tab.open_map(base)
    tab.page.evaluate("() => atlasMap.map.setZoom(atlasMap.featureZoom() + 0.5, {animate: false})")
    tab.page.evaluate("() => new Promise(r => setTimeout(r, 300))")
    d = tab.page.evaluate("() => atlasMap.drawn().filter(d => d.kind === 'feature')[0]")
    box = tab.page.locator("#map-view").bounding_box()
    tab.page.mouse.click(box["x"] + d["x"], box["y"] + d["y"])
    fid = tab.page.evaluate(f"() => ATLAS_MAP.features.id[{d['i']}]")
    tab.page.wait_for_function(f"() => location.hash.indexOf('&f={fid}') > 0")
    assert tab.page.locator("#map-selected").inner_text().startswith(f"Selected: f/{fid}")
    view = tab.state()
    assert "&l=features&" in view["hash"]
    centre = tab.page.evaluate(
        "() => [atlasMap.map.getCenter().lng, atlasMap.map.getCenter().lat, atlasMap.map.getZoom()]"
    )
    other = Tab(browser, base)
    try:
        other.open_map(base, view["hash"])
        again = other.state()
        assert again["hash"] == view["hash"] and again["level"] == "features"
        assert other.page.evaluate(
            "() => [atlasMap.map.getCenter().lng, atlasMap.map.getCenter().lat, atlasMap.map.getZoom()]"
        ) == pytest.approx(centre, abs=0.05)
        assert other.page.evaluate("() => atlasMap.state.highlight") == d["i"]
        assert not other.errors, other.errors
    finally:
        other.context.close()
    assert not tab.errors, tab.errors


def test_coactivation_layout_groups_features_that_fire_on_the_same_images(tmp_path):
    """map.source: coactivation lays features out by their maxima on the examples stage's image
    sample: three planted groups of features, each firing on its own third of the images (with
    random decoder directions that carry no grouping), come out as the three top clusters."""
    from atlasgen.progress import Console
    from atlasgen.stage import StageContext
    from atlasgen.stages import map as map_stage

    rng = np.random.default_rng(0)
    n_img, per_group, groups = 90, 20, 3
    F = per_group * groups
    group_of = np.repeat(np.arange(groups), per_group)
    img_group = np.arange(n_img) % groups
    peaks = np.where(group_of[None, :] == img_group[:, None], rng.gamma(2.0, 1.0, (n_img, F)), 0.0)
    peaks *= rng.random((n_img, F)) < 0.6  # each feature fires on part of its group's images
    peaks[:, -1] = 0  # one feature never fires (dead: left out of the evaluation)
    inputs = {name: tmp_path / name for name in ("dataset", "sae", "examples", "circuits")}
    for folder in inputs.values():
        (folder / "mixed5b").mkdir(parents=True)
    classes = [CLASSES[0], CLASSES[2], CLASSES[4]]  # one class per group, each of its own superclass
    (inputs["dataset"] / "dataset.json").write_text(json.dumps({"classes": classes}))
    np.savez(inputs["sae"] / "mixed5b" / "sae.npz", W_dec=rng.normal(size=(F, 16)).astype(np.float32))
    top_classes = np.full((F, 3), -1)
    top_classes[:, 0] = group_of
    weights = np.zeros((F, 3), np.float32)
    weights[:, 0] = 1
    np.savez(
        inputs["examples"] / "mixed5b" / "features.npz",
        top_classes=top_classes,
        top_class_weights=weights,
        density=np.r_[np.ones(F - 1), 0].astype(np.float32),
    )
    np.savez(inputs["examples"] / "mixed5b" / "cooccurrence.npz", sample_peaks=peaks.astype(np.float16))
    cfg = parse_config({"map": {"source": "coactivation", "levels": [3, 6]}}, root=tmp_path)
    out = tmp_path / "out"
    map_stage.run(StageContext(cfg, out, inputs, Console(0), "cpu"))
    m = json.loads((out / "mixed5b" / "map.json").read_text())
    top = np.array([f["clusters"][0] for f in m["features"]])
    assert m["source"] == "coactivation"
    for g in range(groups):  # each planted group is one top-level cluster (the silent feature aside)
        members = top[:-1][group_of[:-1] == g]
        assert len(np.unique(members)) == 1
    assert len(np.unique(top[:-1])) == groups
    assert m["evaluation"]["purity"] == 1.0


# ------------------------------------------------------------------ prediction profiles


def _planted_hierarchy(rng, n_sup=4, per_sup=4, feats_per_class=6, n_img=320):
    """Images of n_sup x per_sup classes, a hierarchical model's predictions on them (0.6 on the
    true class, 0.3 over its siblings, 0.1 over the rest, with noise), and features that each fire
    on part of the images of one class only, with decoder directions that carry no grouping."""
    K = n_sup * per_sup
    sup = np.arange(K) // per_sup
    img_class = np.arange(n_img) % K
    probs = np.where(sup[None, :] == sup[img_class][:, None], 0.3 / (per_sup - 1), 0.1 / (K - per_sup))
    probs[np.arange(n_img), img_class] = 0.6
    probs *= rng.uniform(0.7, 1.3, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    feat_class = np.repeat(np.arange(K), feats_per_class)
    peaks = np.where(
        feat_class[None, :] == img_class[:, None], rng.gamma(2.0, 1.0, (n_img, len(feat_class))), 0.0
    )
    peaks *= rng.random(peaks.shape) < 0.6
    return K, sup, feat_class, probs, peaks


def _top_examples(peaks, k=12):
    """Each feature's k images of largest activation (an examples stage's top_idx / top_val)."""
    order = np.argsort(-peaks, axis=0, kind="stable")[:k].T  # (F, k)
    val = np.take_along_axis(peaks.T, order, 1)
    return np.where(val > 0, order, -1), np.where(val > 0, val, 0)


def test_prediction_profiles_recover_a_planted_superclass_hierarchy():
    """Features of sibling classes fire on disjoint images, so their co-activation vectors are
    orthogonal and carry no superclass grouping; the model's mean prediction on each feature's top
    examples does, and average-linkage clustering of those vectors (map.cluster: vectors) recovers
    the superclasses exactly, nested over the finer levels (each class one cluster at level 16)."""
    from atlasgen.featuremap import (
        coactivation_vectors,
        nested_clusters,
        prediction_profiles,
        top_groups,
    )

    rng = np.random.default_rng(1)
    K, sup, feat_class, probs, peaks = _planted_hierarchy(rng)
    top_idx, top_val = _top_examples(peaks)
    images = np.arange(len(probs))
    V = prediction_profiles(top_idx, top_val, images, probs)
    assert V.shape == (len(feat_class), K)
    np.testing.assert_allclose(V.sum(1), 1.0, rtol=1e-3)  # a weighted mean of distributions
    clusters = nested_clusters(V, [4, 16], cosine=True)
    assert adjusted_rand_score(sup[feat_class], clusters[:, 0]) == 1.0
    assert adjusted_rand_score(feat_class, clusters[:, 1]) == 1.0
    for k in np.unique(clusters[:, 1]):  # nested: a fine cluster lies in one coarse cluster
        assert len(np.unique(clusters[clusters[:, 1] == k, 0])) == 1
    assert adjusted_rand_score(sup[feat_class], top_groups(V, 4, cosine=True)) == 1.0
    coact = coactivation_vectors({"sample_peaks": peaks.astype(np.float16)})
    coact[~(np.abs(coact).sum(1) > 0)] = 1e-6
    assert adjusted_rand_score(sup[feat_class], nested_clusters(coact, [4], cosine=True)[:, 0]) < 0.5


def test_prediction_profiles_weighting_and_feature_without_examples():
    from atlasgen.featuremap import informative, prediction_profiles

    images = np.array([3, 5, 9])  # sorted dataset indices of every top example
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    top_idx = np.array([[3, 5], [-1, -1], [9, -1]])  # feature 1 has no top example
    top_val = np.array([[3.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    V = prediction_profiles(top_idx, top_val, images, probs)
    np.testing.assert_allclose(V[0], [0.75, 0.25])
    np.testing.assert_allclose(V[2], [0.5, 0.5])
    assert (V[1] == 0).all() and informative(V).tolist() == [True, False, True]


def test_top_groups_spend_no_slot_on_outliers():
    """Four planted groups and three far outliers: average linkage on cosine distance, cut at four,
    would give three of the slots to the outliers; top_groups keeps the four groups, each outlier
    joining the group it is closest to, and numbers the clusters by lowest member."""
    from atlasgen.featuremap import nested_clusters, top_groups

    rng = np.random.default_rng(3)
    centres = np.eye(6)[:4] + np.r_[0.3, 0.3, 0.3, 0.3, 0, 0]  # four groups that share a component
    X = np.concatenate([np.abs(c + rng.normal(0, 0.03, (40, 6))) for c in centres])
    outliers = np.array([[0, 0, 0, 0, 1, 0.0], [0, 0, 0, 0, 0, 1.0], [0, 0, 0, 0, 0.6, 0.4]])
    X = np.concatenate([X, outliers])
    truth = np.repeat(np.arange(4), 40)
    plain = nested_clusters(X, [4], cosine=True)[:, 0]
    assert min(np.bincount(plain)) < 3  # the plain cut spends slots on outliers
    got = top_groups(X, 4, cosine=True)
    assert len(np.unique(got)) == 4 and min(np.bincount(got)) >= 40
    assert adjusted_rand_score(truth, got[:160]) == 1.0
    assert got[0] == 0
    np.testing.assert_array_equal(got, top_groups(X, 4, cosine=True))  # deterministic


def test_sibling_names_never_repeat():
    from atlasgen.featuremap import cluster_name, sibling_names

    h = Hierarchy.from_dataset(CLASSES)
    assert cluster_name(np.array([0.4, 0.3, 0.1, 0.1, 0.1]), h) == "animal"  # 0.7 of it animals
    assert cluster_name(np.array([0.7, 0.1, 0.1, 0.1, 0]), h) == "dog"
    names = sibling_names(
        [np.array([5.0, 4, 0, 0, 0.5]), np.array([4.0, 5, 0, 0, 0]), np.array([0, 0, 4.0, 5, 0])], h
    )
    assert names[2] == "plant" and len(set(names)) == 3
    assert names[:2] == ["animal: dog", "animal: cat"]
    twins = sibling_names([np.array([1.0, 1, 0, 0, 0]), np.array([1.0, 1, 0, 0, 0])], h)
    assert len(set(twins)) == 2


def test_build_map_leaves_dead_features_out():
    """Dead features get no place and no cluster, are not scored, and no cluster holds them; live
    features without a vector to cluster by take their nearest clustered neighbour's clusters."""
    from atlasgen.featuremap import build_map

    rng = np.random.default_rng(4)
    h = Hierarchy.from_dataset(CLASSES)
    groups = np.repeat([0, 2, 4], 20)  # dog, rose and car features
    V = np.eye(5)[groups] + rng.random((60, 5)) * 0.1
    class_w = np.eye(5)[groups]
    alive = np.ones(60, bool)
    alive[[3, 25]] = False
    V[[3, 25]] = 0
    V[40] = 0  # live, but nothing to cluster by (and no top examples to score it by)
    class_w[40] = 0
    m = build_map(V, alive, class_w, h, levels=[3, 6], n_neighbors=8)
    dead = [f for f in m["features"] if f.get("dead")]
    assert [f["id"] for f in dead] == [3, 25] and m["n_dead"] == 2
    assert all(f["clusters"] == [-1, -1] and "x" not in f for f in dead)
    for level in m["levels"]:
        assert {i for c in level for i in c["members"]} == set(range(60)) - {3, 25}
    assert m["evaluation"]["features"] == 57 and m["evaluation"]["purity"] == 1.0
    assert sorted(c["name"] for c in m["levels"][0]) == ["car", "dog", "rose"]  # one class each
    assert min(m["features"][40]["clusters"]) >= 0 and "x" in m["features"][40]


def test_sibling_targets_and_loss():
    """model.train.sibling_smoothing: each target keeps 1 - eps and gives eps to its siblings."""
    from atlasgen.stages.model import sibling_smoothed_loss, sibling_targets

    classes = [
        {"name": "dog", "superclass": "animal"},
        {"name": "cat", "superclass": "animal"},
        {"name": "fish", "superclass": "animal"},
        {"name": "car", "superclass": "vehicle"},
        {"name": "rock", "superclass": ""},
    ]
    T = sibling_targets(classes, 0.3)
    torch.testing.assert_close(T.sum(1), torch.ones(5))
    torch.testing.assert_close(T[0], torch.tensor([0.7, 0.15, 0.15, 0.0, 0.0]))
    torch.testing.assert_close(T[3], torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0]))  # no sibling: one-hot
    torch.testing.assert_close(T[4], torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]))
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    expected = -(T[y] * torch.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(sibling_smoothed_loss(classes, 0.3)(logits, y), expected)
    plain = torch.nn.functional.cross_entropy(logits, y)
    torch.testing.assert_close(sibling_smoothed_loss(classes, 0.0)(logits, y), plain)


def test_map_stage_predictions_source_on_a_real_build(tiny_build, tmp_path):
    """map.source: predictions with map.cluster: vectors runs the map stage on a real tiny build's
    artifacts (a real forward pass of its model over the examples stage's sample): every feature
    gets a place, the levels are nested, and two runs, each in its own process as builds run,
    write the same bytes."""
    folder, config, _ = tiny_build
    script = f"""
import json, sys
from pathlib import Path
from atlasgen.config import load_config
from atlasgen.stage import StageContext
from atlasgen.progress import Console
from atlasgen.stages import map as map_stage
cfg = load_config(Path({str(config)!r}))
cache = cfg.resolve(cfg.cache_dir)
inputs = {{s: cache / s / json.loads((cache / s / "latest.json").read_text())["key"]
          for s in ("dataset", "model", "sae", "examples", "circuits")}}
cfg.map = type(cfg.map)(**{{**cfg.map.__dict__, "source": "predictions", "cluster": "vectors"}})
map_stage.run(StageContext(cfg, Path(sys.argv[1]), inputs, Console(0), "cpu"))
"""
    outs = []
    for run in range(2):
        out = tmp_path / f"out{run}"
        subprocess.run(
            [sys.executable, "-c", script, str(out)], check=True, cwd=Path(__file__).resolve().parents[1]
        )
        outs.append((out / "mixed5b" / "map.json").read_bytes())
    assert outs[0] == outs[1]
    m = json.loads(outs[0])
    assert m["source"] == "predictions"
    from atlasgen.config import load_config

    cfg = load_config(config)
    cache = cfg.resolve(cfg.cache_dir)
    sae_dir = cache / "sae" / json.loads((cache / "sae" / "latest.json").read_text())["key"]
    n_features = len(np.load(sae_dir / "mixed5b" / "sae.npz")["W_dec"])
    assert len(m["features"]) == n_features
    assert [len(level) for level in m["levels"]] == cfg.map.levels
    parents = {(lvl, c["id"]): c["parent"] for lvl, level in enumerate(m["levels"]) for c in level}
    for f in m["features"]:
        if f.get("dead"):  # no place, in no cluster
            assert set(f["clusters"]) == {-1} and "x" not in f
            continue
        for lvl in range(1, len(f["clusters"])):
            assert parents[(lvl, f["clusters"][lvl])] == f["clusters"][lvl - 1]
    assert 0 <= m["evaluation"]["purity"] <= 1


def test_layout_places_identical_vectors_at_one_point():
    """Identical rows (silent features share one vector) are laid out once: they share a point, and
    the distinct rows keep their order (a layout without duplicates is unchanged)."""
    from atlasgen.featuremap import layout

    rng = np.random.default_rng(2)
    v = rng.random((60, 6)).astype(np.float32)
    plain = layout(v, 8, 0.1, 0)
    dup = np.concatenate([v, np.repeat(v[[4]], 30, 0)])
    xy = layout(dup, 8, 0.1, 0)
    assert np.allclose(xy[60:], xy[4])
    assert np.isfinite(xy).all() and xy.min() >= 0 and xy.max() <= 1
    assert layout(np.ones((5, 3), np.float32), 8, 0.1, 0).tolist() == [[0.0, 0.0]] * 5
    assert plain.shape == (60, 2)


def test_nested_within_keeps_the_top_partition_and_cuts_compact_finer_clusters():
    """map.cluster: vectors: the top level is the given partition (from the vectors), and inside each
    top group the finer levels follow the layout: two top groups, each of two distant spatial blobs
    interleaved with the other group's, give the four blobs at the next level."""
    from atlasgen.featuremap import nested_within

    rng = np.random.default_rng(0)
    centres = np.array([[0.1, 0.1], [0.9, 0.9], [0.1, 0.9], [0.9, 0.1]])
    blob = np.repeat(np.arange(4), 25)
    xy = centres[blob] + rng.normal(0, 0.03, (100, 2))
    top = np.where(blob < 2, 7, 3)  # blobs 0 and 1 in one group (opposite corners), 2 and 3 in the other
    clusters = nested_within(xy, top, [2, 4, 10])
    assert adjusted_rand_score(top, clusters[:, 0]) == 1.0
    assert adjusted_rand_score(blob, clusters[:, 1]) == 1.0
    assert [len(np.unique(clusters[:, lvl])) for lvl in range(3)] == [2, 4, 10]
    for lvl in range(1, 3):  # nested
        for c in np.unique(clusters[:, lvl]):
            assert len(np.unique(clusters[clusters[:, lvl] == c, lvl - 1])) == 1
    assert clusters[0, 0] == 0  # numbered by lowest member


def test_map_cluster_option_is_validated(tmp_path):
    with pytest.raises(ConfigError, match="map.cluster"):
        parse_config({"map": {"cluster": "umap"}}, root=tmp_path)


def test_numeric_stack_versions_in_summary_and_manifest(tiny_build):
    """The build summary prints the versions of the numeric stack and manifest.json keeps them."""
    from atlasgen.pipeline import BuildSummary, format_summary
    from atlasgen.versions import NUMERIC_STACK, numeric_stack

    _, _, site = tiny_build
    versions = numeric_stack()
    assert list(versions) == list(NUMERIC_STACK) and versions["numpy"] == np.__version__
    assert json.loads((site / "manifest.json").read_text())["versions"] == versions
    text = format_summary(BuildSummary(), site, 1.0)
    assert f"versions torch {versions['torch']}, numpy {np.__version__}, scikit-learn" in text
