"""Checkpoints: safetensors with a JSON metadata header, written atomically; no pickle anywhere.

Our own files carry `spotter_format`, the model spec (architecture, classes, channels, width,
normalisation) and the training configuration. Foreign `.pt`/`.pth` state dicts are read with
`torch.load(weights_only=True)`, which refuses pickled code.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from spotter.io import atomic_write
from spotter.models import MODELS, Classifier, ModelSpec, build_model

FORMAT = "spotter-1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, foreign metadata, or the wrong model."""


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically save tensors + a JSON-able metadata dict (stored under the key "meta")."""
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {"meta": json.dumps(meta, sort_keys=True), "spotter_format": FORMAT}
    atomic_write(path, lambda tmp: save_file(flat, tmp, metadata=header))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give the .safetensors file inside it")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None
    if header.get("spotter_format") != FORMAT:
        raise CheckpointError(
            f"{path} has spotter_format={header.get('spotter_format')!r}, expected {FORMAT!r} "
            "(for a foreign checkpoint use --model with a .pt/.pth state dict)"
        )
    try:
        meta = json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata is a JSON {type(meta).__name__}, expected an object")
    return tensors, meta


def save_model(
    path: str | Path, model: Classifier, spec: ModelSpec, meta: dict[str, Any] | None = None
) -> None:
    """Save a registered model with its spec so `load_model` can rebuild it."""
    state = {k: v for k, v in model.state_dict().items()}
    save_tensors(path, state, {"model": spec.to_dict(), **(meta or {})})


def load_model(
    path: str | Path, expect: ModelSpec | None = None, device: torch.device | str = "cpu"
) -> tuple[Classifier, ModelSpec, dict[str, Any]]:
    """(model, spec, metadata) from one of our checkpoints; `expect` checks the architecture."""
    tensors, meta = load_tensors(path)
    spec = model_meta(path, meta)
    if expect is not None:
        for key in ("name", "num_classes", "in_channels", "width"):
            if getattr(spec, key) != getattr(expect, key):
                raise CheckpointError(
                    f"{path} holds a {spec.name} (width {spec.width}, {spec.num_classes} classes, "
                    f"{spec.in_channels} channels) but {expect.name} (width {expect.width}, "
                    f"{expect.num_classes} classes, {expect.in_channels} channels) is expected: "
                    f"{key} {getattr(spec, key)!r} != {getattr(expect, key)!r}"
                )
    model = build_model(spec)
    load_state(model, tensors, str(path))
    return model.to(device), spec, meta


def model_meta(path: str | Path, meta: dict[str, Any]) -> ModelSpec:
    """The ModelSpec stored in a checkpoint's metadata, checked field by field."""
    if "model" not in meta:
        raise CheckpointError(f"{path}: metadata has no 'model' entry (keys: {sorted(meta)})")
    d = meta["model"]
    if not isinstance(d, dict):
        raise CheckpointError(
            f"{path}: metadata 'model' is {d!r}, expected an object with name, num_classes, ..."
        )
    try:
        spec = ModelSpec.from_dict(d)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: bad model metadata {d}: {err}") from None
    for key in ("num_classes", "in_channels", "width"):
        value = getattr(spec, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CheckpointError(f"{path}: model metadata {key}={value!r}, expected a positive integer")
    if not isinstance(spec.name, str) or spec.name not in MODELS:
        raise CheckpointError(
            f"{path}: model metadata names {spec.name!r}; valid choices: {', '.join(sorted(MODELS))}"
        )
    if not all(isinstance(v, int | float) for v in (*spec.mean, *spec.std)):
        raise CheckpointError(f"{path}: model metadata mean/std must be numbers, got {spec.mean}, {spec.std}")
    return spec


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict with a one-line message naming the first mismatch."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"{source} does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise CheckpointError(
                f"{source} does not fit this model: {k} has shape {tuple(v.shape)}, "
                f"the model expects {tuple(own[k].shape)}"
            )
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(
                f"{source}: tensor {k} holds NaN or Inf values (a diverged or corrupt model)"
            )
        if v.dtype.is_complex or (own[k].is_floating_point() and not v.is_floating_point()):
            raise CheckpointError(
                f"{source}: tensor {k} has dtype {v.dtype}, the model expects {own[k].dtype}"
            )
    model.load_state_dict(state)


# torch.load(weights_only=True) could still run code or corrupt memory before these releases:
# CVE-2025-32434 (fixed in 2.6.0) and CVE-2026-24747 (fixed in 2.10.0).
SAFE_TORCH_LOAD = (2, 10)


def check_safe_torch_load(version: str | None = None) -> None:
    """Refuse to unpickle foreign files on a torch whose weights_only loader has known bypasses."""
    version = version or torch.__version__
    try:
        release = tuple(int(part) for part in version.split("+")[0].split(".")[:2])
    except ValueError:
        return  # a source build ("2.11.0a0+git...") is judged by its maintainer
    if release < SAFE_TORCH_LOAD:
        raise CheckpointError(
            f"refusing to unpickle a .pt/.pth file with torch {version}: its weights_only loader has known "
            f"code-execution bypasses (fixed in torch {'.'.join(map(str, SAFE_TORCH_LOAD))}); upgrade torch, "
            "or give the weights as a .safetensors file (see SECURITY.md)"
        )


def load_foreign_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pt/.pth file, refusing anything but tensors (no code execution)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give the .pt/.pth file inside it")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    check_safe_torch_load()
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on a stderr line of its own
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {path} does not exist") from None
    except Exception as err:  # torch raises UnpicklingError / RuntimeError with long texts
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        # name the blocked global (the code the pickle would have run) rather than torch's advice
        blocked = [ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln]
        first = (blocked or lines or [type(err).__name__])[0]
        raise CheckpointError(
            f"refusing {path}: it is not a plain tensor state dict; nothing in it was run ({first[:200]})"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}
