"""Metric maths (torch only): tensors in, numbers out. Each states its direction.

Accuracies are in percent. Divergences use natural logs and 0·log 0 = 0 (docs/method.md §3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from spotter.functional.losses import dispersion, masked_probs

LN2 = float(torch.log(torch.tensor(2.0)))


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent (higher is better on retain data, lower on forget data)."""
    _check_logits(logits, y)
    if len(y) == 0:
        return float("nan")
    return float((logits.argmax(1) == y).float().mean() * 100)


def _check_logits(logits: torch.Tensor, y: torch.Tensor) -> None:
    if logits.dim() != 2 or y.dim() != 1 or len(logits) != len(y):
        raise ValueError(
            f"expected logits (B, K) and labels (B,), got {tuple(logits.shape)} and {tuple(y.shape)}"
        )


def per_class_accuracy(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float]:
    """Accuracy in percent for each class id (nan for a class with no samples)."""
    _check_logits(logits, y)
    pred = logits.argmax(1)
    out = []
    for c in range(num_classes):
        sel = y == c
        out.append(float((pred[sel] == c).float().mean() * 100) if sel.any() else float("nan"))
    return out


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) per row, natural log; +inf where q = 0 < p. (B,)."""
    kl = (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum(-1)
    return kl.clamp_min(0.0)  # KL >= 0; nearly equal rows can round to -1e-7 (tests/test_fuzz.py)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence per row, natural log, in [0, ln 2]. (B,)."""
    m = 0.5 * (p + q)
    js = 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m)
    return js.clamp(0.0, LN2)  # rounding can leave it a hair outside the range


DIVERGENCES = ("js", "kl")


def over_unlearning(
    reference_logits: torch.Tensor,
    model_logits: torch.Tensor,
    forget_classes: Sequence[int],
    divergence: str = "js",
) -> float:
    """OU@ε (docs/method.md §3): mean over neighbours of D(mask(p_original) ‖ p_model). Lower is better.

    Args:
        reference_logits: the ORIGINAL model's logits on the neighbourhood A_ε(D_f).
        model_logits: the evaluated model's logits on the same points.
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; valid choices: {', '.join(DIVERGENCES)}")
    if reference_logits.shape != model_logits.shape or model_logits.dim() != 2:
        raise ValueError(
            f"expected two (B, K) logit tensors of one shape, got {tuple(reference_logits.shape)} "
            f"and {tuple(model_logits.shape)}"
        )
    bad = [c for c in forget_classes if not 0 <= c < model_logits.shape[1]]
    if bad:
        raise ValueError(f"forget class {bad[0]} out of range; valid ids are 0..{model_logits.shape[1] - 1}")
    if len(model_logits) == 0:
        return float("nan")
    ref = masked_probs(reference_logits.float(), forget_classes)
    probs = torch.softmax(model_logits.float(), dim=-1)
    d = js_divergence(ref, probs) if divergence == "js" else kl_divergence(ref, probs)
    return float(d.mean())


def dispersion_score(feats: torch.Tensor, y: torch.Tensor) -> float:
    """Mean pairwise cosine similarity of same-class features (docs/method.md §4 diagnostic).

    Lower means more scattered (no usable prototype). With several classes, pairs are counted
    within each class only.
    """
    return float(dispersion(feats.float(), y))
