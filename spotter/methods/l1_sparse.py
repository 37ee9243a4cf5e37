"""ℓ1-sparse unlearning: fine-tune on the retain set with a decaying ℓ1 penalty on the weights.

Data: reads the retain set D_r only.
Reference: Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS'23
(github.com/OPTML-Group/Unlearn-Sparse, `unlearn/FT.py` with `FT_l1`; docs/baselines.md §4.9):
minimise E_{D_r} CE + γ_t·‖θ‖₁, γ_t = γ·(1 − t/T′) for epochs t < T′ = epochs − no_l1_epochs,
0 afterwards.
Non-obvious settings: ‖θ‖₁ sums every parameter tensor (the released `l1_regularization`); γ is
user-supplied in the paper's code (`--alpha`), community scripts use 1e-4; t counts epochs from 0,
so the first epoch uses the full γ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import Splits
from spotter.methods import _common

NEEDS = ("retain",)
TUNE = {"lr": [3e-3, 1e-2, 3e-2], "gamma": [5e-5, 1e-4, 3e-4]}


@dataclass
class Config:
    """ℓ1-sparse settings. Search: lr 1e-3..1e-1 (log), gamma 1e-5..1e-3 (log), epochs 5..15."""

    gamma: float = 1e-4  # `--alpha` of Unlearn-Sparse; 1e-4 in community scripts
    no_l1_epochs: int = 0  # Unlearn-Sparse default
    lr: float = 0.01  # Unlearn-Sparse README (FT_l1, 10 epochs, lr 0.01)
    epochs: int = 10  # Unlearn-Sparse README
    batch_size: int = 256  # Unlearn-Sparse default
    momentum: float = 0.9  # Unlearn-Sparse
    weight_decay: float = 5e-4  # Unlearn-Sparse
    augment: bool = True  # training transforms (docs/baselines.md preamble)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.gamma < 0 or self.no_l1_epochs < 0:
            raise ValueError(f"gamma and no_l1_epochs must be >= 0, got {self.gamma}, {self.no_l1_epochs}")


def gamma_at(cfg: Config, epoch: int) -> float:
    """γ_t = γ·(1 − t/T′) for t < T′ = epochs − no_l1_epochs, else 0 (epoch t from 0)."""
    t_prime = cfg.epochs - cfg.no_l1_epochs
    return cfg.gamma * (1 - epoch / t_prime) if epoch < t_prime else 0.0


def l1_norm(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in model.parameters())


def unlearn(
    model: nn.Module, splits: Splits, cfg: Config, extra_loss: _common.ExtraLoss | None = None
) -> nn.Module:
    """Fine-tune a copy of `model` on D_r with the decaying ℓ1 penalty."""
    retain = _common.require(splits.retain, "retain", "l1_sparse")
    student, device = _common.start(model, cfg.seed)
    opt = _common.optimizer("sgd", student.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        student.train()
        gamma = gamma_at(cfg, epoch)
        total = 0.0
        for idx in _common.shuffled(len(retain), cfg.batch_size, g):
            x, y = _common.load(retain, idx, device, cfg.augment, g)
            loss = F.cross_entropy(student(x), y)
            if gamma > 0:
                loss = loss + gamma * l1_norm(student)  # E_{D_r} CE + γ_t‖θ‖₁ (§4.9)
            total += _common.step(opt, loss, student, extra_loss, what="l1-sparse loss") * len(y)
        _common.log_epoch(history, "l1_sparse", epoch + 1, cfg.epochs, loss=total / len(retain), gamma=gamma)
    return _common.finish(student, history)
