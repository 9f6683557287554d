"""Circuits and importance on tiny hand-built modules whose answers are known analytically."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from atlasgen.circuits import (
    CircuitsError,
    expanded_weights,
    forward_order,
    layer_pair_weights,
    reaches_classifier_linearly,
    unit_weights,
)
from atlasgen.importance import batched_ablation, closed_form, hits, ranks, unit_means
from atlasgen.sae import SparseAutoencoder


class Chain(nn.Module):
    """conv a -> conv b -> ReLU -> max-pool (stride 1) -> conv c -> ReLU -> avgpool -> fc."""

    def __init__(self, kernels=(1, 1, 1), channels=(3, 4, 5, 6), n_classes=5):
        super().__init__()
        c = channels
        self.a = nn.Conv2d(c[0], c[1], kernels[0], padding=kernels[0] // 2)
        self.b = nn.Sequential(
            nn.Conv2d(c[1], c[2], kernels[1], padding=kernels[1] // 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 1, padding=1),
        )
        self.c = nn.Sequential(nn.Conv2d(c[2], c[3], kernels[2], padding=kernels[2] // 2), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c[3], n_classes)

    def forward(self, x):
        return self.fc(self.avgpool(self.c(self.b(self.a(x)))).flatten(1))


def _seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.eval().requires_grad_(False)


def _compose(w2: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """Kernel of conv(w2) after conv(w1) (cross-correlations, 'same' padding): K[s] = sum_{e+d=s} w2[e]
    w1[d]."""
    o, m, k2, _ = w2.shape
    _, c, k1, _ = w1.shape
    K = np.zeros((o, c, k1 + k2 - 1, k1 + k2 - 1))
    for ey in range(k2):
        for ex in range(k2):
            for dy in range(k1):
                for dx in range(k1):
                    K[:, :, ey + dy, ex + dx] += w2[:, :, ey, ex] @ w1[:, :, dy, dx]
    return K


def test_chain_of_1x1_convs_is_the_matrix_product():
    model = _seeded(Chain())
    J = expanded_weights(model, "a", "c", image_size=8)
    assert J.shape == (6, 4, 1, 1)
    Wb = model.b[0].weight[:, :, 0, 0].double().numpy()
    Wc = model.c[0].weight[:, :, 0, 0].double().numpy()
    np.testing.assert_allclose(J[:, :, 0, 0], Wc @ Wb, rtol=1e-6, atol=1e-9)
    # the in-place ReLU was linearized and put back
    assert model.b[1].inplace is True
    # Features read by an encoder and written by a decoder: the product of the four matrices.
    rng = np.random.default_rng(0)
    W_enc, W_dec = rng.normal(size=(6, 9)), rng.normal(size=(7, 4))
    per_offset = unit_weights(J, W_enc, W_dec)
    np.testing.assert_allclose(per_offset[:, :, 0, 0], W_enc.T @ Wc @ Wb @ W_dec.T, rtol=1e-6, atol=1e-9)


def test_expanded_weights_of_a_linear_chain_are_the_composed_kernel():
    model = _seeded(Chain(kernels=(3, 3, 3)), seed=1)
    J = expanded_weights(model, "a", "c", image_size=6)  # 5x5 kernel: the grid is enlarged to fit it
    assert J.shape == (6, 4, 5, 5)
    want = _compose(model.c[0].weight.double().numpy(), model.b[0].weight.double().numpy())
    np.testing.assert_allclose(J, want, rtol=1e-6, atol=1e-9)
    # one layer apart: the conv's own weights
    np.testing.assert_allclose(
        expanded_weights(model, "b", "c", image_size=8),
        model.c[0].weight.double().numpy(),
        rtol=1e-6,
        atol=1e-9,
    )


class Branches(nn.Module):
    """An Inception-like block: 1x1 and 3x3 branches with ReLUs, concatenated."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.one = nn.Sequential(nn.Conv2d(4, 2, 1), nn.ReLU())
        self.three = nn.Sequential(nn.Conv2d(4, 3, 1), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1), nn.ReLU())
        self.block = nn.Identity()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        s = self.stem(x)
        out = self.block(torch.cat([self.one(s), self.three(s)], 1))
        return self.fc(out.mean((2, 3)))


