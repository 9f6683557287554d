"""Stage `featurevis`: optimised images of every SAE feature and neuron, and their quality check.

Per unit (atlasgen.featurevis's batched renderer, docs/analyses.md):

* the main image (objective averaged over positions), full size and thumbnail;
* optionally the neuron-centred view (objective at the centre position), the
  negative image (objective minimised) and a diverse set (lucid's Gram-matrix
  diversity term), smaller and with fewer steps (`featurevis.variant_*`);
* the quality check: the final objective of each image, whether it is flat,
  and, on the main image at its own size (one batched no-grad forward per
  chunk, stopped at the studied layer), the maximum activation of every unit
  of the family: the unit's own and the strongest other unit's (selectivity);
* failure marks (atlasgen.featurevis_check): at the end, each unit's main
  image is judged against the unit's median firing activation on the dataset
  (read from the examples artifact), and the build summary gets each
  family's success figures (``build_notes.json``).

Units go in chunks of `featurevis.batch_size`. A chunk writes its WebP files
atomically, then its quality shard `<family>_quality/<start>.npz`; a chunk
whose shard exists is skipped, so a killed build resumes at the first
unfinished chunk. Each image depends only on (seed, unit, variant), not on
the chunking. The shards are merged into `<family>_quality.npz` at the end,
with the failure marks (``median_act``, ``fires``, ``failure`` and the
variants' ``failure_*``: codes of ``featurevis_check.REASONS``, 0 for success).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time

import numpy as np
import torch

from atlasgen import featurevis_check as check
from atlasgen.cache import atomic_save_npz, atomic_write_json
from atlasgen.config import layer_featurevis
from atlasgen.data import local_workers, open_dataset
from atlasgen.featurevis import STANDARD_TRANSFORMS, SAEDirections, render_units, save_webp, unit_maxima
from atlasgen.models import load_model
from atlasgen.sae_formats import load_sae_any
from atlasgen.stage import Stage, StageContext

STAGE = Stage(
    "featurevis",
    # After the examples: a visualisation is judged against its unit's firing distribution on the data.
    deps=("dataset", "model", "sae", "examples"),
    config=("layers", "featurevis", "layer_featurevis"),
    what="feature visualisations",
    resumable=True,
    distributed=True,
)

# Under torchrun every rank runs this stage and renders its share of each layer's chunks; the images
# depend only on (seed, unit, variant), so they are the same bytes whichever rank renders them.
# Rank 0 merges the quality shards and writes meta.json.

QUALITY_KEYS = (
    "unit",
    "objective",
    "own_act",
    "other_unit",
    "other_act",
    "rank",
    "objective_neuron",
    "objective_negative",
    "objective_diverse",
    "flat",
    "flat_neuron",
    "flat_negative",
    "flat_diverse",
    "retried",
    "retry_kept",
)


def _render_chunk(model, layer, units, directions, encode, cfg, device, folder, clock, median):
    """Render every image of one chunk of units, write them, return the chunk's quality arrays.

    ``median`` is each unit's median firing activation (NaN where it never fires): a main image
    that fails its check on a unit that fires gets a second attempt (:func:`_retry_failed`)."""
    family = folder.name
    common = dict(
        sae=directions,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        device=device,
        precision=cfg.precision,
        return_objective=True,
    )
    main_t = STANDARD_TRANSFORMS.for_size(cfg.image_size)
    var = dict(
        image_size=cfg.variant_image_size,
        steps=cfg.variant_steps,
        transforms=STANDARD_TRANSFORMS.for_size(cfg.variant_image_size),
        **common,
    )
    nan = np.full(len(units), np.nan, np.float32)
    no = np.zeros(len(units), bool)
    k = max(cfg.diverse, 1)
    q = {
        "unit": np.asarray(units, np.int64),
        "objective_neuron": nan,
        "objective_negative": nan,
        "objective_diverse": np.full((len(units), k), np.nan, np.float32),
        "flat_neuron": no,
        "flat_negative": no,
        "flat_diverse": np.zeros((len(units), k), bool),
    }

    images, q["objective"] = render_units(
        model, layer, units, image_size=cfg.image_size, steps=cfg.steps, transforms=main_t, **common
    )
    # Quality: every unit's maximum on each main image, at the image's own size, in one batched
    # no-grad pass that stops at the layer.
    start = time.perf_counter()
    maxima = unit_maxima(model, layer, images, encode=encode, batch_size=len(units), device=device)
    clock["quality"] += time.perf_counter() - start
    q["retried"], q["retry_kept"] = _retry_failed(
        model, layer, units, images, q["objective"], maxima, median, encode, cfg, device, common, clock
    )
    q["flat"] = check.flat_images(images)
    save_webp(
        images, folder, units, thumb_folder=folder.with_name(f"{family}_thumb"), thumb_size=cfg.thumb_size
    )
    if cfg.neuron:
        img, q["objective_neuron"] = render_units(model, layer, units, mode="neuron", **var)
        q["flat_neuron"] = check.flat_images(img)
        save_webp(img, folder.with_name(f"{family}_neuron"), units)
    if cfg.negative:
        img, q["objective_negative"] = render_units(model, layer, units, negative=True, **var)
        q["flat_negative"] = check.flat_images(img)
        save_webp(img, folder.with_name(f"{family}_negative"), units)
    if cfg.diverse:
        img, q["objective_diverse"] = render_units(
            model, layer, units, copies=cfg.diverse, diversity_weight=cfg.diversity_weight, **var
        )
        q["flat_diverse"] = check.flat_images(img)
        for j in range(cfg.diverse):
            save_webp(np.ascontiguousarray(img[:, j]), folder.with_name(f"{family}_diverse") / str(j), units)

    rows = np.arange(len(units))
    own = maxima[rows, units]
    others = maxima.copy()
    others[rows, units] = -np.inf
    q["own_act"] = own
    q["other_unit"] = others.argmax(1).astype(np.int64)
    q["other_act"] = others[rows, q["other_unit"]]
    q["rank"] = 1 + (others > own[:, None]).sum(1).astype(np.int64)  # 1: its own unit is the strongest
    return q


def _retry_failed(model, layer, units, images, objective, maxima, median, encode, cfg, device, common, clock):
    """A second attempt at each main image that failed its check on a unit that fires on the data.

    The attempt has another start and other transforms (``attempt=1``), ``featurevis.retry_steps``
    steps, and no grey pad around the image: the check feeds the image alone, at its own size,
    and an image optimised on a padded canvas can lean on the pad (docs/analyses.md). Its
    objective is measured on its own, unpadded canvas. The attempt replaces the first image (in
    ``images``, ``objective`` and ``maxima``, in place) where it activates its unit more. Returns
    (retried, kept) boolean arrays. Every input is the chunk's own, so the result does not depend
    on how chunks are shared between processes.
    """
    units = np.asarray(units)
    rows = np.arange(len(units))
    flat = check.flat_images(images)
    failed = check.mark_main(objective, maxima[rows, units], median, flat) != check.OK
    retried = failed & np.isfinite(median)  # units that fire on the data
    kept = np.zeros(len(units), bool)
    todo = np.flatnonzero(retried)
    if cfg.retry_steps == 0 or todo.size == 0:
        return np.zeros(len(units), bool), kept
    t = dataclasses.replace(STANDARD_TRANSFORMS.for_size(cfg.image_size), pad=0)
    img, obj = render_units(
        model,
        layer,
        units[todo].tolist(),
        image_size=cfg.image_size,
        steps=cfg.retry_steps,
        transforms=t,
        attempt=1,
        **common,
    )
    start = time.perf_counter()
    mx = unit_maxima(model, layer, img, encode=encode, batch_size=len(units), device=device)
    clock["quality"] += time.perf_counter() - start
    better = mx[np.arange(todo.size), units[todo]] > maxima[todo, units[todo]]
    take = todo[better]
    images[take], objective[take], maxima[take] = img[better], obj[better], mx[better]
    kept[take] = True
    return retried, kept


def _firing(ex_path, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Every unit's count of firing images and median firing activation, from the examples artifact."""
    with np.load(ex_path) as z:
        ex = {k: z[k] for k in ("hist", "hist_edges", "max_act", "density")}
    fires = np.rint(ex["density"].astype(np.float64) * n_images).astype(np.int64)
    return fires, check.median_firing_activation(ex["hist"], ex["hist_edges"], ex["max_act"], fires)


