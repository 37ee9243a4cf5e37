"""Render an `audit` result: OUT/audit.json, OUT/audit.md (plain words), OUT/audit.html (the same
report as one self-contained page to forward) and PNG plots.

The report opens with the verdict: for each attack, whether the unlearned model is as safe as the
retrained reference within stated tolerances (`CHECKS`, the `*_TOL` constants). Every number stands
next to the original's and the retrained model's, with what it means and which direction is good;
the report ends with the settings and versions that produced it. Plots need matplotlib (a
dependency); without it they are skipped with a warning.
"""

from __future__ import annotations

import logging
import math
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from spotter.audit.sections import detail_sections, get
from spotter.functional.measures import HIGHER, LOWER, REFERENCE, Measure, measure
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


def _worst_gap(budget: int) -> Callable[[dict], Any]:
    """The relearning grid's worst gap (largest over attackers) at `budget` steps; None when the gap
    was not computed (no retrained model) or `budget` is not among the grid's budgets."""

    def value(res: dict) -> Any:
        gap = res.get("relearn_gap") or {}
        budgets = gap.get("budgets") or []
        return gap["worst"][budgets.index(budget)] if budget in budgets else None

    return value


# Measures only the audit reports: the relearning grid's, read against the retrained model's grid.
# They stand in this module's lookups beside the shared registry (`_measure`).
AUDIT_MEASURES = {
    m.key: m
    for m in (
        Measure("relearn_gap_100", "relearning gap, 100 steps", LOWER, 2, "pts",
                "the largest, over the relearning grid's attackers, of forget test accuracy after 100 "
                "fine-tuning steps minus the retrained model's under the same attacker, each attacker "
                "keeping the model untouched when its attack lowers overall test accuracy (0 = as hard to "
                "relearn as never having learned; the retrained model's own gap is 0)"),
        Measure("relearn_gap_400", "relearning gap, 400 steps", LOWER, 2, "pts",
                "the same after 400 fine-tuning steps"),
        Measure("statistics_forget_acc", "statistics relearning forget acc", LOWER, 2, "%",
                "forget test accuracy after BatchNorm's running statistics are re-estimated on the "
                "largest number of unlabelled retain images (statistics_images), weights untouched"),
        Measure("relearn_time_ratio", "relearn-time ratio", HIGHER, 2, "",
                "steps until an attacker of the relearning grid reaches the target forget accuracy, "
                "divided by the retrained model's steps under the same attacker; the smallest over "
                "attackers (≥ 1 = at least as hard to relearn as retraining)"),
    )
}  # fmt: skip


def _measure(key: str) -> Measure:
    return AUDIT_MEASURES[key] if key in AUDIT_MEASURES else measure(key)


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
    ("statistics_forget_acc", get("statistics", "test_forget_acc", -1)),
    ("relearn_gap_100", _worst_gap(100)),
    ("relearn_gap_400", _worst_gap(400)),
    ("relearn_time_ratio", get("relearn_gap", "time_ratio")),
    ("relearn_draws", get("relearn_time", "draws")),
    ("probe_auroc", get("probe", "auroc")),
    ("mia_efficacy", get("mia", "mia_efficacy")),
    ("mia_member_rate", get("mia", "mia_member_rate")),
    ("entropy_member_rate", get("mia", "entropy_member_rate")),
    ("entropy_auroc", get("mia", "entropy_auroc")),
]
BETTER = {HIGHER: "higher", LOWER: "lower", REFERENCE: "≈ retrained"}

# The registry's explanation where it points at something a reader of the audit does not have
# (another method's logs, a measure key the audit does not print).
MEANINGS = {
    "ou_pgd_away": "the same with PGD stepping away from the runner-up class",
    "pra_l2_forget_acc": "the same attack with a Euclidean (l2) prototype instead of the cosine one, with "
    "K = pra_curve_shots shots (see the settings)",
    "pra_scaled_curve_forget_acc": "a stronger attack: the prototype scaled to the median norm of the head's "
    "retain rows, with their median bias, at the attacker's best α and K = pra_curve_shots shots",
    "relearn_draws": "SGD draws (relearn.draw samples each) until the loss on D_f falls to the original's, "
    "as in SCRUB (Kurmanji et al., 2023); capped at relearn.cap; the original scores 0",
    "mia_efficacy": "share of D_f an SVC attacker (fit on retain training images as members and test "
    "images as non-members, as in SalUn) calls non-member; the retrained model's value is the target, not 100",
    "mia_member_rate": "100 − MIA efficacy: the share of D_f the same attacker calls a member",
    "entropy_member_rate": "share of D_f called member by a logistic regression on the prediction entropy "
    "(as in SCRUB)",
}


