"""The try page: the ONNX export checked against PyTorch, and the page in headless Chromium (file://
and HTTP) giving the same top features as atlasgen's Python pipeline on the same image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import serve_folder
from PIL import Image

from atlasgen.config import load_config
from atlasgen.data import as_model_input, load_rgb, open_dataset, resize_center_crop
from atlasgen.demo.model import DemoNet
from atlasgen.models import class_outputs, load_model
from atlasgen.onnx_graphs import (
    ImageGraph,
    compare,
    export_graph,
    onnx_outputs,
    pipeline_outputs,
    weights_to_float16,
)
from atlasgen.sae import SparseAutoencoder
from atlasgen.sae_formats import load_sae_any
from atlasgen.site import plan, publish, sizes, trypage
from atlasgen.site.publish import size_breakdown
from atlasgen.stages import site as site_stage

LAYER = "mixed5b"


def _folders(folder: Path) -> dict[str, Path]:
    out = {}
    for latest in (folder / ".atlasgen").glob("*/latest.json"):
        key = json.loads(latest.read_text())["key"]
        if (latest.parent / key).is_dir():
            out[latest.parent.name] = latest.parent / key
    return out


def _random_sae(d_in: int, d_sae: int, architecture: str, seed: int) -> SparseAutoencoder:
    g = torch.Generator().manual_seed(seed)
    sae = SparseAutoencoder(d_in, d_sae, architecture, k=4)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g) * 0.3)
        sae.b_enc.copy_(torch.randn(d_sae, generator=g) * 0.1)
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=g), dim=1))
        sae.b_dec.copy_(torch.randn(d_in, generator=g) * 0.1)
        if architecture == "batchtopk":
            sae.threshold.fill_(0.2)
    return sae.eval()


@pytest.mark.parametrize("architecture", ["batchtopk", "topk", "relu"])
def test_the_exported_graph_computes_what_the_pipeline_computes(architecture):
    """Every SAE architecture's codes, their maxima over positions, the neurons and the logits of a
    float32 export agree with PyTorch to 1e-4 of each image's largest value; float16 weights stay
    within 1e-2 and halve the file."""
    torch.manual_seed(0)
    model = DemoNet(5).eval().requires_grad_(False)
    sae = _random_sae(128, 256, architecture, seed=1)
    images = torch.rand(3, 3, 32, 32)
    outputs = [4, 0, 2, 1, 3]
    ref = pipeline_outputs(model, LAYER, sae, images, outputs)
    for head in (outputs, None):
        graph = ImageGraph(model, LAYER, sae, head)
        data = export_graph(graph, 32)
        assert data == export_graph(ImageGraph(model, LAYER, sae, head), 32)  # same inputs, same bytes
        got = onnx_outputs(data, images.numpy(), graph.head)
        assert sorted(got) == sorted(k for k in ref if head is not None or k != "logits")
        check = compare(ref, got, 10)
        assert check.same_top and check.passes(1e-4), check
        np.testing.assert_allclose(
            got["feature_map"], ref["feature_map"], atol=1e-4 * ref["feature_max"].max()
        )
        half = weights_to_float16(data)
        assert len(half) < 0.6 * len(data)
        assert compare(ref, onnx_outputs(half, images.numpy(), graph.head), 10).passes(1e-2)


def test_a_wrong_graph_fails_the_check():
    """The check sees a difference: another SAE's graph against this pipeline's numbers."""
    model = DemoNet(3).eval().requires_grad_(False)
    sae, other = _random_sae(128, 64, "relu", 1), _random_sae(128, 64, "relu", 2)
    images = torch.rand(2, 3, 32, 32)
    ref = pipeline_outputs(model, LAYER, sae, images, None)
    got = onnx_outputs(export_graph(ImageGraph(model, LAYER, other, None), 32), images.numpy(), False)
    assert not compare(ref, got, 10).passes(1e-3)


def test_the_stage_keeps_a_checked_graph_and_the_site_counts_it(tiny_build):
    folder, config, site = tiny_build
    arts = _folders(folder)
    info = json.loads((arts["tryimage"] / "try.json").read_text())
    assert info["layers"] == [LAYER] and info["logits"] is True
    check = json.loads((arts["tryimage"] / LAYER / "check.json").read_text())
    kept = check["checks"][check["dtype"]]
    assert kept["same_top"] and max(kept["feature_error"], kept["neuron_error"], kept["logit_error"]) <= 1e-3
    assert check["checks"]["float32"]["feature_error"] <= 1e-4
    graph_js = (site / "demonet" / "try" / LAYER / "graph.js").read_text()
    assert len(graph_js) > check["bytes"] * 4 / 3
    runtime = site / "static" / "vendor" / "onnxruntime-web"
    assert sorted(p.name for p in runtime.iterdir()) == sorted(["LICENSE", *trypage.RUNTIME_FILES])
    assert (
        "Microsoft" in (runtime / "LICENSE").read_text()
    )  # only the classic-script form ships, with its licence
    unit = (site / "demonet" / LAYER / "f" / "3" / "index.html").read_text()
    assert "../../../try/index.html#layer=mixed5b&amp;f=3" in unit
    cfg = load_config(config)
    projected = plan.project(artifacts=arts, **site_stage.site_fields(cfg)).parts[sizes.TRY]
    actual = size_breakdown(site)[sizes.TRY]
    assert abs(projected - actual) <= 0.01 * actual, (projected, actual)


def test_auto_leaves_the_image_copies_out_only_when_they_would_break_the_budget(tiny_copy):
    import io

    import yaml

    from atlasgen.pipeline import Pipeline
    from atlasgen.progress import Console

    folder, config, site = tiny_copy
    copies = site / "demonet" / "try" / "images"
    assert load_config(config).site.try_dataset_images == "auto" and any(copies.iterdir())
    full = plan.project(artifacts=_folders(folder), **site_stage.site_fields(load_config(config)))
    assert full.copies > 0
    data = yaml.safe_load(config.read_text())
    # A budget the site meets only without the copies: auto leaves them out and says so.
    data.setdefault("site", {})["size_budget_mb"] = (full.total - full.copies / 2) / 1e6
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    out = io.StringIO()
    Pipeline(load_config(config), console=Console(2, stream=out)).build()
    said = out.getvalue()
    assert "copies of the dataset images" in said and "are left out" in said, said
    assert not copies.exists()
    page = (site / "demonet" / "try" / "index.html").read_text()
    assert '"dataset_images": null' in page or '"dataset_images":null' in page
    actual = size_breakdown(site)[sizes.TRY]
    assert abs((full.parts[sizes.TRY] - full.copies) - actual) <= 0.01 * actual
    # true keeps them, and the same budget then stops the build before anything is rendered.
    data["site"]["try_dataset_images"] = True
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(publish.SizeBudgetError, match="over the budget"):
        Pipeline(load_config(config), console=Console(0)).build()
    assert not copies.exists()  # the site folder is unchanged


def test_without_the_artifact_there_is_no_try_page(tmp_path):
    (tmp_path / "skipped.json").write_text('{"reason": "try_image.enabled is false"}')
    assert trypage.load_try(tmp_path) is None and trypage.load_try(None) is None
    indexes = {LAYER: type("Index", (), {})()}
    trypage.mark_layers(indexes, None)
    assert indexes[LAYER].has_try is False


# ---------------------------------------------------------------- in the browser


def _python_top(folder: Path, config: Path, path: Path, top: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    """atlasgen's Python pipeline on an image file: load_rgb, the dataset's resize and crop, the model,
    the SAE; (the top feature ids, all feature maxima, the dataset-class logits)."""
    cfg = load_config(config)
    arts = _folders(folder)
    data = open_dataset(arts["dataset"])
    model = load_model(arts["model"], cfg.model, data.n_classes)
    sae = load_sae_any(arts["sae"] / LAYER).eval()
    pixels = np.asarray(resize_center_crop(load_rgb(path), data.image_size, 1.0))[None]
    out = pipeline_outputs(
        model, LAYER, sae, as_model_input(pixels.copy()), class_outputs(model, data.n_classes)
    )
    fm = out["feature_max"][0]
    ids = [int(i) for i in np.argsort(-fm, kind="stable")[:top] if fm[i] > 0]
    return ids, fm, out["logits"][0]


@pytest.fixture(scope="module")
def reader_images(tiny_build, tmp_path_factory):
    """Two reader images: a dataset image at the model's size, and a larger non-square one (resized)."""
    folder, _, _ = tiny_build
    data = open_dataset(_folders(folder)["dataset"])
    out = tmp_path_factory.mktemp("reader")
    exact, resized = out / "exact.png", out / "resized.png"
    Image.fromarray(data.image(int(data.indices("heldout")[0]))).save(exact)
    big = np.asarray(
        Image.fromarray(data.image(int(data.indices("heldout")[1]))).resize((77, 53), Image.BILINEAR)
    )
    Image.fromarray(big).save(resized)
    return [exact, resized]