def _mark(q: dict, ex_path, n_images: int) -> tuple[dict, dict]:
    """The failure marks of one family's merged quality arrays, and its success figures."""
    units = q["unit"]
    fires, median = (a[units] for a in _firing(ex_path, n_images))
    marks = {
        "fires": fires,
        "median_act": median,
        "failure": check.mark_main(q["objective"], q["own_act"], median, q["flat"]),
        "failure_neuron": check.mark_maximised(q["objective_neuron"], q["flat_neuron"]),
        "failure_diverse": check.mark_maximised(q["objective_diverse"], q["flat_diverse"]),
        "failure_negative": np.where(q["flat_negative"], check.FLAT, check.OK).astype(np.int8),
    }
    flat_any = q["flat"] | q["flat_neuron"] | q["flat_negative"] | q["flat_diverse"].any(axis=1)
    figures = check.success_figures(marks["failure"], q["own_act"], median, fires, flat_any)
    figures.update(retried=int(q["retried"].sum()), retry_kept=int(q["retry_kept"].sum()))
    return marks, figures


def _load_model(model_dir, model_cfg, device):
    n_classes = json.loads((model_dir / "model.json").read_text())["n_classes"]
    model = load_model(model_dir, model_cfg, n_classes, device)
    # Channels-last convolutions run about a third faster on CPU for small conv nets (measured on DemoNet).
    return model.to(memory_format=torch.channels_last)


