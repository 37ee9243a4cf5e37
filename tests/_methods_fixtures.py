"""Tiny models, splits and configs shared by the method test modules (kept out of conftest.py)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn

from spotter import methods
from spotter.data import INFO, Splits, TensorSet, make_splits, synthetic
from spotter.models import Classifier, ModelSpec, build_model
from spotter.models.faceresnet import FaceResNetFeatures
from spotter.models.heads import CosineHead
from spotter.models.vit import ViTFeatures
from spotter.training.fit import TrainConfig, fit

# Per-method overrides that make one run take a fraction of a second on the synthetic set.
TINY: dict[str, dict] = {
    "bad_teacher": dict(epochs=1, batch_size=64),
    "boundary_expand": dict(epochs=1, batch_size=32, lr=1e-3),
    "boundary_shrink": dict(epochs=1, batch_size=32, lr=1e-3),
    "delete": dict(epochs=1, batch_size=32, lr=1e-3),
    "finetune": dict(epochs=1, batch_size=64),
    "grad_ascent": dict(epochs=1, batch_size=32, lr=1e-3),
    "l1_sparse": dict(epochs=2, batch_size=64),
    "neggrad_plus": dict(epochs=1, batch_size=64, forget_batch_size=32),
    "random_label": dict(epochs=1, batch_size=64),
    "retrain": dict(train=TrainConfig(epochs=1, batch_size=64, select="last", channels_last=False)),
    "salun": dict(epochs=1, batch_size=64),
    "scar": dict(epochs=1, batch_size=64, surrogate_size=64),
    "scrub": dict(epochs=2, msteps=1, batch_size=64, forget_batch_size=32),
    "spotter": dict(epochs=1, batch_size=32),
    "spotter_auto": dict(
        max_epochs=1, min_epochs=1, batch_size=32, check_shots=(5,), inverted_per_class=10, inversion_steps=20
    ),
    "unsc": dict(epochs=1, batch_size=32, per_class=16),
    "unsir": dict(noise_batch=8, noise_steps=2, noise_copies=2, per_class=16, batch_size=64),
}
PLUS_TINY = dict(spotter_batch_size=32)


def tiny_config(name: str, **extra):  # noqa: ANN201
    """The method's Config with the tiny overrides (and `extra`) applied."""
    base = name.removesuffix("+spotter")
    overrides = {**TINY[base], **(PLUS_TINY if name.endswith("+spotter") else {}), **extra}
    cfg = methods.make_config(name)
    return type(cfg)(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, **overrides})


# The contracts need a few hundred images, not the CLI example's 320 per class: a smaller draw of
# the same synthetic textures keeps the method tests as fast as they were.
PER_CLASS = 64


@functools.cache
def _synthetic() -> tuple[TensorSet, TensorSet]:
    return synthetic(per_class=PER_CLASS)


@functools.cache
def data(forget: tuple[int, ...] = (0,)) -> Splits:
    train, test = _synthetic()
    return make_splits(train, test, forget, INFO["synthetic"].num_classes, val_size=48, shots=5, seed=0)


@functools.cache
def _trained(width: int) -> Classifier:
    splits = data()
    torch.manual_seed(0)
    info = INFO["synthetic"]
    model = build_model(ModelSpec("tiny", info.num_classes, info.channels, width, info.mean, info.std))
    every = TensorSet(
        torch.cat([splits.forget.x, splits.retain.x]), torch.cat([splits.forget.y, splits.retain.y])
    )
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.05, pad=1, select="last", channels_last=False)
    model, _ = fit(model, every, None, cfg)
    return model.eval()


@functools.cache
def _trained_arch(arch: str) -> Classifier:
    """A trained tiny ViT (LayerNorm, no BatchNorm) or a tiny face ResNet with a CosFace head."""
    splits = data()
    torch.manual_seed(0)
    info = INFO["synthetic"]
    if arch == "vit":
        features = ViTFeatures(dim=16, depth=1, in_channels=info.channels, image_size=16)
        model = Classifier(features, nn.Linear(16, info.num_classes), info.mean, info.std)
    else:
        # width 8: oneDNN on AVX2-only CPUs crashes in the backward pass of a channels-last 1x1 stride-2
        # convolution with 2-4 input channels (torch 2.13; seen on an AMD EPYC), which width 2 builds
        features = FaceResNetFeatures(width=8, in_channels=info.channels, blocks=(1, 1, 1, 1), grid=1)
        head = CosineHead(features.out_dim, info.num_classes, scale=16.0, margin=0.2, kind="cosface")
        model = Classifier(features, head, info.mean, info.std)
    every = TensorSet(
        torch.cat([splits.forget.x, splits.retain.x]), torch.cat([splits.forget.y, splits.retain.y])
    )
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.05, pad=1, select="last", channels_last=False)
    model, _ = fit(model, every, None, cfg)
    return model.eval()


def original_arch(arch: str = "tiny") -> Classifier:
    """`original()` for "tiny", else a trained tiny "vit" or "face" model (callers must not modify it)."""
    return original() if arch == "tiny" else _trained_arch(arch)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models run several times faster on one thread when the cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def original(width: int = 8) -> Classifier:
    """A trained tiny CNN (BatchNorm included); callers must not modify it (tests check they don't)."""
    return _trained(width)


def micro(num_classes: int = 6, seed: int = 0) -> Classifier:
    """A BatchNorm-free micro classifier (16x16 grey images): train and eval modes coincide."""
    torch.manual_seed(seed)
    features = nn.Sequential(
        nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 8), nn.ReLU()
    )
    return Classifier(features, nn.Linear(8, num_classes), (0.5,), (0.25,))


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Poison:
    """Stands in for a split a method must not read: any use fails the test."""

    def __init__(self, what: str) -> None:
        object.__setattr__(self, "what", what)

    def __getattr__(self, name: str):  # noqa: ANN204
        raise AssertionError(f"the method read {self.what}.{name}")

    def __len__(self) -> int:
        raise AssertionError(f"the method read len({self.what})")
