"""An SAE in SAELens's folder layout, and the facts that describe it truthfully (numpy only, no torch).

A SAELens folder is ``cfg.json`` + ``sae_weights.safetensors``; ``sae_lens.SAE.load_from_disk`` reads
it when cfg.json has ``architecture``, ``d_in``, ``d_sae`` and ``dtype`` (the weights' dtype, which
SAELens reads before the weights) and the file holds exactly the tensors the architecture's module
has. atlasgen's architectures map onto SAELens 6.x as:

    batchtopk -> "jumprelu" with the threshold on every latent (BatchTopK's inference rule is a
                 JumpReLU with one global threshold); a per-latent threshold is kept as it is
    topk      -> "topk" with k (rescale_acts_by_decoder_norm false: atlasgen folds it on load)
    relu      -> "standard"

Every map keeps the codes: SAELens and atlasgen both compute pre = (x - b_dec) @ W_enc + b_enc
(apply_b_dec_to_input true, no input normalisation). cfg.json's ``atlasgen`` block holds the SAE's
description (:func:`describe`), which atlasgen's loader reads back to restore the architecture and k;
SAELens ignores it.

``metadata.sae_lens_version`` is :data:`SAELENS_FORMAT_VERSION`, the sae-lens release whose loader this
layout is tested against (tests/test_saelens_both_ways.py loads it with the installed 6.x release),
whatever is installed where the folder is written: the same SAE gives the same bytes everywhere.
SAELens reads the field only to decide whether a cfg.json needs its pre-6.0 conversion.

This module is imported by the site stage, so it stays free of torch.
"""

from __future__ import annotations

import json

import numpy as np

from atlasgen import tensorfile

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
FORMAT_VERSION = 2  # of atlasgen's SAE cfg.json: 2 adds the description (describe())
SAELENS_FORMAT_VERSION = "6.54.12"  # metadata.sae_lens_version of every folder written (module docstring)
UNIT_NORM_TOLERANCE = 1e-3  # decoder rows within this of norm 1 count as unit norm

# atlasgen architecture -> SAELens architecture (the SAE class load_from_disk builds)
SAELENS_ARCHITECTURE = {"batchtopk": "jumprelu", "topk": "topk", "relu": "standard"}

# where an SAE came from (the ``origin`` of its description) -> words for pages
ORIGINS = {
    "trained": "trained by atlasgen",
    "saelens": "SAELens folder",
    "safetensors": "safetensors file",
    "torch": "torch state dict",
    "npz": "numpy .npz file",
    "atlasgen": "atlasgen SAE folder",
    "unknown": "not recorded (an SAE folder written by an older atlasgen)",
}
DESCRIPTION_KEYS = (
    "architecture",
    "source_architecture",
    "origin",
    "source_file",
    "k",
    "threshold",
    "decoder_unit_norm",
    "decoder_norm_min",
    "decoder_norm_max",
    "codes_in_activation_units",
)


def decoder_norms(W_dec: np.ndarray) -> np.ndarray:
    """The L2 norm of every decoder row, in float64."""
    return np.linalg.norm(np.asarray(W_dec, dtype=np.float64), axis=1)


def describe(
    W_dec: np.ndarray,
    threshold: np.ndarray,
    *,
    architecture: str,
    k: int,
    origin: str,
    source_architecture: str | None = None,
    source_file: str | None = None,
) -> dict:
    """The facts that describe an SAE (a JSON-ready dict, the same for the same weights).

    architecture: atlasgen's encode rule ("batchtopk", "topk" or "relu"); a threshold SAE is described
      as "jumprelu" when it has per-latent thresholds or its source called it so, else "batchtopk".
    k: the SAE's k, recorded only where it means something (topk: active latents per vector;
      batchtopk: active latents per vector on average in training).
    origin: a key of :data:`ORIGINS`; source_architecture: the architecture name in the source
      (e.g. SAELens "standard"), default the described one; source_file: the file's name, if loaded.

    Keys: architecture, source_architecture, origin, source_file (when given), k (topk / batchtopk),
    threshold ("per-latent", "global" or "none"), decoder_unit_norm (measured: every row within
    1e-3 of norm 1), decoder_norm_min / decoder_norm_max, codes_in_activation_units (the same as
    decoder_unit_norm: a code f_i is the length of latent i's contribution to x_hat only then).
    """
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {tuple(ORIGINS)}, got {origin!r}")
    threshold = np.asarray(threshold)
    per_latent = threshold.ndim == 1 and threshold.size > 1 and bool((threshold != threshold.flat[0]).any())
    if architecture == "batchtopk":
        jump = per_latent or (source_architecture or "").lower() == "jumprelu"
        described = "jumprelu" if jump else "batchtopk"
        threshold_kind = "per-latent" if per_latent else "global"
    elif architecture in ("topk", "relu"):
        described, threshold_kind = architecture, "none"
    else:
        raise ValueError(f"unknown architecture {architecture!r}")
    norms = decoder_norms(W_dec)
    unit = bool(norms.size) and bool((np.abs(norms - 1) <= UNIT_NORM_TOLERANCE).all())
    facts = {
        "architecture": described,
        "source_architecture": source_architecture or described,
        "origin": origin,
        "threshold": threshold_kind,
        "decoder_unit_norm": unit,
        "decoder_norm_min": float(f"{norms.min():.6g}") if norms.size else 0.0,
        "decoder_norm_max": float(f"{norms.max():.6g}") if norms.size else 0.0,
        "codes_in_activation_units": unit,
    }
    if described in ("topk", "batchtopk"):
        facts["k"] = int(k)
    if source_file:
        facts["source_file"] = str(source_file)
    return facts


