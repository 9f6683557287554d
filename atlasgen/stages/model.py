"""Stage `model`: the classifier whose layers the atlas studies.

With `model.weights` the weights are loaded from that file; otherwise the demo
model is trained here (Adam, flips and small shifts as augmentation), with a
checkpoint after every epoch so a killed build resumes from the last epoch.
Either way the held-out accuracy is measured and recorded.
"""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from atlasgen.cache import atomic_write_bytes, atomic_write_json
from atlasgen.config import ConfigError
from atlasgen.data import open_dataset
from atlasgen.models import (
    NO_HEAD_REASON,
    ZERO_SHOT_HEAD,
    attach_views,
    build_model,
    class_outputs,
    layer_shapes,
    pretrained_state,
    read_state,
    token_modes,
    zero_shot_prompts,
    zero_shot_weights,
)
from atlasgen.stage import Stage, StageContext
from atlasgen.zoo import DEMO_LAYERS

STAGE = Stage(
    "model", deps=("dataset",), config=("model", "model_weights"), what="the classifier", resumable=True
)


def _save(path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to 1/8 of the image, per batch."""
    if rng.random() < 0.5:
        x = x.flip(3)
    s = x.shape[-1] // 8
    dy, dx = rng.integers(-s, s + 1, size=2)
    return torch.roll(x, shifts=(int(dy), int(dx)), dims=(2, 3))


@torch.no_grad()
def accuracy(model: nn.Module, data, indices: np.ndarray, device: str, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for idx, images in data.batches(indices, batch_size, device):
        logits = model(images)[:, class_outputs(model, data.n_classes)]
        correct += int((logits.argmax(1).cpu().numpy() == data.labels[idx]).sum())
    return correct / max(1, len(indices))


def sibling_targets(classes: list[dict], eps: float) -> torch.Tensor:
    """(K, K) soft targets: row c keeps 1 - eps on class c and spreads eps evenly over the
    other classes of c's superclass (dataset.json's "superclass"); a class without siblings
    keeps its one-hot row. Rows sum to 1."""
    n = len(classes)
    targets = torch.eye(n, dtype=torch.float32)
    for c, cls in enumerate(classes):
        sup = cls.get("superclass")
        sibs = [j for j, other in enumerate(classes) if j != c and sup and other.get("superclass") == sup]
        if sibs:
            targets[c, c] = 1.0 - eps
            targets[c, sibs] = eps / len(sibs)
    return targets


def sibling_smoothed_loss(classes: list[dict], eps: float):
    """Cross-entropy against sibling_targets (`model.train.sibling_smoothing`): label smoothing
    (Szegedy et al. 2016) restricted to the superclass, a hierarchical soft target in the spirit of
    soft-label hierarchy losses (Bertinetto et al. 2020, "Making better mistakes")."""
    table = sibling_targets(classes, eps)

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -(table.to(logits.device)[y] * torch.log_softmax(logits, 1)).sum(1).mean()

    return loss


def train(model: nn.Module, data, ctx: StageContext) -> float:
    """Train on the training split; returns the seconds spent (this run)."""
    tc = ctx.cfg.model.train
    device = ctx.device
    train_idx = data.indices("train")
    steps_per_epoch = (len(train_idx) + tc.batch_size - 1) // tc.batch_size
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=tc.lr, total_steps=tc.epochs * steps_per_epoch, pct_start=0.15
    )
    start_epoch = 0
    ckpt = ctx.out / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start_epoch = state["epoch"]
        ctx.console.detail(f"resuming demo model training at epoch {start_epoch + 1}")
    model.to(device)
    loss_fn = (
        sibling_smoothed_loss(data.classes, tc.sibling_smoothing)
        if tc.sibling_smoothing > 0
        else nn.CrossEntropyLoss()
    )
    begin = time.perf_counter()
    with ctx.progress((tc.epochs - start_epoch) * steps_per_epoch, "training") as bar:
        for epoch in range(start_epoch, tc.epochs):
            # The epoch's order and augmentation depend only on (seed, epoch): a resumed run matches an
            # uninterrupted one.
            rng = np.random.default_rng([tc.seed, epoch])
            torch.manual_seed(tc.seed * 1000 + epoch)
            order = train_idx[rng.permutation(len(train_idx))]
            model.train()
            for step in range(steps_per_epoch):
                idx = order[step * tc.batch_size : (step + 1) * tc.batch_size]
                x = _augment(data.batch(idx), rng).to(device)
                y = torch.from_numpy(data.labels[idx]).to(device)
                loss = loss_fn(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
            _save(
                ckpt,
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "epoch": epoch + 1,
                },
            )
            ctx.console.detail(f"epoch {epoch + 1}/{tc.epochs}: loss {loss.item():.3f}")
    return time.perf_counter() - begin


def match_outputs(classes: list[dict], labels_file, n_outputs: int) -> list[int] | None:
    """The model output of each dataset class: identity when the model has one output per
    class and no labels file; else each class's id (folder name, e.g. a wnid) or readable
    name looked up among the labels file's lines. None when some class has no output."""
    if labels_file is None:
        return list(range(len(classes))) if n_outputs == len(classes) else None
    lines = [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines()]
    if len(lines) != n_outputs:
        raise ConfigError(
            [
                f"model.labels: {labels_file.name} has {len(lines)} lines but the model has "
                f"{n_outputs} outputs. Fix: one label per output, in output order."
            ]
        )
    index = {}
    for i, line in enumerate(lines):
        for key in {line, line.lower()}:
            index.setdefault(key, i)
    out, missing = [], []
    for c in classes:
        name = str(c["name"])
        keys = (
            str(c.get("key", "")),
            name,
            name.lower(),
            name.split(",")[0].strip().lower(),
        )  # "tench, Tinca tinca" -> "tench"
        hit = next((index[k] for k in keys if k in index), None)
        (missing if hit is None else out).append(c["name"] if hit is None else hit)
    if missing:
        raise ConfigError(
            [
                f"model.labels: no output of the model is labelled {', '.join(repr(m) for m in missing[:5])}"
                f"{' and others' if len(missing) > 5 else ''}. Fix: name the classes (folder "
                f"names, CSV labels or dataset.class_names) as in {labels_file.name}."
            ]
        )
    return out


