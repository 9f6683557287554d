"""Stage `game`: the rounds of "guess the image" (after SAE Explorer, Fry 2024).

For ``game.rounds`` held-out images (drawn with ``game.seed``), the SAE
features' activations on the image (maximum over positions) and
``game.choices`` candidate images: the image itself and distractors, other
held-out images of other classes where there are enough classes, in a seeded
order. The site picks the most active features per round (relative to each
feature's maximum over the training images) and shows them with their
visualisations; the reader guesses which candidate the model saw.

Files (game/L/): ``game.npz`` with ``images (R,)`` dataset index of each
round's image, ``acts (R, F)`` float32 feature maxima over positions,
``candidates (R, choices)`` dataset indices, ``answer (R,)`` the position of
the right image in ``candidates``; ``game.json`` with the settings.
"""

from __future__ import annotations

import numpy as np
import torch

from atlasgen.cache import atomic_save_npz, atomic_write_json
from atlasgen.data import open_dataset
from atlasgen.models import layer_activations, load_model, positions_as_vectors
from atlasgen.sae_formats import load_sae_any
from atlasgen.stage import Stage, StageContext

STAGE = Stage(
    "game", deps=("dataset", "model", "sae"), config=("layers", "game"), what="guess-the-image rounds"
)


def choose_rounds(
    heldout: np.ndarray, labels: np.ndarray, rounds: int, choices: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (R,), candidates (R, choices), answer (R,)) from held-out indices, deterministic in ``seed``.

    Distractors come from classes other than the answer's (and, while there
    are enough classes, other than each other's), so one right answer exists.
    """
    rng = np.random.default_rng(seed)
    pool = np.asarray(heldout, dtype=np.int64)
    if len(pool) < choices:
        raise ValueError(f"game: {len(pool)} held-out images, fewer than game.choices={choices}")
    order = rng.permutation(pool)
    images = order[: min(rounds, len(order))]
    candidates = np.zeros((len(images), choices), dtype=np.int64)
    answer = np.zeros(len(images), dtype=np.int64)
    for r, img in enumerate(images):
        picked, used = [int(img)], {int(labels[img])}
        for j in rng.permutation(pool):
            if len(picked) == choices:
                break
            if int(j) in picked:
                continue
            if int(labels[j]) not in used:
                picked.append(int(j))
                used.add(int(labels[j]))
        for j in rng.permutation(pool):  # too few classes: any other image, never a duplicate
            if len(picked) == choices:
                break
            if int(j) not in picked and int(labels[j]) != int(labels[img]):
                picked.append(int(j))
        for j in rng.permutation(pool):
            if len(picked) == choices:
                break
            if int(j) not in picked:
                picked.append(int(j))
        perm = rng.permutation(choices)
        candidates[r] = np.asarray(picked)[perm]
        answer[r] = int(np.flatnonzero(perm == 0)[0])
    return images, candidates, answer


@torch.no_grad()
def run(ctx: StageContext) -> None:
    cfg = ctx.cfg.game
    data = open_dataset(ctx.inputs["dataset"])
    heldout = data.indices("heldout")
    reason = None
    if data.n_classes < 2:
        reason = (
            "the game asks which class an image shows, so it needs at least 2 classes (this dataset has 1)"
        )
    elif len(heldout) < cfg.choices:
        reason = (
            f"{len(heldout)} held-out images, fewer than game.choices={cfg.choices}. Fix: lower game.choices "
            "or hold out more images (dataset.holdout_fraction, dataset.images_per_class)"
        )
    if reason is not None:
        ctx.skip("game", reason)
        return
    model = load_model(ctx.inputs["model"], ctx.cfg.model, data.n_classes, ctx.device)
    images, candidates, answer = choose_rounds(heldout, data.labels, cfg.rounds, cfg.choices, cfg.seed)
    for layer_cfg in ctx.cfg.layers:
        layer = layer_cfg.name
        sae = load_sae_any(ctx.inputs["sae"] / layer).to(ctx.device).eval()
        rows = []
        for start in range(0, len(images), 64):
            idx = images[start : start + 64]
            acts = layer_activations(model, data.batch(idx).to(ctx.device), [layer])[layer].float()
            b = acts.shape[0]
            codes = sae.encode(positions_as_vectors(acts))  # (b * positions, F)
            rows.append(codes.reshape(b, -1, codes.shape[1]).amax(dim=1).cpu().numpy().astype(np.float32))
        atomic_save_npz(
            ctx.out / layer / "game.npz",
            images=images,
            acts=np.concatenate(rows),
            candidates=candidates,
            answer=answer,
        )
        atomic_write_json(
            ctx.out / layer / "game.json",
            {"rounds": int(len(images)), "choices": cfg.choices, "features": cfg.features, "seed": cfg.seed},
        )
