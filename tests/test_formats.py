"""Loaders on tiny files written in the real on-disk formats (IDX, CIFAR pickles), never downloads."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import spotter.data
import spotter.data.catalog
from spotter.data import load
from spotter.data.formats import DataFormatError, read_cifar_batch, read_idx

RNG = np.random.default_rng(0)


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    """IDX encoding: magic 0x0000080N (N = ndim), big-endian uint32 dims, then uint8 data."""
    magic = 0x00000800 | arr.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_fashion(folder: Path, gz: bool, n_train: int = 7, n_test: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, arr in arrays.items():
        raw = idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


def cifar_images(n: int, offset: int) -> np.ndarray:
    """Images whose value encodes (index, channel, row, col), so any layout mix-up shows."""
    i, c, h, w = np.meshgrid(np.arange(n), np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return ((i + offset) * 7 + c * 85 + h * 3 + w).astype(np.uint8) % 251  # (N, 3, 32, 32)


def write_cifar10(
    root: Path, per_batch: int = 3, protocol: int = 2
) -> tuple[np.ndarray, list, np.ndarray, list]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for b in range(1, 6):
        x = cifar_images(per_batch, offset=b * 10)
        y = [(b + j) % 10 for j in range(per_batch)]
        blob = {
            b"batch_label": f"training batch {b} of 5".encode(),
            b"labels": y,
            b"data": x.reshape(per_batch, 3072),  # row = 1024 R, 1024 G, 1024 B, each row-major
            b"filenames": [f"img{j}.png".encode() for j in range(per_batch)],
        }
        (folder / f"data_batch_{b}").write_bytes(pickle.dumps(blob, protocol=protocol))
        xs.append(x)
        ys += y
    x_test, y_test = cifar_images(2, offset=99), [9, 3]
    blob = {b"labels": y_test, b"data": x_test.reshape(2, 3072), b"batch_label": b"testing batch 1 of 1"}
    (folder / "test_batch").write_bytes(pickle.dumps(blob, protocol=protocol))
    return np.concatenate(xs), ys, x_test, y_test


@pytest.fixture(autouse=True)
def no_system_data(monkeypatch, tmp_path):
    """Keep the machine's own /usr/share/datasets and $SPOTTER_DATA out of these tests."""
    monkeypatch.delenv("SPOTTER_DATA", raising=False)
    monkeypatch.setattr(spotter.data.catalog, "DEBIAN_DATASETS", tmp_path / "no-debian-datasets")


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_fashion_idx_round_trip(tmp_path, gz):
    arrays = write_fashion(tmp_path / "fm", gz)
    train, test, info = load("fashion-mnist", tmp_path / "fm")
    assert info.num_classes == 10 and info.channels == 1
    assert train.x.dtype == torch.uint8 and train.x.shape == (7, 1, 28, 28)
    assert test.x.shape == (4, 1, 28, 28)
    assert np.array_equal(train.x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(test.x[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert train.y.dtype == torch.int64
    assert train.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_fashion_in_named_subfolder(tmp_path):
    arrays = write_fashion(tmp_path / "fashion-mnist", gz=True)
    train, _, _ = load("fashion-mnist", tmp_path)  # base/fashion-mnist/ is found too
    assert train.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()


def test_read_idx_shape_and_values(tmp_path):
    arr = RNG.integers(0, 256, (3, 5, 2), dtype=np.uint8)
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    got = read_idx(tmp_path / "a")
    assert got.shape == (3, 5, 2) and np.array_equal(got, arr)


@pytest.mark.parametrize(
    "magic",
    [0x08030000, 0x01000803, 0x00000D03],  # little-endian, non-zero leading bytes, float type code
)
def test_idx_bad_magic(tmp_path, magic):
    arr = RNG.integers(0, 256, (2, 4, 4), dtype=np.uint8)
    (tmp_path / "bad").write_bytes(idx_bytes(arr, magic))
    with pytest.raises(DataFormatError):
        read_idx(tmp_path / "bad")


def test_idx_truncated(tmp_path):
    raw = idx_bytes(RNG.integers(0, 256, (4, 28, 28), dtype=np.uint8))
    (tmp_path / "short").write_bytes(raw[:-10])
    with pytest.raises(DataFormatError, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "header").write_bytes(raw[:9])  # header cut inside the dims
    with pytest.raises(DataFormatError):
        read_idx(tmp_path / "header")
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw)[:-20])  # cut gzip stream
    with pytest.raises(DataFormatError):
        read_idx(tmp_path / "short.gz")


def test_fashion_truncated_file_through_load(tmp_path):
    write_fashion(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataFormatError, match="t10k-images"):
        load("fashion-mnist", tmp_path)


def test_fashion_label_count_and_range_checked(tmp_path):
    write_fashion(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(6, np.uint8)))
    with pytest.raises(DataFormatError, match="do not match"):
        load("fashion-mnist", tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(7, 12, np.uint8)))
    with pytest.raises(DataFormatError, match="12"):
        load("fashion-mnist", tmp_path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_round_trip(tmp_path, protocol):
    x_train, y_train, x_test, y_test = write_cifar10(tmp_path, protocol=protocol)
    train, test, info = load("cifar10", tmp_path)
    assert info.num_classes == 10 and info.channels == 3
    assert train.x.shape == (15, 3, 32, 32) and train.x.dtype == torch.uint8
    assert np.array_equal(train.x.numpy(), x_train)  # CHW: channel planes, then rows, then columns
    assert train.y.tolist() == y_train
    assert np.array_equal(test.x.numpy(), x_test) and test.y.tolist() == y_test
    # the first 1024 bytes of a row are the red plane, row-major
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())[b"data"]
    assert torch.equal(test.x[1, 0].flatten(), torch.from_numpy(raw[1, :1024]))
    assert torch.equal(test.x[1, 2, 5, 7], torch.tensor(int(raw[1, 2048 + 5 * 32 + 7]), dtype=torch.uint8))


