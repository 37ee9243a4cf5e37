"""What the audit compares every model on: its settings (`AuditConfig`) and the material built
once from the original (`Shared`: evaluation neighbourhoods, the ε sweep, the nearest classes)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from spotter.config import apply_overrides, parse_overrides
from spotter.data import Splits, TensorSet
from spotter.evaluation.evaluator import EvalConfig, Evaluator
from spotter.evaluation.pra import VARIANTS
from spotter.evaluation.relearn import (
    FinetuneConfig,
    RelearnTimeConfig,
    forget_probe_set,
    loss_on,
)
from spotter.evaluation.relearn_grid import RelearnGridConfig
from spotter.functional.metrics import per_class_accuracy
from spotter.functional.perturb import KINDS, neighbourhood
from spotter.training.inference import predict

log = logging.getLogger("spotter")


CHECKS = (
    "near", "ou_sweep", "pra", "finetune", "statistics", "relearn_grid", "relearn_time", "probe", "mia",
)  # fmt: skip


@dataclass
class AuditConfig:
    """What the audit runs and its budgets. Every budget can shrink for tests or a quick look."""

    eval: EvalConfig = field(default_factory=EvalConfig)  # accuracies, OU@ε, PRA at K=5 (docs/method.md)
    checks: tuple[str, ...] = CHECKS  # which extra checks to run (the Evaluator always runs)
    near_k: int = 3  # retain classes the original confuses the forget class with most
    ou_eps: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.1)  # PGD step = ε/3, 3 steps; Gaussian σ = ε
    ou_limit: int = 1000  # forget samples (seeded subset) the ε sweep perturbs; 0 = all
    pra_shots: tuple[int, ...] = (1, 5, 10, 50)  # K sweep; shots are nested seeded draws from D_f
    pra_variants: tuple[str, ...] = VARIANTS  # cosine, l2 (docs/method.md §4) and our scaled row
    pra_curve_shots: int = 5  # the K whose α curve is drawn (docs/method.md §4 default)
    pra_seed: int = 0
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    # BatchNorm statistics re-estimated on this many unlabelled retain images, no gradient step
    # (spotter.evaluation.relearn.statistics_relearn): forgetting kept in stale statistics comes back
    statistics_images: tuple[int, ...] = (100, 1000)
    # the relearning grid: many few-shot attackers, judged by their gap to the retrained model
    relearn_grid: RelearnGridConfig = field(default_factory=RelearnGridConfig)
    relearn: RelearnTimeConfig = field(default_factory=RelearnTimeConfig)
    probe_samples: int = 400  # train samples for the probe, half forget and half retain
    mia_limit: int = 0  # cap on D_f samples the MIAs score (seeded subset; 0 = all)
    seed: int = 0  # probe and MIA subsets

    def __post_init__(self) -> None:
        bad = [c for c in self.checks if c not in CHECKS]
        if bad:
            raise ValueError(f"unknown audit check {bad[0]!r}; valid choices: {', '.join(CHECKS)}")
        bad = [v for v in self.pra_variants if v not in VARIANTS]
        if bad:
            raise ValueError(f"unknown PRA variant {bad[0]!r}; valid choices: {', '.join(VARIANTS)}")
        if any(not 0 < e <= 1 for e in self.ou_eps):
            raise ValueError(f"ou_eps must lie in (0, 1] (pixels), got {list(self.ou_eps)}")
        if not self.statistics_images or min(self.statistics_images) < 1:
            raise ValueError(
                f"statistics_images must be positive image counts, got {list(self.statistics_images)}"
            )
        if self.near_k < 1 or self.probe_samples < 4:
            raise ValueError("near_k must be >= 1 and probe_samples >= 4")


def audit_config(overrides: dict[str, str] | list[str] | None = None) -> AuditConfig:
    """AuditConfig from key=value overrides; `eval.`, `finetune.`, `relearn_grid.` and `relearn.` keys
    reach the nested configs (e.g. relearn.cap=10 finetune.steps=5,10 relearn_grid.shots=5 eval.eps=0.05)."""
    items = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    nested: dict[str, dict[str, str]] = {"eval": {}, "finetune": {}, "relearn_grid": {}, "relearn": {}}
    top = {}
    for key, value in items.items():
        prefix, dot, rest = key.partition(".")
        if dot and prefix in nested:
            nested[prefix][rest] = value
        elif key in nested:
            raise ValueError(f"{key} is a group of settings; set its fields, e.g. {key}.<field>=VALUE")
        else:
            top[key] = value
    cfg = apply_overrides(AuditConfig(), top)
    subs = {name: apply_overrides(getattr(cfg, name), values) for name, values in nested.items()}
    return replace(cfg, **subs)


def near_classes(
    logits: torch.Tensor, forget_classes: tuple[int, ...], k: int
) -> list[dict[str, float | int]]:
    """Up to k retain classes the ORIGINAL confuses the forget classes with most, from its logits on
    forget test samples: ranked by the share of samples it predicts as that class, ties (e.g. an
    original that is always right) broken by the share whose strongest retain class it is; classes
    with neither are left out."""
    masked = logits.clone()
    masked[:, list(forget_classes)] = float("-inf")
    runner_up = masked.argmax(1)
    predicted = logits.argmax(1)
    rows = []
    for c in range(logits.shape[1]):
        if c in forget_classes:
            continue
        confused = float((predicted == c).double().mean() * 100) if len(logits) else 0.0
        nearest = float((runner_up == c).double().mean() * 100) if len(logits) else 0.0
        rows.append({"class": c, "confusion_share": confused, "runner_up_share": nearest})
    rows = [r for r in rows if r["confusion_share"] > 0 or r["runner_up_share"] > 0]
    rows.sort(key=lambda r: (-r["confusion_share"], -r["runner_up_share"], r["class"]))
    return rows[:k]


class Shared:
    """What every model is compared on: neighbourhoods, the original's references, subsets."""

    def __init__(self, original: nn.Module, splits: Splits, cfg: AuditConfig, device: torch.device) -> None:
        self.splits, self.cfg, self.device = splits, cfg, device
        self.notes: list[str] = []
        self.evaluator = Evaluator(original, splits, cfg.eval)
        test_x = torch.cat([splits.test_forget.x, splits.test_retain.x])
        test_y = torch.cat([splits.test_forget.y, splits.test_retain.y])
        logits = predict(original, test_x, device=device)
        self.original_per_class = per_class_accuracy(logits, test_y, splits.num_classes)
        self.near = near_classes(logits[: len(splits.test_forget)], splits.forget_classes, cfg.near_k)
        self.ou: dict[tuple[str, float], tuple[torch.Tensor, torch.Tensor]] = {}
        if "ou_sweep" in cfg.checks:
            self._build_neighbourhoods(original)
        pool = min(int((splits.forget.y == c).sum()) for c in splits.forget_classes)
        self.pra_shots = tuple(k for k in cfg.pra_shots if 1 <= k <= pool)
        if len(self.pra_shots) < len(cfg.pra_shots):
            self.notes.append(f"PRA shots above {pool} (the smallest forget class) skipped")
        self.forget_probe = forget_probe_set(splits.forget, cfg.relearn.forget_limit, cfg.relearn.seed)
        self.target_loss = loss_on(original, self.forget_probe, device)

    def _build_neighbourhoods(self, original: nn.Module) -> None:
        src: TensorSet = getattr(self.splits, self.cfg.eval.source)
        if self.cfg.ou_limit and len(src) > self.cfg.ou_limit:
            g = torch.Generator().manual_seed(self.cfg.eval.seed)
            src = src.subset(torch.randperm(len(src), generator=g)[: self.cfg.ou_limit])
        for eps in self.cfg.ou_eps:
            for kind in KINDS:
                x_nb, _ = neighbourhood(
                    original, src.x, src.y, kind, self.cfg.eval.seed, eps, eps / 3, 3, eps, device=self.device
                )
                self.ou[kind, eps] = (x_nb, predict(original, x_nb, device=self.device))
