"""BatchNorm modes: the one place that decides how unlearning and attacks treat running statistics.

Single-class batches (a forget set) would corrupt BatchNorm's running statistics, so most
unlearning methods and some attacks train with BatchNorm in eval mode: statistics frozen, affine
parameters still trained.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
