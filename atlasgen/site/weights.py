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
from pathlib import Path

from atlasgen.tensorfile import read_safetensors, safetensors_bytes

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAE_DTYPES = ("float16", "bfloat16", "float32")
BYTES_PER_WEIGHT = {"float16": 2, "bfloat16": 2, "float32": 4}


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
