"""Datasets as the stages see them: images in [0, 1], labels and class names.

The dataset stage writes a folder (see docs/artifacts.md); :func:`open_dataset`
reads it. The demo source stores its generated pixels in ``images.npy``; a
folder source stores the image paths and decodes them on demand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def resize_center_crop(img: Image.Image, size: int, crop_fraction: float = 1.0) -> Image.Image:
    """Resize the shorter side to ``size / crop_fraction`` and crop the centre ``size`` square
    (the usual eval transform; torchvision's 256 -> 224 is crop_fraction 0.875)."""
    img = img.convert("RGB")
    w, h = img.size
    scale = size / crop_fraction / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


class Dataset:
    """Read-only view of a dataset artifact."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.info = json.loads((self.folder / "dataset.json").read_text())
        self.labels = np.load(self.folder / "labels.npy")
        self.split = np.load(self.folder / "split.npy")
        self.image_size = int(self.info["image_size"])
        images = self.folder / "images.npy"
        self._pixels = np.load(images, mmap_mode="r") if images.exists() else None
        self._paths = None if self._pixels is not None else json.loads((self.folder / "paths.json").read_text())

    @property
    def classes(self) -> list[dict]:
        return self.info["classes"]

    @property
    def n_classes(self) -> int:
        return len(self.info["classes"])

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self, i: int) -> str:
        """How to find image ``i``: its file, or its index and class for generated images."""
        name = self.classes[int(self.labels[i])]["name"]
        return self._paths[i] if self._paths is not None else f"image #{i} (class {name!r})"

    def indices(self, split: str) -> np.ndarray:
        """Image indices of the 'train' (SAE, examples) or 'heldout' split."""
        return np.flatnonzero(self.split == (0 if split == "train" else 1))

    def pixels(self, indices) -> np.ndarray:
        """uint8 (n, S, S, 3) for the given image indices."""
        indices = np.asarray(indices)
        if self._pixels is not None:
            return np.asarray(self._pixels[indices])
        crop = float(self.info.get("crop_fraction", 1.0))
        return np.stack([np.asarray(resize_center_crop(Image.open(self._paths[i]), self.image_size, crop)) for i in indices])

    def batch(self, indices):
        """A float tensor (n, 3, S, S) in [0, 1], the input every model here takes."""
        import torch

        return torch.from_numpy(self.pixels(indices)).permute(0, 3, 1, 2).float().div_(255.0)


def open_dataset(folder: Path) -> Dataset:
    return Dataset(folder)


def scan_image_folder(root: Path, per_class: int) -> tuple[list[str], list[str], list[int]]:
    """An ImageNet-style folder: one sub-folder per class (searched recursively).
    Returns (class names, image paths, labels), sorted so the result is stable."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if per_class:
            files = files[:per_class]
        paths += [str(p.resolve()) for p in files]
        labels += [label] * len(files)
    return classes, paths, labels


# ---------------------------------------------------------------- issue 9: CSV lists, class names, subsampling


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
                raise AtlasgenError([f"dataset.path: {csv_path.name} line {n}: expected 'path,label', got {','.join(row)!r}. Fix: two columns per row."])
            rows.append((row[0].strip(), row[1].strip()))
    classes = sorted({label for _, label in rows})
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for path, label in rows:
        p = Path(path).expanduser()
        p = p if p.is_absolute() else csv_path.parent / p
        if not p.is_file():
            raise AtlasgenError([f"dataset.path: {csv_path.name} lists {path!r}, which is not a file ({str(p)!r}). Fix: correct or remove that row."])
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
