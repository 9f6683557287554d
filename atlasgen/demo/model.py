"""DemoNet: a small classifier whose last block mirrors InceptionV1's mixed5b.

InceptionV1 ends in mixed5b (parallel 1x1 / 3x3 / 5x5 / pool-projection branches,
concatenated) -> global average pool -> one linear layer (softmax2). DemoNet keeps
that ending so the demo's class weights are exact in the same way
(feature -> class = W_fc . W_dec^T), and has a mixed5a block before it so
layer-to-layer circuits have two Inception layers to connect.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2), nn.ReLU(inplace=False))


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on channels, as in InceptionV1's mixed blocks."""

    def __init__(self, c_in: int, c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int, c_pool: int):
        super().__init__()
        self.branch1x1 = ConvReLU(c_in, c1, 1)
        self.branch3x3 = nn.Sequential(ConvReLU(c_in, c3_reduce, 1), ConvReLU(c3_reduce, c3, 3))
        self.branch5x5 = nn.Sequential(ConvReLU(c_in, c5_reduce, 1), ConvReLU(c5_reduce, c5, 5))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), ConvReLU(c_in, c_pool, 1))
        self.out_channels = c1 + c3 + c5 + c_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.branch1x1(x), self.branch3x3(x), self.branch5x5(x), self.branch_pool(x)], dim=1
        )


class DemoNet(nn.Module):
    """64 px RGB in [0, 1] -> class logits. mixed5b has 128 channels on an 8x8 grid (64 px input)."""

    def __init__(self, n_classes: int):
        super().__init__()
        # A slim stem keeps CPU training and feature visualisation fast; the width is in the mixed blocks.
        self.conv2d0 = ConvReLU(3, 24, 5, stride=2)  # 32x32
        self.conv2d1 = ConvReLU(24, 48, 3, stride=2)  # 16x16
        self.pool = nn.MaxPool2d(3, 2, padding=1)  # 8x8
        self.mixed5a = InceptionBlock(48, 32, 32, 48, 8, 16, 16)  # 112 channels
        self.mixed5b = InceptionBlock(112, 40, 40, 48, 12, 24, 16)  # 128 channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(self.mixed5b.out_channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inputs in [0, 1]; centring here keeps the preprocessing inside the model.
        x = (x - 0.5) / 0.25
        x = self.pool(self.conv2d1(self.conv2d0(x)))
        x = self.mixed5b(self.mixed5a(x))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
