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


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and crop the centre square (the usual eval transform)."""
    img = img.convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
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
        return np.stack([np.asarray(resize_center_crop(Image.open(self._paths[i]), self.image_size)) for i in indices])

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
