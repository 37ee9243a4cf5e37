"""The registered datasets (classes, channels, size, normalisation) and where their files live.

Roots resolve as --data-dir > $SPOTTER_DATA > the Debian datasets folder > a clear error saying how
to get the data (docs/design.md, "Checkpoints and data").
"""

from __future__ import annotations

import os
from pathlib import Path

from spotter.data.core import DatasetInfo

DEBIAN_DATASETS = Path("/usr/share/datasets")


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
    # stripe textures in near pairs (spotter/data/loaders.py: synthetic)
    "synthetic": DatasetInfo(
        "synthetic",
        6,
        1,
        16,
        (0.5,),
        (0.25,),
        tuple(f"{kind} {period}px" for kind in ("horizontal", "vertical", "checks") for period in (4, 6)),
    ),
    # Image folders (spotter/imagefolder.py): class count, size, statistics and names come from
    # the folder at load time; these entries only register the names.
    "tinyimagenet": DatasetInfo(
        "tinyimagenet", 200, 3, 64, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821), ()
    ),
    "imagefolder": DatasetInfo("imagefolder", 0, 3, 0, (0.5,) * 3, (0.25,) * 3, ()),
    # Face identities, one folder each (CASIA-WebFace layout; spotter/data/faces.py)
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


def faces_root(data_dir: str | Path | None) -> Path:
    """The identity folder: DIR/CASIA-WebFace, DIR/faces or DIR itself, for DIR = --data-dir, else
    $SPOTTER_DATA (only where one of those subfolders exists: any folder could hold identities)."""
    if data_dir is None:
        base = os.environ.get("SPOTTER_DATA")
        found = [Path(base) / s for s in ("CASIA-WebFace", "casia-webface", "faces")] if base else []
        found = [f for f in found if f.is_dir()]
        if not found:
            raise FileNotFoundError(f"dataset 'faces' needs --data-dir; {HOW_TO_GET['faces']}")
        return found[0]
    root = Path(data_dir)
    for sub in ("CASIA-WebFace", "casia-webface", "faces"):
        if (root / sub).is_dir():
            return root / sub
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; {HOW_TO_GET['faces']}")
    return root


def check_dataset_name(name: str) -> None:
    if name not in INFO:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {', '.join(DATASETS)}")


def resolve_root(name: str, data_dir: str | Path | None = None) -> Path:
    """Where `name` lives: --data-dir > $SPOTTER_DATA > /usr/share/datasets > a clear error."""
    check_dataset_name(name)
    if name == "faces":  # any folder of folders could hold identities (spotter/data/faces.py)
        return faces_root(data_dir)
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
