"""Procedurally generated demo dataset with planted hierarchical structure.

The atlas is easiest to judge on data whose structure is known in advance, so every image
here is drawn from scratch with Pillow and the structure is planted at three levels:

* superclasses share a visual theme: animals are organic blobs with eyes and fur marks,
  plants are green stems, leaves and petals, vehicles are wheels, boxes and windows,
  buildings are walls, roofs, grids and bricks;
* classes inside a superclass share that theme but each has its own cue (a dog's floppy
  ears, a cat's pointed ears and whiskers, a fish's tail and fins...);
* each class has three facets: different compositions of the same cue (a close-up, the
  whole subject in a scene, a group or a context), the way a real class is multimodal.

Positions, sizes, rotations, colours and background clutter are randomised so that the
cues are learnable but not trivial, and a global photometric jitter plus a random mirror
keep colour and layout from being shortcuts on their own.

Each image has its own random streams seeded from (seed, class, facet, index), so an image
does not depend on any other image or on generation order, and the same image can be
rendered again on its own (which the atlas does for thumbnails).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CLASSES", "SUPERCLASSES", "DemoClass", "DemoData", "generate", "render_image"]

RGB = tuple[int, int, int]
Point = tuple[float, float]

# Shapes are drawn at twice the output size and box-downsampled, a cheap anti-aliasing:
# plain ImageDraw edges are hard, and at 64 px that makes thin lines flicker in and out.
# Textures are smooth and only need the output resolution (see _Scene.texture_image).
_SUPERSAMPLE = 2

# Distinct first words keep the per-image streams apart from the shuffle stream:
# SeedSequence pads short entropy with zeros, so [seed] alone could collide with an image key.
_IMAGE_STREAM = 0
_SHUFFLE_STREAM = 1


# --------------------------------------------------------------------------------------
# Colour and texture helpers


def _mix(c1: Sequence[float], c2: Sequence[float], t: float) -> RGB:
    """Linear blend of two colours, t=0 gives c1."""
    return tuple(int(a + (b - a) * t) for a, b in zip(c1, c2))  # type: ignore[return-value]


@functools.lru_cache(maxsize=8)
def _grid(px: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1] for a px x px canvas (cached: textures reuse it)."""
    a = (np.arange(px, dtype=np.float32) + 0.5) / px
    x, y = np.meshgrid(a, a)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _lerp(t: np.ndarray, c1: Sequence[float], c2: Sequence[float]) -> np.ndarray:
    """Map a scalar field t in [0, 1] to colours between c1 and c2: (H, W) -> (H, W, 3)."""
    out = np.empty(t.shape + (3,), np.float32)
    # One pass per channel: broadcasting (H, W, 1) against (3,) runs an inner loop of
    # length 3 and is several times slower.
    for ch in range(3):
        out[..., ch] = t * float(c2[ch] - c1[ch]) + float(c1[ch])
    return out


def _to_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _upscale(img: Image.Image, factor: int) -> Image.Image:
    """Nearest-neighbour upscale: each pixel becomes a factor x factor block, which the final
    box downsample turns back into exactly that pixel."""
    return img.resize((img.width * factor, img.height * factor), Image.NEAREST)


@functools.lru_cache(maxsize=64)
def _unit_circle(n: int) -> tuple[Point, ...]:
    return tuple((math.cos(2 * math.pi * k / n), math.sin(2 * math.pi * k / n)) for k in range(n))


# --------------------------------------------------------------------------------------
# Scene: a drawing surface in unit coordinates with a pose stack


class _Scene:
    """Drawing surface in unit coordinates, (0, 0) top-left to (1, 1) bottom-right.

    A pose stack maps local coordinates to the canvas, so each motif (a dog's head, a
    wheel, a frond) is written once in its own frame and then placed, scaled and rotated
    by the facets that use it. The canvas is `size * _SUPERSAMPLE` pixels wide; texture
    arrays are `size` wide. The scene also carries the image's two random streams: `r`
    (Python's, fast for the many scalar draws) and `nr` (NumPy's, for texture arrays).
    """

    def __init__(self, size: int, r: random.Random, nr: np.random.Generator):
        self.size = size
        self.px = size * _SUPERSAMPLE
        px = self.px
        self.r = r
        self.nr = nr
        self.img = Image.new("RGB", (px, px))
        self.draw = ImageDraw.Draw(self.img)
        self.bg_mean: RGB = (128, 128, 128)
        # Affine map local -> pixels: x' = a*x + b*y + e, y' = c*x + d*y + f.
        self._m = (float(px), 0.0, 0.0, float(px), 0.0, 0.0)
        self._unit = float(px)  # pixels per local unit, for line widths and circle radii

    # ---- randomness
    def u(self, lo: float, hi: float) -> float:
        return self.r.uniform(lo, hi)

    def pick(self, seq: Sequence):
        return self.r.choice(seq)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def jit(self, rgb: Sequence[int], amount: float = 20) -> RGB:
        """Colour jitter, so that no class is identified by one exact colour."""
        shift = self.r.uniform(-amount, amount) * 0.5  # shared part: lighter / darker
        return tuple(  # type: ignore[return-value]
            min(255, max(0, int(c + shift + self.r.uniform(-amount, amount) * 0.5))) for c in rgb
        )

    # ---- pose
    @contextmanager
    def pose(self, x: float, y: float, scale: float = 1.0, angle: float = 0.0) -> Iterator[None]:
        """Draw the block's shapes with their local origin at (x, y), scaled and rotated (degrees)."""
        a, b, c, d, e, f = self._m
        t = math.radians(angle)
        co, si = math.cos(t) * scale, math.sin(t) * scale
        saved = self._m, self._unit
        self._m = (
            a * co + b * si,
            -a * si + b * co,
            c * co + d * si,
            -c * si + d * co,
            a * x + b * y + e,
            c * x + d * y + f,
        )
        self._unit *= scale
        try:
            yield
        finally:
            self._m, self._unit = saved

    def _xy(self, pts: Sequence[Point]) -> list[Point]:
        a, b, c, d, e, f = self._m
        return [(a * x + b * y + e, c * x + d * y + f) for x, y in pts]

    def _w(self, width: float) -> int:
        return max(1, round(width * self._unit))

    def _segments(self, radius: float) -> int:
        """Polygon vertex count for a curve of this local radius: about one per 3 px of outline."""
        return max(8, min(48, int(2 * radius * self._unit)))

    # ---- shapes
    def poly(self, pts: Sequence[Point], fill=None, outline=None, width: float = 0.02) -> None:
        self.draw.polygon(self._xy(pts), fill=fill, outline=outline, width=self._w(width) if outline else 0)

    def rect(self, x0, y0, x1, y1, fill=None, outline=None, width: float = 0.02) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill, outline, width)

    def rrect(self, x0, y0, x1, y1, radius, fill=None, outline=None, width: float = 0.02) -> None:
        """Rectangle with rounded corners (bodies of vehicles, cushions, pots)."""
        r = min(radius, (x1 - x0) / 2, (y1 - y0) / 2)
        pts = []
        for cx, cy, a0 in (
            (x1 - r, y0 + r, -90),
            (x1 - r, y1 - r, 0),
            (x0 + r, y1 - r, 90),
            (x0 + r, y0 + r, 180),
        ):
            for k in range(5):
                a = math.radians(a0 + 22.5 * k)
                pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
        self.poly(pts, fill, outline, width)

    def ellipse_pts(self, cx, cy, rx, ry, angle: float = 0.0) -> list[Point]:
        t = math.radians(angle)
        co, si = math.cos(t), math.sin(t)
        return [
            (cx + rx * u * co - ry * v * si, cy + rx * u * si + ry * v * co)
            for u, v in _unit_circle(self._segments(max(rx, ry)))
        ]

    def ellipse(
        self, cx, cy, rx, ry, fill=None, outline=None, width: float = 0.02, angle: float = 0.0
    ) -> None:
        self.poly(self.ellipse_pts(cx, cy, rx, ry, angle), fill, outline, width)

    def circle(self, cx, cy, r, fill=None, outline=None, width: float = 0.02) -> None:
        # A circle survives any rotation, so Pillow's own (faster) ellipse will do.
        ((x, y),) = self._xy([(cx, cy)])
        rp = r * self._unit
        self.draw.ellipse(
            (x - rp, y - rp, x + rp, y + rp),
            fill=fill,
            outline=outline,
            width=self._w(width) if outline else 0,
        )

    def line(self, pts: Sequence[Point], fill, width: float = 0.02) -> None:
        self.draw.line(
            self._xy(pts), fill=fill, width=self._w(width), joint="curve" if len(pts) > 2 else None
        )

    def arc(self, cx, cy, rx, ry, a0, a1, fill, width: float = 0.02) -> None:
        """Part of an ellipse outline from angle a0 to a1 (degrees, clockwise on screen)."""
        n = max(3, int(abs(a1 - a0) / 15))
        pts = [
            (
                cx + rx * math.cos(math.radians(a0 + (a1 - a0) * k / n)),
                cy + ry * math.sin(math.radians(a0 + (a1 - a0) * k / n)),
            )
            for k in range(n + 1)
        ]
        self.line(pts, fill, width)

    def blob(self, cx, cy, rx, ry, fill, wobble: float = 0.15) -> None:
        """Irregular organic outline (rocks, bushes, clouds): an ellipse with a wobbly radius."""
        harmonics = [(k, self.u(0, wobble), self.u(0, 2 * math.pi)) for k in (2, 3, 5)]
        pts = []
        for u, v in _unit_circle(self._segments(max(rx, ry))):
            t = math.atan2(v, u)
            m = 1 + sum(a * math.sin(k * t + p) for k, a, p in harmonics)
            pts.append((cx + rx * m * u, cy + ry * m * v))
        self.poly(pts, fill)

    # ---- textures: (size, size) fields or (size, size, 3) colour arrays, identity pose
    def fill(self, arr: np.ndarray, clutter: int = 3) -> None:
        """Paint a background array, then a few faint distractor shapes over it.

        The distractors carry no class information; they stop a plain background colour
        from being enough to tell facets apart.
        """
        self.img.paste(_upscale(_to_image(arr), _SUPERSAMPLE))
        self.bg_mean = tuple(int(v) for v in arr[::4, ::4].reshape(-1, 3).mean(0))  # type: ignore[assignment]
        for _ in range(clutter):
            other = (self.r.randrange(256), self.r.randrange(256), self.r.randrange(256))
            col = _mix(self.bg_mean, other, self.u(0.12, 0.3))
            x, y, size = self.u(0, 1), self.u(0, 1), self.u(0.03, 0.12)
            kind = self.r.randrange(3)
            if kind == 0:
                self.circle(x, y, size, col)
            elif kind == 1:
                with self.pose(x, y, size, self.u(0, 90)):
                    self.rect(-1, -1, 1, 1, col)
            else:
                self.line([(x, y), (x + self.u(-0.2, 0.2), y + self.u(-0.2, 0.2))], col, self.u(0.008, 0.02))

    def paste(self, arr: np.ndarray, pts: Sequence[Point]) -> None:
        """Paint a texture array inside a polygon (local coordinates)."""
        mask = Image.new("L", (self.px, self.px), 0)
        ImageDraw.Draw(mask).polygon(self._xy(pts), fill=255)
        self.img.paste(_upscale(_to_image(arr), _SUPERSAMPLE), (0, 0), mask)

    def gradient(self, c1: Sequence[int], c2: Sequence[int], angle: float = 90.0) -> np.ndarray:
        """Linear gradient from c1 to c2 along `angle` (90 = top to bottom)."""
        x, y = _grid(self.size)
        t = math.radians(angle)
        p = x * math.cos(t) + y * math.sin(t)
        lo = min(0.0, math.cos(t)) + min(0.0, math.sin(t))
        hi = max(0.0, math.cos(t)) + max(0.0, math.sin(t))
        return _lerp((p - lo) / (hi - lo), c1, c2)

    def noise(self, cells: int, octaves: int = 2) -> np.ndarray:
        """Smooth value noise in [0, 1] with about `cells` blobs across the image."""
        out = np.zeros((self.size, self.size), np.float32)
        amp, lo, hi = 1.0, 0.0, 0.0
        for o in range(octaves):
            n = cells * 2**o + 1
            small = self.nr.random((n, n), dtype=np.float32)
            out += amp * np.asarray(
                Image.fromarray(small, "F").resize((self.size, self.size), Image.BILINEAR)
            )
            # Bilinear interpolation stays within the grid's range, so the grid bounds
            # normalise the sum without a pass over the full-size array.
            lo += amp * float(small.min())
            hi += amp * float(small.max())
            amp *= 0.5
        return (out - lo) / max(hi - lo, 1e-6)

    def stripes(self, freq: float, angle: float = 0.0) -> np.ndarray:
        """Soft-edged stripes in [0, 1], `freq` periods across the image."""
        x, y = _grid(self.size)
        t = math.radians(angle)
        s = np.sin(2 * np.pi * freq * (x * math.cos(t) + y * math.sin(t)) + self.u(0, 2 * math.pi))
        return np.clip(0.5 + 2.0 * s, 0.0, 1.0)

    def dots(self, freq: float, radius: float = 0.25) -> np.ndarray:
        """Grid of soft dots in [0, 1], radius in cell units."""
        x, y = _grid(self.size)
        u = (x * freq + self.u(0, 1)) % 1.0 - 0.5
        v = (y * freq + self.u(0, 1)) % 1.0 - 0.5
        d = np.sqrt(u * u + v * v)
        return np.clip((radius - d) * self.size / freq, 0.0, 1.0)

    def checker(self, freq: float, angle: float = 0.0) -> np.ndarray:
        x, y = _grid(self.size)
        t = math.radians(angle)
        u = x * math.cos(t) + y * math.sin(t)
        v = -x * math.sin(t) + y * math.cos(t)
        return ((np.floor(u * freq) + np.floor(v * freq)) % 2).astype(np.float32)

    def bricks(self, rows: float) -> np.ndarray:
        """Running-bond masonry in [0, 1]: mortar is 0, each brick its own shade in [0.55, 1]."""
        x, y = _grid(self.size)
        yy = y * rows + self.u(0, 1)
        row = np.floor(yy)
        xx = x * rows / 2 + 0.5 * (row % 2) + self.u(0, 1)
        col = np.floor(xx)
        shades = self.nr.random(97, dtype=np.float32)
        shade = shades[((row * 31 + col * 7) % 97).astype(np.int64)]
        mortar = ((yy % 1) < 0.14) | ((xx % 1) < 0.07)
        return np.where(mortar, 0.0, 0.55 + 0.45 * shade).astype(np.float32)