def encode_rule(description: dict) -> str:
    """atlasgen's architecture (encode rule) of a described SAE: jumprelu SAEs encode as batchtopk."""
    arch = description["architecture"]
    return "batchtopk" if arch == "jumprelu" else arch


def description_of(cfg: dict, arrays: dict[str, np.ndarray]) -> dict:
    """The description in an atlasgen SAE cfg.json; for one written before descriptions were kept
    (format_version 1), what the weights show, with origin "unknown"."""
    if "origin" in cfg:
        return {key: cfg[key] for key in DESCRIPTION_KEYS if key in cfg}
    return describe(
        arrays["W_dec"],
        arrays["threshold"],
        architecture=str(cfg["architecture"]),
        k=int(cfg.get("k", 0)),
        origin="unknown",
    )


def saelens_files(
    arrays: dict[str, np.ndarray],
    atlasgen_cfg: dict,
    *,
    dtype: str = "float32",
    hook_name: str | None = None,
    extra: dict | None = None,
) -> dict[str, bytes]:
    """The two files of a SAELens folder (name -> bytes): cfg.json and sae_weights.safetensors.

    arrays: W_enc (d_in, d_sae), W_dec (d_sae, d_in), b_enc (d_sae,), b_dec (d_in,) and threshold
    (a scalar or (d_sae,); used by threshold SAEs only), in atlasgen's convention.
    atlasgen_cfg: atlasgen's cfg.json of the SAE (format, format_version, d_in, d_sae and the
    :func:`describe` keys), written as cfg.json's ``atlasgen`` block with hook_name and ``extra``.
    dtype: how the tensors are stored (float32, float16 or bfloat16), recorded as cfg.json's "dtype".
    Same inputs, same bytes (fixed tensor order, sorted metadata and JSON keys).
    """
    arch = encode_rule(atlasgen_cfg)
    W_enc = np.asarray(arrays["W_enc"], dtype=np.float32)
    d_in, d_sae = W_enc.shape
    tensors = {
        "W_enc": W_enc,
        "W_dec": np.asarray(arrays["W_dec"], dtype=np.float32),
        "b_enc": np.asarray(arrays["b_enc"], dtype=np.float32),
        "b_dec": np.asarray(arrays["b_dec"], dtype=np.float32),
    }
    if arch == "batchtopk":  # SAELens's JumpReLU: one threshold per latent
        threshold = np.asarray(arrays["threshold"], dtype=np.float32).reshape(-1)
        tensors["threshold"] = np.broadcast_to(threshold, (d_sae,)).copy()
    for name, array in tensors.items():
        if not np.isfinite(array).all():
            raise ValueError(f"cannot save an SAE with non-finite {name}")
    cfg: dict = {
        "architecture": SAELENS_ARCHITECTURE[arch],
        "d_in": int(d_in),
        "d_sae": int(d_sae),
        "dtype": dtype,
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "hook_name": hook_name,
            "sae_lens_version": SAELENS_FORMAT_VERSION,
            "sae_lens_training_version": None,
        },
    }
    if arch == "topk":
        cfg.update(k=int(atlasgen_cfg["k"]), rescale_acts_by_decoder_norm=False)
    cfg["atlasgen"] = {**atlasgen_cfg, "hook_name": hook_name, **(extra or {})}
    metadata = {"format": "pt", "producer": "atlasgen", "architecture": cfg["architecture"]}
    return {
        SAELENS_CFG: (json.dumps(cfg, sort_keys=True, indent=1, allow_nan=False) + "\n").encode("utf-8"),
        SAELENS_WEIGHTS: tensorfile.safetensors_bytes(tensors, metadata, dtype),
    }
