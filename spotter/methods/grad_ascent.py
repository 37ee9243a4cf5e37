"""Gradient Ascent (GA, "NegGrad"): maximise the cross-entropy on the forget set.

Data: reads only the forget set D_f with its labels.
Reference: Thudi et al. 2022 / Golatkar et al. 2020, as run in Unlearn-Sparse (Jia et al.,
NeurIPS'23; github.com/OPTML-Group/Unlearn-Sparse, `unlearn/GA.py`; docs/baselines.md §4.4):
minimise -E_{D_f} CE(p_θ(x), y).
Non-obvious settings: the objective is unbounded, so the run length (epochs × lr) is the real
knob; Sparse's maintainers later advise lr 5e-4..1e-3 when forgetting is weak, SFR-on adds a
gradient-norm clip of 0.1 (`clip=0.1`; 0 = off, Sparse's default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import Splits
from spotter.methods import _common

NEEDS = ("forget",)
TUNE = {"lr": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3], "epochs": [2, 5]}


@dataclass
class Config:
    """Gradient-ascent settings. Search: lr 1e-5..1e-3 (log), epochs 1..10."""

    lr: float = 1e-4  # Unlearn-Sparse README (GA, 5 epochs, lr 1e-4)
    epochs: int = 5  # Unlearn-Sparse README
    batch_size: int = 256  # Unlearn-Sparse default
    momentum: float = 0.9  # Unlearn-Sparse
    weight_decay: float = 5e-4  # Unlearn-Sparse
    clip: float = 0.0  # gradient-norm clip; 0 = off (Sparse), 0.1 in SFR-on
    augment: bool = True  # training transforms (docs/baselines.md preamble)
    seed: int = 0


def ascent_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-CE(p_θ(x), y): descending it ascends the forget loss (§4.4)."""
    return -F.cross_entropy(logits, y)


def unlearn(
    model: nn.Module, splits: Splits, cfg: Config, extra_loss: _common.ExtraLoss | None = None
) -> nn.Module:
    """Gradient ascent on D_f from a copy of `model`."""
    forget = _common.require(splits.forget, "forget", "grad_ascent")
    student, device = _common.start(model, cfg.seed)
    opt = _common.optimizer("sgd", student.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)

    def clip() -> None:
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.clip)

    history: list[dict] = []
    for epoch in range(cfg.epochs):
        student.train()
        total = 0.0
        for idx in _common.shuffled(len(forget), cfg.batch_size, g):
            x, y = _common.load(forget, idx, device, cfg.augment, g)
            loss = ascent_loss(student(x), y)
            before = clip if cfg.clip > 0 else None
            total += _common.step(opt, loss, student, extra_loss, before, "GA loss") * len(y)
        _common.log_epoch(history, "grad_ascent", epoch + 1, cfg.epochs, loss=total / len(forget))
    return _common.finish(student, history)
