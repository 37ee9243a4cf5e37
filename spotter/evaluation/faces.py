"""Identity-level measures for face models: identification through the head, verification through
embeddings (the maths is torch only).

Verification: every identity is enrolled from K images as a template (the normalised mean of its
normalised embeddings). For a forget identity those K images are the attacker's shots, so its
template is PRA carried out in embedding space: no head row needed, only the unlearned network's
embedding. Probes are the held-out test images. Genuine pairs: a probe against its own identity's
template. Impostor pairs: a probe of a RETAIN identity against the template of any other
identity (forget or retain), so the operating point is set on the population the system serves
and is the same for both groups. The threshold at a false-accept rate FAR is the smallest score
that at most FAR of the impostor scores exceed; TAR is the share of genuine scores above it.
Lower forget TAR is better for the defender; retain TAR should stay at the original's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import Splits, TensorSet
from spotter.training.inference import predict

# +1 higher is better, -1 lower is better (as spotter.evaluation.evaluator.DIRECTION)
DIRECTION_PREFIX = {"id_forget_acc": -1, "id_retain_acc": 1, "tar_forget": -1, "tar_retain": 1}
DIRECTION_PREFIX |= {"rank1_forget": -1, "rank1_retain": 1}


def templates(emb: torch.Tensor, y: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    """(len(ids), D): per identity, the normalised mean of its normalised embeddings."""
    e = F.normalize(emb.float(), dim=1)
    rows = []
    for c in ids:
        sel = y == c
        if not sel.any():
            raise ValueError(f"no enrolment images for identity {c}")
        rows.append(e[sel].mean(0))
    return F.normalize(torch.stack(rows), dim=1)


def threshold_at(impostor: torch.Tensor, far: float) -> float:
    """The smallest score τ with (#impostor scores > τ) <= far · #impostors."""
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"FAR must be in [0, 1], got {far}")
    if impostor.numel() == 0:
        raise ValueError("no impostor scores")
    desc = impostor.flatten().float().sort(descending=True).values
    k = int(far * len(desc))  # impostors allowed strictly above τ
    return float(desc[k]) if k < len(desc) else float(desc[-1]) - 1.0


def tar_at_far(genuine: torch.Tensor, impostor: torch.Tensor, far: float) -> tuple[float, float]:
    """(TAR in percent, threshold): genuine scores strictly above the FAR threshold."""
    tau = threshold_at(impostor, far)
    tar = float((genuine.float() > tau).double().mean() * 100) if genuine.numel() else float("nan")
    return tar, tau


