"""A small grid search for a method's learning rate (and, where it matters, epochs) on the
validation split, scored by closeness to the retrained model (docs/users.md #2: untuned baselines are
the first complaint about other projects).

    score = |forget acc − retrained's forget acc| + |retain acc − original's retain acc|   (lower is better)

Accuracies are measured on the validation split carved from train (`splits.val_forget`,
`splits.val_retain`), never on test. The grid is the method module's `TUNE` dict (each method's
own lr range, plus epochs or its other decisive knob), or an explicit `grid`; trials run in grid
order and ties go to the earlier one, so a tune is deterministic under the config's seed.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from spotter import methods
from spotter.config import apply_overrides, parse_overrides
from spotter.data import Splits
from spotter.training.inference import evaluate_accuracy

log = logging.getLogger("spotter")

LR_STEPS = (0.1, 0.3, 1.0, 3.0, 10.0)  # fallback grid around a default lr


@dataclass
class TuneResult:
    method: str
    best: dict[str, Any]  # the winning overrides
    config: Any  # the method Config with them applied
    reference: dict[str, float]  # retrained forget acc, original retain acc (validation)
    trials: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "best": self.best,
            "config": dataclasses.asdict(self.config),
            "reference": self.reference,
            "trials": self.trials,
        }


def default_grid(name: str, cfg: Any = None) -> dict[str, list]:
    """The method's TUNE grid, else lr × (0.1, 0.3, 1, 3, 10) around its default lr."""
    module = methods.get(name)
    grid = getattr(module, "TUNE", None)
    if grid is not None:
        return {k: list(v) for k, v in grid.items()}
    cfg = cfg if cfg is not None else module.Config()
    if not hasattr(cfg, "lr"):
        return {}
    return {"lr": [float(f"{cfg.lr * s:.3g}") for s in LR_STEPS]}


def parse_grid(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, list]:
    """['lr=1e-3,1e-2', 'epochs=5,10'] -> {'lr': ['1e-3', '1e-2'], 'epochs': ['5', '10']}."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return {k: list(v) if isinstance(v, list | tuple) else [v] for k, v in items.items()}
    return {
        k: [v.strip() for v in vals.split(",") if v.strip()] for k, vals in parse_overrides(items).items()
    }


def grid_points(base: Any, grid: Mapping[str, list]) -> list[tuple[dict[str, Any], Any]]:
    """Every (point, config) of the grid, all checked before any trial runs (a bad value fails at once)."""
    keys = list(grid)
    points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())] or [{}]
    return [(point, methods.check_config(apply_overrides(base, point))) for point in points]


def score(forget_acc: float, retain_acc: float, reference: Mapping[str, float]) -> float:
    """|forget − retrained's forget| + |retain − original's retain| (lower is better)."""
    return abs(forget_acc - reference["forget_acc"]) + abs(retain_acc - reference["retain_acc"])


def tune(
    name: str,
    original: nn.Module,
    retrained: nn.Module,
    splits: Splits,
    cfg: Any = None,
    grid: Mapping[str, list] | None = None,
    protocol: str = "full",
) -> TuneResult:
    """Run `name` on every grid point and keep the one closest to the retrained model on validation."""
    val_forget, val_retain = splits.val_forget, splits.val_retain
    if len(val_forget) == 0 or len(val_retain) == 0:
        raise ValueError("tuning needs validation samples of forget and retain classes; raise --val-size")
    base = cfg if cfg is not None else methods.make_config(name)
    grid = dict(grid) if grid else default_grid(name, base)
    configs = grid_points(base, grid)
    reference = {
        "forget_acc": evaluate_accuracy(retrained, val_forget),
        "retain_acc": evaluate_accuracy(original, val_retain),
    }
    keys = list(grid)
    log.info("tune %s: %d trials over %s", name, len(configs), ", ".join(keys) or "(defaults only)")
    trials, best, best_cfg = [], None, None
    for point, trial_cfg in configs:
        t0 = time.time()
        model = methods.run(name, original, splits, trial_cfg, protocol=protocol)
        row = {
            **point,
            "forget_acc": evaluate_accuracy(model, val_forget),
            "retain_acc": evaluate_accuracy(model, val_retain),
            "time_s": time.time() - t0,
        }
        row["score"] = score(row["forget_acc"], row["retain_acc"], reference)
        trials.append(row)
        log.info(
            "tune %s %s: forget %.2f, retain %.2f, score %.2f",
            name,
            point,
            row["forget_acc"],
            row["retain_acc"],
            row["score"],
        )
        if best is None or row["score"] < best["score"]:
            best, best_cfg = row, trial_cfg
    assert best is not None
    chosen = {k: getattr(best_cfg, k) for k in keys}
    return TuneResult(name, chosen, best_cfg, reference, trials)