def summary(result: dict) -> list[dict[str, Any]]:
    """One row per measure: label, unit, better, meaning and the value for every model."""
    rows = []
    for key, getter in ROWS:
        values = {m: getter(result["results"][m]) for m in result["models"]}
        if all(v is None for v in values.values()):
            continue
        ms = _measure(key)
        better = "-" if key == "pra_alpha" else BETTER[ms.direction]
        rows.append(
            {
                "measure": ms.title,
                "key": key,
                "unit": ms.unit,
                "better": better,
                "meaning": MEANINGS.get(key, ms.meaning),
                **values,
            }
        )
    return rows


def summary_table(result: dict) -> str:
    """The summary as a Markdown table without the explanations (for a terminal)."""
    models = result["models"]
    rows = [
        [r["measure"], *(_measure(r["key"]).fmt(r[m]) for m in models), r["better"]] for r in summary(result)
    ]
    return "\n".join(table_lines(["measure", *models, "better"], rows))


# ---- the verdict: is the unlearned model as safe as the retrained one, attack by attack ----------


@dataclass(frozen=True)
class Tolerance:
    """How far the unlearned model may sit on the unsafe side of the retrained model's value and still
    count as "as safe as retrained": `value` points (or a fraction of the retrained value if relative)."""

    value: float
    relative: bool
    why: str  # one line, printed on the report


# The verdict's tolerances, all in one place. Each `why` is printed on the report as well.
ACCURACY_TOL = Tolerance(
    2.0, False, "an accuracy measured on about a thousand images has a sampling error of up to 1.6 points"
)
ATTACK_TOL = Tolerance(
    5.0,
    False,
    "the relearning attacks draw a handful of forget images and keep their best α or learning rate, "
    "which adds a few points of spread on top of sampling error",
)
OU_TOL = Tolerance(
    0.10, True, "OU@ε is a divergence with no natural unit, so its tolerance scales with the retrained value"
)
MIA_TOL = Tolerance(
    5.0,
    False,
    "the membership attackers are fit on a few hundred shadow images; their rates move by a few points "
    "between fits, and both too many and too few 'non-member' calls give the unlearning away",
)
AUROC_TOL = Tolerance(
    0.05, False, "an AUROC from a few hundred images moves by a few hundredths between samples"
)
GAP_100_TOL = Tolerance(
    10.0,
    False,
    "the relearning grid keeps the worst of dozens of attackers, each fine-tuning on a handful of "
    "images, so two models that forgot equally well still differ by a few points; a gap above 10 "
    "points after 100 steps means the class comes back faster than a model that never learned it "
    "picks it up",
)
GAP_400_TOL = Tolerance(
    20.0,
    False,
    "after 400 steps any model has had time to learn the class from the shots, so the accuracies "
    "spread more; a gap above 20 points still means the class was not truly gone",
)
RELEARN_TOL = Tolerance(
    0.5,
    True,
    "relearn time counts whole SGD draws until a loss threshold is crossed, a coarse step count: at "
    "least half the retrained model's count",
)

SAFE, WEAKER, NOT_MEASURED = "as safe as retrained", "weaker than retrained", "not measured"
UNCERTIFIED = "improved on the original; not certified (no retrained model)"
NO_BETTER = "no better than the original"
NEEDS_RETRAINED = "not certified: the target is the retrained model's value, which was not given"