def _run_page(url: str, images: list[Path], allowed: tuple[str, ...]) -> tuple[list[dict], list[str]]:
    from playwright.sync_api import sync_playwright

    results, outside = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.on("request", lambda r: None if r.url.startswith(allowed) else outside.append(r.url))
        page.goto(url)
        for image in images:
            page.evaluate("window.ATLAS_TRY_RESULT = null")
            page.set_input_files("#try-file", str(image))
            page.wait_for_function("window.ATLAS_TRY_RESULT || window.ATLAS_TRY_ERROR", timeout=120_000)
            assert page.evaluate("window.ATLAS_TRY_ERROR || null") is None
            shown = page.eval_on_selector_all(
                "#try-features li[data-unit]", "els => els.map(e => [e.dataset.unit, +e.dataset.value])"
            )
            result = page.evaluate("window.ATLAS_TRY_RESULT")
            result["shown"] = shown
            results.append(result)
        browser.close()
    return results, outside


@pytest.mark.parametrize("over", ["file", "http"])
def test_the_page_finds_the_pipelines_top_features(tiny_build, reader_images, over):
    """Through the file input, from file:// and over HTTP: the page's top-10 features are the Python
    pipeline's, their activations within the tolerance the build checked (relative to the image's
    largest), the predictions the same; nothing is requested from outside the site."""
    folder, config, site = tiny_build
    check = json.loads((_folders(folder)["tryimage"] / LAYER / "check.json").read_text())
    tolerance = check["tolerance"]
    if over == "file":
        results, outside = _run_page(
            (site / "demonet" / "try" / "index.html").as_uri(),
            reader_images,
            (site.as_uri() + "/", "blob:null/"),
        )
    else:
        with serve_folder(site) as port:
            base = f"http://127.0.0.1:{port}"
            results, outside = _run_page(
                f"{base}/demonet/try/index.html", reader_images, (base + "/", f"blob:{base}/")
            )
    assert outside == []
    for image, result in zip(reader_images, results):
        ids, fm, logits = _python_top(folder, config, image, 10)
        assert [f["id"] for f in result["features"]] == ids
        assert [u for u, _ in result["shown"]] == [f"f/{i}" for i in ids]
        scale = float(fm.max())
        for _, value in result["shown"]:
            assert value >= 0
        for f in result["features"]:
            assert abs(f["value"] - float(fm[f["id"]])) <= tolerance * scale, (f, fm[f["id"]])
        assert result["predictions"][0]["class"] == int(np.argmax(logits))


