"""Data types, forget/retain splits and batching: the leaf of `spotter.data` (imports only torch).

Images live in memory as uint8 tensors (N, C, H, W) and become float pixels in [0, 1] per batch;
batches are made by indexing (no DataLoader), as in KellerJordan/cifar10-airbench (docs/design.md,
"Core contracts").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F


@dataclass
class TensorSet:
    """Images (N, C, H, W) uint8 and labels (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        assert self.x.dtype == torch.uint8 and self.x.dim() == 4, (self.x.dtype, self.x.shape)
        assert len(self.x) == len(self.y)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: torch.Tensor) -> TensorSet:
        return TensorSet(self.x[idx], self.y[idx])

    def of_classes(self, classes: Sequence[int]) -> TensorSet:
        return self.subset(torch.isin(self.y, torch.tensor(list(classes))).nonzero().flatten())

    def without_classes(self, classes: Sequence[int]) -> TensorSet:
        return self.subset((~torch.isin(self.y, torch.tensor(list(classes)))).nonzero().flatten())

    def to(self, device: torch.device | str) -> TensorSet:
        return TensorSet(self.x.to(device), self.y.to(device))

    def cat(self, other: TensorSet) -> TensorSet:
        """This set followed by `other`."""
        return TensorSet(torch.cat([self.x, other.x]), torch.cat([self.y, other.y]))


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]


@dataclass
class Splits:
    """The data every method, metric and attack sees (docs/design.md)."""

    forget: TensorSet
    retain: TensorSet | None
    test_forget: TensorSet
    test_retain: TensorSet
    val: TensorSet
    shots: TensorSet
    num_classes: int
    forget_classes: tuple[int, ...]
    surrogate: TensorSet | None = None  # out-of-distribution images for methods that read "surrogate"
    # All non-validation training images in one seeded order that does not depend on the forget
    # classes, so the original model (and its cache entry) is the same whichever classes are forgotten.
    train: TensorSet | None = None

    @property
    def val_forget(self) -> TensorSet:
        return self.val.of_classes(self.forget_classes)

    @property
    def val_retain(self) -> TensorSet:
        return self.val.without_classes(self.forget_classes)

    def without_retain(self) -> Splits:
        """The same splits with no retain data at all: what a retain-free method receives."""
        return replace(self, retain=None, train=None)

    def full_train(self) -> TensorSet:
        """D_f ∪ D_r, what the original model trains on: `train` when known, else forget + retain."""
        if self.train is not None:
            return self.train
        if self.retain is None:
            raise ValueError("the full training set needs the retain split, which these splits lack")
        return self.forget.cat(self.retain)


def check_forget_classes(forget_classes: Sequence[int], num_classes: int) -> tuple[int, ...]:
    classes = tuple(int(c) for c in forget_classes)
    if not classes:
        raise ValueError("forget classes are empty; give at least one class id")
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"forget class {bad[0]} out of range; valid ids are 0..{num_classes - 1}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"forget classes {list(classes)} contain duplicates; give each class once")
    if len(classes) >= num_classes:
        raise ValueError(f"forget classes {list(classes)} cover all {num_classes} classes; keep one")
    return tuple(sorted(classes))


def make_splits(
    train: TensorSet,
    test: TensorSet,
    forget_classes: Sequence[int],
    num_classes: int,
    val_size: int | float = 0.1,
    shots: int = 5,
    seed: int = 0,
) -> Splits:
    """Carve a seeded validation split from train, then split the rest by forget classes.

    `val_size` is a count or a fraction of train. `shots` attacker samples per forget class are
    drawn (seeded) from the forget train set: the attacker's pool in PRA (docs/method.md §4).
    """
    classes = check_forget_classes(forget_classes, num_classes)
    g = torch.Generator().manual_seed(seed)
    n_val = int(round(val_size * len(train))) if isinstance(val_size, float) else int(val_size)
    if not 0 <= n_val < len(train):
        raise ValueError(f"val_size {val_size} leaves no training data ({len(train)} samples)")
    perm = torch.randperm(len(train), generator=g)
    val, rest = train.subset(perm[:n_val]), train.subset(perm[n_val:])
    forget = rest.of_classes(classes)
    shot_idx = []
    for c in classes:
        pool = (forget.y == c).nonzero().flatten()
        if len(pool) == 0:
            raise ValueError(f"forget class {c} has no training samples")
        if shots > len(pool):
            raise ValueError(f"shots={shots} exceeds the {len(pool)} samples of forget class {c}")
        shot_idx.append(pool[torch.randperm(len(pool), generator=g)[:shots]])
    return Splits(
        forget=forget,
        retain=rest.without_classes(classes),
        test_forget=test.of_classes(classes),
        test_retain=test.without_classes(classes),
        val=val,
        shots=forget.subset(torch.cat(shot_idx)),
        num_classes=num_classes,
        forget_classes=classes,
        train=rest,
    )


def conform(x: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> (N, channels, size, size): grey <-> RGB, bilinear resize (antialiased)."""
    if x.shape[1] != channels:
        if channels == 1:
            x = x.float().mean(1, keepdim=True).round().to(torch.uint8)
        elif x.shape[1] == 1:
            x = x.expand(-1, channels, -1, -1)
        else:
            raise ValueError(f"cannot turn {x.shape[1]}-channel images into {channels}-channel ones")
    if tuple(x.shape[2:]) != (size, size):
        y = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = y.round().clamp_(0, 255).to(torch.uint8)
    return x.contiguous()


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [0, 1]."""
    return x.float().div_(255)


def augment(
    x: torch.Tensor,
    pad: int,
    flip: bool,
    generator: torch.Generator,
    total: int | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Random crop with zero padding `pad` and random horizontal flip, per image, on a float batch.

    `total`/`offset`: draw the randomness for a batch of `total` images and apply rows
    offset..offset+len(x) of it (a data-parallel rank's share draws what one process would).
    """
    b, _, h, w = x.shape
    total = b if total is None else total
    part = slice(offset, offset + b)
    if pad > 0:
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dx = torch.randint(0, 2 * pad + 1, (total,), generator=generator)[part].to(x.device)
        dy = torch.randint(0, 2 * pad + 1, (total,), generator=generator)[part].to(x.device)
        rows = (dy.view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
        cols = (dx.view(b, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w)
        bidx = torch.arange(b, device=x.device).view(b, 1, 1, 1)
        cidx = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
        x = padded[bidx, cidx, rows, cols]
    if flip:
        mask = (torch.rand(total, generator=generator)[part] < 0.5).to(x.device)
        x = torch.where(mask.view(b, 1, 1, 1), x.flip(3), x)
    return x


def batches(
    n: int,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Index tensors covering range(n) in batches (shuffled with `generator` when asked)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        yield order[i : i + batch_size]