# --------------------------------------------------------------------------------------
# Shared scenery: used by several superclasses, so none of it identifies a class


_WALLS: tuple[RGB, ...] = (
    (225, 210, 185),
    (190, 205, 185),
    (185, 200, 215),
    (220, 190, 190),
    (200, 200, 200),
    (235, 225, 205),
    (200, 185, 215),
)
_PAINTS: tuple[RGB, ...] = (
    (200, 30, 40),
    (30, 80, 180),
    (240, 190, 30),
    (40, 140, 70),
    (235, 235, 235),
    (160, 165, 175),
    (35, 35, 40),
    (240, 120, 30),
)
_GLASS: RGB = (150, 200, 230)
_BLACK: RGB = (25, 22, 22)
_WHITE: RGB = (245, 245, 240)


def _sky(s: _Scene, top: RGB = (70, 130, 215), bottom: RGB = (195, 222, 245), clutter: int = 2) -> None:
    s.fill(s.gradient(s.jit(top, 25), s.jit(bottom, 15)), clutter)


def _sunset(s: _Scene) -> None:
    top = s.pick(((70, 40, 110), (40, 50, 110), (110, 50, 90)))
    s.fill(s.gradient(s.jit(top, 20), s.jit((250, 150, 70), 25)), clutter=1)


def _night(s: _Scene, stars: int = 25) -> None:
    s.fill(s.gradient(s.jit((10, 15, 45), 10), s.jit((40, 50, 100), 15)), clutter=0)
    for _ in range(stars):
        s.circle(s.u(0, 1), s.u(0, 0.7), s.u(0.002, 0.006), s.jit((250, 250, 220), 10))


def _clouds(s: _Scene, n: int) -> None:
    for _ in range(n):
        x, y, r = s.u(-0.1, 1.1), s.u(0.05, 0.35), s.u(0.03, 0.07)
        col = s.jit((248, 248, 250), 8)
        s.ellipse(x, y + r * 0.4, r * 2.2, r * 0.6, col)
        s.circle(x - r * 0.8, y + r * 0.1, r * 0.7, col)
        s.circle(x + r * 0.3, y - r * 0.1, r, col)


def _ground(s: _Scene, y: float, c1: RGB, c2: RGB, cells: int = 6, tilt: float = 0.0) -> None:
    """Noise-textured ground from height y down to the bottom edge."""
    s.paste(
        _lerp(s.noise(cells), s.jit(c1, 15), s.jit(c2, 15)),
        [(-0.2, y - tilt), (1.2, y + tilt), (1.2, 1.2), (-0.2, 1.2)],
    )


def _grass(s: _Scene, y: float) -> None:
    _ground(s, y, (60, 130, 50), (120, 170, 70), tilt=s.u(-0.04, 0.04))


def _road(s: _Scene, y0: float, y1: float) -> None:
    """Asphalt band with a dashed centre line."""
    s.paste(
        _lerp(s.noise(10), s.jit((70, 70, 75), 10), s.jit((100, 100, 105), 10)),
        [(-0.1, y0), (1.1, y0), (1.1, y1), (-0.1, y1)],
    )
    ym, off = (y0 + y1) / 2, s.u(0, 0.2)
    for k in range(7):
        x = -0.2 + off + k * 0.2
        s.rect(x, ym - 0.008, x + 0.1, ym + 0.008, (235, 230, 200))


def _wallpaper(s: _Scene) -> np.ndarray:
    """Indoor wall: a muted pattern (stripes, dots, checks or mottling) in two close colours."""
    base = s.jit(s.pick(_WALLS), 20)
    alt = _mix(base, s.jit(s.pick(_WALLS), 40), 0.5)
    kind = s.r.randrange(4)
    if kind == 0:
        t = s.stripes(s.u(4, 10), s.pick((0, 90)) + s.u(-5, 5))
    elif kind == 1:
        t = s.dots(s.u(5, 10), s.u(0.12, 0.3))
    elif kind == 2:
        t = s.checker(s.u(3, 8), s.u(-10, 10))
    else:
        t = s.noise(4)
    return _lerp(t, base, alt)


def _room(s: _Scene, floor_y: float) -> None:
    """Wallpapered wall above a wooden floor or table top."""
    s.fill(_wallpaper(s))
    wood = s.jit(s.pick(((150, 100, 60), (190, 150, 100), (110, 75, 50))), 15)
    grain = np.maximum(s.stripes(s.u(12, 25), 90 + s.u(-3, 3)) * 0.5, s.noise(8, 1) * 0.6)
    s.paste(
        _lerp(grain, wood, _mix(wood, _BLACK, 0.3)),
        [(-0.1, floor_y), (1.1, floor_y), (1.1, 1.1), (-0.1, 1.1)],
    )


def _wheel(s: _Scene, x: float, y: float, r: float, rim: RGB = (175, 175, 180)) -> None:
    """Car-style wheel: tyre, rim and hub."""
    s.circle(x, y, r, (28, 28, 30))
    s.circle(x, y, r * 0.55, rim)
    s.circle(x, y, r * 0.2, _mix(rim, _BLACK, 0.4))


# --------------------------------------------------------------------------------------
# Animals: organic blobs with eyes, fur marks and legs


_DOG_COATS: tuple[RGB, ...] = ((196, 140, 80), (125, 80, 45), (230, 205, 160), (60, 50, 45), (235, 230, 220))


def _dog_colours(s: _Scene) -> tuple[RGB, RGB]:
    coat = s.jit(s.pick(_DOG_COATS), 18)
    ear = _mix(coat, (40, 25, 15), s.u(0.35, 0.6))
    return coat, ear


def _dog_head(s: _Scene, coat: RGB, ear: RGB) -> None:
    """Dog head facing the viewer, radius ~0.45: floppy ears, light muzzle, big black nose."""
    s.ellipse(0, 0, 0.4, 0.42, coat)
    if s.chance(0.5):
        s.ellipse(s.pick((-0.16, 0.16)), -0.1, 0.15, 0.13, ear)  # eye patch
    s.ellipse(-0.4, 0.06, 0.13, 0.32, ear, angle=15)
    s.ellipse(0.4, 0.06, 0.13, 0.32, ear, angle=-15)
    s.ellipse(0, 0.2, 0.22, 0.17, _mix(coat, (250, 240, 225), 0.5))
    for x in (-0.15, 0.15):
        s.circle(x, -0.08, 0.055, _BLACK)
        s.circle(x + 0.02, -0.1, 0.018, _WHITE)
    s.ellipse(0, 0.1, 0.09, 0.06, _BLACK)
    if s.chance(0.5):
        s.ellipse(0, 0.33, 0.06, 0.08, (235, 110, 130))  # tongue
    s.line([(0, 0.15), (0, 0.25)], (60, 40, 35), 0.015)
    s.arc(-0.05, 0.25, 0.05, 0.04, 0, 180, (60, 40, 35), 0.015)
    s.arc(0.05, 0.25, 0.05, 0.04, 0, 180, (60, 40, 35), 0.015)


def _dog_body(s: _Scene, coat: RGB, ear: RGB) -> None:
    """Running dog facing right, centred on the origin, length ~1."""
    stride = s.u(0.4, 1.0)
    leg = _mix(coat, _BLACK, 0.2)
    for hip, sign in ((-0.2, -1), (0.2, 1)):
        s.line(
            [(hip, 0.05), (hip + sign * 0.2 * stride, 0.22), (hip + sign * 0.26 * stride, 0.27)], leg, 0.06
        )
        s.line([(hip + 0.03, 0.05), (hip - sign * 0.12 * stride, 0.28)], leg, 0.06)
    s.line([(-0.28, -0.03), (-0.4, -0.13), (-0.47, -0.22)], coat, 0.05)  # tail
    s.ellipse(0, 0, 0.32, 0.13, coat)
    for _ in range(s.r.randrange(4)):
        s.ellipse(s.u(-0.2, 0.2), s.u(-0.08, 0.05), s.u(0.03, 0.07), s.u(0.03, 0.05), ear)
    s.ellipse(0.29, -0.1, 0.1, 0.12, coat, angle=30)  # neck
    s.circle(0.38, -0.2, 0.12, coat)
    s.ellipse(0.5, -0.16, 0.1, 0.06, _mix(coat, (250, 240, 225), 0.4))
    s.circle(0.59, -0.17, 0.03, _BLACK)
    s.ellipse(0.32, -0.15, 0.06, 0.13, ear, angle=20)
    s.circle(0.43, -0.24, 0.02, _BLACK)


def _dog_closeup(s: _Scene) -> None:
    s.fill(_wallpaper(s))
    coat, ear = _dog_colours(s)
    with s.pose(s.u(0.4, 0.6), s.u(0.45, 0.6), s.u(0.9, 1.2), s.u(-20, 20)):
        _dog_head(s, coat, ear)


def _dog_running(s: _Scene) -> None:
    _sky(s)
    _clouds(s, s.r.randrange(3))
    horizon = s.u(0.5, 0.65)
    _grass(s, horizon)
    coat, ear = _dog_colours(s)
    with s.pose(s.u(0.4, 0.55), horizon + s.u(0.1, 0.2), s.u(0.8, 1.0), s.u(-8, 8)):
        _dog_body(s, coat, ear)


def _dog_basket(s: _Scene) -> None:
    _room(s, s.u(0.6, 0.75))
    coat, ear = _dog_colours(s)
    wicker = s.jit((200, 160, 100), 20)
    dark = _mix(wicker, _BLACK, 0.35)
    with s.pose(s.u(0.4, 0.6), s.u(0.62, 0.72), s.u(0.85, 1.05), s.u(-6, 6)):
        with s.pose(0, -0.25, 0.6):
            _dog_head(s, coat, ear)
        s.poly([(-0.44, -0.05), (0.44, -0.05), (0.36, 0.32), (-0.36, 0.32)], wicker)
        for k in range(5):  # woven rows: staggered dashes on alternating shades
            y = -0.01 + k * 0.07
            half = 0.44 - 0.08 * (y + 0.05) / 0.37
            x = -half + (0.04 if k % 2 else 0.0)
            while x < half - 0.05:
                s.line([(x, y), (x + 0.05, y)], dark, 0.025)
                x += 0.09
        s.rrect(-0.47, -0.1, 0.47, -0.02, 0.04, _mix(wicker, _BLACK, 0.15))
        for x in (-0.13, 0.13):
            s.ellipse(x, -0.09, 0.08, 0.05, coat)


_CAT_COATS: tuple[RGB, ...] = ((225, 140, 60), (150, 150, 160), (55, 52, 58), (235, 228, 215), (180, 130, 90))
_CAT_EYES: tuple[RGB, ...] = ((120, 200, 80), (230, 190, 50), (90, 170, 200))


def _cat_colours(s: _Scene) -> tuple[RGB, RGB, RGB]:
    coat = s.jit(s.pick(_CAT_COATS), 15)
    stripe = _mix(coat, _BLACK, 0.4) if sum(coat) > 250 else _mix(coat, _WHITE, 0.25)
    return coat, stripe, s.jit(s.pick(_CAT_EYES), 15)


def _cat_ears(s: _Scene, coat: RGB, cx: float, cy: float, r: float) -> None:
    """Pointed ears on a head of radius r centred at (cx, cy)."""
    for sx in (-1, 1):
        outer = ((0.9, -0.1), (0.85, -1.4), (0.15, -0.7))
        inner = ((0.72, -0.3), (0.74, -1.1), (0.35, -0.65))
        s.poly([(cx + sx * u * r, cy + v * r) for u, v in outer], coat)
        s.poly([(cx + sx * u * r, cy + v * r) for u, v in inner], (235, 160, 170))


def _cat_face(s: _Scene, coat: RGB, stripe: RGB, eye: RGB) -> None:
    """Cat face, radius ~0.45: pointed ears, slit-pupil eyes and whiskers."""
    _cat_ears(s, coat, 0, 0, 0.45)
    s.ellipse(0, 0, 0.45, 0.38, coat)
    for k in (-1, 0, 1):
        s.line([(k * 0.09, -0.36), (k * 0.07, -0.22)], stripe, 0.035)
    for sx in (-1, 1):
        s.line([(sx * 0.44, -0.04), (sx * 0.3, -0.01)], stripe, 0.03)
        s.line([(sx * 0.43, 0.07), (sx * 0.3, 0.07)], stripe, 0.03)
        s.ellipse(sx * 0.17, -0.06, 0.1, 0.075, eye)
        s.ellipse(sx * 0.17, -0.06, 0.022, 0.068, _BLACK)
        s.circle(sx * 0.17 + 0.03, -0.09, 0.015, _WHITE)
    s.poly([(-0.05, 0.1), (0.05, 0.1), (0, 0.16)], (230, 120, 130))
    s.arc(-0.04, 0.17, 0.04, 0.035, 0, 180, (70, 50, 50), 0.015)
    s.arc(0.04, 0.17, 0.04, 0.035, 0, 180, (70, 50, 50), 0.015)
    whisker = (240, 240, 235) if sum(coat) < 600 else (90, 90, 90)
    for sx in (-1, 1):
        for dy in (-0.05, 0.02, 0.09):
            s.line([(sx * 0.12, 0.14 + dy * 0.3), (sx * 0.62, 0.12 + dy)], whisker, 0.012)


