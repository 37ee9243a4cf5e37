"""The registry of measures: one entry per reported number (key, title, direction, decimals, unit,
meaning). The evaluator, the demo's table, `spotter report`, `spotter audit` and the README's
"What the numbers mean" table (checked by a test) all read it, so adding a measure is one edit.

Direction: +1 higher is better, -1 lower is better, 0 neither (read it against the retrained model).
Keys are those of the Evaluator's row (`spotter.evaluation.evaluator`) and of the audit's checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

HIGHER, LOWER, REFERENCE = 1, -1, 0


@dataclass(frozen=True)
class Measure:
    key: str
    title: str
    direction: int  # HIGHER, LOWER or REFERENCE
    decimals: int
    unit: str  # "%", "pts" (percentage points), "s", "draws" or "" (a fraction or score)
    meaning: str
    latex: str = ""  # the title in a LaTeX table, when it differs

    def fmt(self, value: Any) -> str:
        """The value as the tables print it ("-" when missing)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, int | float):
            return f"{value:.{self.decimals}f}"
        return str(value)

    @property
    def arrow(self) -> str:
        return {HIGHER: "↑", LOWER: "↓"}.get(self.direction, "")


_ALL = (
    # accuracies of the Evaluator's row
    Measure("forget_acc", "forget", LOWER, 2, "%", "accuracy on the forget class's training images (D_f)"),
    Measure("retain_acc", "retain", HIGHER, 2, "%", "accuracy on the retained classes' training images (D_r)"),
    Measure("test_forget_acc", "test forget", LOWER, 2, "%", "accuracy on the forget class's test images"),
    Measure("test_retain_acc", "test retain", HIGHER, 2, "%", "accuracy on the retained classes' test images"),
    Measure("test_acc", "test", REFERENCE, 2, "%", "accuracy on every test image"),
    # over-unlearning (docs/method.md §3)
    Measure(
        "ou_pgd", "OU@ε pgd", LOWER, 4, "",
        "OU@ε: mean Jensen-Shannon divergence between the original's masked prediction (forget columns "
        "removed, renormalised) and the model's, on PGD neighbours of the forget images stepped toward the "
        "runner-up class (ε 0.03, 3 steps of 0.01), built once from the original with an evaluation seed",
        r"OU@$\epsilon$",
    ),
    Measure("ou_pgd_away", "OU@ε away", LOWER, 4, "",
            "the same with PGD stepping away from the runner-up (the authors' released code)"),
    Measure("ou_gaussian", "OU@ε gauss", LOWER, 4, "", "the same on Gaussian neighbours x + N(0, 0.01²)",
            r"OU@$\sigma$"),
    # prototypical relearning attack (docs/method.md §4)
    Measure(
        "pra_forget_acc", "PRA forget", LOWER, 2, "%",
        "PRA: forget test accuracy after writing the cosine prototype of K = 5 forget shots into the forget "
        "row, at the attacker's best α (the α that maximises accuracy over all test classes)", "PRA",
    ),
    Measure("pra_alpha", "PRA α", REFERENCE, 1, "", "the attacker's best α"),
    Measure("pra_train_forget_acc", "PRA train forget", LOWER, 2, "%", "the same attack read on D_f"),
    Measure("pra_retain_acc", "PRA retain", HIGHER, 2, "%", "retained-class test accuracy after the attack"),
    Measure("pra_alpha1_forget_acc", "PRA α=1", LOWER, 2, "%", "PRA forget test accuracy at α = 1"),
    Measure(
        "pra_scaled_forget_acc", "PRA scaled", LOWER, 2, "%",
        "our stronger PRA row: the prototype scaled to the head's median retain-row norm, with the median "
        "retain bias, at the attacker's best α",
    ),
    Measure("dispersion", "dispersion", LOWER, 4, "",
            "mean pairwise cosine similarity of forget-class test features: low means no usable prototype"),
    Measure("time_s", "time s", REFERENCE, 1, "s",
            "training time (original, retrained) or unlearning time (methods), seconds", "time (s)"),
    # membership inference (SalUn's SVC attacker; docs/baselines.md §4.17)
    Measure("mia_efficacy", "MIA efficacy", REFERENCE, 2, "%",
            "share of D_f the SVC attacker calls non-member; the retrained model is the target, not 100"),
    # the audit's checks (spotter.audit)
    Measure("near_mean_delta", "near-class Δacc", HIGHER, 2, "pts",
            "test accuracy change vs the original on the retain classes the original confuses the forget "
            "class with most (0 = untouched)"),
    Measure("near_other_mean_delta", "other-class Δacc", HIGHER, 2, "pts",
            "the same change on the remaining retain classes"),
    Measure("ou_pgd_largest_eps", "OU@ε PGD, largest ε", LOWER, 4, "",
            "OU@ε of PGD toward the runner-up at the largest ε of the sweep"),
    Measure("pra_l2_forget_acc", "PRA forget (l2)", LOWER, 2, "%",
            "the l2 prototype row, at the K of the α curve (pra_curve_shots, default 5)"),
    Measure("pra_scaled_curve_forget_acc", "PRA forget (scaled)", LOWER, 2, "%",
            "our stronger scaled row (see pra_scaled_forget_acc), at the K of the α curve"),
    Measure("pra_strongest", "PRA strongest", LOWER, 2, "%",
            "the highest forget test accuracy of any PRA variant and any K"),
    Measure("finetune_forget_acc", "few-shot FT forget acc", LOWER, 2, "%",
            "forget test accuracy after fine-tuning on K forget + K retain images for the largest step budget, "
            "at the attacker's best lr (highest overall test accuracy)"),
    Measure("relearn_draws", "relearn time", HIGHER, 0, "draws",
            "SGD draws (relearn.draw samples each, lr 0.1) until the D_f loss falls to the original's (SCRUB; "
            "capped at relearn.cap; the original scores 0)"),
    Measure("probe_auroc", "linear probe AUROC", LOWER, 4, "",
            "forget-vs-rest logistic regression on frozen features, scored on test images (0.5 = no "
            "forget-class information; the retrained model shows what a model that never saw D_f keeps)"),
    Measure("mia_member_rate", "MIA member rate", REFERENCE, 2, "%",
            "100 − MIA efficacy: share of D_f called member (what DELETE logs)"),
    Measure("entropy_member_rate", "entropy-MIA member rate", REFERENCE, 2, "%",
            "SCRUB's entropy logistic regression: share of D_f called member"),
    Measure("entropy_auroc", "entropy-MIA AUROC", REFERENCE, 4, "",
            "the same attacker telling D_f from forget-class test images (0.5 = indistinguishable)"),
)  # fmt: skip

MEASURES: dict[str, Measure] = {m.key: m for m in _ALL}


def measure(key: str) -> Measure:
    """The registered measure `key` (a clear error naming the valid keys otherwise)."""
    if key not in MEASURES:
        raise KeyError(f"unknown measure {key!r}; valid keys: {', '.join(MEASURES)}")
    return MEASURES[key]


def direction(key: str) -> int:
    """+1 higher is better, -1 lower is better, 0 neither (unregistered keys: 0)."""
    m = MEASURES.get(key)
    return m.direction if m else REFERENCE
