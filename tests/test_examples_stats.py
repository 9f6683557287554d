"""The examples scan against brute force, and the uniformity of its band samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from atlasgen.bands import BandReservoir, brute_force_bands
from atlasgen.scan import FINE_EDGES, UnitStats

EDGES = (0.9, 0.7, 0.5, 0.3, 0.1)


def _brute_hist(peaks: np.ndarray, max_act: float, hist_edges: np.ndarray) -> np.ndarray:
    """The page histogram by its definition: fine log bins moved by their centre relative to the max."""
    v = peaks[peaks > 0]
    fine = np.searchsorted(FINE_EDGES, v, side="left") - 1
    fine = fine[(fine >= 0) & (fine < len(FINE_EDGES) - 1)]
    centre = np.sqrt(FINE_EDGES[fine] * FINE_EDGES[fine + 1])
    rel = np.minimum(centre / max_act, 1.0)
    b = np.clip(np.searchsorted(hist_edges, rel, side="right") - 1, 0, len(hist_edges) - 2)
    return np.bincount(b[rel >= hist_edges[0]], minlength=len(hist_edges) - 1)


@pytest.mark.parametrize("merge_images", [None, 40])
@pytest.mark.parametrize("consume", [False, True])
@pytest.mark.parametrize("nonnegative", [False, True])
def test_scan_matches_brute_force(nonnegative, consume, merge_images, monkeypatch):
    """Top-k (sets, values, arg-max), histogram, density and band samples equal a computation over all images,
    whether the merges run once at the end or every few batches (with the top-k bar from earlier merges)."""
    if merge_images is not None:
        import atlasgen.scan as examples

        monkeypatch.setattr(examples, "MERGE_IMAGES", merge_images)
    rng = np.random.default_rng(5)
    N, P, U, k, batch = 300, 9, 6, 7, 32
    # Sparse, heavy-tailed activations; unit 2 grows through the dataset (its max keeps moving),
    # unit 4 never fires.
    acts = rng.lognormal(0, 1.2, (N, P, U)) * (rng.random((N, P, U)) < 0.15)
    acts[:, :, 2] *= np.linspace(0.001, 1, N)[:, None]
    acts[:, :, 4] = 0
    acts = acts.astype(np.float32)
    image_idx = np.arange(N) * 2 + 1  # dataset indices are not positions in the stream
    labels = (np.arange(2 * N + 2) * 7 // 5) % 4
    stats = UnitStats(U, k, "cpu", EDGES, 4, seed=9, nonnegative=nonnegative, labels=labels, n_classes=4)
    for s in range(0, N, batch):
        vectors = torch.from_numpy(acts[s : s + batch].copy() if consume else acts[s : s + batch])
        stats.update(vectors, torch.from_numpy(image_idx[s : s + batch]), consume=consume)
    out = stats.finish(labels, 4, 12, (3, 3))

    peaks, argmax = acts.max(1), acts.argmax(1)  # (N, U)
    ref = brute_force_bands(peaks.T, image_idx, EDGES, 4, seed=9)
    for u in range(U):
        firing = np.flatnonzero(peaks[:, u] > 0)
        order = firing[np.argsort(-peaks[firing, u], kind="stable")][:k]
        got = out["top_idx"][u][out["top_idx"][u] >= 0]
        assert set(got) == set(image_idx[order]), u
        np.testing.assert_array_equal(out["top_val"][u, : len(got)], peaks[order, u])
        pos = out["top_pos"][u, : len(got)]
        np.testing.assert_array_equal(pos[:, 0] * 3 + pos[:, 1], argmax[order, u])
        assert out["max_act"][u] == (peaks[:, u].max() if firing.size else 0)
        assert out["density"][u] == np.float32(len(firing) / N)
        assert out["density_position"][u] == np.float32((acts[:, :, u] > 0).mean())
        np.testing.assert_allclose(
            out["mean_act_position"][u],
            acts[:, :, u][acts[:, :, u] > 0].mean() if firing.size else 0,
            rtol=1e-5,
        )
        if firing.size:
            np.testing.assert_array_equal(
                out["hist"][u], _brute_hist(peaks[:, u], out["max_act"][u], out["hist_edges"])
            )
        else:
            assert out["hist"][u].sum() == 0
        # The label over the whole range: activation-weighted class shares of every firing image.
        w = np.bincount(labels[image_idx[firing]], weights=peaks[firing, u].astype(np.float64), minlength=4)
        share = w / w.sum() if firing.size else w
        ranked = sorted(range(4), key=lambda c: (-share[c], c))
        kept = [c for c in ranked if share[c] > 0]
        np.testing.assert_array_equal(out["top_classes"][u][: len(kept)], kept)
        assert (out["top_classes"][u][len(kept) :] == -1).all()
        np.testing.assert_allclose(out["top_class_weights"][u][: len(kept)], share[kept], rtol=1e-6)
        p = share[share > 0]
        np.testing.assert_allclose(out["label_entropy"][u], -(p * np.log(p)).sum(), rtol=1e-6, atol=1e-7)
        assert out["flag_dead"][u] == (firing.size == 0)
    np.testing.assert_array_equal(out["band_idx"], ref["band_idx"])
    np.testing.assert_array_equal(out["band_count"], ref["band_count"])
    assert out["band_count"][4].sum() == 0 and (out["band_idx"][4] == -1).all()
    # Every band holds every firing image exactly once, and each sample lies within its (snapped) band.
    np.testing.assert_array_equal(out["band_count"].sum(1), (peaks > 0).sum(0))
    for u in range(U):
        for b in range(len(EDGES) + 1):
            shown = out["band_idx"][u, b][out["band_idx"][u, b] >= 0]
            rel = peaks[(shown - 1) // 2, u] / out["max_act"][u]
            lo, hi = out["band_edges_rel"][u, b + 1], out["band_edges_rel"][u, b]
            assert ((rel >= lo * (1 - 1e-6)) & (rel <= hi * (1 + 1e-6))).all()
    # Snapped edges lie within half a grid bucket (factor 10^(1/120)) of the nominal ones.
    alive = out["max_act"] > 0
    ratio = out["band_edges_rel"][alive][:, 1:-1] / np.asarray(EDGES)
    assert (np.abs(np.log10(ratio)) <= 1 / 120 + 1e-6).all()


def test_band_samples_are_uniform_within_a_band():
    """Over many seeds, every image of a band is chosen equally often, whatever its value or bucket."""
    rng = np.random.default_rng(0)
    n = 120
    # One strong image, then a band (0.5, 0.7] of max holding images spread over many grid buckets,
    # crowded at the low end (so a value-weighted or bucket-weighted sampler would show).
    band_values = np.concatenate([rng.uniform(0.52, 0.56, 90), rng.uniform(0.56, 0.68, 30)])
    values = np.concatenate([band_values, [1.0]]).astype(np.float32)
    order = rng.permutation(len(values))  # the max arrives somewhere in the middle
    values, image_idx = values[order], np.arange(len(values))[order]
    r, runs = 4, 600
    chosen = np.zeros(len(values), dtype=np.int64)
    for seed in range(runs):
        br = BandReservoir(1, (0.9, 0.7, 0.5, 0.3, 0.1), r, seed)
        for s in range(0, len(values), 16):
            br.update(torch.from_numpy(values[None, s : s + 16]), torch.from_numpy(image_idx[s : s + 16]))
        out = br.finish(np.array([1.0], dtype=np.float32))
        assert out["band_count"][0, 2] == n
        picked = out["band_idx"][0, 2]
        assert (picked >= 0).all() and len(set(picked)) == r
        chosen[picked] += 1
    value_of = np.empty(len(values), dtype=np.float32)
    value_of[image_idx] = values
    band = np.flatnonzero(value_of < 0.9)  # the band's images
    counts = chosen[band]
    assert counts.sum() == runs * r
    assert chisquare(counts).pvalue > 1e-3
    crowded = value_of[band] < 0.56
    assert abs(counts[crowded].mean() - counts[~crowded].mean()) < 0.25 * (runs * r / n)


def test_fused_encode_equals_the_sae():
    from atlasgen.sae import SparseAutoencoder
    from atlasgen.scan import encode

    torch.manual_seed(0)
    for threshold in (0.3, -0.2):
        sae = SparseAutoencoder(16, 64, "batchtopk", k=4)
        with torch.no_grad():
            for p in sae.parameters():
                p.normal_()
            sae.threshold.fill_(threshold)
        x = torch.randn(50, 16)
        with torch.no_grad():
            torch.testing.assert_close(encode(sae, x), sae.encode(x), rtol=1e-5, atol=1e-5)
            assert ((encode(sae, x) > 0) == (sae.encode(x) > 0)).float().mean() > 0.999


def test_cooccurrence_sample_is_the_bottom_n_keys_in_any_image_order():
    """The co-occurrence sample keeps the n images with the smallest keys, with their per-image maxima
    in key order, whatever order the batches come in (as when ranks' scans are merged)."""
    from atlasgen.bands import sample_keys
    from atlasgen.scan import CooccurrenceSample

    rng = np.random.default_rng(3)
    N, U, n = 200, 12, 50
    image_idx = rng.permutation(1000)[:N]
    peaks = (rng.lognormal(0, 1, (N, U)) * (rng.random((N, U)) < 0.3)).astype(np.float32)
    outs = []
    for order in (np.arange(N), rng.permutation(N)):
        sample = CooccurrenceSample(U, n, seed=4, device="cpu")
        for s in range(0, N, 16):
            rows = order[s : s + 16]
            sample.update(torch.from_numpy(peaks[rows]), torch.from_numpy(image_idx[rows]))
        outs.append(sample.finish())
    for key in outs[0]:
        np.testing.assert_array_equal(outs[0][key], outs[1][key])
    keys = sample_keys(torch.full((N,), -1), torch.from_numpy(image_idx).long(), 4).numpy()
    chosen = np.argsort(keys)[:n]
    np.testing.assert_array_equal(outs[0]["sample_images"], image_idx[chosen])
    np.testing.assert_array_equal(outs[0]["sample_peaks"], peaks[chosen].astype(np.float16))
    np.testing.assert_array_equal(outs[0]["fires"], (peaks[chosen] > 0).sum(0))


@pytest.mark.parametrize("min_count", [1, 3])
@pytest.mark.parametrize("n_units", [3, 40, 90])
def test_cooccurrence_partners_and_pairs_match_brute_force(n_units, min_count):
    """Partners (NPMI, then lower id, among pairs seen together on at least min_count images) and the
    layer's top pairs (NPMI, then lower ids) equal a computation over the full co-occurrence matrix;
    small counts make ties common, and a dense feature is not everyone's first partner."""
    from atlasgen.cofiring import npmi
    from atlasgen.scan import N_PAIRS, N_PARTNERS, CooccurrenceSample

    rng = np.random.default_rng(n_units)
    n = 16
    peaks = (rng.random((n, n_units)) < 0.35).astype(np.float32) * rng.random((n, n_units)).astype(np.float32)
    peaks[:, 0] = 1.0  # feature 0 fires on every image: independent of everything, NPMI 0
    sample = CooccurrenceSample(n_units, 64, seed=0, device="cpu")
    sample.update(torch.from_numpy(peaks), torch.arange(n))
    out = sample.finish(chunk=7, min_count=min_count)
    A = (peaks > 0).astype(np.int64)
    C = A.T @ A
    alone = A.sum(0)
    m = min(N_PARTNERS, n_units - 1)
    score = {
        (i, j): float(npmi(C[i, j], alone[i], alone[j], n)) for i in range(n_units) for j in range(n_units)
    }
    for i in range(n_units):
        others = [j for j in range(n_units) if j != i and C[i, j] >= min_count]
        ranked = sorted(others, key=lambda j: (-score[i, j], j))[:m]
        got = out["partners"][i]
        np.testing.assert_array_equal(got[got >= 0], ranked)
        assert (got[len(ranked) :] == -1).all()
        np.testing.assert_array_equal(out["partner_count"][i][: len(ranked)], C[i, ranked])
        np.testing.assert_allclose(
            out["partner_npmi"][i][: len(ranked)], [score[i, j] for j in ranked], rtol=1e-6
        )
    if n_units > 3:  # feature 0 has the highest counts with everyone, and NPMI 0: never a first partner
        assert (C[1:, 0] >= C[1:, 1:].max(1)).all() and 0 not in out["partners"][1:, 0]
    pairs = sorted(
        (-score[i, j], i, j) for i in range(n_units) for j in range(i + 1, n_units) if C[i, j] >= min_count
    )[:N_PAIRS]
    np.testing.assert_array_equal(out["pairs"], np.array([[i, j] for _, i, j in pairs]).reshape(-1, 2))
    np.testing.assert_array_equal(out["pair_count"], [C[i, j] for _, i, j in pairs])
    np.testing.assert_allclose(out["pair_npmi"], [-s for s, _, _ in pairs], rtol=1e-6)
    union = alone[out["pairs"][:, 0]] + alone[out["pairs"][:, 1]] - out["pair_count"]
    np.testing.assert_allclose(out["pair_jaccard"], out["pair_count"] / union, rtol=1e-6)
    np.testing.assert_array_equal(out["fires"], alone)
    assert out["min_count"] == min_count


def test_npmi_corrects_for_density():
    """NPMI: 0 for independent features whatever their density, 1 for features that fire together
    only, -1 for features that never do; a dense feature's raw count is highest, its NPMI is not."""
    from atlasgen.cofiring import npmi

    n = 1000
    assert npmi(250, 500, 500, n) == pytest.approx(0.0, abs=1e-12)  # independent, both dense
    assert npmi(1, 10, 100, n) == pytest.approx(0.0, abs=1e-12)  # independent, both sparse
    assert npmi(40, 40, 40, n) == pytest.approx(1.0)
    assert npmi(0, 40, 40, n) == -1.0
    assert npmi(n, n, n, n) == 1.0
    # Partner of a sparse feature (40 images): a dense one (900 images, 36 together, independent) or
    # a sparse one (30 images, 20 together): raw counts rank the dense first, NPMI the sparse.
    assert npmi(20, 40, 30, n) > 0.5 > npmi(36, 40, 900, n)


def test_fine_histogram_equals_bucketize_at_and_around_every_edge():
    """The fine histogram bin taken from the band grid index is ``bucketize(v, FINE_EDGES) - 1`` exactly,
    on values at the edges (as float32), one ulp either side, and outside the grid (not counted)."""
    from atlasgen.bands import grid_index
    from atlasgen.scan import _histogram_pairs

    edges = torch.tensor(FINE_EDGES)
    e32 = torch.from_numpy(FINE_EDGES.astype(np.float32))
    v = torch.cat(
        [
            e32,
            torch.nextafter(e32, torch.tensor(0.0)),
            torch.nextafter(e32, torch.tensor(np.inf, dtype=torch.float32)),
            torch.tensor([1e-30, 1e-7, 9.99e-7, 2e6, 3e38], dtype=torch.float32),
            torch.from_numpy(np.random.default_rng(1).lognormal(0, 4, 5000).astype(np.float32)),
        ]
    )
    g = grid_index(v).numpy()
    nb = len(FINE_EDGES) - 1
    want = (torch.bucketize(v, edges) - 1).numpy()
    for i in range(len(v)):  # one value at a time: its own bin, or none outside the grid
        fires, hist = np.zeros(1, np.int64), np.zeros((1, nb), np.int64)
        _histogram_pairs(np.zeros(1, np.int64), g[i : i + 1], v.numpy()[i : i + 1], FINE_EDGES, fires, hist)
        assert fires[0] == 1
        got = np.flatnonzero(hist[0])
        assert got.tolist() == ([want[i]] if 0 <= want[i] < nb else []), (float(v[i]), want[i], got)


@pytest.mark.parametrize("chunk_bytes", [1 << 10, 1 << 13, 1 << 30])
def test_fused_encoder_equals_encode_and_the_dense_statistics(chunk_bytes, monkeypatch):
    """The fused CPU encode gives the per-image maxima of the codes of ``encode`` up to float
    rounding, their positions, the per-unit counts of firing positions and their sums, with chunks
    that do and do not divide the batch."""
    from atlasgen.sae import SparseAutoencoder
    from atlasgen.scan import _FusedEncoder, encode

    monkeypatch.setattr(_FusedEncoder, "CHUNK_BYTES", chunk_bytes)
    torch.manual_seed(1)
    sae = SparseAutoencoder(24, 96, "batchtopk", k=4)
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
        sae.threshold.fill_(1.5)
    assert _FusedEncoder.applies(sae, "cpu") and not _FusedEncoder.applies(sae, "meta")
    fused = _FusedEncoder(sae)
    with torch.no_grad():
        for b in (7, 5, 7):  # the buffer is reused, also for a smaller batch
            x = torch.randn(b * 9, 24)
            peak, at, counts, sums = fused(x, b)
            ref = encode(sae, x).view(b, 9, 96)
            top2 = ref.topk(2, dim=1).values
            torch.testing.assert_close(peak, top2[:, 0], rtol=1e-5, atol=1e-5)
            # Positions agree wherever the top is not a near tie (BLAS kernels may round a row of
            # a chunk's product differently from the same row of the whole product).
            clear = (top2[:, 0] - top2[:, 1]) > 1e-4
            assert torch.equal(at[clear], ref.argmax(1)[clear])
            # A code at the cut may fall either side of it under another rounding.
            fires = (ref > 0).sum((0, 1))
            pre = (torch.mm(x - sae.b_dec, sae.W_enc) + sae.b_enc).view(b, 9, 96)
            near = ((pre - float(sae.threshold)).abs() < 1e-4).sum((0, 1))
            assert ((counts.long() - fires).abs() <= near).all()
            torch.testing.assert_close(sums, ref.double().sum((0, 1)), rtol=1e-6, atol=1e-6)


def test_compiled_passes_equal_the_tensor_operations(monkeypatch):
    """On the CPU, the scan's statistics come from compiled passes (maxima, counts, sums, arg-max
    positions, band inserts); they give the tensor path's results: the same top-k (values, images,
    positions, with ties), bands, histograms and counts, and the same sums up to float rounding."""
    from atlasgen import scan as ex
    from atlasgen.config import ExamplesConfig

    g = torch.Generator().manual_seed(3)
    # Neuron-like values (negative too) with ties: rounded to a coarse grid so that arg-max ties occur.
    vec = (torch.randn(60, 5, 11, generator=g) * 4).round() / 4
    vec[7, :, 3] = 50.0  # image 7: every position of unit 3 ties at its top value
    cfg = ExamplesConfig(top_k=4, band_samples=2)

    def run(compiled):
        monkeypatch.setattr(
            ex, "_compiled", lambda t: compiled and t.device.type == "cpu" and t.dtype == torch.float32
        )
        monkeypatch.setattr(ex, "MERGE_IMAGES", 16)
        stats = ex.UnitStats(
            11,
            cfg.top_k,
            "cpu",
            cfg.band_edges,
            cfg.band_samples,
            seed=5,
            labels=np.arange(60) % 3,
            n_classes=3,
        )
        for s in range(0, 60, 8):
            stats.update(vec[s : s + 8].clone(), torch.arange(s, min(s + 8, 60)), consume=True)
        return stats.finish(np.arange(60) % 3, 3, cfg.histogram_bins, (1, 5))

    a, b = run(True), run(False)
    assert a.keys() == b.keys()
    for k in a:
        if k in ("mean_act_position", "top_class_weights", "label_entropy", "label_entropy_normalised"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-6)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert (
        7 in a["top_idx"][3] and (a["top_pos"][3][a["top_idx"][3] == 7] == 0).all()
    )  # all-tie image: position 0


def test_position_pass_takes_the_first_maximum():
    """Maxima and their positions as ``amax`` and ``argmax`` give them, ties to the first position;
    counts and sums of the positive values only."""
    from atlasgen.scan import _position_pass

    x = torch.tensor(
        [[[1.0, 0.0, -1.0], [3.0, 0.5, -1.0], [3.0, 5.0, -2.0], [2.0, 5.0, -1.0]]]
    )  # (1, P=4, U=3)
    peak, at = np.empty((1, 3), np.float32), np.empty((1, 3), np.int64)
    fires, sums = np.zeros(3), np.zeros(3)
    _position_pass(
        x.view(4, 3).numpy(),
        np.zeros(3, np.float32),
        np.float32(-np.inf),
        4,
        peak,
        at,
        fires,
        sums,
        np.empty(3, np.float32),
        np.empty(3, np.float32),
    )
    assert at.tolist() == x.argmax(1).tolist() == [[1, 2, 0]]
    np.testing.assert_array_equal(peak, x.amax(1).numpy())
    assert fires.tolist() == [4, 3, 0] and sums.tolist() == [9.0, 10.5, 0.0]


def test_sample_keys_equal_a_plain_python_lowbias32():
    """The band and co-occurrence sample keys are Wellons' lowbias32 of (seed, image, unit) above the
    image index, computed here with Python integers (pins the hash across rewrites of its tensor code)."""
    from atlasgen.bands import image_hash, pair_keys, sample_keys

    M = 0xFFFFFFFF

    def mix(x):
        x ^= x >> 16
        x = (x * 0x7FEB352D) & M
        x ^= x >> 15
        x = (x * 0x846CA68B) & M
        return x ^ (x >> 16)

    def key(unit, image, seed):
        h = mix((image & M) ^ mix(seed & M))
        return (mix(((unit + 0x9E3779B9) & M) ^ h) << 31) | image

    rng = np.random.default_rng(2)
    units = np.concatenate([[-1, 0, 1, 2**20, 2**31 - 1], rng.integers(0, 2**24, 200)])
    images = np.concatenate([[0, 2**31 - 1, 1, 12345, 2**30], rng.integers(0, 2**31, 200)])
    for seed in (0, 9, 2**32 - 1):
        want = [key(int(u), int(i), seed) for u, i in zip(units, images)]
        got = sample_keys(torch.from_numpy(units), torch.from_numpy(images), seed)
        assert got.tolist() == want
        im = torch.from_numpy(images)
        assert pair_keys(torch.from_numpy(units), image_hash(im, seed), im).tolist() == want


def test_unit_flags_on_constructed_cases():
    """Each flag on a unit built to have it (and not the others), at and around its thresholds."""
    from atlasgen.unitlabels import FlagRules, summarise

    K, n_images = 8, 1000
    rules = FlagRules(dense_threshold=0.1, label_min_images=20, label_max_entropy=0.6)
    weight = np.zeros((7, K))
    fires = np.array([50, 0, 101, 100, 19, 60, 60])
    topk_top = np.array([0, -1, 1, 1, 2, 3, 4])
    weight[0, 0] = 10.0  # 0: sparse, one class: no flag
    # 1: never fires: dead only
    weight[2, 1] = 5.0  # 2: fires on 10.1 % of images: dense
    weight[3, 1] = 5.0  # 3: exactly 10 %: not dense ("more than")
    weight[4, 2] = 3.0  # 4: 19 firing images: low-confidence, one class notwithstanding
    weight[5] = 1.0  # 5: every class alike (normalised entropy 1): low-confidence, and its top class
    #                   (the lowest id, 0, by the tie rule) differs from its top examples' (3): polysemantic
    weight[6, 4], weight[6, 5] = (
        0.45,
        0.55,
    )  # 6: top examples say 4, the whole range 5 with 55 %: not polysemantic
    out = summarise(weight, fires, n_images, topk_top, rules)
    flags = {
        name: out[f"flag_{name}"].tolist() for name in ("dead", "dense", "low_confidence", "polysemantic")
    }
    assert flags == {
        "dead": [False, True, False, False, False, False, False],
        "dense": [False, False, True, False, False, False, False],
        "low_confidence": [False, False, False, False, True, True, False],
        "polysemantic": [False, False, False, False, False, True, False],
    }
    np.testing.assert_allclose(out["label_entropy_normalised"][5], 1.0, rtol=1e-6)
    assert out["top_classes"][6].tolist()[:2] == [5, 4] and out["top_classes"][1].tolist() == [-1] * 5
    # Entropy just above and below the threshold: two classes' shares p, 1 - p out of K = 8.
    for p, low in ((0.5, True), (0.95, False)):
        w = np.zeros((1, K))
        w[0, :2] = p, 1 - p
        got = summarise(w, np.array([500]), n_images, np.array([0]), FlagRules(label_max_entropy=0.3))
        h = -(p * np.log(p) + (1 - p) * np.log(1 - p)) / np.log(K)
        assert bool(got["flag_low_confidence"][0]) == low == (h > 0.3)
    # Polysemantic needs the two top classes to disagree and the whole-range one to hold under half.
    w = np.zeros((2, K))
    w[:, 0], w[:, 1], w[:, 2] = 0.4, 0.35, 0.25
    got = summarise(w, np.array([500, 500]), n_images, np.array([1, 0]), rules)
    assert got["flag_polysemantic"].tolist() == [True, False]
