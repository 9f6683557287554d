"""The featurevis stage's variants and quality check, end to end on the tiny demo build (real torch, files,
site)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from atlasgen.site.fmt import fmt_num


def _artifact(folder: Path, stage: str) -> Path:
    return next(
        p for p in (folder / ".atlasgen" / stage).iterdir() if p.is_dir() and not p.name.endswith(".partial")
    )


def test_variants_and_quality_arrays(tiny_build):
    folder, config, _ = tiny_build
    fv = _artifact(folder, "featurevis") / "mixed5b"
    meta = json.loads((fv / "meta.json").read_text())
    assert meta["neuron"] and meta["negative"] and meta["diverse"] >= 2
    k = meta["diverse"]
    for family in ("features", "neurons"):
        q = np.load(fv / f"{family}_quality.npz")
        n = len(q["unit"])
        assert np.array_equal(q["unit"], np.arange(n))
        assert len(list((fv / family).glob("*.webp"))) == n
        for sub in (f"{family}_neuron", f"{family}_negative", *(f"{family}_diverse/{j}" for j in range(k))):
            files = sorted(fv.glob(f"{sub}/*.webp"))
            assert len(files) == n, sub
            with Image.open(files[0]) as im:
                assert im.size == (meta["variant_image_size"],) * 2
        assert q["objective_diverse"].shape == (n, k) and np.isfinite(q["objective_diverse"]).all()
        for key in ("objective", "objective_neuron", "objective_negative", "own_act", "other_act"):
            assert np.isfinite(q[key]).all(), key
        # Maximising beats minimising for (nearly) every unit: the two runs went opposite ways. (A
        # neuron is post-ReLU: one that stays off on both images scores 0 twice.)
        assert (q["objective"] >= q["objective_negative"]).mean() > 0.9
        if family == "features":  # SAE pre-activations are unbounded both ways
            assert (q["objective"] > q["objective_negative"]).mean() > 0.9
        assert (q["other_unit"] != q["unit"]).all()
        assert ((q["rank"] == 1) == (q["own_act"] >= q["other_act"])).all()
        assert (q["rank"] >= 1).all() and (q["rank"] <= n).all()


def test_feature_page_shows_variants_and_both_numbers(tiny_build):
    folder, _, site = tiny_build
    q = np.load(_artifact(folder, "featurevis") / "mixed5b" / "features_quality.npz")
    ex = np.load(_artifact(folder, "examples") / "mixed5b" / "features.npz")
    flagged = reached = dead_count = 0
    for i in range(len(q["unit"])):
        unit = site / "demonet" / "mixed5b" / "f" / str(i)
        html = (unit / "index.html").read_text()
        for name in ("vis-neuron.webp", "vis-negative.webp", *(f"vis-diverse-{k}.webp" for k in range(2))):
            assert (
                unit / name
            ).is_file() and f'src="{name}"' in html  # the page's own folder: the shortest link
        check = re.search(r'<dl class="vis-check">(.*?)</dl>', html, re.S).group(1)
        assert fmt_num(float(q["own_act"][i])) in check and fmt_num(float(ex["max_act"][i])) in check
        assert f"f/{int(q['other_unit'][i])}" in check
        below = "below its dataset top" in html
        dead = "it never fires on the dataset" in html
        assert dead == (ex["max_act"][i] <= 0)
        assert below == (not dead and q["own_act"][i] < ex["max_act"][i])
        flagged += below
        reached += "reaches its dataset top" in html
        dead_count += dead
    assert flagged + reached + dead_count == len(q["unit"])
    assert flagged > 0 and dead_count < len(q["unit"])
    # Neuron pages have the section too.
    assert "vis-negative.webp" in (site / "demonet" / "mixed5b" / "n" / "0" / "index.html").read_text()


def test_featurevis_config_keys():
    import pytest

    from atlasgen.config import ConfigError, parse_config

    cfg = parse_config({"featurevis": {"precision": "bf16", "diverse": 0, "negative": False}}).featurevis
    assert (cfg.precision, cfg.diverse, cfg.negative, cfg.neuron) == ("bf16", 0, False, True)
    with pytest.raises(ConfigError, match="featurevis.diverse"):
        parse_config({"featurevis": {"diverse": 1}})
    with pytest.raises(ConfigError, match="featurevis.precision"):
        parse_config({"featurevis": {"precision": "fp16"}})


def test_failure_marks_match_a_recomputation_and_failed_pages_lead_with_examples(tiny_build):
    from atlasgen import featurevis_check as check

    folder, _, site = tiny_build
    fv_dir = _artifact(folder, "featurevis")
    n_scanned = json.loads((site / "manifest.json").read_text())["dataset"]["n_images_scanned"]
    lines = json.loads((fv_dir / "build_notes.json").read_text())
    for family, kind in (("features", "f"), ("neurons", "n")):
        q = np.load(fv_dir / "mixed5b" / f"{family}_quality.npz")
        ex = np.load(_artifact(folder, "examples") / "mixed5b" / f"{family}.npz")
        fires = np.rint(ex["density"].astype(np.float64) * n_scanned).astype(np.int64)
        assert np.array_equal(q["fires"], fires)
        median = check.median_firing_activation(ex["hist"], ex["hist_edges"], ex["max_act"], fires)
        assert np.array_equal(np.isnan(q["median_act"]), fires == 0)
        assert np.allclose(q["median_act"][fires > 0], median[fires > 0])
        for i in range(len(q["unit"])):  # the first reason that applies, unit by unit
            reasons = [
                bool(q["flat"][i]),
                not q["objective"][i] > 0,
                not q["own_act"][i] > 0,
                bool(fires[i] > 0 and not q["own_act"][i] >= q["median_act"][i]),
            ]
            assert q["failure"][i] == (reasons.index(True) + 1 if any(reasons) else check.OK), (family, i)
        live = fires > 0
        reach = int((live & (q["own_act"] >= q["median_act"])).sum())
        assert any(
            f"featurevis mixed5b {family}: {reach} of {int(live.sum())} live" in line for line in lines
        )
        # The pages: a failed main image is greyed, says why, and the examples come before it.
        failed = np.flatnonzero(q["failure"] != check.OK)
        ok = np.flatnonzero(q["failure"] == check.OK)
        for i, is_failed in [(int(i), True) for i in failed[:3]] + [(int(i), False) for i in ok[:3]]:
            html = (site / "demonet" / "mixed5b" / kind / str(i) / "index.html").read_text()
            assert ('class="unit-top vis-failed"' in html) == is_failed
            assert ("vis-failed-badge" in html) == is_failed
            if is_failed:
                assert f"failed: {check.REASONS[int(q['failure'][i])]}" in html
            assert (html.index('id="examples-title"') < html.index('class="unit-top')) == is_failed
        layer = (site / "demonet" / "mixed5b" / "index.html").read_text()
        if kind == "f" and failed.size:
            card = re.search(
                rf'<li class="card[^"]*"[^>]*><a href="[^"]*f/{int(failed[0])}/index.html">(.*?)</a>',
                layer,
                re.S,
            ).group(1)
            assert "thumb vis-failed" in card or "thumb px vis-failed" in card


def test_rendering_processes_do_not_change_the_images(tiny_copy):
    """The tiny build rendered its chunks in ``parallel.featurevis`` processes (by default the
    machine's cores); rebuilt in another number of processes, the featurevis artifact holds the same
    bytes and has the same content hash, so no later stage re-runs."""
    import shutil

    import yaml

    from atlasgen.config import load_config
    from atlasgen.data import local_workers
    from atlasgen.pipeline import Pipeline
    from atlasgen.progress import Console

    folder, config, _ = tiny_copy
    before = _artifact(folder, "featurevis")

    def outputs(artifact):  # every file the stage wrote (meta.json is the store's record of the run)
        return {
            p.relative_to(artifact): p.read_bytes()
            for p in artifact.rglob("*")
            if p.is_file() and p != artifact / "meta.json"
        }

    files = outputs(before)
    content_hash = json.loads((before / "meta.json").read_text())["content_hash"]
    shutil.rmtree(before)
    data = yaml.safe_load(config.read_text())
    data["parallel"] = {"featurevis": 1 if local_workers(-1) > 1 else 2}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    summary = Pipeline(load_config(config), console=Console(0)).build()
    assert summary.ran == ["featurevis"]  # not part of any key, and the same content downstream
    after = _artifact(folder, "featurevis")
    assert after.name == before.name
    again = outputs(after)
    assert sorted(again) == sorted(files) and len(files) > 50
    assert [str(k) for k in files if files[k] != again[k]] == []
    assert json.loads((after / "meta.json").read_text())["content_hash"] == content_hash


def test_failed_main_images_get_a_second_attempt_and_the_record_says_so(tiny_build):
    """A main image that fails its check on a unit that fires is rendered again (another start, more
    steps, no pad); the better image is kept, the same bytes every time; units that never fire on
    the data, and units that passed, are left alone; the quality record and the build summary count
    the attempts."""
    import dataclasses

    import torch

    from atlasgen import featurevis_check as check
    from atlasgen.config import layer_featurevis, load_config
    from atlasgen.featurevis import STANDARD_TRANSFORMS, render_units, unit_maxima
    from atlasgen.stages.featurevis import _families, _load_model, _retry_failed

    folder, config, _ = tiny_build
    fv_dir = _artifact(folder, "featurevis")
    lines = json.loads((fv_dir / "build_notes.json").read_text())
    q = np.load(fv_dir / "mixed5b" / "features_quality.npz")
    assert not (q["retried"] & (q["fires"] == 0)).any() and not (q["retry_kept"] & ~q["retried"]).any()
    n_retried, n_kept = int(q["retried"].sum()), int(q["retry_kept"].sum())
    assert any(
        line.startswith("featurevis mixed5b features:")
        and f"second attempts: {n_retried}, {n_kept} kept" in line
        for line in lines
    )

    cfg = load_config(config)
    fv = dataclasses.replace(layer_featurevis(cfg, cfg.layers[-1]), retry_steps=8)
    model = _load_model(_artifact(folder, "model"), cfg.model, "cpu")
    _n, sae, encode = _families(_artifact(folder, "sae") / "mixed5b", "cpu")["features"]
    units = [0, 1, 2, 3]
    common = dict(
        sae=sae, lr=fv.lr, batch_size=8, seed=fv.seed, device="cpu", precision="fp32", return_objective=True
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first, objective = render_units(
            model,
            "mixed5b",
            units,
            image_size=fv.image_size,
            steps=4,
            transforms=STANDARD_TRANSFORMS.for_size(fv.image_size),
            **common,
        )
        maxima = unit_maxima(model, "mixed5b", first, encode=encode, batch_size=4)
        own = maxima[np.arange(4), units]
        # Units 0 and 1 fire with a median no image reaches; unit 2 passes; unit 3 never fires.
        median = np.asarray([own[0] + 1e6, own[1] + 1e6, min(own[2], 0.0) - 1.0, np.nan], np.float32)
        results = []
        for _ in range(2):
            images, obj, mx = first.copy(), objective.copy(), maxima.copy()
            clock = {"quality": 0.0}
            retried, kept = _retry_failed(
                model, "mixed5b", units, images, obj, mx, median, encode, fv, "cpu", common, clock
            )
            results.append((images, obj, mx, retried, kept))
        off = _retry_failed(
            model,
            "mixed5b",
            units,
            first.copy(),
            objective.copy(),
            maxima.copy(),
            median,
            encode,
            dataclasses.replace(fv, retry_steps=0),
            "cpu",
            common,
            {"quality": 0.0},
        )
    finally:
        torch.set_num_threads(before)
    images, obj, mx, retried, kept = results[0]
    failed = check.mark_main(objective, own, median, check.flat_images(first)) != check.OK
    assert retried.tolist() == [True, True, bool(failed[2]), False]
    assert not kept[~retried].any()
    for i in range(4):
        changed = not np.array_equal(images[i], first[i])
        assert changed == bool(kept[i]), i
        if kept[i]:  # kept only when it activates its unit more
            assert mx[i, units[i]] > maxima[i, units[i]]
        else:
            assert obj[i] == objective[i] and np.array_equal(mx[i], maxima[i])
    assert all(np.array_equal(a, b) for a, b in zip(results[0], results[1]))  # deterministic
    assert not off[0].any() and not off[1].any()
