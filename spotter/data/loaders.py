"""Loaders: registered datasets (IDX, CIFAR pickles, image folders, faces, synthetic) and surrogates.

Every loader returns uint8 (train, test) TensorSets; `prepare` turns a DataConfig into Splits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spotter.data.catalog import DATASETS, HOW_TO_GET, INFO, check_dataset_name, resolve_root
from spotter.data.core import DatasetInfo, Splits, TensorSet, conform, make_splits
from spotter.data.formats import DataFormatError, read_cifar_batch, read_idx


def _idx_file(root: Path, stem: str) -> Path:
    for p in (root / f"{stem}.gz", root / stem):
        if p.exists():
            return p
    raise FileNotFoundError(f"{root / stem}[.gz] missing; {HOW_TO_GET['fashion-mnist']}")


def _load_fashion(root: Path) -> tuple[TensorSet, TensorSet]:
    out = []
    for prefix in ("train", "t10k"):
        x = read_idx(_idx_file(root, f"{prefix}-images-idx3-ubyte"))
        y = read_idx(_idx_file(root, f"{prefix}-labels-idx1-ubyte"))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataFormatError(f"{root}: {prefix} images {x.shape} do not match labels {y.shape}")
        if y.size and y.max() > 9:
            raise DataFormatError(f"{root}: {prefix} labels hold {int(y.max())}, expected 0..9")
        out.append(TensorSet(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y).long()))
    return out[0], out[1]


def _load_cifar(root: Path, name: str) -> tuple[TensorSet, TensorSet]:
    if name == "cifar10":
        folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").exists() else root
        train_files = [folder / f"data_batch_{i}" for i in range(1, 6)]
        test_files, key = [folder / "test_batch"], "labels"
    else:
        folder = root / "cifar-100-python" if (root / "cifar-100-python").exists() else root
        train_files, test_files, key = [folder / "train"], [folder / "test"], "fine_labels"
    sets = []
    for files in (train_files, test_files):
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise FileNotFoundError(f"missing {', '.join(missing)}; {HOW_TO_GET[name]}")
        parts = [read_cifar_batch(f, key) for f in files]
        for f, (_, labels) in zip(files, parts, strict=True):
            if labels.size and not 0 <= labels.min() <= labels.max() < INFO[name].num_classes:
                raise DataFormatError(
                    f"{f}: {key!r} holds {int(labels.min())}..{int(labels.max())}, "
                    f"expected 0..{INFO[name].num_classes - 1}"
                )
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        sets.append(TensorSet(torch.from_numpy(x), torch.from_numpy(y)))
    return sets[0], sets[1]


def synthetic(
    num_classes: int = 6,
    per_class: int = 320,
    test_per_class: int = 32,
    size: int = 16,
    seed: int = 0,
) -> tuple[TensorSet, TensorSet]:
    """Seeded stripe textures plus noise, in near pairs: what the tiny CNN learns in seconds.

    The classes of pair k = c // 2 share an orientation (pair 0 horizontal stripes, pair 1 vertical
    stripes, pair 2 checks) and differ only in the stripes' period (4 pixels for even c, 6 for odd
    c), so every class has a near neighbour, its partner (what over-unlearning is about), while its
    period recurs in the other pairs. The phase is random per image and the textures survive flips
    and crops, so global pooling of convolution features tells the classes apart.
    """
    if not 1 <= num_classes <= 6:
        raise ValueError(f"synthetic has 1..6 classes (3 orientations x 2 periods), got {num_classes}")
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")

    def draw(n: int) -> TensorSet:
        y = torch.arange(num_classes).repeat_interleave(n)
        freq = (2 * math.pi / torch.tensor([4.0, 6.0]))[y % 2].view(-1, 1, 1)
        phase = torch.rand(len(y), 2, 1, 1, generator=g) * 2 * math.pi
        across = torch.cos(freq * rows + phase[:, 0])  # horizontal stripes
        along = torch.cos(freq * cols + phase[:, 1])  # vertical stripes
        pair = (y // 2).view(-1, 1, 1)
        texture = torch.where(pair == 0, across, torch.where(pair == 1, along, 1.5 * across * along))
        x = 0.5 + 0.35 * texture + 0.075 * torch.randn(len(y), size, size, generator=g)
        return TensorSet((x.clamp(0, 1) * 255).round().to(torch.uint8).unsqueeze(1), y)

    return draw(per_class), draw(test_per_class)


def load(name: str, data_dir: str | Path | None = None) -> tuple[TensorSet, TensorSet, DatasetInfo]:
    """(train, test, info) for a registered dataset."""
    check_dataset_name(name)
    if name == "synthetic":
        train, test = synthetic()
    elif name == "faces":  # identity folders, per-identity held-out test split (spotter/data/faces.py)
        from spotter.data import faces as facedata

        return facedata.load_faces(resolve_root(name, data_dir))
    elif name in ("imagefolder", "tinyimagenet"):  # decoded into memory, or streamed when too large
        from spotter.data import imagefolder

        root = resolve_root(name, data_dir)
        return (
            imagefolder.load_tinyimagenet(root)
            if name == "tinyimagenet"
            else imagefolder.load_imagefolder(root)
        )
    else:
        root = resolve_root(name, data_dir)
        train, test = _load_fashion(root) if name == "fashion-mnist" else _load_cifar(root, name)
    return train, test, INFO[name]


def load_surrogate(
    name: str,
    data_dir: str | Path | None,
    like: DatasetInfo,
    count: int = 5000,
    seed: int = 0,
) -> TensorSet:
    """`count` seeded training images of another dataset, shaped like `like`'s: SCAR's surrogate set.

    Labels are kept but unused (a surrogate is unlabelled out-of-distribution data). The surrogate
    must be another dataset: the main one's training images would hand retain data to a method
    whose contract (NEEDS) says it reads none.
    """
    if name == like.name:
        raise ValueError(
            f"surrogate dataset {name!r} is the dataset being unlearned; pick another one "
            f"(valid choices: {', '.join(n for n in DATASETS if n != like.name)})"
        )
    if count < 1:
        raise ValueError(f"surrogate size must be >= 1, got {count}")
    train, _, _ = load(name, data_dir)
    n = min(count, len(train))
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    part = train.subset(pick)
    return TensorSet(conform(part.x[torch.arange(n)], like.channels, like.size), part.y)


@dataclass
class DataConfig:
    """Which data and which classes to forget."""

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    forget: tuple[int, ...] = (0,)
    val_size: int = 5000  # validation images carved from train (seeded by split_seed)
    shots: int = 5  # attacker's K per forget class (docs/method.md §4)
    split_seed: int = 0
    # Out-of-distribution images for methods that read "surrogate" (SCAR): another dataset's
    # training images, converted to this dataset's channels and size. None: SCAR's own fallback.
    surrogate: str | None = None
    surrogate_dir: str | None = None
    surrogate_size: int = 5000  # SCAR's fallback size too (methods/scar.py)

    def split_key(self) -> dict[str, Any]:
        """What decides the splits (and so every reference model's measures); not the surrogate."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("surrogate")}


def prepare(cfg: DataConfig) -> tuple[Splits, DatasetInfo]:
    train, test, info = load(cfg.dataset, cfg.data_dir)
    val_size = cfg.val_size if cfg.val_size < len(train) // 2 else len(train) // 10
    splits = make_splits(train, test, cfg.forget, info.num_classes, val_size, cfg.shots, cfg.split_seed)
    if cfg.surrogate:
        sur = load_surrogate(cfg.surrogate, cfg.surrogate_dir, info, cfg.surrogate_size, cfg.split_seed)
        splits = replace(splits, surrogate=sur)
    return splits, info