def provenance(model_cfg, weights_path, trained: bool, n_train: int) -> dict:
    """Where the model's weights came from, for the model page: trained here by atlasgen, or used as given."""
    if trained:
        return {
            "trained_by_atlasgen": True,
            "n_train_images": n_train,
            "weights": f"trained by atlasgen on {n_train} training images",
        }
    if weights_path is not None:
        how = f"loaded from {Path(weights_path).name} (model.weights)"
    elif model_cfg.source == "factory":
        how = f"as built by {model_cfg.arch} (its own initialisation)"
    elif model_cfg.pretrained:
        how = {
            "inceptionv1": "pretrained weights (InceptionV1 from lucent's zoo)",
            "torchvision": f"torchvision's pretrained {model_cfg.arch} weights",
            "timm": f"timm's pretrained {model_cfg.arch} weights",
            "open_clip": f"open_clip's {model_cfg.arch} weights ({model_cfg.pretrained}), visual tower",
        }[model_cfg.source]
    else:
        how = f"random initialisation (model.pretrained: false, seed {model_cfg.train.seed})"
    return {"trained_by_atlasgen": False, "n_train_images": 0, "weights": f"used as given: {how}"}


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    data = open_dataset(ctx.inputs["dataset"], ctx.cfg)
    torch.manual_seed(cfg.model.train.seed)
    model = build_model(cfg.model, data.n_classes)
    train_seconds = 0.0
    path = cfg.resolve(cfg.model.weights) if cfg.model.weights else None
    read = read_state(cfg.model, path) if path is not None else None  # read once, for both towers
    state = pretrained_state(cfg.model, path, read)
    if cfg.model.zero_shot.template is not None:
        # The text tower of the same weights; with random weights, the same seeded initialisation
        # as the visual tower's, so both towers come from one model.
        torch.manual_seed(cfg.model.train.seed)
        head = zero_shot_weights(cfg.model, [c["name"] for c in data.classes], path, read)
        state = {**(state if state is not None else model.state_dict()), f"{ZERO_SHOT_HEAD}.weight": head}
    if state is not None:
        try:
            model.load_state_dict(state)
        except Exception as exc:  # a wrong file must end in a message, not a traceback
            where = repr(str(path)) if path else "the downloaded weights"
            raise ConfigError(
                [
                    f"model.weights: cannot load {where} into model {cfg.model.source!r}: "
                    f"{str(exc).splitlines()[0]}. Fix: give a state dict saved from this "
                    "architecture."
                ]
            ) from None
        model.to(ctx.device)
    elif cfg.model.source == "demo":
        train_seconds = train(model, data, ctx)
    pre = getattr(model, "atlas_preprocess", None)  # none on the demo model: it normalises itself
    if pre is not None:
        ctx.console.info(f"  {pre.describe()}")
    model.to(ctx.device).eval()
    heldout = data.indices("heldout")
    headless = cfg.model.head == "none"
    if headless:  # an encoder: no outputs to match to classes, no accuracy
        n_outputs, outputs, acc = None, None, None
    else:
        with torch.no_grad():
            size = data.image_size
            n_outputs = int(model(torch.zeros(1, 3, size, size, device=ctx.device)).shape[-1])
        outputs = match_outputs(
            data.classes, cfg.resolve(cfg.model.labels) if cfg.model.labels else None, n_outputs
        )
        if outputs is None:
            raise ConfigError(
                [
                    f"model: it has {n_outputs} outputs but the dataset has {data.n_classes} classes. "
                    "Fix: set model.labels to a file naming each output (one per line), so the "
                    "classes can be matched to outputs."
                ]
            )
        model.atlas_class_outputs = outputs
        acc = accuracy(model, data, heldout, ctx.device, cfg.model.batch_size) if len(heldout) else None
    chance = 1.0 / data.n_classes
    trained = state is None and cfg.model.source == "demo"
    origin = provenance(cfg.model, path, trained, len(data.indices("train")))
    if cfg.model.zero_shot.template is not None:
        origin["zero_shot"] = {
            "template": cfg.model.zero_shot.template,
            "prompts": zero_shot_prompts(cfg.model.zero_shot.template, [c["name"] for c in data.classes]),
        }
        origin["weights"] += (
            f"; zero-shot head: the text tower's embeddings of {cfg.model.zero_shot.template!r} "
            f"for the {data.n_classes} class names"
        )
    model.cpu()
    _save(ctx.out / "model.pt", model.state_dict())
    (ctx.out / "checkpoint.pt").unlink(missing_ok=True)
    # Shapes of the configured layers (and of every DemoNet layer); the activations stage measures its own.
    attach_views(model, cfg.layers)
    names = list(DEMO_LAYERS) if cfg.model.source == "demo" else []
    shapes = layer_shapes(
        model, names + [layer.name for layer in cfg.layers if layer.name not in names], cfg.dataset.image_size
    )
    tokens = token_modes(model, [layer.name for layer in cfg.layers], cfg.dataset.image_size)
    atomic_write_json(
        ctx.out / "model.json",
        {
            "name": cfg.model.name,
            "source": cfg.model.source,
            "arch": cfg.model.arch,
            "layers": shapes,
            "tokens": tokens,  # what each token-sequence layer studies, in words; image maps absent
            "n_classes": data.n_classes,
            "head": cfg.model.head,
            "n_outputs": n_outputs,
            "class_outputs": outputs,
            "preprocess": dataclasses.asdict(pre) if pre is not None else None,
            "heldout_accuracy": None if acc is None else round(acc, 4),
            "n_heldout_images": len(heldout),
            "chance_accuracy": round(chance, 4),
            **origin,
        },
    )
    notes = []
    if headless:
        notes.append(f"model: no held-out accuracy: {NO_HEAD_REASON}")
    elif acc is None:
        notes.append("model: no held-out images, so no held-out accuracy (dataset.heldout_fraction is 0)")
    elif data.n_classes > 1 and acc <= chance:
        notes.append(
            f"model: held-out accuracy {acc:.1%} is at or below chance ({chance:.1%}) on "
            f"{len(heldout)} images: "
            f"the model ({origin['weights']}) does not separate these classes, so its units say "
            "little about them"
        )
    atomic_write_json(ctx.out / "build_notes.json", notes)
    if acc is not None:
        spent = f" after {train_seconds:.0f}s of training" if train_seconds else ""
        ctx.console.info(f"  held-out accuracy {acc:.1%} (chance {chance:.1%}){spent}")
