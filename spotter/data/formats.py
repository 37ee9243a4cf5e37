"""Readers for the on-disk formats of the datasets `spotter` knows, each returning uint8 arrays.

- IDX (Fashion-MNIST / MNIST), gzipped or not: http://yann.lecun.com/exdb/mnist/ (file format).
- CIFAR-10/100 "python version" pickle batches: https://www.cs.toronto.edu/~kriz/cifar.html.
  They are unpickled with an allow-list that admits only numpy array reconstruction, so a
  doctored batch file cannot run code.
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np

IDX_DTYPES = {0x08: np.uint8}


class DataFormatError(ValueError):
    """A dataset file exists but is not in the expected format."""


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (optionally .gz) as a numpy array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise DataFormatError(f"cannot read IDX file {path}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataFormatError(
            f"{path} is not an IDX file: magic number {raw[:4].hex() or '(empty)'} "
            "should start with 0000 (e.g. 00000803 for images, 00000801 for labels)"
        )
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code not in IDX_DTYPES:
        raise DataFormatError(f"{path}: IDX type code 0x{dtype_code:02x}, only 0x08 (uint8) is supported")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    if len(raw) - header != expected:
        raise DataFormatError(
            f"{path}: IDX header declares shape {shape} ({expected} bytes) but the file holds "
            f"{len(raw) - header} bytes of data (truncated or corrupt)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits the globals a numpy array needs and nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5 (Python 3.14's default)
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 store bytes this way
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def read_cifar_batch(path: str | Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR pickle batch as (uint8 images (N, 3, 32, 32), int64 labels (N,))."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        blob = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # damaged bytes make the unpickler raise almost anything
        reason = " ".join(str(err).split()) or type(err).__name__
        raise DataFormatError(f"{path} is not a CIFAR python batch: {reason}") from None
    if not isinstance(blob, dict):
        raise DataFormatError(f"{path}: expected a dict, found {type(blob).__name__}")
    blob = {k.decode() if isinstance(k, bytes) else k: v for k, v in blob.items()}
    for key in ("data", label_key):
        if key not in blob:
            raise DataFormatError(
                f"{path}: key {key!r} missing (found {sorted(blob)}); expected 'data' and {label_key!r}"
            )
    try:
        data = np.asarray(blob["data"])
    except (TypeError, ValueError) as err:  # ragged lists
        raise DataFormatError(f"{path}: 'data' is not an array of pixels ({err})") from None
    integers = data.dtype.kind in "iu" and (data.size == 0 or 0 <= data.min() <= data.max() <= 255)
    if data.dtype != np.uint8 and not integers:  # a cast would wrap or truncate values silently
        raise DataFormatError(f"{path}: 'data' has dtype {data.dtype}, expected uint8 pixels (0..255)")
    data = data.astype(np.uint8, copy=False)
    try:
        labels = np.asarray(blob[label_key])
        if labels.size and labels.dtype.kind not in "iu":
            raise ValueError(f"dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    except (TypeError, ValueError) as err:
        raise DataFormatError(f"{path}: {label_key!r} must be a list of integer class ids ({err})") from None
    if labels.ndim != 1:
        raise DataFormatError(f"{path}: {label_key!r} has shape {labels.shape}, expected a flat list")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataFormatError(
            f"{path}: 'data' has shape {data.shape} for {len(labels)} labels; expected (N, 3072)"
        )
    return data.reshape(-1, 3, 32, 32), labels
