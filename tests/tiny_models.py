"""Small model factories for tests (`model.source: factory`, arch 'tests.tiny_models:NAME')."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    """A three-layer conv net ending in global average pooling and one linear layer."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def tiny_vit(num_classes: int = 10) -> nn.Module:
    """torchvision's VisionTransformer at 32 px: 4x4 patches of 8 px, 2 blocks of width 32."""
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=num_classes,
    )
    nn.init.normal_(vit.heads.head.weight, std=0.1)  # torchvision starts the head at zero: no signal to study
    return vit


class _Stage(nn.Module):
    """Two convolutions with a residual connection, joined by functional ReLUs."""

    def __init__(self, width: int):
        super().__init__()
        self.conv_a = nn.Conv2d(width, width, 3, padding=1)
        self.conv_b = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        import torch

        return torch.relu(x + self.conv_b(F.relu(self.conv_a(x))))


class _FunctionalBody(nn.Module):
    """A stem and two residual stages in the functional style: ``torch.relu``/``F.relu`` between
    convolutions, ``F.max_pool2d`` after the stem; module paths like ``stage2.conv_b``."""

    def __init__(self, width: int):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.stage1 = _Stage(width)
        self.stage2 = _Stage(width)

    def pooled(self, x):
        """The last stage's output, averaged over positions."""
        x = F.max_pool2d(F.relu(self.stem(x)), 2)
        return self.stage2(self.stage1(x)).mean(dim=(2, 3))


class FunctionalResNet(_FunctionalBody):
    """A small residual CNN in the functional style (:class:`_FunctionalBody`) with a linear head."""

    def __init__(self, n_classes: int = 4, width: int = 8):
        super().__init__(width)
        self.fc = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.fc(self.pooled(x))


def functional_resnet(n_classes: int = 4) -> nn.Module:
    """FunctionalResNet, its class count taken as ``n_classes`` (not ``num_classes``)."""
    return FunctionalResNet(n_classes)


def fixed_four(width: int = 8) -> nn.Module:
    """FunctionalResNet with 4 outputs and no class-count parameter."""
    return FunctionalResNet(4, width)


def broken_factory(num_classes: int = 4) -> nn.Module:
    """A factory that fails, as a user's might."""
    raise RuntimeError("weights file corrupt: expected 64 channels")


class _GatedStage(nn.Module):
    """A residual stage whose branch is scaled by a sigmoid gate: not linear between its input and output."""

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.gate = nn.Conv2d(width, width, 1)

    def forward(self, x):
        import torch

        return x + self.conv(x) * torch.sigmoid(self.gate(x))


class GatedResNet(FunctionalResNet):
    """FunctionalResNet with a third, gated stage: stage1 -> stage2 is linear once ReLUs are,
    stage2 -> stage3 is not."""

    def __init__(self, n_classes: int = 4, width: int = 8):
        super().__init__(n_classes, width)
        self.stage3 = _GatedStage(width)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem(x)), 2)
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def gated_resnet(n_classes: int = 4) -> nn.Module:
    return GatedResNet(n_classes)


class TinyEncoder(_FunctionalBody):
    """A headless encoder: FunctionalResNet's body, returning a dict of a 12-d embedding and the
    pooled features, as self-supervised encoders do (no class logits)."""

    def __init__(self, width: int = 8, dim: int = 12):
        super().__init__(width)
        self.proj = nn.Linear(width, dim)

    def forward(self, x):
        pooled = self.pooled(x)
        return {"embedding": self.proj(pooled), "pooled": pooled}


def tiny_encoder() -> nn.Module:
    return TinyEncoder()


def whole_clip() -> nn.Module:
    """A whole open_clip CLIP model (both towers, small): its forward returns a tuple."""
    import open_clip

    return open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
    )
