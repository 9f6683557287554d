"""Did a feature visualisation work? Failure marks and the build's success figures.

A unit's visualisation is judged against the unit's own firing distribution on the dataset
(the examples artifact): the main image succeeds when it activates its unit (the maximum over
positions of the unit's activation on the image, at the image's own size) at or above the unit's
median firing activation, the median of its per-image maxima over the images where it fires.

The examples artifact stores each unit's histogram of per-image maxima (bins relative to its
maximum), its maximum and its density, not the median itself; :func:`median_firing_activation`
reads the median off that histogram, interpolated within its bin (geometrically on log-spaced
bins, linearly otherwise). Images that fire below the histogram's lowest edge are counted from the
density, so they pull the median down as they should.

Failure reasons, first match wins (``REASONS``):

1. flat: the 8-bit image hardly differs from a uniform grey (pixel standard deviation below
   ``FLAT_STD`` levels of 255; the optimiser's starting noise is about 0.7);
2. the final objective is not positive;
3. the image does not activate its unit at all (a unit that never fires on the dataset has no
   median: this is its only activation test);
4. it activates its unit below the unit's median firing activation.

Variants are judged by what they optimise: a neuron-centred or diverse image fails when it is flat
or its final objective is not positive; a negative image (which minimises) fails when it is flat.
"""

from __future__ import annotations

import numpy as np

#: An image whose pixel standard deviation (8-bit levels) is below this is flat: a grey square.
FLAT_STD = 2.0

REASONS = (
    "",
    "flat image: the optimisation never moved",
    "final objective not positive",
    "does not activate its unit",
    "activates its unit below its median firing activation",
)
OK, FLAT, NOT_POSITIVE, SILENT, BELOW_MEDIAN = range(len(REASONS))


def flat_images(images: np.ndarray) -> np.ndarray:
    """True for each uint8 (..., H, W, 3) image whose pixel standard deviation is below ``FLAT_STD``."""
    images = np.asarray(images)
    lead = images.shape[:-3]
    return images.reshape(*lead, -1).astype(np.float32).std(axis=-1) < FLAT_STD


def median_firing_activation(
    hist: np.ndarray, edges: np.ndarray, max_act: np.ndarray, fires: np.ndarray
) -> np.ndarray:
    """Each unit's median per-image maximum over the images where it fires: float32 (U,), NaN if it never
    fires.

    ``hist`` (U, B) counts firing images in bins ``edges`` (B + 1, ascending, relative to each unit's
    ``max_act``); ``fires`` (U,) is the number of images where it fires, counting those below
    ``edges[0]`` that the histogram leaves out. Within the bin that holds the median, counts are taken
    as uniform in log activation when ``edges[0] > 0`` and in activation otherwise. A median below the
    histogram's range is reported as its lowest edge (an upper bound).
    """
    hist = np.asarray(hist, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    max_act = np.asarray(max_act, dtype=np.float64)
    fires = np.asarray(fires, dtype=np.float64)
    out = np.full(len(hist), np.nan, dtype=np.float64)
    below = np.maximum(fires - hist.sum(axis=1), 0.0)
    half = fires / 2.0
    cum = below[:, None] + np.cumsum(hist, axis=1)  # images up to each bin's top edge
    for u in np.flatnonzero((fires > 0) & (max_act > 0)):
        if below[u] >= half[u]:
            out[u] = edges[0]
            continue
        b = int(np.searchsorted(cum[u], half[u], side="left"))
        b = min(b, hist.shape[1] - 1)
        start = cum[u, b] - hist[u, b]
        frac = 0.0 if hist[u, b] <= 0 else (half[u] - start) / hist[u, b]
        lo, hi = edges[b], edges[b + 1]
        out[u] = lo * (hi / lo) ** frac if lo > 0 else lo + (hi - lo) * frac
    return (out * max_act).astype(np.float32)


def mark_main(objective: np.ndarray, own_act: np.ndarray, median: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """The failure reason of each main visualisation: int8 (U,), ``OK`` (0) when it succeeded."""
    reason = np.zeros(len(objective), dtype=np.int8)
    live = np.isfinite(median)
    checks = (
        (flat, FLAT),
        (~(objective > 0), NOT_POSITIVE),
        (~(own_act > 0), SILENT),
        (live & ~(own_act >= median), BELOW_MEDIAN),
    )
    for failed, code in reversed(checks):  # the first listed reason wins
        reason[failed] = code
    return reason


def mark_maximised(objective: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Failure reasons of maximised variants (neuron-centred, diverse): flat, or objective not positive."""
    reason = np.where(~(objective > 0), NOT_POSITIVE, OK).astype(np.int8)
    reason[flat] = FLAT
    return reason


def success_figures(
    reason: np.ndarray, own_act: np.ndarray, median: np.ndarray, fires: np.ndarray, flat_any: np.ndarray
) -> dict:
    """The build's figures for one family: how many live units' main images reach their median, and
    how many units that fire on the data have a flat image (main, or any image with ``flat_any``)."""
    live = np.asarray(fires) > 0
    reach = live & (own_act >= median)
    return {
        "units": int(len(reason)),
        "live": int(live.sum()),
        "reach_median": int(reach.sum()),
        "reach_median_share": float(reach.sum() / max(1, live.sum())),
        "flat_main_live": int((live & (reason == FLAT)).sum()),
        "flat_any_live": int((live & flat_any).sum()),
        "failed": int((reason != OK).sum()),
    }


def note_line(layer: str, family: str, fig: dict) -> str:
    """One line of the build summary for one family of one layer."""
    return (
        f"featurevis {layer} {family}: {fig['reach_median']} of {fig['live']} live "
        f"({100 * fig['reach_median_share']:.1f} %) reach their median firing activation on their main "
        f"visualisation; live units with a flat image: {fig['flat_main_live']} main, {fig['flat_any_live']} "
        f"any variant; {fig['failed']} of {fig['units']} main visualisations marked failed"
        + (
            f"; second attempts: {fig['retried']}, {fig['retry_kept']} kept"
            if fig.get("retried") is not None
            else ""
        )
    )
