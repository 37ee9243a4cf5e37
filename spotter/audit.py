"""`audit`: every check of an unlearned checkpoint, run for original, retrained (when given) and
unlearned side by side, so each number can be read against the two references.

Checks: accuracies and the damage near the forget class; OU@ε (PGD toward/away, Gaussian) and its
sweep over ε; PRA over α, K and prototype variants; few-shot fine-tuning; relearn time; a linear
probe on frozen features; membership inference. `audit_report.write_report` renders the result.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from spotter.attacks import VARIANTS
from spotter.audit_checks import (
    mia_check,
    near_classes,
    near_damage,
    ou_sweep,
    pra_report,
    probe_check,
    train_set,
)
from spotter.config import apply_overrides, parse_overrides
from spotter.data import Splits, TensorSet
from spotter.evaluate import EvalConfig, Evaluator
from spotter.metrics import per_class_accuracy
from spotter.perturb import KINDS, neighbourhood
from spotter.relearn import (
    FinetuneConfig,
    RelearnTimeConfig,
    finetune_relearn,
    forget_probe_set,
    loss_on,
    relearn_time,
)
from spotter.train import predict

log = logging.getLogger("spotter")

CHECKS = ("near", "ou_sweep", "pra", "finetune", "relearn_time", "probe", "mia")


@dataclass
class AuditConfig:
    """What the audit runs and its budgets. Every budget can shrink for tests or a quick look."""

    eval: EvalConfig = field(default_factory=EvalConfig)  # accuracies, OU@ε, PRA at K=5 (method.md)
    checks: tuple[str, ...] = CHECKS  # which extra checks to run (the Evaluator always runs)
    near_k: int = 3  # retain classes the original confuses the forget class with most
    ou_eps: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.1)  # PGD step = ε/3, 3 steps; Gaussian σ = ε
    ou_limit: int = 1000  # forget samples (seeded subset) the ε sweep perturbs; 0 = all
    pra_shots: tuple[int, ...] = (1, 5, 10, 50)  # K sweep; shots are nested seeded draws from D_f
    pra_variants: tuple[str, ...] = VARIANTS  # cosine, l2 (method.md §4) and our scaled row
    pra_curve_shots: int = 5  # the K whose α curve is drawn (method.md §4 default)
    pra_seed: int = 0
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
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
        if self.near_k < 1 or self.probe_samples < 4:
            raise ValueError("near_k must be >= 1 and probe_samples >= 4")


def audit_config(overrides: dict[str, str] | list[str] | None = None) -> AuditConfig:
    """AuditConfig from key=value overrides; `eval.`, `finetune.` and `relearn.` keys reach the
    nested configs (e.g. relearn.cap=10 finetune.steps=5,10 eval.eps=0.05)."""
    items = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    nested: dict[str, dict[str, str]] = {"eval": {}, "finetune": {}, "relearn": {}}
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


def _audit_one(sh: Shared, model: nn.Module) -> dict[str, Any]:
    s, cfg, dev = sh.splits, sh.cfg, sh.device
    seconds: dict[str, float] = {}
    t0 = time.time()
    out: dict[str, Any] = {"eval": sh.evaluator(model)}
    feats = {
        k: predict(model, getattr(s, k).x, device=dev, features=True)
        for k in ("forget", "test_forget", "test_retain")
    }
    head = copy.deepcopy(model.head).cpu().float()
    with torch.no_grad():
        logits = {k: head(v) for k, v in feats.items()}
    seconds["eval"] = time.time() - t0
    checks = {
        "near": lambda: near_damage(sh, out["eval"]["per_class_test_acc"]),
        "ou_sweep": lambda: ou_sweep(sh, model),
        "pra": lambda: pra_report(sh, model, feats),
        "finetune": lambda: finetune_relearn(model, s, cfg.finetune, dev),
        "relearn_time": lambda: relearn_time(
            model, train_set(s), sh.forget_probe, sh.target_loss, cfg.relearn, dev
        ),
        "probe": lambda: probe_check(sh, model, feats),
        "mia": lambda: mia_check(sh, model, logits),
    }
    for name in cfg.checks:
        t0 = time.time()
        try:
            out[name] = checks[name]()
        except ImportError as err:  # scikit-learn missing: skip, say so
            log.warning("audit: %s skipped: %s", name, err)
            out[name] = {"skipped": str(err)}
        seconds[name] = time.time() - t0
    out["seconds"] = seconds
    return out


def audit(
    original: nn.Module,
    unlearned: nn.Module,
    splits: Splits,
    retrained: nn.Module | None = None,
    cfg: AuditConfig | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Run every check for original, retrained (when given) and unlearned; a JSON-able dict.

    result["results"][name] holds, per model: eval (the Evaluator's row), near, ou_sweep, pra,
    finetune, relearn_time, probe, mia (those in cfg.checks). No model's weights change (attacks
    work on copies); the models are moved to `device` and put in eval mode.
    """
    cfg = cfg or AuditConfig()
    if splits.retain is None:
        raise ValueError("the audit needs the retain split (MIA shadow members, relearn time, probe)")
    device = torch.device(device) if device is not None else next(original.parameters()).device
    models = {"original": original, "retrained": retrained, "unlearned": unlearned}
    models = {k: m.to(device).eval() for k, m in models.items() if m is not None}
    t0 = time.time()
    sh = Shared(models["original"], splits, cfg, device)
    results = {}
    for name, model in models.items():
        t1 = time.time()
        results[name] = _audit_one(sh, model)
        log.info("audited %s in %.0fs", name, time.time() - t1)
    return {
        "forget_classes": list(splits.forget_classes),
        "num_classes": splits.num_classes,
        "models": list(models),
        "near_classes": sh.near,
        "config": asdict(cfg),
        "notes": sh.notes,
        "results": results,
        "seconds": time.time() - t0,
    }
