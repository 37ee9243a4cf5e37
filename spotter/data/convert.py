"""Your own data as a `TensorSet`: one door for each form users hold their images in.

`as_tensorset` takes numpy arrays or torch tensors (with labels), a `torch.utils.data.Dataset` of
(image, label) pairs, or the path of an image folder with one subfolder per class, and returns the
in-memory uint8 (N, C, H, W) images and int64 labels the rest of the library reads. `describe`
measures the `DatasetInfo` (channels, side, per-channel mean and std, class names) a model and its
normalisation are built from. Bad input is a ValueError that names the bad value and what is valid.

Imports only torch, numpy and `spotter.data`'s `core` and `imagefolder` (Pillow lazily, through it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spotter.data.core import DatasetInfo, TensorSet, conform
from spotter.data.imagefolder import IMAGE_EXTS, ImageFolderSet, LazyImages, _pil, materialize, scan

LAYOUTS = "(N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3"


def _tensor(a: Any, what: str) -> torch.Tensor:
    """A numpy array, tensor or nested list as a CPU tensor (a ValueError for anything else)."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu()
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as err:  # ragged lists
        raise ValueError(f"{what} is not an array ({err})") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{what} has dtype {arr.dtype}; expected numbers (uint8 pixels or floats in [0, 1])")
    arr = np.ascontiguousarray(arr)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def _pixels(x: torch.Tensor, what: str) -> torch.Tensor:
    """Images in any accepted layout and dtype -> uint8 (N, C, H, W)."""
    if x.dim() == 3:
        x = x.unsqueeze(1)
    elif x.dim() == 4:
        if x.shape[1] not in (1, 3):
            if x.shape[3] not in (1, 3):
                raise ValueError(
                    f"{what} has shape {tuple(x.shape)}: no channel axis of 1 or 3; expected {LAYOUTS}"
                )
            x = x.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"{what} has {x.dim()} dimensions (shape {tuple(x.shape)}); expected {LAYOUTS}")
    if x.dtype == torch.uint8:
        return x.contiguous()
    if x.dtype == torch.bool:
        raise ValueError(f"{what} has dtype bool; expected uint8 pixels (0..255) or floats in [0, 1]")
    if x.numel() == 0:
        return x.to(torch.uint8)
    lo, hi = float(x.min()), float(x.max())
    if x.is_floating_point():
        if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
            raise ValueError(
                f"{what} holds float values in [{lo:g}, {hi:g}]; float pixels must lie in [0, 1]: "
                "scale them to [0, 1] (e.g. divide by 255, undo any Normalize) or pass uint8 pixels (0..255)"
            )
        return x.float().mul(255).round_().to(torch.uint8).contiguous()
    if not (0 <= lo and hi <= 255):  # other integer dtypes: cast only when nothing wraps
        raise ValueError(
            f"{what} holds integer values in [{lo:g}, {hi:g}]; integer pixels must lie in 0..255"
        )
    return x.to(torch.uint8).contiguous()


def _labels(y: Any, n: int | None = None) -> torch.Tensor:
    """Class ids as int64 (N,): integers >= 0, else a ValueError naming the bad ones."""
    try:
        arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    except (TypeError, ValueError) as err:
        raise ValueError(f"labels are not a list of integers ({err})") from None
    if arr.ndim != 1:
        raise ValueError(f"labels have shape {arr.shape}; expected a flat list (N,) of class ids 0..K-1")
    if n is not None and len(arr) != n:
        raise ValueError(f"{n} images but {len(arr)} labels; give one label per image")
    if arr.dtype.kind == "f":
        bad = arr[~np.isfinite(arr) | (arr != np.round(arr))] if arr.size else arr
        if bad.size:
            raise ValueError(
                f"labels must be integer class ids 0..K-1; got non-integer labels {sorted(set(bad.tolist()))[:5]}"
            )
    elif arr.dtype.kind not in "iu":
        shown = sorted({str(v) for v in arr.tolist()})[:5] if arr.size else []
        raise ValueError(
            f"labels must be integer class ids 0..K-1; got dtype {arr.dtype} (e.g. {shown}): "
            "map each class to an integer first"
        )
    if arr.size and arr.min() < 0:
        raise ValueError(
            f"labels must be integer class ids 0..K-1; got negative labels {sorted(set(arr[arr < 0].tolist()))[:5]}"
        )
    return torch.from_numpy(arr.astype(np.int64))


