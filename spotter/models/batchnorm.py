"""BatchNorm modes: the one place that decides how unlearning and attacks treat running statistics.

Single-class batches (a forget set) would corrupt BatchNorm's running statistics, so most
unlearning methods and some attacks train with BatchNorm in eval mode: statistics frozen, affine
parameters still trained.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """Every BatchNorm layer of `model` (1d, 2d, 3d and SyncBatchNorm)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze_bn(model: nn.Module) -> nn.Module:
    """Put BatchNorm layers in eval mode (running statistics frozen, affine parameters train)."""
    for m in batchnorm_layers(model):
        m.eval()
    return model


def set_mode(model: nn.Module, freeze_bn: bool) -> None:
    """Train mode, with BatchNorm statistics frozen when asked (affine parameters still train)."""
    model.train()
    if freeze_bn:
        for m in batchnorm_layers(model):
            m.eval()


@contextlib.contextmanager
def bn_eval(model: nn.Module) -> Iterator[None]:
    """BatchNorm in eval mode for the duration (restores each layer's mode afterwards)."""
    layers = batchnorm_layers(model)
    modes = [m.training for m in layers]
    for m in layers:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(layers, modes, strict=True):
            m.train(mode)


@torch.no_grad()
def follow_statistics(student: nn.Module, teacher: nn.Module, x: torch.Tensor) -> None:
    """Re-estimate `student`'s BatchNorm running statistics as the teacher's plus the change the
    student's weights made to each layer's input statistics on the probe images `x` (one batch).

    An unlearned student whose BatchNorm statistics stayed frozen normalises with statistics its
    changed weights no longer produce; probe images that stand for the data (model-inverted
    images, no retain data) measure the change. Per layer and channel: mean_t + (m_s - m_t) and
    var_t · v_s / v_t, where (m, v) are the probe's input mean and variance under each model and
    (mean_t, var_t) the teacher's running statistics. Layers are corrected in forward order in one
    pass, so each deeper layer sees the corrected shallower ones. The teacher must have the
    student's architecture."""
    s_layers, t_layers = batchnorm_layers(student), batchnorm_layers(teacher)
    if len(s_layers) != len(t_layers):
        raise ValueError("follow_statistics needs a teacher with the student's architecture")
    if not s_layers:
        return
    teacher_stats: list[tuple[torch.Tensor, torch.Tensor]] = []

    def moments(inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dims = [d for d in range(inp.dim()) if d != 1]
        return inp.mean(dims), inp.var(dims, unbiased=False)

    def record(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        teacher_stats.append(moments(args[0]))

    def correct(m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        i = s_layers.index(m)
        t_mean, t_var = teacher_stats[i]
        s_mean, s_var = moments(args[0])
        ref = t_layers[i]
        m.running_mean.copy_(ref.running_mean + s_mean - t_mean)
        m.running_var.copy_(ref.running_var * s_var / t_var.clamp_min(1e-8))

    modes = [(m, m.training) for model in (student, teacher) for m in model.modules()]
    student.eval()
    teacher.eval()
    hooks = [m.register_forward_pre_hook(record) for m in t_layers]
    try:
        teacher(x)
    finally:
        for h in hooks:
            h.remove()
    hooks = [m.register_forward_pre_hook(correct) for m in s_layers]
    try:
        student(x)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes:
            m.training = mode


@torch.no_grad()
def reestimate_statistics(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> None:
    """Replace every BatchNorm layer's running statistics by those of the images `x` (float
    pixels in the model's input format), averaged over all batches, weights untouched. Unlike
    torch.optim.swa_utils.update_bn, every other layer stays in eval mode (dropout off: the
    statistics are those inference sees) and each module gets its own mode back. Without a single gradient step this is an attack on an
    unlearned model whose forgetting lives in a mismatch between frozen statistics and changed
    weights: an owner of a few hundred unlabelled images can run it. Restores every module's mode."""
    layers = batchnorm_layers(model)
    if not layers:
        return
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    model.eval()
    for m in layers:
        m.train()
    device = next(model.parameters()).device
    try:
        for i in range(0, len(x), batch_size):
            model(x[i : i + batch_size].to(device))
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        for m, mode in modes:
            m.training = mode