def _cat_sitting(s: _Scene, col: RGB, eye: RGB) -> None:
    """Sitting cat seen from behind, base at the origin, height ~0.85."""
    s.line([(-0.16, -0.04), (0.05, 0.0), (0.24, -0.02), (0.3, -0.12)], col, 0.05)  # tail
    s.ellipse(0, -0.24, 0.2, 0.25, col)
    s.ellipse(-0.05, -0.1, 0.22, 0.12, col)
    s.circle(0.03, -0.56, 0.15, col)
    _cat_ears(s, col, 0.03, -0.56, 0.15)
    if s.chance(0.5):  # looking back over its shoulder
        for sx in (-1, 1):
            s.ellipse(0.03 + sx * 0.06, -0.57, 0.03, 0.022, eye)


def _cat_curled(s: _Scene, coat: RGB, stripe: RGB) -> None:
    """Cat curled up asleep, centred on the origin, width ~0.9."""
    s.ellipse(0, 0, 0.42, 0.28, coat)
    for a in range(200, 345, 24):  # tabby stripes across the back
        t = math.radians(a)
        s.line(
            [(0.26 * math.cos(t), 0.17 * math.sin(t)), (0.41 * math.cos(t), 0.27 * math.sin(t))], stripe, 0.04
        )
    s.arc(0, 0.02, 0.38, 0.25, 20, 150, _mix(coat, stripe, 0.5), 0.09)  # tail wrapped round the front
    _cat_ears(s, coat, 0.2, 0.02, 0.17)
    s.circle(0.2, 0.02, 0.17, coat)
    for x in (0.13, 0.27):
        s.arc(x, 0.02, 0.035, 0.025, 0, 180, _BLACK, 0.015)  # closed eyes
    s.poly([(0.18, 0.07), (0.22, 0.07), (0.2, 0.1)], (230, 120, 130))


def _cat_closeup(s: _Scene) -> None:
    s.fill(_wallpaper(s))
    coat, stripe, eye = _cat_colours(s)
    with s.pose(s.u(0.4, 0.6), s.u(0.5, 0.62), s.u(0.85, 1.1), s.u(-20, 20)):
        _cat_face(s, coat, stripe, eye)


def _cat_window(s: _Scene) -> None:
    s.fill(_wallpaper(s), clutter=1)
    x0, x1, y0, sill = s.u(0.05, 0.15), s.u(0.85, 0.95), s.u(0.03, 0.1), s.u(0.7, 0.8)
    pane = [(x0, y0), (x1, y0), (x1, sill), (x0, sill)]
    if s.chance(0.5):
        s.paste(s.gradient(s.jit((70, 40, 110), 20), s.jit((250, 150, 70), 25)), pane)
    else:
        s.paste(s.gradient(s.jit((10, 15, 45), 10), s.jit((50, 60, 110), 15)), pane)
        s.circle(s.u(x0 + 0.1, x1 - 0.1), s.u(y0 + 0.1, 0.35), s.u(0.04, 0.07), s.jit((245, 240, 200), 10))
    frame = s.jit((240, 238, 230), 15)
    s.rect(x0, y0, x1, sill, outline=frame, width=0.03)
    s.line([((x0 + x1) / 2, y0), ((x0 + x1) / 2, sill)], frame, 0.025)
    s.line([(x0, (y0 + sill) / 2), (x1, (y0 + sill) / 2)], frame, 0.025)
    s.rect(x0 - 0.05, sill, x1 + 0.05, sill + 0.06, frame)
    coat, _, eye = _cat_colours(s)
    with s.pose(s.u(0.35, 0.65), sill, s.u(0.6, 0.8), s.u(-5, 5)):
        _cat_sitting(s, _mix(coat, _BLACK, 0.55), eye)


def _cat_asleep(s: _Scene) -> None:
    _room(s, s.u(0.55, 0.7))
    coat, stripe, _ = _cat_colours(s)
    cx, cy, scale = s.u(0.4, 0.6), s.u(0.55, 0.65), s.u(0.8, 1.0)
    fabric = s.jit(s.pick(((180, 60, 70), (60, 90, 160), (90, 140, 90), (200, 170, 80))), 20)
    kind = s.r.randrange(3)
    if kind == 0:
        pattern = s.dots(s.u(8, 14), 0.25)
    elif kind == 1:
        pattern = s.stripes(s.u(6, 12), s.u(0, 180))
    else:
        pattern = s.checker(s.u(6, 10))
    with s.pose(cx, cy + 0.1 * scale, scale):
        s.paste(_lerp(pattern, fabric, _mix(fabric, _WHITE, 0.4)), s.ellipse_pts(0, 0, 0.5, 0.22))
    with s.pose(cx, cy, scale * 0.9, s.u(-20, 20)):
        _cat_curled(s, coat, stripe)


def _fish(s: _Scene, body: RGB, fin: RGB, pattern: str) -> None:
    """Fish facing right, centred on the origin, length ~1: oval body, forked tail, fins, eye.

    `pattern` is "bands" (clownfish), "scales", "spots" or anything else for plain.
    """
    s.poly([(-0.32, 0), (-0.55, -0.2), (-0.48, 0), (-0.55, 0.2)], fin)
    s.poly([(-0.12, -0.16), (0.02, -0.32), (0.15, -0.16)], fin)
    s.poly([(-0.1, 0.16), (0.0, 0.27), (0.08, 0.16)], fin)
    s.ellipse(0, 0, 0.38, 0.2, body)
    dark = _mix(body, _BLACK, 0.35)
    if pattern == "bands":
        for x in (-0.17, 0.1):
            h = 0.2 * math.sqrt(1 - (x / 0.38) ** 2)
            s.ellipse(x, 0, 0.045, h * 0.98, _WHITE, outline=_BLACK, width=0.012)
    elif pattern == "scales":
        for row in (-0.08, 0.0, 0.08):
            for k in range(5):
                x = -0.2 + k * 0.08 + (0.04 if row == 0 else 0)
                s.arc(x, row, 0.04, 0.045, -70, 70, dark, 0.012)
    elif pattern == "spots":
        for _ in range(6):
            s.circle(s.u(-0.25, 0.15), s.u(-0.1, 0.1), s.u(0.015, 0.03), dark)
    s.ellipse(0.04, 0.06, 0.08, 0.035, fin, angle=25)
    s.arc(0.19, 0, 0.08, 0.15, 110, 250, dark, 0.015)
    s.circle(0.25, -0.05, 0.05, _WHITE)
    s.circle(0.26, -0.05, 0.025, _BLACK)


def _water(s: _Scene, deep: bool) -> None:
    top, bottom = ((40, 110, 170), (10, 30, 70)) if deep else ((90, 190, 210), (20, 80, 150))
    bg = s.gradient(s.jit(top, 15), s.jit(bottom, 15))
    bg += (s.noise(5)[..., None] - 0.5) * 30  # caustics
    s.fill(bg, clutter=2)


def _bubbles(s: _Scene, n: int) -> None:
    for _ in range(n):
        s.circle(s.u(0, 1), s.u(0, 1), s.u(0.008, 0.025), outline=(220, 240, 250), width=0.006)


def _fish_colours(s: _Scene) -> tuple[RGB, RGB, str]:
    body, fin, pattern = s.pick(
        (
            ((240, 120, 30), (240, 120, 30), "bands"),
            ((250, 200, 40), (60, 110, 200), "scales"),
            ((120, 200, 220), (240, 220, 80), "spots"),
            ((200, 60, 150), (250, 150, 60), "scales"),
        )
    )
    return s.jit(body, 15), s.jit(fin, 15), pattern


def _fish_closeup(s: _Scene) -> None:
    _water(s, deep=False)
    for _ in range(s.r.randrange(4)):  # seaweed
        x = s.u(0, 1)
        strand = [(x, 1.05), (x + s.u(-0.05, 0.05), 0.85), (x + s.u(-0.05, 0.05), s.u(0.55, 0.75))]
        s.line(strand, s.jit((50, 120, 70), 15), 0.025)
    _bubbles(s, s.r.randrange(3, 8))
    body, fin, pattern = _fish_colours(s)
    with s.pose(s.u(0.45, 0.6), s.u(0.4, 0.6), s.u(0.85, 1.15), s.u(-20, 20)):
        _fish(s, body, fin, pattern)


def _fish_school(s: _Scene) -> None:
    _water(s, deep=True)
    _bubbles(s, s.r.randrange(2, 5))
    body = s.jit((170, 190, 210), 20)
    fin = _mix(body, (40, 60, 120), 0.4)
    heading, size = s.u(-25, 25), s.u(0.12, 0.2)
    cx, cy = s.u(0.4, 0.6), s.u(0.4, 0.6)
    for _ in range(s.r.randrange(8, 15)):
        with s.pose(
            cx + s.u(-0.35, 0.35), cy + s.u(-0.28, 0.28), size * s.u(0.85, 1.15), heading + s.u(-8, 8)
        ):
            _fish(s, s.jit(body, 10), fin, "none")


def _fish_bowl(s: _Scene) -> None:
    table = s.u(0.75, 0.85)
    _room(s, table)
    cx, r = s.u(0.38, 0.62), s.u(0.27, 0.33)
    cy = table - r * 0.92
    water = s.jit((130, 200, 225), 15)
    s.circle(cx, cy, r, _mix(water, _WHITE, 0.4))
    s.paste(
        _lerp(s.noise(4), water, _mix(water, (40, 110, 170), 0.4)),
        [
            (cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a)))
            for a in range(-25, 210, 10)
        ],
    )
    for _ in range(8):  # gravel
        s.circle(
            cx + s.u(-0.6, 0.6) * r, cy + r * s.u(0.72, 0.85), r * s.u(0.06, 0.1), s.jit(s.pick(_PAINTS), 30)
        )
    body, fin, pattern = _fish_colours(s)
    with s.pose(cx + s.u(-0.2, 0.2) * r, cy + s.u(-0.05, 0.35) * r, r * s.u(0.7, 0.9), s.u(-15, 15)):
        _fish(s, body, fin, pattern)
    s.circle(cx, cy, r, outline=(225, 240, 245), width=0.012)
    s.ellipse(cx, cy - r * 0.8, r * 0.6, r * 0.1, outline=(225, 240, 245), width=0.012)
    s.arc(cx, cy, r * 0.82, r * 0.82, 200, 250, _WHITE, 0.015)  # glass highlight


_BIRD_COLOURS: tuple[RGB, ...] = (
    (60, 110, 200),
    (200, 50, 40),
    (240, 200, 40),
    (150, 110, 70),
    (80, 160, 90),
)


def _bird(s: _Scene, body: RGB) -> None:
    """Perching bird facing right, centred on the origin, length ~0.9: round body, beak, wing."""
    wing = _mix(body, _BLACK, 0.35)
    s.poly([(-0.2, 0.02), (-0.5, 0.16), (-0.44, 0.24), (-0.16, 0.12)], wing)
    s.ellipse(0, 0, 0.27, 0.19, body, angle=-15)
    s.ellipse(0.04, 0.07, 0.17, 0.1, _mix(body, _WHITE, 0.55), angle=-15)
    s.ellipse(-0.06, -0.02, 0.18, 0.09, wing, angle=-25)
    s.circle(0.2, -0.17, 0.14, body)
    s.poly([(0.31, -0.21), (0.47, -0.16), (0.31, -0.11)], (240, 160, 40))
    s.circle(0.25, -0.2, 0.03, _BLACK)
    for x in (0.0, 0.07):
        s.line([(x, 0.16), (x, 0.28)], (90, 70, 50), 0.02)


def _bird_branch(s: _Scene) -> None:
    _sky(s, top=(150, 190, 225), bottom=(220, 235, 240))
    for _ in range(s.r.randrange(2, 5)):  # out-of-focus foliage
        s.blob(s.u(0, 1), s.u(0, 1), s.u(0.1, 0.2), s.u(0.08, 0.15), s.jit((150, 190, 130), 20))
    y0, y1 = s.u(0.6, 0.8), s.u(0.6, 0.8)
    bark = s.jit((110, 80, 55), 15)
    s.line([(-0.05, y0), (1.05, y1)], bark, 0.05)
    leaf = s.jit((70, 150, 60), 20)
    for _ in range(s.r.randrange(2, 5)):
        x = s.u(0, 1)
        yb = y0 + (y1 - y0) * x
        s.line([(x, yb), (x + s.u(-0.1, 0.1), yb + s.u(-0.15, 0.1))], bark, 0.02)
        s.ellipse(x + s.u(-0.1, 0.1), yb + s.u(-0.1, 0.1), 0.06, 0.025, leaf, angle=s.u(0, 180))
    bx = s.u(0.35, 0.65)
    scale = s.u(0.6, 0.85)
    with s.pose(bx, y0 + (y1 - y0) * bx - 0.28 * scale, scale, s.u(-10, 10)):
        _bird(s, s.jit(s.pick(_BIRD_COLOURS), 15))


