"""Model inversion: images a trained classifier takes for given classes, from the model alone.

DeepInversion (Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion",
CVPR 2020): optimise a batch of images so that the model assigns each its target class, while every
BatchNorm layer sees batch statistics close to its running statistics (the training data's), under
small random translations and flips, with a total-variation and an L2 prior. Retain-free methods
use the results as stand-ins for the retain classes (docs/method.md §5b): they need no retain image.
Models without BatchNorm get the class and prior terms only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spotter.progress import bar as progress_bar

log = logging.getLogger("spotter")


@dataclass(frozen=True)
class InversionConfig:
    """Defaults follow DeepInversion's CIFAR-10 setting scaled to small images (Yin et al. 2020)."""

    steps: int = 200
    lr: float = 0.1  # Adam on the pre-sigmoid image
    bn_weight: float = 1.0  # feature-statistics term (their r_feature, 0.01..10 across their tables)
    tv_weight: float = 1e-3  # total variation (smooth images, as in their prior)
    l2_weight: float = 1e-4
    jitter: int = 2  # random translation, pixels
    flip: bool = True
    batch_size: int = 256


class _BatchNormStatistics:
    """Forward hooks that sum, over every BatchNorm layer, the distance between the batch's
    per-channel mean and variance of the layer's input and the layer's running statistics."""

    def __init__(self, model: nn.Module) -> None:
        self.loss: torch.Tensor | None = None
        self.handles = [
            m.register_forward_hook(self._hook)
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
        ]

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        x = inputs[0]
        dims = [0] + list(range(2, x.dim()))
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        term = torch.norm(mean - module.running_mean, 2) + torch.norm(var - module.running_var, 2)
        self.loss = term if self.loss is None else self.loss + term

    def take(self, device: torch.device) -> torch.Tensor:
        out = self.loss if self.loss is not None else torch.zeros((), device=device)
        self.loss = None
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def invert(
    model: nn.Module,
    classes: torch.Tensor,
    shape: tuple[int, ...],
    cfg: InversionConfig = InversionConfig(),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Float images in [0, 1] (on CPU), one per entry of `classes`, of `shape` (C, H, W) each, that
    `model` (left in eval mode and unchanged) takes for those classes."""
    if len(shape) != 3:
        raise ValueError(f"shape must be (channels, height, width), got {tuple(shape)}")
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {cfg.steps} and {cfg.batch_size}")
    generator = generator or torch.Generator().manual_seed(0)
    was_training = model.training
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    stats = _BatchNormStatistics(model)
    out = []
    batches = list(classes.split(cfg.batch_size))
    shown = progress_bar(len(batches) * cfg.steps, f"inverting {len(classes)} images")
    try:
        for targets in batches:
            out.append(_invert_batch(model, targets, shape, cfg, generator, device, stats, shown))
    finally:
        stats.remove()
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)
        model.train(was_training)
        if shown is not None:
            shown.close()
    return torch.cat(out) if out else torch.zeros(0, *shape)


def _invert_batch(
    model: nn.Module, targets: torch.Tensor, shape: tuple[int, ...], cfg: InversionConfig,
    generator: torch.Generator, device: torch.device | str, stats: _BatchNormStatistics, shown,  # noqa: ANN001
) -> torch.Tensor:  # fmt: skip
    z = torch.randn(len(targets), *shape, generator=generator).to(device).requires_grad_(True)
    y = targets.to(device)
    opt = torch.optim.Adam([z], lr=cfg.lr, betas=(0.5, 0.9))
    for _ in range(cfg.steps):
        x = torch.sigmoid(z)
        dx, dy = (int(v) for v in torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=generator))
        xa = torch.roll(x, shifts=(dx, dy), dims=(2, 3)) if cfg.jitter else x
        if cfg.flip and bool(torch.rand((), generator=generator) < 0.5):
            xa = xa.flip(3)
        loss = F.cross_entropy(model(xa), y) + cfg.bn_weight * stats.take(z.device)
        loss = loss + cfg.tv_weight * total_variation(x) + cfg.l2_weight * x.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if shown is not None:
            shown.update()
    return torch.sigmoid(z).detach().cpu()
