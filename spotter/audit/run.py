"""`audit`: every check of an unlearned checkpoint, run for original, retrained (when given) and
unlearned side by side, so each number can be read against the two references.

Checks: accuracies and the damage near the forget class; OU@ε (PGD toward/away, Gaussian) and its
sweep over ε; PRA over α, K and prototype variants; few-shot fine-tuning; BatchNorm statistics
re-estimated on retain images (no gradient step); the relearning grid (many
few-shot attackers) and its gap to the retrained model; relearn time; a linear probe on frozen
features; membership inference. `audit.report.write_report` renders the result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from spotter.audit.checks import (
    mia_check,
    near_damage,
    ou_sweep,
    pra_report,
    probe_check,
    train_set,
)
from spotter.audit.context import AuditConfig, Shared
from spotter.data import Splits
from spotter.evaluation.gap import decided_gap
from spotter.evaluation.relearn import (
    finetune_relearn,
    relearn_time,
    statistics_relearn,
)
from spotter.evaluation.relearn_grid import relearn_grid
from spotter.progress import task

log = logging.getLogger("spotter")


def _audit_one(sh: Shared, model: nn.Module) -> dict[str, Any]:
    s, cfg, dev = sh.splits, sh.cfg, sh.device
    seconds: dict[str, float] = {}
    t0 = time.time()
    row, feats, logits = sh.evaluator.measure(model)
    out: dict[str, Any] = {"eval": row}
    feats, logits = ({k: d[k] for k in ("forget", "test_forget", "test_retain")} for d in (feats, logits))
    seconds["eval"] = time.time() - t0
    checks = {
        "near": lambda: near_damage(sh, out["eval"]["per_class_test_acc"]),
        "ou_sweep": lambda: ou_sweep(sh, model),
        "pra": lambda: pra_report(sh, model, feats),
        "finetune": lambda: finetune_relearn(model, s, cfg.finetune, dev),
        "statistics": lambda: statistics_relearn(model, s, cfg.statistics_images, cfg.seed, dev),
        "relearn_grid": lambda: relearn_grid(model, s, cfg.relearn_grid, dev),
        "relearn_time": lambda: relearn_time(
            model, train_set(s), sh.forget_probe, sh.target_loss, cfg.relearn, dev
        ),
        "probe": lambda: probe_check(sh, model, feats),
        "mia": lambda: mia_check(sh, model, logits),
    }
    for name in cfg.checks:
        t0 = time.time()
        try:
            with task(f"audit: {name}"):
                out[name] = checks[name]()
        except ImportError as err:  # scikit-learn missing: skip, say so
            log.warning("audit: %s skipped: %s", name, err)
            out[name] = {"skipped": str(err)}
        seconds[name] = time.time() - t0
    out["seconds"] = seconds
    return out


def _relearning_gaps(results: dict[str, dict[str, Any]], splits: Splits) -> None:
    """Each model's relearning gap against the retrained model, every attacker free to decline an
    attack that lowers overall test accuracy (spotter.evaluation.gap; the retrained model's own gap
    is 0 by construction: the reference row of the verdict; the original's shows the scale)."""
    reference = results.get("retrained", {}).get("relearn_grid")
    if not isinstance(reference, dict) or "skipped" in reference:
        return
    weights = (len(splits.test_forget), len(splits.test_retain))
    for res in results.values():
        grid = res.get("relearn_grid")
        if isinstance(grid, dict) and "skipped" not in grid:
            res["relearn_gap"] = decided_gap(grid, reference, weights)


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
    finetune, statistics, relearn_grid, relearn_time, probe, mia (those in cfg.checks), and relearn_gap (the
    model's relearning grid against the retrained model's) when the grid ran and a retrained model
    was given. No model's weights change (attacks work on copies); the models are moved to `device`
    and put in eval mode.
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
    _relearning_gaps(results, splits)
    grid_notes = [n for r in results.values() for n in (r.get("relearn_grid") or {}).get("notes", [])]
    return {
        "forget_classes": list(splits.forget_classes),
        "num_classes": splits.num_classes,
        # the weights of overall test accuracy (relearning grid, the option to decline)
        "test_sizes": [len(splits.test_forget), len(splits.test_retain)],
        "models": list(models),
        "near_classes": sh.near,
        "config": asdict(cfg),
        "notes": sh.notes + list(dict.fromkeys(grid_notes)),
        "results": results,
        "seconds": time.time() - t0,
        "device": str(device),
    }