def _bird_flock(s: _Scene) -> None:
    if s.chance(0.5):
        _sunset(s)
    else:
        _sky(s, clutter=1)
    _clouds(s, s.r.randrange(1, 4))
    ink = s.jit((40, 35, 45), 10)
    cx, cy = s.u(0.3, 0.7), s.u(0.3, 0.6)
    for _ in range(s.r.randrange(6, 14)):
        x, y, w = cx + s.u(-0.35, 0.35), cy + s.u(-0.25, 0.25), s.u(0.03, 0.07)
        flap = s.u(0.3, 0.8)
        s.arc(x - w, y, w, w * flap, 200, 340, ink, 0.012 + w * 0.15)
        s.arc(x + w, y, w, w * flap, 200, 340, ink, 0.012 + w * 0.15)


def _bird_nest(s: _Scene) -> None:
    s.fill(_lerp(s.noise(4), s.jit((40, 80, 40), 15), s.jit((100, 150, 80), 15)), clutter=2)
    cx, cy, scale = s.u(0.4, 0.6), s.u(0.55, 0.7), s.u(0.8, 1.0)
    with s.pose(cx, cy, scale, s.u(-8, 8)):
        chick = s.jit((200, 190, 150), 15)
        for x in sorted(s.u(-0.25, 0.25) for _ in range(s.r.randrange(2, 4))):
            y = s.u(-0.22, -0.15)
            s.circle(x, y, 0.1, chick)
            gape = s.u(0.04, 0.08)
            s.poly([(x - 0.05, y - 0.03), (x, y - 0.15), (x + 0.05, y - 0.03)], (245, 180, 40))  # open beak
            s.poly([(x - 0.04, y - 0.025), (x, y - 0.15 + gape), (x + 0.04, y - 0.025)], (230, 80, 50))
            for sx in (-1, 1):
                s.circle(x + sx * 0.05, y + 0.01, 0.015, _BLACK)
        s.ellipse(0, 0, 0.42, 0.17, s.jit((120, 90, 55), 15))
        for _ in range(30):  # woven twigs
            a, y = s.u(-0.38, 0.3), s.u(-0.12, 0.12)
            s.line(
                [(a, y), (a + s.u(0.05, 0.15), y + s.u(-0.05, 0.05))],
                s.jit(s.pick(((170, 140, 90), (90, 65, 40), (200, 180, 120))), 15),
                0.015,
            )


# --------------------------------------------------------------------------------------
# Plants: stems, leaves and petals


_LEAF: RGB = (60, 140, 55)
_TULIP_COLOURS: tuple[RGB, ...] = (
    (220, 40, 50),
    (240, 110, 160),
    (250, 210, 50),
    (140, 60, 160),
    (245, 120, 40),
    (245, 240, 235),
)


def _tulip_bloom(s: _Scene, col: RGB) -> None:
    """Tulip cup centred on the origin, height ~0.5: a cup with three pointed petal tips."""
    s.poly(
        [
            (-0.17, 0.02),
            (-0.17, -0.14),
            (-0.12, -0.27),
            (-0.06, -0.1),
            (0.06, -0.1),
            (0.12, -0.27),
            (0.17, -0.14),
            (0.17, 0.02),
        ],
        _mix(col, _BLACK, 0.25),
    )
    s.ellipse(0, 0.02, 0.17, 0.17, col)
    s.poly([(-0.13, 0.05), (-0.13, -0.08), (0, -0.3), (0.13, -0.08), (0.13, 0.05)], _mix(col, _WHITE, 0.15))
    s.line([(0, -0.26), (0, 0.12)], _mix(col, _BLACK, 0.15), 0.012)


def _tulip(s: _Scene, col: RGB, stem: float, leaves: bool = True) -> None:
    """Whole tulip: bloom at the origin, stem of length `stem` downwards, two long leaves
    (left out in crowded fields, where they merge into the ground anyway)."""
    leaf = s.jit(_LEAF, 15)
    s.line([(0, 0), (0, stem)], leaf, 0.035)
    if leaves:
        s.ellipse(-0.08, stem * 0.75, 0.05, stem * 0.3, leaf, angle=18)
        s.ellipse(0.08, stem * 0.8, 0.05, stem * 0.25, _mix(leaf, _BLACK, 0.15), angle=-18)
    _tulip_bloom(s, col)


def _tulip_closeup(s: _Scene) -> None:
    bg = s.gradient(s.jit((150, 200, 120), 20), s.jit((60, 120, 60), 20))
    s.fill(bg, clutter=0)
    for _ in range(s.r.randrange(4, 9)):  # out-of-focus flowers behind
        s.circle(s.u(0, 1), s.u(0, 1), s.u(0.04, 0.1), _mix(s.bg_mean, s.pick(_TULIP_COLOURS), 0.35))
    with s.pose(s.u(0.4, 0.6), s.u(0.4, 0.5), s.u(1.4, 1.8), s.u(-15, 15)):
        _tulip(s, s.jit(s.pick(_TULIP_COLOURS), 15), 0.6)


def _tulip_field(s: _Scene) -> None:
    _sky(s, clutter=1)
    horizon = s.u(0.25, 0.4)
    _ground(s, horizon, (50, 110, 40), (90, 150, 60))
    colours = [s.jit(s.pick(_TULIP_COLOURS), 15) for _ in range(3)]
    rows = 6
    for k in range(rows):  # receding rows, nearest drawn last
        t = (k + 1) / rows
        y = horizon + (1.02 - horizon) * t**1.6
        scale = 0.04 + 0.2 * t**1.6
        col = colours[k % 3]
        if scale < 0.09:  # distant rows blur into a band of colour
            s.rect(-0.1, y - scale * 0.3, 1.1, y + scale * 0.1, col)
            continue
        x = s.u(-0.1, 0.0)
        while x < 1.1:
            with s.pose(x + s.u(-0.02, 0.02), y, scale, s.u(-10, 10)):
                _tulip(s, col, 0.5, leaves=False)
            x += scale * 0.45


def _tulip_vase(s: _Scene) -> None:
    table = s.u(0.72, 0.82)
    _room(s, table)
    vx, vw, vh = s.u(0.4, 0.6), s.u(0.1, 0.14), s.u(0.25, 0.32)
    top = table - vh
    colour = s.jit(s.pick(_TULIP_COLOURS), 15)
    n = s.r.randrange(3, 6)
    for k in range(n):
        a = -40 + 80 * (k + s.u(0.2, 0.8)) / n
        length = s.u(0.3, 0.45)
        bx = vx + length * math.sin(math.radians(a))
        by = top - length * math.cos(math.radians(a))
        with s.pose(bx, by, 0.7, a):
            _tulip(s, colour if s.chance(0.6) else s.jit(s.pick(_TULIP_COLOURS), 15), length / 0.7 + 0.05)
    glaze = s.jit(s.pick(_WALLS), 40)
    pattern = _lerp(s.stripes(s.u(15, 30), s.u(0, 180)), glaze, _mix(glaze, _BLACK, 0.3))
    s.paste(
        pattern,
        [
            (vx - vw * 0.7, top),
            (vx + vw * 0.7, top),
            (vx + vw, top + vh * 0.4),
            (vx + vw * 0.7, table),
            (vx - vw * 0.7, table),
            (vx - vw, top + vh * 0.4),
        ],
    )


def _sunflower_head(s: _Scene, petal: RGB, petals: int, seeds: int = 40, detailed: bool = True) -> None:
    """Sunflower head centred on the origin, radius ~0.48: ring of yellow petals, seed disk.

    Small heads (detailed=False) draw the petal ring as one star-shaped polygon, which
    looks the same at a few pixels and is far cheaper than one ellipse per petal.
    """
    step = 360 / petals
    if detailed:
        for ring, shade, radius in ((0, 0.2, 0.3), (0.5, 0.0, 0.28)):
            for k in range(petals):
                a = (k + ring) * step + s.u(-4, 4)
                t = math.radians(a)
                s.ellipse(
                    radius * math.cos(t),
                    radius * math.sin(t),
                    0.17,
                    0.055,
                    _mix(petal, (150, 90, 10), shade),
                    angle=a,
                )
    else:
        s.poly(
            [
                (
                    (0.47 if k % 2 else 0.22) * math.cos(math.radians(k * step / 2)),
                    (0.47 if k % 2 else 0.22) * math.sin(math.radians(k * step / 2)),
                )
                for k in range(2 * petals)
            ],
            petal,
        )
    disk = s.jit((110, 70, 30), 15)
    s.circle(0, 0, 0.2, disk)
    for k in range(1, seeds):  # phyllotaxis: golden-angle spiral of seeds
        r, t = 0.19 * math.sqrt(k / seeds), math.radians(k * 137.5)
        s.circle(r * math.cos(t), r * math.sin(t), 0.013, _mix(disk, (30, 20, 10), 0.5))


def _sunflower_closeup(s: _Scene) -> None:
    if s.chance(0.5):
        _sky(s)
    else:
        s.fill(_lerp(s.noise(4), s.jit((40, 90, 40), 15), s.jit((90, 150, 70), 15)))
    with s.pose(s.u(0.35, 0.65), s.u(0.35, 0.65), s.u(1.4, 2.0), s.u(0, 360)):
        _sunflower_head(s, s.jit((250, 200, 30), 15), s.r.randrange(14, 20), 60)


def _sunflower_stalk(s: _Scene) -> None:
    _sky(s)
    _clouds(s, s.r.randrange(3))
    _grass(s, s.u(0.8, 0.9))
    hx, hy = s.u(0.35, 0.65), s.u(0.2, 0.32)
    stalk = s.jit((70, 130, 50), 15)
    base = hx + s.u(-0.1, 0.1)
    s.line([(base, 1.05), ((base + hx) / 2, 0.6), (hx, hy)], stalk, 0.03)
    for k in range(s.r.randrange(2, 5)):  # broad leaves along the stalk
        t = 0.35 + 0.15 * k
        x, y = base + (hx - base) * (1 - t), hy + (1.05 - hy) * t
        side = 1 if k % 2 else -1
        s.ellipse(x + side * 0.08, y - 0.02, 0.09, 0.05, _mix(stalk, _BLACK, s.u(0, 0.2)), angle=side * 25)
    with s.pose(hx, hy, s.u(0.4, 0.55), s.u(-20, 20)):
        _sunflower_head(s, s.jit((250, 200, 30), 15), s.r.randrange(14, 20))


def _sunflower_field(s: _Scene) -> None:
    _sky(s, clutter=1)
    horizon = s.u(0.35, 0.5)
    _ground(s, horizon, (40, 100, 35), (80, 140, 50))
    petal = s.jit((250, 200, 30), 15)
    for k in range(5):
        t = (k + 1) / 5
        y = horizon + (1.0 - horizon) * t**1.5 - 0.05
        scale = 0.05 + 0.17 * t**1.5
        x = s.u(-0.05, 0.05)
        while x < 1.1:
            if scale < 0.09:  # far away only the colours survive
                s.circle(x, y, scale * 0.45, petal)
                s.circle(x, y, scale * 0.2, (110, 70, 30))
            else:
                s.line([(x, y), (x, y + scale * 2)], (60, 110, 40), 0.01)
                with s.pose(x, y, scale, s.u(0, 360)):
                    _sunflower_head(s, petal, 14, 0, detailed=False)
            x += scale * s.u(0.9, 1.2)


def _frond(s: _Scene, length: float, bend: float, col: RGB, leaflets: int = 12) -> None:
    """Fern frond growing from the origin upwards: a curved stalk with paired leaflets that
    shrink towards the tip (the pinnate outline is the class cue)."""
    pts = [(bend * length * (i / leaflets) ** 2, -length * i / leaflets) for i in range(leaflets + 1)]
    s.line(pts, _mix(col, (90, 70, 30), 0.4), 0.018)
    for i in range(1, leaflets + 1):
        x, y = pts[i]
        px, py = pts[i - 1]
        heading = math.degrees(math.atan2(y - py, x - px))
        size = 0.24 * length * (1 - 0.8 * i / leaflets)
        shade = _mix(col, _BLACK, 0.15 * (i % 2))
        for side in (-1, 1):
            a = math.radians(heading + side * 65)
            s.ellipse(
                x + math.cos(a) * size / 2,
                y + math.sin(a) * size / 2,
                size / 2,
                size * 0.17,
                shade,
                angle=heading + side * 65,
            )


def _forest(s: _Scene) -> None:
    s.fill(_lerp(s.noise(5), s.jit((25, 50, 30), 10), s.jit((70, 100, 60), 15)), clutter=3)


def _fern_frond(s: _Scene) -> None:
    _forest(s)
    col = s.jit((80, 160, 60), 20)
    with s.pose(s.u(0.15, 0.45), s.u(0.9, 1.0), s.u(0.95, 1.15), s.u(10, 40)):
        _frond(s, 0.95, s.u(-0.4, 0.1), col, 14)


def _fern_clump(s: _Scene) -> None:
    _forest(s)
    _ground(s, s.u(0.8, 0.9), (70, 50, 35), (110, 80, 50))
    col = s.jit((80, 160, 60), 20)
    bx, by = s.u(0.4, 0.6), s.u(0.88, 0.95)
    n = s.r.randrange(5, 8)
    for k in range(n):
        a = -65 + 130 * (k + s.u(0.3, 0.7)) / n
        with s.pose(bx, by, 1.0, a):
            _frond(s, s.u(0.45, 0.7), 0.35 * a / 65, _mix(col, _BLACK, s.u(0, 0.25)), 9)


