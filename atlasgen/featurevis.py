"""Batched feature visualisation: optimise one image per unit, many units at once.

The recipe is Lucid's (Olah et al., "Feature Visualization", Distill 2017): an
FFT-parameterised image with decorrelated colours, Lucid's standard random
transforms, Adam with lr 0.05. The loop, though, is our own, because lucent's
``render_vis`` leaks forward hooks, computes gradients for the model weights
and builds one objective per batch index.

We also do not call lucent's ``param.image`` or ``transform`` at run time,
although ``param.image`` imports cleanly: both pin tensors to a module-global
``cuda:0``/``cpu`` device and draw from the global torch/numpy RNGs, which
rules out an explicit ``device`` and seeding without side effects. The code
below is a faithful port of Lucid's parameterisation (a test checks it against
lucent's numerically) and a one-resample equivalent of the standard transforms.

Pieces, each usable on its own:

* :class:`FFTImage`: the image parameterisation (spectrum -> RGB in [0, 1]);
* :class:`TransformSpec` and :func:`random_affine`: the random transforms, one
  ``affine_grid``/``grid_sample`` for the whole batch per step;
* :func:`make_objective`: the vectorised objective (raw channel or SAE feature
  pre-activation, all positions or the centre one), and :func:`code_objective`,
  an SAE feature's code (its pre-activation where it is on);
* :func:`direction_objective`: Activation Atlas's ``dot * cossim^p`` for
  arbitrary directions, and :func:`render_directions` to render them;
* :func:`gram_diversity`: lucid's Gram-matrix diversity term, one batched
  computation for every unit's set of images;
* :func:`render_units`: the loop, with hook/mode/grad hygiene (maximise or
  minimise, one image per unit or a diverse set);
* :func:`unit_maxima`: each unit's maximum activation on given images, the
  measurement behind the quality check.

Determinism: every unit draws its initial spectrum and its per-step transform
parameters from its own ``torch.Generator`` seeded by ``(seed, unit)``. Nothing
touches the global RNGs, and a unit's image does not depend on which other
units share its batch (up to floating-point differences of batched kernels).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.overrides import TorchFunctionMode

from atlasgen.cache import atomic_write_bytes
from atlasgen.models import LayerCapture, channels_last
from atlasgen.sae import adam_options

__all__ = [
    "SAEDirections",
    "FFTImage",
    "TransformSpec",
    "STANDARD_TRANSFORMS",
    "NO_TRANSFORMS",
    "random_affine",
    "make_objective",
    "code_objective",
    "direction_objective",
    "gram_diversity",
    "render_units",
    "render_directions",
    "unit_maxima",
    "save_webp",
]

MODES = ("channel", "neuron")
PRECISIONS = ("fp32", "bf16")


# --------------------------------------------------------------------------- SAE


@dataclass(frozen=True)
class SAEDirections:
    """The encoder half of a trained SAE, which is all the objective needs.

    ``W_enc`` is (C, F), ``b_enc`` (F,), ``b_dec`` (C,); numpy arrays or torch
    tensors. Feature ``i``'s pre-activation at an activation vector ``a`` is
    ``(a - b_dec) . W_enc[:, i] + b_enc[i]``. Its code (what the SAE outputs)
    is the pre-activation where the feature is on and 0 elsewhere: on where
    the pre-activation exceeds ``threshold`` (a scalar or one per feature; 0:
    a ReLU SAE, also the default), and with ``k`` (a TopK SAE) where it is
    also among the ``k`` largest of its position.
    """

    W_enc: np.ndarray | torch.Tensor
    b_enc: np.ndarray | torch.Tensor
    b_dec: np.ndarray | torch.Tensor
    threshold: np.ndarray | torch.Tensor | float = 0.0
    k: int | None = None

    def __post_init__(self) -> None:
        c, f = tuple(self.W_enc.shape)
        if tuple(self.b_enc.shape) != (f,) or tuple(self.b_dec.shape) != (c,):
            raise ValueError(
                f"SAE shapes disagree: W_enc {tuple(self.W_enc.shape)}, "
                f"b_enc {tuple(self.b_enc.shape)}, b_dec {tuple(self.b_dec.shape)}"
            )
        if tuple(np.shape(self.threshold)) not in ((), (f,)):
            raise ValueError(
                f"SAE threshold of shape {tuple(np.shape(self.threshold))}, expected () or ({f},)"
            )
        if self.k is not None and not 1 <= int(self.k) <= f:
            raise ValueError(f"SAE k={self.k} outside 1..{f}")

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.W_enc.shape[1])

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> SAEDirections:
        """Read ``W_enc``, ``b_enc``, ``b_dec`` (and ``threshold`` when present) from an ``sae.npz``
        artifact; a ``cfg.json`` beside it that says ``"architecture": "topk"`` gives ``k``."""
        path = Path(path)
        with np.load(path) as z:
            threshold = z["threshold"] if "threshold" in z.files else 0.0
            arrays = dict(W_enc=z["W_enc"], b_enc=z["b_enc"], b_dec=z["b_dec"])
        k = None
        cfg = path.with_name("cfg.json")
        if cfg.is_file():
            import json

            meta = json.loads(cfg.read_text())
            k = int(meta["k"]) if meta.get("architecture") == "topk" else None
        return cls(**arrays, threshold=0.0 if k is not None else threshold, k=k)

    @classmethod
    def from_sae(cls, sae: torch.nn.Module) -> SAEDirections:
        """From an :class:`atlasgen.sae.SparseAutoencoder` (or a JumpReLU one): its encoder and gate."""
        topk = getattr(sae, "architecture", None) == "topk"
        threshold = sae.threshold.detach().cpu().float() if hasattr(sae, "threshold") and not topk else 0.0
        return cls(
            W_enc=sae.W_enc.detach().cpu().float(),
            b_enc=sae.b_enc.detach().cpu().float(),
            b_dec=sae.b_dec.detach().cpu().float(),
            threshold=threshold,
            k=int(sae.k) if topk else None,
        )

    def tensors(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_enc, b_enc, b_dec) as fp32 tensors on ``device``, detached."""
        return tuple(_tensor(a, device) for a in (self.W_enc, self.b_enc, self.b_dec))  # type: ignore[return-value]

    def thresholds(self, device: torch.device | str) -> torch.Tensor:
        """Every feature's threshold, (F,), at least 0 (a code is positive where it is on)."""
        t = _tensor(self.threshold, device)
        return t.expand(self.n_features).clamp_min(0.0) if t.ndim == 0 else t.clamp_min(0.0)