def _families(sae_dir, device):
    full_sae = load_sae_any(sae_dir).to(device).eval()
    sae = SAEDirections.from_sae(full_sae)
    return {"features": (sae.n_features, sae, full_sae.encode), "neurons": (sae.d_in, None, None)}


@contextlib.contextmanager
def _one_thread_on_cpu(device):
    """On the CPU every chunk renders with one torch thread, in a rendering process or in the
    build's own: float sums, and so the images, then do not depend on how many processes or ranks
    share the work."""
    if str(device) != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# A rendering process (``parallel.featurevis`` > 1 on the CPU) keeps the model, and the SAE of the
# layer it last rendered, between chunks.
_WORKER: dict = {}


def _worker_init(model_dir, model_cfg) -> None:
    import signal

    # Ctrl-C reaches the whole process group: the build's process handles it (and stops the pool),
    # a rendering process just ends when it is terminated.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _WORKER.update(model=_load_model(model_dir, model_cfg, "cpu"), sae_dir=None)


def _worker_chunk(job) -> float:
    """Render one chunk in a rendering process and write its shard; returns its quality-check seconds."""
    layer, cfg, sae_dir, family, units, folder, shard, _median = job
    if _WORKER["sae_dir"] != sae_dir:
        _WORKER.update(families=_families(sae_dir, "cpu"), sae_dir=sae_dir)
    clock = {"quality": 0.0}
    _render_and_save(_WORKER["model"], _WORKER["families"], job, "cpu", clock)
    return clock["quality"]


def _render_and_save(model, families, job, device, clock) -> None:
    """Render one chunk (a job of ``_render_layer``) and write its quality shard, last: the shard's
    presence means the chunk is complete."""
    layer, cfg, _sae_dir, family, units, folder, shard, median = job
    _n, directions, encode = families[family]
    q = _render_chunk(model, layer, units, directions, encode, cfg, device, folder, clock, median)
    shard.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_npz(shard, **q)


def _processes(ctx: StageContext, pending: int) -> int:
    """Rendering processes for this build: 1 (the build's own) on CUDA or with one chunk to do."""
    if str(ctx.device) != "cpu" or pending < 2:
        return 1
    return max(1, min(pending, local_workers(ctx.cfg.parallel.featurevis)))


def run(ctx: StageContext) -> None:
    model = _load_model(ctx.inputs["model"], ctx.cfg.model, ctx.device)
    n_images = len(open_dataset(ctx.inputs["dataset"]).indices("train"))  # the images the examples scanned
    notes = []
    clock = {"quality": 0.0}
    started = time.perf_counter()
    pools: list = []  # the pool of rendering processes, once a layer has started it
    try:
        for layer_cfg in ctx.cfg.layers:
            _render_layer(ctx, model, layer_cfg, clock, notes, n_images, pools)
    except BaseException:
        for pool in pools:  # an error or Ctrl-C: the finished chunks' shards stay for the resume
            pool.terminate()
            pool.join()
        raise
    for pool in pools:
        pool.close()
        pool.join()
    if ctx.ranks.main:
        atomic_write_json(ctx.out / "build_notes.json", notes)
    elapsed = time.perf_counter() - started
    if elapsed > 0:
        ctx.console.detail(
            f"quality check: {clock['quality']:.1f}s of {elapsed:.1f}s "
            f"({100 * clock['quality'] / elapsed:.1f} %)"
        )