def _fern_fiddlehead(s: _Scene) -> None:
    s.fill(_lerp(s.noise(6), s.jit((60, 45, 30), 10), s.jit((80, 100, 50), 15)), clutter=4)
    col = s.jit((100, 150, 50), 20)
    for _ in range(s.r.randrange(1, 4)):
        cx, cy, r = s.u(0.25, 0.75), s.u(0.25, 0.55), s.u(0.1, 0.16)
        turn = s.pick((-1, 1))
        pts = []
        for k in range(40):  # logarithmic spiral, coiled inwards
            t = k / 39 * 3 * math.pi
            rr = r * math.exp(-0.25 * t)
            pts.append((cx + turn * rr * math.cos(t), cy + rr * math.sin(t)))
        pts.reverse()
        stem = [(pts[-1][0], pts[-1][1]), (pts[-1][0] + s.u(-0.1, 0.1), 1.05)]
        s.line(stem, _mix(col, (90, 70, 30), 0.3), 0.05)
        s.line(pts, col, r * 0.35)
        for x, y in pts[::4]:  # fuzzy brown scales
            s.circle(x + s.u(-0.01, 0.01), y + s.u(-0.01, 0.01), 0.01, (150, 110, 60))


def _saguaro(s: _Scene, col: RGB) -> None:
    """Saguaro cactus standing on the origin, height ~0.95: ribbed column with upturned arms."""
    dark = _mix(col, _BLACK, 0.3)
    for side in (-1, 1):
        if s.chance(0.75):
            h, reach, up = s.u(0.3, 0.5), s.u(0.15, 0.22), s.u(0.15, 0.3)
            s.line([(0, -h), (side * reach, -h), (side * reach, -h - up)], col, 0.1)
            s.circle(side * reach, -h - up, 0.05, col)
            s.line([(side * reach, -h), (side * reach, -h - up)], dark, 0.012)
    s.rect(-0.09, -0.85, 0.09, 0, col)
    s.circle(0, -0.85, 0.09, col)
    for x in (-0.045, 0.0, 0.045):
        s.line([(x, -0.88), (x, 0)], dark, 0.012)


def _cactus_desert(s: _Scene) -> None:
    _sky(s, top=(60, 120, 200), bottom=(245, 215, 170))
    s.circle(s.u(0.1, 0.9), s.u(0.1, 0.25), s.u(0.05, 0.08), s.jit((255, 240, 180), 10))
    horizon = s.u(0.6, 0.72)
    mesa = s.jit((180, 110, 80), 15)
    mx = s.u(0, 0.6)
    s.poly(
        [(mx, horizon), (mx + 0.06, horizon - 0.12), (mx + 0.3, horizon - 0.12), (mx + 0.38, horizon)], mesa
    )
    _ground(s, horizon, (220, 180, 120), (240, 210, 150), tilt=s.u(-0.03, 0.03))
    col = s.jit((70, 140, 70), 15)
    if s.chance(0.5):
        with s.pose(s.u(0.1, 0.9), horizon + 0.05, s.u(0.25, 0.35)):
            _saguaro(s, _mix(col, (200, 190, 160), 0.3))
    with s.pose(s.u(0.3, 0.7), s.u(0.9, 1.0), s.u(0.6, 0.8), s.u(-5, 5)):
        _saguaro(s, col)


def _cactus_pot(s: _Scene) -> None:
    shelf = s.u(0.75, 0.85)
    _room(s, shelf)
    cx, scale = s.u(0.4, 0.6), s.u(0.9, 1.1)
    col = s.jit((70, 140, 70), 15)
    dark = _mix(col, _BLACK, 0.35)
    with s.pose(cx, shelf, scale, s.u(-5, 5)):
        s.ellipse(0, -0.45, 0.22, 0.22, col)
        for k in range(-3, 4):  # ribs curving over the barrel
            rx = abs(k) * 0.065
            a0 = -90 if k > 0 else 90  # right-hand ribs bulge right, left-hand ones left
            s.arc(0, -0.45, rx, 0.22, a0, a0 + 180, dark, 0.012)
            for t in (-50, -10, 30):
                a = math.radians(t)
                s.circle(
                    math.copysign(rx, k) * math.cos(a), -0.45 + 0.22 * math.sin(a), 0.01, (245, 240, 210)
                )
        bloom = s.jit(s.pick(((240, 100, 160), (250, 200, 60), (240, 80, 60))), 15)
        for k in range(6):
            t = math.radians(k * 60)
            s.ellipse(0.05 * math.cos(t), -0.68 + 0.05 * math.sin(t), 0.05, 0.025, bloom, angle=k * 60)
        pot = s.jit((190, 100, 60), 15)
        s.poly([(-0.2, -0.25), (0.2, -0.25), (0.15, 0), (-0.15, 0)], pot)
        s.rect(-0.23, -0.3, 0.23, -0.22, _mix(pot, _WHITE, 0.15))


def _prickly_pear(s: _Scene, x: float, y: float, angle: float, depth: int, col: RGB) -> None:
    """Branching oval pads: each pad carries up to two pads on its upper rim, fruit on top."""
    t = math.radians(angle - 90)
    cx, cy = x + 0.17 * math.cos(t), y + 0.17 * math.sin(t)
    s.ellipse(cx, cy, 0.12, 0.17, _mix(col, _BLACK, s.u(0, 0.2)), angle=angle)
    for _ in range(6):
        s.circle(cx + s.u(-0.07, 0.07), cy + s.u(-0.1, 0.1), 0.008, (250, 245, 210))
    tip = (x + 0.32 * math.cos(t), y + 0.32 * math.sin(t))
    if depth > 0:
        turns = [t for t in (-35, 35) if s.chance(0.8)] or [s.pick((-35, 35))]  # never a bare pad
        for turn in turns:
            _prickly_pear(s, tip[0], tip[1], angle + turn + s.u(-10, 10), depth - 1, col)
    else:
        for k in range(s.r.randrange(1, 4)):
            a = t + (k - 1) * 0.5
            s.ellipse(
                cx + 0.15 * math.cos(a), cy + 0.15 * math.sin(a), 0.03, 0.04, (190, 40, 90), angle=angle
            )


def _cactus_pads(s: _Scene) -> None:
    _sky(s, top=(90, 150, 215), bottom=(240, 225, 200))
    horizon = s.u(0.7, 0.82)
    _ground(s, horizon, (215, 175, 120), (240, 210, 150))
    with s.pose(s.u(0.4, 0.6), s.u(0.92, 1.0), s.u(0.85, 1.05)):
        _prickly_pear(s, 0, 0, s.u(-10, 10), 2, s.jit((90, 150, 70), 15))


# --------------------------------------------------------------------------------------
# Vehicles: wheels, boxes and windows


def _car_side(s: _Scene, paint: RGB) -> None:
    """Car facing right, centred on the origin, length ~1."""
    s.poly(
        [
            (-0.48, 0.12),
            (-0.48, -0.02),
            (-0.4, -0.08),
            (-0.2, -0.1),
            (-0.1, -0.27),
            (0.18, -0.27),
            (0.3, -0.1),
            (0.45, -0.06),
            (0.5, 0.02),
            (0.5, 0.12),
        ],
        paint,
    )
    s.poly([(-0.07, -0.23), (0.02, -0.23), (0.02, -0.11), (-0.16, -0.11)], _GLASS)
    s.poly([(0.06, -0.23), (0.16, -0.23), (0.25, -0.11), (0.06, -0.11)], _GLASS)
    dark = _mix(paint, _BLACK, 0.4)
    s.line([(0.04, -0.1), (0.04, 0.1)], dark, 0.01)
    s.line([(-0.46, 0.03), (0.49, 0.03)], dark, 0.01)
    s.rect(0.45, -0.04, 0.5, 0.0, (255, 235, 160))
    s.rect(-0.49, -0.04, -0.45, 0.01, (220, 30, 30))
    _wheel(s, -0.28, 0.12, 0.11)
    _wheel(s, 0.3, 0.12, 0.11)


def _car_front(s: _Scene, paint: RGB) -> None:
    """Car seen head-on, centred on the origin, width ~0.9."""
    for sx in (-1, 1):
        s.rect(sx * 0.42, 0.08, sx * 0.28, 0.25, (28, 28, 30))
        s.ellipse(sx * 0.34, -0.17, 0.05, 0.03, paint)  # mirror
    s.poly([(-0.3, -0.09), (-0.22, -0.33), (0.22, -0.33), (0.3, -0.09)], _mix(paint, _BLACK, 0.2))
    s.poly([(-0.26, -0.11), (-0.2, -0.3), (0.2, -0.3), (0.26, -0.11)], _GLASS)
    s.line([(-0.1, -0.28), (-0.2, -0.13)], _WHITE, 0.015)  # reflection
    s.rrect(-0.46, -0.11, 0.46, 0.17, 0.06, paint)
    for sx in (-1, 1):
        s.ellipse(
            sx * 0.33, -0.02, 0.08, 0.045, (250, 245, 200), outline=_mix(paint, _BLACK, 0.5), width=0.012
        )
    s.rect(-0.18, -0.04, 0.18, 0.06, (40, 40, 45))
    for y in (-0.02, 0.01, 0.04):
        s.line([(-0.17, y), (0.17, y)], (130, 130, 135), 0.008)
    s.rect(-0.1, 0.09, 0.1, 0.14, _WHITE)


def _car_top(s: _Scene, paint: RGB) -> None:
    """Car seen from above, facing right, length ~0.5."""
    s.rrect(-0.25, -0.12, 0.25, 0.12, 0.05, paint)
    s.poly([(0.05, -0.1), (0.14, -0.08), (0.14, 0.08), (0.05, 0.1)], (40, 50, 70))
    s.poly([(-0.17, -0.09), (-0.11, -0.1), (-0.11, 0.1), (-0.17, 0.09)], (40, 50, 70))
    s.rect(-0.11, -0.1, 0.05, 0.1, _mix(paint, _WHITE, 0.2))
    for sy in (-1, 1):
        s.ellipse(0.06, sy * 0.13, 0.015, 0.02, paint)


def _car_road(s: _Scene) -> None:
    _sky(s)
    _clouds(s, s.r.randrange(3))
    y0 = s.u(0.55, 0.68)
    s.rect(-0.1, y0 - 0.1, 1.1, y0, s.jit((90, 150, 80), 15))  # verge
    _road(s, y0, 1.1)
    with s.pose(s.u(0.4, 0.6), y0 + s.u(0.1, 0.2), s.u(0.75, 0.95), s.u(-4, 4)):
        _car_side(s, s.jit(s.pick(_PAINTS), 15))


def _car_front_view(s: _Scene) -> None:
    _sky(s)
    horizon = s.u(0.45, 0.55)
    vx = s.u(0.4, 0.6)
    _ground(s, horizon, (90, 140, 80), (120, 160, 90))
    road = [
        (vx - 0.02, horizon),
        (vx + 0.02, horizon),
        (1.3, 1.05),
        (-0.3, 1.05),
    ]  # vanishing into the distance
    s.paste(_lerp(s.noise(10), (70, 70, 75), (100, 100, 105)), road)
    with s.pose(s.u(0.4, 0.6), s.u(0.62, 0.72), s.u(0.85, 1.05), s.u(-6, 6)):
        _car_front(s, s.jit(s.pick(_PAINTS), 15))


def _car_parking(s: _Scene) -> None:
    s.fill(_lerp(s.noise(8), s.jit((80, 80, 85), 10), s.jit((120, 120, 125), 10)), clutter=3)
    line = s.jit((235, 235, 220), 10)
    with s.pose(0.5, 0.5, s.u(0.9, 1.3), s.pick((0, 90)) + s.u(-30, 30)):
        for row in (-1, 1):
            y0 = row * 0.02
            for k in range(-4, 5):
                x = k * 0.16
                s.line([(x, y0), (x, y0 + row * 0.3)], line, 0.012)
                if s.chance(0.7):
                    with s.pose(x + 0.08, y0 + row * 0.16, 0.55, 90 * row + s.u(-6, 6)):
                        _car_top(s, s.jit(s.pick(_PAINTS), 15))


_BUS_PAINTS: tuple[RGB, ...] = ((245, 190, 30), (200, 40, 40), (40, 90, 180), (40, 140, 90), (235, 235, 235))


def _bus_side(s: _Scene, paint: RGB) -> None:
    """Single-decker bus facing right, centred on the origin, length ~1: long box, window row."""
    s.rrect(-0.5, -0.24, 0.5, 0.14, 0.04, paint)
    n = s.r.randrange(5, 8)
    w = 0.76 / n
    for k in range(n):
        s.rect(-0.45 + k * w, -0.19, -0.45 + (k + 0.82) * w, -0.04, _GLASS)
    s.rect(0.37, -0.19, 0.49, -0.02, _GLASS)
    s.rect(0.33, -0.17, 0.36, 0.1, _mix(paint, _BLACK, 0.3))  # door
    s.rect(-0.5, 0.02, 0.5, 0.05, s.jit(s.pick(_BUS_PAINTS), 20))
    _wheel(s, -0.3, 0.14, 0.085)
    _wheel(s, 0.28, 0.14, 0.085)


