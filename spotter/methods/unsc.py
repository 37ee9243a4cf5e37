"""UNSC: relabel forget samples; every weight update stays in the null space of retain activations.

Data: reads the forget set D_f and one batch of activations per retained class from D_r (a
per-class retain subset; `per_class` images each).
Reference: Chen et al., "Unlearning via Null Space Calibration", ICLR'24 (the authors' notebook, and
its public port `unlearn_unsc`; docs/baselines.md §4.14), building on GPM (Saha et al., ICLR'21):
for each retained class c (in class order), the inputs of every conv/linear layer on a batch of
class-c images form R; the basis covering an energy fraction 0.97 + 0.003·c of R is added to the
layer's basis B (GPM's `update_GPM`); P = BBᵀ. Forget images are relabelled by the original
model's best non-forget class and CE is minimised with every weight gradient G replaced by
G − G·P, so ΔW·P = 0: the outputs on retained activations do not change, to first order.
Non-obvious settings: conv inputs are unfolded into k×k patches (all patches, through RRᵀ, instead of
GPM's per-layer column sampling); the energy threshold is capped at 1. GPM's very first basis keeps
the components whose cumulative energy is strictly below the threshold (often zero for a
layer whose top direction already holds it); we apply its residual rule to every class, which
keeps the smallest basis that reaches the threshold. Only conv/linear weights train: 1-D
parameters (biases, BatchNorm) are frozen, as the port zeroes their gradients; BatchNorm runs in
eval mode; no weight decay (it would leave the null space). "+spotter" gradients are projected too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import Splits, TensorSet
from spotter.methods import _common
from spotter.models.batchnorm import set_mode

log = logging.getLogger("spotter")

NEEDS = ("forget", "retain_subset")
RELABELS = ("teacher", "random")
TUNE = {"lr": [1e-2, 4e-2, 0.1, 0.4, 1.0], "epochs": [10, 25]}  # small models need large lr (see Config)


@dataclass
class Config:
    """UNSC settings. Search: lr 1e-3..1 (log), epochs 5..30, energy 0.9..0.99.

    The projected gradients are small when forget features share the retained classes' dominant
    directions, so small models can need a much larger lr than the authors' (benchmarks/README.md).
    """

    lr: float = 0.04  # authors' notebook (public port `unlearn_unsc`)
    momentum: float = 0.0  # authors' notebook: plain SGD
    epochs: int = 25  # authors' notebook (port)
    batch_size: int = 128  # batch of the unlearning loader
    per_class: int = 128  # one loader batch per retained class (notebook)
    energy: float = 0.97  # GPM / UNSC threshold ...
    energy_step: float = 0.003  # ... + 0.003 · class id (notebook)
    relabel: str = "teacher"  # original's best non-forget class (notebook); or "random" retained class
    augment: bool = True  # training transforms (docs/baselines.md preamble)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.relabel not in RELABELS:
            raise ValueError(f"relabel {self.relabel!r}; valid choices: {', '.join(RELABELS)}")
        if not 0.0 < self.energy <= 1.0:
            raise ValueError(f"energy must be in (0, 1], got {self.energy}")


def projected_layers(model: nn.Module) -> list[nn.Module]:
    """Conv2d (groups 1) and Linear layers, in module order: their weights train, projected."""
    return [
        m for m in model.modules() if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)
    ]


def _rows(layer: nn.Module, inp: torch.Tensor) -> torch.Tensor:
    """The layer's input as R (d, n): conv patches unfolded like the weight is flattened."""
    if isinstance(layer, nn.Conv2d):
        cols = F.unfold(inp, layer.kernel_size, layer.dilation, layer.padding, layer.stride)  # (B, d, L)
        return cols.transpose(0, 1).reshape(cols.shape[1], -1)
    return inp.reshape(-1, inp.shape[-1]).T


@torch.no_grad()
def input_covariances(model: nn.Module, x: torch.Tensor, layers: list[nn.Module]) -> list[torch.Tensor]:
    """RRᵀ (float64, d × d) of every layer's input on float images x."""
    covs: list[torch.Tensor | None] = [None] * len(layers)

    def hook(i: int):  # noqa: ANN202
        def fn(module: nn.Module, args: tuple, _out: torch.Tensor) -> None:
            r = _rows(module, args[0]).double()
            covs[i] = r @ r.T if covs[i] is None else covs[i] + r @ r.T

        return fn

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        for chunk in x.split(64):
            model(chunk)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return covs