def _resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    return x if size is None else conform(x, x.shape[1], size)


def _item_image(image: Any, i: int) -> torch.Tensor:
    """One Dataset image (PIL, numpy or tensor: (H, W), (H, W, C) or (C, H, W)) -> uint8 (1, C, H, W)."""
    if type(image).__module__.startswith("PIL."):
        pil = _pil()
        if isinstance(image, pil.Image):
            image = image.convert("L" if image.mode in ("L", "1", "I;16", "I", "F", "LA") else "RGB")
            image = np.asarray(image, dtype=np.uint8)
    x = _tensor(image, f"item {i}'s image")
    if x.dim() not in (2, 3):
        raise ValueError(
            f"item {i}'s image has shape {tuple(x.shape)}; expected (H, W), (H, W, C) or (C, H, W) with C = 1 or 3"
        )
    return _pixels(x.unsqueeze(0), f"item {i}'s image")


def _from_dataset(data: Any, size: int | None) -> TensorSet:
    n = len(data)
    if n == 0:
        raise ValueError("the dataset is empty (len 0); give at least one (image, label) pair")
    images, labels = [], []
    for i in range(n):
        item = data[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(
                f"item {i} of the dataset is a {type(item).__name__}; expected an (image, label) pair"
            )
        x = _resize(_item_image(item[0], i), size)
        if images and x.shape[1:] != images[0].shape[1:]:
            raise ValueError(
                f"item {i}'s image is {tuple(x.shape[1:])} (C, H, W) but item 0's is {tuple(images[0].shape[1:])}; "
                "pass size= to resize every image to one square side"
            )
        label = item[1]
        if isinstance(label, torch.Tensor) and label.numel() == 1:
            label = label.item()
        if isinstance(label, np.ndarray) and label.size == 1:
            label = label.item()
        if not isinstance(label, (int, np.integer)) or isinstance(label, bool):
            raise ValueError(f"item {i}'s label is {label!r}; expected an integer class id 0..K-1")
        images.append(x)
        labels.append(int(label))
    return TensorSet(torch.cat(images), _labels(np.asarray(labels, dtype=np.int64)))


def _from_folder(root: Path, size: int | None) -> TensorSet:
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; expected a folder with one subfolder of images per class")
    subfolders = {p.name for p in root.iterdir() if p.is_dir()}
    if "train" in subfolders and subfolders & {"val", "test"}:
        raise ValueError(
            f"{root} holds train/ and {'val' if 'val' in subfolders else 'test'}/ folders, not class folders: "
            f"convert each split on its own, e.g. as_tensorset('{root / 'train'}')"
        )
    try:
        paths, labels, _ = scan(root)
    except FileNotFoundError as err:
        raise ValueError(f"{err} (extensions {', '.join(sorted(IMAGE_EXTS))})") from None
    try:
        with _pil().open(paths[0]) as im:  # the first image decides mode and, without `size`, the side
            mode = "L" if im.mode in ("L", "1", "I;16", "I", "F", "LA") else "RGB"
            shape = (im.size[1], im.size[0]) if size is None else (size, size)
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for unreadable files
        raise ValueError(f"{paths[0]} is not a readable image: {err}") from None
    lazy = ImageFolderSet(LazyImages(np.array(paths), mode, shape), torch.tensor(labels, dtype=torch.long))
    return materialize(lazy, workers=0)


def as_tensorset(source: Any, labels: Any = None, *, size: int | None = None) -> TensorSet:
    """Images and labels in any of three forms as an in-memory `TensorSet` (uint8 (N, C, H, W), int64).

    - arrays: `source` a numpy array or tensor of images, `labels` their class ids (N,). Images are
      (N, H, W), (N, H, W, C) or (N, C, H, W) (channels first when dim 1 is 1 or 3, else last);
      uint8 pixels are kept, floats must lie in [0, 1] (scaled to 0..255 and rounded), other
      integers in 0..255.
    - a `torch.utils.data.Dataset` (anything with `__len__` and `__getitem__`) of (image, label)
      pairs, the image a PIL image, numpy array or tensor as above; read once, in order.
    - a path (str or Path) to a folder with one subfolder of images per class (sorted folder names
      are the class ids 0..K-1); images take the mode (L or RGB) and, without `size`, the size of
      the first one, as `spotter.data.imagefolder` reads them.

    `size`: resize every image (bilinear) to size x size; needed when a Dataset's images differ in
    size. Labels must be integers 0..K-1.
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be a positive integer (the side in pixels), got {size!r}")
    if isinstance(source, TensorSet):  # already converted (an on-disk image folder set is decoded)
        data = materialize(source, workers=0) if isinstance(source, ImageFolderSet) else source
        return TensorSet(_resize(data.x, size), data.y)
    if isinstance(source, (str, Path)):
        if labels is not None:
            raise ValueError("labels= is only for arrays; an image folder's labels are its class subfolders")
        return _from_folder(Path(source), size)
    if isinstance(source, (np.ndarray, torch.Tensor)) or (
        isinstance(source, (list, tuple)) and labels is not None
    ):
        if labels is None:
            raise ValueError("arrays of images need labels=: one integer class id 0..K-1 per image")
        x = _tensor(source, "images")
        if x.dim() == 0 or len(x) == 0:
            raise ValueError(
                f"no images: the array has shape {tuple(x.shape)}; expected {LAYOUTS} with N >= 1"
            )
        y = _labels(labels, len(x))
        return TensorSet(_resize(_pixels(x, "images"), size), y)
    if hasattr(source, "__len__") and hasattr(source, "__getitem__"):
        if labels is not None:
            raise ValueError("labels= is only for arrays; a Dataset yields (image, label) pairs")
        return _from_dataset(source, size)
    raise ValueError(
        f"cannot read images from a {type(source).__name__}; expected numpy arrays or tensors with labels=, "
        "a torch Dataset of (image, label) pairs (with __len__ and __getitem__), or an image folder path"
    )


def describe(
    train: TensorSet,
    name: str = "custom",
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> DatasetInfo:
    """The `DatasetInfo` of a training set: channels, side, per-channel mean and std of its pixels
    in [0, 1] (the model's normalisation), the number of classes (max label + 1 unless given) and
    their names ("class 0", ... unless given). Images must be square (the library's `size`)."""
    if not isinstance(train, TensorSet):
        raise ValueError(
            f"describe reads a TensorSet, got a {type(train).__name__}; convert it with as_tensorset"
        )
    n, channels, h, w = train.x.shape
    if n == 0:
        raise ValueError("the training set is empty; describe needs at least one image")
    if h != w:
        raise ValueError(
            f"images are {h}x{w} (H x W); the library assumes square images: resize them, e.g. "
            f"as_tensorset(..., size={max(h, w)})"
        )
    top = int(train.y.max()) + 1
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else top
    if num_classes < top:
        raise ValueError(f"num_classes={num_classes} but the labels go up to {top - 1}; give at least {top}")
    names = tuple(class_names) if class_names is not None else tuple(f"class {c}" for c in range(num_classes))
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class_names for {num_classes} classes; give one name per class")
    total = torch.zeros(channels, dtype=torch.int64)
    squares = torch.zeros(channels, dtype=torch.int64)
    for i in range(0, n, 1024):  # exact integer sums, a chunk at a time
        x = train.x[i : i + 1024].to(torch.int64)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = n * h * w
    mean = total.double() / count / 255
    var = (squares.double() / count / 255**2 - mean.square()).clamp_min(0)
    std = var.sqrt().clamp_min(1e-3)  # a constant channel must not divide by zero
    return DatasetInfo(name, num_classes, channels, h, tuple(mean.tolist()), tuple(std.tolist()), names)
