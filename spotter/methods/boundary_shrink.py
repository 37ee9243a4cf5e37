"""Boundary Shrink (BS): relabel each forget image with the class of its nearest adversarial neighbour.

Data: reads only the forget set D_f with its labels.
Reference: Chen et al., "Boundary Unlearning", CVPR'23 (github.com/TY-LEE-KR/Boundary-Unlearning-Code,
`boundary_shrink`; docs/baselines.md §4.6): x' = clip_[0,1](x + ε·sign(∇_x CE(p_{θ_o}(x), y))) on the
FROZEN ORIGINAL, ŷ = argmax p_{θ_o}(x'), then minimise CE(p_θ(x), ŷ) on the clean x.
Non-obvious settings: the FGSM step is taken in pixel space (normalisation is inside the model),
so ε = 0.1 means what it means in the paper. Labels are computed per batch (so they follow the
batch's augmentation) by the frozen original, never by the student. The original code does not
round x' to the 1/255 grid; SalUn's copy does (`round_pixels=True`). The paper's learning rate
(1e-5) barely moves a small model; SalUn's group searches it from 1e-8 upward and DELETE uses
1e-4 for 20 epochs. The optional "enhanced" terms (curvature penalty, confidence re-weighting)
are not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import Splits
from spotter.methods import _common
from spotter.models.batchnorm import set_mode

NEEDS = ("forget",)
TUNE = {"lr": [1e-5, 1e-4, 1e-3, 1e-2], "epochs": [5, 10]}


@dataclass
class Config:
    """Boundary Shrink settings. Search: lr 1e-6..1e-2 (log), eps 0.03..0.3, epochs 5..20."""

    eps: float = 0.1  # FGSM bound in pixels (paper; SalUn keeps 0.1 fixed)
    round_pixels: bool = False  # paper's code: no; SalUn's copy rounds x' to the 1/255 grid
    lr: float = 1e-5  # paper's code
    momentum: float = 0.9  # paper's code
    weight_decay: float = 0.0  # paper's code
    epochs: int = 10  # paper's code
    batch_size: int = 64  # paper's code
    freeze_bn: bool = False  # paper's code trains in train mode
    augment: bool = True  # training transforms (docs/baselines.md preamble)
    seed: int = 0


def neighbour_labels(
    original: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, round_pixels: bool = False
) -> torch.Tensor:
    """ŷ = argmax p_{θ_o}(x'), x' one FGSM step of size eps on the frozen original (§4.6)."""
    x_adv = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(original(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
    x_adv = (x + eps * grad.sign()).clamp(0, 1)
    if round_pixels:
        x_adv = (x_adv * 255).round() / 255
    with torch.no_grad():
        return original(x_adv).argmax(1)


def unlearn(
    model: nn.Module, splits: Splits, cfg: Config, extra_loss: _common.ExtraLoss | None = None
) -> nn.Module:
    """Boundary Shrink on a copy of `model`; the caller's model is the frozen original."""
    forget = _common.require(splits.forget, "forget", "boundary_shrink")
    student, device = _common.start(model, cfg.seed)
    original = _common.frozen_copy(model)
    opt = _common.optimizer("sgd", student.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        set_mode(student, cfg.freeze_bn)
        total, moved = 0.0, 0
        for idx in _common.shuffled(len(forget), cfg.batch_size, g):
            x, y = _common.load(forget, idx, device, cfg.augment, g)
            y_nb = neighbour_labels(original, x, y, cfg.eps, cfg.round_pixels)
            loss = F.cross_entropy(student(x), y_nb)
            total += _common.step(opt, loss, student, extra_loss, what="BS loss") * len(y)
            moved += int((y_nb != y).sum())
        _common.log_epoch(
            history, "boundary_shrink", epoch + 1, cfg.epochs, loss=total / len(forget), relabelled=moved
        )
    return _common.finish(student, history)
