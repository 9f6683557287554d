"""Safetensors files of float tensors, read and written with numpy alone (no torch, no safetensors
package): the SAE artifact's SAELens copy and the SAE weights a site publishes.

Written files are byte-deterministic (tensors by name, metadata sorted), in float32, float16 or
bfloat16 (round to nearest, ties to even); read files come back as float32 arrays.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

_ST_CODE = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}
_HEADER_LIMIT = 100_000_000  # the safetensors format's own limit on the JSON header


def to_bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bit patterns of a float32 array, rounded to nearest (ties to even); NaN stays NaN."""
    bits = np.ascontiguousarray(array, dtype="<f4").view("<u4")
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    out = (rounded >> np.uint32(16)).astype("<u2")
    nan = np.isnan(np.ascontiguousarray(array, dtype="<f4"))
    out[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x40)).astype("<u2")
    return out


def _raw(array: np.ndarray, dtype: str) -> bytes:
    if dtype == "float32":
        return np.ascontiguousarray(array, dtype="<f4").tobytes()
    if dtype == "float16":
        return np.ascontiguousarray(array, dtype="<f4").astype("<f2").tobytes()
    if dtype == "bfloat16":
        return to_bfloat16_bits(array).tobytes()
    raise ValueError(f"unknown dtype {dtype!r} (expected one of {', '.join(_ST_CODE)})")


def safetensors_bytes(
    tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None, dtype: str = "float32"
) -> bytes:
    """A safetensors file of float tensors stored as ``dtype`` (float32, float16 or bfloat16),
    byte-deterministic: tensors by name, metadata sorted.

    (safetensors' own writer orders multi-entry metadata differently from run to run.)
    Layout: u64 little-endian header size, JSON header padded with spaces to 8 bytes, raw data.
    """
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(metadata[k]) for k in sorted(metadata)}
    blobs, offset = [], 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        blob = _raw(array, dtype)
        header[name] = {
            "dtype": _ST_CODE[dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors of a float32, float16 or bfloat16 safetensors file as float32 arrays, and its metadata."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (only {len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(_HEADER_LIMIT, len(data) - 8):
        raise ValueError(f"{path}: not a safetensors file (header size {n})")
    header = json.loads(data[8 : 8 + n])
    body = memoryview(data)[8 + n :]
    metadata = header.pop("__metadata__", {}) or {}
    out = {}
    for name, spec in header.items():
        start, stop = spec["data_offsets"]
        raw = np.frombuffer(
            body[start:stop], dtype={"F32": "<f4", "F16": "<f2", "BF16": "<u2"}[spec["dtype"]]
        )
        if spec["dtype"] == "BF16":
            raw = (raw.astype("<u4") << np.uint32(16)).view("<f4")
        out[name] = raw.astype(np.float32).reshape(spec["shape"])
    return out, metadata
