"""Image-folder datasets on tiny PNG trees written by the test: streamed == in memory."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import spotter.data
from spotter.data import TensorSet, imagefolder, make_splits
from spotter.data.imagefolder import ImageFolderSet, load_imagefolder
from spotter.models import ModelSpec, build_model
from spotter.training.fit import FitOptions, TrainConfig, fit

Image = pytest.importorskip("PIL.Image")
torch.set_num_threads(1)

CLASSES = ("cat", "dog", "fox")
SIZE = 12


def _write(folder: Path, name: str, rng: np.random.Generator, cls: int) -> None:
    a = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) // 2 + 40 * cls  # class-dependent brightness
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, "RGB").save(folder / name)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """ROOT/train/<class>/images/*.png (TinyImageNet-like) and ROOT/val/images + val_annotations.txt."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        for i in range(10):
            _write(root / "train" / name / "images", f"{name}_{i}.png", rng, c)
    lines = []
    for i in range(9):
        _write(root / "val" / "images", f"val_{i}.png", rng, i % 3)
        lines.append(f"val_{i}.png\t{CLASSES[i % 3]}\t0\t0\t{SIZE}\t{SIZE}")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def test_streamed_and_in_memory_loaders_agree(tree):
    mem_train, mem_test, info = load_imagefolder(tree, stream=False, workers=0)
    disk_train, disk_test, _ = load_imagefolder(tree, stream=True)
    assert type(mem_train) is TensorSet and isinstance(disk_train, ImageFolderSet)
    assert info.num_classes == 3 and info.class_names == CLASSES and info.channels == 3 and info.size == SIZE
    assert mem_train.x.shape == (30, 3, SIZE, SIZE) and len(mem_test) == 9
    assert torch.equal(mem_train.y, disk_train.y) and torch.equal(mem_test.y, disk_test.y)
    assert torch.equal(mem_test.y, torch.arange(9) % 3)  # labels from val_annotations.txt
    assert torch.equal(disk_train.x[torch.arange(30)], mem_train.x)
    first = Image.open(tree / "train" / "cat" / "images" / "cat_0.png")
    assert torch.equal(mem_train.x[0], torch.from_numpy(np.array(first)).permute(2, 0, 1))
    # same split, forget and shots semantics
    a = make_splits(mem_train, mem_test, (1,), 3, val_size=6, shots=2, seed=0)
    b = make_splits(disk_train, disk_test, (1,), 3, val_size=6, shots=2, seed=0)
    for part in ("forget", "retain", "test_forget", "test_retain", "val", "shots"):
        pa, pb = getattr(a, part), getattr(b, part)
        assert isinstance(pb, ImageFolderSet)
        assert torch.equal(pa.y, pb.y) and torch.equal(pa.x, pb.x[torch.arange(len(pb))]), part


def test_streamed_training_matches_in_memory(tree):
    mem_train, mem_test, _ = load_imagefolder(tree, stream=False, workers=0)
    disk_train, _, _ = load_imagefolder(tree, stream=True)
    spec = ModelSpec("tiny", 3, 3, 4, (0.5,) * 3, (0.25,) * 3)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.05, pad=1)
    torch.manual_seed(0)
    a, ha = fit(build_model(spec), mem_train, mem_test, cfg)
    torch.manual_seed(0)
    b, hb = fit(build_model(spec), disk_train, mem_test, cfg, options=FitOptions(workers=1))
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert [e["loss"] for e in ha.epochs] == [e["loss"] for e in hb.epochs]


def test_registered_names_and_automatic_choice(tree, tmp_path, monkeypatch):
    assert {"imagefolder", "tinyimagenet"} <= set(spotter.data.DATASETS)
    train, _, info = spotter.data.load("imagefolder", tree)
    assert type(train) is TensorSet and info.name == "imagefolder"  # small: decoded into memory
    monkeypatch.setenv("SPOTTER_MEMORY_BUDGET", "1e-9")  # GiB: nothing fits
    train, _, _ = spotter.data.load("imagefolder", tree)
    assert isinstance(train, ImageFolderSet)
    # class folders in val/ (the generic layout) and TinyImageNet's own folder name
    tiny = tmp_path / "tiny-imagenet-200"
    rng = np.random.default_rng(1)
    for c, name in enumerate(("n01", "n02")):
        for i in range(3):
            _write(tiny / "train" / name / "images", f"{name}_{i}.JPEG.png", rng, c)
            _write(tiny / "val" / name, f"v{i}.png", rng, c)
    (tiny / "wnids.txt").write_text("n01\nn02\n")
    (tiny / "words.txt").write_text("n01\tgoldfish, Carassius\nn02\tshark\n")
    train, test, info = spotter.data.load("tinyimagenet", tmp_path)
    assert info.num_classes == 2 and info.class_names == ("goldfish", "shark") and len(test) == 6


def test_clear_errors(tree, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="train"):
        load_imagefolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        spotter.data.resolve_root("imagefolder", tmp_path / "nothing")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match="pip install"):
        imagefolder.decode(str(tree / "val" / "images" / "val_0.png"), "RGB", (SIZE, SIZE))
