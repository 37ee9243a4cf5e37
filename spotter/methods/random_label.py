"""Random Label (RL): train on the forget set with random labels, and on the retain set as usual.

Data: reads the forget set D_f (labels replaced) and the retain set D_r.
Reference: Golatkar et al. 2020 / Graves et al. 2021 ("amnesiac" relabelling), as run in SalUn
(Fan et al., ICLR'24; github.com/OPTML-Group/Unlearn-Saliency, `Classification/unlearn/RL.py`,
CIFAR-10 branch; docs/baselines.md §4.3).
Non-obvious settings: every epoch is one pass over D_f with freshly drawn labels, then one pass
over D_r, each with its own optimiser steps (SalUn's CIFAR-10 code; its CIFAR-100 branch instead
concatenates and shuffles both). Labels are drawn uniformly from all K classes, so a draw may equal
the true label (SalUn, `label_pool="all"`); DELETE's `approx_different` draws from the other K-1
classes (`label_pool="other"`) and UNSC's variant from the retained classes (`"retain"`). DELETE's
retain-free variant (D_f only) is not offered here: this module declares retain access.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import Splits, TensorSet
from spotter.methods import _common

NEEDS = ("forget", "retain")
LABEL_POOLS = ("all", "other", "retain")
TUNE = {"lr": [1e-3, 3e-3, 1e-2, 3e-2], "epochs": [5, 10]}


@dataclass
class Config:
    """Random-label settings. Search: lr 1e-3..3e-2 (log), epochs 5..15."""

    lr: float = 0.013  # SalUn README (RL, 10 epochs, lr 0.013); SFR-on uses 0.003 cosine
    epochs: int = 10  # SalUn README
    batch_size: int = 256  # SalUn default --batch_size 256
    momentum: float = 0.9  # SalUn
    weight_decay: float = 5e-4  # SalUn
    label_pool: str = "all"  # SalUn draws from all K classes (may equal the true label)
    augment: bool = True  # training transforms (docs/baselines.md preamble)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.label_pool not in LABEL_POOLS:
            raise ValueError(f"label_pool {self.label_pool!r}; valid choices: {', '.join(LABEL_POOLS)}")


def draw_labels(
    y: torch.Tensor,
    num_classes: int,
    forget_classes: Sequence[int],
    pool: str,
    generator: torch.Generator,
) -> torch.Tensor:
    """Random labels for forget samples: from all K classes, the K-1 other ones, or retained ones."""
    if pool == "all":
        return torch.randint(0, num_classes, y.shape, generator=generator)
    if pool == "other":
        r = torch.randint(0, num_classes - 1, y.shape, generator=generator)
        return r + (r >= y.cpu()).long()  # skip the true label: uniform over the other K-1
    if pool == "retain":
        kept = torch.tensor([c for c in range(num_classes) if c not in set(forget_classes)])
        return kept[torch.randint(0, len(kept), y.shape, generator=generator)]
    raise ValueError(f"label_pool {pool!r}; valid choices: {', '.join(LABEL_POOLS)}")


def rl_epoch(
    student: nn.Module,
    opt: torch.optim.Optimizer,
    forget: TensorSet,
    retain: TensorSet,
    splits: Splits,
    cfg,  # noqa: ANN001 - random_label.Config or salun.Config
    generator: torch.Generator,
    extra_loss: _common.ExtraLoss | None = None,
    before_step: Callable[[], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> dict[str, float]:
    """One RL epoch: a pass over D_f with fresh random labels, then a pass over D_r (§4.3)."""
    device = next(student.parameters()).device
    student.train()
    labels = draw_labels(forget.y, splits.num_classes, splits.forget_classes, cfg.label_pool, generator)
    sums = {"forget": 0.0, "retain": 0.0}
    for part, data in (("forget", forget), ("retain", retain)):
        for idx in _common.shuffled(len(data), cfg.batch_size, generator):
            x, y = _common.load(data, idx, device, cfg.augment, generator)
            if part == "forget":
                y = labels[idx].to(device)
            loss = F.cross_entropy(student(x), y)
            sums[part] += _common.step(opt, loss, student, extra_loss, before_step, f"RL {part} loss") * len(
                y
            )
            if after_step is not None:
                after_step()
        sums[part] /= max(len(data), 1)
    return sums


def unlearn(
    model: nn.Module, splits: Splits, cfg: Config, extra_loss: _common.ExtraLoss | None = None
) -> nn.Module:
    """Relabel D_f at random each epoch and train on it and on D_r (SalUn's RL)."""
    forget = _common.require(splits.forget, "forget", "random_label")
    retain = _common.require(splits.retain, "retain", "random_label")
    student, _ = _common.start(model, cfg.seed)
    opt = _common.optimizer("sgd", student.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        losses = rl_epoch(student, opt, forget, retain, splits, cfg, g, extra_loss)
        _common.log_epoch(history, "random_label", epoch + 1, cfg.epochs, **losses)
    return _common.finish(student, history)
