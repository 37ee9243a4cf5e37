"""Datasets, forget/retain splits and batching (design.md, "Core contracts").

Images live in memory as uint8 tensors (N, C, H, W) and become float pixels in [0, 1] per batch;
batches are made by indexing (no DataLoader), as in KellerJordan/cifar10-airbench.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spotter.formats import DataFormatError, read_cifar_batch, read_idx

DEBIAN_DATASETS = Path("/usr/share/datasets")


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


FASHION_NAMES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# Channel statistics of each training set (the usual published values), used as the model's
# normalisation buffer.
INFO = {
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,), FASHION_NAMES),
    "cifar10": DatasetInfo(
        "cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR10_NAMES
    ),
    "cifar100": DatasetInfo(
        "cifar100",
        100,
        3,
        32,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        tuple(f"class {i}" for i in range(100)),
    ),
    "synthetic": DatasetInfo("synthetic", 6, 1, 16, (0.5,), (0.25,), tuple(f"class {i}" for i in range(6))),
    # Image folders (spotter/imagefolder.py): class count, size, statistics and names come from
    # the folder at load time; these entries only register the names.
    "tinyimagenet": DatasetInfo(
        "tinyimagenet", 200, 3, 64, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821), ()
    ),
    "imagefolder": DatasetInfo("imagefolder", 0, 3, 0, (0.5,) * 3, (0.25,) * 3, ()),
    # Face identities, one folder each (CASIA-WebFace layout; spotter/facedata.py)
    "faces": DatasetInfo("faces", 0, 3, 112, (0.5,) * 3, (0.5,) * 3, ()),
}
DATASETS = tuple(INFO)

HOW_TO_GET = {
    "fashion-mnist": "install the Debian package (apt-get install dataset-fashion-mnist) or put the "
    "four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) from "
    "https://github.com/zalandoresearch/fashion-mnist in a folder and pass --data-dir FOLDER",
    "cifar10": "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
    "extract it and pass --data-dir to the folder holding cifar-10-batches-py/",
    "cifar100": "download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
    "extract it and pass --data-dir to the folder holding cifar-100-python/",
    "tinyimagenet": "download tiny-imagenet-200.zip from http://cs231n.stanford.edu/tiny-imagenet-200.zip, "
    "extract it and pass --data-dir to the folder holding tiny-imagenet-200/ (needs pillow)",
    "imagefolder": "pass --data-dir to a folder holding train/<class>/<images> and val/ or test/ laid out "
    "the same way (or images/ + val_annotations.txt, as TinyImageNet); needs pillow",
    "faces": "pass --data-dir to a folder of identity folders, ROOT/<identity>/<images> (CASIA-WebFace "
    "aligned 112x112 crops unpacked to image files, or ROOT/CASIA-WebFace/...); a per-identity test "
    "split is carved with a seed; needs pillow",
}
# Which file proves a folder holds the dataset, relative to the dataset's own folder.
MARKERS = {
    "fashion-mnist": ("train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte"),
    "cifar10": ("cifar-10-batches-py/data_batch_1", "data_batch_1"),
    "cifar100": ("cifar-100-python/train", "train"),
    "tinyimagenet": ("tiny-imagenet-200/wnids.txt", "wnids.txt"),
    "imagefolder": ("train",),
    "faces": ("CASIA-WebFace", "casia-webface"),
}


def check_dataset_name(name: str) -> None:
    if name not in INFO:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {', '.join(DATASETS)}")


def resolve_root(name: str, data_dir: str | Path | None = None) -> Path:
    """Where `name` lives: --data-dir > $SPOTTER_DATA > /usr/share/datasets > a clear error."""
    check_dataset_name(name)
    if name == "faces":  # any folder of folders could hold identities (spotter/facedata.py)
        from spotter import facedata

        return facedata.resolve(data_dir)
    candidates: list[Path] = []
    for base in (data_dir, os.environ.get("SPOTTER_DATA"), DEBIAN_DATASETS):
        if base:
            candidates += [Path(base) / name, Path(base)]
        if data_dir is not None and base == data_dir:
            break  # an explicit folder is the only place we look
    for folder in candidates:
        if any((folder / m).exists() for m in MARKERS[name]):
            return folder
    looked = ", ".join(str(c) for c in candidates) or "(nowhere)"
    raise FileNotFoundError(f"dataset {name!r} not found (looked in {looked}); {HOW_TO_GET[name]}")


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
    per_class: int = 64,
    test_per_class: int = 32,
    size: int = 16,
    seed: int = 0,
) -> tuple[TensorSet, TensorSet]:
    """Seeded templates plus noise. Classes come in pairs that share 40% of their template, so
    every class has a near neighbour (what over-unlearning is about)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, 1, size // 4, size // 4, generator=g)
    own = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    shared = own[torch.arange(num_classes) // 2 * 2]  # pair partner's template
    templates = 0.6 * own + 0.4 * shared  # (K, 1, S, S)

    def draw(n: int) -> TensorSet:
        y = torch.arange(num_classes).repeat_interleave(n)
        x = templates[y] + 0.1 * torch.randn(len(y), 1, size, size, generator=g)
        return TensorSet((x.clamp(0, 1) * 255).round().to(torch.uint8), y)

    return draw(per_class), draw(test_per_class)


def load(name: str, data_dir: str | Path | None = None) -> tuple[TensorSet, TensorSet, DatasetInfo]:
    """(train, test, info) for a registered dataset."""
    check_dataset_name(name)
    if name == "synthetic":
        train, test = synthetic()
    elif name == "faces":  # identity folders, per-identity held-out test split (spotter/facedata.py)
        from spotter import facedata

        return facedata.load_faces(resolve_root(name, data_dir))
    elif name in ("imagefolder", "tinyimagenet"):  # decoded into memory, or streamed when too large
        from spotter import imagefolder

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


@dataclass
class Splits:
    """The data every method, metric and attack sees (design.md)."""

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
    drawn (seeded) from the forget train set: the attacker's pool in PRA (method.md §4).
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
