"""DELETE: distil the original's predictions on forget samples with the true class masked out.

Data: reads only the forget set D_f with its labels.
Reference: Zhou et al., "Decoupled Distillation to Erase: A General Unlearning Method for Any
Class-centric Tasks", CVPR'25 (github.com/shaaaaron/DELETE, `soft_label="inf"`; docs/baselines.md §4.15):
q(x) = softmax of the original logits with the true-class logit set to −∞ (= the original's
probabilities with the true class zeroed and renormalised); minimise KL(q(x) ‖ p_θ(x)), batch mean,
over D_f only.
Non-obvious settings: the teacher is a frozen copy of the original, evaluated on the same
(augmented) batch as the student. The paper masks the sample's own class (`mask="true"`); with
several forget classes Spotter's masked teacher removes all of them (`mask="forget"`); for one
forget class both are the same m(x). BatchNorm stays in train mode by default (`disable_bn=False`
in the official code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from spotter.data import Splits
from spotter.functional.losses import kl_to_student, masked_probs
from spotter.methods import _common
from spotter.models.batchnorm import set_mode

NEEDS = ("forget",)
MASKS = ("true", "forget")
TUNE = {"lr": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3], "epochs": [10, 20]}


@dataclass
class Config:
    """DELETE settings. Search: lr 1e-5..1e-2 (log), epochs 5..30."""

    lr: float = 1e-4  # DELETE CIFAR-10/ResNet-18 config
    momentum: float = 0.9  # DELETE
    weight_decay: float = 0.0  # DELETE (no weight decay)
    epochs: int = 20  # DELETE
    batch_size: int = 128  # DELETE
    mask: str = "true"  # the paper masks the sample's true class
    freeze_bn: bool = False  # official disable_bn=False
    augment: bool = True  # training transforms (docs/baselines.md preamble)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mask not in MASKS:
            raise ValueError(f"mask {self.mask!r}; valid choices: {', '.join(MASKS)}")


def delete_targets(
    teacher_logits: torch.Tensor, y: torch.Tensor, mask: str, forget_classes: tuple[int, ...]
) -> torch.Tensor:
    """q(x): the teacher's softmax with the true class (or every forget class) removed and renormalised."""
    if mask == "forget":
        return masked_probs(teacher_logits, forget_classes)
    z = teacher_logits.scatter(1, y.view(-1, 1), float("-inf"))  # true-class logit := −∞
    return torch.softmax(z, dim=1)


def unlearn(
    model: nn.Module, splits: Splits, cfg: Config, extra_loss: _common.ExtraLoss | None = None
) -> nn.Module:
    """DELETE on a copy of `model`, distilling the frozen original's masked predictions."""
    forget = _common.require(splits.forget, "forget", "delete")
    student, device = _common.start(model, cfg.seed)
    teacher = _common.frozen_copy(model)
    opt = _common.optimizer("sgd", student.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        set_mode(student, cfg.freeze_bn)
        total = 0.0
        for idx in _common.shuffled(len(forget), cfg.batch_size, g):
            x, y = _common.load(forget, idx, device, cfg.augment, g)
            with torch.no_grad():
                q = delete_targets(teacher(x), y, cfg.mask, splits.forget_classes)
            loss = kl_to_student(q, student(x)).mean()  # KL(q ‖ p_θ), batch mean (§4.15)
            total += _common.step(opt, loss, student, extra_loss, what="DELETE loss") * len(y)
        _common.log_epoch(history, "delete", epoch + 1, cfg.epochs, loss=total / len(forget))
    return _common.finish(student, history)
