"""A tiny CNN for tests and smoke runs: two conv layers and a 32-d embedding, trains in seconds."""

from __future__ import annotations

import torch
from torch import nn


class TinyFeatures(nn.Module):
    """(B, C, H, W) -> (B, 2 * width) through two conv + BN + ReLU stages and global pooling."""

    def __init__(self, width: int = 16, in_channels: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.out_dim = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.body(x), 1), 1)  # (B, D)