def _bus_front(s: _Scene, paint: RGB) -> None:
    """Bus seen head-on, centred on the origin, height ~0.9: big windscreen under a route sign."""
    for sx in (-1, 1):
        s.rect(sx * 0.33, 0.36, sx * 0.22, 0.46, (28, 28, 30))
    s.rrect(-0.36, -0.5, 0.36, 0.42, 0.05, paint)
    s.rect(-0.28, -0.46, 0.28, -0.37, (25, 25, 25))
    x = -0.26
    for _ in range(s.r.randrange(3, 6)):  # glowing route number / destination
        w = s.u(0.03, 0.08)
        s.rect(x, -0.44, x + w, -0.39, (250, 160, 30))
        x += w + 0.02
    s.rect(-0.31, -0.33, 0.31, 0.06, _GLASS)
    s.line([(0, -0.33), (0, 0.06)], _mix(paint, _BLACK, 0.4), 0.012)
    s.line([(-0.2, -0.3), (-0.28, -0.15)], _WHITE, 0.015)
    for sx in (-1, 1):
        s.rect(sx * 0.3, 0.14, sx * 0.2, 0.21, (250, 245, 210))
        s.line([(sx * 0.05, 0.05), (sx * 0.2, -0.04)], _BLACK, 0.01)  # wiper
    s.rect(-0.37, 0.3, 0.37, 0.38, (50, 50, 55))


def _bus_double(s: _Scene, paint: RGB) -> None:
    """Double-decker bus facing right, centred on the origin, length ~0.95: two window rows."""
    s.rrect(-0.47, -0.45, 0.47, 0.15, 0.05, paint)
    for y0, y1 in ((-0.38, -0.24), (-0.14, -0.01)):
        n = s.r.randrange(5, 7)
        w = 0.84 / n
        for k in range(n):
            s.rect(-0.42 + k * w, y0, -0.42 + (k + 0.85) * w, y1, _GLASS)
    s.rect(-0.47, -0.2, 0.47, -0.17, (240, 230, 200))
    _wheel(s, -0.28, 0.15, 0.09)
    _wheel(s, 0.28, 0.15, 0.09)


def _street(s: _Scene) -> float:
    """Sky, distant trees and a road; returns the road's top edge."""
    _sky(s)
    y0 = s.u(0.62, 0.72)
    for _ in range(s.r.randrange(2, 6)):
        s.blob(s.u(0, 1), y0 - s.u(0.0, 0.05), s.u(0.06, 0.12), s.u(0.06, 0.12), s.jit((80, 130, 80), 20))
    _road(s, y0, 1.1)
    return y0


def _bus_side_view(s: _Scene) -> None:
    y0 = _street(s)
    with s.pose(s.u(0.45, 0.55), y0 + s.u(0.05, 0.12), s.u(0.85, 1.0), s.u(-3, 3)):
        _bus_side(s, s.jit(s.pick(_BUS_PAINTS), 15))


def _bus_front_view(s: _Scene) -> None:
    _street(s)
    with s.pose(s.u(0.4, 0.6), s.u(0.5, 0.58), s.u(0.85, 1.05), s.u(-5, 5)):
        _bus_front(s, s.jit(s.pick(_BUS_PAINTS), 15))


def _bus_double_view(s: _Scene) -> None:
    y0 = _street(s)
    paint = s.jit((200, 35, 35), 15) if s.chance(0.7) else s.jit(s.pick(_BUS_PAINTS), 15)
    x = s.u(0.4, 0.6)
    if s.chance(0.6):  # bus stop sign
        sx = s.pick((x - 0.45, x + 0.45))
        s.line([(sx, y0 + 0.05), (sx, y0 - 0.35)], (120, 120, 125), 0.015)
        s.circle(sx, y0 - 0.38, 0.05, (220, 40, 40))
        s.rect(sx - 0.04, y0 - 0.39, sx + 0.04, y0 - 0.37, _WHITE)
    with s.pose(x, y0 + s.u(0.05, 0.12), s.u(0.85, 1.0), s.u(-3, 3)):
        _bus_double(s, paint)


def _bike_wheel(s: _Scene, x: float, y: float, r: float, spokes: int) -> None:
    """Thin bicycle wheel: tyre, rim and spokes."""
    rim = (195, 195, 200)
    for k in range(spokes):
        t = 2 * math.pi * k / spokes
        s.line([(x, y), (x + r * 0.86 * math.cos(t), y + r * 0.86 * math.sin(t))], rim, max(0.004, r * 0.015))
    s.circle(x, y, r, outline=(30, 30, 32), width=r * 0.14)
    s.circle(x, y, r * 0.86, outline=rim, width=r * 0.05)
    s.circle(x, y, r * 0.08, (120, 120, 125))


def _bicycle(s: _Scene, frame: RGB) -> None:
    """Bicycle facing right, centred on the origin, length ~1: two spoked wheels, diamond frame."""
    rear, front, crank = (-0.32, 0.12), (0.32, 0.12), (-0.02, 0.14)
    seat, head = (-0.1, -0.18), (0.22, -0.18)
    _bike_wheel(s, *rear, 0.2, 12)
    _bike_wheel(s, *front, 0.2, 12)
    s.line([rear, crank, seat, rear], frame, 0.03)
    s.line([crank, head, seat], frame, 0.03)
    s.line([head, front], frame, 0.025)
    s.line([seat, (-0.12, -0.23)], (60, 60, 60), 0.02)
    s.ellipse(-0.13, -0.24, 0.07, 0.022, (40, 35, 35))
    s.line([head, (0.21, -0.26), (0.28, -0.27)], (60, 60, 60), 0.022)
    s.circle(*crank, 0.045, outline=(70, 70, 70), width=0.015)
    s.line([(crank[0] - 0.05, crank[1] + 0.05), (crank[0] + 0.05, crank[1] - 0.05)], (60, 60, 60), 0.02)


def _pavement(s: _Scene, y: float) -> None:
    """Wall above paving slabs from height y down."""
    s.fill(s.gradient(s.jit(s.pick(_WALLS), 25), s.jit(s.pick(_WALLS), 25)), clutter=2)
    slab = s.jit((150, 150, 145), 15)
    tex = _lerp(s.checker(s.u(5, 9), s.u(-10, 10)) * 0.4 + s.noise(8) * 0.6, slab, _mix(slab, _BLACK, 0.25))
    s.paste(tex, [(-0.1, y), (1.1, y), (1.1, 1.1), (-0.1, 1.1)])


def _bike_side(s: _Scene) -> None:
    y = s.u(0.6, 0.75)
    if s.chance(0.5):
        _pavement(s, y)
    else:
        _sky(s)
        _grass(s, y)
    with s.pose(s.u(0.4, 0.6), y + s.u(0.0, 0.1), s.u(0.8, 1.0), s.u(-5, 5)):
        _bicycle(s, s.jit(s.pick(_PAINTS), 15))


def _bike_wheel_closeup(s: _Scene) -> None:
    _pavement(s, s.u(0.3, 0.7))
    x, y, r = s.u(0.35, 0.65), s.u(0.4, 0.6), s.u(0.35, 0.5)
    frame = s.jit(s.pick(_PAINTS), 15)
    t = math.radians(s.u(200, 250))
    s.line([(x, y), (x + math.cos(t), y + math.sin(t))], frame, 0.05)  # chain stay
    _bike_wheel(s, x, y, r, s.r.randrange(16, 25))
    s.line([(x, y), (x + math.cos(t - 0.5), y + math.sin(t - 0.5))], frame, 0.05)


def _bike_rack(s: _Scene) -> None:
    y = s.u(0.4, 0.5)
    _pavement(s, y)
    steel = s.jit((150, 150, 155), 10)
    n = s.r.randrange(3, 5)
    step = 0.75 / n
    for k in range(n):  # back to front, each bike a little lower and overlapping the last
        x, yb = 0.15 + k * step + s.u(-0.02, 0.02), y + 0.2 + k * 0.08
        s.arc(x + 0.12, yb, 0.07, 0.16, 180, 360, steel, 0.02)
        with s.pose(x + 0.1, yb + 0.04, s.u(0.5, 0.6)):
            _bicycle(s, s.jit(s.pick(_PAINTS), 15))


_TRAIN_PAINTS: tuple[RGB, ...] = ((40, 90, 60), (150, 40, 40), (40, 60, 120), (220, 200, 80), (200, 200, 205))


def _rails(s: _Scene, y: float) -> None:
    """Side view of a track at height y: sleepers under a steel rail."""
    wood = s.jit((100, 75, 50), 10)
    x = s.u(-0.05, 0.0)
    while x < 1.05:
        s.rect(x, y, x + 0.035, y + 0.03, wood)
        x += 0.07
    s.line([(-0.1, y), (1.1, y)], (150, 150, 155), 0.015)


def _carriage(s: _Scene, paint: RGB, length: float) -> None:
    """Passenger carriage, bottom of its wheels at the origin, `length` long."""
    half = length / 2
    s.rrect(-half + 0.02, -0.41, half - 0.02, -0.34, 0.03, _mix(paint, _BLACK, 0.3))
    s.rrect(-half, -0.37, half, -0.08, 0.03, paint)
    n = max(2, int(length / 0.13))
    w = (length - 0.1) / n
    for k in range(n):
        s.rect(-half + 0.05 + k * w, -0.31, -half + 0.05 + (k + 0.75) * w, -0.19, _GLASS)
    s.rect(-half, -0.15, half, -0.12, _mix(paint, _WHITE, 0.5))
    for bx in (-half + 0.13, half - 0.13):
        s.rect(bx - 0.1, -0.08, bx + 0.1, -0.05, (50, 50, 50))
        for wx in (-0.06, 0.06):
            s.circle(bx + wx, -0.04, 0.04, (40, 40, 40))


def _steam_loco(s: _Scene, paint: RGB) -> None:
    """Steam locomotive facing right, bottom of its wheels at the origin, length ~1."""
    brass = (210, 175, 70)
    for k in range(s.r.randrange(4, 8)):  # smoke puffs drifting back
        s.circle(0.26 - k * 0.09, -0.6 - k * 0.06, 0.05 + k * 0.02, s.jit((225, 225, 225), 15))
    s.rect(-0.48, -0.52, -0.12, -0.46, _BLACK)
    s.rect(-0.45, -0.48, -0.15, -0.1, paint)
    s.rect(-0.38, -0.42, -0.24, -0.3, _GLASS)
    s.rect(-0.15, -0.4, 0.38, -0.12, _mix(paint, _BLACK, 0.45))
    s.circle(0.38, -0.26, 0.14, _mix(paint, _BLACK, 0.6))
    for x in (-0.05, 0.1, 0.25):
        s.line([(x, -0.4), (x, -0.12)], brass, 0.015)
    s.poly([(0.22, -0.4), (0.22, -0.5), (0.18, -0.57), (0.34, -0.57), (0.3, -0.5), (0.3, -0.4)], _BLACK)
    s.ellipse(0.05, -0.41, 0.06, 0.05, brass)
    s.rect(-0.48, -0.12, 0.46, -0.07, _BLACK)
    for x in (-0.3, -0.08, 0.14):
        _wheel(s, x, -0.1, 0.1, rim=(200, 40, 40))
    s.line([(-0.3, -0.1), (0.14, -0.1)], (180, 180, 185), 0.02)
    s.poly([(0.4, -0.08), (0.53, 0.0), (0.4, 0.0)], (200, 40, 40))


def _countryside(s: _Scene) -> float:
    """Sky over green hills; returns the height of the track bed."""
    _sky(s)
    _clouds(s, s.r.randrange(3))
    y = s.u(0.7, 0.82)
    for _ in range(s.r.randrange(1, 3)):
        s.ellipse(s.u(0, 1), y, s.u(0.3, 0.6), s.u(0.1, 0.25), s.jit((110, 160, 90), 20))
    _ground(s, y, (90, 130, 70), (130, 150, 90))
    _rails(s, y)
    return y


def _train_loco(s: _Scene) -> None:
    y = _countryside(s)
    with s.pose(s.u(0.4, 0.6), y, s.u(0.8, 1.0)):
        _steam_loco(s, s.jit(s.pick(_TRAIN_PAINTS), 15))


def _train_carriages(s: _Scene) -> None:
    y = _countryside(s)
    paint = s.jit(s.pick(_TRAIN_PAINTS), 15)
    scale, length = s.u(0.6, 0.8), 0.95
    x = s.u(-0.3, 0.1)
    while x < 1.2:
        with s.pose(x, y, scale):
            _carriage(s, paint, length)
            s.rect(length / 2 - 0.02, -0.2, length / 2 + 0.06, -0.12, (50, 50, 50))  # coupling
        x += scale * (length + 0.05)


def _train_tracks(s: _Scene) -> None:
    _sky(s)
    vx, vy = s.u(0.35, 0.65), s.u(0.3, 0.42)
    _ground(s, vy, (90, 130, 70), (130, 150, 90))
    ballast = [(vx - 0.01, vy), (vx + 0.01, vy), (0.95, 1.05), (0.05, 1.05)]
    s.paste(_lerp(s.noise(12), (110, 100, 90), (150, 140, 125)), ballast)
    wood = s.jit((100, 75, 50), 10)
    for k in range(14):  # sleepers crowd together towards the vanishing point
        t = ((k + 1) / 14) ** 2
        y, half = vy + (1.05 - vy) * t, 0.005 + 0.4 * t
        s.rect(vx + (0.5 - vx) * t - half, y - 0.012 * t, vx + (0.5 - vx) * t + half, y + 0.02 * t, wood)
    for side in (-1, 1):
        s.line([(vx, vy), (0.5 + side * 0.28, 1.05)], (170, 170, 175), 0.015)
    side, pole = s.pick((-1, 1)), (90, 70, 50)
    for k in range(1, 7):  # telegraph poles along one side, shrinking with distance
        t = (k / 6) ** 2
        x, y = vx + (0.5 + side * 0.6 - vx) * t, vy + (1.05 - vy) * t
        s.line([(x, y), (x, y - 0.5 * t)], pole, 0.004 + 0.02 * t)
        s.line([(x - 0.06 * t, y - 0.45 * t), (x + 0.06 * t, y - 0.45 * t)], pole, 0.003 + 0.012 * t)
    paint = s.jit(s.pick(_TRAIN_PAINTS), 15)
    s.rect(vx - 0.04, vy - 0.1, vx + 0.04, vy + 0.005, paint)
    s.rect(vx - 0.03, vy - 0.085, vx + 0.03, vy - 0.05, _GLASS)
    s.circle(vx, vy - 0.02, 0.01, (255, 245, 180))


