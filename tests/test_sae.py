"""Tests of atlasgen.sae on small synthetic data with a known sparse dictionary (real torch, CPU)."""

import copy
import json
import time

import numpy as np
import pytest
import torch

from atlasgen.sae import (
    ARCHITECTURES,
    SparseAutoencoder,
    evaluate_sae,
    fold_scale,
    save_sae,
    train_sae,
)
from atlasgen.sae_formats import load_sae_any

D_IN, N_TRUE, N_ACTIVE, D_SAE = 32, 64, 3, 128


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls: one thread is fastest and immune to a busy machine (and keeps runs reproducible)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_data(n, seed=0, gain=1.0):
    """x = offset + sum of 3 of 64 unit directions with magnitudes in [0.5, 2], plus a little noise.
    The offset is non-negative and larger than the signal, like post-ReLU activations."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((N_TRUE, D_IN))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    offset = 2.0 * np.abs(rng.standard_normal(D_IN))
    chosen = rng.random((n, N_TRUE)).argsort(1)[:, :N_ACTIVE]
    magnitudes = rng.uniform(0.5, 2.0, (n, N_ACTIVE))
    x = offset + np.einsum("na,nad->nd", magnitudes, directions[chosen])
    x += 0.01 * rng.standard_normal((n, D_IN))
    return (gain * x).astype(np.float32), directions


@pytest.fixture(scope="module")
def data():
    x, directions = make_data(24_000)
    return x[:20_000], x[20_000:], directions


def recovered_fraction(sae, directions, min_cos=0.9):
    W_dec = sae.W_dec.detach().numpy()
    W_dec = W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True)
    return float(np.mean((directions @ W_dec.T).max(1) > min_cos))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_recovers_known_dictionary(data, architecture):
    train, heldout, directions = data
    settings = dict(k=N_ACTIVE) if architecture != "relu" else dict(l1_coefficient=1.0)
    steps = 600
    calls = []
    sae, stats = train_sae(
        train,
        d_sae=D_SAE,
        architecture=architecture,
        steps=steps,
        batch_size=256,
        lr=2e-3,
        progress=calls.append,
        **settings,
    )
    metrics = evaluate_sae(sae, heldout)

    assert calls == list(range(steps))
    assert stats["steps"] == steps and stats["seconds"] > 0 and stats["samples_per_second"] > 0
    assert np.isfinite(stats["loss"])
    assert metrics["n_vectors"] == len(heldout)
    # the trivial baseline (predict the mean) has fvu 1
    assert metrics["fvu"] < (0.2 if architecture != "relu" else 0.3)
    assert metrics["explained_variance"] == pytest.approx(1 - metrics["fvu"])
    assert metrics["cosine"] > 0.98
    assert 0.9 < metrics["relative_reconstruction_bias"] < 1.1
    assert recovered_fraction(sae, directions) >= 0.8
    # a trained model has unit-norm decoder rows whatever the architecture
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(D_SAE), atol=1e-4)
    if architecture == "topk":
        assert metrics["l0"] == pytest.approx(N_ACTIVE)
    if architecture == "batchtopk":
        assert stats["train_l0"] == pytest.approx(N_ACTIVE, rel=0.01)
        assert float(sae.threshold) > 0
        assert 0.6 * N_ACTIVE < metrics["l0"] < 1.5 * N_ACTIVE  # the learned threshold gives about k
    else:
        assert float(sae.threshold) == 0.0


def test_same_seed_same_weights(data):
    train = data[0]
    kwargs = dict(d_sae=D_SAE, architecture="batchtopk", k=N_ACTIVE, steps=100, batch_size=128)
    a, _ = train_sae(train, seed=3, **kwargs)
    b, _ = train_sae(train, seed=3, **kwargs)
    c, _ = train_sae(train, seed=4, **kwargs)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name
    assert not torch.equal(a.W_dec, c.W_dec)


def test_save_load_round_trip(data, tmp_path):
    train, heldout, _ = data
    sae, _ = train_sae(train, d_sae=D_SAE, architecture="batchtopk", k=N_ACTIVE, steps=150, batch_size=128)
    metrics = evaluate_sae(sae, heldout)
    save_sae(sae, tmp_path / "a", metrics)

    loaded = load_sae_any(tmp_path / "a")
    x = torch.from_numpy(heldout[:500])
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), sae.encode(x))
        assert torch.equal(loaded(x), sae(x))
    assert (loaded.architecture, loaded.d_in, loaded.d_sae, loaded.k) == ("batchtopk", D_IN, D_SAE, N_ACTIVE)

    with np.load(tmp_path / "a" / "sae.npz") as arrays:
        shapes = {name: (arrays[name].shape, arrays[name].dtype) for name in arrays.files}
    assert shapes == {
        "W_enc": ((D_IN, D_SAE), np.float32),
        "b_enc": ((D_SAE,), np.float32),
        "W_dec": ((D_SAE, D_IN), np.float32),
        "b_dec": ((D_IN,), np.float32),
        "threshold": ((), np.float32),
    }
    cfg = json.loads((tmp_path / "a" / "cfg.json").read_text())
    assert cfg["architecture"] == "batchtopk" and cfg["d_sae"] == D_SAE and cfg["format_version"] == 2
    assert cfg["origin"] == "trained" and cfg["k"] == loaded.k and cfg["decoder_unit_norm"] is True
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["n_vectors"] == len(heldout)

    time.sleep(1.1)  # a zip timestamp would now differ
    save_sae(loaded, tmp_path / "b", evaluate_sae(loaded, heldout))
    for name in ("sae.npz", "cfg.json", "metrics.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_float16_memmap_input(data, tmp_path):
    train, heldout, _ = data
    memmap = np.lib.format.open_memmap(tmp_path / "shard.npy", mode="w+", dtype=np.float16, shape=train.shape)
    memmap[:] = train
    memmap.flush()
    memmap = np.load(tmp_path / "shard.npy", mmap_mode="r")

    kwargs = dict(d_sae=D_SAE, architecture="topk", k=N_ACTIVE, steps=100, batch_size=256, seed=1)
    from_memmap, _ = train_sae(memmap, **kwargs)
    from_array, _ = train_sae(np.asarray(memmap, dtype=np.float32), **kwargs)
    from_tensor, _ = train_sae(torch.from_numpy(np.asarray(memmap, dtype=np.float32)), **kwargs)
    assert torch.equal(from_memmap.W_dec, from_array.W_dec)  # fp16 rows are read and widened identically
    assert torch.equal(from_memmap.W_dec, from_tensor.W_dec)

    heldout16 = np.lib.format.open_memmap(
        tmp_path / "heldout.npy", mode="w+", dtype=np.float16, shape=heldout.shape
    )
    heldout16[:] = heldout
    metrics = evaluate_sae(from_memmap, heldout16, batch_size=1000)
    assert metrics["n_vectors"] == len(heldout) and metrics["fvu"] < 0.8  # 100 steps: learning, not done


def random_sae(architecture, d_in=5, d_sae=7, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    sae = SparseAutoencoder(d_in, d_sae, architecture, k)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        sae.b_enc += 0.5  # make most latents fire
        sae.threshold.fill_(0.4 if architecture == "batchtopk" else 0.0)
    return sae


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_evaluate_matches_numpy(architecture):
    sae = random_sae(architecture)
    x = np.random.default_rng(1).standard_normal((13, 5)).astype(np.float32) + 3.0
    metrics = evaluate_sae(sae, x, batch_size=4)  # several batches, the last one partial

    with torch.no_grad():
        f = sae.encode(torch.from_numpy(x)).numpy().astype(np.float64)
        x_hat = sae(torch.from_numpy(x)).numpy().astype(np.float64)
    x = x.astype(np.float64)
    fvu = ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    density = (f > 0).mean(0)
    expected = {
        "n_vectors": 13,
        "fvu": fvu,
        "explained_variance": 1 - fvu,
        "mse": ((x - x_hat) ** 2).sum(1).mean(),
        "l0": (f > 0).sum(1).mean(),
        "l0_std": (f > 0).sum(1).std(),
        "dead_fraction": (density == 0).mean(),
        "dense_fraction": (density > 1e-2).mean(),
        "dense_fraction_1e-1": (density > 1e-1).mean(),
        "cosine": np.mean((x * x_hat).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(x_hat, axis=1)),
        "l2_ratio": np.mean(np.linalg.norm(x_hat, axis=1) / np.linalg.norm(x, axis=1)),
        "relative_reconstruction_bias": (x_hat**2).sum() / (x * x_hat).sum(),
    }
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-5, abs=1e-9), name
    assert sum(metrics["density_log10_hist"]) == sae.d_sae
    assert metrics["density_log10_hist"][0] == int((density == 0).sum())
    if architecture == "topk":
        assert metrics["l0"] == 2
    if architecture == "batchtopk":
        assert (f[f > 0] > 0.4).all() and metrics["l0"] < (f > 0).shape[1]  # JumpReLU at the threshold


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_fold_scale_is_exact(architecture):
    """A model trained on x * scale, folded, computes the same thing on raw x (codes in raw units)."""
    scaled = random_sae(architecture, d_in=6, d_sae=9, k=3, seed=2)
    with torch.no_grad():
        if architecture != "relu":
            scaled.W_dec /= scaled.W_dec.norm(dim=1, keepdim=True)  # as training leaves it
        scaled.threshold.fill_(0.4 if architecture == "batchtopk" else 0.0)
    scale = 7.5
    raw = copy.deepcopy(scaled)
    fold_scale(raw, scale)

    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(3)) + 1.0
    norms = scaled.W_dec.norm(dim=1).detach()
    with torch.no_grad():
        assert torch.allclose(raw(x), scaled(x * scale) / scale, atol=1e-5)
        assert torch.allclose(raw.encode(x), scaled.encode(x * scale) * norms / scale, atol=1e-5)
        assert torch.allclose(raw.encode_pre(x), scaled.encode_pre(x * scale) * norms / scale, atol=1e-5)
    assert torch.allclose(raw.W_dec.norm(dim=1), torch.ones(9), atol=1e-5)
    assert float(raw.threshold) == pytest.approx(float(scaled.threshold) / scale)


def test_raw_units_end_to_end():
    """Activations with a large scale and offset: the returned model reconstructs them as they are,
    and training is equivariant to the global scale (codes scale with the data, W_dec does not).
    (Only up to float rounding, which Adam and top-k choices amplify in longer runs: keep it short.)"""
    x, _ = make_data(12_000, seed=5)
    kwargs = dict(d_sae=D_SAE, architecture="batchtopk", k=N_ACTIVE, steps=100, batch_size=256, lr=2e-3)
    small, stats_small = train_sae(x, **kwargs)
    large, stats_large = train_sae(x * 1000.0, **kwargs)

    heldout = 1000.0 * make_data(2000, seed=5)[0]  # same dictionary and offset, new samples
    metrics = evaluate_sae(large, heldout)
    assert metrics["fvu"] < 0.8 and 0.9 < metrics["l2_ratio"] < 1.1
    with torch.no_grad():
        x_large = torch.from_numpy(heldout)
        relative_error = (large(x_large) - x_large).norm(dim=1) / x_large.norm(dim=1)
        assert relative_error.mean() < 0.2  # unfolded weights would be off by ~1000x

        assert stats_large["scale"] == pytest.approx(stats_small["scale"] / 1000.0)
        assert torch.allclose(large.W_dec, small.W_dec, atol=1e-4)
        assert torch.allclose(large.b_dec, 1000.0 * small.b_dec, rtol=1e-4, atol=1e-2)
        assert float(large.threshold) > 0
        assert float(large.threshold) == pytest.approx(1000.0 * float(small.threshold), rel=1e-4)
        codes_large, codes_small = large.encode(x_large), 1000.0 * small.encode(x_large / 1000.0)
        assert torch.allclose(codes_large, codes_small, rtol=1e-3, atol=1.0)
        assert torch.allclose(large(x_large), 1000.0 * small(x_large / 1000.0), rtol=1e-3, atol=1.0)


def test_rejects_bad_settings(data):
    with pytest.raises(ValueError):
        SparseAutoencoder(8, 16, "gated")
    with pytest.raises(ValueError):
        SparseAutoencoder(8, 16, "topk", k=17)
    with pytest.raises(ValueError):
        train_sae(data[0], d_sae=16, steps=1, autocast_bf16=True, device="cpu")
    with pytest.raises(ValueError):
        train_sae(data[0][0], d_sae=16, steps=1)


def test_training_resumes_from_a_checkpoint_with_identical_weights(data, tmp_path):
    """A run stopped after a checkpoint and restarted ends with the weights of an uninterrupted run."""
    train, _, _ = data
    kwargs = dict(d_sae=D_SAE, architecture="batchtopk", k=N_ACTIVE, steps=120, batch_size=64, seed=5)
    reference, _ = train_sae(train, **kwargs)
    ckpt = tmp_path / "checkpoint.pt"

    class Stop(Exception):
        pass

    def stop_after(step):
        if step == 90:  # after the checkpoint of step 80 was written
            raise Stop

    with pytest.raises(Stop):
        train_sae(train, checkpoint=ckpt, checkpoint_every=40, progress=stop_after, **kwargs)
    assert ckpt.exists() and torch.load(ckpt, weights_only=False)["step"] == 80
    resumed, stats = train_sae(train, checkpoint=ckpt, checkpoint_every=40, **kwargs)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


@pytest.mark.parametrize("architecture", ["batchtopk", "topk"])
def test_sparse_training_step_equals_the_dense_formulation(architecture):
    """The TopK family's sparse step (dense encoder without autograd, gradient only through the chosen
    latents, embedding-bag decoder, AuxK over dead columns) gives the loss and gradients of the plain
    dense formulation: codes = top-k of relu(pre), x_hat = codes @ W_dec + b_dec, Gao's AuxK."""
    from contextlib import nullcontext

    from atlasgen.sae import AUXK_ALPHA, _BatchTopKSelector, _topk_family_step, _WholeBatch, auxk_loss

    torch.manual_seed(0)
    b, d, s, k, k_aux = 24, 16, 64, 3, 8
    x = torch.randn(b, d) + 1.0
    sae = SparseAutoencoder(d, s, architecture, k)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    enc_t = torch.nn.Parameter(sae.W_enc.detach().T.contiguous())
    since = torch.zeros(s, dtype=torch.long)
    since[::3] = 10_000  # a third of the latents are dead: AuxK is active
    selector = _BatchTopKSelector()
    selector.guess = 0.05  # exercise the cut-off path (still exact)
    x_hat, vals, cols, _, since_after, aux = _topk_family_step(
        x, sae, enc_t, architecture, k, _WholeBatch(b, selector), since.clone(), 1000, k_aux, nullcontext()
    )
    loss = (x - x_hat).pow(2).sum(-1).mean() + AUXK_ALPHA * aux
    loss.backward()
    sparse_grads = [
        enc_t.grad.T.clone(),
        sae.b_enc.grad.clone(),
        sae.W_dec.grad.clone(),
        sae.b_dec.grad.clone(),
    ]

    ref = SparseAutoencoder(d, s, architecture, k)
    ref.load_state_dict(sae.state_dict())
    acts = torch.relu(ref.encode_pre(x))
    if architecture == "batchtopk":
        flat = acts.flatten()
        top = flat.topk(k * b)
        codes = torch.zeros_like(flat).scatter(0, top.indices, top.values).view_as(acts)
    else:
        top = acts.topk(k, dim=1)
        codes = torch.zeros_like(acts).scatter(1, top.indices, top.values)
    ref_hat = codes @ ref.W_dec + ref.b_dec
    fired = (codes > 0).any(0)
    dead = torch.where(fired, 0, since + b) >= 1000
    ref_aux = auxk_loss(ref, acts, dead, (x - ref_hat).detach(), k_aux)
    ref_loss = (x - ref_hat).pow(2).sum(-1).mean() + AUXK_ALPHA * ref_aux
    ref_loss.backward()

    assert float(aux.detach()) > 0 and torch.allclose(aux, ref_aux, rtol=1e-5)
    assert torch.allclose(x_hat, ref_hat, atol=1e-5)
    assert torch.equal(since_after, torch.where(fired, 0, since + b))
    for got, want, name in zip(
        sparse_grads,
        [ref.W_enc.grad, ref.b_enc.grad, ref.W_dec.grad, ref.b_dec.grad],
        ["W_enc", "b_enc", "W_dec", "b_dec"],
    ):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), name
