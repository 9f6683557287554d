"""Labels over the whole activation range, and the flags that say how far to trust them.

The examples scan sees every training image. Per unit it accumulates the
activation-weighted class histogram over every image where the unit fires:
``weight[u, c]`` is the sum, over the images of class ``c``, of the unit's
maximum activation on the image (0 where it does not fire). The histogram is
``units x classes`` float64 (17k x 1,000 is 136 MB at the reference width),
whatever the dataset's size; ranks' histograms are summed (float64 sums of
float32 values: the same in any order unless a unit's sum needs more than 53
significant bits, as the scan's other sums).

From it (:func:`summarise`):

* the label classes: the top classes by share of the total weight, and the
  label entropy in nats (``-sum p log p`` over all classes);
* the flags (:class:`FlagRules` holds the thresholds, config keys
  ``examples.dense_threshold``, ``examples.label_min_images``,
  ``examples.label_max_entropy``):

  - dead: fires on none of the scanned images;
  - dense: fires on more than ``dense_threshold`` of the scanned images;
  - low-confidence label: live, and fires on fewer than ``label_min_images``
    images, or its label entropy divided by ``ln K`` (K classes) exceeds
    ``label_max_entropy``;
  - polysemantic: fires on at least ``label_min_images`` images, the top class
    of its top examples (activation-weighted, the old label) is not the top
    class over every firing image, and that top class holds less than
    :data:`MAJORITY` of the weight (so neither class holds most of it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np

# torch is imported inside the scan's functions only: the site renderer reads the flags from here and
# never imports torch (tests/test_site.py).
if TYPE_CHECKING:
    import torch

N_LABEL_CLASSES = 5  # classes kept per unit, by share of the whole-range weight
MAJORITY = 0.5  # polysemantic: the whole-range top class holds less than this share


@dataclass(frozen=True)
class FlagRules:
    """Thresholds of the unit flags (module docstring)."""

    dense_threshold: float = 0.1
    label_min_images: int = 20
    label_max_entropy: float = 0.6

    @classmethod
    def from_config(cls, cfg) -> FlagRules:
        """From an ``ExamplesConfig`` (or anything with the same attributes)."""
        return cls(float(cfg.dense_threshold), int(cfg.label_min_images), float(cfg.label_max_entropy))


def check_labels(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """The dataset's labels as int64, each a class id in [0, n_classes)."""
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"dataset labels must be class ids 0..{n_classes - 1}, found {labels.min()}..{labels.max()}: "
            "fix labels.npy or the classes of dataset.json"
        )
    return labels


def new_class_weight(n_units: int, n_classes: int) -> torch.Tensor:
    """The empty histogram (units x classes, float64, on the CPU)."""
    import torch

    return torch.zeros((n_units, n_classes), dtype=torch.float64)


@numba.njit(cache=True, nogil=True)
def _add_pairs(units, cols, v, col_class, weight):
    for i in range(units.shape[0]):
        weight[units[i], col_class[cols[i]]] += np.float64(v[i])


def add_class_weight(
    weight: torch.Tensor,
    labels: np.ndarray,
    units: torch.Tensor,
    cols: torch.Tensor,
    v: torch.Tensor,
    image_idx: torch.Tensor,
) -> None:
    """Add firing pairs to the histogram: ``v`` (> 0) of unit ``units`` on dataset image ``image_idx[cols]``
    (CPU tensors, as the scan's merge has them); ``labels``: the dataset's labels (:func:`check_labels`)."""
    import torch

    if units.numel() == 0 or weight.shape[1] == 0:
        return
    col_class = labels[image_idx.to("cpu", torch.long).numpy()]
    _add_pairs(
        units.to("cpu", torch.long).numpy(),
        cols.to("cpu", torch.long).numpy(),
        v.to("cpu", torch.float32).numpy(),
        col_class,
        weight.numpy(),
    )