def pair_scores(
    probe: torch.Tensor,
    probe_y: torch.Tensor,
    templ: torch.Tensor,
    templ_ids: torch.Tensor,
    impostor_from: torch.Tensor,
    max_impostors: int = 2_000_000,
    seed: int = 0,
    chunk: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(genuine (P,), impostor scores, rank-1 hit (P,)) of probes against templates.

    Probes whose identity has no template get genuine NaN and rank-1 False. Impostor pairs are
    probes with `impostor_from` True against other identities' templates: all of them, or a seeded
    uniform draw of `max_impostors` when there are more.
    """
    p = F.normalize(probe.float(), dim=1)
    pos = {int(c): i for i, c in enumerate(templ_ids.tolist())}
    own = torch.tensor([pos.get(int(c), -1) for c in probe_y], dtype=torch.long)
    has = own >= 0
    genuine = torch.full((len(p),), float("nan"))
    genuine[has] = (p[has] * templ[own[has]]).sum(1)
    rank1 = torch.zeros(len(p), dtype=torch.bool)
    for i in range(0, len(p), chunk):  # (chunk, T) at a time
        best = (p[i : i + chunk] @ templ.T).argmax(1)
        rank1[i : i + chunk] = best == own[i : i + chunk]
    src = impostor_from.nonzero().flatten()
    n_pairs = len(src) * len(templ)
    if n_pairs <= max_impostors:
        s = p[src] @ templ.T  # (n, T)
        mask = own[src].view(-1, 1) != torch.arange(len(templ)).view(1, -1)
        impostor = s[mask]
    else:
        g = torch.Generator().manual_seed(seed)
        pi = src[torch.randint(0, len(src), (max_impostors,), generator=g)]
        ti = torch.randint(0, len(templ), (max_impostors,), generator=g)
        keep = own[pi] != ti
        impostor = (p[pi[keep]] * templ[ti[keep]]).sum(1)
    return genuine, impostor, rank1


def enrolment(data: TensorSet, k: int, seed: int = 0) -> torch.Tensor:
    """Indices of up to `k` seeded images per identity of `data` (all of them when fewer)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in data.y.unique().tolist():
        pool = (data.y == c).nonzero().flatten()
        out.append(pool[torch.randperm(len(pool), generator=g)[:k]])
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


@dataclass
class FaceEvalConfig:
    """Identity-level evaluation settings."""

    k: int = 5  # enrolment images per identity; forget identities use the attacker's K shots
    fars: tuple[float, ...] = (1e-2, 1e-3)  # operating points
    max_impostors: int = 2_000_000  # impostor pairs scored (a seeded draw beyond this)
    seed: int = 0  # retain enrolment draw and impostor draw
    batch_size: int = 512


def face_measures(
    model: nn.Module, splits: Splits, cfg: FaceEvalConfig | None = None, device: Any = None
) -> dict[str, float]:
    """Identification (head) and verification (embeddings) measures of one model, in percent."""
    cfg = cfg or FaceEvalConfig()
    if splits.retain is None:
        raise ValueError("verification needs the retain split (retain identities' enrolment)")
    device = device or next(model.parameters()).device
    forget_ids = torch.tensor(splits.forget_classes)
    shots = splits.shots
    if cfg.k != len(shots) // len(forget_ids):  # not the split's K: draw the attacker's K again
        shots = splits.forget.subset(enrolment(splits.forget, cfg.k, cfg.seed))
    retain_enrol = splits.retain.subset(enrolment(splits.retain, cfg.k, cfg.seed))

    def run(x: torch.Tensor, features: bool) -> torch.Tensor:
        return predict(model, x, cfg.batch_size, device, features=features)

    enrol_y = torch.cat([shots.y, retain_enrol.y])
    ids = enrol_y.unique()
    templ = templates(torch.cat([run(shots.x, True), run(retain_enrol.x, True)]), enrol_y, ids.tolist())
    probe_x = [splits.test_forget.x, splits.test_retain.x]
    probe_y = torch.cat([splits.test_forget.y, splits.test_retain.y])
    emb = torch.cat([run(x, True) for x in probe_x])
    with torch.no_grad():
        logits = model.head.to(device)(emb.to(device)).float().cpu()
    is_forget = torch.isin(probe_y, forget_ids)
    genuine, impostor, rank1 = pair_scores(emb, probe_y, templ, ids, ~is_forget, cfg.max_impostors, cfg.seed)
    hit = logits.argmax(1) == probe_y
    enrolled = ~genuine.isnan()  # a retain identity whose train images all went to val has none
    out: dict[str, float] = {
        "id_forget_acc": float(hit[is_forget].double().mean() * 100),
        "id_retain_acc": float(hit[~is_forget].double().mean() * 100),
        "rank1_forget": float(rank1[is_forget & enrolled].double().mean() * 100),
        "rank1_retain": float(rank1[~is_forget & enrolled].double().mean() * 100),
        "genuine_cos_forget": float(genuine[is_forget].nanmean()),
        "genuine_cos_retain": float(genuine[~is_forget].nanmean()),
        "impostor_pairs": float(len(impostor)),
    }
    for far in cfg.fars:
        tar_f, tau = tar_at_far(genuine[is_forget & enrolled], impostor, far)
        tar_r, _ = tar_at_far(genuine[~is_forget & enrolled], impostor, far)
        out[f"tar_forget@{far:g}"], out[f"tar_retain@{far:g}"] = tar_f, tar_r
        out[f"threshold@{far:g}"] = tau
    return out
