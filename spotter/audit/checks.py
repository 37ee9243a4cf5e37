"""The audit's checks for one model, given what all models share (`audit.context.Shared`).

Each returns a JSON-able dict; `audit.run.audit` runs them for every model side by side.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from spotter.audit.context import Shared
from spotter.data import Splits, TensorSet
from spotter.evaluation.pra import pra_suite
from spotter.evaluation.relearn import linear_probe
from spotter.functional.metrics import over_unlearning
from spotter.functional.perturb import KINDS
from spotter.training.inference import predict


def pra_report(sh: Shared, model: nn.Module, feats: dict[str, torch.Tensor]) -> dict[str, Any]:
    """PRA for every variant and K: forget accuracy and α at the attacker's best α, one α curve."""
    s, cfg = sh.splits, sh.cfg
    labelled = {k: (feats[k], getattr(s, k).y) for k in ("forget", "test_forget", "test_retain")}
    head = copy.deepcopy(model.head).cpu()
    suite = pra_suite(
        head,
        feats["forget"],
        labelled,
        s.forget_classes,
        sh.pra_shots,
        cfg.pra_variants,
        cfg.eval.alphas,
        cfg.pra_seed,
    )
    curve_k = min(sh.pra_shots, key=lambda k: (abs(k - cfg.pra_curve_shots), k)) if sh.pra_shots else None
    out: dict[str, Any] = {"shots": list(sh.pra_shots), "curve_shots": curve_k, "variants": {}}
    for variant, by_k in suite.items():
        ks = list(by_k)
        out["variants"][variant] = {
            "forget_acc": [by_k[k].at_best("test_forget_acc") for k in ks],
            "train_forget_acc": [by_k[k].at_best("forget_acc") for k in ks],
            "retain_acc": [by_k[k].at_best("test_retain_acc") for k in ks],
            "alpha": [by_k[k].best_alpha for k in ks],
            "alpha1_forget_acc": [by_k[k].test_forget_acc[-1] for k in ks],
            "curve": asdict(by_k[curve_k]) if curve_k is not None else None,
        }
    return out


def probe_check(sh: Shared, model: nn.Module, feats: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The linear probe on a seeded half-forget, half-retain train sample; AUROC on all test images."""
    s = sh.splits
    g = torch.Generator().manual_seed(sh.cfg.seed)
    half = sh.cfg.probe_samples // 2
    fi = torch.randperm(len(s.forget), generator=g)[:half]
    ri = torch.randperm(len(s.retain), generator=g)[:half]
    x = torch.cat([s.forget.x[fi], s.retain.x[ri]])
    train_feats = predict(model, x, device=sh.device, features=True)
    is_forget = torch.cat([torch.ones(len(fi)), torch.zeros(len(ri))])
    test_feats = torch.cat([feats["test_forget"], feats["test_retain"]])
    test_is_forget = torch.cat([torch.ones(len(s.test_forget)), torch.zeros(len(s.test_retain))])
    return linear_probe(train_feats, is_forget, test_feats, test_is_forget, sh.cfg.seed)


def mia_check(sh: Shared, model: nn.Module, logits: dict[str, torch.Tensor]) -> dict[str, Any]:
    """SalUn's MIA-efficacy (and member rate) and SCRUB's entropy attack on one model's outputs."""
    from spotter.evaluation.mia import entropy_attack, mia_efficacy

    s = sh.splits
    members = s.retain.subset(torch.arange(min(len(s.retain), len(s.test_retain))))  # SalUn's shadow set
    member_logits = predict(model, members.x, device=sh.device)
    forget_logits, forget_y = logits["forget"], s.forget.y
    if sh.cfg.mia_limit and len(forget_y) > sh.cfg.mia_limit:
        g = torch.Generator().manual_seed(sh.cfg.seed)
        keep = torch.randperm(len(forget_y), generator=g)[: sh.cfg.mia_limit]
        forget_logits, forget_y = forget_logits[keep], forget_y[keep]
    efficacy = mia_efficacy(
        member_logits, members.y, logits["test_retain"], s.test_retain.y, forget_logits, forget_y
    )
    ent = entropy_attack(member_logits, logits["test_retain"], forget_logits, logits["test_forget"])
    return {
        "mia_efficacy": efficacy,
        "mia_member_rate": 100.0 - efficacy,
        "entropy_member_rate": ent["member_rate"],
        "entropy_auroc": ent["auroc"],
        "shadow_members": len(members),
        "shadow_nonmembers": len(s.test_retain),
    }


def near_damage(sh: Shared, per_class: list[float]) -> dict[str, Any]:
    """Test accuracy and its change vs the original on the near classes, and the mean elsewhere."""
    rows = [
        {
            **r,
            "acc": per_class[r["class"]],
            "delta": per_class[r["class"]] - sh.original_per_class[r["class"]],
        }
        for r in sh.near
    ]
    near = {r["class"] for r in rows}
    others = [
        per_class[c] - sh.original_per_class[c]
        for c in range(len(per_class))
        if c not in near and c not in sh.splits.forget_classes
    ]
    mean = sum(r["delta"] for r in rows) / len(rows) if rows else float("nan")
    rest = sum(others) / len(others) if others else float("nan")
    return {"classes": rows, "mean_delta": mean, "other_mean_delta": rest}


def ou_sweep(sh: Shared, model: nn.Module) -> dict[str, list[float]]:
    """OU@ε of `model` on the shared neighbourhoods, for every kind and ε."""
    out: dict[str, list[float]] = {"eps": list(sh.cfg.ou_eps)}
    for kind in KINDS:
        out[kind] = []
        for eps in sh.cfg.ou_eps:
            x_nb, reference = sh.ou[kind, eps]
            model_logits = predict(model, x_nb, device=sh.device)
            out[kind].append(
                over_unlearning(reference, model_logits, sh.splits.forget_classes, sh.cfg.eval.divergence)
            )
    return out


def train_set(s: Splits) -> TensorSet:
    """D_f ∪ D_r: the full training set relearn time draws from (D_f alone without retain data)."""
    return s.full_train() if s.retain is not None or s.train is not None else s.forget
