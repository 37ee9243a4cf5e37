"""Prototypical Relearning Attack (docs/method.md §4): rebuild a forget class's head row from the mean
feature of K labelled shots, with no gradient step. Always applied to a COPY of the model.

Reference: Ha, Park, Yoon, "Unlearning's Blind Spots", ICML 2026, §4 (PRA).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from spotter.functional.metrics import accuracy
from spotter.functional.prototype import VARIANTS, attacked_head, head_logits, is_cosine, prototype_rows

DEFAULT_ALPHAS = tuple(round(0.1 * i, 1) for i in range(1, 11))


def prototype_relearning(
    model: nn.Module,
    shot_feats: torch.Tensor,
    shot_y: torch.Tensor,
    classes: Sequence[int],
    alpha: float,
    variant: str = "cosine",
) -> nn.Module:
    """An attacked COPY of `model` (a Classifier with `.head`); `model` itself is untouched."""
    rows, row_biases = prototype_rows(shot_feats, shot_y, classes, variant, model.head)
    attacked = copy.deepcopy(model)
    cosine = is_cosine(model.head)
    w, b = attacked_head(model.head.weight, model.head.bias, rows, row_biases, classes, alpha, cosine)
    with torch.no_grad():
        attacked.head.weight.copy_(w)
        if b is not None:
            attacked.head.bias.copy_(b)
    return attacked


@dataclass
class PRAResult:
    """The α sweep and the attacker's choice. Lower forget accuracy is better for the defender."""

    alphas: list[float]
    test_forget_acc: list[float]
    forget_acc: list[float]
    test_retain_acc: list[float]
    test_acc: list[float]
    best_alpha: float = field(default=0.0)
    best_index: int = field(default=0)

    def at_best(self, key: str) -> float:
        return getattr(self, key)[self.best_index]


def pra_sweep(
    head: nn.Linear,
    shot_feats: torch.Tensor,
    shot_y: torch.Tensor,
    classes: Sequence[int],
    feats: dict[str, tuple[torch.Tensor, torch.Tensor]],
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    variant: str = "cosine",
) -> PRAResult:
    """Sweep α on precomputed features (PRA changes only the head, so features are reused).

    `feats` maps "forget", "test_forget", "test_retain" to (features, labels). The attacker's best
    α maximises accuracy over ALL test samples (forget and retain, natural weights); ties go to the
    larger α (docs/method.md §4).
    """
    rows, row_biases = prototype_rows(shot_feats, shot_y, classes, variant, head)
    res = PRAResult(list(map(float, alphas)), [], [], [], [])
    tf, tr = feats["test_forget"], feats["test_retain"]
    for alpha in alphas:
        w, b = attacked_head(head.weight, head.bias, rows, row_biases, classes, alpha, is_cosine(head))

        def logits(f: torch.Tensor) -> torch.Tensor:
            return head_logits(head, f, w, b)  # noqa: B023 - evaluated inside the loop

        lf, lr = logits(tf[0]), logits(tr[0])
        res.test_forget_acc.append(accuracy(lf, tf[1].to(w.device)))
        res.test_retain_acc.append(accuracy(lr, tr[1].to(w.device)))
        res.forget_acc.append(accuracy(logits(feats["forget"][0]), feats["forget"][1].to(w.device)))
        correct = (lf.argmax(1).cpu() == tf[1].cpu()).sum() + (lr.argmax(1).cpu() == tr[1].cpu()).sum()
        res.test_acc.append(float(correct) / (len(tf[1]) + len(tr[1])) * 100)
    best = max(range(len(alphas)), key=lambda i: (round(res.test_acc[i], 9), res.alphas[i]))
    res.best_index, res.best_alpha = best, res.alphas[best]
    return res


def draw_shots(y: torch.Tensor, classes: Sequence[int], k: int, seed: int = 0) -> torch.Tensor:
    """Indices of `k` seeded shots per forget class among labels `y` (the attacker's pool, D_f).

    Draws are nested: the same seed gives the first k of one fixed order per class, so the K = 5
    shots contain the K = 1 shot and a K sweep changes only how many shots the attacker holds.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in classes:
        pool = (y == c).nonzero().flatten()
        order = pool[torch.randperm(len(pool), generator=g)]
        if k < 1 or k > len(pool):
            raise ValueError(f"shots={k} must be in 1..{len(pool)} (samples of forget class {c})")
        out.append(order[:k])
    return torch.cat(out)


def pra_suite(
    head: nn.Linear,
    forget_feats: torch.Tensor,
    feats: dict[str, tuple[torch.Tensor, torch.Tensor]],
    classes: Sequence[int],
    shots: Sequence[int] = (1, 5, 10, 50),
    variants: Sequence[str] = VARIANTS,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    seed: int = 0,
) -> dict[str, dict[int, PRAResult]]:
    """`pra_sweep` for every variant and every K; shots are nested seeded draws from D_f.

    `forget_feats` are the features of `feats["forget"]`; the shots are rows of it.
    """
    y = feats["forget"][1]
    out: dict[str, dict[int, PRAResult]] = {v: {} for v in variants}
    for k in shots:
        idx = draw_shots(y, classes, k, seed)
        for v in variants:
            out[v][k] = pra_sweep(head, forget_feats[idx], y[idx], classes, feats, alphas, v)
    return out
