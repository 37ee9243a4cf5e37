"""Pieces the baseline methods share: set-up, batches, subsets, and the one optimiser step.

Every method that trains with a loss takes its optimiser steps through `step()`, which adds an
optional `extra_loss(student)` term before the backward pass. That is the single place where
"+spotter" (spotter/methods/_plus.py) plugs Spotter's neighbourhood and dispersion terms into any
base method's own training run (docs/method.md §5).

Under torchrun (spotter/distributed.py) the same helpers make a method data-parallel: `shuffled`
hands each rank its share of every global batch (all ranks draw the same permutation), `load`
augments that share with the randomness one process would draw for the whole batch, and `step`
averages gradients over ranks with torch.distributed.all_reduce before the update (a method's
forward goes through `features`, teachers and extra terms, which DDP's wrapper cannot see, so the
gradients are averaged here, in the one place every method steps). One process on the same global
batch gives the same update when every batch splits evenly (batch_size and the last batch divisible
by the number of processes); otherwise shares of unequal size weigh alike. Data a method does not
take through `shuffled` (full-batch or class-spread orders, e.g. Spotter's) is processed whole on
every rank: correct, not faster.
"""

from __future__ import annotations

import copy
import logging
import weakref
from collections.abc import Callable, Iterator

import torch
from torch import nn

from spotter.data import TensorSet, augment, to_float
from spotter.training import distributed

log = logging.getLogger("spotter")

# (student) -> scalar loss added to the base method's loss at every optimiser step ("+spotter").
ExtraLoss = Callable[[nn.Module], torch.Tensor]

# Augmentation "as in training" (docs/baselines.md preamble): the TrainConfig defaults (crop pad 2, flip).
AUG_PAD, AUG_FLIP = 2, True
OPTIMIZERS = ("sgd", "adam")


def start(model: nn.Module, seed: int) -> tuple[nn.Module, torch.device]:
    """Seed torch, and return a trainable deep copy of `model` and the device of its parameters."""
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    return copy.deepcopy(model).to(device), device


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen copy in eval mode (teacher); the caller's model is never touched."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def reinit(model: nn.Module) -> nn.Module:
    """Re-initialise every layer that knows how (torch's default init, from the global RNG)."""
    for m in model.modules():
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return model