@dataclass(frozen=True)
class Check:
    """One row of the verdict: an attack or measurement and which side of the retrained model is safe."""

    name: str  # plain words
    short: str  # the name in the headline and the list of tolerances
    key: str  # the registered measure (formatting, unit)
    part: str  # the check of the audit result it comes from ("eval" always runs)
    value: Callable[[dict], Any]
    safe: str  # "lower", "higher" or "match" (as close to the retrained model as the tolerance)
    tol: Tolerance
    # measured against the retrained model itself (a gap): nothing to judge without one
    needs_retrained: bool = False
    no_value: str = ""  # why a model that ran the check can have no value (default: a generic line)

    def tolerance_text(self) -> str:
        t, unit = self.tol, " pts" if _measure(self.key).unit in ("%", "pts") else ""
        if self.safe == "match":
            return f"within ± {t.value:g}{unit} of retrained"
        if t.relative:
            factor = 1 + t.value if self.safe == "lower" else 1 - t.value
            return f"{'≤' if self.safe == 'lower' else '≥'} retrained × {factor:g}"
        if self.safe == "lower":
            return f"≤ retrained + {t.value:g}{unit}"
        return f"≥ retrained − {t.value:g}{unit}"

    def within(self, value: float, reference: float) -> bool:
        """Is `value` as safe as `reference` (on the safe side, or within the tolerance of it)?"""
        t, eps = self.tol, 1e-9
        if self.safe == "match":
            return abs(value - reference) <= t.value + eps
        slack = t.value * abs(reference) if t.relative else t.value
        return value <= reference + slack + eps if self.safe == "lower" else value >= reference - slack - eps

    def improved(self, value: float, original: float) -> bool:
        """Is `value` clearly better than the original's (beyond the tolerance), by this check's direction?"""
        slack = self.tol.value * abs(original) if self.tol.relative else self.tol.value
        return value < original - slack if self.safe == "lower" else value > original + slack


CHECKS: list[Check] = [
    Check("Forget accuracy, training images (D_f)", "forget accuracy (D_f)", "forget_acc", "eval",
          get("eval", "forget_acc"), "lower", ACCURACY_TOL),
    Check("Forget accuracy, test images", "forget accuracy (test)", "test_forget_acc", "eval",
          get("eval", "test_forget_acc"), "lower", ACCURACY_TOL),
    Check("Prototypical relearning attack (PRA): forget test accuracy, strongest variant and K at the "
          "attacker's best α", "PRA", "pra_strongest", "pra", _strongest_pra, "lower", ATTACK_TOL),
    Check("Over-unlearning OU@ε (PGD toward the runner-up class)", "OU@ε", "ou_pgd", "eval",
          get("eval", "ou_pgd"), "lower", OU_TOL),
    Check("Membership inference (SVC attacker): share of D_f called non-member", "MIA (SVC)", "mia_efficacy",
          "mia", get("mia", "mia_efficacy"), "match", MIA_TOL),
    Check("Membership inference (entropy attacker): AUROC of D_f against forget test images",
          "MIA (entropy AUROC)", "entropy_auroc", "mia", get("mia", "entropy_auroc"), "match", AUROC_TOL),
    Check("Few-shot fine-tuning: forget test accuracy after relearning (largest step budget)",
          "few-shot fine-tuning", "finetune_forget_acc", "finetune", get("finetune", "test_forget_acc", -1),
          "lower", ATTACK_TOL),
    Check("BatchNorm statistics re-estimated on unlabelled retain images (no gradient step): forget test "
          "accuracy after the largest number of images", "statistics relearning", "statistics_forget_acc",
          "statistics", get("statistics", "test_forget_acc", -1), "lower", ATTACK_TOL),
    Check("Relearning grid: worst gap over every attacker (forget test accuracy minus the retrained "
          "model's under the same attacker) after 100 fine-tuning steps", "relearning gap (100 steps)",
          "relearn_gap_100", "relearn_grid", _worst_gap(100), "lower", GAP_100_TOL, needs_retrained=True,
          no_value="the relearning grid has no 100-step budget (setting `relearn_grid.budgets`)"),
    Check("Relearning grid: the same after 400 fine-tuning steps", "relearning gap (400 steps)",
          "relearn_gap_400", "relearn_grid", _worst_gap(400), "lower", GAP_400_TOL, needs_retrained=True,
          no_value="the relearning grid has no 400-step budget (setting `relearn_grid.budgets`)"),
    Check("Relearn time: SGD draws until the forget loss is back to the original's", "relearn time",
          "relearn_draws", "relearn_time", get("relearn_time", "draws"), "higher", RELEARN_TOL),
    Check("Linear probe on frozen features: AUROC of forget vs retain", "linear probe", "probe_auroc",
          "probe", get("probe", "auroc"), "lower", AUROC_TOL),
]  # fmt: skip
MODELS = ("unlearned", "retrained", "original")  # the verdict table's value columns


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def _missing(result: dict, check: Check, model: str) -> str:
    """Why `model` has no value for `check`."""
    part = result["results"][model].get(check.part)
    if part is None:
        return f"the {check.part} check was not run (setting `checks`)"
    if isinstance(part, dict) and "skipped" in part:
        return str(part["skipped"])
    if check.value(result["results"][model]) is None:
        return check.no_value or f"the {model} model has no value"
    return f"the {model} model's value is undefined (NaN)"


