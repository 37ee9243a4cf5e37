"""Fine-tune (FT): keep training the original on the retain set only ("catastrophic forgetting").

Data: reads the retain set D_r; never sees D_f.
Reference: Warnecke et al. 2023 / Golatkar et al. 2020 as run in Unlearn-Sparse and SalUn
(github.com/OPTML-Group/Unlearn-Sparse, `unlearn/FT.py`; docs/baselines.md §4.2): minimise
E_{D_r} CE(p_θ(x), y) from θ_o.
Non-obvious settings: constant learning rate (Sparse's MultiStepLR milestones 91/136 never fire in
10 epochs); augmentation as in training. SFR-on uses a cosine schedule and the SCRUB notebook
wd 0; we follow Unlearn-Sparse.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import Splits
from spotter.methods import _common

NEEDS = ("retain",)
TUNE = {"lr": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "epochs": [5, 10]}


@dataclass
class Config:
    """Fine-tuning settings. Search: lr 1e-4..1e-1 (log), epochs 5..20."""

    lr: float = 0.01  # Unlearn-Sparse / SalUn README (FT, 10 epochs, lr 0.01)
    epochs: int = 10  # Unlearn-Sparse / SalUn README
    batch_size: int = 256  # Unlearn-Sparse default --batch_size 256
    momentum: float = 0.9  # Unlearn-Sparse
    weight_decay: float = 5e-4  # Unlearn-Sparse
    augment: bool = True  # training transforms (docs/baselines.md preamble)
    seed: int = 0


def unlearn(
    model: nn.Module, splits: Splits, cfg: Config, extra_loss: _common.ExtraLoss | None = None
) -> nn.Module:
    """Fine-tune a copy of `model` on splits.retain with cross-entropy."""
    retain = _common.require(splits.retain, "retain", "finetune")
    student, device = _common.start(model, cfg.seed)
    opt = _common.optimizer("sgd", student.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        student.train()
        total, n = 0.0, 0
        for idx in _common.shuffled(len(retain), cfg.batch_size, g):
            x, y = _common.load(retain, idx, device, cfg.augment, g)
            loss = F.cross_entropy(student(x), y)  # E_{D_r} CE (§4.2)
            total += _common.step(opt, loss, student, extra_loss, what="finetune loss") * len(y)
            n += len(y)
        _common.log_epoch(history, "finetune", epoch + 1, cfg.epochs, loss=total / n)
    return _common.finish(student, history)
