"""Datasets as the stages see them: images in [0, 1], labels and class names.

The dataset stage writes a folder (see docs/artifacts.md); :func:`open_dataset`
reads it. The demo source stores its generated pixels in ``images.npy``; a
folder source stores the image paths and decodes them on demand.
"""

from __future__ import annotations

import functools
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

    Imports no torch until :meth:`batch` or :meth:`batches` is called (the renderer calls neither).

    ``decode`` (a :class:`atlasgen.config.DecodeConfig`, or None for its defaults) says how
    :meth:`batches` decodes image files: in how many worker processes, how far ahead, and
    whether JPEGs go to the GPU on CUDA.
    """

    def __init__(self, folder: Path, decode=None):
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
        self.decode = decode

    @property
    def classes(self) -> list[dict]:
        return self.info["classes"]

    @property
    def n_classes(self) -> int:
        return len(self.info["classes"])

    @functools.cached_property
    def class_names(self) -> list[str]:
        return [str(c["name"]) for c in self.classes]

    @functools.cached_property
    def superclass_of(self) -> list[str | None]:
        return [c.get("superclass") for c in self.classes]

    @functools.cached_property
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
        """uint8 (n, S, S, 3) for the given image indices, as the model sees them, decoded in this process."""
        indices = np.asarray(indices)
        if self._pixels is not None:
            return np.asarray(self._pixels[indices])
        crop = float(self.info.get("crop_fraction", 1.0))
        return np.stack(
            [np.asarray(resize_center_crop(load_rgb(self._paths[i]), self.image_size, crop)) for i in indices]
        )

    def batch(self, indices):
        """A float tensor (n, 3, S, S) in [0, 1], the input every model here takes."""
        return as_model_input(self.pixels(indices))

    def batches(self, indices, batch_size: int, device: str = "cpu", select=None):
        """Yield ``(image indices, float tensor (n, 3, S, S) in [0, 1] on device)`` for consecutive
        batches of ``indices``: the pass over images every stage makes.

        ``select(b)`` keeps only batches ``b`` for which it is true (a rank's share); the batches
        are the same either way. Image files are decoded ahead of the model by
        ``decode.workers`` processes (:class:`ImageLoader`); the pixels, their order and the
        tensors are those of :meth:`batch` on the same indices, byte for byte (on CUDA with
        ``decode.gpu_jpeg``, JPEGs are decoded on the GPU and differ by rounding)."""
        indices = np.asarray(indices)
        chunks = [
            indices[s : s + batch_size]
            for b, s in enumerate(range(0, len(indices), batch_size))
            if select is None or select(b)
        ]
        if self._pixels is not None:  # generated images: a memory-mapped array, nothing to decode
            for idx in chunks:
                yield idx, as_model_input(np.asarray(self._pixels[idx]), device)
            return
        yield from ImageLoader(self, self.decode).batches(chunks, device)


def as_model_input(pixels: np.ndarray, device: str = "cpu"):
    """uint8 (n, S, S, 3) -> float (n, 3, S, S) in [0, 1]. On the CPU the tensor keeps the array's
    NHWC memory (channels-last strides, see :func:`atlasgen.models.channels_last`); other devices
    get the uint8 array and convert it there (a quarter of the bytes to copy)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)
    if torch.device(device).type == "cpu":
        return x.float().div_(255.0)
    return x.to(device, non_blocking=True).float().div_(255.0)


def open_dataset(folder: Path, cfg=None) -> Dataset:
    """The dataset artifact in ``folder``; ``cfg`` (the build's Config) gives the decode settings."""
    return Dataset(folder, None if cfg is None else cfg.decode)


def local_workers(requested: int = -1) -> int:
    """Worker processes for one rank's parallel work (decoding, CPU rendering): ``requested`` when
    >= 0, else the cores this process may run on (os.sched_getaffinity) divided by the ranks
    torchrun starts on this node."""
    import os

    if requested >= 0:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, cores // local)


def _init_worker(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)  # a decode worker uses one core; the model keeps the others


