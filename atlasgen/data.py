"""Datasets as the stages see them: images in [0, 1], labels and class names.

The dataset stage writes a folder (see docs/artifacts.md); :func:`open_dataset`
reads it. The demo source stores its generated pixels in ``images.npy``; a
folder source stores the image paths and decodes them on demand.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class BadImage(Exception):
    """A file in an image folder that cannot be used; the message says why."""


def load_rgb(path: str | Path, min_side: int = 1) -> Image.Image:
    """Open any image file as 8-bit RGB, or raise :class:`BadImage` saying why not.

    Grayscale, palette, CMYK and other modes are converted; transparency is
    composited on white; 16-bit and 32-bit images are scaled to 8 bits (not
    clipped); EXIF orientation is applied; animations give their first frame.
    """
    try:
        with Image.open(path) as im:
            im.load()  # decode now: truncated and corrupt files fail here, not later
            im = ImageOps.exif_transpose(im)
            if min(im.size) < min_side:
                raise BadImage(
                    f"too small ({im.size[0]}x{im.size[1]} px, need at least {min_side} px a side)"
                )
            return _to_rgb(im)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage(f"too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise BadImage(f"unreadable or corrupt ({type(exc).__name__}: {exc})") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if mode == "F":
            a = a * 255.0 if a.size and a.max() <= 1.0 else a
        elif mode.startswith("I;16") or (a.size and a.max() > 255):
            a = a / 257.0  # 16-bit range to 8-bit
        return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def resize_center_crop(img: Image.Image, size: int, crop_fraction: float = 1.0) -> Image.Image:
    """Resize the shorter side to ``size / crop_fraction`` and crop the centre ``size`` square
    (the usual eval transform; torchvision's 256 -> 224 is crop_fraction 0.875)."""
    img = img if img.mode == "RGB" else _to_rgb(img)
    w, h = img.size
    scale = size / crop_fraction / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


class Dataset:
    """Read-only view of a dataset artifact (docs/artifacts.md), for the stages and the renderer.

    Imports no torch until :meth:`batch` is called (the renderer never calls it).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.info = json.loads((self.folder / "dataset.json").read_text(encoding="utf-8"))
        self.info["classes"] = sorted(self.info["classes"], key=lambda c: c["id"])
        if [c["id"] for c in self.info["classes"]] != list(range(len(self.info["classes"]))):
            raise ValueError(
                f"{self.folder / 'dataset.json'}: class ids must be 0..K-1. Fix: rebuild the dataset stage."
            )
        self.labels = np.load(self.folder / "labels.npy")
        self.split = np.load(self.folder / "split.npy")
        facets = self.folder / "facets.npy"
        self.facets = np.load(facets) if facets.exists() else None  # facet index within the class (demo)
        self.image_size = int(self.info["image_size"])
        images = self.folder / "images.npy"
        self._pixels = np.load(images, mmap_mode="r") if images.exists() else None
        self._paths = None
        if self._pixels is None:
            if not (self.folder / "paths.json").exists():
                raise FileNotFoundError(
                    f"{self.folder} has neither images.npy nor paths.json. Fix: rebuild the dataset stage."
                )
            paths = json.loads((self.folder / "paths.json").read_text(encoding="utf-8"))
            paths = paths["paths"] if isinstance(paths, dict) else paths  # {"paths": [...]} written by hand
            self._paths = [p if os.path.isabs(p) else str(self.folder / p) for p in paths]

    @property
    def classes(self) -> list[dict]:
        return self.info["classes"]

    @property
    def n_classes(self) -> int:
        return len(self.info["classes"])

    @property
    def class_names(self) -> list[str]:
        return [str(c["name"]) for c in self.classes]

    @property
    def superclass_of(self) -> list[str | None]:
        return [c.get("superclass") for c in self.classes]

    @property
    def facet_names(self) -> list[list[str]]:
        return [list(c.get("facets") or []) for c in self.classes]

    @property
    def identity(self) -> str | None:
        return self.info.get("identity")

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self, i: int) -> str:
        """How to find image ``i``: its file, or its index and class for generated images."""
        name = self.classes[int(self.labels[i])]["name"]
        return self._paths[i] if self._paths is not None else f"image #{i} (class {name!r})"

    def indices(self, split: str) -> np.ndarray:
        """Image indices of the 'train' (SAE, examples) or 'heldout' split."""
        return np.flatnonzero(self.split == (0 if split == "train" else 1))

    def image(self, i: int) -> np.ndarray:
        """RGB uint8 array of image ``i`` as stored: generated pixels, or the whole file (uncropped)."""
        if self._pixels is not None:
            return np.asarray(self._pixels[i])
        return np.asarray(load_rgb(self._paths[i]))

    def pixels(self, indices) -> np.ndarray:
        """uint8 (n, S, S, 3) for the given image indices, as the model sees them."""
        indices = np.asarray(indices)
        if self._pixels is not None:
            return np.asarray(self._pixels[indices])
        crop = float(self.info.get("crop_fraction", 1.0))
        return np.stack(
            [np.asarray(resize_center_crop(load_rgb(self._paths[i]), self.image_size, crop)) for i in indices]
        )

    def batch(self, indices):
        """A float tensor (n, 3, S, S) in [0, 1], the input every model here takes."""
        import torch

        return torch.from_numpy(self.pixels(indices)).permute(0, 3, 1, 2).float().div_(255.0)


def open_dataset(folder: Path) -> Dataset:
    return Dataset(folder)


def class_folders(root: Path) -> list[str]:
    """The class sub-folders of an ImageNet-style folder, sorted (hidden folders are not classes)."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_image_folder(root: Path, per_class: int, min_side: int = 1):
    """An ImageNet-style folder: one sub-folder per class (searched recursively).

    Every file is opened and decoded once: files that are not images, are
    corrupt or truncated, or are smaller than ``min_side`` are skipped, never
    fatal. Returns (class names, image paths, labels, skipped, converted):
    ``skipped`` lists ``(path, reason)``; ``converted`` counts the usable
    images per source mode other than 8-bit RGB. Sorted, so the result is stable.
    """
    classes = class_folders(root)
    paths, labels, skipped, converted = [], [], [], {}
    for label, name in enumerate(classes):
        kept = 0
        for p in sorted(p for p in (root / name).rglob("*") if p.is_file()):
            if per_class and kept >= per_class:
                break
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((os.path.abspath(p), f"not an image file ({p.suffix or 'no extension'})"))
                continue
            try:
                mode = _checked_mode(p, min_side)
            except BadImage as exc:
                skipped.append((os.path.abspath(p), str(exc)))
                continue
            if mode != "RGB":
                converted[mode] = converted.get(mode, 0) + 1
            paths.append(str(p.resolve()))
            labels.append(label)
            kept += 1
    return classes, paths, labels, skipped, dict(sorted(converted.items()))


def _checked_mode(path: Path, min_side: int) -> str:
    """The file's original mode, after checking that :func:`load_rgb` can use it."""
    try:
        with Image.open(path) as im:
            mode = im.mode
    except (OSError, SyntaxError, ValueError):
        mode = "?"
    load_rgb(path, min_side)
    return mode


# ---------------------------------------------------------------- CSV lists, class names, subsampling


def read_image_csv(csv_path: Path) -> tuple[list[str], list[str], list[int]]:
    """A CSV list of images, columns ``path,label`` (a header row naming them is optional;
    paths are relative to the CSV's folder). Returns (class ids sorted, image paths, labels)."""
    import csv

    from atlasgen.errors import AtlasgenError

    csv_path = Path(csv_path)
    rows = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if n == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise AtlasgenError(
                    [
                        f"dataset.path: {csv_path.name} line {n}: expected 'path,label', got {','.join(row)!r}. Fix: two columns per row."
                    ]
                )
            rows.append((row[0].strip(), row[1].strip()))
    classes = sorted({label for _, label in rows})
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for path, label in rows:
        p = Path(path).expanduser()
        p = p if p.is_absolute() else csv_path.parent / p
        if not p.is_file():
            raise AtlasgenError(
                [
                    f"dataset.path: {csv_path.name} lists {path!r}, which is not a file ({str(p)!r}). Fix: correct or remove that row."
                ]
            )
        paths.append(str(p.resolve()))
        labels.append(index[label])
    return classes, paths, labels


def read_class_names(path: Path) -> dict[str, str]:
    """A class-id -> readable-name map: one ``id name`` (space, tab or comma separated;
    the name may contain spaces) per line, e.g. ``n01440764 tench, Tinca tinca``."""
    import re

    names = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"[\t,]|\s+", line, maxsplit=1)
        if len(parts) == 2 and parts[1].strip():
            names[parts[0].strip()] = parts[1].strip()
    return names