def _judge(result: dict, check: Check) -> tuple[str, str]:
    """(status, verdict text) of one check; status is safe, weaker, uncertified or unmeasured."""
    res, has_retrained = result["results"], "retrained" in result["models"]
    if check.needs_retrained and not has_retrained and res["unlearned"].get(check.part) is not None:
        return "uncertified", NEEDS_RETRAINED
    u = _number(check.value(res["unlearned"]))
    if u is None:
        return "unmeasured", f"{NOT_MEASURED}: {_missing(result, check, 'unlearned')}"
    if has_retrained:
        r = _number(check.value(res["retrained"]))
        if r is None:
            return "unmeasured", f"{NOT_MEASURED}: {_missing(result, check, 'retrained')}"
        return ("safe", SAFE) if check.within(u, r) else ("weaker", WEAKER)
    o = _number(check.value(res["original"])) if "original" in res else None
    if check.safe == "match" or o is None:
        return "uncertified", NEEDS_RETRAINED
    return ("uncertified", UNCERTIFIED) if check.improved(u, o) else ("weaker", NO_BETTER)


def verdict(result: dict) -> list[dict[str, Any]]:
    """One row per attack or measurement: the three models' values, the tolerance and the verdict."""
    rows = []
    for check in CHECKS:
        status, text = _judge(result, check)
        values = {m: check.value(result["results"][m]) if m in result["results"] else None for m in MODELS}
        rows.append(
            {"check": check.name, "key": check.key, "tolerance": check.tolerance_text(), "status": status,
             "verdict": text, **values}
        )  # fmt: skip
    return rows


def headline(result: dict, rows: list[dict[str, Any]]) -> str:
    """The verdict in one or two sentences."""
    measured = [r for r in rows if r["status"] != "unmeasured"]
    unmeasured = [r for r in rows if r["status"] == "unmeasured"]
    short = {c.name: c.short for c in CHECKS}
    if "retrained" not in result["models"]:
        text = (
            "**No retrained model was given, so this report cannot certify that the unlearned model is as "
            "safe as retrained.** Each check is compared with the original only (improved or not)."
        )
    else:
        safe = [r for r in measured if r["status"] == "safe"]
        weaker = [short[r["check"]] for r in measured if r["status"] == "weaker"]
        text = f"**The unlearned model is as safe as the retrained model on {len(safe)} of {len(measured)} "
        text += f"measured checks; weaker on: {', '.join(weaker)}.**" if weaker else "measured checks.**"
    if unmeasured:
        text += f" Not measured: {', '.join(short[r['check']] for r in unmeasured)}."
    return text


def verdict_lines(result: dict) -> list[str]:
    """The Markdown of the verdict: a headline, the table and the tolerances with their reasons."""
    rows = verdict(result)
    given = set(result["models"])
    table = [[r["check"], *(_measure(r["key"]).fmt(r[m]) if m in given else "not given" for m in MODELS),
              r["tolerance"], r["verdict"]] for r in rows]  # fmt: skip
    return [
        "## Verdict",
        "",
        headline(result, rows),
        "",
        *table_lines(["check", *MODELS, "tolerance", "verdict"], table),
        "",
        "Each row is an attack on the forget classes or a measurement of what the model still knows about "
        "them. The **retrained** model (trained from scratch without the forget classes) is what perfect "
        "unlearning looks like, so the unlearned model is **as safe as retrained** on a row when its value "
        "lies on the safe side of the retrained model's, or within the tolerance of it; the **original** "
        "(before unlearning) is shown for scale. Accuracies are in percent, tolerances in percentage "
        "points (pts) unless marked relative. The tolerances and why they have that size:",
        "",
        *_tolerance_lines(),
    ]


def _tolerance_lines() -> list[str]:
    """One bullet per tolerance: its size, the checks it applies to and why it has that size."""
    lines, seen = [], []
    for check in CHECKS:
        t = check.tol
        if any(t is s for s in seen):
            continue
        seen.append(t)
        users = [c for c in CHECKS if c.tol is t]
        unit = " points" if _measure(check.key).unit in ("%", "pts") else ""
        size = f"{t.value:.0%} of the retrained model's value" if t.relative else f"{t.value:g}{unit}"
        lines.append(f"- **{size}** ({', '.join(c.short for c in users)}): {t.why}.")
    return lines