class _Work:
    """A map-style torch Dataset: item i is ``fn(args[i])`` (run in a worker process); an error
    comes back as a value, so the main process raises it with its own type and message."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __len__(self):
        return len(self.args)

    def __getitem__(self, i):
        try:
            return self.fn(self.args[i])
        except BadImage as exc:
            return exc


def parallel_map(fn, args: list, workers: int, ahead: int = 2):
    """``fn(a)`` for each ``a`` of ``args``, in order, computed by ``workers`` processes (a torch
    DataLoader) with about ``ahead`` items per worker in flight; ``workers`` 0 runs in this process."""
    if workers <= 0 or len(args) <= 1:
        for a in args:
            yield fn(a)
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _Work(fn, args),
        batch_size=None,
        shuffle=False,
        num_workers=min(workers, len(args)),
        prefetch_factor=max(1, ahead),
        worker_init_fn=_init_worker,
        collate_fn=_identity,
    )
    for out in loader:
        if isinstance(out, BadImage):
            raise BadImage(str(out))
        yield out


def _identity(x):
    return x


PIECE = 32  # images a worker decodes per task: small enough to spread one batch over the workers


class _Decoder:
    """What a worker runs: decode and resize one piece of a batch (a picklable callable)."""

    def __init__(self, paths: list[str], size: int, crop: float, raw_jpeg: bool):
        self.paths, self.size, self.crop, self.raw_jpeg = paths, size, crop, raw_jpeg

    def __call__(self, idx):
        if not self.raw_jpeg:
            import torch

            # A tensor, not an array: the DataLoader hands tensors over in shared memory, where an
            # array would be pickled through a pipe (a copy on each side, on the main process's core).
            return torch.from_numpy(
                np.stack(
                    [
                        np.asarray(resize_center_crop(load_rgb(self.paths[i]), self.size, self.crop))
                        for i in idx
                    ]
                )
            )
        out = []  # for the GPU: a JPEG's bytes as they are, anything else decoded here
        for i in idx:
            raw = Path(self.paths[i]).read_bytes()
            out.append(
                ("jpeg", np.frombuffer(raw, np.uint8))
                if raw[:3] == b"\xff\xd8\xff"
                else ("rgb", np.asarray(resize_center_crop(load_rgb(self.paths[i]), self.size, self.crop)))
            )
        return out


class ImageLoader:
    """Decodes a folder dataset's batches in worker processes, ahead of the model.

    Each batch is cut into pieces of at most :data:`PIECE` images, so that the workers share one
    batch; the pieces come back in order and are joined, so every batch holds exactly the pixels
    :meth:`Dataset.pixels` gives. ``decode.prefetch_batches`` batches are decoded ahead.
    """

    def __init__(self, data: Dataset, decode=None):
        from atlasgen.config import DecodeConfig

        decode = decode or DecodeConfig()
        self.data = data
        self.workers = local_workers(decode.workers)
        self.prefetch = decode.prefetch_batches
        self.gpu_jpeg = decode.gpu_jpeg

    def _gpu(self, device) -> bool:
        import torch

        return self.gpu_jpeg and torch.device(device).type == "cuda" and gpu_jpeg_available()

    def batches(self, chunks: list, device: str = "cpu"):
        data = self.data
        crop = float(data.info.get("crop_fraction", 1.0))
        gpu = self._gpu(device)
        decoder = _Decoder(data._paths, data.image_size, crop, gpu)
        per = max(1, min(PIECE, -(-max((len(c) for c in chunks), default=1) // max(1, self.workers))))
        pieces, owner = [], []
        for b, idx in enumerate(chunks):
            for s in range(0, len(idx), per):
                pieces.append(idx[s : s + per])
                owner.append(b)
        pieces_per_batch = -(-len(pieces) // max(1, len(chunks)))
        ahead = -(-pieces_per_batch * self.prefetch // max(1, self.workers))
        parts: list = []
        current = 0
        for b, out in zip(owner, parallel_map(decoder, pieces, self.workers, ahead)):
            if b != current:
                yield chunks[current], self._join(parts, device, gpu, decoder)
                parts, current = [], b
            parts.append(out)
        if parts:
            yield chunks[current], self._join(parts, device, gpu, decoder)

    def _join(self, parts, device, gpu, decoder):
        if not gpu:
            import torch

            return as_model_input((parts[0] if len(parts) == 1 else torch.cat(parts)).numpy(), device)
        return decode_on_gpu([item for part in parts for item in part], decoder.size, decoder.crop, device)


def gpu_jpeg_available() -> bool:
    """Whether torchvision can decode JPEGs on this machine's GPU."""
    try:
        import torch
        from torchvision.io import decode_jpeg  # noqa: F401

        return torch.cuda.is_available()
    except Exception:
        return False


