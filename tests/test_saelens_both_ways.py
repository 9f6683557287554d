"""SAELens both ways, with the real library: atlasgen's SAEs load in sae_lens, SAELens's load in atlasgen,
the published folder of a built site loads in sae_lens as it is, and `atlasgen export-sae` writes it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

sae_lens = pytest.importorskip("sae_lens")

from atlasgen.cli import main  # noqa: E402
from atlasgen.sae import SparseAutoencoder  # noqa: E402
from atlasgen.sae_formats import JumpReLUSAE, load_external_sae, save_saelens  # noqa: E402
from atlasgen.saelens import SAELENS_FORMAT_VERSION  # noqa: E402

D_IN, D_SAE, K = 12, 40, 5
ATOL = 1e-6


def random_atlasgen_sae(architecture: str, per_latent: bool = False, seed: int = 0) -> SparseAutoencoder:
    """Random weights, decoder rows NOT unit norm (nothing may assume they are)."""
    g = torch.Generator().manual_seed(seed)
    sae = JumpReLUSAE(D_IN, D_SAE, K) if per_latent else SparseAutoencoder(D_IN, D_SAE, architecture, K)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=g) * 0.5)
        sae.b_enc.copy_(torch.randn(D_SAE, generator=g) * 0.1)
        sae.W_dec.copy_(torch.randn(D_SAE, D_IN, generator=g) * 0.4)
        sae.b_dec.copy_(torch.randn(D_IN, generator=g) * 0.1)
        if per_latent:
            sae.threshold.copy_(torch.rand(D_SAE, generator=g) * 0.6)
        elif architecture == "batchtopk":
            sae.threshold.fill_(0.3)
    return sae.eval()


def inputs(n: int = 256, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, D_IN, generator=torch.Generator().manual_seed(seed))


def assert_same(codes, codes_ref, recon, recon_ref):
    assert (codes_ref > 0).any() and (codes_ref == 0).any()  # sparsity rule exercised
    torch.testing.assert_close(codes, codes_ref, rtol=0, atol=ATOL)
    torch.testing.assert_close(recon, recon_ref, rtol=0, atol=ATOL)


# -----------------------------------------------------------------------------
# atlasgen -> SAELens


@pytest.mark.parametrize(
    "architecture,per_latent,saelens_arch",
    [
        ("batchtopk", False, "jumprelu"),
        ("batchtopk", True, "jumprelu"),
        ("topk", False, "topk"),
        ("relu", False, "standard"),
    ],
)
def test_atlasgen_sae_loads_in_saelens(tmp_path, architecture, per_latent, saelens_arch):
    ours = random_atlasgen_sae(architecture, per_latent)
    save_saelens(ours, tmp_path / "sae", hook_name="mixed5b")
    theirs = sae_lens.SAE.load_from_disk(tmp_path / "sae")
    assert theirs.cfg.architecture() == saelens_arch
    assert theirs.cfg.d_in == D_IN and theirs.cfg.d_sae == D_SAE
    assert theirs.cfg.metadata.hook_name == "mixed5b"
    assert theirs.cfg.metadata.sae_lens_version == SAELENS_FORMAT_VERSION
    assert sae_lens.__version__.split(".")[0] == SAELENS_FORMAT_VERSION.split(".")[0]
    if saelens_arch == "topk":
        assert theirs.cfg.k == K
    if saelens_arch == "jumprelu":
        torch.testing.assert_close(theirs.threshold.detach(), ours.threshold.expand(D_SAE), rtol=0, atol=0)
    x = inputs()
    with torch.no_grad():
        f, f_ref = theirs.encode(x), ours.encode(x)
        assert_same(f, f_ref, theirs.decode(f), ours.decode(f_ref))


# -----------------------------------------------------------------------------
# SAELens -> atlasgen


def _randomise(sae, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            scale = 0.6 if name == "threshold" else 0.4
            p.copy_(
                torch.rand(p.shape, generator=g) * scale
                if name == "threshold"
                else torch.randn(p.shape, generator=g) * scale
            )
    return sae.eval()


def _saelens_sae(kind: str):
    cfg = dict(d_in=D_IN, d_sae=D_SAE)
    if kind == "jumprelu":
        return _randomise(sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(**cfg)))
    if kind == "standard":
        return _randomise(sae_lens.StandardSAE(sae_lens.StandardSAEConfig(**cfg)))
    if kind == "topk":
        return _randomise(sae_lens.TopKSAE(sae_lens.TopKSAEConfig(k=K, **cfg)))
    sae = _randomise(sae_lens.BatchTopKTrainingSAE(sae_lens.BatchTopKTrainingSAEConfig(k=K, **cfg)))
    sae.topk_threshold.fill_(0.25)
    return sae


# SAELens kind -> (atlasgen encode rule, described architecture, threshold)
SAELENS_KINDS = {
    "jumprelu": ("batchtopk", "jumprelu", "per-latent"),
    "standard": ("relu", "relu", "none"),
    "topk": ("topk", "topk", "none"),
    "batchtopk": ("batchtopk", "jumprelu", "global"),  # saved for inference as a JumpReLU SAE
}


@pytest.mark.parametrize("kind", sorted(SAELENS_KINDS))
def test_saelens_sae_loads_in_atlasgen(tmp_path, kind):
    theirs = _saelens_sae(kind)
    folder = tmp_path / "sae"
    (theirs.save_inference_model if kind == "batchtopk" else theirs.save_model)(folder)
    reference = sae_lens.SAE.load_from_disk(folder)  # what SAELens itself makes of the folder
    ours = load_external_sae(folder, d_in=D_IN)
    rule, described, threshold = SAELENS_KINDS[kind]
    assert ours.architecture == rule and ours.d_sae == D_SAE
    d = ours.description
    assert d["architecture"] == described and d["threshold"] == threshold and d["origin"] == "saelens"
    # measured: random decoder rows are not unit norm; SAELens folds BatchTopK's norms when it saves
    unit = kind == "batchtopk"
    assert d["decoder_unit_norm"] is unit and d["codes_in_activation_units"] is unit
    assert ("k" in d) is (described == "topk")
    if kind == "topk":
        assert ours.k == K and d["k"] == K
    if kind == "jumprelu":
        torch.testing.assert_close(ours.threshold, theirs.threshold.detach(), rtol=0, atol=0)
    if kind == "batchtopk":
        assert float(ours.threshold) == pytest.approx(0.25)
    x = inputs()
    with torch.no_grad():
        f, f_ref = ours.encode(x), reference.encode(x)
        assert_same(f, f_ref, ours.decode(f), reference.decode(f_ref))
    # and back: atlasgen's SAELens copy of it is the same model for SAELens, described the same
    save_saelens(ours, tmp_path / "again")
    again = sae_lens.SAE.load_from_disk(tmp_path / "again")
    block = json.loads((tmp_path / "again" / "cfg.json").read_text())["atlasgen"]
    assert block["architecture"] == described and block["origin"] == "saelens"
    with torch.no_grad():
        torch.testing.assert_close(again.encode(x), f_ref, rtol=0, atol=ATOL)


# -----------------------------------------------------------------------------
# the published site folder, and export-sae


def _published(site):
    manifest = json.loads((site / "manifest.json").read_text())
    entry = manifest["layers"]["mixed5b"]
    return (site / entry["sae_weights"]).parent, entry


def test_published_sae_loads_in_saelens_with_atlasgens_codes(tiny_build):
    _, _, site = tiny_build
    folder, entry = _published(site)
    theirs = sae_lens.SAE.load_from_disk(folder)  # as it is: float16, the site's default dtype
    assert theirs.cfg.architecture() == "jumprelu" and theirs.W_enc.dtype == torch.float16
    assert entry["sae"]["architecture"] == "batchtopk" and entry["sae"]["origin"] == "trained"
    assert entry["sae"]["k"] == 4 and entry["sae"]["threshold"] == "global"
    ours = load_external_sae(folder, d_in=theirs.cfg.d_in)
    assert ours.architecture == "batchtopk" and ours.k == 4  # k restored from the atlasgen block
    theirs = theirs.to(torch.float32)
    x = torch.randn(128, theirs.cfg.d_in, generator=torch.Generator().manual_seed(0)) * 2
    with torch.no_grad():
        f, f_ref = theirs.encode(x), ours.encode(x)
        assert (f_ref > 0).any()
        torch.testing.assert_close(f, f_ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(theirs.decode(f), ours.decode(f_ref), rtol=0, atol=1e-5)
    page = (site / "demonet" / "mixed5b" / "index.html").read_text()
    assert (
        "SAE from</th><td>trained by atlasgen" in page and "SAE threshold</th><td>one for all latents" in page
    )


def test_export_sae_from_site_and_cache_and_its_errors(tiny_build, tmp_path):
    folder, _, site = tiny_build
    published, _ = _published(site)
    want = {p.name: p.read_bytes() for p in published.iterdir()}
    run = CliRunner().invoke
    out = run(main, ["export-sae", str(site), "mixed5b", str(tmp_path / "a")])
    assert out.exit_code == 0, out.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == want
    # from the cache: the same bytes the site published (float16 by default)
    out = run(main, ["export-sae", str(folder / ".atlasgen"), "mixed5b", str(tmp_path / "b")])
    assert out.exit_code == 0, out.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()} == want
    out = run(
        main, ["export-sae", str(folder / ".atlasgen"), "mixed5b", str(tmp_path / "c"), "--dtype", "float32"]
    )
    assert out.exit_code == 0, out.output
    assert sae_lens.SAE.load_from_disk(tmp_path / "c").W_enc.dtype == torch.float32
    assert np.isclose(json.loads((tmp_path / "c" / "cfg.json").read_text())["d_sae"], 256)
    # errors: one line each, exit 2, naming the fix
    for args, words in (
        ([str(site), "mixed4a", str(tmp_path / "d")], ["no layer 'mixed4a'", "layers there are: mixed5b"]),
        ([str(folder / ".atlasgen"), "nope", str(tmp_path / "d")], ["no layer 'nope'", "mixed5b"]),
        ([str(tmp_path), "mixed5b", str(tmp_path / "d")], ["neither a built site", "Fix:"]),
        (
            [str(site), "mixed5b", str(tmp_path / "d"), "--dtype", "float32"],
            ["publishes layer 'mixed5b' in float16"],
        ),
    ):
        out = run(main, ["export-sae", *args])
        assert out.exit_code == 2, out.output
        assert "Traceback" not in out.output and all(w in out.output for w in words), out.output
    assert not (tmp_path / "d").exists()