def _unit_with_examples(site: Path, kind: str) -> int:
    """The first unit of ``kind`` whose page shows dataset examples both at the top and in a band."""
    for page in sorted(
        (site / "demonet" / LAYER / kind).glob("*/index.html"), key=lambda p: int(p.parent.name)
    ):
        html = page.read_text()
        top, _, bands = html.partition('id="bands-title"')
        if '<li><div class="ex-img"' in top and '<li><div class="ex-img"' in bands:
            return int(page.parent.name)
    raise AssertionError(f"no {kind} page with top and band examples")


def _try_from_unit_page(
    url: str, allowed: tuple[str, ...], picks: list[int]
) -> tuple[list[dict], list[str], list[str]]:
    """Open a unit page, follow its ``picks``-th "try this image" links one after the other; per link
    (the image's site path, the try page's result, the pinned row); the requests, and those outside."""
    from playwright.sync_api import sync_playwright

    results, requests, outside = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("request", lambda r: None if r.url.startswith(allowed) else outside.append(r.url))
        for k in picks:
            page.goto(url)
            links = page.eval_on_selector_all(
                "a.ex-try",
                "els => els.map(e => [e.getAttribute('href'), "
                "e.closest('li').querySelector('img').getAttribute('src')])",
            )
            figures = page.eval_on_selector_all("[data-try] .examples > li", "els => els.length")
            assert len(links) == figures > 0
            href, src = links[k]
            page.click(f"a.ex-try >> nth={k}")
            page.wait_for_function("window.ATLAS_TRY_RESULT || window.ATLAS_TRY_ERROR", timeout=120_000)
            assert page.evaluate("window.ATLAS_TRY_ERROR || null") is None
            result = page.evaluate("window.ATLAS_TRY_RESULT")
            result["image"] = href.split("&img=")[1]
            assert src.endswith(result["image"])
            result["pinned"] = page.eval_on_selector_all(
                "#try-pinned-list li[data-unit]", "els => els.map(e => [e.dataset.unit, +e.dataset.value])"
            )
            result["caption"] = page.inner_text("#try-caption")
            results.append(result)
        browser.close()
    return results, requests, outside


