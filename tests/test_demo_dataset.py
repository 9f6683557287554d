"""Tests for the procedurally generated demo dataset (real Pillow and NumPy, small sizes)."""

from __future__ import annotations

import numpy as np
import pytest

from atlasgen.demo.dataset import CLASSES, SUPERCLASSES, DemoData, generate, render_image

SIZE = 32  # small enough to keep the suite fast; the layout does not depend on size


@pytest.fixture(scope="module")
def data() -> DemoData:
    return generate(seed=3, images_per_class=6, size=SIZE)


def test_class_table_has_planted_hierarchy():
    assert len(CLASSES) >= 12
    assert len(SUPERCLASSES) >= 3
    assert [c.id for c in CLASSES] == list(range(len(CLASSES)))
    assert set(SUPERCLASSES) == {c.superclass for c in CLASSES}
    for sup in SUPERCLASSES:
        assert sum(c.superclass == sup for c in CLASSES) >= 2, sup
    assert len({c.name for c in CLASSES}) == len(CLASSES)
    for c in CLASSES:
        assert 2 <= len(c.facets) <= 3, c
        assert len(set(c.facets)) == len(c.facets)
        assert all(f.startswith(f"{c.name}: ") for f in c.facets), c.facets


def test_shapes_and_dtypes(data):
    n = 6 * len(CLASSES)
    assert data.images.shape == (n, SIZE, SIZE, 3) and data.images.dtype == np.uint8
    assert data.labels.shape == (n,) and data.labels.dtype == np.int64
    assert data.facets.shape == (n,) and data.facets.dtype == np.int64
    assert data.classes == CLASSES


def test_same_seed_is_byte_identical(data):
    again = generate(seed=3, images_per_class=6, size=SIZE)
    assert np.array_equal(data.images, again.images)
    assert np.array_equal(data.labels, again.labels)
    assert np.array_equal(data.facets, again.facets)


def test_different_seed_differs(data):
    other = generate(seed=4, images_per_class=6, size=SIZE)
    assert not np.array_equal(data.images, other.images)
    assert not np.array_equal(data.labels, other.labels)  # the shuffle is seeded too


def test_every_class_and_facet_appears_balanced(data):
    for c in CLASSES:
        counts = np.bincount(data.facets[data.labels == c.id], minlength=len(c.facets))
        assert len(counts) == len(c.facets), c.name
        assert counts.min() >= 1 and counts.max() - counts.min() <= 1, (c.name, counts)


def test_order_is_shuffled(data):
    assert np.any(np.diff(data.labels) < 0)
    first = data.labels[: len(CLASSES)]
    assert len(set(first.tolist())) > 1


def test_images_are_not_blank(data):
    std = data.images.reshape(len(data.images), -1).std(axis=1)
    assert std.min() > 10, std.min()


def test_images_are_independent_of_each_other_and_of_order():
    """An image depends only on (seed, class, facet, index): generating more images, or
    rendering one on its own, reproduces it exactly."""
    small = generate(seed=5, images_per_class=2, size=SIZE)
    large = generate(seed=5, images_per_class=4, size=SIZE)
    large_set = {img.tobytes() for img in large.images}
    assert all(img.tobytes() in large_set for img in small.images)
    alone = np.asarray(render_image(CLASSES[-1].id, 1, seed=5, index=1, size=SIZE))
    assert any(np.array_equal(alone, img) for img in small.images)


def _colour_histogram(images: np.ndarray) -> np.ndarray:
    """Mean normalised 4x4x4 RGB histogram of a stack of images."""
    q = (images // 64).reshape(len(images), -1, 3).astype(np.int64)
    codes = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]
    hist = np.stack([np.bincount(c, minlength=64) for c in codes]).astype(np.float64)
    return (hist / hist.sum(axis=1, keepdims=True)).mean(axis=0)


def test_facets_of_a_class_differ_more_than_halves_of_one_facet():
    """Facets are distinct modes: on average two facets of one class are further apart
    (in colour-histogram L1 distance) than two halves of the same facet."""
    per_facet = 12
    between, within = [], []
    for c in CLASSES:
        hists = []
        for f in range(len(c.facets)):
            imgs = np.stack([np.asarray(render_image(c.id, f, 11, i, SIZE)) for i in range(per_facet)])
            a, b = _colour_histogram(imgs[::2]), _colour_histogram(imgs[1::2])
            within.append(np.abs(a - b).sum())
            hists.append((a + b) / 2)
        between += [
            np.abs(hists[i] - hists[j]).sum() for i in range(len(hists)) for j in range(i + 1, len(hists))
        ]
    assert np.mean(between) > 1.5 * np.mean(within), (np.mean(between), np.mean(within))


def test_works_at_size_96():
    img = render_image(CLASSES[0].id, 0, seed=0, index=0, size=96)
    assert img.mode == "RGB" and img.size == (96, 96)
    d = generate(seed=0, images_per_class=1, size=96)
    assert d.images.shape == (len(CLASSES), 96, 96, 3)
    assert d.images.reshape(len(CLASSES), -1).std(axis=1).min() > 10


def test_progress_is_reported_per_image():
    seen: list[int] = []
    d = generate(seed=0, images_per_class=1, size=16, progress=seen.append)
    assert seen == list(range(1, len(d.labels) + 1))


@pytest.mark.parametrize("class_id, facet", [(-1, 0), (len(CLASSES), 0), (0, 3), (0, -1)])
def test_render_rejects_unknown_class_or_facet(class_id, facet):
    with pytest.raises(ValueError):
        render_image(class_id, facet, seed=0, index=0, size=SIZE)
