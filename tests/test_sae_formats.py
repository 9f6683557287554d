"""Tests of atlasgen.sae_formats on real files written here (SAELens layout, safetensors, torch, npz)."""

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as save_safetensors_np
from safetensors.torch import load_file as load_safetensors

from atlasgen.sae import SparseAutoencoder, save_sae
from atlasgen.sae_formats import (
    JumpReLUSAE,
    SAEFormatError,
    load_external_sae,
    load_sae_any,
    save_saelens,
)

D_IN, D_SAE, K = 12, 40, 5


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_weights(rng, d_in=D_IN, d_sae=D_SAE, unit=False):
    """Float32 SAELens-oriented weights; decoder rows not unit norm unless asked."""
    W_dec = rng.normal(size=(d_sae, d_in)).astype(np.float32)
    W_dec *= rng.uniform(0.3, 2.0, size=(d_sae, 1)).astype(np.float32)
    if unit:
        W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
    return {
        "W_enc": (W_dec.T + 0.3 * rng.normal(size=(d_in, d_sae))).astype(np.float32),
        "W_dec": W_dec.astype(np.float32),
        "b_enc": (-0.2 + 0.1 * rng.normal(size=d_sae)).astype(np.float32),
        "b_dec": (1.0 + 0.5 * rng.normal(size=d_in)).astype(np.float32),
    }


def inputs(rng, n=64, d_in=D_IN):
    return (1.0 + rng.normal(size=(n, d_in))).astype(np.float32)


# numpy references of SAELens' inference forward passes (float64)


def ref_pre(x, w, apply_b_dec_to_input=True, rescale=False):
    x = x.astype(np.float64)
    sae_in = x - w["b_dec"] if apply_b_dec_to_input else x
    pre = sae_in @ w["W_enc"].astype(np.float64) + w["b_enc"]
    if rescale:
        pre = pre * np.linalg.norm(w["W_dec"].astype(np.float64), axis=1)
    return pre


def ref_decode(f, w, rescale=False):
    W_dec = w["W_dec"].astype(np.float64)
    if rescale:
        f = f / np.linalg.norm(W_dec, axis=1)
    return f @ W_dec + w["b_dec"]


def ref_jumprelu(x, w, threshold, apply_b_dec_to_input=True):
    pre = ref_pre(x, w, apply_b_dec_to_input)
    f = np.maximum(pre, 0) * (pre > threshold)
    return f, ref_decode(f, w)


def ref_topk(x, w, k, rescale=False):
    pre = ref_pre(x, w, rescale=rescale)
    idx = np.argsort(-pre, axis=1)[:, :k]
    f = np.zeros_like(pre)
    np.put_along_axis(f, idx, np.maximum(np.take_along_axis(pre, idx, 1), 0), 1)
    return f, ref_decode(f, w, rescale)


def ref_relu(x, w):
    f = np.maximum(ref_pre(x, w), 0)
    return f, ref_decode(f, w)


def ours(sae, x):
    with torch.no_grad():
        f = sae.encode(torch.from_numpy(x))
        return f.numpy().astype(np.float64), sae.decode(f).numpy().astype(np.float64)


def assert_matches(sae, x, reference):
    f, x_hat = ours(sae, x)
    f_ref, x_hat_ref = reference
    np.testing.assert_array_equal(f > 0, f_ref > 0)  # the same latents fire
    np.testing.assert_allclose(f, f_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_hat, x_hat_ref, rtol=1e-5, atol=1e-4)


def write_saelens(folder, cfg, tensors):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_safetensors_np(tensors, str(folder / "sae_weights.safetensors"))
    return folder


def saelens_cfg(architecture, **extra):
    return {
        "architecture": architecture,
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"hook_name": "blocks.3.hook_resid_post", "sae_lens_version": "6.5.0"},
        **extra,
    }


# -----------------------------------------------------------------------------
# SAELens folders written by hand