def class_folders(root: Path) -> list[str]:
    """The class sub-folders of an ImageNet-style folder, sorted (hidden folders are not classes)."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def resize_center_crop_tensor(img, size: int, crop_fraction: float = 1.0):
    """:func:`resize_center_crop` for a uint8 (3, h, w) tensor on any device: the same geometry
    (shorter side to ``size / crop_fraction``, centre ``size`` square), antialiased bicubic."""
    import torch.nn.functional as F

    h, w = int(img.shape[1]), int(img.shape[2])
    scale = size / crop_fraction / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    x = F.interpolate(img[None].float(), size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
    left, top = (nw - size) // 2, (nh - size) // 2
    return x[0, :, top : top + size, left : left + size].round_().clamp_(0, 255).to(img.dtype)


def decode_on_gpu(items, size: int, crop: float, device):
    """A batch from a worker's items (``("jpeg", bytes)`` or ``("rgb", pixels)``): the JPEGs are
    decoded together on ``device`` (EXIF orientation applied, gray and CMYK as RGB); one the GPU
    decoder rejects is decoded on the CPU as :func:`load_rgb` does (naming the file if it is bad)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    out = [None] * len(items)
    jpegs = [i for i, (kind, _) in enumerate(items) if kind == "jpeg"]
    if jpegs:
        raw = [torch.from_numpy(np.array(items[i][1])) for i in jpegs]
        try:
            decoded = decode_jpeg(raw, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
        except RuntimeError:
            decoded = []
            for r in raw:  # one at a time, so only the rejected ones take the CPU path
                try:
                    decoded.append(
                        decode_jpeg(r, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
                    )
                except RuntimeError:
                    decoded.append(None)
        for i, img, r in zip(jpegs, decoded, raw):
            if img is None:
                import io

                pil = resize_center_crop(load_rgb(io.BytesIO(r.numpy().tobytes())), size, crop)
                out[i] = torch.from_numpy(np.asarray(pil)).permute(2, 0, 1).to(device)
            else:
                out[i] = resize_center_crop_tensor(img, size, crop)
    for i, (kind, pixels) in enumerate(items):
        if kind == "rgb":
            out[i] = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).to(device)
    return torch.stack(out).float().div_(255.0)


def list_image_folder(root: Path):
    """An ImageNet-style folder (one sub-folder per class, searched recursively) listed from names
    alone: no file is opened. Returns (class names, image paths, labels, skipped): files whose
    suffix is not an image's are ``skipped`` as ``(path, reason)``. Sorted, so the result is stable."""
    classes = class_folders(root)
    paths, labels, skipped = [], [], []
    for label, name in enumerate(classes):
        for p in sorted(p for p in (root / name).rglob("*") if p.is_file()):
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((os.path.abspath(p), f"not an image file ({p.suffix or 'no extension'})"))
                continue
            paths.append(str(p.resolve()))
            labels.append(label)
    return classes, paths, labels, skipped


class _Checker:
    def __init__(self, paths, min_side):
        self.paths, self.min_side = paths, min_side

    def __call__(self, idx):
        out = []
        for i in idx:
            try:
                out.append((_checked_mode(Path(self.paths[i]), self.min_side), None))
            except BadImage as exc:
                out.append((None, str(exc)))
        return out


def check_images(paths: list[str], indices, min_side: int = 1, workers: int = 0) -> list[tuple]:
    """``(original mode, None)`` for each usable image of ``paths[indices]``, ``(None, reason)`` for
    the others: each file is decoded once, in ``workers`` processes."""
    indices = list(indices)
    pieces = [indices[s : s + 64] for s in range(0, len(indices), 64)]
    return [r for part in parallel_map(_Checker(paths, min_side), pieces, workers) for r in part]


def scan_image_folder(root: Path, per_class: int, min_side: int = 1, workers: int = 0):
    """Every file of an ImageNet-style folder listed and checked (decoded once): files that are not
    images, are corrupt or truncated, or are smaller than ``min_side`` are skipped, never fatal.
    Returns (class names, image paths, labels, skipped, converted) as :func:`sample_image_folder`
    does; ``per_class`` keeps the first that many usable files per class (0: all)."""
    classes, paths, labels, skipped = list_image_folder(root)
    keep, bad, converted = sample_image_folder(paths, labels, per_class, 0, 0, min_side, workers, first=True)
    return (
        classes,
        [paths[i] for i in keep],
        [labels[i] for i in keep],
        in_listing_order(skipped + bad, root),
        converted,
    )


def in_listing_order(skipped: list, root) -> list:
    """``(path, reason)`` pairs in listing order (class folder, then path)."""
    base = Path(root).resolve()
    return sorted(
        skipped,
        key=lambda pr: Path(pr[0]).relative_to(base).parts if Path(pr[0]).is_relative_to(base) else (pr[0],),
    )


def sample_image_folder(
    paths,
    labels,
    per_class: int,
    limit: int,
    seed: int,
    min_side: int = 1,
    workers: int = 0,
    first: bool = False,
):
    """The images kept after at most ``per_class`` per class and ``limit`` in all, drawn by the
    seeded permutations of :func:`subsample` *before* any file is decoded: only the drawn files are
    checked, and a drawn file that turns out unusable is replaced by the next one of its class's
    permutation (so with no bad file the result is :func:`subsample`'s). ``first``: take files in
    listing order instead of a permutation. Returns (kept indices in listing order, skipped
    ``(path, reason)``, converted: usable images per source mode other than 8-bit RGB)."""
    rng = np.random.default_rng([seed, 11])
    labels_arr = np.asarray(labels, dtype=np.int64)
    n = len(labels_arr)
    status: dict[int, tuple] = {}

    def check(candidates):
        todo = [int(i) for i in candidates if int(i) not in status]
        for i, r in zip(todo, check_images(paths, todo, min_side, workers)):
            status[i] = r

    def walk(orders: list[np.ndarray], want: int) -> list[int]:
        """From each order, its first ``want`` usable entries (all when want is 0), checking in rounds."""
        taken = [0] * len(orders)
        good: list[list[int]] = [[] for _ in orders]
        while True:
            ask = []
            for o, order in enumerate(orders):
                need = (want - len(good[o])) if want else len(order)
                ask.extend(order[taken[o] : taken[o] + need].tolist() if need > 0 else [])
            if not ask:
                break
            check(ask)
            for o, order in enumerate(orders):
                need = (want - len(good[o])) if want else len(order)
                while need > 0 and taken[o] < len(order) and int(order[taken[o]]) in status:
                    i = int(order[taken[o]])  # replacements of bad files are checked in the next round
                    taken[o] += 1
                    if status[i][1] is None:
                        good[o].append(i)
                        need -= 1
        return [i for g in good for i in g]

    if per_class:
        orders = []
        for c in np.unique(labels_arr):
            members = np.flatnonzero(labels_arr == c)
            orders.append(members if first else members[rng.permutation(len(members))])
        keep = np.sort(np.asarray(walk(orders, per_class), dtype=np.int64))
    elif limit and not first:
        keep = np.sort(np.asarray(walk([rng.permutation(n)], limit), dtype=np.int64))
        limit = 0
    else:
        keep = np.sort(np.asarray(walk([np.arange(n)], 0), dtype=np.int64))
    if limit and len(keep) > limit:
        keep = np.sort(keep[rng.permutation(len(keep))[:limit]])
    skipped = [(paths[i], status[i][1]) for i in sorted(status) if status[i][1] is not None]
    converted: dict[str, int] = {}
    for i in keep:
        mode = status[int(i)][0]
        if mode != "RGB":
            converted[mode] = converted.get(mode, 0) + 1
    return keep.tolist(), skipped, dict(sorted(converted.items()))


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
                        f"dataset.path: {csv_path.name} line {n}: expected 'path,label', got "
                        f"{','.join(row)!r}. Fix: two columns per row."
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
                    f"dataset.path: {csv_path.name} lists {path!r}, which is not a file "
                    f"({str(p)!r}). Fix: correct or remove that row."
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
