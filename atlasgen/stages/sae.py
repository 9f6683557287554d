"""Stage `sae`: one sparse autoencoder per layer, trained on the activation store
and evaluated on held-out vectors (see atlasgen.sae for the recipe)."""

from __future__ import annotations

import numpy as np

from atlasgen.cache import atomic_write_json
from atlasgen.config import ConfigError
from atlasgen.pipeline import StageContext
from atlasgen.sae import evaluate_sae, save_sae, train_sae
from atlasgen.stages.activations import VectorStore


def run(ctx: StageContext) -> None:
    for layer_cfg in ctx.cfg.layers:
        s = layer_cfg.sae
        store = VectorStore(ctx.inputs["activations"] / layer_cfg.name)
        d_in = store.shape[1]
        d_sae = s.expansion * d_in
        if s.architecture != "relu" and s.k >= d_sae:
            raise ConfigError([f"layers.{layer_cfg.name}.sae.k: {s.k} is not below the number of features ({d_sae} = {s.expansion} x {d_in} channels). Fix: lower k or raise expansion."])
        with ctx.progress(s.steps, f"sae {layer_cfg.name}") as bar:
            sae, stats = train_sae(store, d_sae=d_sae, architecture=s.architecture, k=s.k, l1_coefficient=s.l1_coefficient,
                                   steps=s.steps, batch_size=s.batch_size, lr=s.lr, seed=s.seed, device=ctx.device,
                                   progress=lambda step: bar.set(step + 1))
        heldout = np.load(ctx.inputs["activations"] / layer_cfg.name / "heldout.npy", mmap_mode="r")
        metrics = evaluate_sae(sae.cpu(), heldout)
        folder = ctx.out / layer_cfg.name
        save_sae(sae, folder, metrics=metrics)
        atomic_write_json(folder / "training.json", {k: v for k, v in stats.items() if "second" not in k})
        ctx.console.info(f"  {layer_cfg.name}: {d_sae} features, explained variance {metrics['explained_variance']:.3f}, "
                         f"L0 {metrics['l0']:.1f}, dead {metrics['dead_fraction']:.1%} "
                         f"({stats.get('samples_per_second', 0):.0f} vectors/s)")
