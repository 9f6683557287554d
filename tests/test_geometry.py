"""Similar features by decoder cosine: chunked top-k against the whole similarity matrix."""

from __future__ import annotations

import numpy as np

from atlasgen.geometry import similar_features


def test_similar_features_match_the_full_cosine_matrix():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(300, 16)).astype(np.float32)
    W[7] = W[3] * 2.0  # a parallel pair: each is the other's most similar feature
    W[11] = 0.0  # a dead decoder row has cosine 0 with everything
    ids, cos = similar_features(W, 5, chunk=64)  # several chunks, the last one partial
    Wn = W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-30)
    S = Wn @ Wn.T
    np.fill_diagonal(S, -np.inf)
    for i in range(len(W)):
        if i == 11:  # all tied at 0: which k are kept is argpartition's choice, in id order
            assert (cos[i] == 0).all() and ids[i].tolist() == sorted(ids[i].tolist()) and 11 not in ids[i]
            continue
        order = sorted(range(len(W)), key=lambda j: (-S[i, j], j))[:5]
        assert ids[i].tolist() == order, i
        np.testing.assert_allclose(cos[i], S[i, order], rtol=1e-5, atol=1e-6)
    assert ids[3, 0] == 7 and ids[7, 0] == 3 and abs(cos[3, 0] - 1) < 1e-5
    assert ids.dtype == np.int64 and cos.dtype == np.float32 and ids.shape == (300, 5)


def test_fewer_features_than_k():
    ids, cos = similar_features(np.eye(3, dtype=np.float32), 6)
    assert ids.shape == (3, 2) and set(ids[0].tolist()) == {1, 2}
    assert similar_features(np.ones((1, 4), np.float32), 6)[0].shape == (1, 0)
