"""The content-addressed artifact cache.

A stage's artifact lives in ``<cache>/<stage>/<key>/`` where ``key`` hashes the
stage's inputs. The stage writes into ``<key>.partial/``; the runner renames it
to ``<key>/`` once the stage has returned and ``meta.json`` is written, so a
folder under its final name is always complete. A killed stage leaves only the
``.partial`` folder, which a resumable stage reuses (its shards are each
written atomically) and any other stage starts afresh.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

CACHE_MARKER = ".atlasgen-cache"
SITE_MARKER = ".atlasgen-site"


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace variation: same data, same text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hash_data(data: Any) -> str:
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_tree(folder: Path, exclude: tuple[str, ...] = ("meta.json",)) -> str:
    """Content hash of every file under ``folder`` (relative names and bytes)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in exclude:
            continue
        h.update(rel.encode() + b"\0" + hash_file(path).encode() + b"\n")
    return h.hexdigest()


def tree_size(folder: Path) -> tuple[int, int]:
    """(number of files, total bytes) under ``folder``."""
    files = size = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(root, name))
    return files, size


# ------------------------------------------------------------ atomic writes


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either absent or complete, never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False) + "\n")


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, order="C"), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """An uncompressed .npz with fixed member order and timestamps: same arrays, same bytes."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.save(member, np.asarray(arrays[name], order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------ the store


class ArtifactStore:
    """Artifacts of every stage under one cache folder, marked as atlasgen's."""

    def __init__(self, root: Path):
        self.root = root

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        marker = self.root / CACHE_MARKER
        if not marker.exists():
            marker.write_text("This folder is atlasgen's artifact cache; `atlasgen clean` may delete it.\n")

    def final(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def partial(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.partial"

    def is_complete(self, stage: str, key: str) -> bool:
        return (self.final(stage, key) / "meta.json").is_file()

    def meta(self, stage: str, key: str) -> dict:
        return json.loads((self.final(stage, key) / "meta.json").read_text())

    def commit(self, stage: str, key: str, meta: dict) -> dict:
        """Seal a stage's partial folder: hash its files, write meta.json, rename into place."""
        partial = self.partial(stage, key)
        # A writer killed mid-write (Ctrl-C, a SIGKILLed rank) leaves its temporary file behind;
        # the resumed run rewrote that file, so the leftover is garbage, not part of the artifact.
        for stray in partial.rglob(".*.tmp-*"):
            stray.unlink()
        meta = dict(meta, content_hash=hash_tree(partial))
        atomic_write_json(partial / "meta.json", meta)
        final = self.final(stage, key)
        if final.exists():  # a complete copy raced us; keep the one already there
            shutil.rmtree(partial)
        else:
            os.replace(partial, final)
        atomic_write_json(self.root / stage / "latest.json", {"key": key, "inputs": meta["inputs"]})
        return meta

    def latest(self, stage: str) -> dict | None:
        """Inputs of the most recent completed run of a stage (for `status` to explain staleness)."""
        path = self.root / stage / "latest.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def prune(self, stage: str, keep: str) -> None:
        """Delete a stage's other complete artifacts and stale partial folders, keeping ``keep``."""
        folder = self.root / stage
        if not folder.is_dir():
            return
        for child in folder.iterdir():
            if child.is_dir() and child.name not in (keep, f"{keep}.partial"):
                shutil.rmtree(child)
