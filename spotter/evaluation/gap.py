"""The relearning gap as an attacker decides it: attack, or keep the model as it is.

The relearning grid (spotter.evaluation.relearn_grid) records, per attacker and step, the best of
the attacker's learning rates by overall test accuracy. Every rate of the grid can leave a model
worse than it was: a few full-batch steps on ten images may make a model call most retain images
the forget class, so forget accuracy reads 95-98% while retain accuracy falls from 95 to 41-60%
(Fashion-MNIST, benchmarks/README.md, "The attacker may decline"). That is a collapse, not
relearning, and a model retrained without the class "relearns" the same way (97.7% forget, 47.2%
retain). Picking the better of two collapsed runs still counts one of them.

An attacker who judges by overall test accuracy (the rule of the grid's learning rates and of
PRA's α) would keep the model untouched instead. `declined` gives every attacker that option at
every recorded step: the attacked model is kept only when its overall accuracy is at least the
untouched model's (step 0); otherwise the step reports the untouched model's accuracies and lr 0.
The same rule applies to the retrained reference, so the gap compares like with like.
`decided_gap` is the gap on both grids so decided (docs/method.md, "The relearning grid"), with the
gap of the grid's own rule beside it (`raw_worst`).

The rule reads only what a grid records (the kept run's accuracies and the untouched model's at
step 0), so it applies to committed benchmark rows without running anything again.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from spotter.evaluation.relearn_grid import relearn_steps, relearning_gap


def balanced_weights(num_classes: int, forget_classes: Sequence[int]) -> tuple[int, int]:
    """(forget, retain) weights of overall accuracy for a test set with as many images per class."""
    k = len(set(forget_classes))
    if not 0 < k < num_classes:
        raise ValueError(f"need 0 < forget classes < num_classes, got {k} of {num_classes}")
    return k, num_classes - k


def declined(grid: dict[str, Any], weights: tuple[float, float]) -> dict[str, Any]:
    """A copy of a relearning grid's result where each attacker keeps, at each step, the untouched
    model whenever its attacked model has a lower overall test accuracy; `weights` = (forget,
    retain) test-set sizes (or proportions). Relearn steps are recounted; `declined` marks, per
    attacker, the steps where the attack was declined."""
    n_f, n_r = weights
    if n_f <= 0 or n_r <= 0:
        raise ValueError(f"weights must be positive (forget, retain) sizes, got {weights}")
    out = copy.deepcopy(grid)
    for a in out["attackers"]:
        forget, retain, lrs = a["test_forget_acc"], a.get("test_retain_acc"), a.get("lr")
        if retain is None:
            raise ValueError(f"attacker {a.get('name')!r} has no test_retain_acc: cannot weigh the attack")
        untouched = (forget[0] * n_f + retain[0] * n_r) / (n_f + n_r)
        marks = []
        for i in range(1, len(forget)):
            attacked = (forget[i] * n_f + retain[i] * n_r) / (n_f + n_r)
            if not attacked >= untouched:  # NaN (diverged) is declined too
                forget[i], retain[i] = forget[0], retain[0]
                if lrs is not None:
                    lrs[i] = 0.0
                marks.append(out["steps"][i])
        a["declined"] = marks
        a["relearn_steps"] = relearn_steps(out["steps"], forget, out["target"])
        a["relearned"] = a["relearn_steps"] <= out["steps"][-1]
    return out


def decided_gap(
    unlearned: dict[str, Any], retrained: dict[str, Any], weights: tuple[float, float]
) -> dict[str, Any]:
    """relearning_gap on both grids after `declined`, plus `raw_worst` / `raw_worst_attacker`: the
    worst gap per budget by the grid's own rule (best learning rate, no option to decline)."""
    raw = relearning_gap(unlearned, retrained)
    gap = relearning_gap(declined(unlearned, weights), declined(retrained, weights))
    gap["raw_worst"], gap["raw_worst_attacker"] = raw["worst"], raw["worst_attacker"]
    return gap
