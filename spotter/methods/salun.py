"""SalUn: random-label unlearning restricted to the weights most salient for the forget loss.

Data: reads the forget set D_f (saliency, relabelled training) and the retain set D_r (RL part).
Reference: Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency",
ICLR'24 (github.com/OPTML-Group/Unlearn-Saliency, `Classification/generate_mask.py` and
`unlearn/RL.py`; docs/baselines.md §4.8). Saliency g = |Σ_batches ∇_θ(−CE on D_f)| at θ_o (model in eval
mode); hard global mask M = 1[g in the top `mask_ratio` fraction of all parameter entries]; then
Random Label (random_label.py) with every gradient multiplied by M.
Non-obvious settings: the mask covers every parameter tensor (BN and biases included), ranked
globally. Following the maintainers' updated code, non-salient weights are also reset to θ_o after
each step and their momentum zeroed, so weight decay and momentum cannot move them either (the
first release only masked gradients). The mask is exactly the top ⌊r·N⌋ entries (stable order);
the released code thresholds with >=, which can keep a few more on ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import Splits, TensorSet
from spotter.methods import _common
from spotter.methods.random_label import LABEL_POOLS, rl_epoch

NEEDS = ("forget", "retain")
TUNE = {"lr": [1e-3, 3e-3, 1e-2, 3e-2], "mask_ratio": [0.2, 0.5]}


@dataclass
class Config:
    """SalUn settings. Search: lr 1e-3..3e-2 (log), mask_ratio 0.1..0.9, epochs 5..15."""

    mask_ratio: float = 0.5  # SalUn README example (masks saved for 0.1..1.0); SFR-on uses 0.2
    lr: float = 0.013  # SalUn README (RL + mask, 10 epochs); SFR-on 0.007
    epochs: int = 10  # SalUn README
    batch_size: int = 256  # SalUn default
    momentum: float = 0.9  # SalUn
    weight_decay: float = 5e-4  # SalUn
    label_pool: str = "all"  # SalUn's RL draws from all K classes
    augment: bool = True  # training transforms (docs/baselines.md preamble)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1], got {self.mask_ratio}")
        if self.label_pool not in LABEL_POOLS:
            raise ValueError(f"label_pool {self.label_pool!r}; valid choices: {', '.join(LABEL_POOLS)}")


def saliency_mask(model: nn.Module, forget: TensorSet, ratio: float, batch_size: int) -> list[torch.Tensor]:
    """Boolean mask per parameter: the top `ratio` of |Σ ∇(−CE on D_f)| entries, ranked globally."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    params = list(model.parameters())
    grads = [torch.zeros_like(p) for p in params]
    for idx in torch.arange(len(forget)).split(batch_size):
        x, y = _common.load(forget, idx, device)
        batch_grads = torch.autograd.grad(-F.cross_entropy(model(x), y), params, allow_unused=True)
        for acc, gr in zip(grads, batch_grads, strict=True):
            if gr is not None:
                acc += gr
    model.train(was_training)
    return _common.top_share_mask([gr.abs() for gr in grads], ratio)


def unlearn(
    model: nn.Module, splits: Splits, cfg: Config, extra_loss: _common.ExtraLoss | None = None
) -> nn.Module:
    """SalUn on a copy of `model`: saliency mask at θ_o, then masked Random Label."""
    forget = _common.require(splits.forget, "forget", "salun")
    retain = _common.require(splits.retain, "retain", "salun")
    student, _ = _common.start(model, cfg.seed)
    params = list(student.parameters())
    mask = saliency_mask(student, forget, cfg.mask_ratio, cfg.batch_size)
    anchor = [p.detach().clone() for p in params]  # θ_o
    opt = _common.optimizer("sgd", params, cfg.lr, cfg.momentum, cfg.weight_decay)
    kept = sum(int(m.sum()) for m in mask)
    total = sum(m.numel() for m in mask)
    _common.log.info("salun: %d of %d weights salient (%.1f%%)", kept, total, 100 * kept / total)

    def mask_grads() -> None:
        for p, m in zip(params, mask, strict=True):
            if p.grad is not None:
                p.grad.mul_(m)

    def reset_frozen() -> None:
        _common.hold_outside_mask(params, mask, anchor, opt)

    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        losses = rl_epoch(student, opt, forget, retain, splits, cfg, g, extra_loss, mask_grads, reset_frozen)
        _common.log_epoch(history, "salun", epoch + 1, cfg.epochs, **losses)
    student.saliency_mask = mask
    return _common.finish(student, history)
