"""NegGrad+: descend the retain loss and ascend the forget loss in the same step, near θ_o.

Data: reads the retain set D_r and the forget set D_f.
Reference: Kurmanji et al., "Towards Unbounded Machine Unlearning" (SCRUB), NeurIPS'23; the
official notebook's NegGrad+ cell (github.com/meghdadk/SCRUB; docs/baselines.md §4.5): per step a retain
batch and a cycled forget batch,
    loss = α·[CE_r + (λ/2)·‖θ − θ_o‖²] − (1 − α)·CE_f.
Non-obvious settings: the model stays in eval mode (BatchNorm frozen), SGD without momentum, and
λ is the run's weight-decay value applied as a pull toward θ_o (not as optimiser decay toward 0).
An epoch is one pass over D_r. DeepUnlearn uses the same form with Optuna-tuned α/lr.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import Splits
from spotter.methods import _common
from spotter.models.batchnorm import set_mode

NEEDS = ("forget", "retain")
TUNE = {"lr": [1e-3, 3e-3, 1e-2, 3e-2], "alpha": [0.9, 0.95, 0.99]}


@dataclass
class Config:
    """NegGrad+ settings. Search: lr 1e-3..5e-2 (log), alpha 0.8..0.999, epochs 2..10."""

    alpha: float = 0.95  # SCRUB notebook
    lam: float = 5e-4  # λ = the run's weight decay (SCRUB notebook)
    lr: float = 0.01  # SCRUB notebook
    momentum: float = 0.0  # SCRUB notebook (plain SGD)
    epochs: int = 10  # SCRUB notebook
    batch_size: int = 128  # SCRUB notebook retain batch
    forget_batch_size: int = 128  # SCRUB notebook (forget loader cycled alongside)
    freeze_bn: bool = True  # SCRUB notebook keeps the model in eval mode
    augment: bool = True  # training transforms (docs/baselines.md preamble)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")


def neggrad_plus_loss(
    logits_r: torch.Tensor,
    y_r: torch.Tensor,
    logits_f: torch.Tensor,
    y_f: torch.Tensor,
    params: list[torch.Tensor],
    anchor: list[torch.Tensor],
    alpha: float,
    lam: float,
) -> torch.Tensor:
    """α·[CE_r + (λ/2)‖θ − θ_o‖²] − (1 − α)·CE_f (§4.5)."""
    dist = sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))
    ce_r, ce_f = F.cross_entropy(logits_r, y_r), F.cross_entropy(logits_f, y_f)
    return alpha * (ce_r + lam / 2 * dist) - (1 - alpha) * ce_f


def unlearn(
    model: nn.Module, splits: Splits, cfg: Config, extra_loss: _common.ExtraLoss | None = None
) -> nn.Module:
    """NegGrad+ on a copy of `model`: retain batches with cycled forget batches."""
    forget = _common.require(splits.forget, "forget", "neggrad_plus")
    retain = _common.require(splits.retain, "retain", "neggrad_plus")
    student, device = _common.start(model, cfg.seed)
    params = list(student.parameters())
    anchor = [p.detach().clone() for p in params]  # θ_o
    opt = _common.optimizer("sgd", params, cfg.lr, cfg.momentum)
    g = torch.Generator().manual_seed(cfg.seed)
    forget_batches = _common.cycle(len(forget), cfg.forget_batch_size, g)
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        set_mode(student, cfg.freeze_bn)
        total = 0.0
        for idx in _common.shuffled(len(retain), cfg.batch_size, g):
            xr, yr = _common.load(retain, idx, device, cfg.augment, g)
            xf, yf = _common.load(forget, next(forget_batches), device, cfg.augment, g)
            loss = neggrad_plus_loss(student(xr), yr, student(xf), yf, params, anchor, cfg.alpha, cfg.lam)
            total += _common.step(opt, loss, student, extra_loss, what="NegGrad+ loss") * len(yr)
        _common.log_epoch(history, "neggrad_plus", epoch + 1, cfg.epochs, loss=total / len(retain))
    return _common.finish(student, history)
