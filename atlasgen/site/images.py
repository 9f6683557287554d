"""Images the site writes: dataset thumbnails (once each) and heat-map overlays."""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from atlasgen.site.artifacts import Dataset

THUMB_SIZE = 96  # longest side of a dataset image as stored in images/
WEBP_QUALITY = 85


class DatasetImages:
    """Writes each dataset image the site shows once, as ``images/<sha256[:16]>.webp``.

    Pages ask for an image by dataset index and get its root-relative path;
    the file is encoded and written on first request only.
    """

    def __init__(self, dataset: Dataset, out_dir: Path):
        self.dataset = dataset
        self.out_dir = Path(out_dir)
        self._by_index: dict[int, str] = {}
        self._written: set[str] = set()
        self.files = 0
        self.bytes = 0

    def prepare(self, indices, workers: int = 8) -> None:
        """Encode and write many images at once, in threads (Pillow's encoder releases the GIL)."""
        todo = sorted({int(i) for i in indices if int(i) >= 0} - set(self._by_index))
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            encoded = list(pool.map(lambda i: encode_thumbnail(self.dataset.image(i)), todo))
        for index, data in zip(todo, encoded):  # in index order: the same files every run
            self._store(index, data)

    def url(self, index: int) -> str:
        """Root-relative path of dataset image ``index`` (written on first use)."""
        index = int(index)
        cached = self._by_index.get(index)
        if cached is not None:
            return cached
        return self._store(index, encode_thumbnail(self.dataset.image(index)))

    def _store(self, index: int, data: bytes) -> str:
        rel = f"images/{hashlib.sha256(data).hexdigest()[:16]}.webp"
        if rel not in self._written:  # identical pixels share one file
            path = self.out_dir / rel
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            self._written.add(rel)
            self.files += 1
            self.bytes += len(data)
        self._by_index[index] = rel
        return rel

    @property
    def pixelated(self) -> bool:
        """Whether stored images are smaller than their display size (crisp upscaling)."""
        size = self.dataset.info.get("image_size")
        return bool(size) and int(size) < THUMB_SIZE


def encode_thumbnail(rgb: np.ndarray) -> bytes:
    """Downscale (never upscale) to THUMB_SIZE and encode as WebP."""
    im = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if max(im.size) > THUMB_SIZE:
        im.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "WEBP", quality=WEBP_QUALITY, method=4)
    return buf.getvalue()


# Heat-map colour: a warm highlight where the unit fires, a dark veil where it
# does not, so the firing region reads at a glance on any image.
_HOT = np.array([255, 176, 0], dtype=np.float32)


def heatmap_data_uris(act_maps: np.ndarray, scale: float) -> list[str]:
    """One tiny RGBA PNG data URI per (H, W) activation map in ``act_maps`` (k, H, W).

    Each PNG has one pixel per layer position; the browser upsamples it
    smoothly over the example image. Values are divided by ``scale`` (the
    unit's max activation over the dataset) so weak examples look weak.
    """
    a = np.asarray(act_maps, dtype=np.float32)
    v = np.clip(a / scale, 0.0, 1.0) if scale > 0 else np.zeros_like(a)
    rgba = np.empty(v.shape + (4,), dtype=np.uint8)
    # Low values: black veil (alpha up to 0.6); high values: warm tint (alpha up to 0.45).
    rgba[..., :3] = (v[..., None] * _HOT).round().astype(np.uint8)
    alpha = np.where(v < 0.5, 0.6 * (1.0 - 2.0 * v), 0.45 * (2.0 * v - 1.0))
    rgba[..., 3] = np.round(alpha * 255).astype(np.uint8)
    if rgba.ndim != 4 or rgba.shape[0] == 0:
        return ["data:image/png;base64," + base64.b64encode(png_rgba(m)).decode("ascii") for m in rgba]
    # Batched png_rgba (same bytes): the filter byte of every row at once, one header for all maps.
    k, h, w = rgba.shape[:3]
    raw = np.zeros((k, h, 1 + 4 * w), dtype=np.uint8)
    raw[:, :, 1:] = rgba.reshape(k, h, 4 * w)
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
    tail = _chunk(b"IEND", b"")
    return ["data:image/png;base64," + base64.b64encode(
        head + _chunk(b"IDAT", zlib.compress(raw[j].tobytes(), 9)) + tail).decode("ascii") for j in range(k)]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_rgba(rgba: np.ndarray) -> bytes:
    """Minimal 8-bit RGBA PNG encoder: for tiny heat-maps it is ~10x faster than a Pillow save."""
    h, w = rgba.shape[:2]
    raw = b"".join(b"\x00" + rgba[y].tobytes() for y in range(h))  # filter type 0 per row
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b""))
