"""Render an `audit` result: OUT/audit.json, OUT/audit.md (plain words) and PNG plots.

Every number in audit.md stands next to the original's and the retrained model's, with what it
means and which direction is good. Plots need matplotlib (a dependency);
without it they are skipped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spotter.audit.sections import detail_sections, get
from spotter.functional.measures import HIGHER, LOWER, REFERENCE, measure
from spotter.io import atomic_write, write_json
from spotter.report.markdown import table_lines

log = logging.getLogger("spotter")


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


# (registered measure, where it lives in one model's audit result)
ROWS: list[tuple[str, Callable[[dict], Any]]] = [
    ("test_forget_acc", get("eval", "test_forget_acc")),
    ("forget_acc", get("eval", "forget_acc")),
    ("test_retain_acc", get("eval", "test_retain_acc")),
    ("retain_acc", get("eval", "retain_acc")),
    ("near_mean_delta", get("near", "mean_delta")),
    ("near_other_mean_delta", get("near", "other_mean_delta")),
    ("ou_pgd", get("eval", "ou_pgd")),
    ("ou_pgd_away", get("eval", "ou_pgd_away")),
    ("ou_gaussian", get("eval", "ou_gaussian")),
    ("ou_pgd_largest_eps", get("ou_sweep", "pgd", -1)),
    ("pra_forget_acc", get("eval", "pra_forget_acc")),
    ("pra_alpha", get("eval", "pra_alpha")),
    ("pra_l2_forget_acc", _pra_at_curve("l2")),
    ("pra_scaled_curve_forget_acc", _pra_at_curve("scaled")),
    ("pra_strongest", _strongest_pra),
    ("dispersion", get("eval", "dispersion")),
    ("finetune_forget_acc", get("finetune", "test_forget_acc", -1)),
    ("relearn_draws", get("relearn_time", "draws")),
    ("probe_auroc", get("probe", "auroc")),
    ("mia_efficacy", get("mia", "mia_efficacy")),
    ("mia_member_rate", get("mia", "mia_member_rate")),
    ("entropy_member_rate", get("mia", "entropy_member_rate")),
    ("entropy_auroc", get("mia", "entropy_auroc")),
]
BETTER = {HIGHER: "higher", LOWER: "lower", REFERENCE: "≈ retrained"}


def summary(result: dict) -> list[dict[str, Any]]:
    """One row per measure: label, unit, better, meaning and the value for every model."""
    rows = []
    for key, getter in ROWS:
        values = {m: getter(result["results"][m]) for m in result["models"]}
        if all(v is None for v in values.values()):
            continue
        ms = measure(key)
        better = "-" if key == "pra_alpha" else BETTER[ms.direction]
        rows.append(
            {
                "measure": ms.title,
                "key": key,
                "unit": ms.unit,
                "better": better,
                "meaning": ms.meaning,
                **values,
            }
        )
    return rows


def summary_table(result: dict) -> str:
    """The summary as a Markdown table without the explanations (for a terminal)."""
    models = result["models"]
    rows = [
        [r["measure"], *(measure(r["key"]).fmt(r[m]) for m in models), r["better"]] for r in summary(result)
    ]
    return "\n".join(table_lines(["measure", *models, "better"], rows))


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
    lines += table_lines(
        header,
        [
            [r["measure"], *(measure(r["key"]).fmt(r[m]) for m in models), r["better"], r["meaning"]]
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
    from spotter.audit.plots import plot_all

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "audit.json", "md": out / "audit.md"}
    plots = plot_all(result, out)
    write_json(paths["json"], {**result, "summary": summary(result), "sources": sources or {}})
    text = markdown(result, [str(p) for p in plots], sources)
    atomic_write(paths["md"], lambda tmp: Path(tmp).write_text(text))
    paths.update({p.stem: p for p in plots})
    return paths
