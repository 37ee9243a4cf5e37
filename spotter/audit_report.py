"""Render an `audit` result: OUT/audit.json, OUT/audit.md (plain words) and PNG plots.

Every number in audit.md stands next to the original's and the retrained model's, with what it
means and which direction is good. Plots need matplotlib (`pip install 'spotter-unlearning[plots]'`);
without it they are skipped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spotter.audit_sections import detail_sections, fmt, get, table
from spotter.checkpoint import atomic_write
from spotter.pipeline import write_json

log = logging.getLogger("spotter")

LOWER, HIGHER, REFERENCE = "lower", "higher", "≈ retrained"


def _pra_at_curve(variant: str) -> Callable[[dict], Any]:
    """A variant's forget test accuracy at the attacker's best α, for the K of the α curve."""

    def value(res: dict) -> Any:
        pra = res.get("pra") or {}
        if variant not in pra.get("variants", {}) or pra.get("curve_shots") not in pra.get("shots", []):
            return None
        return pra["variants"][variant]["forget_acc"][pra["shots"].index(pra["curve_shots"])]

    return value


def _strongest_pra(res: dict) -> float | None:
    variants = (res.get("pra") or {}).get("variants") or {}
    values = [v for d in variants.values() for v in d["forget_acc"]]
    return max(values) if values else None


# (label, getter, better, unit, meaning)
ROWS: list[tuple[str, Callable[[dict], Any], str, str, str]] = [
    ("test forget acc", get("eval", "test_forget_acc"), LOWER, "%", "forget-class test images classified correctly"),
    ("train forget acc", get("eval", "forget_acc"), LOWER, "%", "forget-class training images (D_f) classified correctly"),
    ("test retain acc", get("eval", "test_retain_acc"), HIGHER, "%", "test images of the other classes classified correctly"),
    ("train retain acc", get("eval", "retain_acc"), HIGHER, "%", "training images of the other classes (D_r)"),
    ("near-class Δacc", get("near", "mean_delta"), HIGHER, "pts", "test accuracy change vs the original on the retain classes the original confuses the forget class with most (0 = untouched)"),
    ("other-class Δacc", get("near", "other_mean_delta"), HIGHER, "pts", "the same change on the remaining retain classes"),
    ("OU@ε PGD toward", get("eval", "ou_pgd"), LOWER, "", "JS divergence from the masked original on PGD neighbours of D_f stepped toward the runner-up class (ε = eval.eps, default 0.03)"),
    ("OU@ε PGD away", get("eval", "ou_pgd_away"), LOWER, "", "the same, PGD stepping away from the runner-up (the authors' code)"),
    ("OU@ε Gaussian", get("eval", "ou_gaussian"), LOWER, "", "the same on Gaussian neighbours (σ = eval.sigma, default 0.01)"),
    ("OU@ε PGD, largest ε", get("ou_sweep", "pgd", -1), LOWER, "", "OU@ε of PGD toward at the largest ε of the sweep"),
    ("PRA forget acc (cosine)", get("eval", "pra_forget_acc"), LOWER, "%", "forget test accuracy after the prototype attack (method.md §4) with the split's K shots (--shots, default 5), at the attacker's best α"),
    ("PRA best α", get("eval", "pra_alpha"), None, "", "the α that maximised overall test accuracy (the attacker's choice)"),
    ("PRA forget acc (l2)", _pra_at_curve("l2"), LOWER, "%", "the l2 prototype row, at the K of the α curve (pra_curve_shots, default 5)"),
    ("PRA forget acc (scaled)", _pra_at_curve("scaled"), LOWER, "%", "our stronger row: the prototype scaled to the head's median retain-row norm, with the median retain bias (same K)"),
    ("PRA strongest", _strongest_pra, LOWER, "%", "the highest forget test accuracy of any PRA variant and any K"),
    ("dispersion", get("eval", "dispersion"), LOWER, "", "mean pairwise cosine similarity of forget-class test features (low = no usable prototype)"),
    ("few-shot FT forget acc", get("finetune", "test_forget_acc", -1), LOWER, "%", "forget test accuracy after fine-tuning on K forget + K retain images for the largest step budget, at the attacker's best lr (highest overall test accuracy)"),
    ("relearn time", get("relearn_time", "draws"), HIGHER, "draws", "SGD draws (relearn.draw samples each, lr 0.1) until the D_f loss falls to the original's (SCRUB; capped at relearn.cap; the original scores 0)"),
    ("linear probe AUROC", get("probe", "auroc"), LOWER, "", "forget-vs-rest logistic regression on frozen features, scored on test images (0.5 = no forget-class information; the retrained model shows what a model that never saw D_f keeps)"),
    ("MIA efficacy", get("mia", "mia_efficacy"), REFERENCE, "%", "SalUn/Sparse: share of D_f the SVC attacker calls NON-member (higher = better forgetting; retrained is the target, not 100)"),
    ("MIA member rate", get("mia", "mia_member_rate"), REFERENCE, "%", "100 − MIA efficacy: share called member (what DELETE logs)"),
    ("entropy-MIA member rate", get("mia", "entropy_member_rate"), REFERENCE, "%", "SCRUB's entropy logistic regression: share of D_f called member"),
    ("entropy-MIA AUROC", get("mia", "entropy_auroc"), REFERENCE, "", "the same attacker telling D_f from forget-class test images (0.5 = indistinguishable)"),
]  # fmt: skip


def summary(result: dict) -> list[dict[str, Any]]:
    """One row per measure: label, unit, better, meaning and the value for every model."""
    rows = []
    for label, getter, better, unit, meaning in ROWS:
        values = {m: getter(result["results"][m]) for m in result["models"]}
        if all(v is None for v in values.values()):
            continue
        rows.append({"measure": label, "unit": unit, "better": better or "-", "meaning": meaning, **values})
    return rows


def summary_table(result: dict) -> str:
    """The summary as a Markdown table without the explanations (for a terminal)."""
    models = result["models"]
    rows = [[r["measure"], *(fmt(r[m], r["unit"]) for m in models), r["better"]] for r in summary(result)]
    return "\n".join(table(["measure", *models, "better"], rows))


def markdown(result: dict, plots: list[str], sources: dict[str, str] | None = None) -> str:
    """The audit as Markdown: a summary table, then each check in detail."""
    models = result["models"]
    lines = [
        "# Unlearning audit",
        "",
        f"Forget classes {result['forget_classes']} of {result['num_classes']}. Models: "
        + ", ".join(f"**{m}**" + (f" (`{sources[m]}`)" if sources and m in sources else "") for m in models)
        + ".",
        "",
        "Read each row against the two references: the **original** (nothing forgotten) and, when given, "
        "the **retrained** model (trained without the forget classes: what perfect unlearning looks like). "
        "`better` says which direction is good; `≈ retrained` means the retrained model's value is the "
        "target and being far from it in either direction is a sign the class was not truly forgotten "
        "(or was over-erased). Accuracies are in percent.",
        "",
        "## Summary",
        "",
    ]
    header = ["measure", *models, "better", "what it means"]
    lines += table(
        header,
        [
            [r["measure"], *(fmt(r[m], r["unit"]) for m in models), r["better"], r["meaning"]]
            for r in summary(result)
        ],
    )
    lines += detail_sections(result)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    lines += [
        "",
        f"Audit took {result.get('seconds', float('nan')):.0f}s. Settings: see audit.json (`config`).",
        "",
    ]
    return "\n".join(lines)


def write_report(result: dict, out: str | Path, sources: dict[str, str] | None = None) -> dict[str, Path]:
    """Write audit.json, audit.md and the plots into `out`; returns the paths written."""
    from spotter.audit_plots import plot_all

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "audit.json", "md": out / "audit.md"}
    plots = plot_all(result, out)
    write_json(paths["json"], {**result, "summary": summary(result), "sources": sources or {}})
    text = markdown(result, [str(p) for p in plots], sources)
    atomic_write(paths["md"], lambda tmp: Path(tmp).write_text(text))
    paths.update({p.stem: p for p in plots})
    return paths
