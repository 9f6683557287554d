"""Stage `sae`: one sparse autoencoder per layer, trained on the activation store
(see atlasgen.sae for the recipe) or loaded from elsewhere, then measured on
held-out images. Training saves a checkpoint every 500 steps, so a killed build
resumes the SAE where it stopped.

Metrics, all on held-out data, are stored in `metrics.json`:

- under the *sampled* distribution (positions drawn as for training, by
  magnitude): the keys of `atlasgen.sae.evaluate_sae` (fvu, l0, dead_fraction, ...);
- under the *uniform* distribution (every position of the held-out images):
  the same keys prefixed `uniform_`;
- downstream fidelity, splicing the reconstruction in at every position and
  running the rest of the model: `downstream_top1_agreement` with the clean
  model, `downstream_kl` (clean || spliced, nats), and
  `downstream_ce_recovered` = (CE_zero - CE_sae) / (CE_zero - CE_clean), where
  CE_zero replaces the layer by zeros (Gao et al. 2024's zero-ablation baseline).
  A headless model (`model.head: none`) has no logits, so it gets no downstream keys.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from atlasgen.cache import atomic_write_json
from atlasgen.config import ConfigError
from atlasgen.data import open_dataset
from atlasgen.models import get_module, layer_view, load_model, positions_as_vectors, vectors_as_map
from atlasgen.sae import evaluate_sae, save_sae, train_sae
from atlasgen.sae_formats import SAEFormatError, load_external_sae, save_saelens
from atlasgen.stage import Stage, StageContext
from atlasgen.stages.activations import VectorStore

STAGE = Stage(
    "sae",
    deps=("dataset", "model", "activations"),
    config=("layers_with_sae",),
    what="sparse autoencoders",
    resumable=True,
    distributed=True,
)

# Under torchrun every rank trains each SAE data-parallel (atlasgen.sae.train_sae with
# dist: DistributedDataParallel, global BatchTopK); rank 0 alone measures, saves and loads external SAEs.

MAX_EVAL_IMAGES = 1024  # held-out images used for the uniform and downstream metrics


def _reconstruct(sae, acts: torch.Tensor) -> torch.Tensor:
    """The SAE's reconstruction of a (B, C, H, W) map, position by position."""
    b, _, h, w = acts.shape
    return vectors_as_map(sae(positions_as_vectors(acts)), b, h, w)


@torch.no_grad()
def downstream_metrics(
    model,
    layer: str,
    sae,
    data,
    indices: np.ndarray,
    device: str,
    batch_size: int = 128,
    logits: bool = True,
) -> tuple[dict, np.ndarray]:
    """Fidelity of the spliced model on images, and every position's vector (the uniform sample).
    Without ``logits`` (a headless model) only the vectors are collected, and the dict is empty."""
    replace = {"with": None}
    clean_acts = {}

    view = layer_view(model, layer)

    def hook(_module, _inputs, output):
        acts = view.view(output)  # the layer's (B, C, H, W) view of the module output
        if replace["with"] is None:
            clean_acts["layer"] = acts
        elif replace["with"] == "zero":
            return view.splice(output, torch.zeros_like(acts))
        if replace["with"] == "sae":
            return view.splice(output, _reconstruct(sae, acts))
        return None

    handle = get_module(model, view.module).register_forward_hook(hook)
    sums = {
        "agree": 0.0,
        "kl": 0.0,
        "ce_clean": 0.0,
        "ce_sae": 0.0,
        "ce_zero": 0.0,
        "acc_clean": 0.0,
        "acc_sae": 0.0,
    }
    vectors = []
    try:
        for idx, x in data.batches(indices, batch_size, device):
            y = torch.from_numpy(data.labels[idx]).to(device)
            replace["with"] = None
            clean = model(x)
            vectors.append(positions_as_vectors(clean_acts["layer"]).cpu().numpy())
            if not logits:
                continue
            replace["with"] = "sae"
            spliced = model(x)
            replace["with"] = "zero"
            zero = model(x)
            logp_clean, logp_sae = F.log_softmax(clean, 1), F.log_softmax(spliced, 1)
            sums["agree"] += (clean.argmax(1) == spliced.argmax(1)).sum().item()
            sums["kl"] += (logp_clean.exp() * (logp_clean - logp_sae)).sum().item()
            sums["ce_clean"] += F.cross_entropy(clean, y, reduction="sum").item()
            sums["ce_sae"] += F.cross_entropy(spliced, y, reduction="sum").item()
            sums["ce_zero"] += F.cross_entropy(zero, y, reduction="sum").item()
            sums["acc_clean"] += (clean.argmax(1) == y).sum().item()
            sums["acc_sae"] += (spliced.argmax(1) == y).sum().item()
    finally:
        handle.remove()
    if not logits:
        return {}, np.concatenate(vectors)
    n = len(indices)
    m = {k: v / n for k, v in sums.items()}
    gap = m["ce_zero"] - m["ce_clean"]
    return {
        "downstream_images": n,
        "downstream_top1_agreement": m["agree"],
        "downstream_kl": m["kl"],
        "downstream_ce_clean": m["ce_clean"],
        "downstream_ce_sae": m["ce_sae"],
        "downstream_ce_zero": m["ce_zero"],
        "downstream_ce_recovered": (m["ce_zero"] - m["ce_sae"]) / gap if gap > 0 else float("nan"),
        "downstream_accuracy_clean": m["acc_clean"],
        "downstream_accuracy_sae": m["acc_sae"],
    }, np.concatenate(vectors)


