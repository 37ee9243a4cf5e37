"""Cosine heads for embedding models (face recognition): logits = s·cos θ, margins for training.

A `CosineHead` is an `nn.Linear` without bias whose forward normalises the features and the weight
rows and multiplies by the scale s, so the rest of the library (features -> head, head.weight rows
per class, `head(feats)`) works unchanged. Inference logits carry no margin. Training through
`fit()` applies the head's margin to the target logit (`training_logits`):

- CosFace (Wang et al., CVPR'18): s·(cos θ_y − m), defaults s = 64, m = 0.35 (paper).
- ArcFace (Deng et al., CVPR'19): s·cos(θ_y + m), defaults s = 64, m = 0.5 (paper), with the
  insightface fallback s·(cos θ_y − m·sin m) where θ_y + m would pass π (keeps the target logit
  monotone in θ_y).

Both margins act on the inference logits alone (cos θ = logits / s), so they need no features and
work behind DDP / torch.compile wrappers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spotter.functional.prototype import cosine_logits

MARGINS = ("arcface", "cosface", "none")


class CosineHead(nn.Linear):
    """`head(feats) = s · normalise(feats) @ normalise(W)ᵀ` (B, K); bias is None."""

    cosine = True  # read by spotter.functional.prototype.is_cosine (which cannot import models)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        scale: float = 64.0,
        margin: float = 0.0,
        kind: str = "none",
    ) -> None:
        if kind not in MARGINS:
            raise ValueError(f"unknown margin {kind!r}; valid choices: {', '.join(MARGINS)}")
        if scale <= 0 or margin < 0:
            raise ValueError(f"scale must be > 0 and margin >= 0, got s={scale}, m={margin}")
        super().__init__(in_features, out_features, bias=False)
        self.scale, self.margin, self.kind = float(scale), float(margin), kind

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        # in float32 even under bf16 autocast: the margin reads cos θ back from these logits
        with torch.autocast(feats.device.type, enabled=False):
            return cosine_logits(feats.float(), self.weight.float(), self.scale)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}, margin={self.margin}, kind={self.kind}"

    def margin_logits(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Training logits: the margin applied to each sample's target logit (method docstring)."""
        if self.kind == "none" or self.margin == 0:
            return logits
        s, m = self.scale, self.margin
        cos = (logits.float() / s).clamp(-1 + 1e-7, 1 - 1e-7)
        target = cos.gather(1, y.view(-1, 1))  # (B, 1)
        if self.kind == "cosface":
            new = target - m
        else:  # arcface: cos(θ + m), with the fallback past θ = π − m
            sin = (1 - target.square()).sqrt()
            arc = target * math.cos(m) - sin * math.sin(m)
            new = torch.where(target > math.cos(math.pi - m), arc, target - m * math.sin(m))
        return s * cos.scatter(1, y.view(-1, 1), new)

    def resized(self, out_features: int) -> CosineHead:
        """A fresh head of the same kind with `out_features` rows (initialised like nn.Linear)."""
        head = CosineHead(self.in_features, out_features, self.scale, self.margin, self.kind)
        return head.to(self.weight.device, self.weight.dtype)


def training_logits(model: nn.Module, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The logits the training loss sees: margin-adjusted when the model's head is a margin head."""
    head = getattr(model, "head", None)
    return head.margin_logits(logits, y) if isinstance(head, CosineHead) else logits


def head_like(head: nn.Linear, out_features: int) -> nn.Linear:
    """A fresh head of the same type as `head` (plain Linear or CosineHead) with `out_features` rows."""
    if isinstance(head, CosineHead):
        return head.resized(out_features)
    new = nn.Linear(head.in_features, out_features, bias=head.bias is not None)
    return new.to(head.weight.device, head.weight.dtype)