def update_basis(cov: torch.Tensor, basis: torch.Tensor, threshold: float) -> torch.Tensor:
    """GPM's update: add the residual directions (outside `basis`) until `threshold` of RRᵀ's energy."""
    total = float(torch.trace(cov))
    if total <= 0:
        return basis
    proj = torch.eye(len(cov), dtype=cov.dtype, device=cov.device) - basis @ basis.T
    residual = proj @ cov @ proj
    evals, evecs = torch.linalg.eigh(residual)
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    accumulated = (total - float(torch.trace(residual))) / total
    r = 0
    for ratio in (evals / total).tolist():
        if accumulated >= threshold:
            break
        accumulated += ratio
        r += 1
    return torch.cat([basis, evecs[:, :r]], 1)[:, : len(cov)]


def projectors(
    model: nn.Module, retain_sub: TensorSet, cfg: Config, layers: list[nn.Module]
) -> list[torch.Tensor]:
    """P = BBᵀ per layer from the retained classes' inputs, class by class (float32)."""
    device = next(model.parameters()).device
    bases: list[torch.Tensor] = []
    for c in retain_sub.y.unique().sort().values.tolist():
        x = _common.load(retain_sub, (retain_sub.y == c).nonzero().flatten(), device)[0]
        threshold = min(cfg.energy + cfg.energy_step * c, 1.0)
        for i, cov in enumerate(input_covariances(model, x, layers)):
            if len(bases) <= i:
                bases.append(cov.new_zeros(len(cov), 0))
            bases[i] = update_basis(cov, bases[i], threshold)
    return [(b @ b.T).float() for b in bases]


def pseudo_labels(teacher_logits: torch.Tensor, forget_classes: tuple[int, ...]) -> torch.Tensor:
    """The original's best class among the retained ones."""
    z = teacher_logits.clone()
    z[:, list(forget_classes)] = float("-inf")
    return z.argmax(1)


def unlearn(
    model: nn.Module, splits: Splits, cfg: Config, extra_loss: _common.ExtraLoss | None = None
) -> nn.Module:
    """UNSC on a copy of `model`: null-space-projected CE on relabelled forget samples."""
    forget = _common.require(splits.forget, "forget", "unsc")
    retain = _common.require(splits.retain, "retain", "unsc")
    student, device = _common.start(model, cfg.seed)
    teacher = _common.frozen_copy(model)
    g = torch.Generator().manual_seed(cfg.seed)
    layers = projected_layers(student)
    proj = projectors(student, _common.per_class(retain, cfg.per_class, g), cfg, layers)
    for p in student.parameters():
        p.requires_grad_(False)
    weights = [layer.weight for layer in layers]
    for w in weights:
        w.requires_grad_(True)
    for w, P in zip(weights, proj, strict=True):
        log.debug("unsc: %s null space %d of %d", tuple(w.shape), len(P) - round(float(P.trace())), len(P))

    def project() -> None:
        for w, P in zip(weights, proj, strict=True):
            if w.grad is not None:
                grad = w.grad.reshape(len(w.grad), -1)
                w.grad.copy_((grad - grad @ P).view_as(w.grad))  # G − G·P

    opt = _common.optimizer("sgd", weights, cfg.lr, cfg.momentum)
    kept = torch.tensor([c for c in range(splits.num_classes) if c not in splits.forget_classes])
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        set_mode(student, freeze_bn=True)
        total = 0.0
        for idx in _common.shuffled(len(forget), cfg.batch_size, g):
            x, y = _common.load(forget, idx, device, cfg.augment, g)
            if cfg.relabel == "teacher":
                with torch.no_grad():
                    target = pseudo_labels(teacher(x), splits.forget_classes)
            else:
                target = kept[torch.randint(0, len(kept), (len(y),), generator=g)].to(device)
            loss = F.cross_entropy(student(x), target)
            total += _common.step(opt, loss, student, extra_loss, project, "UNSC loss") * len(y)
        _common.log_epoch(history, "unsc", epoch + 1, cfg.epochs, loss=total / len(forget))
    for p in student.parameters():
        p.requires_grad_(True)
    student.unsc_projectors = proj
    return _common.finish(student, history)