def _render_chunks(ctx, model, families, chunks, clock, pools: list, layer: str) -> None:
    """Render the chunks whose quality shard is not there yet (a shard is written last: its presence
    means the chunk is complete), in a pool of rendering processes where there is more than one."""
    pool = pools[0] if pools else None
    done = sum(len(c[4]) for c in chunks if c[6].exists())
    jobs = [c for c in chunks if not c[6].exists()]
    with ctx.progress(done + sum(len(j[4]) for j in jobs), f"vis {layer}") as bar:
        bar.set(done)
        processes = _processes(ctx, len(jobs))
        if pool is None and processes > 1:
            import multiprocessing

            pool = multiprocessing.get_context("spawn").Pool(
                processes, _worker_init, (ctx.inputs["model"], ctx.cfg.model)
            )
            pools.append(pool)  # before any chunk: an interrupted layer still gets its pool stopped
        if pool is not None:
            for job, seconds in zip(jobs, pool.imap(_worker_chunk, jobs), strict=True):
                clock["quality"] += seconds
                done += len(job[4])
                bar.set(done)
        else:
            for job in jobs:
                with _one_thread_on_cpu(ctx.device):
                    _render_and_save(model, families, job, ctx.device, clock)
                done += len(job[4])
                bar.set(done)


def _render_layer(ctx, model, layer_cfg, clock, notes, n_images, pools: list) -> None:
    """Render this rank's share of the chunks of one layer, then (rank 0) merge its quality shards
    and mark the failures. ``pools``: the pool of rendering processes, appended by the first layer
    that needs one (the caller stops it)."""
    layer = layer_cfg.name
    cfg = layer_featurevis(ctx.cfg, layer_cfg)  # the top-level settings with the layer's own variants
    sae_dir = ctx.inputs["sae"] / layer
    families = _families(sae_dir, ctx.device)
    # Every chunk of the layer, in unit order: (layer, settings, sae folder, family, units, image
    # folder, shard, the units' median firing activations).
    chunks = []
    for family, (n, _, _) in families.items():
        folder, shards = ctx.out / layer / family, ctx.out / layer / f"{family}_quality"
        median = _firing(ctx.inputs["examples"] / layer / f"{family}.npz", n_images)[1]
        for start in range(0, n, cfg.batch_size):
            units = list(range(start, min(n, start + cfg.batch_size)))
            shard = shards / f"{start:08d}.npz"
            chunks.append(
                (layer, cfg, sae_dir, family, units, folder, shard, median[start : start + len(units)])
            )
    ctx.ranks.split(chunks, lambda mine: _render_chunks(ctx, model, families, mine, clock, pools, layer))
    if not ctx.ranks.main:
        return
    for family in families:
        shards = ctx.out / layer / f"{family}_quality"
        parts = []
        for p in sorted(shards.glob("*.npz")):
            with np.load(p) as z:
                parts.append({k: z[k] for k in QUALITY_KEYS})
        q = {k: np.concatenate([p[k] for p in parts]) for k in QUALITY_KEYS}
        marks, figures = _mark(q, ctx.inputs["examples"] / layer / f"{family}.npz", n_images)
        atomic_save_npz(ctx.out / layer / f"{family}_quality.npz", **q, **marks)
        notes.append(check.note_line(layer, family, figures))
    atomic_write_json(
        ctx.out / layer / "meta.json",
        {
            "mode": "channel",
            "image_size": cfg.image_size,
            "thumb_size": cfg.thumb_size,
            "steps": cfg.steps,
            "variant_image_size": cfg.variant_image_size,
            "variant_steps": cfg.variant_steps,
            "neuron": cfg.neuron,
            "negative": cfg.negative,
            "diverse": cfg.diverse,
            "eval_size": cfg.image_size,
            "precision": cfg.precision,
        },
    )
