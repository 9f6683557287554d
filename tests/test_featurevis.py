"""Tests for atlasgen.featurevis on a tiny random conv net (real torch, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from atlasgen.featurevis import (
    NO_TRANSFORMS,
    STANDARD_TRANSFORMS,
    FFTImage,
    SAEDirections,
    TransformSpec,
    direction_objective,
    gram_diversity,
    make_objective,
    random_affine,
    render_directions,
    render_units,
    save_webp,
    unit_maxima,
)

SIZE = 32
STEPS = 32
# A higher lr than the default 0.05 so that 32 steps (instead of hundreds) give
# a clear signal on a random net.
LR = 0.2
TARGET = "features.2"  # second conv, 16 channels, pre-ReLU
N_CH = 16


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The net is tiny, so intra-op threading only adds overhead, and on a
    # shared 2-core box it can make these tests ~10x slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class CallCounter(nn.Module):
    """Identity that counts its calls and records whether it ran in train mode."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.seen_training: list[bool] = []

    def forward(self, x):
        self.calls += 1
        self.seen_training.append(self.training)
        return x


class TinyNet(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.probe = CallCounter()  # before the target: must run
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, N_CH, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(N_CH, 4, 3, padding=1),
        )
        self.after = CallCounter()  # after the target: must never run
        self.head = nn.Linear(4, 3)
        with torch.no_grad():
            for p in self.parameters():
                # Kaiming-normal weights, zero biases: livelier than the default
                # init, so channels have distinct preferences.
                if p.ndim > 1:
                    p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p[0].numel()) ** 0.5)
                else:
                    p.zero_()

    def forward(self, x):
        x = self.features(self.probe(x))
        return self.head(self.after(x).mean((2, 3)))


@pytest.fixture()
def net() -> TinyNet:
    return TinyNet()


def random_sae(n_features: int = 24, seed: int = 1) -> SAEDirections:
    g = torch.Generator().manual_seed(seed)
    return SAEDirections(
        W_enc=(torch.randn(N_CH, n_features, generator=g) / 4).numpy(),
        b_enc=(torch.randn(n_features, generator=g) * 0.1).numpy(),
        b_dec=(torch.randn(N_CH, generator=g) * 0.1).numpy(),
    )


