"""A small face-recognition ResNet (the IResNet layout of ArcFace / insightface, fewer blocks).

Improved residual blocks (BN-conv-BN-PReLU-conv-BN, the stride on the second conv; Deng et al.,
CVPR'19, Fig. 7 / insightface `iresnet`), four stages of stride 2 after a stride-1 3x3 stem, and the
"E" output layer: BN -> dropout -> FC -> BN on the flattened last map. A 112x112 aligned face ends
as a 7x7 map; other sizes are average-pooled to that 7x7 grid (upsampled by repetition when
smaller), so one model takes any input size (tests use 16-32 px). `width` is the stem's channel
count; the embedding has 8·width dimensions (width 64 = the usual 512-d face embedding).
"""

from __future__ import annotations

import torch
from torch import nn


class IRBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_planes),
            nn.Conv2d(in_planes, planes, 3, 1, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.PReLU(planes),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class FaceResNetFeatures(nn.Module):
    """(B, C, H, W) -> (B, 8 * width) face embedding (before the cosine head's normalisation)."""

    def __init__(
        self,
        width: int = 64,
        in_channels: int = 3,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        grid: int = 7,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width)
        )
        stages, in_planes = [], width
        for i, n in enumerate(blocks):
            planes = width * 2 ** min(i, 3)
            stage = [IRBlock(in_planes, planes, 2)] + [IRBlock(planes, planes) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            in_planes = planes
        self.stages = nn.Sequential(*stages)
        self.grid = grid
        self.out_dim = 8 * width
        self.bn = nn.BatchNorm2d(in_planes)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_planes * grid * grid, self.out_dim)
        self.embedding_bn = nn.BatchNorm1d(self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.stages(self.stem(x)))  # (B, 8w, H/16, W/16)
        if out.shape[-2:] != (self.grid, self.grid):
            out = nn.functional.adaptive_avg_pool2d(out, self.grid)
        out = self.dropout(torch.flatten(out, 1))
        return self.embedding_bn(self.fc(out))  # (B, D)