def class_shares(
    weight: np.ndarray, n_keep: int = N_LABEL_CLASSES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(classes (U, n) int64 with -1 padding, their shares (U, n) float32, entropy (U,) float32 nats)
    of a (U, K) weight histogram: shares of the row's total, classes by share, ties to the lower id."""
    weight = np.asarray(weight, dtype=np.float64)
    total = weight.sum(1, keepdims=True)
    share = np.divide(weight, total, out=np.zeros_like(weight), where=total > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(share > 0, share * np.log(share), 0.0).sum(1)
    n = min(n_keep, weight.shape[1])
    order = np.argsort(-share, axis=1, kind="stable")[:, :n]
    top = np.take_along_axis(share, order, 1)
    classes = np.where(top > 0, order, -1)
    return classes.astype(np.int64), top.astype(np.float32), entropy.astype(np.float32)


def summarise(
    weight: np.ndarray, fires: np.ndarray, n_images: int, topk_top_class: np.ndarray, rules: FlagRules
) -> dict[str, np.ndarray]:
    """The examples artifact's label fields and flags of one family (module docstring).

    ``weight``: (U, K) whole-range histogram; ``fires``: (U,) images where each unit fires;
    ``topk_top_class``: (U,) the top class of each unit's top examples (-1: none)."""
    weight = np.asarray(weight, dtype=np.float64)
    U, K = weight.shape
    classes, shares, entropy = class_shares(weight)
    fires = np.asarray(fires, dtype=np.int64)
    density = fires / max(int(n_images), 1)
    dead = fires == 0
    norm = entropy.astype(np.float64) / math.log(K) if K > 1 else np.zeros(U)
    low = ~dead & ((fires < rules.label_min_images) | (norm > rules.label_max_entropy))
    top = classes[:, 0] if classes.shape[1] else np.full(U, -1)
    top_share = shares[:, 0] if shares.shape[1] else np.zeros(U, np.float32)
    topk_top_class = np.asarray(topk_top_class, dtype=np.int64)
    poly = (
        ~dead
        & (fires >= rules.label_min_images)
        & (topk_top_class >= 0)
        & (top >= 0)
        & (topk_top_class != top)
        & (top_share < MAJORITY)
    )
    return {
        "top_classes": classes,
        "top_class_weights": shares,
        "label_entropy": entropy,
        "label_entropy_normalised": norm.astype(np.float32),
        "flag_dead": dead,
        "flag_dense": density > rules.dense_threshold,
        "flag_low_confidence": low,
        "flag_polysemantic": poly,
        "dense_threshold": np.float32(rules.dense_threshold),
        "label_min_images": np.int64(rules.label_min_images),
        "label_max_entropy": np.float32(rules.label_max_entropy),
    }


FLAGS = ("dead", "dense", "low_confidence", "polysemantic")  # artifact arrays flag_<name>


def flag_definitions(ex) -> dict[str, str]:
    """One-line definition per flag, with the thresholds the build used (``ex``: an examples
    artifact with the threshold fields, e.g. :class:`atlasgen.site.artifacts.UnitExamples`)."""
    dense = float(getattr(ex, "dense_threshold", FlagRules.dense_threshold))
    min_images = int(getattr(ex, "label_min_images", FlagRules.label_min_images))
    max_entropy = float(getattr(ex, "label_max_entropy", FlagRules.label_max_entropy))
    return {
        "dead": "never fires on the scanned images",
        "dense": f"fires on more than {dense * 100:g}% of the scanned images",
        "low_confidence": (
            f"label from fewer than {min_images} firing images, or label entropy above "
            f"{max_entropy:g} of its maximum (ln of the number of classes)"
        ),
        "polysemantic": (
            "the top class of its top examples is not its top class over every firing image, "
            f"which holds under {MAJORITY * 100:g}% of the activation-weighted total"
        ),
    }


FLAG_NAMES = {
    "dead": "dead",
    "dense": "dense",
    "low_confidence": "low-confidence label",
    "polysemantic": "polysemantic",
}


def unit_flags(ex, i: int) -> list[str]:
    """The flags (names of :data:`FLAGS`) that apply to unit ``i`` of an examples artifact; an
    artifact written without flags gives dead from its density alone."""
    if getattr(ex, "flag_dead", None) is None:
        return ["dead"] if float(ex.density[i]) <= 0 else []
    return [name for name in FLAGS if bool(getattr(ex, f"flag_{name}")[i])]