# --------------------------------------------------------------------------------------
# Buildings: walls, roofs, grids of windows, bricks


_HOUSE_WALLS: tuple[RGB, ...] = (
    (235, 225, 200),
    (200, 90, 70),
    (230, 200, 120),
    (170, 200, 220),
    (240, 240, 235),
    (190, 160, 130),
)
_ROOFS: tuple[RGB, ...] = ((150, 60, 50), (70, 70, 80), (110, 80, 60), (60, 90, 120))


def _window(s: _Scene, x0: float, y0: float, x1: float, y1: float, glass: RGB, frame: RGB) -> None:
    """Framed window with a cross-shaped glazing bar."""
    s.rect(x0, y0, x1, y1, glass, outline=frame, width=0.02)
    s.line([((x0 + x1) / 2, y0), ((x0 + x1) / 2, y1)], frame, 0.015)
    s.line([(x0, (y0 + y1) / 2), (x1, (y0 + y1) / 2)], frame, 0.015)


def _house(s: _Scene, wall: RGB, roof: RGB, glass: RGB, w: float = 0.6, h: float = 0.45) -> None:
    """House standing on the origin, w wide and h tall to the eaves: pitched roof, chimney,
    door and cross-barred windows."""
    top = -h
    s.rect(w * 0.18, top - w * 0.38, w * 0.3, top - w * 0.1, s.jit((150, 70, 50), 15))
    s.rect(-w / 2, top, w / 2, 0, wall)
    s.poly([(-w / 2 - 0.05, top + 0.01), (0, top - w * 0.45), (w / 2 + 0.05, top + 0.01)], roof)
    frame = _WHITE if sum(wall) < 600 else (120, 100, 90)
    dx = s.pick((-1, 0, 1)) * w * 0.25
    s.rect(dx - w * 0.09, -h * 0.48, dx + w * 0.09, 0, _mix(s.pick(_PAINTS), _BLACK, 0.2))
    s.circle(dx + w * 0.05, -h * 0.24, 0.012, (220, 190, 80))
    ww = w * 0.14
    for x in (-w * 0.3, 0.0, w * 0.3):
        if abs(x - dx) < w * 0.2:
            continue
        _window(s, x - ww / 2, -h * 0.55, x + ww / 2, -h * 0.55 + ww, glass, frame)
    if h > 0.4:  # upper floor
        for x in (-w * 0.25, w * 0.25):
            _window(s, x - ww / 2, -h * 0.92, x + ww / 2, -h * 0.92 + ww, glass, frame)


def _house_facade(s: _Scene) -> None:
    _sky(s)
    _clouds(s, s.r.randrange(3))
    ground = s.u(0.8, 0.9)
    _grass(s, ground)
    x, scale = s.u(0.4, 0.6), s.u(1.1, 1.35)
    with s.pose(x, ground, scale, s.u(-3, 3)):
        _house(s, s.jit(s.pick(_HOUSE_WALLS), 15), s.jit(s.pick(_ROOFS), 15), _GLASS, h=s.u(0.42, 0.5))
    for _ in range(s.r.randrange(1, 4)):
        s.blob(
            s.u(0, 1), ground + s.u(-0.01, 0.03), s.u(0.05, 0.1), s.u(0.04, 0.07), s.jit((60, 120, 50), 15)
        )


def _house_street(s: _Scene) -> None:
    _sky(s)
    ground = s.u(0.72, 0.82)
    s.rect(-0.1, ground, 1.1, 1.1, s.jit((160, 160, 155), 10))
    s.rect(-0.1, ground + 0.08, 1.1, 1.1, s.jit((80, 80, 85), 10))
    x = s.u(-0.1, 0.05)
    while x < 1.0:
        w = s.u(0.22, 0.32)
        with s.pose(x + w / 2, ground, 1.0):
            _house(
                s, s.jit(s.pick(_HOUSE_WALLS), 15), s.jit(s.pick(_ROOFS), 15), _GLASS, w=w, h=s.u(0.25, 0.45)
            )
        x += w + s.u(0.08, 0.12)


def _house_night(s: _Scene) -> None:
    _night(s)
    s.circle(s.u(0.1, 0.9), s.u(0.08, 0.25), s.u(0.04, 0.07), s.jit((245, 240, 200), 10))
    ground = s.u(0.82, 0.9)
    s.rect(-0.1, ground, 1.1, 1.1, s.jit((20, 35, 25), 8))
    wall = _mix(s.jit(s.pick(_HOUSE_WALLS), 15), (10, 15, 40), 0.7)
    with s.pose(s.u(0.4, 0.6), ground, s.u(1.0, 1.3), s.u(-3, 3)):
        _house(s, wall, _mix(s.pick(_ROOFS), (10, 10, 30), 0.6), s.jit((250, 210, 100), 10), h=s.u(0.42, 0.5))


def _tower(
    s: _Scene,
    x0: float,
    x1: float,
    top: float,
    bottom: float,
    wall: RGB,
    glass: RGB,
    cols: int,
    floor_h: float,
) -> None:
    """Tower block: a glass box crossed by wall-coloured columns and floor bands, which reads
    as a grid of windows at the cost of a few lines instead of one shape per window."""
    s.rect(x0, top, x1, bottom, glass)
    for i in range(cols + 1):
        x = x0 + (x1 - x0) * i / cols
        s.line([(x, top), (x, bottom)], wall, (x1 - x0) / cols * 0.35)
    y = top
    while y < bottom:
        s.line([(x0, y), (x1, y)], wall, floor_h * 0.4)
        y += floor_h


def _skyline(s: _Scene) -> None:
    dusk = s.chance(0.4)
    if dusk:
        _sunset(s)
    else:
        _sky(s)
    haze = s.bg_mean
    x = s.u(-0.1, 0.0)
    while x < 1.0:  # hazy back row
        w = s.u(0.1, 0.2)
        s.rect(x, s.u(0.25, 0.6), x + w, 1.1, _mix(haze, (60, 70, 90), 0.35))
        x += w
    x = s.u(-0.1, 0.0)
    while x < 1.0:
        w = s.u(0.12, 0.22)
        top = s.u(0.15, 0.6)
        wall = s.jit(s.pick(((90, 95, 110), (150, 150, 160), (190, 180, 160), (70, 80, 90))), 15)
        glass = s.jit((250, 210, 110), 15) if dusk else s.jit((120, 170, 210), 20)
        _tower(s, x, x + w, top, 1.1, wall, glass, s.r.randrange(2, 5), s.u(0.035, 0.06))
        if s.chance(0.3):
            s.line([(x + w / 2, top), (x + w / 2, top - 0.08)], wall, 0.01)
        x += w + s.u(0.0, 0.06)


def _skyscraper_up(s: _Scene) -> None:
    _sky(s)
    _clouds(s, s.r.randrange(1, 4))
    wall = s.jit(s.pick(((150, 150, 160), (190, 180, 160), (80, 90, 100))), 15)
    glass = s.jit((110, 160, 205), 20)
    with s.pose(0.5, 0.5, 1.0, s.u(-12, 12)):
        top, half_top, half_bottom = s.u(-0.5, -0.35), s.u(0.1, 0.16), s.u(0.38, 0.48)
        bottom = 0.75
        s.poly([(-half_bottom, bottom), (-half_top, top), (half_top, top), (half_bottom, bottom)], glass)
        cols = s.r.randrange(4, 7)
        for i in range(cols + 1):  # columns converge on a vanishing point above the tower
            f = i / cols * 2 - 1
            s.line([(f * half_bottom, bottom), (f * half_top, top)], wall, 0.1 / cols)
        floors = s.r.randrange(9, 14)
        for j in range(floors + 1):  # floors get closer together with height
            t = (j / floors) ** 1.6
            y = bottom + (top - bottom) * t
            half = half_bottom + (half_top - half_bottom) * t
            s.line([(-half, y), (half, y)], wall, 0.03 * (1 - 0.7 * t))


def _glass_facade(s: _Scene) -> None:
    sky = s.gradient(s.jit((60, 110, 180), 20), s.jit((170, 210, 235), 20), s.u(45, 135))
    sky += (s.noise(3)[..., None] - 0.5) * 60  # reflected clouds
    s.fill(sky, clutter=0)
    frame = s.jit(s.pick(((60, 65, 75), (150, 150, 155), (200, 200, 205))), 10)
    cols, rows = s.r.randrange(3, 6), s.r.randrange(4, 7)
    with s.pose(0.5, 0.5, s.u(1.3, 1.6), s.u(-15, 15)):
        for _ in range(s.r.randrange(2, 6)):  # some panes tinted differently
            i, j = s.r.randrange(cols), s.r.randrange(rows)
            s.rect(
                -0.5 + i / cols,
                -0.5 + j / rows,
                -0.5 + (i + 1) / cols,
                -0.5 + (j + 1) / rows,
                _mix(s.bg_mean, s.pick(((30, 60, 90), (200, 220, 230))), 0.5),
            )
        for i in range(cols + 1):
            s.line([(-0.5 + i / cols, -0.6), (-0.5 + i / cols, 0.6)], frame, 0.03)
        for j in range(rows + 1):
            s.line([(-0.6, -0.5 + j / rows), (0.6, -0.5 + j / rows)], frame, 0.02)


_STONE: tuple[RGB, ...] = ((160, 155, 145), (190, 180, 160), (130, 125, 120), (180, 160, 130))


def _battlements(s: _Scene, x0: float, x1: float, y: float, merlon: float, col: RGB) -> None:
    """Alternating raised blocks along the top edge of a wall at height y."""
    n = max(2, round((x1 - x0) / (2 * merlon)))
    w = (x1 - x0) / (2 * n - 1)
    for k in range(n):
        s.rect(x0 + 2 * k * w, y - merlon * 0.9, x0 + (2 * k + 1) * w, y + 0.005, col)


def _castle(s: _Scene, stone: RGB, roof: RGB, flag: RGB, dark: RGB) -> None:
    """Castle standing on the origin, width ~1: crenellated wall between two towers with
    conical roofs and flags, an arched gate and arrow slits."""
    shade = _mix(stone, _BLACK, 0.15)
    if s.chance(0.6):  # central keep
        s.rect(-0.15, -0.6, 0.15, 0, shade)
        _battlements(s, -0.15, 0.15, -0.6, 0.05, shade)
    s.rect(-0.35, -0.32, 0.35, 0, stone)
    _battlements(s, -0.35, 0.35, -0.32, 0.045, stone)
    for x in (-0.38, 0.38):
        h = s.u(0.5, 0.62)
        s.rect(x - 0.1, -h, x + 0.1, 0, shade)
        if s.chance(0.6):
            s.poly([(x - 0.13, -h), (x, -h - 0.25), (x + 0.13, -h)], roof)
            s.line([(x, -h - 0.25), (x, -h - 0.36)], dark, 0.01)
            s.poly([(x, -h - 0.36), (x + 0.1, -h - 0.33), (x, -h - 0.3)], flag)
        else:
            _battlements(s, x - 0.1, x + 0.1, -h, 0.04, shade)
        for y in (-h + 0.12, -h + 0.27):
            s.rect(x - 0.012, y, x + 0.012, y + 0.07, dark)
    s.rect(-0.07, -0.14, 0.07, 0, dark)
    s.circle(0, -0.14, 0.07, dark)


def _castle_hill(s: _Scene) -> None:
    _sky(s)
    _clouds(s, s.r.randrange(3))
    top = s.u(0.62, 0.72)
    x = s.u(0.4, 0.6)
    s.ellipse(x, top + 0.45, s.u(0.6, 0.9), 0.45, s.jit((80, 140, 60), 15))
    with s.pose(x, top + 0.02, s.u(0.6, 0.8)):
        roof = s.jit(s.pick(_ROOFS + ((60, 80, 170),)), 15)
        _castle(s, s.jit(s.pick(_STONE), 15), roof, s.jit(s.pick(_PAINTS), 15), (45, 40, 40))


def _castle_gate(s: _Scene) -> None:
    stone = s.jit(s.pick(_STONE), 15)
    s.fill(_lerp(s.bricks(s.u(10, 16)), _mix(stone, _BLACK, 0.45), stone), clutter=0)
    sky = s.gradient(s.jit((70, 130, 215), 25), s.jit((195, 222, 245), 15))
    wall_top, merlon = s.u(0.1, 0.2), s.u(0.08, 0.12)
    outline = [(-0.1, -0.1), (1.1, -0.1)]  # the sky, cut along the battlements' profile
    x = 1.1 + s.u(0, 2 * merlon)
    while x > -0.1:
        outline += [
            (x, wall_top - merlon),
            (x, wall_top),
            (x - merlon, wall_top),
            (x - merlon, wall_top - merlon),
        ]
        x -= 2 * merlon
    s.paste(sky, outline)
    cx, w = s.u(0.4, 0.6), s.u(0.18, 0.25)
    spring = s.u(0.5, 0.6)
    dark = (30, 25, 25)
    s.rect(cx - w, spring, cx + w, 1.1, dark)
    s.circle(cx, spring, w, dark)
    iron = s.jit((90, 85, 80), 10)
    for k in range(-3, 4):  # portcullis bars, each starting at the arch above it
        x = cx + k * w / 3.5
        s.line([(x, spring - w * math.sqrt(1 - (k / 3.5) ** 2)), (x, 1.1)], iron, 0.015)
    y = spring - w * 0.6
    while y < 1.1:
        s.line([(cx - w, y), (cx + w, y)], iron, 0.015)
        y += w / 3
    banner = s.jit(s.pick(_PAINTS), 15)
    for bx in (cx - w - 0.15, cx + w + 0.08):
        if s.chance(0.6):
            s.poly([(bx, 0.3), (bx + 0.07, 0.3), (bx + 0.07, 0.6), (bx + 0.035, 0.55), (bx, 0.6)], banner)


