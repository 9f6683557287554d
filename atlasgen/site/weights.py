"""The SAE weights a site publishes: a SAELens folder in the dtype of ``site.sae_dtype``.

``data/<model>/<layer>/sae/`` holds ``cfg.json`` + ``sae_weights.safetensors`` (the SAELens 6.x layout,
which ``sae_lens.SAE.load_from_disk`` and atlasgen's ``layers[].sae.weights`` both load) and
``metrics.json``. The weights are those of the SAE stage's SAELens copy (``saelens/`` in the sae
artifact, float32), rounded to float16 or bfloat16 (round to nearest, ties to even) unless the dtype
is float32: 2 bytes a weight instead of 4, which halves the largest file of a reference-width site
(16,384 x 1,024 features: 134 MB in float32, 67 MB in float16). cfg.json records the dtype
(``"dtype"``, read by SAELens) and, in its ``atlasgen`` block, the SHA-256 of the float32 ``sae.npz`` that
``manifest.json`` and the citations name (``sae_sha256``).

numpy only (no torch): the site stage does not import torch. Same weights, same bytes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAE_DTYPES = ("float16", "bfloat16", "float32")
BYTES_PER_WEIGHT = {"float16": 2, "bfloat16": 2, "float32": 4}
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
    raise ValueError(f"unknown dtype {dtype!r} (expected one of {', '.join(SAE_DTYPES)})")


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


def published_sae(sae_folder: Path, dtype: str, sae_sha256: str) -> dict[str, bytes] | None:
    """The files of ``data/<model>/<layer>/sae/`` (name -> bytes) for the sae artifact's layer folder, or
    None when the artifact has no SAELens copy (then the site ships its ``sae.npz`` as it is)."""
    src = Path(sae_folder) / "saelens"
    if not (src / SAELENS_WEIGHTS).is_file() or not (src / SAELENS_CFG).is_file():
        return None
    tensors, metadata = read_safetensors(src / SAELENS_WEIGHTS)
    cfg = json.loads((src / SAELENS_CFG).read_text(encoding="utf-8"))
    cfg["dtype"] = dtype
    block = dict(cfg.get("atlasgen") or {})
    block.update(published_dtype=dtype, float32_sae_npz_sha256=sae_sha256)
    cfg["atlasgen"] = block
    files = {
        SAELENS_CFG: (json.dumps(cfg, sort_keys=True, indent=1, allow_nan=False) + "\n").encode("utf-8"),
        SAELENS_WEIGHTS: safetensors_bytes(tensors, metadata, dtype),
    }
    metrics = Path(sae_folder) / "metrics.json"
    if metrics.is_file():
        files["metrics.json"] = metrics.read_bytes()
    return files


def projected_weight_bytes(d_in: int, d_sae: int, dtype: str) -> int:
    """Bytes of the published weights of a (d_in, d_sae) SAE: W_enc, W_dec, b_enc, b_dec and a
    per-latent threshold, plus a header of about a kilobyte."""
    return BYTES_PER_WEIGHT[dtype] * (2 * d_in * d_sae + 2 * d_sae + d_in) + 1024