def _tensor(a, device) -> torch.Tensor:
    a = a.detach() if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))
    return a.to(device=device, dtype=torch.float32)


# ----------------------------------------------------------- parameterisation

# Lucid's colour decorrelation: square root of the ImageNet colour covariance,
# normalised so its largest column has unit norm (lucid/optvis/param/color.py).
_COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
_COLOR_CORRELATION_NORMALIZED = _COLOR_CORRELATION_SVD_SQRT / np.max(
    np.linalg.norm(_COLOR_CORRELATION_SVD_SQRT, axis=0)
)


def _rfft2d_freqs(h: int, w: int) -> np.ndarray:
    """|frequency| of each rfft2 coefficient, shape (h, w // 2 + 1)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + 1]
    return np.sqrt(fx * fx + fy * fy)


class FFTImage:
    """Lucid's FFT + decorrelated-colour image parameterisation, batched.

    The trainable tensor is the image's 2-D real FFT spectrum, stored as
    (B, 3, H, W//2+1, 2) real/imaginary pairs (the layout lucent uses). Each
    frequency is scaled by 1/|f| so that all frequencies learn at a similar
    rate in the whitened space, which suppresses the high-frequency noise that
    pixel-space optimisation produces. The spectrum is turned into a
    decorrelated-colour image, mixed into RGB with Lucid's colour matrix and
    squashed into [0, 1] with a sigmoid.

    ``init`` is the initial spectrum (already scaled by ``sd``); see
    :meth:`random` for Lucid's initialisation.
    """

    #: Lucid's constant; larger values reduce saturation.
    MAGIC = 4.0

    def __init__(self, init: torch.Tensor, size: int, decay_power: float = 1.0):
        h = w = size
        expected = (3, h, w // 2 + 1, 2)
        if init.ndim != 5 or tuple(init.shape[1:]) != expected:
            raise ValueError(f"spectrum shape {tuple(init.shape)}, expected (B, *{expected})")
        self.size = size
        self.spectrum = init.detach().clone().float().requires_grad_(True)
        freqs = _rfft2d_freqs(h, w)
        scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power
        device = self.spectrum.device
        self._scale = torch.as_tensor(scale, dtype=torch.float32, device=device)[None, None, :, :, None]
        self._color = torch.as_tensor(_COLOR_CORRELATION_NORMALIZED.T, device=device)
        # out[:, d] = sum_c in[:, c] * color[c, d] / MAGIC, as one (3, 3) @ (3, H*W) matmul per image:
        # no permuted copies, and the 1/MAGIC scaling rides along for free.
        self._mix = (self._color.T / self.MAGIC).contiguous()

    @classmethod
    def random(
        cls,
        generators: Sequence[torch.Generator],
        size: int,
        *,
        sd: float = 0.01,
        device: torch.device | str = "cpu",
    ) -> FFTImage:
        """One image per generator, spectrum ~ N(0, sd^2) as in Lucid.

        Drawn on the CPU from each unit's generator and then moved, so the
        initialisation is the same on every device.
        """
        shape = (3, size, size // 2 + 1, 2)
        init = torch.stack([torch.randn(shape, generator=g) * sd for g in generators])
        return cls(init.to(device), size)

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def __call__(self) -> torch.Tensor:
        """The current images, (B, 3, H, W) in [0, 1]."""
        spectrum = torch.view_as_complex(self.scale_spectrum())
        image = torch.fft.irfftn(spectrum, s=(self.size, self.size), norm="ortho")
        # Linear colour decorrelation: a 3x3 matrix on the channel axis of every pixel.
        b = image.shape[0]
        image = torch.matmul(self._mix, image.reshape(b, 3, -1)).reshape(b, 3, self.size, self.size)
        return torch.sigmoid(image)

    def scale_spectrum(self) -> torch.Tensor:
        # view_as_complex needs a contiguous last dim of size 2; the product is.
        return self._scale * self.spectrum


# ------------------------------------------------------------------ transforms


@dataclass(frozen=True)
class TransformSpec:
    """Random transforms applied to the image before every forward pass.

    Defaults are Lucid's ``standard_transforms``: pad 12 (grey), jitter 8,
    scale 0.9..1.1, rotate -10..10 degrees (0 five times more often), jitter 4.
    They are applied as ONE affine resample per step (see :func:`random_affine`)
    rather than as a chain of warps, which avoids compounding interpolation
    blur and keeps the canvas size fixed (so the batch stays one tensor).
    Jitter ``d`` is an integer shift in ``[-(d // 2), d // 2]`` on each axis,
    centred so it does not drift the content (Lucid's is a random crop).
    """

    pad: int = 12
    jitter: int = 8
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50.0 for i in range(11))
    angles: tuple[float, ...] = tuple(float(a) for a in range(-10, 11)) + (0.0,) * 5
    jitter2: int = 4

    def for_size(self, image_size: int, reference: int = 128) -> TransformSpec:
        """The same transforms with pixel distances scaled from Lucid's 128 px default
        to ``image_size``: a 12 px pad is 9 % of a 128 px image but 19 % of a 64 px one."""
        f = image_size / reference
        return dataclasses.replace(
            self,
            pad=max(1, round(self.pad * f)),
            jitter=max(0, round(self.jitter * f)),
            jitter2=max(0, round(self.jitter2 * f)),
        )

    def sample(self, generator: torch.Generator, steps: int) -> torch.Tensor:
        """Per-step parameters for one image: (steps, 6) float32 rows of
        (tx1, ty1, scale, angle_radians, tx2, ty2), translations in pixels."""

        def shift(d: int) -> torch.Tensor:
            r = d // 2
            return torch.randint(-r, r + 1, (steps, 2), generator=generator).float()

        def choice(values: tuple[float, ...]) -> torch.Tensor:
            idx = torch.randint(0, len(values), (steps,), generator=generator)
            return torch.tensor(values, dtype=torch.float32)[idx]

        t1 = shift(self.jitter)
        scale = choice(self.scales)
        angle = torch.deg2rad(choice(self.angles))
        t2 = shift(self.jitter2)
        return torch.cat([t1, scale[:, None], angle[:, None], t2], dim=1)


STANDARD_TRANSFORMS = TransformSpec()
NO_TRANSFORMS = TransformSpec(pad=0, jitter=0, scales=(1.0,), angles=(0.0,), jitter2=0)


def random_affine(images: torch.Tensor, params: torch.Tensor, pad: int) -> torch.Tensor:
    """Apply per-image jitter/scale/rotate/jitter on a canvas padded by ``pad``.

    ``images`` is (B, 3, S, S) in [0, 1]; ``params`` is (B, 6) rows from
    :meth:`TransformSpec.sample`. Returns (B, 3, S + 2*pad, S + 2*pad).

    In centred pixel coordinates the forward map from image point ``x`` to
    canvas point ``q`` is ``q = R(angle) * scale * (x + t1) + t2``, the
    composition of Lucid's pad -> jitter -> scale -> rotate -> jitter.
    ``grid_sample`` needs the inverse (where each canvas pixel reads from), so
    ``x = (R^-1 / scale) (q - t2) - t1``, rescaled to the normalised [-1, 1]
    coordinates of ``affine_grid`` (align_corners=False). Everything off the
    image reads as 0.5 grey, which is what Lucid's constant pad gives.
    """
    b, c, s, _ = images.shape
    out = s + 2 * pad
    p = params.to(device=images.device, dtype=images.dtype)
    t1, scale, angle, t2 = p[:, 0:2], p[:, 2], p[:, 3], p[:, 4:6]
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Inverse linear part (R(-angle) / scale), shape (B, 2, 2), acting on (x, y).
    inv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2) / scale[:, None, None]
    a = inv * (out / s)  # canvas-normalised -> image-normalised
    offset = -(2.0 / s) * (torch.einsum("bij,bj->bi", inv, t2) + t1)
    theta = torch.cat([a, offset[:, :, None]], dim=2)
    grid = F.affine_grid(theta, [b, c, out, out], align_corners=False)
    # Sample (image - 0.5) with zero padding, so the outside becomes grey.
    return F.grid_sample(images - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5


# ------------------------------------------------------------------- objective


def make_objective(
    units: Sequence[int] | torch.Tensor,
    *,
    sae: SAEDirections | None = None,
    mode: str = "channel",
    device: torch.device | str = "cpu",
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A vectorised objective: acts (B, C, H, W) -> (B,), sample i scoring units[i].

    Raw channel: ``acts[i, units[i]]`` averaged over positions ("channel") or
    at the centre position ("neuron"). SAE feature: the encoder pre-activation
    ``(a - b_dec) . W_enc[:, u] + b_enc[u]``, chosen over the post-activation
    because TopK/ReLU outputs have zero gradient while the latent is off.
    Either way it is one gather (or one batched dot product) over the batch,
    never a Python loop over samples. (B, C) activations count as 1x1 maps.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    idx = torch.as_tensor(units, dtype=torch.long, device=device)
    rows = torch.arange(len(idx), device=device)
    if sae is not None:
        W_enc, b_enc, b_dec = sae.tensors(device)
        w = W_enc[:, idx].T.contiguous()  # (B, C): each sample's own encoder column
        b = b_enc[idx]

    def objective(acts: torch.Tensor) -> torch.Tensor:
        if acts.ndim == 2:
            acts = acts[:, :, None, None]
        if acts.ndim != 4:
            raise ValueError(f"expected (B, C, H, W) or (B, C) activations, got {tuple(acts.shape)}")
        n, _, h, w_ = acts.shape
        if n != len(idx):
            raise ValueError(f"batch of {n} activations for {len(idx)} units")
        if sae is None:
            picked = acts[rows, idx]  # (B, H, W): the one gather
            return picked.mean(dim=(1, 2)) if mode == "channel" else picked[:, h // 2, w_ // 2]
        # The pre-activation is affine in `a`, so its mean over positions is the
        # pre-activation of the mean vector: reduce positions first (cheaper).
        a = acts.mean(dim=(2, 3)) if mode == "channel" else acts[:, :, h // 2, w_ // 2]
        return ((a - b_dec) * w).sum(dim=1) + b

    return objective


def code_objective(
    units: Sequence[int] | torch.Tensor,
    *,
    sae: SAEDirections,
    mode: str = "channel",
    device: torch.device | str = "cpu",
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The SAE feature's own code, not its pre-activation: acts (B, C, H, W) -> (B,).

    At each position the code of sample ``i``'s feature ``units[i]`` is its pre-activation where
    the feature is on (above its threshold; with a TopK SAE, also among the ``k`` largest codes of
    the position) and 0 elsewhere, as :meth:`SparseAutoencoder.encode` gives it; averaged over
    positions ("channel") or taken at the centre ("neuron"). It is 0 while the feature is off
    everywhere, and then has no gradient: :func:`render_units` optimises the pre-activation
    (:func:`make_objective`) until the feature turns on.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    idx = torch.as_tensor(units, dtype=torch.long, device=device)
    W_enc, b_enc, b_dec = sae.tensors(device)
    w = W_enc[:, idx].T.contiguous()  # (B, C)
    b = b_enc[idx] - w @ b_dec  # (B,): the bias of each sample's pre-activation, b_dec folded in
    thr = sae.thresholds(device)[idx]

    def objective(acts: torch.Tensor) -> torch.Tensor:
        if acts.ndim == 2:
            acts = acts[:, :, None, None]
        n, _, h, w_ = acts.shape
        if n != len(idx):
            raise ValueError(f"batch of {n} activations for {len(idx)} units")
        if mode == "neuron":
            acts = acts[:, :, h // 2 : h // 2 + 1, w_ // 2 : w_ // 2 + 1]
        pre = torch.einsum("bchw,bc->bhw", acts, w) + b[:, None, None]
        on = pre > thr[:, None, None]
        if sae.k is not None:  # TopK: also among the k largest codes of its position
            every = F.relu(torch.einsum("bchw,cf->bhwf", acts, W_enc) + (b_enc - b_dec @ W_enc))
            kth = every.topk(sae.k, dim=-1).values[..., -1]
            on = on & (pre >= kth)
        return (pre * on).mean(dim=(1, 2))

    return objective


def _unit_objectives(units: list[int], sae: SAEDirections | None, mode: str, device):
    """(real, surrogate) objectives of units, each -> (B,): ``real(acts)`` is the unit's activation
    (a channel's output, an SAE feature's code), ``surrogate(acts, pre)`` its pre-activation (the
    channel before its nonlinearity, when ``pre`` is known; the feature's encoder pre-activation)."""
    plain = make_objective(units, sae=sae, mode=mode, device=device)
    if sae is None:
        return plain, lambda acts, pre: plain(acts if pre is None else pre)
    return code_objective(units, sae=sae, mode=mode, device=device), lambda acts, pre: plain(acts)


def direction_objective(
    directions: np.ndarray | torch.Tensor,
    *,
    cossim_pow: float = 2.0,
    mode: str = "neuron",
    device: torch.device | str = "cpu",
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Activation Atlas's objective for arbitrary directions: acts (B, C, H, W) -> (B,).

    Sample ``i`` scores ``dot * max(0.1, cossim) ** cossim_pow`` of the
    activation vector ``h`` (the centre position for ``mode="neuron"``, as in
    the atlas; the mean over positions for "channel") against direction
    ``v_i = directions[i]``, with ``dot = h . v_i / |v_i|`` and
    ``cossim = dot / |h|`` (lucid's ``direction_neuron_cossim_S``, Carter et
    al. 2019). The cosine factor rewards pointing the right way, not just
    being large; its floor of 0.1 keeps a gradient when ``h`` points away.
    Lucid averages the product over channels where this sums it, a constant
    factor that Adam ignores. Whitening (lucid's ``S``) is the caller's
    business: pass ``v @ S``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    v = torch.as_tensor(np.asarray(directions) if not torch.is_tensor(directions) else directions.detach())
    v = v.to(device=device, dtype=torch.float32)
    if v.ndim != 2:
        raise ValueError(f"directions must be (N, C), got {tuple(v.shape)}")
    norms = v.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError("a direction is the zero vector")
    v = v / norms

    def objective(acts: torch.Tensor) -> torch.Tensor:
        if acts.ndim == 2:
            acts = acts[:, :, None, None]
        n, c, h, w = acts.shape
        if n != len(v) or c != v.shape[1]:
            raise ValueError(f"activations {tuple(acts.shape)} for directions {tuple(v.shape)}")
        a = acts.mean(dim=(2, 3)) if mode == "channel" else acts[:, :, h // 2, w // 2]
        dot = (a * v).sum(dim=1)
        cossim = dot / (a.norm(dim=1) + 1e-4)
        return dot * cossim.clamp_min(0.1) ** cossim_pow

    return objective


def gram_diversity(acts: torch.Tensor, group_size: int) -> torch.Tensor:
    """Lucid's diversity term for consecutive groups of ``group_size`` images: (B // group_size,).

    For each image the channel Gram matrix ``G = A A^T`` of its (C, H*W)
    activations is L2-normalised; a group's term is the sum of the cosines
    between its different images' Grams divided by the group size (lucid's
    ``diversity``: ``sum_i sum_{j != i} <G_i, G_j> / n``). The renderer
    subtracts it, times a weight, from the objective, so a unit's images are
    pushed towards different styles. All groups are computed at once; when
    positions are fewer than channels the Gram inner products are taken as
    ``<G_i, G_j> = ||A_i^T A_j||_F^2`` over (H*W, H*W) matrices, which is
    cheaper than forming the (C, C) Grams (e.g. 49 positions vs 1,024
    channels at mixed5b).
    """
    if acts.ndim == 2:
        acts = acts[:, :, None, None]
    b, c = acts.shape[:2]
    if group_size < 1 or b % group_size:
        raise ValueError(f"batch of {b} is not a whole number of groups of {group_size}")
    k = group_size
    a = acts.float().reshape(b // k, k, c, -1)  # (G, k, C, P)
    p = a.shape[-1]
    if p < c:
        cross = torch.einsum("gicp,gjcq->gijpq", a, a)  # A_i^T A_j
        inner = cross.square().sum(dim=(-1, -2))  # (G, k, k) = <G_i, G_j>
    else:
        grams = torch.einsum("gicp,gidp->gicd", a, a).flatten(2)  # (G, k, C*C)
        inner = grams @ grams.transpose(1, 2)
    norms = torch.diagonal(inner, dim1=1, dim2=2).clamp_min(1e-20).sqrt()  # ||G_i||
    cos = inner / (norms[:, :, None] * norms[:, None, :])
    off_diagonal = cos.sum(dim=(1, 2)) - torch.diagonal(cos, dim1=1, dim2=2).sum(dim=1)
    return off_diagonal / k


# ------------------------------------------------------------------------ loop


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose gradient is redirected when it would be zero (lucid's ``redirected_relu_grad``).

    A unit that is off (negative input) everywhere on the grey starting image
    passes no gradient through a plain ReLU, so its visualisation never moves.
    For an image whose true ReLU gradient is all zero, this lets the gradient
    through anyway, except where it would push an already negative input
    lower. The forward value is the plain ReLU, so objectives are unchanged.
    """

    @staticmethod
    def forward(ctx, x, state):
        out = x.clamp_min(0)
        ctx.save_for_backward(out)  # out == 0 exactly where the plain ReLU passes no gradient
        ctx.state = state
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        relu_grad = torch.ops.aten.threshold_backward(grad, out, 0.0)  # the plain ReLU gradient, one pass
        # Per image of the batch; a norm over the non-batch dims reads any memory layout in place
        # (flatten would copy a channels-last gradient).
        flowing = torch.linalg.vector_norm(relu_grad, dim=tuple(range(1, relu_grad.dim()))) > 0
        if bool(flowing.all()):  # the usual case once every image has moved
            return relu_grad, None
        ctx.state.redirected += 1
        # The loss is minimised, so a positive gradient pushes the input lower.
        redirected = grad.masked_fill((out == 0) & (grad > 0), 0)
        return torch.where(flowing.view(-1, *([1] * (grad.dim() - 1))), relu_grad, redirected), None


#: The most optimisation steps that run with redirected ReLU gradients, as a share of all steps.
#: Lucid's override exists to get a visualisation started: it is released after the first step in
#: which no image needed it (every ReLU passed gradient for every image), or at this share of the
#: steps, whichever comes first; after that its extra passes over every ReLU would be wasted work.
REDIRECT_SHARE = 0.25

# The ReLU family as the model's forward may call it: nn.ReLU modules call F.relu, and a forward may
# call F.relu, torch.relu, Tensor.relu or their in-place forms itself.
_RELU_FUNCS = frozenset({F.relu, torch.relu, torch.Tensor.relu, torch.relu_, torch.Tensor.relu_})
_INPLACE_RELU_FUNCS = frozenset({torch.relu_, torch.Tensor.relu_})
# Other pointwise nonlinearities whose input is a unit's pre-activation (their gradient never vanishes
# exactly, so they need no redirect).
_SMOOTH_FUNCS = frozenset(
    {
        F.gelu,
        F.silu,
        F.elu,
        F.softplus,
        F.leaky_relu,
        F.relu6,
        F.hardtanh,
        F.hardswish,
        torch.sigmoid,
        torch.tanh,
        torch.Tensor.sigmoid,
        torch.Tensor.tanh,
    }
)
# Ops that carry a pre-activation along with their output: the same op is applied to it.
_CARRY_FUNCS = frozenset(
    {
        torch.Tensor.narrow,
        torch.narrow,
        torch.Tensor.__getitem__,
        torch.Tensor.reshape,
        torch.Tensor.view,
        torch.Tensor.permute,
        torch.Tensor.contiguous,
        torch.Tensor.flatten,
        torch.flatten,
        torch.reshape,
        torch.permute,
    }
)
_CAT_FUNCS = frozenset({torch.cat, torch.concat, torch.concatenate})
#: Pre-activations remembered per forward (the most recent ones): enough for the branches of an
#: Inception block, bounded so a deep network does not keep every layer's pre-activation alive.
_PRE_MEMORY = 64


class _Nonlinearities(TorchFunctionMode):
    """Sees every nonlinearity the model's forward calls, modules and functions alike.

    Two jobs, both needed because a unit behind a ReLU that is off on an image gives that image
    no gradient:

    * **pre-activations.** Every ReLU-family or smooth pointwise nonlinearity remembers its input
      as the pre-activation of its output; concatenation and reshaping/slicing carry it along.
      :meth:`pre_of` then gives the studied layer's pre-activation (e.g. the channels of an
      Inception block before their ReLUs, concatenated), or None when its output is not such a
      nonlinearity's (a linear layer: the output is its own pre-activation). In-place calls
      remember a copy of their input.
    * **redirected gradients.** While :attr:`redirect` is set, every non-in-place ReLU-family call
      runs as :class:`_RedirectedReLU` (lucid's ``redirected_relu_grad``), whether it is an
      ``nn.ReLU`` module or ``torch.relu``/``F.relu``/``Tensor.relu`` called inside a forward;
      ``redirected`` counts the backward passes that had to redirect (reset it per step).

    The forward values are the model's own: nothing here changes what the layer outputs.
    """

    def __init__(self, redirect: bool):
        super().__init__()
        self.redirect = redirect
        self.redirected = 0
        self._pre: dict[int, tuple[weakref.ref, torch.Tensor]] = {}

    def release(self) -> None:
        self.redirect = False

    def clear(self) -> None:
        self._pre.clear()

    def pre_of(self, t: torch.Tensor) -> torch.Tensor | None:
        hit = self._pre.get(id(t))
        return hit[1] if hit is not None and hit[0]() is t else None

    def _remember(self, out, pre) -> None:
        if not (torch.is_tensor(out) and torch.is_tensor(pre)) or out.shape != pre.shape:
            return
        if len(self._pre) >= _PRE_MEMORY:
            self._pre.pop(next(iter(self._pre)))  # the oldest
        self._pre[id(out)] = (weakref.ref(out), pre)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU_FUNCS and args and torch.is_tensor(args[0]):
            x = args[0]
            inplace = func in _INPLACE_RELU_FUNCS or bool(
                kwargs.get("inplace", len(args) > 1 and args[1] is True)
            )
            if inplace:
                pre = x.clone()
                out = func(*args, **kwargs)
            else:
                pre = x
                out = (
                    _RedirectedReLU.apply(x, self)
                    if self.redirect and x.requires_grad
                    else func(*args, **kwargs)
                )
            self._remember(out, pre)
            return out
        out = func(*args, **kwargs)
        if func in _SMOOTH_FUNCS and args and torch.is_tensor(args[0]):
            self._remember(out, args[0])
        elif func in _CAT_FUNCS:
            tensors = args[0] if args else kwargs.get("tensors")
            pres = [self.pre_of(t) if torch.is_tensor(t) else None for t in tensors]
            if pres and any(p is not None for p in pres):
                # A part with no nonlinearity is its own pre-activation.
                parts = [p if p is not None else t for p, t in zip(pres, tensors)]
                self._remember(out, func(parts, *args[1:], **kwargs))
        elif func in _CARRY_FUNCS and args and torch.is_tensor(args[0]):
            pre = self.pre_of(args[0])
            if pre is not None:
                self._remember(out, func(pre, *args[1:], **kwargs))
        return out


@contextlib.contextmanager
def _frozen_eval(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration; restore after.

    Freezing makes autograd skip every weight-gradient computation (and never
    allocate ``.grad``), so the backward pass only reaches the input image.
    Modes and flags are restored per module/parameter, so a model that was
    partly frozen or partly in train mode comes back exactly as it was.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        model.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, training in modes:
            m.training = training


def _unit_generator(seed: int, unit: int, *variant: int) -> torch.Generator:
    """A CPU generator for one image, independent of batch composition.

    Keyed by (seed, unit) for a unit's main image and (seed, unit, *variant)
    for its other images (negative, the members of a diverse set), so each
    image has its own start and transform draws.
    """
    key = [int(seed) & 0xFFFFFFFF, int(unit), *(int(v) for v in variant)]
    state = np.random.SeedSequence(key).generate_state(2, np.uint32)
    g = torch.Generator(device="cpu")
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


def _resolve_layer(model: torch.nn.Module, layer: str) -> torch.nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules:
        names = ", ".join(n for n in modules if n) or "(none)"
        raise KeyError(f"no module {layer!r} in the model; named modules: {names}")
    return modules[layer]


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8."""
    x = (images.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def _autocast(device: torch.device, precision: str):
    """bf16 autocast around the model's forward on a GPU; fp32 everywhere else.

    CPU autocast in bf16 is slower than fp32 on most CPUs and changes results,
    so a CPU run is always fp32, whatever ``precision`` says.
    """
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class _Job:
    """What one optimisation needs besides the model: the images' RNG keys and their objective.

    ``objective(acts)`` is the real objective; with a ``surrogate(acts, pre)`` (the unit's
    pre-activation), a maximised image climbs the surrogate while its unit is off (the real
    objective is 0 there, with no gradient) and the surrogate plus the real objective once it is on
    (the real objective alone, once on, gave lower activations on a test net: its gradient comes only
    from the positions already on); a minimised one follows the surrogate throughout (a unit that is
    off is at the real objective's floor, which says nothing about what it responds to least).
    """

    generators: list[torch.Generator]
    objective: Callable[[torch.Tensor], torch.Tensor]
    sign: float = 1.0  # +1 maximise, -1 minimise
    group_size: int = 1  # consecutive images forming one diverse set
    diversity_weight: float = 0.0
    surrogate: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None

    def optimised(self, acts: torch.Tensor, pre: torch.Tensor | None) -> torch.Tensor:
        """The quantity each image climbs (or descends) at this step, (B,)."""
        if self.surrogate is None:
            return self.objective(acts)
        surrogate = self.surrogate(acts, pre)
        if self.sign < 0:
            return surrogate
        return surrogate + self.objective(acts)  # the real objective is 0, without gradient, while off

    def reported(self, acts: torch.Tensor, pre: torch.Tensor | None) -> torch.Tensor:
        """The final objective recorded for each image: the real one, or for a minimised image with
        a surrogate the surrogate (the pre-activation it pushed down)."""
        if self.surrogate is not None and self.sign < 0:
            return self.surrogate(acts, pre)
        return self.objective(acts)


def _forward(model, capture: LayerCapture, nl: _Nonlinearities, x: torch.Tensor):
    """The layer's activations on ``x`` and their pre-activation (None where it is their own)."""
    nl.clear()
    with nl:
        acts = capture(model, x)
    pre = nl.pre_of(acts)
    nl.clear()  # keep no graph alive beyond this step
    return acts, pre


def _render_batch(
    model: torch.nn.Module,
    capture: LayerCapture,
    job: _Job,
    *,
    image_size: int,
    steps: int,
    lr: float,
    device: torch.device,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    transforms: TransformSpec,
    precision: str,
    relu_gradient_override: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Optimise one batch; (uint8 images (B, S, S, 3), final objective (B,))."""
    image = FFTImage.random(job.generators, image_size, device=device)
    # All randomness for the whole run is drawn up front: (steps, B, 6).
    tparams = torch.stack([transforms.sample(g, steps) for g in job.generators], dim=1).to(device)
    optimizer = torch.optim.Adam(image.parameters(), lr=lr, **adam_options(device))
    diverse = job.group_size > 1 and job.diversity_weight > 0
    redirect_steps = max(1, round(steps * REDIRECT_SHARE))
    nl = _Nonlinearities(redirect=relu_gradient_override)
    for step in range(steps):
        if nl.redirect and (step == redirect_steps or (step > 0 and nl.redirected == 0)):
            nl.release()
        nl.redirected = 0
        _step(
            model,
            capture,
            nl,
            job,
            image,
            optimizer,
            tparams[step],
            device=device,
            preprocess=preprocess,
            transforms=transforms,
            precision=precision,
            diverse=diverse,
        )
    nl.release()
    with torch.no_grad():
        images = _to_uint8(image())
        # The final objective, measured as the page shows it: on the saved
        # (8-bit) image, untransformed on its grey padded canvas, in fp32.
        x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 255.0
        x = F.pad(x, [transforms.pad] * 4, value=0.5)
        acts, pre = _forward(model, capture, nl, preprocess(x))
        final = job.reported(acts.float(), None if pre is None else pre.float())
    return images, final.cpu().numpy().astype(np.float32)


def _step(
    model,
    capture,
    nl: _Nonlinearities,
    job: _Job,
    image: FFTImage,
    optimizer,
    tparams: torch.Tensor,
    *,
    device,
    preprocess,
    transforms: TransformSpec,
    precision: str,
    diverse: bool,
) -> None:
    """One optimisation step of a batch: transform, forward to the layer, objective, backward, update."""
    optimizer.zero_grad(set_to_none=True)
    x = random_affine(image(), tparams, transforms.pad)
    with _autocast(device, precision):
        acts, pre = _forward(model, capture, nl, preprocess(x))
    acts = acts.float()
    # Sum over the batch: each image's gradient depends on its own unit only
    # (eval mode, so no batch statistics couple the samples); the diversity
    # term couples the images of one set, and only those.
    objective = job.optimised(acts, None if pre is None else pre.float())
    loss = -job.sign * objective.sum()
    if diverse:
        # The weight is relative to the set's current mean |objective| (held constant for the
        # gradient): lucid's absolute weight (1e2) suits InceptionV1's activation scale only, while
        # objectives differ by orders of magnitude between models and layers.
        scale = objective.detach().abs().reshape(-1, job.group_size).mean(dim=1)
        loss = loss + job.diversity_weight * (scale * gram_diversity(acts, job.group_size)).sum()
    loss.backward()
    optimizer.step()


def _check_args(image_size: int, steps: int, batch_size: int, precision: str) -> None:
    if batch_size < 1 or image_size < 1 or steps < 0:
        raise ValueError("batch_size and image_size must be >= 1 and steps >= 0")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _run_jobs(
    model: torch.nn.Module,
    layer: str,
    n_items: int,
    per_item: int,
    make_job: Callable[[int, int], _Job],
    *,
    check: Callable[[int], None],
    image_size: int,
    steps: int,
    lr: float,
    batch_size: int,
    device: torch.device,
    preprocess,
    progress,
    transforms: TransformSpec,
    relu_gradient_override: bool,
    precision: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The shared loop of render_units and render_directions: hygiene, batching, results.

    ``make_job(start, end)`` describes items ``start..end-1`` (each with
    ``per_item`` images); ``check(width)`` validates the layer's width.
    """
    from atlasgen.models import layer_view

    view = layer_view(model, layer)  # a configured view (channel range, ViT tokens) or the whole module
    _resolve_layer(model, view.module)  # a missing module fails here, naming the model's modules
    images = np.empty((n_items * per_item, image_size, image_size, 3), dtype=np.uint8)
    final = np.empty(n_items * per_item, dtype=np.float32)
    items_per_batch = max(1, batch_size // per_item)
    with _frozen_eval(model), channels_last(model, device) as layout, LayerCapture(model, layer) as capture:
        plain_preprocess = preprocess
        preprocess = lambda x: layout(plain_preprocess(x))  # noqa: E731
        if n_items:
            canvas = image_size + 2 * transforms.pad
            with torch.no_grad():
                acts = capture(model, preprocess(torch.full((1, 3, canvas, canvas), 0.5, device=device)))
            check(int(acts.shape[1]))
        for start in range(0, n_items, items_per_batch):
            end = min(n_items, start + items_per_batch)
            sl = slice(start * per_item, end * per_item)
            images[sl], final[sl] = _render_batch(
                model,
                capture,
                make_job(start, end),
                image_size=image_size,
                steps=steps,
                lr=lr,
                device=device,
                preprocess=preprocess,
                transforms=transforms,
                precision=precision,
                relu_gradient_override=relu_gradient_override,
            )
            if progress is not None:
                progress(end)
    return images, final


def render_units(
    model: torch.nn.Module,
    layer: str,
    units: Sequence[int],
    *,
    sae: SAEDirections | None = None,
    mode: str = "channel",
    negative: bool = False,
    copies: int = 1,
    diversity_weight: float = 0.0,
    image_size: int = 64,
    steps: int = 128,
    lr: float = 0.05,
    batch_size: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: Callable[[int], None] | None = None,
    transforms: TransformSpec = STANDARD_TRANSFORMS,
    relu_gradient_override: bool = True,
    return_objective: bool = False,
    attempt: int = 0,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Render feature visualisations of units; uint8 (len(units), S, S, 3).

    With ``sae=None`` unit ``u`` is raw channel ``u`` of ``layer``'s output;
    with an SAE it is feature ``u``'s code (:func:`code_objective`). ``mode``
    "channel" averages the objective over positions, "neuron" takes the
    centre position of the (transformed, padded) canvas's activation map.
    A unit that is off gives no gradient, so each image climbs the unit's
    pre-activation while the unit is off and the pre-activation plus its
    real objective once it is on: for a channel, the channel before its nonlinearity (found by
    following the forward's ReLU-family and smooth nonlinearities, modules or
    functions such as ``torch.relu`` and ``F.gelu``, through concatenation and
    slicing; a layer whose output is no nonlinearity's is its own
    pre-activation); for an SAE feature, its encoder pre-activation
    ``(a - b_dec) . W_enc[:, u] + b_enc[u]`` before the threshold/TopK.
    ``negative=True`` minimises the pre-activation instead (what the unit
    responds to least; the real objective of a unit that is off is already
    at its floor). ``copies > 1`` renders a diverse set of that many images per
    unit, (len(units), copies, S, S, 3), with lucid's Gram-matrix diversity
    term (:func:`gram_diversity`) subtracted from each set's summed
    objective, weighted by ``diversity_weight`` times the set's current mean
    |objective| (so one weight suits every model's activation scale).

    ``layer`` is a name from ``model.named_modules()``; its output must be a
    (B, C, H, W) or (B, C) tensor (the first element if it is a tuple). The
    model must already be on ``device``; it is left in its original
    train/eval mode and ``requires_grad`` flags, with no ``.grad`` created,
    and the single hook this registers is removed even on errors.
    ``preprocess`` maps the [0, 1] image batch to the model's input (e.g.
    normalisation or resizing; default identity); note the model sees the
    padded canvas of ``image_size + 2 * transforms.pad`` pixels.

    ``batch_size`` images are optimised at once (a diverse set is never split,
    so a batch holds ``max(1, batch_size // copies)`` units; the last batch
    may be smaller); ``progress(n_units_done)`` is called after each batch.
    The result is a pure function of (arguments, device): each image's start
    and transform draws come from a generator seeded by ``(seed, unit)`` (plus
    the variant, and ``attempt``: 1, 2, ... draw other starts and transforms than the default 0,
    for a second attempt at an image), and the global RNGs are not touched. ``precision`` "bf16"
    runs the model's forward under bf16 autocast on a GPU; the image
    parameters, transforms and objective stay fp32, and on a CPU everything
    is fp32.

    ``relu_gradient_override`` (lucid's default) redirects the gradient of
    every non-in-place ReLU the forward calls (``nn.ReLU`` modules and
    ``torch.relu``/``F.relu``/``Tensor.relu`` alike) where it would be zero,
    so upstream units that are off on the grey starting image still pass a
    signal.

    With ``return_objective`` the result is ``(images, objective)``, the
    real objective of each image (for ``negative``, the pre-activation it
    minimised) measured after the run on the saved 8-bit image on its padded
    canvas without random transforms (shape (len(units),) or (len(units),
    copies)).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _check_args(image_size, steps, batch_size, precision)
    if copies < 1:
        raise ValueError("copies must be >= 1")
    units = [int(u) for u in units]
    if any(u < 0 for u in units):
        raise ValueError("unit indices must be non-negative")
    if sae is not None and units and max(units) >= sae.n_features:
        raise ValueError(f"unit {max(units)} out of range for an SAE with {sae.n_features} features")
    device = torch.device(device)
    # Variant codes keep a unit's negative image and diverse set off its main image's random stream.
    variant = (1,) if negative else ()
    if copies > 1:
        variant = (2 + int(negative),)
    if attempt:
        variant = (*variant, 5, int(attempt))  # 5: never a variant code above (4: atlas directions)

    def make_job(start: int, end: int) -> _Job:
        chunk = units[start:end]
        repeated = [u for u in chunk for _ in range(copies)]
        generators = [
            _unit_generator(seed, u, *variant, *((c,) if copies > 1 else ()))
            for u in chunk
            for c in range(copies)
        ]
        real, surrogate = _unit_objectives(repeated, sae, mode, device)
        return _Job(
            generators,
            real,
            sign=-1.0 if negative else 1.0,
            group_size=copies,
            diversity_weight=diversity_weight,
            surrogate=surrogate,
        )

    def check(width: int) -> None:
        if sae is not None and sae.d_in != width:
            raise ValueError(f"SAE d_in {sae.d_in} != layer width {width}")
        if sae is None and max(units) >= width:
            raise ValueError(f"unit {max(units)} out of range for a layer with {width} channels")

    images, final = _run_jobs(
        model,
        layer,
        len(units),
        copies,
        make_job,
        check=check,
        image_size=image_size,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        device=device,
        preprocess=preprocess or (lambda x: x),
        progress=progress,
        transforms=transforms,
        relu_gradient_override=relu_gradient_override,
        precision=precision,
    )
    if copies > 1:
        images = images.reshape(len(units), copies, image_size, image_size, 3)
        final = final.reshape(len(units), copies)
    return (images, final) if return_objective else images


def render_directions(
    model: torch.nn.Module,
    layer: str,
    directions: np.ndarray | torch.Tensor,
    *,
    cossim_pow: float = 2.0,
    mode: str = "neuron",
    image_size: int = 64,
    steps: int = 128,
    lr: float = 0.05,
    batch_size: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: Callable[[int], None] | None = None,
    transforms: TransformSpec = STANDARD_TRANSFORMS,
    relu_gradient_override: bool = True,
    return_objective: bool = False,
    ids: Sequence[int] | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Render one image per direction of ``layer``'s activation space; uint8 (N, S, S, 3).

    The Activation Atlas icon renderer: ``directions`` is (N, C), e.g. the
    mean activation of each map cell or an SAE feature's decoder row, and
    image ``i`` maximises :func:`direction_objective` (``dot * cossim^p`` at
    the centre position by default). Same loop, hygiene, batching, precision
    and determinism as :func:`render_units`; image ``i`` is seeded by
    ``(seed, ids[i])`` (``ids`` defaults to ``0..N-1``), so with stable ids
    (e.g. atlas cell numbers) an image depends neither on the batching nor on
    which other directions are rendered with it.
    """
    _check_args(image_size, steps, batch_size, precision)
    v = np.asarray(directions.detach().cpu() if torch.is_tensor(directions) else directions, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"directions must be (N, C), got {v.shape}")
    device = torch.device(device)
    ids = list(range(len(v))) if ids is None else [int(i) for i in ids]
    if len(ids) != len(v):
        raise ValueError(f"{len(ids)} ids for {len(v)} directions")

    def make_job(start: int, end: int) -> _Job:
        generators = [_unit_generator(seed, i, 4) for i in ids[start:end]]
        return _Job(
            generators, direction_objective(v[start:end], cossim_pow=cossim_pow, mode=mode, device=device)
        )

    def check(width: int) -> None:
        if v.shape[1] != width:
            raise ValueError(f"directions have {v.shape[1]} dimensions, the layer has {width} channels")

    images, final = _run_jobs(
        model,
        layer,
        len(v),
        1,
        make_job,
        check=check,
        image_size=image_size,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        device=device,
        preprocess=preprocess or (lambda x: x),
        progress=progress,
        transforms=transforms,
        relu_gradient_override=relu_gradient_override,
        precision=precision,
    )
    return (images, final) if return_objective else images


@torch.no_grad()
def unit_maxima(
    model: torch.nn.Module,
    layer: str,
    images: np.ndarray,
    *,
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    size: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """Every unit's maximum activation over positions on each image: float32 (N, U).

    The quantity the dataset examples rank by, so a visualisation can be
    compared with the unit's top dataset activation. ``images`` is uint8
    (N, H, W, 3), fed without padding, resized (bilinear) to ``size`` when
    given (the size dataset images have). Units are the layer's channels, or
    with ``encode`` (an SAE's inference encoder, (n, C) -> (n, F)) the codes
    it gives at each position. Hooks, modes and flags as in
    :func:`render_units`; the normal ReLU gradient is irrelevant here.
    """
    device = torch.device(device)
    preprocess = preprocess or (lambda x: x)
    from atlasgen.models import layer_view

    view = layer_view(model, layer)  # a configured view (channel range, ViT tokens) or the whole module
    _resolve_layer(model, view.module)  # a missing module fails here, naming the model's modules
    out = []
    with _frozen_eval(model), LayerCapture(model, layer) as capture:
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
            x = x.permute(0, 3, 1, 2).float() / 255.0
            if size is not None and x.shape[-1] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            acts = capture(model, preprocess(x)).float()
            if acts.ndim == 2:
                acts = acts[:, :, None, None]
            b, c, h, w = acts.shape
            if encode is not None:
                codes = encode(acts.permute(0, 2, 3, 1).reshape(-1, c))
                out.append(codes.reshape(b, h * w, -1).amax(dim=1).cpu())
            else:
                out.append(acts.flatten(2).amax(dim=2).cpu())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)


# ------------------------------------------------------------------------ WebP


def _write_atomic_webp(image: Image.Image, path: Path, quality: int) -> None:
    # method=6 (slowest, best) and a fixed quality; no metadata is written, so
    # the same pixels always give the same bytes. Written atomically: readers
    # see either no file or the complete one.
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=quality, method=6)
    atomic_write_bytes(path, buffer.getvalue())


def save_webp(
    images: np.ndarray,
    folder: str | os.PathLike,
    ids: Sequence[int | str],
    *,
    thumb_folder: str | os.PathLike | None = None,
    thumb_size: int | None = None,
    quality: int = 85,
) -> list[Path]:
    """Write ``images[i]`` to ``folder/<ids[i]>.webp``; return the paths.

    ``images`` is uint8 (N, H, W, 3). Quality 85 is 18 % smaller than 90 for the same look at the
    sizes pages show (a unit's images are about a ninth of a reference-width site). With
    ``thumb_folder`` and ``thumb_size`` (both or neither) a ``thumb_size`` x ``thumb_size``
    Lanczos-resized copy also goes to ``thumb_folder/<id>.webp``. Folders are created. Each file is
    written atomically (temp file in the same folder, then ``os.replace``),
    and the bytes are a deterministic function of the pixels and ``quality``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 (N, H, W, 3) images, got {images.dtype} {images.shape}")
    if len(ids) != len(images):
        raise ValueError(f"{len(ids)} ids for {len(images)} images")
    if (thumb_folder is None) != (thumb_size is None):
        raise ValueError("give both thumb_folder and thumb_size, or neither")
    names = [f"{i}.webp" for i in ids]
    for name in names:
        if "/" in name or os.sep in name or name.startswith("."):
            raise ValueError(f"bad id for a file name: {name[:-5]!r}")

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if thumb_folder is not None:
        thumb_folder = Path(thumb_folder)
        thumb_folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for array, name in zip(images, names):
        img = Image.fromarray(array)
        _write_atomic_webp(img, folder / name, quality)
        if thumb_folder is not None:
            thumb = img.resize((thumb_size, thumb_size), Image.Resampling.LANCZOS)
            _write_atomic_webp(thumb, thumb_folder / name, quality)
        paths.append(folder / name)
    return paths
