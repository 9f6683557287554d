"""One definition per number the site shows, and the rankings built from them.

Every stat card, table cell and card line that shows one of these numbers takes
its name, its one-line definition (the tooltip) and its glossary anchor from
``GLOSSARY``; the site's glossary page (``glossary.html``) prints the same
entries, and docs/analyses.md ("Glossary") holds the same definitions
(tests/test_site_numbers.py checks that they agree). Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atlasgen.site import urls
from atlasgen.site.fmt import fmt_count, fmt_pct

DEFAULT_DENSE_THRESHOLD = (
    0.10  # examples.dense_threshold: a unit firing on more images than this share is dense
)


@dataclass(frozen=True)
class Term:
    anchor: str  # id of its section on the glossary page and heading slug in docs/analyses.md
    name: str
    short: str  # one line: the tooltip


GLOSSARY: tuple[Term, ...] = (
    Term(
        "images-scanned",
        "images scanned",
        "the dataset's training images: every density, histogram, example and band is counted over them",
    ),
    Term(
        "dataset-images",
        "dataset images",
        "every image of the dataset: the training images (scanned) plus the held-out images",
    ),
    Term(
        "held-out-images",
        "held-out images",
        "images kept out of training: model accuracy, the SAE's training metrics and importance use them",
    ),
    Term(
        "density",
        "density",
        "share of the images scanned on which the unit fires (its maximum over positions is above 0)",
    ),
    Term("dead", "dead", "fires on none of the images scanned (density 0); a dead unit has no rank"),
    Term(
        "dense",
        "dense",
        "fires on more than the dense threshold (examples.dense_threshold) of the images scanned",
    ),
    Term(
        "density-per-position",
        "density per position",
        "share of all positions (images scanned x grid positions) where the unit fires",
    ),
    Term(
        "max-activation",
        "max activation",
        "the unit's largest activation over every position of every image scanned",
    ),
    Term(
        "mean-activation",
        "mean activation",
        "mean of the per-image maximum over the images scanned where the unit fires",
    ),
    Term("mean-per-position", "mean per position", "mean activation over the positions where the unit fires"),
    Term(
        "label-entropy",
        "label entropy",
        "entropy (nats) of the classes of every image scanned where the unit fires, each image weighted by "
        "its activation; the label is the class with the largest share",
    ),
    Term(
        "low-confidence",
        "low-confidence label",
        "the label rests on few firing images or a spread of classes (examples.label_min_images, "
        "examples.label_max_entropy)",
    ),
    Term(
        "polysemantic",
        "polysemantic",
        "the top class of its top images differs from its top class over every firing image, which holds "
        "under half of the activation-weighted total",
    ),
    Term(
        "importance",
        "importance",
        "held-out images that lose the true class from the model's top k when the unit is mean-ablated, "
        "minus those that gain it (negative: the model does better without the unit)",
    ),
    Term(
        "importance-top-1",
        "importance (top-1)",
        "the same net count for the top-1 prediction (negative: more images become right than wrong)",
    ),
    Term(
        "rank",
        "rank",
        "1 + the number of live units of the layer with a larger importance; equal values are tied, dead "
        "units have none",
    ),
    Term(
        "look-first",
        "look first",
        "live, not dense units, confident labels before low-confidence ones, ranked by importance "
        "(then lower "
        "label entropy, then lower id)",
    ),
    Term(
        "class-weight",
        "class weight",
        "how much one unit of activation adds to a class logit (the formula is named on each page)",
    ),
    Term(
        "class-contribution",
        "class contribution",
        "what a unit adds to a class logit on that class's own images: weight x activation, averaged over "
        "the class's images (gradient x activation where the layer does not reach the logits linearly)",
    ),
    Term(
        "class-lift",
        "lift",
        "a unit's mean activation on a class's images over its mean on all the images the class "
        "contributions read; selective for the class from 8 (with fewer than 16 classes, from half the "
        "class count)",
    ),
    Term(
        "selectivity",
        "visualisation selectivity",
        "whether any other unit fires more strongly than this one on its own visualisation",
    ),
    Term(
        "co-occurrence",
        "fires with it",
        "partners ranked by normalised PMI on a uniform sample of images: 0 = independent, 1 = fire only "
        "together, so dense features do not top every list",
    ),
    Term(
        "vis-failed",
        "visualisation failed",
        "the optimised image is flat, its final objective is not positive, or it activates its unit below "
        "the unit's median firing activation on the images scanned",
    ),
    Term(
        "dead-fraction-training",
        "dead fraction (SAE training)",
        "SAE training metric: share of latents that never fire on the held-out activation vectors; "
        "not the dataset figure",
    ),
)

TERMS = {t.anchor: t for t in GLOSSARY}


def glossary_href(anchor: str) -> str:
    """Root-relative link to a term's section of the glossary page."""
    if anchor not in TERMS:
        raise KeyError(f"no glossary term {anchor!r}")
    return f"{urls.glossary()}#{anchor}"


