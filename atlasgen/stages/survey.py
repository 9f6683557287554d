"""Stage `survey`: the blind interpretability survey's sample of features, per layer (Terekhov et al.).

Features are ranked by importance (mean-ablation importance from the
importance stage, else the documented proxy of ``ratings.feature_importance``)
and cut into the ``ratings.groups`` (top, middle, bottom, random) of
``ratings.per_group`` features each, among the features that fire and have a
visualisation, shuffled with ``ratings.seed`` (``ratings.survey_sample``).

Files (survey/L/): ``survey.npz`` with ``features (K,)`` the sample in the
order the rater sees it, ``groups (K,)`` each one's index into
``survey.json``'s ``groups``, ``importance (F,)`` float64 and
``importance_rank (F,)`` (1 = most important); ``survey.json`` with the
groups and where the importance comes from (``importance_source``,
``importance_exact``).
"""

from __future__ import annotations

import numpy as np

from atlasgen.cache import atomic_save_npz, atomic_write_json
from atlasgen.featurevis_files import drawn_units
from atlasgen.ratings import feature_importance, survey_sample
from atlasgen.stage import Stage, StageContext

STAGE = Stage(
    "survey",
    deps=("examples", "circuits", "importance", "featurevis"),
    config=("layer_names", "ratings.groups", "ratings.per_group", "ratings.seed"),
    what="survey sample (features by importance)",
)


def _npz(path) -> dict | None:
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: np.asarray(z[k]) for k in z.files}


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.ratings
    groups = list(cfg.groups)
    names = [layer.name for layer in ctx.cfg.layers]
    with ctx.progress(len(names), "survey") as bar:
        for name in names:
            with np.load(ctx.inputs["examples"] / name / "features.npz") as z:
                density, mean_act = np.asarray(z["density"]), np.asarray(z["mean_act"])
            skipped = (ctx.inputs["circuits"] / "classes_skipped.json").is_file()  # no classifier head
            weights = None if skipped else _npz(ctx.inputs["circuits"] / name / "class_weights.npz")
            importance = feature_importance(
                density,
                mean_act,
                None if weights is None else weights["features"],
                _npz(ctx.inputs["importance"] / name / "importance.npz"),
            )
            drawn = drawn_units(ctx.inputs["featurevis"] / name / "features")
            eligible = (density > 0) & np.isin(np.arange(len(density)), np.fromiter(drawn, np.int64))
            sample = survey_sample(importance["rank"], eligible, groups, int(cfg.per_group), int(cfg.seed))
            (ctx.out / name).mkdir(parents=True, exist_ok=True)
            atomic_save_npz(
                ctx.out / name / "survey.npz",
                features=np.array([f for f, _ in sample], dtype=np.int64),
                groups=np.array([groups.index(g) for _, g in sample], dtype=np.int8),
                importance=importance["values"],
                importance_rank=importance["rank"],
            )
            atomic_write_json(
                ctx.out / name / "survey.json",
                {
                    "groups": groups,
                    "importance_source": importance["source"],
                    "importance_exact": importance["exact"],
                },
            )
            bar.update()
