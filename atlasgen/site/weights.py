"""The SAE weights a site publishes: a SAELens folder in the dtype of ``site.sae_dtype``.

``data/<model>/<layer>/sae/`` holds ``cfg.json`` + ``sae_weights.safetensors`` (the SAELens 6.x layout,
which ``sae_lens.SAE.load_from_disk`` and atlasgen's ``layers[].sae.weights`` both load, see
atlasgen.saelens) and ``metrics.json``. The folder is made from the sae artifact's float32 ``sae.npz``
and ``cfg.json`` (every artifact has them), rounded to float16 or bfloat16 (round to nearest, ties to
even) unless the dtype is float32: 2 bytes a weight instead of 4, which halves the largest file of a
reference-width site (16,384 x 1,024 features: 134 MB in float32, 67 MB in float16). cfg.json records
the dtype (``"dtype"``, read by SAELens) and, in its ``atlasgen`` block, the SAE's description and the
SHA-256 of the float32 ``sae.npz`` that ``manifest.json`` and the citations name (``sae_sha256``).

numpy only (no torch): the site stage does not import torch. Same weights, same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from atlasgen.saelens import SAELENS_CFG, SAELENS_WEIGHTS, description_of, saelens_files

SAE_DTYPES = ("float16", "bfloat16", "float32")
BYTES_PER_WEIGHT = {"float16": 2, "bfloat16": 2, "float32": 4}
SAE_NAMES = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")

__all__ = ["SAELENS_CFG", "SAELENS_WEIGHTS", "published_sae", "sae_description", "projected_weight_bytes"]


def _artifact(sae_folder: Path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(Path(sae_folder) / "sae.npz", allow_pickle=False) as z:
        arrays = {name: np.asarray(z[name], dtype=np.float32) for name in SAE_NAMES}
    cfg = json.loads((Path(sae_folder) / "cfg.json").read_text(encoding="utf-8"))
    return arrays, cfg


def sae_description(sae_folder: Path) -> dict:
    """The description (atlasgen.saelens.describe) of the SAE in a sae artifact's layer folder."""
    arrays, cfg = _artifact(sae_folder)
    return description_of(cfg, arrays)


def published_sae(sae_folder: Path, dtype: str, sae_sha256: str, hook_name: str) -> dict[str, bytes]:
    """The files of ``data/<model>/<layer>/sae/`` (name -> bytes) for a sae artifact's layer folder
    (sae.npz, cfg.json, metrics.json); ``hook_name``: the layer's name."""
    arrays, cfg = _artifact(sae_folder)
    atlasgen_cfg = {
        "format": cfg.get("format", "atlasgen.sae"),
        "format_version": cfg.get("format_version", 1),
        "d_in": int(arrays["W_enc"].shape[0]),
        "d_sae": int(arrays["W_enc"].shape[1]),
        **description_of(cfg, arrays),
    }
    files = saelens_files(
        arrays,
        atlasgen_cfg,
        dtype=dtype,
        hook_name=hook_name,
        extra={"published_dtype": dtype, "float32_sae_npz_sha256": sae_sha256},
    )
    metrics = Path(sae_folder) / "metrics.json"
    if metrics.is_file():
        files["metrics.json"] = metrics.read_bytes()
    return files


def projected_weight_bytes(d_in: int, d_sae: int, dtype: str) -> int:
    """Bytes of the published weights of a (d_in, d_sae) SAE: W_enc, W_dec, b_enc, b_dec and a
    per-latent threshold, plus a header of about a kilobyte."""
    return BYTES_PER_WEIGHT[dtype] * (2 * d_in * d_sae + 2 * d_sae + d_in) + 1024
