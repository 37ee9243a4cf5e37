"""Boundary Expanding (BE): push forget samples into an extra "shadow" class, then delete it.

Data: reads only the forget set D_f.
Reference: Chen et al., "Boundary Unlearning", CVPR'23 (github.com/TY-LEE-KR/Boundary-Unlearning-Code,
`boundary_expanding`; docs/baselines.md §4.7): widen the head to K+1 outputs (old rows copied, the new
row freshly initialised), minimise CE(p_θ(x), K) on D_f, then prune the shadow row and return a
K-way model.
Non-obvious settings: the pruning step is part of the method (the original code does it; SalUn's
copy forgets it and returns a K+1-way model). The shadow row is initialised like a fresh
nn.Linear row from the seeded RNG. "+spotter" sees only the K real outputs during training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import Splits
from spotter.methods import _common
from spotter.models.batchnorm import set_mode
from spotter.models.heads import head_like

NEEDS = ("forget",)
TUNE = {"lr": [1e-5, 1e-4, 1e-3, 1e-2], "epochs": [5, 10]}


@dataclass
class Config:
    """Boundary Expanding settings. Search: lr 1e-6..1e-2 (log), epochs 5..20."""

    lr: float = 1e-5  # paper's code
    momentum: float = 0.9  # paper's code
    weight_decay: float = 0.0  # paper's code
    epochs: int = 10  # paper's code
    batch_size: int = 64  # paper's code
    freeze_bn: bool = False  # paper's code trains in train mode
    augment: bool = True  # training transforms (docs/baselines.md preamble)
    seed: int = 0


def expand_head(head: nn.Linear) -> nn.Linear:
    """K+1 outputs: the old rows copied, a fresh shadow row (torch's nn.Linear init)."""
    wide = head_like(head, head.out_features + 1)  # a cosine head stays a cosine head
    with torch.no_grad():
        wide.weight[: head.out_features] = head.weight
        if head.bias is not None:
            wide.bias[: head.out_features] = head.bias
    return wide


def prune_head(wide: nn.Linear) -> nn.Linear:
    """Drop the shadow row: back to K outputs."""
    k = wide.out_features - 1
    head = head_like(wide, k)
    with torch.no_grad():
        head.weight.copy_(wide.weight[:k])
        if wide.bias is not None:
            head.bias.copy_(wide.bias[:k])
    return head


def unlearn(
    model: nn.Module, splits: Splits, cfg: Config, extra_loss: _common.ExtraLoss | None = None
) -> nn.Module:
    """Boundary Expanding on a copy of `model`; returns a K-way model."""
    forget = _common.require(splits.forget, "forget", "boundary_expand")
    student, device = _common.start(model, cfg.seed)
    k = student.head.out_features
    student.head = expand_head(student.head)
    opt = _common.optimizer("sgd", student.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        set_mode(student, cfg.freeze_bn)
        total = 0.0
        for idx in _common.shuffled(len(forget), cfg.batch_size, g):
            x, _ = _common.load(forget, idx, device, cfg.augment, g)
            shadow = torch.full((len(x),), k, dtype=torch.long, device=device)
            loss = F.cross_entropy(student(x), shadow)  # every forget sample -> the shadow class
            total += _common.step(opt, loss, student, extra_loss, what="BE loss") * len(x)
        _common.log_epoch(history, "boundary_expand", epoch + 1, cfg.epochs, loss=total / len(forget))
    student.head = prune_head(student.head)
    return _common.finish(student, history)
