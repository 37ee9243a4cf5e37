"""Image-folder datasets (one folder per class, as TinyImageNet and CASIA-WebFace are distributed).

Layout: ROOT/train/<class>/**/<image> and ROOT/val/ (or ROOT/test/) either with the same class
folders or, as TinyImageNet's val/, with images/ and a val_annotations.txt ("file<TAB>class...").
Classes are the sorted train subfolders. Every image is converted to the mode (RGB or L) and
resized (bilinear) to the size of the first training image.

When the decoded set fits a memory budget ($SPOTTER_MEMORY_BUDGET in GiB, default a quarter of
RAM) everything is decoded once into an in-memory uint8 `TensorSet` (the fast path); otherwise the
set is an `ImageFolderSet`: labels in memory, images decoded when indexed, and `fit()` streams
its batches through a DataLoader with workers. Both give the same splits, batches and model.
Pillow (a dependency) is imported lazily.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spotter.data.core import DatasetInfo, TensorSet
from spotter.data.formats import DataFormatError

log = logging.getLogger("spotter")

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}


def _pil():  # noqa: ANN202 - the PIL.Image module
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "image-folder datasets need Pillow, a dependency of spotter-unlearning: reinstall it (pip install pillow)"
        ) from None
    return Image


def decode(path: str, mode: str, size: tuple[int, int]) -> torch.Tensor:
    """One image file -> uint8 (C, H, W) in `mode` ("RGB" or "L"), resized to `size` = (H, W)."""
    image = _pil()
    try:
        with image.open(path) as im:
            im = im.convert(mode)
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), image.BILINEAR)
            a = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for unreadable or truncated files
        raise DataFormatError(f"{path} is not a readable image: {err}") from None
    return a.unsqueeze(0) if a.dim() == 2 else a.permute(2, 0, 1).contiguous()


class LazyImages:
    """Image files that decode when indexed: `x[idx]` -> uint8 (B, C, H, W), like a tensor."""

    dtype = torch.uint8

    def __init__(self, paths: np.ndarray, mode: str, size: tuple[int, int]) -> None:
        self.paths, self.mode, self.size = paths, mode, size

    def __len__(self) -> int:
        return len(self.paths)

    def dim(self) -> int:
        return 4

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), 1 if self.mode == "L" else 3, *self.size)

    def select(self, idx: torch.Tensor | np.ndarray | Sequence[int]) -> LazyImages:
        """The same files, subset (nothing decoded)."""
        idx = idx.cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx, dtype=np.int64)
        return LazyImages(self.paths[idx], self.mode, self.size)

    def __getitem__(self, idx) -> torch.Tensor:  # noqa: ANN001 - int, slice or index tensor
        if isinstance(idx, int):
            return decode(self.paths[idx], self.mode, self.size)
        paths = self.paths[idx] if isinstance(idx, slice) else self.select(idx).paths
        if len(paths) == 0:
            return torch.zeros(0, *self.shape[1:], dtype=torch.uint8)
        return torch.stack([decode(p, self.mode, self.size) for p in paths])

    def digest(self) -> bytes:
        """Identity of the file list (for the model cache key), without reading the images."""
        return hashlib.sha256("\n".join(self.paths.tolist()).encode()).digest()


@dataclass
class ImageFolderSet(TensorSet):
    """A TensorSet whose images stay on disk: subsets are lazy, `x[idx]` decodes."""

    x: LazyImages  # type: ignore[assignment]

    def subset(self, idx: torch.Tensor) -> ImageFolderSet:
        return ImageFolderSet(self.x.select(idx), self.y[idx])

    def to(self, device: torch.device | str) -> ImageFolderSet:
        return self  # images are decoded per batch and moved by the training loop

    def cat(self, other: TensorSet) -> ImageFolderSet:
        if not isinstance(other, ImageFolderSet):
            raise TypeError("an image folder set concatenates only with another image folder set")
        x = LazyImages(np.concatenate([self.x.paths, other.x.paths]), self.x.mode, self.x.size)
        return ImageFolderSet(x, torch.cat([self.y, other.y]))

    def loader(
        self, batch_indices: list[torch.Tensor], workers: int, pin: bool
    ) -> torch.utils.data.DataLoader:
        """A DataLoader yielding (uint8 (B, C, H, W), labels (B,)) for the given index batches."""
        return torch.utils.data.DataLoader(
            _Files(self),
            batch_sampler=[b.tolist() for b in batch_indices],
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=False,
        )


class _Files(torch.utils.data.Dataset):
    def __init__(self, data: ImageFolderSet) -> None:
        self.x, self.y = data.x, data.y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[int(i)], self.y[i]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def scan(root: Path, classes: Sequence[str] | None = None) -> tuple[list[str], list[int], list[str]]:
    """(paths, labels, classes) of one split folder: class subfolders, or images/ + val_annotations.txt."""
    annotations = root / "val_annotations.txt"
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not classes:
            raise FileNotFoundError(f"{root} holds no class folders (expected {root}/<class>/<images>)")
    index = {c: i for i, c in enumerate(classes)}
    paths: list[str] = []
    labels: list[int] = []
    if annotations.exists() and not any((root / c).is_dir() for c in classes):
        images = root / "images" if (root / "images").is_dir() else root
        for line in annotations.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) < 2 or not parts[0]:
                continue
            if parts[1] not in index:
                raise ValueError(f"{annotations}: class {parts[1]!r} is not a train class folder")
            paths.append(str(images / parts[0]))
            labels.append(index[parts[1]])
        return paths, labels, list(classes)
    for c in classes:
        found = _files(root / c) if (root / c).is_dir() else []
        paths += [str(p) for p in found]
        labels += [index[c]] * len(found)
    if not paths:
        raise FileNotFoundError(f"no images found under {root}/<class>/ (extensions {sorted(IMAGE_EXTS)})")
    return paths, labels, list(classes)


def eval_folder(root: Path) -> Path:
    """The labelled held-out folder: val/ (TinyImageNet) or test/."""
    for name in ("val", "test"):
        folder = root / name
        if folder.is_dir() and (
            (folder / "val_annotations.txt").exists() or any(p.is_dir() for p in folder.iterdir())
        ):
            return folder
    raise FileNotFoundError(f"{root} has no labelled val/ or test/ folder next to train/")


def memory_budget() -> float:
    """Bytes of decoded images we keep in memory: $SPOTTER_MEMORY_BUDGET GiB, else 1/4 of RAM."""
    if os.environ.get("SPOTTER_MEMORY_BUDGET"):
        text = os.environ["SPOTTER_MEMORY_BUDGET"]
        try:
            gib = float(text)
        except ValueError:
            gib = -1.0
        if not 0 <= gib < float("inf"):
            raise ValueError(f"SPOTTER_MEMORY_BUDGET={text!r}: expected a number of GiB >= 0, e.g. 8")
        return gib * 2**30
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 4
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def materialize(data: ImageFolderSet, workers: int = 0, batch_size: int = 256) -> TensorSet:
    """Decode every image into one in-memory uint8 TensorSet (DataLoader workers decode)."""
    out = torch.empty(data.x.shape, dtype=torch.uint8)
    order = list(torch.arange(len(data)).split(batch_size))
    start = 0
    for xb, _ in data.loader(order, workers, pin=False):
        out[start : start + len(xb)] = xb
        start += len(xb)
    return TensorSet(out, data.y.clone())


def channel_stats(data: ImageFolderSet, count: int = 512, seed: int = 0) -> tuple[tuple, tuple]:
    """Per-channel mean and std of a seeded sample of images (the model's normalisation buffer)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[:count]
    x = data.x[idx].float().div_(255)  # (n, C, H, W)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def load_imagefolder(
    root: str | Path,
    name: str = "imagefolder",
    stream: bool | None = None,
    workers: int | None = None,
    info: DatasetInfo | None = None,
) -> tuple[TensorSet, TensorSet, DatasetInfo]:
    """(train, test, info) from ROOT/train and ROOT/val|test; streamed when over the memory budget.

    `stream`: None picks by the budget, True/False forces a path. `info`: known statistics and
    names (TinyImageNet); otherwise they are measured on a sample and taken from folder names.
    """
    root = Path(root)
    if not (root / "train").is_dir():
        raise FileNotFoundError(f"{root}/train/ missing; expected ROOT/train/<class>/ and ROOT/val|test/")
    paths, labels, classes = scan(root / "train")
    test_paths, test_labels, _ = scan(eval_folder(root), classes)
    return from_files(name, (paths, labels), (test_paths, test_labels), classes, stream, workers, info)


