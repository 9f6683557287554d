"""The model zoo: build a model from the config, know its layers, hook them.

Every model here takes RGB images in [0, 1] (N, 3, S, S) and returns class
logits; any normalisation it needs happens inside the model.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from atlasgen.config import ModelConfig
from atlasgen.demo.model import DemoNet


def build_model(model_cfg: ModelConfig, n_classes: int) -> nn.Module:
    """An untrained model of the configured architecture."""
    if model_cfg.source == "demo":
        return DemoNet(n_classes)
    raise ValueError(f"unknown model source {model_cfg.source!r}")


def load_model(model_dir: Path, model_cfg: ModelConfig, n_classes: int, device: str = "cpu") -> nn.Module:
    """The model stage's trained (or loaded) model, in eval mode with frozen weights."""
    model = build_model(model_cfg, n_classes)
    model.load_state_dict(torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True))
    model.eval().requires_grad_(False)
    return model.to(device)


def get_module(model: nn.Module, path: str) -> nn.Module:
    return dict(model.named_modules())[path]


def classifier_head(model: nn.Module) -> nn.Linear:
    """The final linear layer (logits = fc(avgpool(last block)))."""
    return model.fc


class _StopForward(Exception):
    pass


@contextmanager
def capture(model: nn.Module, layers: list[str], stop: bool = True):
    """Record the outputs of ``layers`` during a forward pass; with ``stop``, the pass
    ends after the last of them (nothing downstream is computed). The hooks are
    removed on exit, also after an error."""
    acts: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    remaining = set(layers)

    def hook_for(name):
        def hook(_module, _inputs, output):
            acts[name] = output
            remaining.discard(name)
            if stop and not remaining:
                raise _StopForward

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in layers]
    try:
        yield acts
    finally:
        for h in handles:
            h.remove()


def layer_activations(model: nn.Module, images: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Activations (N, C, H, W) of ``layers`` for a batch, without running the rest of the model."""
    with capture(model, layers) as acts:
        try:
            model(images)
        except _StopForward:
            pass
    return dict(acts)


def positions_as_vectors(acts: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) activations as (B*H*W, C) vectors, one per position."""
    return acts.permute(0, 2, 3, 1).reshape(-1, acts.shape[1])


def vectors_as_map(vectors: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """The inverse of positions_as_vectors: (B*H*W, D) -> (B, D, H, W)."""
    return vectors.reshape(b, h, w, -1).permute(0, 3, 1, 2)


@torch.no_grad()
def layer_shapes(model: nn.Module, layers: list[str], image_size: int, device: str = "cpu") -> dict[str, list[int]]:
    """(C, H, W) of each layer for one input of the given size."""
    acts = layer_activations(model, torch.zeros(1, 3, image_size, image_size, device=device), layers)
    return {name: list(a.shape[1:]) for name, a in acts.items()}
