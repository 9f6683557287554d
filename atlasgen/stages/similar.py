"""Stage `similar`: each SAE feature's most similar features by decoder cosine, per layer."""

from __future__ import annotations

import numpy as np

from atlasgen.cache import atomic_save_npz
from atlasgen.geometry import N_SIMILAR, similar_features
from atlasgen.stage import Stage, StageContext

STAGE = Stage("similar", deps=("sae",), config=("layer_names",), what="similar features (decoder cosine)")


def run(ctx: StageContext) -> None:
    names = [layer.name for layer in ctx.cfg.layers]
    with ctx.progress(len(names), "similar") as bar:
        for name in names:
            with np.load(ctx.inputs["sae"] / name / "sae.npz") as z:
                W_dec = np.asarray(z["W_dec"], dtype=np.float32)
            ids, cos = similar_features(W_dec, N_SIMILAR)
            (ctx.out / name).mkdir(parents=True, exist_ok=True)
            atomic_save_npz(ctx.out / name / "similar.npz", ids=ids, cos=cos)
            bar.update()
