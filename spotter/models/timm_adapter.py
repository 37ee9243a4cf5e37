"""timm models as `features -> head` Classifiers (optional extra `timm`; the core never imports it).

timm classifiers share one interface: `forward_features(x)` -> tokens or maps, `forward_head(x,
pre_logits=True)` -> the pooled embedding, `get_classifier()` -> the final Linear and
`reset_classifier(0)` -> that Linear replaced by identity. `adapt_timm` takes the Linear as the
head and the rest of the model (now ending in the pooled embedding) as the features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from spotter.models import Classifier


class TimmTrunk(nn.Module):
    """A timm model without its classifier: forward = forward_head(forward_features(x), pre_logits)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.forward_head(self.module.forward_features(x), pre_logits=True)  # (B, D)


def adapt_timm(
    module: nn.Module, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> Classifier:
    """Wrap a timm-style classifier; its own input normalisation (pretrained_cfg) is the default.

    The module is modified in place (its classifier is reset to identity).
    """
    for attr in ("forward_features", "forward_head", "get_classifier", "reset_classifier"):
        if not callable(getattr(module, attr, None)):
            raise ValueError(f"{type(module).__name__} has no {attr}(): not a timm classifier (use adapt())")
    head = module.get_classifier()
    if not isinstance(head, nn.Linear):
        raise ValueError(
            f"{type(module).__name__}'s classifier is a {type(head).__name__}, not an nn.Linear "
            "(create the model with num_classes > 0)"
        )
    cfg = getattr(module, "pretrained_cfg", None) or {}
    if mean is None and "mean" in cfg and "std" in cfg:
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    module.reset_classifier(0)
    return Classifier(TimmTrunk(module), head, mean, std)


def from_timm(
    name: str,
    num_classes: int,
    pretrained: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kwargs: Any,
) -> Classifier:
    """`timm.create_model(name, num_classes=..., **kwargs)` as a Classifier (needs the `timm` extra).

    E.g. `from_timm("vit_tiny_patch16_224", 10, img_size=32, patch_size=4, in_chans=1)`.
    """
    try:
        import timm
    except ImportError:
        raise ImportError(
            "timm models need timm: pip install 'spotter-unlearning[timm]' (or pip install timm)"
        ) from None
    module = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)
    return adapt_timm(module, mean, std)
