"""Inference helpers: a model's logits or features on a set of images, and its outputs on the splits.

Every measure reads a model through these functions (the evaluator, the audit and the benchmark
job), so batching, channels-last layout and eval mode are decided once.
"""

from __future__ import annotations

import torch
from torch import nn

from spotter.data.core import Splits, TensorSet, to_float


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """Images in channels-last layout (faster convolutions on the CPU, same values)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    features: bool = False,
) -> torch.Tensor:
    """Logits (or penultimate features) on CPU for uint8 images or float pixels, in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device)
            xb = to_float(xb) if xb.dtype == torch.uint8 else xb.float()
            xb = channels_last(xb)
            out.append((model.features(xb) if features else model(xb)).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        dim = model.feature_dim if features else model.num_classes
        return torch.zeros(0, dim)
    return torch.cat(out)


def evaluate_accuracy(model: nn.Module, data: TensorSet, device: torch.device | str | None = None) -> float:
    """Top-1 accuracy in percent (NaN for an empty set)."""
    if len(data) == 0:
        return float("nan")
    logits = predict(model, data.x, device=device)
    return float((logits.argmax(1) == data.y).float().mean() * 100)


@torch.no_grad()
def outputs(
    model: nn.Module,
    splits: Splits,
    names: tuple[str, ...] = ("forget", "test_forget", "test_retain", "shots"),
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(features, logits) of `model` on the named splits, on the CPU in float32.

    The logits are the head applied to the features on the CPU, so every caller sees the same
    numbers as the evaluator (a head on the device could round differently).
    """
    device = device or next(model.parameters()).device
    feats, logits = {}, {}
    head = model.head
    for name in names:
        part: TensorSet = getattr(splits, name)
        feats[name] = predict(model, part.x, batch_size, device, features=True)
    head_device = next(head.parameters()).device
    head.cpu()
    try:
        for name in names:
            if len(feats[name]):
                logits[name] = head(feats[name])
            else:
                logits[name] = torch.zeros(0, splits.num_classes)
    finally:
        head.to(head_device)
    return feats, logits