# ---- settings and versions -------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(result: dict) -> dict[str, str]:
    """What produced the report: package versions, the machine, the date and the audit's run time."""
    import torch

    from spotter import __version__

    spotter = _version("spotter-unlearning")
    return {
        "spotter": __version__ if spotter == "not installed" else spotter,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "scikit-learn": _version("scikit-learn"),
        "matplotlib": _version("matplotlib"),
        "platform": platform.platform(terse=True),
        "device": str(result.get("device", "not recorded in the result")),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "audit seconds": f"{result.get('seconds', float('nan')):.0f}",
    }


def _flat(config: dict, prefix: str = "") -> list[tuple[str, str]]:
    """(KEY, value) pairs as `--audit-set KEY=VALUE` takes them: nested groups as group.key, lists
    comma separated."""
    out = []
    for key, value in config.items():
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{key}.")
            continue
        items = value if isinstance(value, list | tuple) else [value]
        out.append((f"{prefix}{key}", ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in items)))
    return out


def settings_lines(result: dict, env: dict[str, str]) -> list[str]:
    """The Markdown of the versions and the audit settings that produced the report."""
    return [
        "## Settings and versions",
        "",
        *table_lines(["software and machine", "value"], [[k, v] for k, v in env.items()]),
        "",
        "The audit's settings; any of them can be changed with `spotter audit --audit-set KEY=VALUE`.",
        "",
        *table_lines(["setting", "value"], [[k, f"`{v}`"] for k, v in _flat(result.get("config", {}))]),
    ]


# ---- the reports ------------------------------------------------------------------------------------


def markdown(
    result: dict, plots: list[str], sources: dict[str, str] | None = None, env: dict[str, str] | None = None
) -> str:
    """The audit as Markdown: what was audited, the verdict, a summary table, each check in detail,
    the figures, and the settings and versions that produced it."""
    from spotter.audit.plots import CAPTIONS

    models = result["models"]
    names = {m: Path(sources[m]).name for m in models if sources and sources.get(m)}
    lines = [
        "# Unlearning audit",
        "",
        f"This report checks whether an unlearned classifier has forgotten class"
        f"{'es' if len(result['forget_classes']) > 1 else ''} "
        f"{', '.join(map(str, result['forget_classes']))} (of {result['num_classes']} classes) as well as a "
        "model retrained without them. Models: "
        + ", ".join(f"**{m}**" + (f" (`{names[m]}`)" if m in names else "") for m in models)
        + ". D_f stands for the forget classes' training images, D_r for the other classes' training "
        "images.",
        "",
        *verdict_lines(result),
        "",
        "## Summary",
        "",
        "Every measure, read against the two references: the **original** (nothing forgotten) and, when "
        "given, the **retrained** model (trained without the forget classes: what perfect unlearning looks "
        "like). `better` says which direction is good; `≈ retrained` means the retrained model's value is "
        "the target and being far from it in either direction is a sign the class was not truly forgotten "
        "(or was over-erased). Accuracies are in percent.",
        "",
    ]
    header = ["measure", *models, "better", "what it means"]
    lines += table_lines(
        header,
        [
            [r["measure"], *(_measure(r["key"]).fmt(r[m]) for m in models), r["better"], r["meaning"]]
            for r in summary(result)
        ],
    )
    lines += detail_sections(result)
    if plots:
        lines += ["", "## Figures"]
        for i, p in enumerate(plots, 1):
            caption = CAPTIONS.get(Path(p).name, "")
            lines += ["", f"![{Path(p).stem}]({Path(p).name})", "", f"*Figure {i}. {caption}*"]
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    lines += ["", *settings_lines(result, env or environment(result)), ""]
    return "\n".join(lines)


def write_report(result: dict, out: str | Path, sources: dict[str, str] | None = None) -> dict[str, Path]:
    """Write audit.json, audit.md, audit.html (one self-contained page: the figures inline) and the
    plots into `out`; returns the paths written."""
    from spotter.audit.page import html_page
    from spotter.audit.plots import plot_all

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "audit.json", "md": out / "audit.md", "html": out / "audit.html"}
    plots = plot_all(result, out)
    env = environment(result)
    write_json(
        paths["json"],
        {**result, "verdict": verdict(result), "summary": summary(result), "environment": env,
         "sources": sources or {}},
    )  # fmt: skip
    text = markdown(result, [str(p) for p in plots], sources, env)
    atomic_write(paths["md"], lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    page = html_page(text, plots)
    atomic_write(paths["html"], lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    paths.update({p.stem: p for p in plots})
    return paths
