"""Small model factories for tests (`model.source: factory`, arch 'tests.tiny_models:NAME')."""

from __future__ import annotations

from torch import nn


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    """A three-layer conv net ending in global average pooling and one linear layer."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    )


def tiny_vit(num_classes: int = 10) -> nn.Module:
    """torchvision's VisionTransformer at 32 px: 4x4 patches of 8 px, 2 blocks of width 32."""
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                            num_classes=num_classes)
    nn.init.normal_(vit.heads.head.weight, std=0.1)  # torchvision starts the head at zero: no signal to study
    return vit
