"""Face identities in the CASIA-WebFace layout: ROOT/<identity>/<images>, one folder per identity.

Each identity is a class; forgetting one or several identities is class-level unlearning. The
layout has no test split, so a held-out test split is carved per identity with a seed
(`test_fraction` of each identity's images, at least one when it has two or more). A folder that
does have ROOT/train/ and ROOT/test|val/ is read as it stands (spotter/imagefolder.py). Images
are decoded into memory, or streamed from disk when over the memory budget (imagefolder.py);
aligned 112x112 crops are expected (CASIA-WebFace as distributed by insightface, unpacked to
folders). Pillow is needed and imported lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from spotter.data import imagefolder
from spotter.data.core import DatasetInfo, TensorSet

log = logging.getLogger("spotter")


def carve(labels: Sequence[int], test_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, test indices): a seeded `test_fraction` of each identity's images held out."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    y = torch.as_tensor(labels)
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in y.unique().tolist():  # sorted identities: the draw does not depend on file order
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = 0 if len(idx) < 2 else max(1, round(test_fraction * len(idx)))
        n_test = min(n_test, len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def load_faces(
    root: str | Path,
    test_fraction: float = 0.1,
    min_images: int = 2,
    seed: int = 0,
    stream: bool | None = None,
    workers: int | None = None,
) -> tuple[TensorSet, TensorSet, DatasetInfo]:
    """(train, test, info) of an identity folder; identities with < `min_images` images are dropped."""
    root = Path(root)
    if (root / "train").is_dir():
        return imagefolder.load_imagefolder(root, "faces", stream, workers)
    paths, labels, names = imagefolder.scan(root)
    counts = torch.bincount(torch.tensor(labels), minlength=len(names))
    keep = [i for i, n in enumerate(counts.tolist()) if n >= min_images]
    if len(keep) < 2:
        raise ValueError(f"{root}: {len(keep)} identities with >= {min_images} images; need at least 2")
    if len(keep) < len(names):
        log.info("faces: dropped %d identities with fewer than %d images", len(names) - len(keep), min_images)
        new_id = {old: new for new, old in enumerate(keep)}
        pairs = [(p, new_id[y]) for p, y in zip(paths, labels, strict=True) if y in new_id]
        paths, labels = [p for p, _ in pairs], [y for _, y in pairs]
        names = [names[i] for i in keep]
    tr, te = carve(labels, test_fraction, seed)
    train_files = ([paths[i] for i in tr.tolist()], [labels[i] for i in tr.tolist()])
    test_files = ([paths[i] for i in te.tolist()], [labels[i] for i in te.tolist()])
    return imagefolder.from_files("faces", train_files, test_files, names, stream, workers)


def identity_ids(info: DatasetInfo, identities: Sequence[str | int]) -> tuple[int, ...]:
    """Class ids of identities given by folder name (or already as ids): the forget set."""
    index = {name: i for i, name in enumerate(info.class_names)}
    out = []
    for ident in identities:
        if isinstance(ident, int):
            out.append(ident)
        elif ident in index:
            out.append(index[ident])
        else:
            raise ValueError(f"unknown identity {ident!r}; {len(index)} identities, e.g. {list(index)[:3]}")
    return tuple(out)


def write_synthetic_identities(
    root: str | Path,
    identities: int = 12,
    per_identity: int = 12,
    size: int = 32,
    seed: int = 0,
    jitter: float = 0.06,
    shift: int = 2,
) -> Path:
    """A CASIA-WebFace-shaped tree of PNGs for tests and demos: ROOT/id_<4-digit id>/<3-digit index>.png (RGB).

    Every identity is a seeded template, half a face-like base shared by all identities and half its
    own pattern; each image jitters it (a shift of up to `shift` px, brightness x0.85-1.15, pixel
    noise of std `jitter`).
    """
    image = imagefolder._pil()
    root = Path(root)
    g = torch.Generator().manual_seed(seed)

    def pattern(n: int, cells: int) -> torch.Tensor:
        coarse = torch.rand(n, 3, cells, cells, generator=g)
        return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)

    base = pattern(1, 4)
    templ = 0.5 * base + 0.5 * pattern(identities, 6)  # (I, 3, S, S)
    for i in range(identities):
        folder = root / f"id_{i:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_identity):
            dx, dy = torch.randint(-shift, shift + 1, (2,), generator=g).tolist()
            x = templ[i].roll((dy, dx), dims=(1, 2)) * (0.85 + 0.3 * torch.rand((), generator=g))
            x = x + jitter * torch.randn(x.shape, generator=g)
            a = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            image.fromarray(a, "RGB").save(folder / f"{j:03d}.png")
    return root
