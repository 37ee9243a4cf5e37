"""SCRUB: alternate max-steps (move away from the teacher on D_f) and min-steps (stay close on D_r).

Data: reads the forget set D_f and the retain set D_r.
Reference: Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS'23
(github.com/meghdadk/SCRUB, the official CIFAR-10 "large-scale" notebook cell; docs/baselines.md §4.10).
Student θ (init θ_o), frozen teacher θ_o, KL_T(s, t) = T²·KL(softmax(t/T) ‖ softmax(s/T)) averaged
per sample. For epochs e = 1..E: if e ≤ msteps, a max-step pass over D_f minimising −KL_T; then a
min-step pass over D_r minimising γ·CE + α·KL_T.
Non-obvious settings: the learning rate decays ×`lr_decay` once e > each of `lr_decay_epochs`
(the notebook's adjust_learning_rate), which never fires in its 3 epochs. The student trains in
train mode (BatchNorm statistics update), as in the notebook's train_distill. SFR-on's CIFAR-10
values are lr 8e-5, 6 epochs, cosine; we follow the SCRUB notebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import Splits
from spotter.functional.losses import kd
from spotter.methods import _common

NEEDS = ("forget", "retain")
TUNE = {"lr": [1e-4, 5e-4, 2e-3, 5e-3], "msteps": [1, 2]}


@dataclass
class Config:
    """SCRUB settings. Search: lr 5e-5..5e-3 (log), epochs 3..10, msteps 1..epochs, alpha 1e-3..1."""

    lr: float = 5e-4  # SCRUB notebook (CIFAR-10 large-scale cell)
    momentum: float = 0.9  # SCRUB notebook
    weight_decay: float = 5e-4  # SCRUB notebook
    epochs: int = 3  # sgda_epochs, SCRUB notebook
    msteps: int = 2  # max-steps happen in epochs 1..msteps (SCRUB notebook)
    gamma: float = 0.99  # CE weight in the min-step (SCRUB notebook)
    alpha: float = 0.001  # KL weight in the min-step (SCRUB notebook)
    temperature: float = 4.0  # kd_T (SCRUB notebook)
    batch_size: int = 128  # retain batch (SCRUB notebook)
    forget_batch_size: int = 32  # forget batch (SCRUB notebook)
    lr_decay_epochs: tuple[int, ...] = (3, 5, 9)  # SCRUB notebook
    lr_decay: float = 0.1  # SCRUB notebook
    augment: bool = True  # training transforms (docs/baselines.md preamble)
    seed: int = 0


def schedule(cfg: Config) -> list[tuple[int, str]]:
    """The (epoch, phase) sequence: a max-step pass before the min-step pass while e ≤ msteps."""
    out = []
    for e in range(1, cfg.epochs + 1):
        if e <= cfg.msteps:
            out.append((e, "max"))
        out.append((e, "min"))
    return out


def lr_at(cfg: Config, epoch: int) -> float:
    """SCRUB's adjust_learning_rate: ×lr_decay for every milestone the (1-based) epoch exceeds."""
    return cfg.lr * cfg.lr_decay ** sum(epoch > m for m in cfg.lr_decay_epochs)


def phase_loss(
    phase: str, logits: torch.Tensor, t_logits: torch.Tensor, y: torch.Tensor, cfg: Config
) -> torch.Tensor:
    """max-step: −KL_T(student, teacher); min-step: γ·CE + α·KL_T (§4.10)."""
    div = kd(logits, t_logits, cfg.temperature)  # T²·KL(softmax(t/T) ‖ softmax(s/T)), batch mean
    if phase == "max":
        return -div
    return cfg.gamma * F.cross_entropy(logits, y) + cfg.alpha * div


def unlearn(
    model: nn.Module, splits: Splits, cfg: Config, extra_loss: _common.ExtraLoss | None = None
) -> nn.Module:
    """SCRUB on a copy of `model` with the caller's model as the frozen teacher."""
    forget = _common.require(splits.forget, "forget", "scrub")
    retain = _common.require(splits.retain, "retain", "scrub")
    student, device = _common.start(model, cfg.seed)
    teacher = _common.frozen_copy(model)
    opt = _common.optimizer("sgd", student.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    for epoch, phase in schedule(cfg):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, epoch)
        student.train()
        data, bs = (forget, cfg.forget_batch_size) if phase == "max" else (retain, cfg.batch_size)
        total, steps = 0.0, 0
        for idx in _common.shuffled(len(data), bs, g):
            x, y = _common.load(data, idx, device, cfg.augment, g)
            logits = student(x)
            with torch.no_grad():
                t_logits = teacher(x)
            loss = phase_loss(phase, logits, t_logits, y, cfg)
            total += _common.step(opt, loss, student, extra_loss, what=f"SCRUB {phase} loss") * len(y)
            steps += 1
        _common.log_epoch(
            history, "scrub", epoch, cfg.epochs, phase=phase, steps=steps, loss=total / len(data)
        )
    return _common.finish(student, history)
