"""Loss terms shared by methods (torch only).

`mask` is method.md §2: the teacher's softmax with the forget columns removed and renormalised,
computed in logit space (forget logits := -inf) so it stays finite when the teacher puts ~all mass
on a forget class. The authors' code divides by (row sum + 1e-10) instead; we do not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spotter.models.heads import cosine_logits, is_cosine


def masked_log_probs(
    logits: torch.Tensor, forget_classes: Sequence[int], temperature: float = 1.0
) -> torch.Tensor:
    """log mask(softmax(logits / T)): forget columns are -inf, the rest sum to 1. (B, K)."""
    z = logits / temperature
    z = z.masked_fill(_column_mask(z, forget_classes), float("-inf"))
    return F.log_softmax(z, dim=-1)


def masked_probs(
    logits: torch.Tensor, forget_classes: Sequence[int], temperature: float = 1.0
) -> torch.Tensor:
    """mask(softmax(logits / T)) (method.md §2): exact zeros in forget columns, rows sum to 1."""
    return masked_log_probs(logits, forget_classes, temperature).exp()


def _column_mask(z: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    cols = torch.zeros(z.shape[-1], dtype=torch.bool, device=z.device)
    cols[list(classes)] = True
    return cols.expand_as(z)


def kl_to_student(target_probs: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ softmax(student)) per sample, with 0·log 0 = 0 and 0·log q = 0. (B,)."""
    log_p = F.log_softmax(student_logits, dim=-1)
    # a logit range beyond float32 makes log_p -inf; where the target is 0 that term is 0, not NaN
    cross = torch.where(
        target_probs > 0, target_probs * log_p, torch.zeros((), dtype=log_p.dtype, device=log_p.device)
    )
    return (torch.special.xlogy(target_probs, target_probs) - cross).sum(-1)


def masked_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    forget_classes: Sequence[int],
    temperature: float = 1.0,
) -> torch.Tensor:
    """Batch mean of KL(mask(p_teacher) ‖ p_student) (method.md §5, terms 1 and 2), scaled by T²."""
    target = masked_probs(teacher_logits.detach(), forget_classes, temperature)
    kl = kl_to_student(target, student_logits / temperature)
    return kl.mean() * temperature**2


def kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Batch mean of T²·KL(softmax(teacher/T) ‖ softmax(student/T)) (Hinton et al. 2015)."""
    target = F.softmax(teacher_logits.detach() / temperature, dim=-1)
    return kl_to_student(target, student_logits / temperature).mean() * temperature**2


def dispersion(feats: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity over ordered pairs (i != j) with y_i == y_j (method.md §5); 0 if none.

    Minimising it scatters each class's features. Only same-class pairs count, so several forget
    classes in one batch are each dispersed without pushing classes apart from one another.
    """
    z = F.normalize(feats, dim=-1)
    sim = z @ z.T  # (B, B)
    same = (y.view(-1, 1) == y.view(1, -1)) & ~torch.eye(len(y), dtype=torch.bool, device=y.device)
    n_pairs = same.sum()
    if n_pairs == 0:
        return feats.new_zeros(())
    return (sim * same).sum() / n_pairs


def prototype_attack_loss(
    feats: torch.Tensor,
    y: torch.Tensor,
    head: nn.Module,
    forget_classes: Sequence[int],
    generator: torch.Generator,
    shots: Sequence[int] = (1, 5, 10, 20),
    alpha_low: float = 0.5,
    variants: Sequence[str] = ("cosine", "scaled"),
) -> torch.Tensor:
    """A simulated Prototypical Relearning Attack inside a batch (our extension; method.md §4).

    For each forget class c with at least K + 2 samples in the batch (K drawn from `shots`), K of
    them are the attacker's shots and give the prototype p̂ = normalise(mean of their features);
    row c of the head becomes α·row + (1-α)·(its current row), α ~ U(alpha_low, 1), for each of
    `variants`: PRA's cosine row (p̂, bias 0) and our scaled row (median retain-row norm · p̂,
    median retain bias); a cosine head reads only the row's direction, so it gets one row. The
    loss is the mean over the other samples of c of -log(1 - P(c)) under the attacked head: the
    probability mass the attack would win back. The head enters detached, so only the features
    move: minimising the loss scatters the forget class in the directions the attack exploits.
    0 when no forget class has enough samples in the batch.
    """
    for v in variants:
        if v not in ("cosine", "scaled"):
            raise ValueError(f"unknown prototype variant {v!r}; valid choices: cosine, scaled")
    w = head.weight.detach().float()
    cosine_head = is_cosine(head)
    if cosine_head:
        logits = cosine_logits(feats.float(), w, head.scale)
        rows = {"cosine": (1.0, 0.0)}
    else:
        b = head.bias.detach().float() if head.bias is not None else w.new_zeros(len(w))
        keep = torch.ones(len(w), dtype=torch.bool, device=w.device)
        keep[list(forget_classes)] = False
        logits = feats.float() @ w.T + b
        rows = {"cosine": (1.0, 0.0), "scaled": (w[keep].norm(dim=1).median(), b[keep].median())}
    losses = []
    for c in forget_classes:
        idx = (y == c).nonzero().flatten()
        k = int(shots[int(torch.randint(len(shots), (1,), generator=generator))])
        if len(idx) < k + 2:
            continue
        perm = idx[torch.randperm(len(idx), generator=generator).to(idx.device)]
        shot, query = perm[:k], perm[k:]
        p_hat = F.normalize(feats[shot].float().mean(0), dim=0)
        alpha = alpha_low + (1 - alpha_low) * float(torch.rand((), generator=generator))
        f, z = feats[query].float(), logits[query]
        others = torch.cat([z[:, :c], z[:, c + 1 :]], dim=1).logsumexp(1)
        if cosine_head:
            row = F.normalize(alpha * p_hat + (1 - alpha) * F.normalize(w[c], dim=0), dim=0)
            attacked = [head.scale * F.normalize(f, dim=1) @ row]
        else:
            attacked = [
                alpha * (scale * (f @ p_hat) + bias) + (1 - alpha) * z[:, c]
                for scale, bias in (rows[v] for v in dict.fromkeys(variants))
            ]
        losses += [F.softplus(z_c - others).mean() for z_c in attacked]  # -log(1 - P(c))
    if not losses:
        return feats.new_zeros(())
    return torch.stack(losses).mean()
