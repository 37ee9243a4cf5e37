"""Neighbourhoods of forget samples in pixel space (torch only), used by Spotter's training term
and by the OU@ε metric (docs/method.md §3): PGD toward (or away from) the runner-up class, and Gaussian.

Inputs are pixels in [0, 1]; results are clamped to [0, 1]. The model is put in eval mode for the
attack and restored afterwards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spotter.progress import task

DIRECTIONS = ("toward", "away")


def runner_up(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The strongest class other than the true one. (B,)."""
    return logits.scatter(1, y.view(-1, 1), float("-inf")).argmax(1)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 0.03,
    step: float = 0.01,
    steps: int = 3,
    direction: str = "toward",
    generator: torch.Generator | None = None,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """L∞ PGD from a uniform random start in the eps-ball, driven by the runner-up class.

    direction="toward" descends the runner-up's cross-entropy (our default: the region between the
    forget class and its neighbours); "away" ascends it, as the authors' released code does.
    `target` (B,) drives the attack toward given classes instead of the runner-up (Spotter-auto's
    anchors).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown PGD direction {direction!r}; valid choices: {', '.join(DIRECTIONS)}")
    if eps < 0 or step < 0 or steps < 0:
        raise ValueError(f"eps, step and steps must be >= 0, got {eps}, {step}, {steps}")
    was_training = model.training
    model.eval()
    try:
        if target is None:
            with torch.no_grad():
                target = runner_up(model(x), y)
        noise = torch.rand(x.shape, generator=generator).to(x.device)
        x_adv = (x + (2 * noise - 1) * eps).clamp(0, 1)
        sign = -1.0 if direction == "toward" else 1.0
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(model(x_adv), target)
                (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = x_adv.detach() + sign * step * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
        return x_adv.detach()
    finally:
        model.train(was_training)


def gaussian(x: torch.Tensor, sigma: float = 0.01, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + N(0, sigma²), clamped to [0, 1]."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return (x + sigma * torch.randn(x.shape, generator=generator).to(x.device)).clamp(0, 1)


KINDS = ("pgd", "pgd_away", "gaussian")


def neighbourhood(
    model: nn.Module,
    x_uint8: torch.Tensor,
    y: torch.Tensor,
    kind: str,
    seed: int,
    eps: float = 0.03,
    step: float = 0.01,
    steps: int = 3,
    sigma: float = 0.01,
    copies: int = 1,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """`copies` perturbed copies of every image, built from `model` with a fixed seed.

    Returns (x' float (copies*N, C, H, W) on CPU, labels (copies*N,)).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown neighbourhood {kind!r}; valid choices: {', '.join(KINDS)}")
    g = torch.Generator().manual_seed(seed)
    out = []
    total = copies * -(-len(y) // batch_size)
    with task(f"{kind} neighbourhood of {len(y)} images", total, quiet=True) as progress:
        for _ in range(copies):
            for i in range(0, len(y), batch_size):
                xb = x_uint8[i : i + batch_size].to(device).float().div(255)
                yb = y[i : i + batch_size].to(device)
                if kind == "gaussian":
                    out.append(gaussian(xb, sigma, g).cpu())
                else:
                    direction = "away" if kind == "pgd_away" else "toward"
                    out.append(pgd(model, xb, yb, eps, step, steps, direction, g).cpu())
                progress.update()
    return torch.cat(out), y.repeat(copies)