def stat(anchor: str, value: str, name: str | None = None, help: str | None = None) -> dict:
    """A stat card: value, the term's name and tooltip, and its glossary link."""
    term = TERMS[anchor]
    return {
        "key": anchor,
        "name": name or term.name,
        "value": value,
        "help": help or term.short,
        "href": glossary_href(anchor),
    }


def density_text(density: float) -> str:
    """How every card and page line states a density: "fires on 12.3% of images"."""
    return f"fires on {fmt_pct(density)} of images"


# ---------------------------------------------------------------- images scanned


def images_scanned(dataset) -> int:
    """The number of images the examples scan counts over: the training split (every image without one)."""
    if dataset.split is None:
        return int(len(dataset.labels))
    return int((np.asarray(dataset.split) == 0).sum())


def images_heldout(dataset) -> int:
    return 0 if dataset.split is None else int((np.asarray(dataset.split) != 0).sum())


# ---------------------------------------------------------------- ranking and ties


def look_first(
    density,
    importance=None,
    label_entropy=None,
    dense_threshold: float = DEFAULT_DENSE_THRESHOLD,
    low_confidence=None,
) -> np.ndarray:
    """Ids of the live, not dense units, the ones to look at first first.

    Order: units whose label is confident before those flagged low-confidence (``low_confidence``, when
    known: a label from one or two images says little, however class-specific it looks), then larger
    importance (when known), then lower label entropy (more class-specific; when known), then lower id.
    Dead units (density 0) and dense units (density > ``dense_threshold``) are left out.
    """
    d = np.asarray(density, dtype=np.float64)
    ids = np.flatnonzero((d > 0) & (d <= dense_threshold))
    keys = [ids]  # np.lexsort sorts by the last key first
    if label_entropy is not None:
        keys.append(np.asarray(label_entropy, dtype=np.float64)[ids])
    if importance is not None:
        keys.append(-np.asarray(importance, dtype=np.float64)[ids])
    if low_confidence is not None:
        keys.append(np.asarray(low_confidence, dtype=bool)[ids].astype(np.int8))
    return ids[np.lexsort(keys)] if ids.size else ids


def look_first_method(has_importance: bool, dense_threshold: float) -> str:
    """The name of the ranking, as the page states it."""
    by = "importance, then lower label entropy" if has_importance else "lower label entropy"
    return (
        f"live features firing on at most {fmt_pct(dense_threshold)} of images, confident labels before "
        f"low-confidence ones, then ranked by {by}, then id"
    )


def competition_ranks(values, live) -> tuple[np.ndarray, np.ndarray]:
    """Rank (1 + live units with a larger value; 0 for units not live) and tie count (other live units with
    the same value) of each unit."""
    v = np.asarray(values, dtype=np.float64)
    live = np.asarray(live, dtype=bool)
    lv = np.sort(v[live])
    rank = np.zeros(len(v), dtype=np.int64)
    ties = np.zeros(len(v), dtype=np.int64)
    if lv.size:
        above = lv.size - np.searchsorted(lv, v, side="right")  # live units with a strictly larger value
        equal = np.searchsorted(lv, v, side="right") - np.searchsorted(lv, v, side="left")
        rank[live] = above[live] + 1
        ties[live] = equal[live] - 1
    return rank, ties


def net_count_text(value: int) -> str:
    """A net count of images as a stat card states it: "3", or "-1 (the model does better without
    it)", so that a negative count explains itself on the page, not only in the tooltip."""
    return f"{value} (the model does better without it)" if value < 0 else str(value)


def rank_text(value: int, rank: int, ties: int, n_live: int) -> str:
    """The stat card's value: "12 (rank 3 of 480 live)", "0, tied with 300 others", "0 (dead: no rank)"."""
    if rank <= 0:
        return f"{value} (dead: no rank)"
    if ties > 0:
        return f"{value}, tied with {fmt_count(ties)} other{'s' if ties > 1 else ''}"
    return f"{value} (rank {fmt_count(rank)} of {fmt_count(n_live)} live)"
