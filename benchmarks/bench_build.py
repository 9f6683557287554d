"""Build-time benchmark of the embedded demo, side by side with its physical floors.

Runs in one process, on a fresh copy of the shipped site_config.yaml:

1. the first build (model training included), with the time of every stage;
2. a rerun with nothing changed;
3. a template-only change (a copy of the theme with one CSS line added);
4. the floor of the feature-visualisation stage: the bare forward + backward
   passes of the same model on the same number of images at the same canvas
   size, without the renderer (parameterisation, transforms, objective, Adam);
5. the floor of the model stage: the bare training steps on random tensors.

Prints each figure and the ratios. Usage:
    python benchmarks/bench_build.py [--config site_config.yaml]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from atlasgen.config import load_config
from atlasgen.pipeline import Pipeline
from atlasgen.progress import Console

ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def featurevis_floor(cfg, n_units: int) -> float:
    """Seconds of bare forward+backward passes (to the layer) for n_units x steps images."""
    from atlasgen.demo.dataset import CLASSES
    from atlasgen.featurevis import STANDARD_TRANSFORMS
    from atlasgen.models import build_model, layer_activations

    fv = cfg.featurevis
    canvas = fv.image_size + 2 * STANDARD_TRANSFORMS.for_size(fv.image_size).pad
    model = (
        build_model(cfg.model, len(CLASSES))
        .eval()
        .requires_grad_(False)
        .to(memory_format=torch.channels_last)
    )
    layer = cfg.layers[0].name
    batches = -(-n_units // fv.batch_size)
    x = torch.rand(fv.batch_size, 3, canvas, canvas, requires_grad=True)
    start = time.perf_counter()
    for _ in range(batches * fv.steps):
        x.grad = None
        layer_activations(model, x, [layer])[layer].mean().backward()
    return time.perf_counter() - start


def training_floor(cfg, n_train: int) -> float:
    """Seconds of bare training steps (forward, loss, backward, Adam) on random tensors."""
    from atlasgen.demo.dataset import CLASSES
    from atlasgen.models import build_model

    tc = cfg.model.train
    model = build_model(cfg.model, len(CLASSES)).train()
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    x = torch.rand(tc.batch_size, 3, cfg.dataset.image_size, cfg.dataset.image_size)
    y = torch.randint(0, len(CLASSES), (tc.batch_size,))
    steps = tc.epochs * -(-n_train // tc.batch_size)
    start = time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "site_config.yaml"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="atlasgen-bench-"))
    config = work / "site_config.yaml"
    shutil.copy(args.config, config)
    cfg = load_config(config)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; work folder {work}")
    # Floors first: once UMAP (numba) is imported, torch's CPU threads run slower in this process.
    from atlasgen.demo.dataset import CLASSES

    n_train = round(cfg.dataset.images_per_class * len(CLASSES) * (1 - cfg.dataset.holdout_fraction))
    n_units = cfg.layers[0].sae.expansion * 128 + 128  # DemoNet's mixed5b has 128 channels
    t_fv_floor = featurevis_floor(cfg, n_units)
    t_train_floor = training_floor(cfg, n_train)

    t_first, summary = timed(lambda: Pipeline(cfg, console=Console(0)).build())
    t_rerun, rerun = timed(lambda: Pipeline(load_config(config), console=Console(0)).build())
    assert rerun.ran == [], rerun.ran

    from atlasgen.site import resources

    theme = work / "theme"
    for name in ("templates", "static"):
        shutil.copytree(resources.resource_dir(name), theme / name)
    css = theme / "static" / "atlas.css"
    css.write_text(css.read_text() + "\n/* benchmark: a template-only change */\n")
    original = resources.resource_dir
    resources.resource_dir = lambda name: theme / name
    try:
        t_template, templ = timed(lambda: Pipeline(load_config(config), console=Console(0)).build())
    finally:
        resources.resource_dir = original
    assert templ.ran == ["site"], templ.ran

    import json
    import subprocess
    import sys

    model_json = json.loads(next((work / ".atlasgen" / "model").glob("*/model.json")).read_text())
    t_cli, _ = timed(
        lambda: subprocess.run(
            [sys.executable, "-m", "atlasgen", "build", "-q", "-c", str(config)], check=True
        )
    )

    print("\nstage times of the first build")
    for name, seconds in summary.seconds.items():
        print(f"  {name:<12} {seconds:7.1f} s")
    print(f"\n{'measure':<44} {'seconds':>8}  ratio")
    print(f"{'first build (fresh cache, training included)':<44} {t_first:8.1f}")
    print(f"{'rerun, nothing changed':<44} {t_rerun:8.2f}  {t_rerun / t_first:.3f} of first build")
    print(
        f"{'rerun, nothing changed, as a CLI process':<44} {t_cli:8.2f}  {t_cli / t_first:.3f} of first build"
    )
    print(f"{'template-only change':<44} {t_template:8.2f}  {t_template / t_first:.3f} of first build")
    fv = summary.seconds["featurevis"]
    print(f"{'featurevis stage':<44} {fv:8.1f}  {fv / t_fv_floor:.2f}x its floor")
    print(f"{'  floor: bare fwd+bwd, same images':<44} {t_fv_floor:8.1f}")
    tm = summary.seconds["model"]
    print(f"{'model stage (training + held-out eval)':<44} {tm:8.1f}  {tm / t_train_floor:.2f}x its floor")
    print(f"{'  floor: bare training steps':<44} {t_train_floor:8.1f}")
    print(
        f"\nheld-out accuracy {model_json['heldout_accuracy']:.1%} (chance "
        f"{model_json['chance_accuracy']:.1%}); "
        f"{summary.pages} pages, {summary.site_files} files, {summary.site_bytes / 1e6:.1f} MB"
    )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
