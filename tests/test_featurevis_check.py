"""Failure marks of feature visualisations (atlasgen.featurevis_check) against brute-force computations."""

from __future__ import annotations

import numpy as np

from atlasgen import featurevis_check as check


def _histogram(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, float]:
    """A unit's examples histogram as the examples stage stores it: per-image maxima relative to the maximum,
    in log-spaced bins; images below the lowest edge are not in it."""
    top = float(values.max())
    rel = values / top
    return np.histogram(rel[rel >= edges[0]], bins=edges)[0], top


def test_median_firing_activation_falls_in_the_true_medians_bin():
    rng = np.random.default_rng(0)
    edges = np.logspace(-3, 0, 21).astype(np.float32)
    hists, tops, fires, true = [], [], [], []
    for n in (1, 2, 7, 50, 301, 4000):
        v = rng.lognormal(0.0, 1.5, n).astype(np.float32)
        h, top = _histogram(v, edges)
        hists.append(h)
        tops.append(top)
        fires.append(n)
        s = np.sort(v)
        true.append((float(s[(n - 1) // 2]), float(s[n // 2])))  # the middle image(s)
    got = check.median_firing_activation(np.stack(hists), edges, np.array(tops), np.array(fires))

    def bin_of(value: float, top: float) -> int:
        return min(int(np.searchsorted(edges, value / top, side="right")) - 1, len(edges) - 2)

    for m, (low, high), top in zip(got, true, tops):
        if low / top < edges[0]:  # below the histogram's range: reported as its lowest edge (an upper bound)
            assert np.isclose(m, edges[0] * top, rtol=1e-5)
            continue
        lo, hi = edges[bin_of(low, top)] * top, edges[bin_of(high, top) + 1] * top
        # Within the bins of the middle image(s), up to float32 rounding at their edges.
        assert lo * (1 - 1e-5) <= m <= hi * (1 + 1e-5), (m, low, high, lo, hi)


def test_median_counts_images_below_the_range_and_is_nan_for_silent_units():
    edges = np.logspace(-3, 0, 4).astype(np.float32)  # bins [1e-3, 1e-2), [1e-2, 1e-1), [1e-1, 1]
    hist = np.array([[0, 0, 4], [0, 0, 4], [0, 0, 0]])
    # Unit 0: 4 images in the top bin and 6 more below the range: the median is below the range.
    # Unit 1: no image below: the median is inside the top bin. Unit 2 never fires.
    got = check.median_firing_activation(hist, edges, np.array([2.0, 2.0, 0.0]), np.array([10, 4, 0]))
    assert np.isclose(got[0], 2.0 * 1e-3)
    assert 0.2 <= got[1] <= 2.0
    assert np.isnan(got[2])


def test_flat_images():
    rng = np.random.default_rng(1)
    grey = np.full((2, 8, 8, 3), 128, np.uint8)
    noisy = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    almost = grey.copy()
    almost[0, 0, 0, 0] = 129  # a single-level change is still flat
    assert check.flat_images(grey).tolist() == [True, True]
    assert check.flat_images(noisy).tolist() == [False, False]
    assert check.flat_images(almost).tolist() == [True, True]
    stacked = np.stack([grey, noisy], axis=1)  # (units, copies, H, W, 3): the diverse set's layout
    assert check.flat_images(stacked).tolist() == [[True, False], [True, False]]


def test_mark_main_reasons_in_order():
    objective = np.array([1.0, 1.0, -1.0, 0.0, 1.0, 1.0, 1.0, 2.0])
    own = np.array([3.0, 3.0, 3.0, 3.0, 0.0, 1.0, 0.5, 1.0])
    median = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 2.0, np.nan, np.nan])
    flat = np.array([False, True, True, False, False, False, False, False])
    got = check.mark_main(objective, own, median, flat)
    want = [
        check.OK,
        check.FLAT,
        check.FLAT,
        check.NOT_POSITIVE,
        check.SILENT,
        check.BELOW_MEDIAN,
        check.OK,
        check.OK,
    ]  # a unit that never fires (no median) is judged on its activation only
    assert got.tolist() == want
    # Brute force: the first reason that applies wins.
    for i in range(len(objective)):
        reasons = [
            flat[i],
            not objective[i] > 0,
            not own[i] > 0,
            np.isfinite(median[i]) and not own[i] >= median[i],
        ]
        assert got[i] == (reasons.index(True) + 1 if any(reasons) else 0)


def test_variants_and_success_figures():
    assert check.mark_maximised(np.array([1.0, 0.0, 2.0]), np.array([False, False, True])).tolist() == [
        check.OK,
        check.NOT_POSITIVE,
        check.FLAT,
    ]
    reason = np.array([check.OK, check.BELOW_MEDIAN, check.FLAT, check.OK])
    own = np.array([3.0, 1.0, 0.0, 0.2])
    median = np.array([2.0, 2.0, 2.0, np.nan])
    fires = np.array([10, 10, 10, 0])
    fig = check.success_figures(reason, own, median, fires, np.array([False, True, True, True]))
    assert fig == {
        "units": 4,
        "live": 3,
        "reach_median": 1,
        "reach_median_share": 1 / 3,
        "flat_main_live": 1,
        "flat_any_live": 2,
        "failed": 2,
    }
    line = check.note_line("mixed5b", "features", fig)
    assert "1 of 3 live (33.3 %)" in line and "2 of 4" in line