def subsample(labels: list[int], per_class: int, limit: int, seed: int) -> list[int]:
    """Indices kept after at most ``per_class`` images per class and ``limit`` in all (0: no cap),
    drawn by a seeded permutation; returned in their original order, so the result
    depends only on (labels, caps, seed)."""
    rng = np.random.default_rng([seed, 11])
    labels_arr = np.asarray(labels)
    keep = np.arange(len(labels_arr))
    if per_class:
        chosen = []
        for c in np.unique(labels_arr):
            members = np.flatnonzero(labels_arr == c)
            chosen.append(members[np.sort(rng.permutation(len(members))[:per_class])])
        keep = np.sort(np.concatenate(chosen)) if chosen else keep
    if limit and len(keep) > limit:
        keep = np.sort(keep[rng.permutation(len(keep))[:limit]])
    return keep.tolist()


def _id_prefix(class_id: str) -> str:
    """The id before the first '_', '-' or space: 'n01440764_tench' -> 'n01440764'."""
    import re

    return re.split(r"[_\- ]", class_id, maxsplit=1)[0]


def match_class_names(
    ids: list[str], names: dict[str, str], source: str = "dataset.class_names"
) -> tuple[dict[str, str], str | None]:
    """The readable name of each class id found in ``names`` (read_class_names), and a warning
    when fewer than all classes match. A class matches a line of the file by its exact id, by its id
    before the first '_', '-' or space (folder 'n01440764_tench', line 'n01440764 tench'), or
    case-insensitively by id or by readable name (folder 'Tench', line 'n01440764 tench')."""
    by_prefix: dict[str, str] = {}
    by_lower: dict[str, str] = {}
    for key, name in names.items():
        by_prefix.setdefault(_id_prefix(key), key)
        by_lower.setdefault(key.lower(), key)
        by_lower.setdefault(name.lower(), key)
        by_lower.setdefault(name.split(",")[0].strip().lower(), key)  # 'tench, Tinca tinca' -> 'tench'
    out: dict[str, str] = {}
    used: set[str] = set()
    for cid in ids:
        if cid in names:
            key = cid
        elif _id_prefix(cid) in by_prefix:
            key = by_prefix[_id_prefix(cid)]
        else:
            key = by_lower.get(cid.lower())
        if key is not None:
            out[cid] = names[key]
            used.add(key)
    if len(out) == len(ids) or not names:
        return out, None
    lost = [c for c in ids if c not in out]
    spare = [k for k in names if k not in used]
    ex = lambda items: ", ".join(repr(x) for x in items[:2]) + (", ..." if len(items) > 2 else "")
    warning = (
        f"{source}: {len(out)} of {len(ids)} classes matched a line of the file; {len(lost)} keep their "
        f"id ({ex(lost)}){f'; {len(spare)} ids of the file match no class ({ex(spare)})' if spare else ''}. "
        "Classes match by exact id, by the id before the first '_', '-' or space, or by a "
        "case-insensitive id or name. Fix: key the file's lines by the folder names or CSV labels."
    )
    return out, warning