def test_saelens_jumprelu_per_latent_threshold(tmp_path, rng):
    w = random_weights(rng)
    threshold = rng.uniform(0.0, 0.8, size=D_SAE).astype(np.float32)
    folder = write_saelens(tmp_path / "sae", saelens_cfg("jumprelu"), {**w, "threshold": threshold})
    sae = load_external_sae(folder, d_in=D_IN)
    assert isinstance(sae, JumpReLUSAE) and sae.architecture == "batchtopk"
    assert sae.threshold.shape == (D_SAE,) and not sae.training
    x = inputs(rng)
    f_ref, _ = ref = ref_jumprelu(x, w, threshold)
    assert 0 < (f_ref > 0).mean() < 0.9  # the thresholds matter in this test
    assert_matches(sae, x, ref)
    info = sae.external_info
    assert info["format"] == "saelens" and info["threshold"] == "per-latent"
    assert info["codes_in_activation_units"] is False  # decoder rows of norm 0.3 .. 2 kept as they are
    assert any("not unit norm" in note for note in info["notes"])
    # the weights are taken as they are, not renormalised
    np.testing.assert_array_equal(sae.W_dec.detach().numpy(), w["W_dec"])
    # and written back as they are: the re-exported folder is the same model
    save_saelens(sae, tmp_path / "again")
    block = json.loads((tmp_path / "again" / "cfg.json").read_text())["atlasgen"]
    assert block["codes_in_activation_units"] is False and block["decoder_unit_norm"] is False
    assert block["architecture"] == "jumprelu" and block["origin"] == "saelens" and "k" not in block
    again = load_external_sae(tmp_path / "again", d_in=D_IN)
    with torch.no_grad():
        assert torch.equal(again(torch.from_numpy(x)), sae(torch.from_numpy(x)))


def test_saelens_jumprelu_equal_thresholds_give_plain_batchtopk(tmp_path, rng):
    w = random_weights(rng, unit=True)
    folder = write_saelens(
        tmp_path / "sae", saelens_cfg("jumprelu"), {**w, "threshold": np.full(D_SAE, 0.25, np.float32)}
    )
    sae = load_external_sae(folder, d_in=D_IN, k=8)
    assert type(sae) is SparseAutoencoder and sae.architecture == "batchtopk" and sae.k == 8
    assert sae.threshold.shape == () and float(sae.threshold) == 0.25
    assert (
        sae.external_info["threshold"] == "global" and sae.external_info["codes_in_activation_units"] is True
    )
    x = inputs(rng)
    assert_matches(sae, x, ref_jumprelu(x, w, 0.25))


@pytest.mark.parametrize("rescale", [False, True])
def test_saelens_topk(tmp_path, rng, rescale):
    w = random_weights(rng)
    folder = write_saelens(
        tmp_path / "sae", saelens_cfg("topk", k=K, rescale_acts_by_decoder_norm=rescale), w
    )
    sae = load_external_sae(
        folder, d_in=D_IN, architecture="relu", k=99
    )  # cfg.json decides, not the arguments
    assert sae.architecture == "topk" and sae.k == K
    x = inputs(rng)
    assert_matches(sae, x, ref_topk(x, w, K, rescale=rescale))
    assert (
        sae.external_info["codes_in_activation_units"] is rescale
    )  # the rescale fold makes the rows unit norm


def test_saelens_pre_6_topk_and_standard(tmp_path, rng):
    w = random_weights(rng)
    old = {
        "d_in": D_IN,
        "d_sae": D_SAE,
        "architecture": "standard",
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": K},
        "hook_point": "blocks.0.hook_resid_pre",
        "normalize_activations": False,
    }
    sae = load_external_sae(write_saelens(tmp_path / "old_topk", old, w), d_in=D_IN)
    x = inputs(rng)
    assert sae.architecture == "topk" and sae.k == K
    assert_matches(sae, x, ref_topk(x, w, K))
    old = {"d_in": D_IN, "d_sae": D_SAE, "architecture": "standard", "activation_fn_str": "relu"}
    sae = load_external_sae(write_saelens(tmp_path / "old_relu", old, w), d_in=D_IN)
    assert sae.architecture == "relu"
    assert_matches(sae, x, ref_relu(x, w))