def from_files(
    name: str,
    train_files: tuple[list[str], list[int]],
    test_files: tuple[list[str], list[int]],
    classes: Sequence[str],
    stream: bool | None = None,
    workers: int | None = None,
    info: DatasetInfo | None = None,
) -> tuple[TensorSet, TensorSet, DatasetInfo]:
    """(train, test, info) from (paths, labels) lists: decoded, or streamed over the memory budget."""
    (paths, labels), (test_paths, test_labels) = train_files, test_files
    image = _pil()
    try:
        with image.open(paths[0]) as im:
            mode = "L" if im.mode in ("L", "1", "I;16", "I") else "RGB"
            size = (im.size[1], im.size[0])
    except (OSError, SyntaxError, ValueError) as err:
        raise DataFormatError(f"{paths[0]} is not a readable image: {err}") from None

    def lazy(p: list[str], y: list[int]) -> ImageFolderSet:
        return ImageFolderSet(LazyImages(np.array(p), mode, size), torch.tensor(y, dtype=torch.long))

    train, test = lazy(paths, labels), lazy(test_paths, test_labels)
    channels = 1 if mode == "L" else 3
    nbytes = (len(train) + len(test)) * channels * size[0] * size[1]
    if stream is None:
        stream = nbytes > memory_budget()
    if info is None:
        mean, std = channel_stats(train)
        info = DatasetInfo(name, len(classes), channels, size[0], mean, std, tuple(classes))
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    log.info(
        "%s: %d train / %d test images of %s %dx%d, %.2f GiB decoded: %s",
        name,
        len(train),
        len(test),
        mode,
        size[0],
        size[1],
        nbytes / 2**30,
        "streamed from disk" if stream else "decoded into memory",
    )
    if not stream:
        train, test = materialize(train, workers), materialize(test, workers)
    return train, test, info


TINY_MEAN, TINY_STD = (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)


def load_tinyimagenet(
    root: str | Path, stream: bool | None = None
) -> tuple[TensorSet, TensorSet, DatasetInfo]:
    """TinyImageNet-200 (train/<wnid>/images, val/images + val_annotations.txt); names from words.txt."""
    root = Path(root)
    if (root / "tiny-imagenet-200").is_dir():
        root = root / "tiny-imagenet-200"
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    words = {}
    if (root / "words.txt").exists():
        for line in (root / "words.txt").read_text().splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid] = text.split(",")[0].strip()
    names = tuple(words.get(c, c) for c in classes)
    info = DatasetInfo("tinyimagenet", len(classes), 3, 64, TINY_MEAN, TINY_STD, names)
    return load_imagefolder(root, "tinyimagenet", stream, info=info)