def test_expanded_weights_through_branches_sum_each_branch():
    model = _seeded(Branches(), seed=2)
    J = expanded_weights(model, "stem", "block", image_size=8)
    assert J.shape == (4, 4, 3, 3)
    one = model.one[0].weight.double().numpy()
    three = _compose(model.three[2].weight.double().numpy(), model.three[0].weight.double().numpy())
    np.testing.assert_allclose(J[:2, :, 1, 1], one[:, :, 0, 0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(J[:2, :, 0, 0], 0, atol=1e-12)
    np.testing.assert_allclose(J[2:], three, rtol=1e-6, atol=1e-9)


class FunctionalChain(nn.Module):
    """Chain's convolutions in the functional style: F.relu, torch.relu, x.relu_() and F.max_pool2d
    (stride 1 and strided) instead of modules; ``strided`` pools 2x2 after b."""

    def __init__(self, strided: bool = False):
        super().__init__()
        self.a, self.b, self.c = (
            nn.Conv2d(3, 4, 3, padding=1),
            nn.Conv2d(4, 5, 3, padding=1),
            nn.Conv2d(5, 6, 3, padding=1),
        )
        self.strided = strided
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        import torch.nn.functional as F

        x = F.max_pool2d(F.relu(self.b(torch.relu(self.a(x)))), 3, 1, 1)
        if self.strided:
            x = F.max_pool2d(x, 2)
        return self.fc(self.c(x).relu_().mean((2, 3)))


class ModuleChain(FunctionalChain):
    """The same network with nn.ReLU and nn.MaxPool2d modules."""

    def __init__(self, strided: bool = False):
        super().__init__(strided)
        self.relu, self.pool, self.pool2 = nn.ReLU(inplace=True), nn.MaxPool2d(3, 1, 1), nn.MaxPool2d(2)

    def forward(self, x):
        x = self.pool(self.relu(self.b(self.relu(self.a(x)))))
        if self.strided:
            x = self.pool2(x)
        return self.fc(self.relu(self.c(x)).mean((2, 3)))


@pytest.mark.parametrize("strided", [False, True])
def test_functional_relus_and_max_pools_are_linearized_like_their_modules(strided):
    functional = _seeded(FunctionalChain(strided), seed=3)
    modules = _seeded(ModuleChain(strided), seed=3)  # same parameters: the modules added have none
    J = expanded_weights(functional, "a", "c", image_size=8)
    np.testing.assert_allclose(J, expanded_weights(modules, "a", "c", image_size=8), rtol=1e-9, atol=1e-12)
    if not strided:  # ReLU and a stride-1 max-pool as the identity: the composed kernel
        want = _compose(functional.c.weight.double().numpy(), functional.b.weight.double().numpy())
        np.testing.assert_allclose(J, want, rtol=1e-6, atol=1e-9)


def test_a_residual_cnn_in_the_functional_style_gets_expanded_weights():
    """FunctionalResNet's stage2 is relu(x + conv_b(relu(conv_a(x)))): linearized, the identity at
    the centre plus conv_b composed with conv_a."""
    from tests.tiny_models import FunctionalResNet

    model = _seeded(FunctionalResNet(4, width=3), seed=4)
    J = expanded_weights(model, "stage1", "stage2", image_size=16)
    want = _compose(model.stage2.conv_b.weight.double().numpy(), model.stage2.conv_a.weight.double().numpy())
    want[:, :, 2, 2] += np.eye(3)
    np.testing.assert_allclose(J, want, rtol=1e-6, atol=1e-9)


class Gated(Chain):
    """Chain with a sigmoid gate inside b: not linear however ReLUs and pools are treated."""

    def __init__(self):
        super().__init__()
        self.b.append(Gate())


class Gate(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


def test_another_nonlinearity_is_refused_naming_it_and_its_module():
    model = _seeded(Gated(), seed=3)
    with pytest.raises(CircuitsError, match=r"goes through sigmoid in module 'b\.3'"):
        expanded_weights(model, "a", "c", image_size=8)


def test_forward_order_and_pair_selection():
    model = _seeded(Chain())
    assert forward_order(model, ["c", "a", "b"], 8) == ["a", "b", "c"]
    rng = np.random.default_rng(1)
    J = rng.normal(size=(3, 4, 3, 3))
    pairs = layer_pair_weights(J, None, None, k=2)
    summed = J.sum(axis=(2, 3))
    for i in range(3):
        assert summed[i, pairs["up_idx"][i, 0]] == summed[i].max()
        assert summed[i, pairs["up_idx"][i, 2]] == summed[i].min()
        np.testing.assert_allclose(pairs["up_kernel"][i, 0], J[i, pairs["up_idx"][i, 0]])
    for j in range(4):
        i = pairs["down_idx"][j, 0]
        assert summed[i, j] == summed[:, j].max()
        np.testing.assert_allclose(pairs["down_kernel"][j, 0], J[i, j])
    # features: kernels are the projections of J
    read, write = rng.normal(size=(3, 5)), rng.normal(size=(6, 4))
    pairs = layer_pair_weights(J, read, write, k=3, chunk=2)
    full = unit_weights(J, read, write)
    for i in range(5):
        np.testing.assert_allclose(pairs["up_kernel"][i], full[i, pairs["up_idx"][i]], rtol=1e-9)
        np.testing.assert_allclose(pairs["up_w"][i], full[i, pairs["up_idx"][i]].sum(axis=(1, 2)), rtol=1e-9)
    for j in range(6):
        np.testing.assert_allclose(pairs["down_kernel"][j], full[pairs["down_idx"][j], j], rtol=1e-9)


# ---------------------------------------------------------------- importance


def _small_problem(seed=0, n=40, classes=5, k=2):
    model = _seeded(Chain(kernels=(3, 1, 1), channels=(3, 4, 5, 6), n_classes=classes), seed)
    gen = torch.Generator().manual_seed(seed + 10)
    images = torch.randn(n, 3, 6, 6, generator=gen) * torch.rand(n, 1, 1, 1, generator=gen) * 4
    # Borderline labels, so that single ablations move them: the k-th class (just inside the top k)
    # for even images, the (k+1)-th (just outside) for odd ones.
    with torch.no_grad():
        order = model(images).argsort(1, descending=True)
    labels = order[torch.arange(n), k - 1 + torch.arange(n) % 2]
    sae = SparseAutoencoder(6, 10, "relu")
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(6, 10, generator=gen))
        sae.W_dec.copy_(torch.randn(10, 6, generator=gen))
        sae.b_enc.copy_(torch.randn(10, generator=gen) * 0.1)
        sae.b_dec.copy_(torch.randn(6, generator=gen) * 0.1)

    def batches():
        for s in range(0, n, 16):
            yield images[s : s + 16], labels[s : s + 16]

    return model, sae, batches, images, labels


def _one_by_one(model, layer, sae, images, labels, mu_a, mu_f, k):
    """The definition, unit by unit: rerun the whole model with one unit replaced by its mean."""
    module = dict(model.named_modules())[layer]
    clean = hits(model(images), labels, k).sum().item()
    out = {"neurons": [], "features": []}
    for kind, n_units in (("neurons", 6), ("features", 10)):
        for u in range(n_units):

            def hook(_m, _i, a, u=u, kind=kind):
                a = a.clone()
                if kind == "neurons":
                    a[:, u] = mu_a[u]
                    return a
                f = sae.encode(a.permute(0, 2, 3, 1).reshape(-1, 6))[:, u].reshape(a.shape[0], *a.shape[2:])
                return a + (mu_f[u].float() - f)[:, None] * sae.W_dec[u][None, :, None, None]

            h = module.register_forward_hook(hook)
            with torch.no_grad():
                out[kind].append(clean - hits(model(images), labels, k).sum().item())
            h.remove()
    return {kind: np.array(v) for kind, v in out.items()}


@pytest.mark.parametrize("k", [1, 2])
def test_closed_form_ablation_equals_brute_force(k):
    model, sae, batches, images, labels = _small_problem(k=k)
    assert reaches_classifier_linearly(model, "c", images)
    mu_a, mu_f = unit_means(model, "c", sae, batches)
    # the means are over every position of every image
    with torch.no_grad():
        acts = model.c(model.b(model.a(images)))
    np.testing.assert_allclose(mu_a.numpy(), acts.double().mean((0, 2, 3)).numpy(), rtol=1e-6)
    fast = closed_form(model, "c", sae, batches, mu_a, mu_f, k)
    batched = batched_ablation(model, "c", sae, batches, mu_a, mu_f, k, units_per_pass=4)
    slow = _one_by_one(model, "c", sae, images, labels, mu_a, mu_f, k)
    for kind in ("neurons", "features"):
        np.testing.assert_array_equal(fast[f"{kind}_topk"], slow[kind])
        np.testing.assert_array_equal(batched[f"{kind}_topk"], slow[kind])
    for kind in ("neurons", "features"):  # the test can fail: ablations do move images
        assert (slow[kind] != 0).any(), slow[kind]
    assert fast["images"] == 40 and fast["clean_topk"] == hits(model(images), labels, k).sum().item()


def test_batched_ablation_on_an_earlier_layer_matches_the_definition():
    model, _, batches, images, labels = _small_problem(seed=4)
    sae = SparseAutoencoder(5, 7, "relu")
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(5, 7, generator=gen))
        sae.W_dec.copy_(torch.randn(7, 5, generator=gen))
    assert not reaches_classifier_linearly(model, "b", images)
    mu_a, mu_f = unit_means(model, "b", sae, batches)
    got = batched_ablation(model, "b", sae, batches, mu_a, mu_f, 2, units_per_pass=3)
    module = model.b
    clean = hits(model(images), labels, 2).sum().item()
    wants = []
    for u in range(5):
        h = module.register_forward_hook(
            lambda _m, _i, a, u=u: torch.cat(
                [a[:, :u], torch.full_like(a[:, u : u + 1], float(mu_a[u])), a[:, u + 1 :]], 1
            )
        )
        with torch.no_grad():
            want = clean - hits(model(images), labels, 2).sum().item()
        h.remove()
        wants.append(want)
    assert got["neurons_topk"].tolist() == wants and any(wants)


def test_ranks_order_by_topk_then_top1_then_id():
    assert ranks(np.array([3, 5, 5, 0]), np.array([0, 1, 2, 0])).tolist() == [3, 2, 1, 4]
