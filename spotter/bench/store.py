"""The row store: one JSON line per finished job in OUT/results.jsonl, appended atomically.

A crash or Ctrl-C loses at most the jobs in flight; a line cut by a crash never swallows the next.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

FEATURES = "features"

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; run one worker there
    fcntl = None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if missing), held for the with-block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/Inf -> None, tuples -> lists, tensors and numpy scalars -> numbers."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    if isinstance(obj, torch.Tensor | np.generic):
        return clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line atomically: a single write() under a lock, flushed and fsynced."""
    data = (json.dumps(clean(row), allow_nan=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size:  # a line cut by a crash must not swallow this one
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
