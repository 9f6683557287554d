"""The bad-file zoo: every odd or broken file in an image folder is converted or skipped, never fatal."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from atlasgen import pipeline
from atlasgen.config import parse_config
from atlasgen.data import BadImage, load_rgb, open_dataset, scan_image_folder
from atlasgen.progress import Console
from atlasgen.site.artifacts import load_dataset


def _gradient(size=40):
    y, x = np.mgrid[:size, :size]
    return np.stack([x * 6, y * 6, (x + y) * 3], -1).astype(np.uint8)


def _write_zoo(root):
    """Two class folders holding every kind of file the issue names. Returns {name: expected}."""
    a, b = root / "apples", root / "boats"
    a.mkdir(parents=True)
    b.mkdir()
    rgb = Image.fromarray(_gradient())
    rgb.save(a / "rgb.jpg", quality=95)
    rgb.convert("L").save(a / "gray.png")
    rgb.convert("CMYK").save(a / "cmyk.jpg")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(a / "palette.gif")
    rgba = rgb.convert("RGBA")
    alpha = np.zeros((40, 40), np.uint8)
    alpha[:, 20:] = 255  # left half transparent: must become white, not black
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(a / "rgba.png")
    Image.fromarray(_gradient()[..., 0].astype(np.uint16) * 257).save(b / "sixteen.png")  # I;16
    Image.fromarray(_gradient(6)).save(b / "tiny.png")
    (b / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 3)
    buf = io.BytesIO()
    rgb.save(buf, "JPEG")
    (b / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    (b / "empty.png").write_bytes(b"")
    (b / "notes.txt").write_text("not an image")
    (b / "fake.webp").write_text("<html>also not an image</html>")
    Image.fromarray(_gradient()).save(b / "good.png")
    return {
        "kept": {"rgb.jpg", "gray.png", "cmyk.jpg", "palette.gif", "rgba.png", "sixteen.png", "good.png"},
        "skipped": {"tiny.png", "corrupt.jpg", "truncated.jpg", "empty.png", "notes.txt", "fake.webp"},
    }


def test_scan_converts_or_skips_every_file(tmp_path):
    expected = _write_zoo(tmp_path / "zoo")
    classes, paths, labels, skipped, converted = scan_image_folder(tmp_path / "zoo", 0, min_side=16)
    assert classes == ["apples", "boats"]
    assert {p.rsplit("/", 1)[1] for p in paths} == expected["kept"]
    reasons = {p.rsplit("/", 1)[1]: r for p, r in skipped}
    assert set(reasons) == expected["skipped"]
    assert "too small" in reasons["tiny.png"] and "not an image file" in reasons["notes.txt"]
    assert all("corrupt" in reasons[n] for n in ("corrupt.jpg", "truncated.jpg", "empty.png", "fake.webp"))
    assert converted == {"CMYK": 1, "I;16": 1, "L": 1, "P": 1, "RGBA": 1}
    assert labels == sorted(labels)


def test_conversions_keep_the_picture(tmp_path):
    _write_zoo(tmp_path / "zoo")
    ref = _gradient().astype(int)
    rgba = np.asarray(load_rgb(tmp_path / "zoo/apples/rgba.png")).astype(int)
    assert (rgba[:, :20] == 255).all()  # transparent: white
    assert np.abs(rgba[:, 20:] - ref[:, 20:]).max() <= 1
    sixteen = np.asarray(load_rgb(tmp_path / "zoo/boats/sixteen.png")).astype(int)
    assert np.abs(sixteen[..., 0] - ref[..., 0]).max() <= 1  # scaled from 16 bits, not clipped at 255
    gray = np.asarray(load_rgb(tmp_path / "zoo/apples/gray.png"))
    assert gray.shape == (40, 40, 3) and (gray[..., 0] == gray[..., 2]).all()
    with pytest.raises(BadImage, match="corrupt"):
        load_rgb(tmp_path / "zoo/boats/truncated.jpg")


def test_dataset_stage_lists_bad_files_in_the_build_summary(tmp_path, monkeypatch):
    _write_zoo(tmp_path / "zoo")
    cfg = parse_config(
        {
            "device": "cpu",
            "dataset": {
                "source": "folder",
                "path": "zoo",
                "image_size": 32,
                "images_per_class": 0,
                "holdout_fraction": 0.2,
            },
        },
        root=tmp_path,
    )
    monkeypatch.setattr(pipeline, "STAGES", pipeline.STAGES[:1])  # the dataset stage alone
    monkeypatch.setattr(pipeline.Pipeline, "_build_site", lambda self, *a: None)
    monkeypatch.setattr(pipeline.ArtifactStore, "prune", lambda self, *a: None)
    p = pipeline.Pipeline(cfg, console=Console(0))
    summary = p.build()
    text = pipeline.format_summary(summary, tmp_path / "_site", 1.0)
    assert "skipped 6 file(s)" in text and "boats/corrupt.jpg: unreadable or corrupt" in text
    assert "converted to 8-bit RGB: 1 CMYK, 1 I;16, 1 L, 1 P, 1 RGBA" in text
    # A second build finds the stage cached and still reports the skipped files.
    again = pipeline.format_summary(p.build(), tmp_path / "_site", 1.0)
    assert "boats/tiny.png: too small" in again
    folder = next((tmp_path / ".atlasgen" / "dataset").glob("*/dataset.json")).parent
    assert len(json.loads((folder / "skipped.json").read_text())) == 6
    data = open_dataset(folder)
    pixels = data.pixels(np.arange(len(data)))  # every kept file decodes
    assert pixels.shape == (7, 32, 32, 3) and pixels.dtype == np.uint8
    site_view = load_dataset(folder)
    assert all(site_view.image(i).ndim == 3 for i in range(len(data)))
