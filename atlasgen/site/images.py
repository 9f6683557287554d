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
# WebP quality and effort of those images: at 96 px a photograph takes 1.63 KB at quality 75 with the
# slowest, best method (6), against 2.42 KB at 85 with method 4, and looks the same at the cards' size
# (benchmarks/bench_render.py prices 100,000 of them in its reference projection).
WEBP_QUALITY = 75
WEBP_METHOD = 6


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
    im.save(buf, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    return buf.getvalue()


# Heat-map colour scale: matplotlib's "inferno" (black through purple and orange to pale yellow), whose
# luminance rises monotonically, drawn at one constant opacity. Over any image pixel the composited
# brightness then rises with the activation: silent regions get a dark veil, the maximum the brightest
# tint, which reads on dark images too. The page shows the scale as a legend (heat_gradient_css).
_INFERNO = (
    (0, 0, 4),
    (27, 12, 65),
    (74, 12, 107),
    (120, 28, 109),
    (165, 44, 96),
    (207, 68, 70),
    (237, 105, 37),
    (251, 155, 6),
    (252, 255, 164),
)
HEAT_ALPHA = 0.55  # opacity of the overlay at every level


HEAT_LEVELS = 64  # heat-map values are drawn in this many steps (a palette PNG; steps of 1/63 do not show)


def heat_levels(act_maps: np.ndarray, scale: float) -> np.ndarray:
    """Heat-map level (uint8, 0 .. HEAT_LEVELS - 1) of activation maps (k, H, W) relative to ``scale``."""
    a = np.asarray(act_maps, dtype=np.float32)
    v = np.clip(a / scale, 0.0, 1.0) if scale > 0 else np.zeros_like(a)
    return np.round(v * (HEAT_LEVELS - 1)).astype(np.uint8)


def _inferno(v: np.ndarray) -> np.ndarray:
    """RGB (n, 3) float of the inferno scale at ``v`` in [0, 1] (linear between its stops)."""
    stops = np.asarray(_INFERNO, dtype=np.float64)
    x = np.linspace(0.0, 1.0, len(stops))
    return np.stack([np.interp(v, x, stops[:, c]) for c in range(3)], axis=-1)


def heat_palette() -> np.ndarray:
    """RGBA colour (HEAT_LEVELS, 4) of each level: the inferno scale at opacity HEAT_ALPHA (monotone in
    brightness over any background; tests/test_site_numbers.py checks it)."""
    v = np.arange(HEAT_LEVELS, dtype=np.float64) / (HEAT_LEVELS - 1)
    rgba = np.empty((HEAT_LEVELS, 4), dtype=np.uint8)
    rgba[:, :3] = np.round(_inferno(v)).astype(np.uint8)
    rgba[:, 3] = round(HEAT_ALPHA * 255)
    return rgba


def heat_gradient_css() -> str:
    """CSS linear-gradient of the heat-map scale from 0 (left) to the maximum (right), for the legend."""
    stops = ", ".join(
        f"rgb({r},{g},{b}) {100 * n / (len(_INFERNO) - 1):.1f}%" for n, (r, g, b) in enumerate(_INFERNO)
    )
    return f"linear-gradient(to right, {stops})"


def heatmap_rgba(act_maps: np.ndarray, scale: float) -> np.ndarray:
    """RGBA heat-map colours (k, H, W, 4) of activation maps (k, H, W), relative to ``scale``."""
    return heat_palette()[heat_levels(act_maps, scale)]


class HeatSprite:
    """Every heat-map of one page in one PNG strip, shown by CSS (the size budget).

    Tiles are stacked top to bottom in the order they are added, each with a
    one-pixel border that repeats its edge pixels: the box shows only the
    inner H x W pixels, stretched over the example image, and smooth
    upscaling near the box edge samples the repeated border (as a lone image
    clamps at its edge) rather than the neighbouring tile. One strip per page
    replaces a data-URI PNG per example: one PNG header instead of 37, and
    zlib sees every tile at once. The strip is a palette PNG of the levels it
    uses (one byte per pixel instead of four).
    """

    def __init__(self):
        self._tiles: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(t) for t in self._tiles)

    def add(self, act_maps: np.ndarray, scale: float) -> list[int]:
        """Add maps (k, H, W) relative to ``scale``; return their tile numbers."""
        q = heat_levels(act_maps, scale)
        if self._tiles and q.shape[1:3] != self._tiles[0].shape[1:3]:
            raise ValueError(
                f"heat-maps of one page must share a grid: {q.shape[1:3]} != {self._tiles[0].shape[1:3]}"
            )
        start = len(self)
        self._tiles.append(q)
        return list(range(start, start + len(q)))

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self._tiles[0].shape[1:3]) if self._tiles else (0, 0)

    def png(self) -> bytes:
        tiles = np.concatenate(self._tiles)
        padded = np.pad(tiles, ((0, 0), (1, 1), (1, 1)), mode="edge")
        n, h, w = padded.shape
        used = np.flatnonzero(
            np.bincount(padded.ravel(), minlength=HEAT_LEVELS)
        )  # sorted: same bytes every run
        lut = np.zeros(HEAT_LEVELS, dtype=np.uint8)
        lut[used] = np.arange(len(used), dtype=np.uint8)
        return png_palette(lut[padded].reshape(n * h, w), heat_palette()[used])

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png()).decode("ascii")

    def css(self) -> str:
        """``background-size`` of the strip over one example box (the inner H x W of a tile fills the box)."""
        h, w = self.grid
        n = len(self)
        return f"background-size:{100 * (w + 2) / w:.6g}% {100 * n * (h + 2) / h:.6g}%"

    def position(self, tile: int) -> str:
        """Vertical ``background-position`` (percent) that shows tile ``tile`` in the box.

        A percentage p aligns the strip's point p with the box's point p: offset
        p * (box - strip). Tile t's inner area starts t * (H + 2) + 1 strip pixels
        down, so p = (t (H + 2) + 1) / (N (H + 2) - H); horizontally p = 50 %
        skips the one-pixel border on both sides.
        """
        h, _ = self.grid
        n = len(self)
        return f"{100 * (tile * (h + 2) + 1) / (n * (h + 2) - h):.3f}%"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_palette(index: np.ndarray, palette: np.ndarray) -> bytes:
    """8-bit palette PNG of ``index`` (H, W) uint8 into ``palette`` (n, 4) RGBA (PLTE and tRNS chunks)."""
    h, w = index.shape
    raw = np.zeros((h, 1 + w), dtype=np.uint8)  # filter type 0 at the start of each row
    raw[:, 1:] = index
    palette = np.ascontiguousarray(palette, dtype=np.uint8)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
        + _chunk(b"PLTE", palette[:, :3].tobytes())
        + _chunk(b"tRNS", palette[:, 3].tobytes())
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
        + _chunk(b"IEND", b"")
    )


def png_rgba(rgba: np.ndarray) -> bytes:
    """Minimal 8-bit RGBA PNG encoder: for a page's heat-map strip it is ~10x faster than a Pillow save."""
    h, w = rgba.shape[:2]
    raw = np.zeros((h, 1 + 4 * w), dtype=np.uint8)  # filter type 0 at the start of each row
    raw[:, 1:] = np.ascontiguousarray(rgba, dtype=np.uint8).reshape(h, 4 * w)
    raw = raw.tobytes()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )
