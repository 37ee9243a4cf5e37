"""Bad Teacher: distil a random "incompetent" teacher on forget samples and the original on retain ones.

Data: reads the forget set D_f and a random subset of the retain set D_r (30% by default).
Reference: Chundawat et al., "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks Using
an Incompetent Teacher", AAAI'23 (github.com/vikram2000b/bad-teaching-unlearning, `UnlearnerLoss`
and `blindspot_unlearner`; docs/baselines.md §4.11). Target t(x) = softmax(z_incompetent(x)/τ) for forget
samples, softmax(z_{θ_o}(x)/τ) for retain samples; minimise KL(t ‖ p_θ).
Non-obvious settings: the incompetent teacher is a freshly initialised network of the same
architecture (every layer's reset_parameters from the seeded RNG). The loss keeps the official
element-mean reduction (F.kl_div's default 'mean' divides by B·K, not B), so lr is on that scale.
The retain subset is drawn once from D_r with the seed. SFR-on instead uses the full retain set,
SGD lr 0.02, 10 epochs; we follow the paper's code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import Splits, TensorSet
from spotter.methods import _common

NEEDS = ("forget", "retain_subset")
TUNE = {"lr": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3], "epochs": [1, 3]}


@dataclass
class Config:
    """Bad Teacher settings. Search: lr 1e-5..1e-3 (log), epochs 1..5, retain_fraction 0.1..1."""

    retain_fraction: float = 0.3  # official: random 30% of the retain set
    temperature: float = 1.0  # official KL_temperature
    lr: float = 1e-4  # official (Adam)
    optimizer: str = "adam"  # official
    epochs: int = 1  # official
    batch_size: int = 256  # official
    augment: bool = True  # training transforms (docs/baselines.md preamble)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.retain_fraction <= 1.0:
            raise ValueError(f"retain_fraction must be in (0, 1], got {self.retain_fraction}")
        _common.check_optimizer(self.optimizer)


def targets(
    competent_logits: torch.Tensor,
    incompetent_logits: torch.Tensor,
    is_forget: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """The incompetent teacher's softmax on forget rows, the competent one's elsewhere (§4.11)."""
    good = F.softmax(competent_logits / temperature, dim=1)
    bad = F.softmax(incompetent_logits / temperature, dim=1)
    return torch.where(is_forget.view(-1, 1), bad, good)


def unlearner_loss(student_logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(target ‖ p_θ) with the official element-mean reduction (F.kl_div default)."""
    log_p = F.log_softmax(student_logits / temperature, dim=1)
    return (torch.special.xlogy(target, target) - target * log_p).mean()


def unlearn(
    model: nn.Module, splits: Splits, cfg: Config, extra_loss: _common.ExtraLoss | None = None
) -> nn.Module:
    """Bad-Teacher distillation on a copy of `model`."""
    forget = _common.require(splits.forget, "forget", "bad_teacher")
    retain = _common.require(splits.retain, "retain", "bad_teacher")
    student, device = _common.start(model, cfg.seed)
    competent = _common.frozen_copy(model)
    incompetent = _common.reinit(_common.frozen_copy(model))  # random weights, same architecture
    g = torch.Generator().manual_seed(cfg.seed)
    part = _common.subset(retain, cfg.retain_fraction, g)
    data = TensorSet(torch.cat([forget.x, part.x]), torch.cat([forget.y, part.y]))
    is_forget = torch.cat(
        [torch.ones(len(forget), dtype=torch.bool), torch.zeros(len(part), dtype=torch.bool)]
    )
    opt = _common.optimizer(cfg.optimizer, student.parameters(), cfg.lr)
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        student.train()
        total = 0.0
        for idx in _common.shuffled(len(data), cfg.batch_size, g):
            x, _ = _common.load(data, idx, device, cfg.augment, g)
            with torch.no_grad():
                target = targets(competent(x), incompetent(x), is_forget[idx].to(device), cfg.temperature)
            loss = unlearner_loss(student(x), target, cfg.temperature)
            total += _common.step(opt, loss, student, extra_loss, what="bad-teacher loss") * len(idx)
        _common.log_epoch(history, "bad_teacher", epoch + 1, cfg.epochs, loss=total / len(data))
    return _common.finish(student, history)
