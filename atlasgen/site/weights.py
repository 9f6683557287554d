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

from atlasgen.cache import CACHE_MARKER, atomic_write_bytes, hash_file
from atlasgen.errors import AtlasgenError
from atlasgen.saelens import SAELENS_CFG, SAELENS_WEIGHTS, description_of, saelens_files

SAE_DTYPES = ("float16", "bfloat16", "float32")
BYTES_PER_WEIGHT = {"float16": 2, "bfloat16": 2, "float32": 4}
SAE_NAMES = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")

__all__ = [
    "SAELENS_CFG",
    "SAELENS_WEIGHTS",
    "ExportError",
    "export_sae",
    "published_sae",
    "sae_description",
    "projected_weight_bytes",
]


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


class ExportError(AtlasgenError):
    """A path or layer that ``atlasgen export-sae`` cannot export from."""

    headline = "export-sae"


def export_sae(source: Path, layer: str, out: Path, dtype: str | None = None) -> list[str]:
    """Write the SAELens folder of ``layer`` into ``out``: the one a site published, from a built site
    folder (byte for byte), or the one a site would publish, from a build cache (``.atlasgen/``, in
    ``dtype``, default float16 as ``site.sae_dtype``). Returns the names of the files written.

    Raises ExportError (one line naming the fix) for a path that is neither, an unknown layer (the
    message lists the layers there), or a dtype a site's published weights cannot give.
    """
    source, out = Path(source), Path(out)
    if dtype is not None and dtype not in SAE_DTYPES:
        raise ExportError(f"--dtype must be one of {', '.join(SAE_DTYPES)}, got {dtype!r}.")
    if (source / "manifest.json").is_file():
        files = _from_site(source, layer, dtype)
    elif (source / CACHE_MARKER).is_file():
        files = _from_cache(source, layer, dtype or "float16")
    else:
        raise ExportError(
            f"{source}: neither a built site (no manifest.json) nor a build cache (no {CACHE_MARKER}). "
            "Fix: pass the site folder (e.g. _site) or the cache folder (e.g. .atlasgen)."
        )
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: is a file, not a folder. Fix: choose another output folder.")
    for name, data in sorted(files.items()):
        atomic_write_bytes(out / name, data)
    return sorted(files)


def _unknown_layer(source: Path, layer: str, layers: list[str]) -> ExportError:
    listed = ", ".join(layers) if layers else "none"
    return ExportError(
        f"{source}: no layer {layer!r}; the layers there are: {listed}. Fix: name one of them."
    )


def _from_site(site: Path, layer: str, dtype: str | None) -> dict[str, bytes]:
    manifest = json.loads((site / "manifest.json").read_text(encoding="utf-8"))
    layers = manifest.get("layers") or {}
    if layer not in layers:
        raise _unknown_layer(site, layer, sorted(layers))
    folder = (site / layers[layer]["sae_weights"]).parent
    if not (folder / SAELENS_CFG).is_file() or not (folder / SAELENS_WEIGHTS).is_file():
        raise ExportError(
            f"{folder}: the site's SAE folder is missing or incomplete. Fix: rebuild the site, or "
            "export from the build cache."
        )
    published = layers[layer].get("sae_weights_dtype")
    if dtype is not None and dtype != published:
        raise ExportError(
            f"{site}: the site publishes layer {layer!r} in {published}, not {dtype}. "
            f"Fix: export from the build cache (e.g. .atlasgen) to get {dtype}, or drop --dtype."
        )
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _from_cache(cache: Path, layer: str, dtype: str) -> dict[str, bytes]:
    latest = cache / "sae" / "latest.json"
    key = json.loads(latest.read_text(encoding="utf-8")).get("key") if latest.is_file() else None
    artifact = cache / "sae" / str(key)
    if key is None or not (artifact / "meta.json").is_file():
        raise ExportError(f"{cache}: the cache holds no finished sae stage. Fix: run `atlasgen build` first.")
    layers = sorted(p.name for p in artifact.iterdir() if (p / "sae.npz").is_file())
    if layer not in layers:
        raise _unknown_layer(cache, layer, layers)
    folder = artifact / layer
    return published_sae(folder, dtype, hash_file(folder / "sae.npz"), layer)
