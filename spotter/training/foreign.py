"""Load a checkpoint a user brings: ours (safetensors with metadata) or a foreign state dict.

A foreign `.pt`/`.pth` (or metadata-free `.safetensors`) is read as tensors only
(`torch.load(weights_only=True)`: a pickle that would run code is refused, never executed) into a
model built from `--model`: a registered name, or `package.module:factory` for the user's own
architecture (called with num_classes=K when it accepts it, wrapped with `adapt` when it is not a
Classifier).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from spotter.data import DatasetInfo
from spotter.models import Classifier, ModelSpec, adapt, build_model, check_model_name, default_width
from spotter.training.checkpoint import (
    CheckpointError,
    load_foreign_state,
    load_model,
    load_state,
    load_tensors,
)

INPUT_NORMS = ("dataset", "none")


def import_factory(target: str) -> Callable[..., nn.Module]:
    """The callable named by 'package.module:factory'."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--model {target!r}: expected a registered name or package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"--model {target!r}: cannot import {module_name} ({err})") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ValueError(f"--model {target!r}: {module_name} has no attribute {attr!r}")
    if not callable(factory):
        raise ValueError(f"--model {target!r}: {attr} is not callable")
    return factory


def _accepts_num_classes(factory: Callable[..., nn.Module]) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "num_classes" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _fill_normalisation(model: Classifier, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict without our normalisation buffers gets the model's own (the dataset's)."""
    own = model.state_dict()
    return {**{k: own[k] for k in ("mean", "std") if k in own and k not in state}, **state}


def build_foreign(
    path: str | Path,
    info: DatasetInfo,
    model: str,
    width: int | None = None,
    input_norm: str = "dataset",
) -> Classifier:
    """A Classifier holding the tensors of a foreign state dict at `path`."""
    if input_norm not in INPUT_NORMS:
        raise ValueError(
            f"unknown input normalisation {input_norm!r}; valid choices: {', '.join(INPUT_NORMS)}"
        )
    state = load_foreign_state(path)
    mean, std = (info.mean, info.std) if input_norm == "dataset" else (None, None)
    if ":" not in model:
        check_model_name(model)
        spec = ModelSpec(
            model, info.num_classes, info.channels, width or default_width(model), info.mean, info.std
        )
        net = build_model(spec)
        load_state(net, _fill_normalisation(net, state), str(path))
        return net
    factory = import_factory(model)
    try:
        module = factory(num_classes=info.num_classes) if _accepts_num_classes(factory) else factory()
    except Exception as err:  # the user's own code: name it, keep the message on one line
        raise ValueError(
            f"--model {model!r}: calling the factory failed: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(module, nn.Module):
        raise ValueError(f"--model {model!r} returned a {type(module).__name__}, not an nn.Module")
    if isinstance(module, Classifier):
        load_state(module, _fill_normalisation(module, state), str(path))
        return module
    load_state(module, state, str(path))
    return adapt(module, mean=mean, std=std)


def load_classifier(
    path: str | Path,
    info: DatasetInfo,
    model: str | None = None,
    width: int | None = None,
    input_norm: str = "dataset",
    device: torch.device | str = "cpu",
) -> Classifier:
    """Our safetensors (architecture from its metadata) or a foreign state dict (needs `model`),
    checked to have the dataset's number of classes; in eval mode on `device`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    ours = False
    if path.suffix == ".safetensors":
        try:
            load_tensors(path)
            ours = True
        except CheckpointError:
            if model is None:
                raise
    if ours:
        net, spec, _ = load_model(path)
        if spec.in_channels != info.channels:
            raise CheckpointError(
                f"{path} takes {spec.in_channels}-channel images but {info.name} has {info.channels}"
            )
    elif model is None:
        raise ValueError(
            f"{path} is not a spotter checkpoint; name its architecture with --model NAME "
            "(a registered model) or --model package.module:factory"
        )
    else:
        net = build_foreign(path, info, model, width, input_norm)
    if net.num_classes != info.num_classes:
        raise CheckpointError(
            f"{path} has {net.num_classes} outputs but {info.name} has {info.num_classes} classes"
        )
    return net.to(device).eval()
