"""Models: every classifier is `normalize -> features -> head` (docs/design.md, "Core contracts").

Normalisation is a buffer inside the model, so attacks and neighbourhoods work in pixel space
([0, 1]) and eps means the same thing on every dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from spotter.models.faceresnet import FaceResNetFeatures
from spotter.models.heads import CosineHead
from spotter.models.resnet import ResNetFeatures
from spotter.models.tiny import TinyFeatures
from spotter.models.vit import ViTFeatures

if TYPE_CHECKING:
    from spotter.data.core import DatasetInfo


class Classifier(nn.Module):
    """`forward(x) = head(features(x))`, with x in pixel space [0, 1] and normalisation inside."""

    def __init__(
        self,
        features: nn.Module,
        head: nn.Linear,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(head, nn.Linear):
            raise ValueError(f"head must be an nn.Linear, got {type(head).__name__}")
        self.backbone = features
        self.head = head
        channels = len(mean) if mean is not None else 1
        mean_t = torch.tensor(list(mean) if mean is not None else [0.0]).view(1, channels, 1, 1)
        std_t = torch.tensor(list(std) if std is not None else [1.0]).view(1, channels, 1, 1)
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding (B, D) of pixel-space images (B, C, H, W)."""
        return self.backbone((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, K)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a registered model; stored in checkpoint metadata."""

    name: str
    num_classes: int
    in_channels: int = 3
    width: int = 64
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        d = dict(d)
        d["mean"], d["std"] = tuple(d.get("mean", (0.0,))), tuple(d.get("std", (1.0,)))
        return cls(**d)


def _resnet18(spec: ModelSpec) -> tuple[nn.Module, int]:
    f = ResNetFeatures(width=spec.width, in_channels=spec.in_channels)
    return f, f.out_dim


def _tiny(spec: ModelSpec) -> tuple[nn.Module, int]:
    f = TinyFeatures(width=spec.width, in_channels=spec.in_channels)
    return f, f.out_dim


def _vit(image_size: int) -> Callable[[ModelSpec], tuple[nn.Module, int]]:
    def build(spec: ModelSpec) -> tuple[nn.Module, int]:  # width = embedding dim, 6 blocks
        f = ViTFeatures(dim=spec.width, depth=6, in_channels=spec.in_channels, image_size=image_size)
        return f, f.out_dim

    return build


def _face(spec: ModelSpec) -> tuple[nn.Module, int]:
    f = FaceResNetFeatures(width=spec.width, in_channels=spec.in_channels)
    return f, f.out_dim


# name -> (builder, default width). A new model is one entry here and is tested for free.
MODELS: dict[str, tuple[Callable[[ModelSpec], tuple[nn.Module, int]], int]] = {
    "resnet18": (_resnet18, 64),
    "tiny": (_tiny, 16),
    "vit": (_vit(32), 128),  # patch 4: 28-32 px inputs (spotter/models/vit.py)
    "vit64": (_vit(64), 128),  # patch 8: 64 px inputs
    "face_arcface": (_face, 64),  # 112x112 faces, 8·width-d embedding, ArcFace s=64, m=0.5
    "face_cosface": (_face, 64),  # the same network, CosFace s=64, m=0.35
}
# Heads other than a plain nn.Linear(dim, K): name -> (dim, K) -> head. The margins act in training
# only (spotter/models/heads.py); inference logits are s·cos θ.
HEADS: dict[str, Callable[[int, int], nn.Linear]] = {
    "face_arcface": lambda d, k: CosineHead(d, k, scale=64.0, margin=0.5, kind="arcface"),
    "face_cosface": lambda d, k: CosineHead(d, k, scale=64.0, margin=0.35, kind="cosface"),
}


def default_width(name: str) -> int:
    check_model_name(name)
    return MODELS[name][1]


def check_model_name(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid choices: {', '.join(sorted(MODELS))}")


def build_model(spec: ModelSpec) -> Classifier:
    """A freshly initialised registered model (initialisation follows torch's global RNG)."""
    check_model_name(spec.name)
    if spec.num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {spec.num_classes}")
    if spec.width < 1:
        raise ValueError(f"width must be >= 1, got {spec.width}")
    if len(spec.mean) not in (1, spec.in_channels) or len(spec.std) != len(spec.mean):
        raise ValueError(f"mean/std need 1 or {spec.in_channels} values each, got {spec.mean} / {spec.std}")
    features, dim = MODELS[spec.name][0](spec)
    head = HEADS.get(spec.name, nn.Linear)(dim, spec.num_classes)
    return Classifier(features, head, spec.mean, spec.std)


class _Trunk(nn.Module):
    """A user module with its final Linear replaced by identity, so it returns features."""

    def __init__(self, module: nn.Module, head_name: str) -> None:
        super().__init__()
        self.module = module
        self.head_name = head_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _last_linear(module: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(module).__name__} has no nn.Linear layer to use as the head")
    return linears[-1]


def adapt(
    module: nn.Module,
    head: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    example: torch.Tensor | None = None,
) -> Classifier:
    """Wrap a user `nn.Module` whose last layer is a Linear as `features + head`.

    The Linear (the last one registered, or the attribute path `head`, e.g. "fc") becomes the
    head; the module with it replaced by `nn.Identity` becomes the feature extractor. The module
    must apply the head last (true for torchvision/timm classifiers); given an `example` input
    batch, a check verifies that the wrapped model reproduces the module's output. The module is
    modified in place (its head is replaced).
    """
    reference = None
    if example is not None:
        with torch.no_grad():
            reference = module.eval()(example)
    if head is None:
        head, linear = _last_linear(module)
    else:
        linear = module.get_submodule(head)
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"{head!r} is a {type(linear).__name__}, not an nn.Linear")
    parent_name, _, attr = head.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, attr, nn.Identity())
    wrapped = Classifier(_Trunk(module, head), linear, mean, std)
    if reference is not None:
        with torch.no_grad():
            # the user's module normalises itself, so compare on the identity normalisation
            got = wrapped.head(wrapped.backbone(example))
        if got.shape != reference.shape or not torch.allclose(got, reference, atol=1e-4, rtol=1e-4):
            raise ValueError(
                f"{type(module).__name__}: the output is not {head}(features); the Linear {head!r} "
                "is not applied last, pass head= naming the final layer"
            )
    return wrapped


__all__ = [
    "Classifier",
    "CosineHead",
    "HEADS",
    "ModelSpec",
    "MODELS",
    "adapt",
    "build_model",
    "default_width",
]


def model_spec(info: DatasetInfo, name: str = "resnet18", width: int | None = None) -> ModelSpec:
    """The architecture for a dataset: its classes, channels and normalisation, at `width`."""
    check_model_name(name)
    return ModelSpec(name, info.num_classes, info.channels, width or default_width(name), info.mean, info.std)