def optimizer(
    name: str, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid choices: {', '.join(OPTIMIZERS)}")


def check_optimizer(name: str) -> None:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid choices: {', '.join(OPTIMIZERS)}")


def load(
    data: TensorSet,
    idx: torch.Tensor,
    device: torch.device,
    aug: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(float pixels (B, C, H, W), labels (B,)) for the indexed samples, augmented if asked."""
    x = to_float(data.x[idx].to(device))
    if aug:
        assert generator is not None
        offset, total = _share_of(idx)
        x = augment(x, AUG_PAD, AUG_FLIP, generator, total=total, offset=offset)
    return x, data.y[idx].to(device)


# id(rank's share) -> (weak reference to it, offset in its global batch, global batch size)
_SHARES: dict[int, tuple[weakref.ref, int, int]] = {}


def _share_of(idx: torch.Tensor) -> tuple[int, int]:
    entry = _SHARES.get(id(idx))
    if entry is not None and entry[0]() is idx:
        return entry[1], entry[2]
    return 0, len(idx)


def shuffled(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One shuffled pass over range(n) in batches (under torchrun: this rank's share of each)."""
    batches = list(torch.randperm(n, generator=generator).split(batch_size))
    group = distributed.current()
    if group is None:
        return batches
    shares = []
    for b in batches:
        if len(b) < group.world_size:  # a tail too small to give every rank a sample
            continue
        lo, hi = group.share(len(b))
        local = b[lo:hi]
        _SHARES[id(local)] = (weakref.ref(local), lo, len(b))
        shares.append(local)
    for key in [k for k, v in _SHARES.items() if v[0]() is None]:
        del _SHARES[key]
    return shares


def average_gradients(opt: torch.optim.Optimizer) -> None:
    """Mean of every gradient over ranks (no-op for one process), in one flat all_reduce."""
    group = distributed.current()
    if group is None:
        return
    grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= group.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def cycle(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled batches over range(n), reshuffled at every pass (a cycled loader)."""
    while True:
        yield from shuffled(n, batch_size, generator)


def subset(data: TensorSet, size: int | float, generator: torch.Generator) -> TensorSet:
    """A seeded random subset: `size` samples, or that fraction when 0 < size < 1."""
    n = int(round(size * len(data))) if isinstance(size, float) and size < 1 else int(size)
    n = max(1, min(n, len(data)))
    return data.subset(torch.randperm(len(data), generator=generator)[:n])


def per_class(data: TensorSet, count: int, generator: torch.Generator) -> TensorSet:
    """A seeded subset with up to `count` samples of every class present."""
    parts = []
    for c in data.y.unique().tolist():
        idx = (data.y == c).nonzero().flatten()
        parts.append(idx[torch.randperm(len(idx), generator=generator)[:count]])
    return data.subset(torch.cat(parts).sort().values)


def require(data: TensorSet | None, what: str, method: str) -> TensorSet:
    if data is None or len(data) == 0:
        raise ValueError(f"{method} needs a non-empty {what} split")
    return data


# optimiser -> steps taken through step(), so a NaN loss names the step it appeared at
_STEPS: weakref.WeakKeyDictionary[torch.optim.Optimizer, int] = weakref.WeakKeyDictionary()


def step(
    opt: torch.optim.Optimizer,
    loss: torch.Tensor,
    student: nn.Module,
    extra_loss: ExtraLoss | None = None,
    before_step: Callable[[], None] | None = None,
    what: str = "loss",
) -> float:
    """One optimiser step on `loss` (+ `extra_loss(student)`, the "+spotter" hook); returns the loss.

    `before_step` runs between backward and the update (gradient masks and projections).
    """
    if extra_loss is not None:
        loss = loss + extra_loss(student)
    _STEPS[opt] = _STEPS.get(opt, 0) + 1
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"{what} became {loss.item()} at optimiser step {_STEPS[opt]}; nothing was saved"
        )
    opt.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(opt)
    if before_step is not None:
        before_step()
    opt.step()
    return float(loss.detach())


def top_share_mask(scores: list[torch.Tensor], share: float) -> list[torch.Tensor]:
    """Boolean masks shaped like `scores`: exactly the top ⌊share·N⌋ entries (at least one) of all
    N entries, ranked globally (stable order on ties)."""
    flat = torch.cat([s.flatten() for s in scores])
    keep = torch.zeros(len(flat), dtype=torch.bool, device=flat.device)
    keep[torch.argsort(flat, descending=True, stable=True)[: max(1, int(share * len(flat)))]] = True
    return [m.view_as(s) for m, s in zip(keep.split([s.numel() for s in scores]), scores, strict=True)]


@torch.no_grad()
def hold_outside_mask(
    params: list[torch.Tensor],
    mask: list[torch.Tensor],
    anchor: list[torch.Tensor],
    opt: torch.optim.Optimizer,
) -> None:
    """Weights outside `mask` go back to `anchor` (θ_o) and lose their momentum, so neither weight
    decay nor momentum moves them (SalUn's maintained code does this after every step)."""
    for p, m, a in zip(params, mask, anchor, strict=True):
        p.copy_(torch.where(m, p, a))
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            buf.mul_(m)


def log_epoch(history: list[dict], method: str, epoch: int, epochs: int, **values: float) -> None:
    """Record one epoch and log it (one line per epoch keeps CI logs readable)."""
    history.append({"epoch": epoch, **values})
    text = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
    log.info("%s epoch %d/%d: %s", method, epoch, epochs, text)


def finish(student: nn.Module, history: list[dict]) -> nn.Module:
    if distributed.current() is not None:  # BatchNorm statistics saw only each rank's share
        for b in student.buffers():
            torch.distributed.broadcast(b, 0)
    student.eval()
    student.unlearn_history = history
    return student
