"""The head rows of the Prototypical Relearning Attack (docs/method.md §4), as torch primitives.

Shared by the attack itself (`spotter.evaluation.pra`, on a copy of a model) and by Spotter's optional
simulated-attack term (`spotter.functional.losses.prototype_attack_loss`), so the attack trained against is the
attack measured. Imports only torch and the head definitions (methods may use it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("cosine", "l2", "scaled")


def cosine_logits(feats: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    """s · cos(feats, rows of weight): (B, D), (K, D) -> (B, K)."""
    return scale * F.linear(F.normalize(feats, dim=-1), F.normalize(weight, dim=-1))


def is_cosine(head: nn.Module) -> bool:
    """Whether `head` computes s·cos θ (a cosine head of spotter.models.heads, or any head saying so)."""
    return getattr(head, "cosine", False) is True


def prototype_rows(
    shot_feats: torch.Tensor,
    shot_y: torch.Tensor,
    classes: Sequence[int],
    variant: str = "cosine",
    head: nn.Linear | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate head rows (len(classes), D) and biases (len(classes),) from the shots' features.

    cosine: w = p̂, b = 0; l2: w = 2p̂, b = -‖p̂‖² (= -1), with p̂ the normalised class mean.
    scaled (ours, needs `head`): w = s·p̂, b = b̃, with s the median norm and b̃ the median bias of
    the head's retain rows, so the row is as strong as a typical class row, not a unit vector.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown PRA variant {variant!r}; valid choices: {', '.join(VARIANTS)}")
    if variant == "scaled":
        if head is None:
            raise ValueError("the 'scaled' PRA variant needs the model's head (pass head=)")
        scale, typical_bias = _typical_row(head, classes)
    rows, biases = [], []
    for c in classes:
        sel = shot_y == c
        if not sel.any():
            raise ValueError(f"no shots for forget class {c}")
        p_hat = torch.nn.functional.normalize(shot_feats[sel].float().mean(0), dim=0)
        if variant == "cosine":
            rows.append(p_hat)
            biases.append(p_hat.new_zeros(()))
        elif variant == "scaled":
            rows.append(scale * p_hat)
            biases.append(typical_bias.to(p_hat))
        else:
            rows.append(2 * p_hat)
            biases.append(-(p_hat @ p_hat))
    return torch.stack(rows), torch.stack(biases)


def _typical_row(head: nn.Linear, classes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(median row norm, median bias) over the head's rows that are not forget classes."""
    keep = torch.ones(head.out_features, dtype=torch.bool)
    keep[list(classes)] = False
    w = head.weight.detach().float().cpu()[keep]
    b = head.bias.detach().float().cpu()[keep] if head.bias is not None else torch.zeros(len(w))
    return w.norm(dim=1).median(), b.median()


def attacked_head(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    rows: torch.Tensor,
    row_biases: torch.Tensor,
    classes: Sequence[int],
    alpha: float,
    cosine: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """New (weight, bias): row c ← α·w + (1-α)·row c for each forget class, others unchanged.

    A head without bias keeps none (bias None). `cosine`: a cosine head (models/heads.py) reads
    only row directions and has no bias, so §4 reduces to W[c] ← normalise(α p̂ + (1-α) Ŵ[c]),
    with Ŵ[c] the row's direction (the head's effective row); every variant gives p̂ there.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    w = weight.detach().clone()
    idx = torch.tensor(list(classes), device=w.device)
    if cosine:
        p_hat, w_hat = F.normalize(rows.to(w), dim=1), F.normalize(w[idx], dim=1)
        w[idx] = F.normalize(alpha * p_hat + (1 - alpha) * w_hat, dim=1)
        return w, None
    w[idx] = alpha * rows.to(w) + (1 - alpha) * w[idx]
    if bias is None:
        return w, None
    b = bias.detach().clone()
    b[idx] = alpha * row_biases.to(b) + (1 - alpha) * b[idx]
    return w, b


def head_logits(
    head: nn.Linear, feats: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
) -> torch.Tensor:
    """Logits of `head` with its weight and bias replaced by (w, b) (cosine heads: s·cos θ)."""
    if is_cosine(head):
        return cosine_logits(feats.to(w), w, head.scale)
    out = feats.to(w) @ w.T
    return out if b is None else out + b