def objective_matrix(net, images, *, mode="channel", sae=None, pad=12) -> np.ndarray:
    """(n_images, n_units) objective on untransformed images on a grey canvas
    (the padding the renderer used), computed independently of featurevis."""
    x = (
        torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0
        if isinstance(images, np.ndarray)
        else images
    )
    x = F.pad(x, [pad] * 4, value=0.5)
    with torch.no_grad():
        a = net.features[:3](x)
    if sae is not None:  # the feature's code (a ReLU SAE: relu of the pre-activation) at every position
        W_enc, b_enc, b_dec = (torch.as_tensor(t) for t in (sae.W_enc, sae.b_enc, sae.b_dec))
        a = torch.relu(torch.einsum("nchw,cf->nfhw", a - b_dec[:, None, None], W_enc) + b_enc[:, None, None])
    a = a.mean((2, 3)) if mode == "channel" else a[:, :, a.shape[2] // 2, a.shape[3] // 2]
    return a.numpy()


def random_images(n: int = 64, seed: int = 2) -> torch.Tensor:
    """Pixel noise and smooth blobs: a baseline for 'how high can it go by chance'."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n // 2, 3, SIZE, SIZE, generator=g)
    smooth = F.interpolate(torch.rand(n // 2, 3, 8, 8, generator=g), size=SIZE, mode="bilinear")
    return torch.cat([noise, smooth])


def assert_optimises(net, units, sae=None):
    common = dict(sae=sae, image_size=SIZE, lr=LR, batch_size=len(units))
    init = render_units(net, TARGET, units, steps=0, **common)
    final = render_units(net, TARGET, units, steps=STEPS, **common)
    a0 = objective_matrix(net, init, sae=sae)[:, units]
    a1 = objective_matrix(net, final, sae=sae)[:, units]
    chance = objective_matrix(net, random_images(), sae=sae)[:, units]
    own0, own1 = np.diag(a0), np.diag(a1)
    # "A lot": the gain is several standard deviations of the unit's response
    # to random images, and beats the best of 64 random images.
    assert np.median((own1 - own0) / chance.std(0)) > 4
    assert (own1 > chance.max(0)).mean() >= 0.9
    # Each image optimised its own unit: unit u responds most to image u.
    assert (a1.argmax(0) == np.arange(len(units))).mean() >= 0.75


# ------------------------------------------------------------------ objective


def test_channel_objective_increases_and_is_per_image(net):
    assert_optimises(net, list(range(N_CH)))


def test_sae_objective_increases_and_is_per_image(net):
    sae = random_sae()
    assert_optimises(net, list(range(0, 24, 2)) + [1, 3, 5, 7], sae=sae)


def test_make_objective_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(5, N_CH, 7, 7, generator=g)
    units = [3, 0, 15, 3, 9]
    sae = random_sae()
    W, b, bd = sae.tensors("cpu")
    for mode in ("channel", "neuron"):
        raw = make_objective(units, mode=mode)(acts)
        feat = make_objective(units, sae=sae, mode=mode)(acts)
        for i, u in enumerate(units):
            pre = torch.einsum("chw,c->hw", acts[i] - bd[:, None, None], W[:, u]) + b[u]
            if mode == "channel":
                ref_raw, ref_feat = acts[i, u].mean(), pre.mean()
            else:
                ref_raw, ref_feat = acts[i, u, 3, 3], pre[3, 3]
            torch.testing.assert_close(raw[i], ref_raw)
            torch.testing.assert_close(feat[i], ref_feat, rtol=1e-5, atol=1e-5)


def test_neuron_mode_is_local_and_differs_from_channel(net):
    # Without transforms the centre neuron only sees its 5x5 receptive field,
    # so the neuron image changes mostly around the centre (not only there:
    # Adam on the FFT spectrum spreads a local gradient a little), whereas the
    # channel objective changes the whole image.
    common = dict(image_size=SIZE, lr=LR, transforms=NO_TRANSFORMS)
    init = render_units(net, TARGET, [1, 2], steps=0, **common).astype(int)
    neuron = render_units(net, TARGET, [1, 2], steps=STEPS, mode="neuron", **common).astype(int)
    channel = render_units(net, TARGET, [1, 2], steps=STEPS, mode="channel", **common).astype(int)

    def change(img):  # mean |change| in the centre 5x5 and in the four 8x8 corners
        d = np.abs(img - init).mean(axis=(0, 3))
        corners = np.concatenate([d[:8, :8], d[:8, -8:], d[-8:, :8], d[-8:, -8:]])
        return d[14:19, 14:19].mean(), corners.mean()

    n_centre, n_corners = change(neuron)
    c_centre, c_corners = change(channel)
    assert n_centre > 5 * n_corners
    assert c_corners > 3 * n_corners and c_corners > 0.5 * c_centre
    assert np.abs(neuron - channel).mean() > 20
    # And it drives the centre neuron well beyond what random images do.
    a0 = objective_matrix(net, init.astype(np.uint8), mode="neuron", pad=0)[[0, 1], [1, 2]]
    a1 = objective_matrix(net, neuron.astype(np.uint8), mode="neuron", pad=0)[[0, 1], [1, 2]]
    chance = objective_matrix(net, random_images(), mode="neuron", pad=0)[:, [1, 2]]
    assert ((a1 - a0) / chance.std(0) > 4).all()
    assert (a1 > chance.max(0)).all()


# ------------------------------------------------------ hygiene of the loop


def _all_hooks(model):
    return [
        (n, h)
        for n, m in model.named_modules()
        for h in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks)
        if h
    ]


def test_hooks_removed_params_untouched_modes_restored(net):
    net.train()
    net.head.eval()  # mixed modes must come back exactly
    net.head.bias.requires_grad_(False)  # and mixed requires_grad flags
    before = {k: v.clone() for k, v in net.state_dict().items()}
    # The CPU renderer runs the convolutions channels-last; the caller's very tensors come back.
    storage = {n: (p.data_ptr(), p.stride()) for n, p in net.named_parameters()}
    sae = random_sae()
    render_units(net, TARGET, [0, 1, 2], image_size=SIZE, steps=3)
    render_units(net, TARGET, [0, 1], sae=sae, mode="neuron", image_size=SIZE, steps=3)
    assert _all_hooks(net) == []
    assert all(p.grad is None for p in net.parameters())
    assert net.training and net.features.training and not net.head.training
    assert [n for n, p in net.named_parameters() if not p.requires_grad] == ["head.bias"]
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert {n: (p.data_ptr(), p.stride()) for n, p in net.named_parameters()} == storage
    # It rendered in eval mode.
    assert net.probe.seen_training and not any(net.probe.seen_training)


def test_cleanup_on_exception(net):
    net.train()

    def boom(done):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        render_units(net, TARGET, [0, 1, 2], image_size=SIZE, steps=2, batch_size=2, progress=boom)
    with pytest.raises(ValueError, match="out of range"):
        render_units(net, TARGET, [N_CH], image_size=SIZE, steps=2)
    assert _all_hooks(net) == []
    assert net.training
    assert all(p.requires_grad and p.grad is None for p in net.parameters())


def test_forward_stops_after_target_layer(net):
    render_units(net, TARGET, [0, 1], image_size=SIZE, steps=4)
    assert net.probe.calls > 4  # the part before the layer ran every step
    assert net.after.calls == 0  # nothing after it ever did


def test_unknown_layer_and_bad_arguments(net):
    with pytest.raises(KeyError, match="features.2"):
        render_units(net, "nope", [0], image_size=SIZE, steps=1)
    with pytest.raises(ValueError):
        render_units(net, TARGET, [0], mode="spatial", image_size=SIZE, steps=1)
    with pytest.raises(ValueError, match="out of range"):
        render_units(net, TARGET, [24], sae=random_sae(24), image_size=SIZE, steps=1)
    with pytest.raises(ValueError, match="d_in"):
        render_units(net, "features.0", [0], sae=random_sae(), image_size=SIZE, steps=1)
    assert _all_hooks(net) == []


# -------------------------------------------------- determinism and batching


def test_deterministic_and_global_rng_untouched(net):
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    kw = dict(image_size=SIZE, steps=8, batch_size=4)
    a = render_units(net, TARGET, [0, 5, 9], seed=3, **kw)
    b = render_units(net, TARGET, [0, 5, 9], seed=3, **kw)
    c = render_units(net, TARGET, [0, 5, 9], seed=4, **kw)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])


def test_batches_progress_and_batch_independence(net):
    calls = []
    kw = dict(image_size=SIZE, steps=8, seed=1)
    out = render_units(net, TARGET, [4, 7, 2, 11, 7], batch_size=2, progress=calls.append, **kw)
    assert out.shape == (5, SIZE, SIZE, 3) and out.dtype == np.uint8
    assert calls == [2, 4, 5]  # last batch is smaller
    # A unit's image depends on (seed, unit), not on its batch-mates.
    assert np.array_equal(out[1], out[4])
    alone = render_units(net, TARGET, [11], batch_size=1, **kw)
    assert np.abs(alone[0].astype(int) - out[3].astype(int)).max() <= 2
    assert render_units(net, TARGET, [], **kw).shape == (0, SIZE, SIZE, 3)


def test_preprocess_is_applied(net):
    seen = []

    def prep(x):
        seen.append((float(x.detach().min()), float(x.detach().max())))
        return x * 2 - 1

    render_units(net, TARGET, [0], image_size=SIZE, steps=2, preprocess=prep)
    assert seen and all(0.0 <= lo and hi <= 1.0 for lo, hi in seen)


# --------------------------------------------- parameterisation & transforms


def test_fft_image_matches_lucent():
    spatial = pytest.importorskip("lucent.optvis.param.spatial")
    color = pytest.importorskip("lucent.optvis.param.color")
    if torch.cuda.is_available():
        pytest.skip("lucent pins its tensors to cuda:0")
    torch.manual_seed(0)
    params, image_f = spatial.fft_image((2, 3, 24, 24))
    lucent_rgb = color.to_valid_rgb(image_f, decorrelate=True)()
    ours = FFTImage(params[0].detach(), 24)()
    torch.testing.assert_close(ours, lucent_rgb, rtol=1e-5, atol=1e-6)
    assert FFTImage.random([torch.Generator().manual_seed(0)], 24)().shape == (1, 3, 24, 24)


def test_random_affine_geometry():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 10, 10, generator=g)
    ident = torch.tensor([[0, 0, 1, 0, 0, 0]] * 2, dtype=torch.float32)
    # Identity with padding == constant grey pad.
    torch.testing.assert_close(random_affine(img, ident, 3), F.pad(img, [3] * 4, value=0.5))
    # Integer translations move content by whole pixels: x by 2 (first jitter)
    # and y by -1 (second jitter).
    shift = torch.tensor([[2, 0, 1, 0, 0, -1]] * 2, dtype=torch.float32)
    out = random_affine(img, shift, 3)
    torch.testing.assert_close(out[:, :, 3 - 1 : 13 - 1, 3 + 2 : 13 + 2], img)
    # A 90-degree rotation is a rot90 (either direction, depending on the axes).
    quarter = torch.tensor([[0, 0, 1, np.pi / 2, 0, 0]] * 2, dtype=torch.float32)
    rot = random_affine(img, quarter, 0)
    assert any(torch.allclose(rot, torch.rot90(img, k, (2, 3)), atol=1e-5) for k in (1, 3))
    # Scaling up by 2 about the centre shows the middle of the image, enlarged.
    zoom = random_affine(img, torch.tensor([[0, 0, 2, 0, 0, 0]] * 2, dtype=torch.float32), 0)
    assert zoom.shape == img.shape
    torch.testing.assert_close(zoom[:, :, 4:6, 4:6].mean(), img[:, :, 4:6, 4:6].mean(), atol=0.1, rtol=0)


def test_transform_spec_sampling():
    g = torch.Generator().manual_seed(0)
    p = STANDARD_TRANSFORMS.sample(g, 500)
    assert p.shape == (500, 6)
    assert p[:, [0, 1]].abs().max() == 4 and p[:, [4, 5]].abs().max() == 2
    allowed = np.asarray(STANDARD_TRANSFORMS.scales, dtype=np.float32)
    assert np.isin(p[:, 2].numpy(), allowed).all()
    assert len(np.unique(p[:, 2].numpy())) == len(allowed)
    assert p[:, 3].abs().max() <= np.deg2rad(10) + 1e-6
    none = NO_TRANSFORMS.sample(g, 5)
    assert torch.equal(none, torch.tensor([[0, 0, 1, 0, 0, 0]] * 5, dtype=torch.float32))
    assert isinstance(TransformSpec(pad=2), TransformSpec)


# ------------------------------------------------------------------------ WebP


def test_save_webp_roundtrip_thumbs_and_stable_bytes(tmp_path):
    rng = np.random.default_rng(0)
    images = (rng.random((3, 40, 40, 3)) * 255).astype(np.uint8)
    images[:, :20] = 30  # some flat area, like real renders
    ids = [7, 12, "f3"]
    full, thumbs = tmp_path / "features", tmp_path / "features_thumb"
    paths = save_webp(images, full, ids, thumb_folder=thumbs, thumb_size=16)
    assert paths == [full / f"{i}.webp" for i in ids]
    for i, img in zip(ids, images):
        with Image.open(full / f"{i}.webp") as im:
            assert im.format == "WEBP" and im.size == (40, 40)
            decoded = np.asarray(im.convert("RGB"))
        assert decoded.shape == (40, 40, 3)
        assert np.abs(decoded.astype(int) - img.astype(int)).mean() < 25  # lossy, but the same picture
        with Image.open(thumbs / f"{i}.webp") as im:
            assert im.size == (16, 16)
    first = [p.read_bytes() for p in sorted(tmp_path.rglob("*.webp"))]
    save_webp(images, full, ids, thumb_folder=thumbs, thumb_size=16)  # overwrite in place
    assert [p.read_bytes() for p in sorted(tmp_path.rglob("*.webp"))] == first
    # No temp files left behind.
    assert sorted(p.name for p in full.iterdir()) == sorted(f"{i}.webp" for i in ids)


def test_save_webp_rejects_bad_input(tmp_path):
    img = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError):
        save_webp(img.astype(np.float32), tmp_path, [0])
    with pytest.raises(ValueError):
        save_webp(img, tmp_path, [0, 1])
    with pytest.raises(ValueError):
        save_webp(img, tmp_path, [0], thumb_size=4)
    with pytest.raises(ValueError):
        save_webp(img, tmp_path, ["../x"])


class _FunctionalBlock(torch.nn.Module):
    """A conv whose ReLU is a function call inside forward (no nn.ReLU module to patch)."""

    def __init__(self, c_in, c_out, relu):
        super().__init__()
        self.conv, self.relu = torch.nn.Conv2d(c_in, c_out, 3, padding=1), relu

    def forward(self, x):
        return self.relu(self.conv(x))


@pytest.mark.parametrize("relu", [torch.relu, F.relu, torch.Tensor.relu, torch.nn.ReLU()])
def test_unit_that_is_off_at_the_start_climbs_its_pre_activation(relu):
    """A channel that is negative before its ReLU on the grey start passes no gradient through the
    ReLU; the renderer climbs its pre-activation instead, whether the ReLU is a module or a function
    called in forward, and the image is not left a flat grey square."""
    from atlasgen.featurevis_check import flat_images

    torch.manual_seed(0)
    net = torch.nn.Sequential(_FunctionalBlock(3, 4, relu), _FunctionalBlock(4, 2, relu))
    with torch.no_grad():
        net[1].conv.bias[:] = torch.tensor([-3.0, 0.0])  # channel 0 of the last layer is off everywhere
        net[1].conv.weight[0] = (
            net[1].conv.weight[0].abs()
        )  # ... but grows with the previous layer's activity
    kwargs = dict(image_size=24, steps=40, lr=0.2, batch_size=1, seed=0)
    for override in (False, True):
        images, final = render_units(
            net, "1", [0], relu_gradient_override=override, return_objective=True, **kwargs
        )
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            pre = net[1].conv(net[0](x))[0, 0].mean()
            start = net[1].conv(net[0](torch.full((1, 3, 24, 24), 0.5)))[0, 0].mean()  # the grey start
        assert float(pre - start) > 0.1, (override, float(pre), float(start))
        assert not flat_images(images).any()
        negative, low = render_units(net, "1", [1], negative=True, return_objective=True, **kwargs)
        assert not flat_images(negative).any() and low[0] < 0  # the pre-activation was pushed below 0
    assert not any(m._forward_hooks for m in net.modules())


# ------------------------------------------- negative, diverse, atlas, maxima


def test_negative_minimises_below_start_and_below_other_images(net):
    units = list(range(N_CH))
    common = dict(image_size=SIZE, lr=LR, batch_size=N_CH)
    init = render_units(net, TARGET, units, steps=0, **common)
    low, reported = render_units(
        net, TARGET, units, steps=STEPS, negative=True, return_objective=True, **common
    )
    a0 = np.diag(objective_matrix(net, init)[:, units])
    a1 = objective_matrix(net, low)[:, units]
    chance = objective_matrix(net, random_images())[:, units]
    assert np.median((a0 - np.diag(a1)) / chance.std(0)) > 4
    assert (np.diag(a1) < chance.min(0)).mean() >= 0.9
    assert (a1.argmin(0) == np.arange(N_CH)).mean() >= 0.75
    # The reported final objective is the objective of the saved image (on its padded canvas).
    np.testing.assert_allclose(reported, np.diag(a1), rtol=1e-4, atol=1e-4)


def _loop_diversity(acts: torch.Tensor, k: int) -> torch.Tensor:
    """lucid's diversity, written as lucid writes it: Python loops over pairs of each group."""
    out = []
    for g in range(acts.shape[0] // k):
        grams = []
        for i in range(k):
            a = acts[g * k + i].flatten(1)  # (C, P)
            gram = a @ a.T
            grams.append(gram / gram.norm())
        out.append(sum((grams[i] * grams[j]).sum() for i in range(k) for j in range(k) if j != i) / k)
    return torch.stack(out)


@pytest.mark.parametrize("shape", [(8, 6, 2, 3), (8, 3, 4, 4)])  # fewer positions than channels, and more
def test_gram_diversity_matches_lucid_loop_and_its_gradient(shape):
    g = torch.Generator().manual_seed(0)
    acts = torch.rand(shape, generator=g).requires_grad_(True)
    ours = gram_diversity(acts, 4)
    ref = _loop_diversity(acts, 4)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    (g1,) = torch.autograd.grad(ours.sum(), acts)
    (g2,) = torch.autograd.grad(ref.sum(), acts)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6)
    # Identical images in a set are maximally similar: each pair's cosine is 1.
    same = acts.detach()[:1].expand(4, -1, -1, -1)
    torch.testing.assert_close(gram_diversity(same, 4), torch.tensor([3.0]))
    with pytest.raises(ValueError):
        gram_diversity(acts, 3)


def test_diverse_set_is_more_diverse_and_still_drives_its_unit(net):
    # The diversity term acts on the target layer's activations; as in lucid's
    # examples that is a post-ReLU layer (this tiny net's 16 channels give
    # nearly parallel Grams, so the effect is small in absolute terms).
    layer, units = "features.3", [1, 2, 5]
    common = dict(image_size=SIZE, lr=LR, steps=STEPS, copies=4, return_objective=True, batch_size=12)
    plain, obj_plain = render_units(net, layer, units, diversity_weight=0.0, **common)
    diverse, obj_diverse = render_units(net, layer, units, diversity_weight=30.0, **common)
    assert diverse.shape == (3, 4, SIZE, SIZE, 3) and obj_diverse.shape == (3, 4)

    def acts_of(images):
        x = torch.from_numpy(images.reshape(-1, SIZE, SIZE, 3)).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            return net.features[:4](F.pad(x, [12] * 4, value=0.5))

    def mean_gram_cosine(images):
        return float(gram_diversity(acts_of(images), 4).mean()) / 3  # mean off-diagonal cosine

    # Gram dissimilarity (1 - cosine) within the sets at least doubles.
    assert 1 - mean_gram_cosine(diverse) > 2 * (1 - mean_gram_cosine(plain))
    # The four images are not copies of each other, and each still drives its unit beyond chance.
    assert all(np.abs(d[0].astype(int) - d[1].astype(int)).mean() > 10 for d in diverse)
    x = F.pad(random_images(), [12] * 4, value=0.5)
    with torch.no_grad():
        chance = net.features[:4](x).mean((2, 3))[:, units].numpy()
    # (Diversity costs some objective, as in lucid: most, not all, beat the best of 64 random images.)
    assert (obj_diverse > chance.max(0)[:, None]).mean() >= 0.75
    # The batch of 12 images holds 3 whole sets; splitting sets across batches gives the same sets.
    again = render_units(net, layer, units, diversity_weight=30.0, **{**common, "batch_size": 4})[0]
    assert np.abs(again.astype(int) - diverse.astype(int)).max() <= 2


def test_direction_objective_matches_formula_and_render_directions_raises_it(net):
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(3, N_CH, 5, 5, generator=g)
    v = torch.randn(3, N_CH, generator=g)
    got = direction_objective(v, cossim_pow=2)(acts)
    h = acts[:, :, 2, 2]
    dot = (h * v).sum(1) / v.norm(dim=1)
    cos = dot / (h.norm(dim=1) + 1e-4)
    torch.testing.assert_close(got, dot * cos.clamp_min(0.1) ** 2)
    # Scaling a direction does not change its objective; the pure dot is cossim_pow 0.
    torch.testing.assert_close(direction_objective(v * 7, cossim_pow=2)(acts), got)
    torch.testing.assert_close(direction_objective(v, cossim_pow=0)(acts), dot)
    with pytest.raises(ValueError, match="zero"):
        direction_objective(torch.zeros(1, N_CH))

    # Rendering: each image raises its own direction's objective above the grey start and above chance.
    dirs = torch.randn(4, N_CH, generator=g).abs()  # post-ReLU-like directions
    dirs[:, : N_CH // 2] *= torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    dirs[:, N_CH // 2 :] *= torch.tensor([[0.0], [1.0], [0.0], [1.0]])
    kw = dict(image_size=SIZE, lr=LR, mode="channel", batch_size=4, return_objective=True)
    _, start = render_directions(net, TARGET, dirs, steps=0, **kw)
    images, final = render_directions(net, TARGET, dirs, steps=STEPS, **kw)
    assert images.shape == (4, SIZE, SIZE, 3)
    assert (final > start).all()
    x = F.pad(random_images(), [12] * 4, value=0.5)
    with torch.no_grad():
        chance = torch.stack(
            [
                direction_objective(d[None].expand(len(x), -1), mode="channel")(net.features[:3](x))
                for d in dirs
            ],
            dim=1,
        ).numpy()
    assert (final > chance.max(0)).all()
    with pytest.raises(ValueError, match="dimensions"):
        render_directions(net, TARGET, dirs[:, :5], steps=1, image_size=SIZE)
    assert _all_hooks(net) == []


def test_unit_maxima_matches_direct_computation(net):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(5, SIZE, SIZE, 3, generator=g) * 255).to(torch.uint8).numpy()
    sae = random_sae()
    W, b, bd = sae.tensors("cpu")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        acts = net.features[:3](x)
    raw = unit_maxima(net, TARGET, images, batch_size=2)
    np.testing.assert_allclose(raw, acts.flatten(2).amax(2).numpy(), rtol=1e-5, atol=1e-6)
    encode = lambda v: torch.relu((v - bd) @ W + b)  # noqa: E731
    feats = unit_maxima(net, TARGET, images, encode=encode)
    ref = torch.relu(
        torch.einsum("bchw,cf->bfhw", acts - bd[None, :, None, None], W) + b[None, :, None, None]
    )
    np.testing.assert_allclose(feats, ref.flatten(2).amax(2).numpy(), rtol=1e-4, atol=1e-5)
    assert unit_maxima(net, TARGET, images, size=16).shape == (5, N_CH)
    assert _all_hooks(net) == [] and all(p.grad is None for p in net.parameters())


def test_precision_argument(net):
    # bf16 autocast is for GPUs; on a CPU the run is fp32 and identical to precision="fp32".
    kw = dict(image_size=SIZE, steps=3, device="cpu")
    assert np.array_equal(
        render_units(net, TARGET, [0, 1], precision="bf16", **kw),
        render_units(net, TARGET, [0, 1], precision="fp32", **kw),
    )
    with pytest.raises(ValueError, match="precision"):
        render_units(net, TARGET, [0], precision="fp16", **kw)
