"""How fit() runs fast: options, DDP/compile wrapping, GPU-resident data, pinned and streamed batches.

None of this changes what is learned (so none of it enters the model cache key): on one process
the batches, their order and their augmentation are exactly those of the plain in-memory path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from spotter.data import TensorSet
from spotter.training import distributed


@dataclass
class FitOptions:
    """How fit() runs, not what it learns (so none of it enters the model cache key)."""

    compile: bool = False  # torch.compile the training forward (pays off on GPUs for long runs)
    resident: str = "auto"  # in-memory data on the GPU: "auto" (when under 1/4 of free memory), "on", "off"
    sync_bn: bool = True  # under DDP on GPUs, SyncBatchNorm: batch statistics over the global batch
    workers: int | None = None  # DataLoader workers decoding a streamed dataset; None: min(8, CPUs)

    def __post_init__(self) -> None:
        if self.resident not in ("auto", "on", "off"):
            raise ValueError(f"unknown resident {self.resident!r}; valid choices: auto, on, off")


def wrap(model: nn.Module, device: torch.device, group: distributed.Dist | None, opts: FitOptions):
    """(module for the training forward, BatchNorm layers to restore after training)."""
    net, restore = model, []
    if group is not None:
        from torch.nn.parallel import DistributedDataParallel

        if opts.sync_bn and device.type == "cuda":  # SyncBatchNorm runs on GPUs only
            restore = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
            net = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # shares parameters and buffers
        ids = [device.index] if device.type == "cuda" else None  # fit() made the index explicit
        net = DistributedDataParallel(net, device_ids=ids)
    if opts.compile:
        net = torch.compile(net)
    return net, restore


def unwrap(model: nn.Module, restore: list[tuple[str, nn.Module]]) -> None:
    """Put the original BatchNorm layers back (they share tensors with their SyncBatchNorm twins)."""
    for name, module in restore:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module)


def resident(train: TensorSet, device: torch.device, opts: FitOptions) -> TensorSet:
    """The training set on the GPU when it fits (batches are then made by indexing on the device)."""
    if device.type != "cuda" or opts.resident == "off" or type(train) is not TensorSet:
        return train
    free, _ = torch.cuda.mem_get_info(device)
    if opts.resident == "on" or train.x.numel() < free / 4:
        return train.to(device)
    return train


def local_batches(
    train: TensorSet,
    order: list[torch.Tensor],
    group: distributed.Dist | None,
    device: torch.device,
    opts: FitOptions,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, int]]:
    """This rank's share of every global batch: (uint8 images, labels, offset, global batch size)."""
    shares = [group.share(len(idx)) if group is not None else (0, len(idx)) for idx in order]
    local = [idx[lo:hi] for idx, (lo, hi) in zip(order, shares, strict=True)]
    cuda = device.type == "cuda"
    if isinstance(train.x, torch.Tensor):
        for idx, (lo, _), full in zip(local, shares, order, strict=True):
            if train.x.device == device and cuda:
                idx = idx.to(device, non_blocking=True)
                yield train.x[idx], train.y[idx], lo, len(full)
            elif cuda:  # pinned host memory lets the copy overlap the previous step
                yield (
                    train.x[idx].pin_memory().to(device, non_blocking=True),
                    train.y[idx].pin_memory().to(device, non_blocking=True),
                    lo,
                    len(full),
                )
            else:
                yield train.x[idx].to(device, non_blocking=True), train.y[idx].to(device), lo, len(full)
    else:  # streamed from disk: DataLoader workers decode while the model trains
        workers = min(8, os.cpu_count() or 1) if opts.workers is None else opts.workers
        loader = train.loader(local, workers, pin=cuda)
        for (x, y), (lo, _), full in zip(loader, shares, order, strict=True):
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True), lo, len(full)