def test_cifar100_round_trip(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    x_train, x_test = cifar_images(4, 0), cifar_images(3, 50)
    y_train, y_test = [0, 99, 42, 7], [5, 98, 1]
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        blob = {b"data": x.reshape(len(y), 3072), b"fine_labels": y, b"coarse_labels": [v // 5 for v in y]}
        (folder / name).write_bytes(pickle.dumps(blob, protocol=pickle.HIGHEST_PROTOCOL))
    train, test, info = load("cifar100", tmp_path)
    assert info.num_classes == 100
    assert np.array_equal(train.x.numpy(), x_train) and train.y.tolist() == y_train
    assert np.array_equal(test.x.numpy(), x_test) and test.y.tolist() == y_test


def test_cifar_pickle_written_by_old_numpy_loads(tmp_path):
    """The real files reference numpy.core.multiarray (numpy < 2); that must still load."""
    x = cifar_images(2, 0).reshape(2, 3072)
    raw = pickle.dumps({b"data": x, b"labels": [1, 2]}, protocol=2)
    raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in raw
    (tmp_path / "b").write_bytes(raw)
    data, labels = read_cifar_batch(tmp_path / "b", "labels")
    assert np.array_equal(data.reshape(2, 3072), x) and labels.tolist() == [1, 2]


def test_cifar_missing_key(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    blob = pickle.loads(path.read_bytes())
    del blob[b"labels"]
    path.write_bytes(pickle.dumps(blob, protocol=2))
    with pytest.raises(DataFormatError, match="'labels' missing"):
        load("cifar10", tmp_path)


def test_cifar_wrong_data_shape(tmp_path):
    (tmp_path / "b").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataFormatError, match="3072"):
        read_cifar_batch(tmp_path / "b", "labels")


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickle_with_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _RunsCode(marker), b"labels": [0]}, protocol=2))
    with pytest.raises(DataFormatError, match="refusing"):
        load("cifar10", tmp_path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(_RunsCode(marker)))  # the whole file is the payload
    with pytest.raises(DataFormatError):
        read_cifar_batch(path, "labels")
    assert not marker.exists()


@pytest.mark.parametrize(
    "name, hint",
    [
        ("fashion-mnist", "apt-get install dataset-fashion-mnist"),
        ("cifar10", "cifar-10-python.tar.gz"),
        ("cifar100", "cifar-100-python.tar.gz"),
    ],
)
def test_missing_folder_says_how_to_get_data(tmp_path, name, hint):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load(name, empty)
    assert hint in str(err.value) and str(empty) in str(err.value)


def test_root_resolution_order(tmp_path, monkeypatch):
    explicit = write_fashion(tmp_path / "explicit", gz=True, seed=1)
    env = write_fashion(tmp_path / "env", gz=True, seed=2)
    debian = write_fashion(tmp_path / "debian" / "fashion-mnist", gz=True, seed=3)
    labels = {
        k: v["train-labels-idx1-ubyte"].tolist() for k, v in (("e", explicit), ("v", env), ("d", debian))
    }
    assert len({tuple(v) for v in labels.values()}) == 3  # the three folders are distinguishable
    monkeypatch.setattr(spotter.data.catalog, "DEBIAN_DATASETS", tmp_path / "debian")
    monkeypatch.setenv("SPOTTER_DATA", str(tmp_path / "env"))

    assert load("fashion-mnist", tmp_path / "explicit")[0].y.tolist() == labels["e"]
    assert load("fashion-mnist")[0].y.tolist() == labels["v"]
    monkeypatch.delenv("SPOTTER_DATA")
    assert load("fashion-mnist")[0].y.tolist() == labels["d"]
    # an explicit folder is the only place looked at, even when the others hold the data
    monkeypatch.setenv("SPOTTER_DATA", str(tmp_path / "env"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(FileNotFoundError):
        load("fashion-mnist", tmp_path / "nothing")


def test_unknown_dataset_names_choices():
    with pytest.raises(ValueError, match="'mnist'.*fashion-mnist"):
        load("mnist")
