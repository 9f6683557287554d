"""SAEs trained elsewhere: load SAELens folders, safetensors files and torch state dicts; write SAELens.

load_external_sae() turns a file written by another library into atlasgen's SparseAutoencoder
(atlasgen/sae.py), keeping the model EXACT -- same codes and reconstructions as the original:

    SAELens folder   cfg.json + sae_weights.safetensors. cfg.json decides the architecture:
                     jumprelu (and batchtopk checkpoints) -> threshold encode; topk -> topk with
                     cfg k (or activation_fn_kwargs.k in pre-6.0 files); standard -> relu.
    .safetensors     a plain file of tensors; the arguments decide the architecture.
    .pt / .pth       a torch state dict (read with weights_only=True); also {"state_dict": {...}}.
    .npz             numpy arrays (e.g. Gemma Scope params.npz, atlasgen's own sae.npz).

`keys` maps atlasgen's names (W_enc, W_dec, b_enc, b_dec, threshold) to the file's names.
Orientation follows the layer width d_in: W_enc is (d_in, d_sae) and W_dec (d_sae, d_in); a
transposed matrix (nn.Linear weights) is accepted when d_sae != d_in (when they are equal, our
orientation is assumed).

How SAELens semantics map onto atlasgen's model, pre = (x - b_dec) @ W_enc + b_enc:

* apply_b_dec_to_input = False (pre = x @ W_enc + b_enc) is folded: b_enc' = b_enc + b_dec @ W_enc
  (computed in float64), which gives the same pre-activation.
* A per-latent JumpReLU threshold (d_sae,) gives a JumpReLUSAE (below); a threshold whose entries
  are all equal gives a plain SparseAutoencoder(architecture="batchtopk") with that scalar.
  SAELens keeps relu(pre) where pre > threshold; atlasgen keeps relu(pre) where relu(pre) >
  threshold: the same function for any threshold.
* TopK with rescale_acts_by_decoder_norm = True is folded (W_enc and b_enc times ||W_dec_i||,
  W_dec rows divided by it): exact, and the decoder rows become unit norm.
* A finetuning scaling factor (older SAELens) is folded into the decoder rows.
* Otherwise decoder rows are NOT renormalised: when they are not unit norm, the codes equal the
  original library's codes but are not in activation units (latent i contributes
  f_i * ||W_dec_i|| to x_hat). `sae.external_info` records this (see load_external_sae).

save_saelens() writes an atlasgen SAE in the SAELens layout (byte-deterministic).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from atlasgen import tensorfile
from atlasgen.cache import atomic_write_bytes
from atlasgen.sae import ARCHITECTURES, SparseAutoencoder, sae_cfg
from atlasgen.saelens import (
    DESCRIPTION_KEYS,
    SAELENS_CFG,
    SAELENS_WEIGHTS,
    UNIT_NORM_TOLERANCE,
    describe,
    encode_rule,
    saelens_files,
)

NAMES = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
KEYS_FIX = "name the file's tensors in the layer's `sae: keys:` config (atlasgen name: file name)"

# common names in other libraries, for the suggestion in a missing-tensor message
_ALIASES = {
    "W_enc": ("encoder.weight", "enc.weight", "W_e", "w_enc", "encoder_weight"),
    "W_dec": ("decoder.weight", "dec.weight", "W_d", "w_dec", "decoder_weight"),
    "b_enc": ("encoder.bias", "enc.bias", "b_e", "encoder_bias", "latent_bias"),
    "b_dec": ("decoder.bias", "dec.bias", "b_d", "pre_bias", "bias", "decoder_bias"),
    "threshold": ("log_threshold", "jumprelu.threshold", "thresholds", "theta"),
}


class SAEFormatError(ValueError):
    """An SAE file that cannot be used; the message (one line) names the file, the problem and the fix."""


class JumpReLUSAE(SparseAutoencoder):
    """A threshold ("batchtopk"-style) SAE with one threshold per latent: f_i = relu(pre_i) if > threshold_i.

    This is SAELens' / Gemma Scope's JumpReLU. It is a SparseAutoencoder with architecture
    "batchtopk" whose `threshold` buffer has shape (d_sae,) instead of ().
    """

    def __init__(self, d_in: int, d_sae: int, k: int = 32):
        super().__init__(d_in, d_sae, "batchtopk", k)
        self.register_buffer("threshold", torch.zeros(d_sae))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        acts = F.relu(self.encode_pre(x))
        return acts * (acts > self.threshold)  # (d_sae,) broadcasts over the batch

    def extra_repr(self) -> str:
        return super().extra_repr() + ", threshold=per-latent"


# -----------------------------------------------------------------------------
# loading


def load_external_sae(
    path,
    *,
    d_in: int,
    keys: dict[str, str] | None = None,
    architecture: str = "batchtopk",
    k: int = 32,
    apply_b_dec_to_input: bool = True,
) -> SparseAutoencoder:
    """Load an SAE trained elsewhere as an (eval-mode, CPU, float32) atlasgen SparseAutoencoder.

    path: a SAELens folder (cfg.json + sae_weights.safetensors), a .safetensors file, a torch state
    dict (.pt/.pth/.bin/.ckpt, read with weights_only=True) or a .npz; an atlasgen SAE folder
    (sae.npz + cfg.json) also works.
    d_in: the width of the layer the SAE will be applied to (channels of the activation vectors).
    keys: atlasgen name -> name in the file, for any of W_enc, W_dec, b_enc, b_dec, threshold.
    architecture, k: used when the file has no SAELens cfg.json (a cfg.json decides otherwise).
      For "batchtopk" the file's threshold (scalar or (d_sae,)) is used, absent means 0; k is then
      only nominal and is capped at d_sae.
    apply_b_dec_to_input: for files without cfg.json: False when the SAE computes
      pre = x @ W_enc + b_enc (no b_dec subtracted from the input), as most nn.Linear-style SAEs.

    Returns a SparseAutoencoder, or a JumpReLUSAE when the threshold differs between latents. Its
    attribute `description` is :func:`atlasgen.saelens.describe`'s account of it (architecture, where
    it came from, k where it means something, thresholds, decoder norms), which the sae stage saves
    in cfg.json; `external_info` (a JSON-ready dict) records: source, format, architecture,
    threshold ("none" / "global" / "per-latent"), decoder_norm_min / decoder_norm_max,
    codes_in_activation_units (False when the decoder rows are not unit norm) and notes (a list of
    one-line remarks on conversions made).
    Raises SAEFormatError (one line: file, problem, fix) on a missing or unreadable file, a missing
    tensor, shapes that do not fit the layer, non-finite weights or an unsupported SAELens config.
    """
    path = Path(path)
    if architecture not in ARCHITECTURES:
        raise SAEFormatError(
            f"{path}: architecture must be one of {ARCHITECTURES}, got {architecture!r}. "
            f"Fix: set the layer's sae.architecture to one of them."
        )
    names = dict(zip(NAMES, NAMES))
    for name, value in (keys or {}).items():
        if name not in names:
            raise SAEFormatError(
                f"{path}: unknown key {name!r} in keys (atlasgen names are {', '.join(NAMES)}). "
                f"Fix: {KEYS_FIX}."
            )
        if value:
            names[name] = str(value)

    weights_path, cfg_path, fmt = _resolve(path)
    tensors = _read_tensors(weights_path, fmt)
    notes: list[str] = []

    if fmt == "atlasgen":
        spec = _atlasgen_spec(cfg_path)
    elif cfg_path is not None:
        spec = _saelens_spec(cfg_path, d_in, int(k))
    else:
        spec = {
            "kind": {"batchtopk": "threshold", "topk": "topk", "relu": "relu"}[architecture],
            "k": int(k),
            "apply_b_dec_to_input": bool(apply_b_dec_to_input),
            "rescale": False,
            "d_sae": None,
            "source_architecture": architecture,
            "from_cfg": False,
        }
    notes += spec.pop("notes", [])

    # the tensors, by atlasgen name
    missing = [name for name in ("W_enc", "W_dec", "b_enc", "b_dec") if names[name] not in tensors]
    if missing:
        listed = ", ".join(
            repr(names[name]) if names[name] == name else f"{names[name]!r} ({name})" for name in missing
        )
        raise SAEFormatError(
            f"{weights_path}: no tensor{'s' if len(missing) > 1 else ''} {listed}; the file has "
            f"{_present(tensors)}. Fix: {KEYS_FIX}{_suggest(tensors, names)}."
        )
    W_enc = _tensor(tensors, names, "W_enc", weights_path)
    W_dec = _tensor(tensors, names, "W_dec", weights_path)
    b_enc = _tensor(tensors, names, "b_enc", weights_path)
    b_dec = _tensor(tensors, names, "b_dec", weights_path)
    threshold, threshold_name = _threshold_tensor(tensors, names, spec, weights_path)
    if spec["kind"] == "threshold" and threshold is None:
        notes.append(f"no threshold tensor {names['threshold']!r}: threshold 0 (plain ReLU encode)")
    scaling = None
    if fmt == "saelens":  # older SAELens: decode multiplies the codes by a finetuning scaling factor
        for extra in ("finetuning_scaling_factor", "scaling_factor"):
            if extra in tensors:
                scaling = tensors[extra].detach().to(torch.float64)
                break

    # orientation and shapes, against the layer
    W_enc, d_sae, transposed_enc = _orient(W_enc, "W_enc", names["W_enc"], d_in, weights_path, encoder=True)
    W_dec, d_sae_dec, transposed_dec = _orient(
        W_dec, "W_dec", names["W_dec"], d_in, weights_path, encoder=False
    )
    if d_sae_dec != d_sae:
        raise SAEFormatError(
            f"{weights_path}: W_enc has {d_sae} latents but W_dec has {d_sae_dec} "
            f"(W_enc {tuple(W_enc.shape)} vs W_dec {tuple(W_dec.shape)} after orienting to d_in={d_in}). "
            f"Fix: check that `keys` name the encoder and decoder of the same SAE."
        )
    if transposed_enc or transposed_dec:
        which = " and ".join(n for n, t in (("W_enc", transposed_enc), ("W_dec", transposed_dec)) if t)
        notes.append(f"{which} stored transposed (nn.Linear layout); transposed on load")
    if spec["d_sae"] is not None and spec["d_sae"] != d_sae:
        raise SAEFormatError(
            f"{cfg_path}: cfg.json says d_sae={spec['d_sae']} but the weights have {d_sae} latents "
            f"(W_enc {tuple(W_enc.shape)}). Fix: use the cfg.json that belongs to these weights."
        )
    b_enc = _vector(b_enc, "b_enc", names["b_enc"], d_sae, "d_sae", weights_path)
    b_dec = _vector(b_dec, "b_dec", names["b_dec"], d_in, "d_in", weights_path)
    if threshold is not None:
        if threshold.numel() == 1:
            threshold = threshold.reshape(())
        else:
            threshold = _vector(threshold, "threshold", threshold_name, d_sae, "d_sae", weights_path)
    if scaling is not None:
        scaling = _vector(scaling, "scaling_factor", "scaling_factor", d_sae, "d_sae", weights_path)
    for name, value in (
        ("W_enc", W_enc),
        ("W_dec", W_dec),
        ("b_enc", b_enc),
        ("b_dec", b_dec),
        ("threshold", threshold),
        ("scaling_factor", scaling),
    ):
        if value is not None:
            _check_finite(value, name, names.get(name, name), weights_path)

    # conversions, in float64 (all exact up to float32 rounding of the result)
    if scaling is not None:
        if bool((scaling == 1).all()):
            scaling = None
        else:
            W_dec = W_dec * scaling[:, None]
            notes.append("finetuning scaling factor folded into the decoder rows")
    if spec["rescale"]:
        norms = W_dec.norm(dim=1)
        safe = torch.where(norms > 0, norms, torch.ones_like(norms))
        W_enc = W_enc * norms[None, :]
        b_enc = b_enc * norms
        W_dec = W_dec / safe[:, None]
        notes.append("rescale_acts_by_decoder_norm folded: decoder norms moved into the encoder")
    if not spec["apply_b_dec_to_input"]:
        b_enc = b_enc + b_dec @ W_enc
        notes.append("apply_b_dec_to_input=False folded: b_enc' = b_enc + b_dec @ W_enc")

    # the architecture
    kind = spec["kind"]
    if kind != "threshold" and threshold is not None and bool((threshold != 0).any()):
        raise SAEFormatError(
            f"{weights_path}: the file has a non-zero threshold {threshold_name!r} but the architecture is "
            f"{spec['source_architecture']!r}, which has none. Fix: set the layer's sae.architecture to "
            "batchtopk (threshold / JumpReLU encode), or map keys.threshold to a tensor that "
            "exists only in threshold SAEs."
        )
    if kind == "topk":
        k_used = int(spec["k"])
        if not 1 <= k_used <= d_sae:
            where = cfg_path if spec["from_cfg"] else weights_path
            raise SAEFormatError(
                f"{where}: topk k={k_used} is not in [1, d_sae={d_sae}]. Fix: set k to the number of "
                f"active latents the SAE was trained with."
            )
    else:
        k_used = max(1, min(int(spec["k"]), d_sae))
    if (
        kind == "threshold"
        and threshold is not None
        and threshold.ndim == 1
        and not bool((threshold == threshold[0]).all())
    ):
        sae: SparseAutoencoder = JumpReLUSAE(d_in, d_sae, k_used)
        threshold_kind = "per-latent"
    else:
        ours = {"threshold": "batchtopk", "topk": "topk", "relu": "relu"}[kind]
        sae = SparseAutoencoder(d_in, d_sae, ours, k_used)
        if threshold is not None and threshold.ndim == 1:
            threshold = threshold[0]
        threshold_kind = "global" if kind == "threshold" and threshold is not None else "none"
    if kind != "threshold":
        threshold = None
    with torch.no_grad():
        sae.W_enc.copy_(W_enc.float())
        sae.b_enc.copy_(b_enc.float())
        sae.W_dec.copy_(W_dec.float())
        sae.b_dec.copy_(b_dec.float())
        sae.threshold.copy_(threshold.float() if threshold is not None else torch.zeros_like(sae.threshold))
    sae.eval()

    norms = sae.W_dec.detach().double().norm(dim=1)
    unit = bool(((norms - 1).abs() <= UNIT_NORM_TOLERANCE).all())
    if not unit:
        notes.append(
            f"decoder rows are not unit norm (min {norms.min().item():.4g}, max {norms.max().item():.4g}): "
            "codes match the original library but are not in activation units (latent i adds f_i "
            "* ||W_dec_i|| to x_hat)"
        )
    # an atlasgen SAE folder keeps the description it has (where the SAE first came from)
    sae.description = spec.get("description") or describe(
        sae.W_dec.detach().numpy(),
        sae.threshold.detach().numpy(),
        architecture=sae.architecture,
        k=sae.k,
        origin=fmt,
        source_architecture=spec["source_architecture"],
        source_file=path.name,
    )
    sae.external_info = {
        "source": str(path),
        "format": fmt,
        "source_architecture": spec["source_architecture"],
        "architecture": sae.architecture,
        "k": sae.k,
        "d_in": d_in,
        "d_sae": d_sae,
        "threshold": threshold_kind,
        "decoder_norm_min": float(norms.min()),
        "decoder_norm_max": float(norms.max()),
        "codes_in_activation_units": unit,
        "notes": notes,
    }
    return sae


def load_sae_any(folder) -> SparseAutoencoder:
    """The SAE of an atlasgen SAE folder (sae.npz + cfg.json, written by atlasgen.sae.save_sae).

    The one loader of the sae stage's artifact: a SparseAutoencoder, or a JumpReLUSAE when the
    threshold saved differs between latents.
    """
    folder = Path(folder)
    try:
        d_in = int(json.loads((folder / SAELENS_CFG).read_text())["d_in"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SAEFormatError(
            f"cannot read {folder / SAELENS_CFG}: not an atlasgen SAE cfg.json ({_first_line(exc)}). "
            f"Fix: rebuild the sae stage."
        ) from None
    if not (folder / "sae.npz").is_file():
        raise SAEFormatError(f"{folder}: no sae.npz. Fix: rebuild the sae stage.")
    return load_external_sae(folder, d_in=d_in)


def _resolve(path: Path) -> tuple[Path, Path | None, str]:
    """(weights file, SAELens/atlasgen cfg.json or None, format) for a user-given path."""
    if not path.exists():
        raise SAEFormatError(
            f"{path}: no such file or folder. Fix: point the layer's sae.weights at a SAELens folder "
            f"(cfg.json + {SAELENS_WEIGHTS}), a .safetensors file or a torch state dict (.pt)."
        )
    if path.is_dir():
        if (path / SAELENS_WEIGHTS).is_file():
            cfg = path / SAELENS_CFG
            if not cfg.is_file():
                raise SAEFormatError(
                    f"{path}: has {SAELENS_WEIGHTS} but no {SAELENS_CFG}. Fix: copy the SAE's cfg.json "
                    "next to it, or point sae.weights at the .safetensors file itself (the "
                    "architecture then comes from the config)."
                )
            return path / SAELENS_WEIGHTS, cfg, "saelens"
        if (path / "sae.npz").is_file() and (path / SAELENS_CFG).is_file():
            return path / "sae.npz", path / SAELENS_CFG, "atlasgen"
        found = sorted(p.name for p in path.iterdir())[:12]
        raise SAEFormatError(
            f"{path}: the folder holds neither {SAELENS_WEIGHTS} + {SAELENS_CFG} (SAELens) nor "
            "sae.npz + cfg.json "
            f"(atlasgen); it has {found}. Fix: point sae.weights at the SAE folder or at the "
            "weights file itself."
        )
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        cfg = path.parent / SAELENS_CFG
        if path.name == SAELENS_WEIGHTS and cfg.is_file():
            return path, cfg, "saelens"
        return path, None, "safetensors"
    if suffix in TORCH_SUFFIXES:
        return path, None, "torch"
    if suffix == ".npz":
        return path, None, "npz"
    raise SAEFormatError(
        f"{path}: unknown SAE file type {path.suffix!r}. Fix: use a SAELens folder, a .safetensors file, "
        f"a torch state dict ({', '.join(TORCH_SUFFIXES)}) or a .npz."
    )


def _read_tensors(path: Path, fmt: str) -> dict[str, torch.Tensor]:
    if fmt in ("saelens", "safetensors"):
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:  # SafetensorError, OSError, ...
            raise SAEFormatError(
                f"cannot read {path}: file is truncated or not a safetensors file ({_first_line(exc)}). "
                f"Fix: download or export it again (safetensors.torch.save_file)."
            ) from None
    if fmt in ("npz", "atlasgen"):
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return {name: torch.from_numpy(np.array(arrays[name])) for name in arrays.files}
        except Exception as exc:
            raise SAEFormatError(
                f"cannot read {path}: file is truncated or not a .npz of arrays ({_first_line(exc)}). "
                f"Fix: write it again with numpy.savez."
            ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = _first_line(exc)
        if "weights_only" in detail or "Weights only load failed" in str(exc):
            raise SAEFormatError(
                f"cannot read {path}: it holds more than tensors (a pickled module or custom objects), which "
                "atlasgen does not unpickle. Fix: save the state dict instead: "
                "torch.save(sae.state_dict(), path)."
            ) from None
        raise SAEFormatError(
            f"cannot read {path}: file is truncated or not a torch state dict ({detail}). "
            f"Fix: export it again with torch.save(sae.state_dict(), path)."
        ) from None
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model_state_dict", "model", "sae"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SAEFormatError(
            f"{path}: expected a state dict (a dict of tensors), got {type(obj).__name__}. "
            f"Fix: save it with torch.save(sae.state_dict(), path)."
        )
    return {str(name): value for name, value in obj.items() if isinstance(value, torch.Tensor)}


def _saelens_spec(cfg_path: Path, d_in: int, default_k: int) -> dict:
    """Architecture and conventions from a SAELens cfg.json (v6 layout, and pre-6.0 fields)."""
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise SAEFormatError(
            f"cannot read {cfg_path}: not a JSON file ({_first_line(exc)}). "
            f"Fix: download the SAE's cfg.json again."
        ) from None
    if not isinstance(cfg, dict):
        raise SAEFormatError(
            f"{cfg_path}: expected a JSON object, got {type(cfg).__name__}. Fix: download the "
            "SAE's cfg.json again."
        )
    notes = []
    cfg_d_in = cfg.get("d_in")
    if cfg_d_in is not None and int(cfg_d_in) != d_in:
        raise SAEFormatError(
            f"{cfg_path}: the SAE has d_in={cfg_d_in} but the layer has d_in={d_in} channels. "
            f"Fix: use an SAE trained on this layer (and the same `channels` range)."
        )
    arch = str(cfg.get("architecture") or "standard").lower()
    activation = str(cfg.get("activation_fn") or cfg.get("activation_fn_str") or "relu").lower()
    fn_kwargs = cfg.get("activation_fn_kwargs") or {}
    if arch == "standard" and activation == "topk":  # pre-6.0 TopK SAEs
        arch = "topk"
    k = cfg.get("k", fn_kwargs.get("k") if isinstance(fn_kwargs, dict) else None)
    ours = cfg.get("atlasgen") if isinstance(cfg.get("atlasgen"), dict) else {}  # written by save_saelens
    if arch in ("jumprelu", "batchtopk", "matryoshka_batchtopk"):
        kind = "threshold"
        k = ours.get("k", k if k is not None else default_k)  # nominal for a threshold SAE
    elif arch == "topk":
        kind = "topk"
        if k is None:
            raise SAEFormatError(
                f"{cfg_path}: topk SAE without k (no 'k' nor activation_fn_kwargs.k). "
                f'Fix: add "k": <active latents> to cfg.json.'
            )
    elif arch == "standard":
        kind = "relu"
        k = ours.get("k", default_k)
        if activation not in ("relu",):
            raise SAEFormatError(
                f"{cfg_path}: activation_fn {activation!r} is not supported (atlasgen SAEs use relu, topk "
                f"or a threshold). Fix: convert the SAE to one of those."
            )
    else:
        raise SAEFormatError(
            f"{cfg_path}: SAELens architecture {arch!r} is not supported (supported: standard, topk, "
            f"jumprelu, batchtopk). Fix: convert it to one of those, or train an SAE with atlasgen."
        )
    if int(k) != k:
        notes.append(f"fractional k={k} rounded")
    norm = cfg.get("normalize_activations")
    if norm is True:
        norm = "expected_average_only_in"
    if norm not in (None, False, "none"):
        if norm == "expected_average_only_in":
            raise SAEFormatError(
                f"{cfg_path}: normalize_activations='expected_average_only_in': the SAE expects inputs "
                f"scaled by a dataset constant that the folder does not store. Fix: fold the scaling "
                f"factor into the weights (SAELens: sae.fold_activation_norm_scaling_factor(f); then save) "
                f'and set normalize_activations to "none".'
            )
        raise SAEFormatError(
            f"{cfg_path}: normalize_activations={norm!r} normalises each input at run time, which "
            "atlasgen's linear SAE cannot represent. Fix: use an SAE trained with "
            'normalize_activations "none".'
        )
    return {
        "kind": kind,
        "k": int(round(float(k))),
        "apply_b_dec_to_input": bool(cfg.get("apply_b_dec_to_input", True)),
        "rescale": bool(cfg.get("rescale_acts_by_decoder_norm", False)),
        "d_sae": int(cfg["d_sae"]) if cfg.get("d_sae") is not None else None,
        "source_architecture": ours.get("source_architecture", ours.get("architecture", arch)),
        "requires_threshold": arch == "jumprelu",
        "from_cfg": True,
        "notes": notes,
    }


def _atlasgen_spec(cfg_path: Path) -> dict:
    try:
        cfg = json.loads(cfg_path.read_text())
        arch, k = encode_rule(cfg), int(cfg.get("k", 32))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SAEFormatError(
            f"cannot read {cfg_path}: not an atlasgen SAE cfg.json ({_first_line(exc)}). "
            f"Fix: point sae.weights at the sae.npz file and set the architecture in the config."
        ) from None
    if arch not in ARCHITECTURES:
        raise SAEFormatError(f"{cfg_path}: unknown architecture {arch!r}. Fix: use one of {ARCHITECTURES}.")
    return {
        "kind": {"batchtopk": "threshold", "topk": "topk", "relu": "relu"}[arch],
        "k": k,
        "apply_b_dec_to_input": True,
        "rescale": False,
        "d_sae": cfg.get("d_sae"),
        "source_architecture": cfg.get("source_architecture", cfg["architecture"]),
        "from_cfg": True,
        "description": {key: cfg[key] for key in DESCRIPTION_KEYS if key in cfg} if "origin" in cfg else None,
    }


def _tensor(tensors: dict, names: dict, name: str, path: Path) -> torch.Tensor:
    key = names[name]
    if key not in tensors:
        raise SAEFormatError(
            f"{path}: no tensor {key!r} (atlasgen's {name}); the file has {_present(tensors)}. "
            f"Fix: {KEYS_FIX}{_suggest(tensors, names)}."
        )
    value = tensors[key]
    if not (value.is_floating_point()):
        raise SAEFormatError(
            f"{path}: tensor {key!r} ({name}) has dtype {value.dtype}, expected floating point. "
            f"Fix: check that keys.{name} names the right tensor."
        )
    return value.detach().to(torch.float64)


def _threshold_tensor(tensors: dict, names: dict, spec: dict, path: Path):
    """(threshold or None, the name it was found under)."""
    key = names["threshold"]
    if key in tensors:
        return _tensor(tensors, names, "threshold", path), key
    if key == "threshold":  # default name: also SAELens training checkpoints
        if "log_threshold" in tensors:
            return _tensor(tensors, {"threshold": "log_threshold"}, "threshold", path).exp(), "log_threshold"
        if "topk_threshold" in tensors:
            return _tensor(tensors, {"threshold": "topk_threshold"}, "threshold", path), "topk_threshold"
    if spec.get("requires_threshold"):
        raise SAEFormatError(
            f"{path}: no tensor {key!r} (atlasgen's threshold), which a jumprelu SAE needs; the file has "
            f"{_present(tensors)}. Fix: {KEYS_FIX}{_suggest(tensors, names)}."
        )
    return None, key


def _orient(M: torch.Tensor, name: str, key: str, d_in: int, path: Path, *, encoder: bool):
    """(matrix in atlasgen's orientation, d_sae, transposed?). W_enc: (d_in, d_sae); W_dec: (d_sae, d_in)."""
    want = "(d_in, d_sae)" if encoder else "(d_sae, d_in)"
    if M.ndim != 2:
        raise SAEFormatError(
            f"{path}: {_label(name, key)} has shape {tuple(M.shape)}, expected a matrix {want}. "
            f"Fix: check that keys.{name} names the right tensor."
        )
    a, b = M.shape
    d_in_axis = 0 if encoder else 1
    if M.shape[d_in_axis] == d_in:
        return M, (b if encoder else a), False
    if M.shape[1 - d_in_axis] == d_in:
        M = M.T
        return M, (M.shape[1] if encoder else M.shape[0]), True
    raise SAEFormatError(
        f"{path}: {name} has shape ({a}, {b}) but the layer has d_in={d_in} channels (expected {want} "
        "or its transpose). Fix: use an SAE trained on this layer (same channels range), or check "
        "the layer name."
    )


def _vector(v: torch.Tensor, name: str, key: str, n: int, what: str, path: Path) -> torch.Tensor:
    if v.numel() != n or sum(s != 1 for s in v.shape) > 1:
        raise SAEFormatError(
            f"{path}: {_label(name, key)} has shape {tuple(v.shape)}, expected ({n},) = {what}. "
            f"Fix: check that keys.{name} names the right tensor and that the SAE fits this layer."
        )
    return v.reshape(n)


def _check_finite(v: torch.Tensor, name: str, key: str, path: Path) -> None:
    bad = int((~torch.isfinite(v)).sum())
    if bad:
        nan = int(torch.isnan(v).sum())
        raise SAEFormatError(
            f"{path}: {_label(name, key)} has {bad} non-finite values ({nan} NaN, {bad - nan} inf) "
            f"of {v.numel()}. "
            f"Fix: use a checkpoint from before training diverged, or re-export the weights."
        )


def _present(tensors: dict) -> str:
    items = [f"{name} {tuple(value.shape)}" for name, value in sorted(tensors.items())]
    if len(items) > 16:
        items = items[:16] + [f"... ({len(tensors) - 16} more)"]
    return "[" + ", ".join(items) + "]" if items else "no tensors"


def _suggest(tensors: dict, names: dict) -> str:
    """', e.g. keys: {W_enc: encoder.weight, ...}' when the file's names look familiar."""
    guess = {}
    for ours, aliases in _ALIASES.items():
        if names[ours] in tensors:
            continue
        for alias in aliases:
            hits = [t for t in sorted(tensors) if t == alias or t.endswith("." + alias)]
            if len(hits) == 1:
                guess[ours] = hits[0]
                break
    if not guess:
        return (
            ", e.g. keys: {W_enc: <encoder matrix>, b_enc: <encoder bias>, W_dec: <decoder matrix>, "
            "b_dec: <decoder bias>}"
        )
    return ", e.g. keys: {" + ", ".join(f"{k}: {v}" for k, v in guess.items()) + "}"


def _first_line(exc: BaseException) -> str:
    """The first sentence of an exception message (for one-line errors)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    if len(text) > 120 and ". " in text:
        text = text[: text.index(". ")]
    return text[:200]


def _label(name: str, key: str) -> str:
    return name if name == key else f"{name} ({key!r})"


# -----------------------------------------------------------------------------
# saving


def save_saelens(
    sae: SparseAutoencoder, folder, *, hook_name: str | None = None, description: dict | None = None
) -> None:
    """Write folder/cfg.json + folder/sae_weights.safetensors in the SAELens (6.x) layout, float32.

    The architecture map and cfg.json fields are :func:`atlasgen.saelens.saelens_files`'s: batchtopk ->
    SAELens "jumprelu" with the threshold on every latent (a JumpReLUSAE keeps its per-latent
    thresholds); topk -> "topk" with k; relu -> "standard". cfg.json's "atlasgen" block is
    :func:`atlasgen.sae.sae_cfg` (description: default trained by atlasgen), which load_external_sae
    uses to restore the architecture and k exactly; SAELens ignores it. Same weights, same bytes.
    """
    folder = Path(folder)
    if sae.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {sae.architecture!r}")
    names = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
    arrays = {name: getattr(sae, name).detach().cpu().float().numpy() for name in names}
    files = saelens_files(arrays, sae_cfg(sae, description), hook_name=hook_name)
    for name, data in sorted(files.items()):
        atomic_write_bytes(folder / name, data)


def safetensors_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """A float32 safetensors file, byte-deterministic (:func:`atlasgen.tensorfile.safetensors_bytes`)."""
    return tensorfile.safetensors_bytes(tensors, metadata, "float32")


__all__ = [
    "SAEFormatError",
    "JumpReLUSAE",
    "load_external_sae",
    "load_sae_any",
    "save_saelens",
    "safetensors_bytes",
]