def test_saelens_finetuning_scaling_factor_is_folded(tmp_path, rng):
    w = random_weights(rng)
    scale = rng.uniform(0.5, 1.5, size=D_SAE).astype(np.float32)
    cfg = {"d_in": D_IN, "d_sae": D_SAE, "architecture": "standard", "finetuning_scaling_factor": True}
    sae = load_external_sae(write_saelens(tmp_path / "sae", cfg, {**w, "scaling_factor": scale}), d_in=D_IN)
    x = inputs(rng)
    f = np.maximum(ref_pre(x, w), 0)
    assert_matches(sae, x, (f, (f * scale) @ w["W_dec"].astype(np.float64) + w["b_dec"]))


@pytest.mark.parametrize("architecture", ["jumprelu", "standard"])
def test_apply_b_dec_to_input_false_is_exact(tmp_path, rng, architecture):
    w = random_weights(rng)
    threshold = rng.uniform(0.0, 0.8, size=D_SAE).astype(np.float32)
    tensors = {**w, "threshold": threshold} if architecture == "jumprelu" else w
    folder = write_saelens(tmp_path / "sae", saelens_cfg(architecture, apply_b_dec_to_input=False), tensors)
    sae = load_external_sae(folder, d_in=D_IN)
    x = inputs(rng)
    # the pre-activation is x @ W_enc + b_enc, although atlasgen's model subtracts b_dec first
    with torch.no_grad():
        pre = sae.encode_pre(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(pre, ref_pre(x, w, apply_b_dec_to_input=False), rtol=1e-5, atol=1e-5)
    assert (
        np.abs(ref_pre(x, w) - ref_pre(x, w, apply_b_dec_to_input=False)).max() > 0.1
    )  # the fold matters here
    thr = threshold if architecture == "jumprelu" else 0.0
    assert_matches(sae, x, ref_jumprelu(x, w, thr, apply_b_dec_to_input=False))
    np.testing.assert_array_equal(sae.b_dec.detach().numpy(), w["b_dec"])
    assert any("apply_b_dec_to_input" in note for note in sae.external_info["notes"])


def test_saelens_log_threshold_and_weights_file_path(tmp_path, rng):
    w = random_weights(rng)
    threshold = rng.uniform(0.05, 0.8, size=D_SAE).astype(np.float32)
    folder = write_saelens(
        tmp_path / "sae", saelens_cfg("jumprelu"), {**w, "log_threshold": np.log(threshold)}
    )
    # pointing at sae_weights.safetensors itself still reads the cfg.json beside it
    sae = load_external_sae(folder / "sae_weights.safetensors", d_in=D_IN, architecture="relu")
    assert isinstance(sae, JumpReLUSAE)
    np.testing.assert_allclose(sae.threshold.numpy(), threshold, rtol=1e-6)


# -----------------------------------------------------------------------------
# save_saelens round trips


def trained_looking_sae(architecture, seed=0, d_in=D_IN, d_sae=D_SAE, k=K, per_latent=False):
    """Random weights with atlasgen's conventions: unit decoder rows, W_enc ~ W_dec^T, b_dec ~ mean."""
    g = torch.Generator().manual_seed(seed)
    sae = JumpReLUSAE(d_in, d_sae, k) if per_latent else SparseAutoencoder(d_in, d_sae, architecture, k)
    with torch.no_grad():
        W_dec = torch.randn(d_sae, d_in, generator=g)
        sae.W_dec.copy_(W_dec / W_dec.norm(dim=1, keepdim=True))
        sae.W_enc.copy_(
            sae.W_dec.T * torch.empty(1, d_sae).uniform_(0.5, 1.5, generator=g)
            + 0.1 * torch.randn(d_in, d_sae, generator=g)
        )
        sae.b_enc.copy_(-0.1 * torch.rand(d_sae, generator=g))
        sae.b_dec.copy_(1 + 0.3 * torch.randn(d_in, generator=g))
        if per_latent:
            sae.threshold.copy_(0.5 * torch.rand(d_sae, generator=g))
        elif architecture == "batchtopk":
            sae.threshold.fill_(0.37)
    return sae.eval()


@pytest.mark.parametrize(
    "architecture,per_latent", [("batchtopk", False), ("batchtopk", True), ("topk", False), ("relu", False)]
)
def test_save_saelens_round_trip(tmp_path, rng, architecture, per_latent):
    sae = trained_looking_sae(architecture, per_latent=per_latent)
    save_saelens(sae, tmp_path / "a", hook_name="mixed5b")
    cfg = json.loads((tmp_path / "a" / "cfg.json").read_text())
    expected = {"batchtopk": "jumprelu", "topk": "topk", "relu": "standard"}[architecture]
    assert cfg["architecture"] == expected and cfg["d_in"] == D_IN and cfg["d_sae"] == D_SAE
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["dtype"] == "float32" and cfg["device"] == "cpu"
    described = "jumprelu" if per_latent else architecture
    assert cfg["metadata"]["hook_name"] == "mixed5b" and cfg["atlasgen"]["architecture"] == described
    assert cfg["atlasgen"]["origin"] == "trained" and ("k" in cfg["atlasgen"]) is (
        described != "relu" and described != "jumprelu"
    )
    if architecture == "topk":
        assert cfg["k"] == K
    tensors = load_safetensors(
        str(tmp_path / "a" / "sae_weights.safetensors")
    )  # the safetensors library reads it
    assert tensors["W_enc"].shape == (D_IN, D_SAE) and tensors["W_dec"].shape == (D_SAE, D_IN)
    if architecture == "batchtopk":
        assert tensors["threshold"].shape == (D_SAE,)
        torch.testing.assert_close(tensors["threshold"], sae.threshold.expand(D_SAE), rtol=0, atol=0)
    else:
        assert "threshold" not in tensors

    loaded = load_external_sae(tmp_path / "a", d_in=D_IN)
    assert type(loaded) is type(sae) and loaded.architecture == architecture
    assert loaded.description["architecture"] == described
    if described in ("topk", "batchtopk"):  # k means something only there
        assert loaded.k == sae.k
    x = torch.from_numpy(inputs(rng, n=256))
    with torch.no_grad():
        f, f2 = sae.encode(x), loaded.encode(x)
        assert torch.equal(f, f2) and (f > 0).any()
        assert torch.equal(sae.decode(f), loaded.decode(f2))
    # the reference semantics agree with the written files
    w = {name: tensors[name].numpy() for name in ("W_enc", "W_dec", "b_enc", "b_dec")}
    reference = {
        "batchtopk": lambda: ref_jumprelu(x.numpy(), w, tensors.get("threshold", torch.zeros(1)).numpy()),
        "topk": lambda: ref_topk(x.numpy(), w, K),
        "relu": lambda: ref_relu(x.numpy(), w),
    }[architecture]()
    assert_matches(loaded, x.numpy(), reference)

    # byte-identical: saving again, and saving the loaded model
    save_saelens(sae, tmp_path / "b", hook_name="mixed5b")
    save_saelens(loaded, tmp_path / "c", hook_name="mixed5b")
    for name in ("cfg.json", "sae_weights.safetensors"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()
    weights = "sae_weights.safetensors"
    assert (tmp_path / "c" / weights).read_bytes() == (tmp_path / "a" / weights).read_bytes()
    # the loaded model says where it came from; all else in cfg.json is the same
    first, again = (json.loads((tmp_path / d / "cfg.json").read_text()) for d in "ac")
    assert again["atlasgen"].pop("origin") == "saelens" and again["atlasgen"].pop("source_file") == "a"
    assert first["atlasgen"].pop("origin") == "trained"
    assert again == first


def test_per_latent_threshold_survives_save_sae(tmp_path, rng):
    """save_sae writes a JumpReLUSAE's vector threshold; load_sae_any reads it back (load_sae cannot)."""
    sae = trained_looking_sae("batchtopk", per_latent=True)
    save_sae(sae, tmp_path / "L")
    back = load_sae_any(tmp_path / "L")
    assert isinstance(back, JumpReLUSAE)
    x = torch.from_numpy(inputs(rng))
    with torch.no_grad():
        assert torch.equal(back(x), sae(x))
    plain = trained_looking_sae("topk")
    save_sae(plain, tmp_path / "P")
    back = load_sae_any(tmp_path / "P")
    assert type(back) is SparseAutoencoder and back.architecture == "topk"
    with torch.no_grad():
        assert torch.equal(back(x), plain(x))


# -----------------------------------------------------------------------------
# plain files


def test_plain_safetensors_with_custom_keys(tmp_path, rng):
    w = random_weights(rng)
    threshold = rng.uniform(0.0, 0.8, size=D_SAE).astype(np.float32)
    path = tmp_path / "custom.safetensors"
    save_safetensors_np(
        {
            "enc.w": w["W_enc"],
            "enc.b": w["b_enc"],
            "dec.w": w["W_dec"],
            "dec.b": w["b_dec"],
            "thr": threshold,
            "step": np.array([10], np.float32),
        },
        str(path),
    )
    keys = {"W_enc": "enc.w", "b_enc": "enc.b", "W_dec": "dec.w", "b_dec": "dec.b", "threshold": "thr"}
    sae = load_external_sae(path, d_in=D_IN, keys=keys, architecture="batchtopk", k=K)
    assert isinstance(sae, JumpReLUSAE) and sae.external_info["format"] == "safetensors"
    x = inputs(rng)
    assert_matches(sae, x, ref_jumprelu(x, w, threshold))


def test_plain_safetensors_without_threshold_is_relu_encode(tmp_path, rng):
    w = random_weights(rng)
    path = tmp_path / "w.safetensors"
    save_safetensors_np(w, str(path))
    sae = load_external_sae(path, d_in=D_IN)
    assert sae.architecture == "batchtopk" and float(sae.threshold) == 0.0
    x = inputs(rng)
    assert_matches(sae, x, ref_relu(x, w))
    sae = load_external_sae(path, d_in=D_IN, architecture="topk", k=K)
    assert_matches(sae, x, ref_topk(x, w, K))


def test_torch_state_dict_with_linear_layers(tmp_path, rng):
    torch.manual_seed(0)
    encoder, decoder = torch.nn.Linear(D_IN, D_SAE), torch.nn.Linear(D_SAE, D_IN)
    path = tmp_path / "sae.pt"
    torch.save(
        {
            "state_dict": {
                "encoder.weight": encoder.weight.data,
                "encoder.bias": encoder.bias.data,
                "decoder.weight": decoder.weight.data,
                "decoder.bias": decoder.bias.data,
            },
            "step": 1000,
        },
        path,
    )
    keys = {
        "W_enc": "encoder.weight",
        "b_enc": "encoder.bias",
        "W_dec": "decoder.weight",
        "b_dec": "decoder.bias",
    }
    sae = load_external_sae(path, d_in=D_IN, keys=keys, architecture="relu", apply_b_dec_to_input=False)
    assert sae.W_enc.shape == (D_IN, D_SAE) and sae.W_dec.shape == (D_SAE, D_IN)
    assert any("transposed" in note for note in sae.external_info["notes"])
    x = torch.from_numpy(inputs(rng))
    with torch.no_grad():
        f_ref = torch.relu(encoder(x))
        torch.testing.assert_close(sae.encode(x), f_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sae(x), decoder(f_ref), rtol=1e-5, atol=1e-5)


def test_npz_params(tmp_path, rng):
    """Gemma-Scope-style params.npz: our names, per-latent threshold."""
    w = random_weights(rng)
    threshold = rng.uniform(0.0, 0.8, size=D_SAE).astype(np.float32)
    np.savez(tmp_path / "params.npz", **w, threshold=threshold)
    sae = load_external_sae(tmp_path / "params.npz", d_in=D_IN, apply_b_dec_to_input=False)
    x = inputs(rng)
    assert_matches(sae, x, ref_jumprelu(x, w, threshold, apply_b_dec_to_input=False))


def test_square_sae_keeps_our_orientation(tmp_path, rng):
    w = random_weights(rng, d_sae=D_IN)
    path = tmp_path / "square.safetensors"
    save_safetensors_np(w, str(path))
    sae = load_external_sae(path, d_in=D_IN, architecture="relu")
    np.testing.assert_array_equal(sae.W_enc.detach().numpy(), w["W_enc"])
    np.testing.assert_array_equal(sae.W_dec.detach().numpy(), w["W_dec"])


# -----------------------------------------------------------------------------
# errors


def error_of(path, **kwargs) -> str:
    with pytest.raises(SAEFormatError) as info:
        load_external_sae(path, **{"d_in": D_IN, **kwargs})
    message = str(info.value)
    assert "\n" not in message and "Fix:" in message
    return message


def test_missing_file(tmp_path):
    message = error_of(tmp_path / "nope.safetensors")
    assert "nope.safetensors" in message and "no such file" in message


def test_truncated_safetensors(tmp_path, rng):
    path = tmp_path / "w.safetensors"
    save_safetensors_np(random_weights(rng), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = error_of(path)
    assert f"cannot read {path}" in message and "truncated or not a safetensors file" in message
    path.write_bytes(b"not a safetensors file at all")
    assert "truncated or not a safetensors file" in error_of(path)


def test_truncated_or_pickled_torch_file(tmp_path, rng):
    path = tmp_path / "sae.pt"
    torch.save({k: torch.from_numpy(v) for k, v in random_weights(rng).items()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = error_of(path)
    assert f"cannot read {path}" in message and "truncated or not a torch state dict" in message
    torch.save(torch.nn.Linear(2, 2), path)  # a pickled module, not a state dict
    assert "state_dict()" in error_of(path)


def test_missing_key_lists_present_keys(tmp_path, rng):
    w = random_weights(rng)
    path = tmp_path / "w.safetensors"
    save_safetensors_np(
        {
            "encoder.weight": w["W_enc"].T.copy(),
            "encoder.bias": w["b_enc"],
            "W_dec": w["W_dec"],
            "b_dec": w["b_dec"],
        },
        str(path),
    )
    message = error_of(path)
    assert "'W_enc'" in message and "encoder.weight (40, 12)" in message and "encoder.bias (40,)" in message
    assert "keys" in message and "W_enc: encoder.weight" in message and "b_enc: encoder.bias" in message


def test_saelens_jumprelu_without_threshold(tmp_path, rng):
    folder = write_saelens(tmp_path / "sae", saelens_cfg("jumprelu"), random_weights(rng))
    message = error_of(folder)
    assert "'threshold'" in message and "jumprelu" in message and "W_enc (12, 40)" in message


def test_wrong_d_in(tmp_path, rng):
    path = tmp_path / "w.safetensors"
    save_safetensors_np(random_weights(rng), str(path))
    message = error_of(path, d_in=16)
    assert "W_enc has shape (12, 40) but the layer has d_in=16 channels" in message
    folder = write_saelens(tmp_path / "sae", saelens_cfg("topk", k=K), random_weights(rng))
    assert "d_in=12 but the layer has d_in=16" in error_of(folder, d_in=16)


def test_nan_weights(tmp_path, rng):
    w = random_weights(rng)
    w["W_dec"][3, 4] = np.nan
    w["b_enc"][0] = np.inf
    path = tmp_path / "w.safetensors"
    save_safetensors_np(w, str(path))
    message = error_of(path)
    assert "NaN" in message and "W_dec" in message and str(path) in message


def test_unsupported_saelens_configs(tmp_path, rng):
    w = random_weights(rng)
    assert "'gated' is not supported" in error_of(write_saelens(tmp_path / "g", saelens_cfg("gated"), w))
    folder = write_saelens(
        tmp_path / "n", saelens_cfg("topk", k=K, normalize_activations="expected_average_only_in"), w
    )
    assert "fold_activation_norm_scaling_factor" in error_of(folder)
    folder = write_saelens(tmp_path / "ln", saelens_cfg("topk", k=K, normalize_activations="layer_norm"), w)
    assert "layer_norm" in error_of(folder)


def test_threshold_with_threshold_free_architecture(tmp_path, rng):
    w = random_weights(rng)
    path = tmp_path / "w.safetensors"
    save_safetensors_np({**w, "threshold": np.full(D_SAE, 0.5, np.float32)}, str(path))
    assert "batchtopk" in error_of(path, architecture="relu")


# -----------------------------------------------------------------------------
# the weights a site publishes (site.sae_dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_published_weights_load_in_their_dtype(tmp_path, rng, dtype):
    from atlasgen.site.weights import SAELENS_WEIGHTS, projected_weight_bytes, published_sae
    from atlasgen.tensorfile import read_safetensors

    sae = trained_looking_sae("batchtopk", per_latent=True)
    art = tmp_path / "art"
    save_sae(sae, art, metrics={"l0": 5.0})
    save_saelens(sae, art / "saelens", hook_name="mixed5b")
    files = published_sae(art, dtype, "ab" * 32, "mixed5b")
    assert files == published_sae(art, dtype, "ab" * 32, "mixed5b")  # same weights, same bytes
    out = tmp_path / "site"
    out.mkdir()
    for name, data in files.items():
        (out / name).write_bytes(data)
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["dtype"] == dtype and cfg["architecture"] == "jumprelu"
    assert (
        cfg["atlasgen"]["published_dtype"] == dtype and cfg["atlasgen"]["float32_sae_npz_sha256"] == "ab" * 32
    )
    assert json.loads((out / "metrics.json").read_text()) == {"l0": 5.0}
    # the safetensors library (what SAELens reads with) sees the stored dtype and the shapes
    tensors = load_safetensors(str(out / SAELENS_WEIGHTS))
    torch_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
    assert all(t.dtype == torch_dtype for t in tensors.values())
    assert tensors["W_enc"].shape == (D_IN, D_SAE) and tensors["W_dec"].shape == (D_SAE, D_IN)
    for name in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold"):  # torch's rounding, bit for bit
        want = getattr(sae, name).detach().expand(tensors[name].shape).to(torch_dtype)
        assert torch.equal(tensors[name], want), name
        mine, _ = read_safetensors(out / SAELENS_WEIGHTS)
        assert np.array_equal(mine[name], want.float().numpy()), name
    size = (out / SAELENS_WEIGHTS).stat().st_size
    assert abs(size - projected_weight_bytes(D_IN, D_SAE, dtype)) <= 1024
    # atlasgen loads the published folder as an external SAE: codes of the rounded weights
    loaded = load_external_sae(out, d_in=D_IN)
    assert loaded.architecture == "batchtopk" and loaded.threshold.shape == (D_SAE,)
    x = torch.from_numpy(inputs(rng, n=128))
    with torch.no_grad():
        f, f2 = sae.encode(x), loaded.encode(x)
    if dtype == "float32":
        torch.testing.assert_close(f2, f, rtol=0, atol=0)
    else:
        both = (f > 0) & (f2 > 0)  # codes active under both: close up to the rounding of the weights
        rel = float(((f2 - f).abs()[both] / f[both].abs().clamp_min(1e-3)).median())
        assert rel <= (2e-2 if dtype == "bfloat16" else 3e-3), rel
        assert float(((f2 > 0) == (f > 0)).float().mean()) > 0.95
