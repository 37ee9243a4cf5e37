"""Device selection with a clear error for devices this machine does not have."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit device is checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; valid choices: auto, cpu, cuda, cuda:N, mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ValueError(f"device {name!r} requested but no CUDA GPU is available; use cpu")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {name!r} does not exist; valid: cuda:0..cuda:{count - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available; use cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r}; valid choices: auto, cpu, cuda, cuda:N, mps")
    return dev