@pytest.mark.parametrize("over", ["file", "http"])
@pytest.mark.parametrize("kind", ["f", "n"])
def test_try_this_image_from_a_unit_page(tiny_build, over, kind):
    """A unit page's "try this image" (a top example and a band example) opens the try page with that
    dataset image: its top features are those of the Python pipeline on the site's copy of the image,
    the unit is pinned with its value; from file:// the page reads the image's data: URL copy, over HTTP
    the image itself; nothing is requested from outside the site."""
    folder, config, site = tiny_build
    unit = _unit_with_examples(site, kind)
    tolerance = json.loads((_folders(folder)["tryimage"] / LAYER / "check.json").read_text())["tolerance"]
    path = f"demonet/{LAYER}/{kind}/{unit}/index.html"
    if over == "file":
        results, requests, outside = _try_from_unit_page(
            (site / path).as_uri(), (site.as_uri() + "/", "blob:null/"), [0, -1]
        )
    else:
        with serve_folder(site) as port:
            base = f"http://127.0.0.1:{port}"
            results, requests, outside = _try_from_unit_page(
                f"{base}/{path}", (base + "/", f"blob:{base}/"), [0, -1]
            )
    assert outside == []
    assert results[0]["image"] != results[1]["image"]  # a top example, then the last band's
    for result in results:
        copy = f"demonet/try/{result['image'][: -len('.webp')]}.js"
        assert (site / copy).is_file()
        assert any(u.endswith(copy) for u in requests) == (over == "file")
        ids, fm, logits = _python_top(folder, config, site / result["image"], 10)
        assert [f["id"] for f in result["features"]] == ids
        scale = float(fm.max())
        for f in result["features"]:
            assert abs(f["value"] - float(fm[f["id"]])) <= tolerance * scale
        assert result["predictions"][0]["class"] == int(np.argmax(logits))
        assert [u for u, _ in result["pinned"]] == [f"{kind}/{unit}"]
        assert result["image"] in result["caption"]
    if kind == "f":
        value = dict((f["id"], f["value"]) for f in results[0]["features"]).get(unit)
        if value is not None:
            assert results[0]["pinned"][0][1] == pytest.approx(value)


def test_model_and_layer_pages_link_to_the_try_page(tiny_build):
    """The model page links to the try page, the layer page to it with that layer chosen."""
    _, _, site = tiny_build
    model = (site / "demonet" / "index.html").read_text()
    assert '<a href="try/index.html">Try your own image</a>' in model
    layer = (site / "demonet" / LAYER / "index.html").read_text()
    assert f'href="../try/index.html#layer={LAYER}" data-key="try-layer"' in layer
    assert (site / "demonet" / "try" / "index.html").is_file()


def test_the_game_plays_rounds_with_the_readers_images(tiny_build, reader_images):
    """Two reader images added on the try page (from file://) become rounds on the layer's game page:
    a round built from one of them shows its most active features by activation relative to the
    feature's dataset maximum, as the Python pipeline computes them, among the candidates are the
    reader's images and held-out images, and the right pick scores."""
    from playwright.sync_api import sync_playwright

    folder, config, site = tiny_build
    arts = _folders(folder)
    n_features = json.loads(
        (site / "demonet" / "try" / "index.html")
        .read_text()
        .split("window.ATLAS_TRY = ")[1]
        .split(";</script>")[0]
    )["game"][LAYER]["features"]
    from atlasgen.site.artifacts import load_artifacts

    max_act = load_artifacts({k: Path(v) for k, v in arts.items()}, [LAYER]).layers[0].features.max_act
    expected = {}
    for image in reader_images:
        _, fm, _ = _python_top(folder, config, image, 10)
        rel = np.where(max_act > 0, fm / np.where(max_act > 0, max_act, 1), 0)
        order = [int(i) for i in np.lexsort((np.arange(len(rel)), -rel)) if rel[i] > 0][:n_features]
        expected[image.name] = order
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto((site / "demonet" / "try" / "index.html").as_uri())
        for image in reader_images:
            page.evaluate("window.ATLAS_TRY_RESULT = null")
            page.set_input_files("#try-file", str(image))
            page.wait_for_function("window.ATLAS_TRY_RESULT || window.ATLAS_TRY_ERROR", timeout=120_000)
            page.click("#try-game-add")
        assert "2 images of yours" in page.inner_text("#try-game-status")
        page.goto((site / "demonet" / LAYER / "game" / "index.html").as_uri())
        assert "2 images of yours" in page.inner_text("#g-reader-count")
        seen = set()
        for _ in range(40):
            page.click("#g-reader-play")
            r = page.evaluate("window.ATLAS_GAME_READER")
            shown = page.eval_on_selector_all(
                "#g-features .card b", "els => els.map(e => +e.textContent.slice(2))"
            )
            assert shown == r["features"]
            n_mine = page.eval_on_selector_all("#g-choices [data-reader]", "els => els.length")
            n_all = page.eval_on_selector_all("#g-choices button", "els => els.length")
            assert n_mine == 2 and n_all > n_mine
            if r["mine"]:
                assert shown == expected[r["name"]]
                seen.add(r["name"])
            page.click(f"#g-choices button >> nth={r['answer']}")
            assert page.inner_text("#verdict") == "Right!"
            if len(seen) == 2:
                break
        assert seen == {image.name for image in reader_images}
        browser.close()