def _load_external(ctx: StageContext, layer_cfg, d_in: int):
    """An SAE trained elsewhere (SAELens folder, safetensors or state dict), checked against the layer."""
    s = layer_cfg.sae
    path = ctx.cfg.resolve(s.weights)
    try:
        sae = load_external_sae(
            path, d_in=d_in, keys=dataclasses.asdict(s.keys), architecture=s.architecture, k=s.k
        )
    except SAEFormatError as exc:
        raise ConfigError([f"layers.{layer_cfg.name}.sae.weights: {exc}"]) from None
    info = getattr(sae, "external_info", {})
    ctx.console.info(f"  {layer_cfg.name}: loaded {sae.d_sae} features from {path.name}")
    for note in info.get("notes", []):
        ctx.console.detail(note)
    return sae, {"source": "external", "file": path.name, **info}


def run(ctx: StageContext) -> None:
    data = open_dataset(ctx.inputs["dataset"], ctx.cfg)
    model = load_model(ctx.inputs["model"], ctx.cfg.model, data.n_classes, ctx.device)
    heldout_images = data.indices("heldout")[:MAX_EVAL_IMAGES]
    main = ctx.ranks.main
    for layer_cfg in ctx.cfg.layers:
        s = layer_cfg.sae
        folder = ctx.out / layer_cfg.name
        if (folder / "training.json").exists():
            continue  # finished before an interruption
        store = VectorStore(ctx.inputs["activations"] / layer_cfg.name)
        d_in = store.shape[1]
        if s.weights:
            if not main:
                continue
            sae, stats = _load_external(ctx, layer_cfg, d_in)
        else:
            d_sae = s.expansion * d_in
            if s.architecture != "relu" and s.k >= d_sae:
                raise ConfigError(
                    [
                        f"layers.{layer_cfg.name}.sae.k: {s.k} is not below the number of features "
                        f"({d_sae} = {s.expansion} x {d_in} channels). Fix: lower k or raise "
                        "expansion."
                    ]
                )
            with ctx.progress(s.steps, f"sae {layer_cfg.name}") as bar:
                sae, stats = train_sae(
                    store,
                    d_sae=d_sae,
                    architecture=s.architecture,
                    k=s.k,
                    l1_coefficient=s.l1_coefficient,
                    steps=s.steps,
                    batch_size=s.batch_size,
                    lr=s.lr,
                    seed=s.seed,
                    device=ctx.device,
                    progress=lambda step: bar.set(step + 1),
                    checkpoint=folder / "checkpoint.pt",
                    dist=ctx.ranks.dist,
                )
            if not main:
                continue
        sae = sae.to(ctx.device).eval()
        heldout = np.load(ctx.inputs["activations"] / layer_cfg.name / "heldout.npy", mmap_mode="r")
        metrics = evaluate_sae(sae, heldout, layer_cfg.sae.eval_vector_batch_size)
        if len(heldout_images):
            downstream, all_positions = downstream_metrics(
                model,
                layer_cfg.name,
                sae,
                data,
                heldout_images,
                ctx.device,
                layer_cfg.sae.eval_batch_size,
                logits=ctx.cfg.model.head == "logits",
            )
            metrics.update(
                {
                    f"uniform_{k}": v
                    for k, v in evaluate_sae(sae, all_positions, layer_cfg.sae.eval_vector_batch_size).items()
                }
            )
            metrics.update(downstream)
        # What the SAE is and where it came from (trained here, or the loader's account of the file).
        description = getattr(sae, "description", None)
        save_sae(sae.cpu(), folder, metrics=metrics, description=description)
        # The same weights in the SAELens layout, so other tools can load atlasgen's SAEs.
        save_saelens(sae, folder / "saelens", hook_name=layer_cfg.name, description=description)
        (folder / "checkpoint.pt").unlink(missing_ok=True)
        # Written last: marks the layer as done for a resumed run.
        atomic_write_json(folder / "training.json", {k: v for k, v in stats.items() if "second" not in k})
        ctx.console.info(
            f"  {layer_cfg.name}: {sae.d_sae} features, explained variance "
            f"{metrics['explained_variance']:.3f} "
            f"(all positions {metrics.get('uniform_explained_variance', float('nan')):.3f}), "
            f"L0 {metrics['l0']:.1f}, dead {metrics['dead_fraction']:.1%}, "
            f"top-1 agreement {metrics.get('downstream_top1_agreement', float('nan')):.1%}, "
            f"CE recovered {metrics.get('downstream_ce_recovered', float('nan')):.3f} "
            f"({stats.get('samples_per_second', 0):.0f} vectors/s)"
        )