def _castle_sunset(s: _Scene) -> None:
    _sunset(s)
    sun = s.u(0.5, 0.75)
    s.circle(s.u(0.2, 0.8), sun, s.u(0.1, 0.16), s.jit((255, 210, 120), 10))
    ink = s.jit((40, 25, 45), 8)
    ground = s.u(0.72, 0.82)
    s.ellipse(s.u(0.3, 0.7), ground + 0.4, 1.0, 0.45, ink)
    with s.pose(s.u(0.4, 0.6), ground + 0.03, s.u(0.65, 0.85)):
        _castle(s, ink, ink, ink, ink)


def _lighthouse(s: _Scene, band: RGB, white: RGB, lamp: RGB) -> None:
    """Lighthouse standing on the origin, height ~1: tapered tower with horizontal colour
    bands, a gallery and a lantern room."""
    height, bottom_half, top_half = 0.75, 0.13, 0.08
    n = 2 * s.r.randrange(2, 4)
    for k in range(n):
        t0, t1 = k / n, (k + 1) / n
        w0 = bottom_half + (top_half - bottom_half) * t0
        w1 = bottom_half + (top_half - bottom_half) * t1
        y0, y1 = -height * t0, -height * t1
        s.poly([(-w0, y0), (w0, y0), (w1, y1), (-w1, y1)], band if k % 2 else white)
    s.rect(-0.03, -0.1, 0.03, 0, (50, 45, 45))
    s.rect(-top_half * 0.75, -height - 0.15, top_half * 0.75, -height - 0.02, lamp)
    s.line([(0, -height - 0.15), (0, -height - 0.02)], (40, 40, 40), 0.012)
    s.poly(
        [(-top_half, -height - 0.15), (0, -height - 0.24), (top_half, -height - 0.15)],
        _mix(band, _BLACK, 0.3),
    )
    s.rect(-top_half - 0.04, -height - 0.03, top_half + 0.04, -height + 0.01, (40, 40, 40))
    s.line([(-top_half - 0.04, -height - 0.06), (top_half + 0.04, -height - 0.06)], (40, 40, 40), 0.008)


def _sea(s: _Scene, y: float, col: RGB) -> None:
    s.paste(
        _lerp(s.stripes(s.u(25, 40), 90 + s.u(-4, 4)) * 0.5 + s.noise(6) * 0.5, col, _mix(col, _WHITE, 0.3)),
        [(-0.1, y), (1.1, y), (1.1, 1.1), (-0.1, 1.1)],
    )


def _lighthouse_coast(s: _Scene) -> None:
    _sky(s)
    _clouds(s, s.r.randrange(3))
    horizon = s.u(0.55, 0.65)
    _sea(s, horizon, s.jit((40, 100, 160), 15))
    x, base = s.u(0.3, 0.7), s.u(0.8, 0.9)
    rock = s.jit((110, 100, 95), 15)
    for _ in range(s.r.randrange(3, 6)):
        shade = _mix(rock, _BLACK, s.u(0, 0.3))
        s.blob(x + s.u(-0.25, 0.25), base + s.u(0.0, 0.1), s.u(0.1, 0.2), s.u(0.06, 0.12), shade, 0.2)
    with s.pose(x, base, s.u(0.75, 0.95)):
        _lighthouse(s, s.jit((200, 40, 40), 15), _WHITE, (250, 240, 170))


def _lighthouse_night(s: _Scene) -> None:
    _night(s)
    horizon = s.u(0.6, 0.7)
    _sea(s, horizon, s.jit((15, 30, 60), 8))
    x, base, scale = s.u(0.3, 0.7), s.u(0.85, 0.95), s.u(0.7, 0.9)
    lamp = (x, base - 0.83 * scale)
    beam = _mix(s.bg_mean, (255, 240, 160), 0.45)
    for side in (-1, 1):  # light beams sweeping out to both sides
        a = math.radians(s.u(-15, 15))
        far = (lamp[0] + side * 1.2 * math.cos(a), lamp[1] + 1.2 * math.sin(a))
        s.poly([lamp, (far[0], far[1] - 0.15), (far[0], far[1] + 0.15)], beam)
    s.rect(-0.1, base, 1.1, 1.1, (20, 20, 25))
    with s.pose(x, base, scale):
        _lighthouse(s, _mix(s.jit((200, 40, 40), 15), _BLACK, 0.5), (110, 110, 120), (255, 250, 200))


def _lighthouse_closeup(s: _Scene) -> None:
    _sky(s)
    _clouds(s, s.r.randrange(1, 4))
    with s.pose(s.u(0.4, 0.6), s.u(1.3, 1.6), s.u(1.6, 2.0), s.u(-8, 8)):
        _lighthouse(
            s, s.jit(s.pick(((200, 40, 40), (30, 30, 35), (40, 80, 160))), 15), _WHITE, (250, 240, 170)
        )


# --------------------------------------------------------------------------------------
# The class table


@dataclass(frozen=True)
class DemoClass:
    """One class of the demo dataset: its id, readable name, superclass and facet names."""

    id: int
    name: str
    superclass: str
    facets: tuple[str, ...]


_Drawer = Callable[[_Scene], None]

# (name, superclass, ((facet name, drawer), ...)); order fixes the class ids.
_TABLE: tuple[tuple[str, str, tuple[tuple[str, _Drawer], ...]], ...] = (
    (
        "dog",
        "animals",
        (
            ("dog: head close-up", _dog_closeup),
            ("dog: running side view", _dog_running),
            ("dog: in a basket", _dog_basket),
        ),
    ),
    (
        "cat",
        "animals",
        (
            ("cat: face close-up", _cat_closeup),
            ("cat: silhouette on a windowsill", _cat_window),
            ("cat: curled up asleep", _cat_asleep),
        ),
    ),
    (
        "fish",
        "animals",
        (
            ("fish: side view close-up", _fish_closeup),
            ("fish: school in deep water", _fish_school),
            ("fish: in a bowl", _fish_bowl),
        ),
    ),
    (
        "bird",
        "animals",
        (
            ("bird: perched on a branch", _bird_branch),
            ("bird: flock in flight", _bird_flock),
            ("bird: chicks in a nest", _bird_nest),
        ),
    ),
    (
        "tulip",
        "plants",
        (
            ("tulip: single bloom close-up", _tulip_closeup),
            ("tulip: field in rows", _tulip_field),
            ("tulip: bouquet in a vase", _tulip_vase),
        ),
    ),
    (
        "sunflower",
        "plants",
        (
            ("sunflower: flower head close-up", _sunflower_closeup),
            ("sunflower: tall stalk against the sky", _sunflower_stalk),
            ("sunflower: field", _sunflower_field),
        ),
    ),
    (
        "fern",
        "plants",
        (
            ("fern: single frond", _fern_frond),
            ("fern: clump of fronds", _fern_clump),
            ("fern: curled fiddleheads", _fern_fiddlehead),
        ),
    ),
    (
        "cactus",
        "plants",
        (
            ("cactus: saguaro in the desert", _cactus_desert),
            ("cactus: potted barrel cactus", _cactus_pot),
            ("cactus: prickly pear pads", _cactus_pads),
        ),
    ),
    (
        "car",
        "vehicles",
        (
            ("car: side view on a road", _car_road),
            ("car: front view", _car_front_view),
            ("car: parking lot from above", _car_parking),
        ),
    ),
    (
        "bus",
        "vehicles",
        (
            ("bus: side view", _bus_side_view),
            ("bus: front view with route sign", _bus_front_view),
            ("bus: double-decker", _bus_double_view),
        ),
    ),
    (
        "bicycle",
        "vehicles",
        (
            ("bicycle: side view", _bike_side),
            ("bicycle: wheel close-up", _bike_wheel_closeup),
            ("bicycle: row in a bike rack", _bike_rack),
        ),
    ),
    (
        "train",
        "vehicles",
        (
            ("train: steam locomotive", _train_loco),
            ("train: carriages on the line", _train_carriages),
            ("train: tracks to the horizon", _train_tracks),
        ),
    ),
    (
        "house",
        "buildings",
        (
            ("house: front facade", _house_facade),
            ("house: street of houses", _house_street),
            ("house: at night", _house_night),
        ),
    ),
    (
        "skyscraper",
        "buildings",
        (
            ("skyscraper: city skyline", _skyline),
            ("skyscraper: looking up", _skyscraper_up),
            ("skyscraper: glass facade close-up", _glass_facade),
        ),
    ),
    (
        "castle",
        "buildings",
        (
            ("castle: on a hill", _castle_hill),
            ("castle: gatehouse close-up", _castle_gate),
            ("castle: silhouette at sunset", _castle_sunset),
        ),
    ),
    (
        "lighthouse",
        "buildings",
        (
            ("lighthouse: on a rocky coast", _lighthouse_coast),
            ("lighthouse: beams at night", _lighthouse_night),
            ("lighthouse: striped tower close-up", _lighthouse_closeup),
        ),
    ),
)

CLASSES: tuple[DemoClass, ...] = tuple(
    DemoClass(i, name, superclass, tuple(f for f, _ in facets))
    for i, (name, superclass, facets) in enumerate(_TABLE)
)
SUPERCLASSES: tuple[str, ...] = tuple(dict.fromkeys(c.superclass for c in CLASSES))
_DRAWERS: tuple[tuple[_Drawer, ...], ...] = tuple(tuple(d for _, d in facets) for _, _, facets in _TABLE)


# --------------------------------------------------------------------------------------
# Public API


def render_image(class_id: int, facet: int, seed: int, index: int, size: int = 64) -> Image.Image:
    """Render one RGB image of `class_id`'s `facet`, `size` x `size` pixels.

    Deterministic for (class_id, facet, seed, index, size), and independent of any other
    image. The layout does not depend on `size`, so one image can be rendered again larger.
    """
    if not 0 <= class_id < len(CLASSES):
        raise ValueError(f"class_id must be in [0, {len(CLASSES)}), got {class_id}")
    if not 0 <= facet < len(CLASSES[class_id].facets):
        cls = CLASSES[class_id]
        raise ValueError(f"class {cls.name!r} has {len(cls.facets)} facets, got facet {facet}")
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    nr = np.random.default_rng(np.random.SeedSequence([seed, _IMAGE_STREAM, class_id, facet, index]))
    r = random.Random(int.from_bytes(nr.bytes(8), "little"))  # seeded by NumPy's first draw
    scene = _Scene(size, r, nr)
    _DRAWERS[class_id][facet](scene)

    arr = np.asarray(scene.img.reduce(_SUPERSAMPLE), np.float32)
    # Photometric jitter (contrast, brightness, tint) and sensor grain, so that no class
    # can be told apart from the others by exact colour statistics alone.
    contrast, brightness = r.uniform(0.8, 1.15), r.uniform(-18, 18)
    grain = nr.random(arr.shape[:2], dtype=np.float32) * 10 - 5  # monochrome, one draw per pixel
    for ch in range(3):
        arr[..., ch] = (arr[..., ch] - 128) * contrast + (128 + brightness + r.uniform(-10, 10)) + grain
    if r.random() < 0.5:  # every subject is as likely to face left as right
        arr = arr[:, ::-1]
    return _to_image(arr)


@dataclass
class DemoData:
    """A generated dataset: images with their class and facet labels."""

    images: np.ndarray  # uint8 (N, size, size, 3)
    labels: np.ndarray  # int64 (N,)
    facets: np.ndarray  # int64 (N,) facet index within the class
    classes: tuple[DemoClass, ...]


def generate(
    seed: int = 0, images_per_class: int = 400, size: int = 64, progress: Callable[[int], None] | None = None
) -> DemoData:
    """Render `images_per_class` images of every class, in a seeded shuffled order.

    Facets are balanced within each class (image i of a class shows facet i mod n_facets).
    `progress`, if given, is called as progress(n_done) after each image.
    """
    if images_per_class < 0:
        raise ValueError(f"images_per_class must be >= 0, got {images_per_class}")
    jobs = [(c.id, i % len(c.facets), i) for c in CLASSES for i in range(images_per_class)]
    order = np.random.default_rng(np.random.SeedSequence([seed, _SHUFFLE_STREAM])).permutation(len(jobs))
    images = np.empty((len(jobs), size, size, 3), np.uint8)
    labels = np.empty(len(jobs), np.int64)
    facets = np.empty(len(jobs), np.int64)
    for n, j in enumerate(order):
        class_id, facet, index = jobs[j]
        images[n] = np.asarray(render_image(class_id, facet, seed, index, size))
        labels[n], facets[n] = class_id, facet
        if progress is not None:
            progress(n + 1)
    return DemoData(images, labels, facets, CLASSES)
