"""The detailed sections of audit.md (one small function per check) and the formatting helpers."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from spotter.report.markdown import table_lines


def get(*path: str | int) -> Callable[[dict], Any]:
    """A getter for a nested key path in one model's results; None where it is missing."""

    def getter(res: dict) -> Any:
        for key in path:
            if isinstance(res, dict) and key in res:
                res = res[key]
            elif isinstance(res, list) and isinstance(key, int) and -len(res) <= key < len(res):
                res = res[key]
            else:
                return None
        return res

    return getter


def fmt(value: Any, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if unit in ("%", "pts"):
            return f"{value:.2f}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _ran(result: dict, key: str) -> dict[str, dict | None]:
    """{model: that check's result, or None where it did not run or was skipped}."""
    out = {}
    for m in result["models"]:
        part = result["results"][m].get(key)
        out[m] = part if isinstance(part, dict) and "skipped" not in part else None
    return out


def _per_class(result: dict) -> list[str]:
    models, forget = result["models"], set(result["forget_classes"])
    accs = {m: result["results"][m]["eval"]["per_class_test_acc"] for m in models}
    rows = [
        [f"{c} (forget)" if c in forget else str(c), *(fmt(accs[m][c], "%") for m in models)]
        for c in range(result["num_classes"])
    ]
    return ["", "## Test accuracy per class (%)", "", *table_lines(["class", *models], rows)]


def _near(result: dict) -> list[str]:
    models, near = result["models"], _ran(result, "near")
    if not any(near.values()):
        return []
    rows = []
    for i, r in enumerate(result["near_classes"]):
        cells = [
            f"{near[m]['classes'][i]['acc']:.2f} ({near[m]['classes'][i]['delta']:+.2f})" if near[m] else "-"
            for m in models
        ]
        rows.append([str(r["class"]), f"{r['confusion_share']:.1f}% / {r['runner_up_share']:.1f}%", *cells])
    return [
        "",
        "## Damage near the forget class",
        "",
        "Retain classes the original confuses the forget class with most (share of forget test images "
        "it predicts as them / share whose strongest retain class they are); test accuracy per model "
        "and, in brackets, its change against the original (higher is better, 0 = untouched).",
        "",
        *table_lines(["class", "confused / runner-up", *models], rows),
    ]


def _ou_sweep(result: dict) -> list[str]:
    models, sweep = result["models"], _ran(result, "ou_sweep")
    if not any(sweep.values()):
        return []
    eps = next(v for v in sweep.values() if v)["eps"]
    rows = [
        [kind, f"{e:g}", *(fmt(sweep[m][kind][i]) if sweep[m] else "-" for m in models)]
        for kind in ("pgd", "pgd_away", "gaussian")
        for i, e in enumerate(eps)
    ]
    return [
        "",
        "## OU@ε over ε (lower is better)",
        "",
        "PGD: 3 steps of ε/3 from a random start in the ε-ball; Gaussian: σ = ε. The neighbourhoods "
        "are built once from the original and shared by all models.",
        "",
        *table_lines(["neighbours", "ε", *models], rows),
    ]


def _pra_cell(pra: dict | None, variant: str, i: int) -> str:
    if not pra or variant not in pra["variants"]:
        return "-"
    d = pra["variants"][variant]
    return f"{d['forget_acc'][i]:.2f} (α {d['alpha'][i]:.1f})"


def _pra(result: dict) -> list[str]:
    models, pra = result["models"], _ran(result, "pra")
    if not any(pra.values()):
        return []
    first = next(p for p in pra.values() if p)
    rows = [
        [v, str(k), *(_pra_cell(pra[m], v, i) for m in models)]
        for v in first["variants"]
        for i, k in enumerate(first["shots"])
    ]
    return [
        "",
        "## Prototypical relearning attack (lower forget accuracy is better)",
        "",
        "Forget test accuracy at the attacker's best α (the α with the highest overall test accuracy, "
        "ties to the larger α), and that α, for each prototype variant and number of shots K.",
        "",
        *table_lines(["variant", "K", *models], rows),
    ]


def _finetune(result: dict) -> list[str]:
    models, ft = result["models"], _ran(result, "finetune")
    if not any(ft.values()):
        return []
    steps = next(f for f in ft.values() if f)["steps"]

    def cell(m: str, i: int) -> str:
        if not ft[m]:
            return "-"
        lr = ft[m].get("lr", [0.0] * len(steps))[i]
        return f"{ft[m]['test_forget_acc'][i]:.2f} / {ft[m]['test_retain_acc'][i]:.2f}" + (
            f" (lr {lr:g})" if i else ""
        )

    rows = [[str(s), *(cell(m, i) for m in models)] for i, s in enumerate(steps)]
    return [
        "",
        "## Few-shot fine-tuning (lower forget accuracy is better)",
        "",
        "Forget test accuracy / retain test accuracy after each budget of full-batch SGD steps on K "
        "forget shots plus as many retain images.",
        "",
        *table_lines(["steps", *models], rows),
    ]


def _statistics(result: dict) -> list[str]:
    models, st = result["models"], _ran(result, "statistics")
    if not any(st.values()):
        return []
    images = next(s for s in st.values() if s)["images"]

    def cell(m: str, i: int) -> str:
        part = st[m]
        return "-" if not part else f"{part['test_forget_acc'][i]:.2f} / {part['test_retain_acc'][i]:.2f}"

    rows = [[str(n) if n else "0 (as given)", *(cell(m, i) for m in models)] for i, n in enumerate(images)]
    return [
        "",
        "## BatchNorm statistics relearning (lower forget accuracy is better)",
        "",
        "Forget test accuracy / retain test accuracy after BatchNorm's running statistics are "
        "re-estimated on that many unlabelled retain training images, weights untouched. A model "
        "whose forgetting lives in statistics its weights no longer produce gets the class back; the "
        "original and the retrained model barely move.",
        "",
        *table_lines(["retain images", *models], rows),
    ]


def _one(value: Any, sign: str = "") -> str:
    """A percentage with one decimal ("-" when missing or NaN); sign="+" prints the sign."""
    ok = isinstance(value, int | float) and not math.isnan(value)
    return f"{value:{sign}.1f}" if ok else "-"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _steps_cell(n: int, grid: dict) -> str:
    return f"> {grid['cap']}" if n > grid["cap"] else str(n)


def _grid_rows(result: dict, grid: dict, gap: dict | None) -> list[list[str]]:
    """One row per attacker: per budget unlearned / retrained forget accuracy (gap), relearn steps."""
    by_name = {row["name"]: row for row in gap["attackers"]} if gap else {}
    at = [grid["steps"].index(b) for b in grid["budgets"]]
    rows = []
    for a in grid["attackers"]:
        g = by_name.get(a["name"])
        if g:
            cells = [
                f"{_one(u)} / {_one(r)} ({_one(d, '+')})"
                for u, r, d in zip(g["unlearned"], g["retrained"], g["gap"], strict=True)
            ]
            n_u, n_r = g["relearn_steps"]
            steps = f"{_steps_cell(n_u, grid)} / {_steps_cell(n_r, grid)}"
            ratio = _ratio(g["time_ratio"])
        else:
            cells = [f"{_one(a['test_forget_acc'][i])} / -" for i in at]
            steps, ratio = f"{_steps_cell(a['relearn_steps'], grid)} / -", "-"
        rows.append([a["name"], *cells, steps, ratio])
    return rows


def _relearn_grid(result: dict) -> list[str]:
    grid = _ran(result, "relearn_grid").get("unlearned")
    if not grid:
        return []
    gaps = {m: result["results"][m].get("relearn_gap") for m in result["models"]}
    gap = gaps.get("unlearned")
    header = [
        "attacker",
        *(f"{b} steps" for b in grid["budgets"]),
        f"steps to {grid['target']:g}%",
        "time ratio",
    ]
    lines = [
        "",
        "## Relearning grid (a gap near 0 or below is best)",
        "",
        "Each attacker fine-tunes a copy of the model on K forget images per forget class (`mixed`: plus "
        "as many retain images; `forget`: those alone), with SGD (momentum 0.9) or Adam, training every "
        "weight (`whole`), the final linear layer (`head`) or that layer re-initialised (`head_reinit`), "
        "with BatchNorm statistics frozen (`bn-eval`) or taken from the attack batch (`bn-train`). Per "
        "step budget it keeps the learning rate whose attacked model has the highest overall test "
        "accuracy, and keeps the model untouched when no rate reaches the untouched model's overall "
        "accuracy (a run that makes the model call retain images the forget class has collapsed; it has "
        "not relearned). Cells: unlearned / retrained forget test accuracy (%) and, in brackets, the gap "
        "(unlearned − retrained, points). A model that never learned the class also picks it up from a "
        "few images, so the retrained model is the reference, not 0. "
        f"Steps to {grid['target']:g}%: the first recorded step ({', '.join(map(str, grid['steps']))}; 0 "
        f"= before any step) where the kept run reaches {grid['target']:g}% forget test accuracy, unlearned / retrained "
        f"(> {grid['cap']}: not reached); time ratio = unlearned / retrained steps (1 or more = at least "
        f"as hard to relearn as retraining). Accuracies on {grid['test_forget_images']} forget-class and "
        f"{grid['test_retain_images']} retain test images (seeded subsets).",
        "",
        *table_lines(header, _grid_rows(result, grid, gap)),
    ]
    for m in ("unlearned", "original"):
        g = gaps.get(m)
        if not g:
            continue
        worst = ", ".join(
            f"{fmt(w, 'pts')} at {b} steps ({name or '-'})"
            for b, w, name in zip(g["budgets"], g["worst"], g["worst_attacker"], strict=True)
        )
        lines += ["", f"Worst gap of the {m} model: {worst}; smallest time ratio {_ratio(g['time_ratio'])} "
                  f"({g['time_ratio_attacker'] or '-'})."]  # fmt: skip
        if "raw_worst" in g:  # the same attackers without the option to decline
            raw = ", ".join(
                f"{fmt(w, 'pts')} at {b} steps" for b, w in zip(g["budgets"], g["raw_worst"], strict=True)
            )
            lines[-1] += f" Counting collapsed runs as relearning (no option to decline): {raw}."
    if not gap:
        lines += ["", "No retrained model was given, so there is no gap: the forget accuracies stand alone."]
    return lines


def _relearn(result: dict) -> list[str]:
    models, rt = result["models"], _ran(result, "relearn_time")
    if not any(rt.values()):
        return []
    draws = [f"{r['draws']}" + ("" if r["reached"] else "+ (cap)") if r else "-" for r in rt.values()]
    losses = [f"{r['losses'][0]:.3f} / {r['target_loss']:.3f}" if r else "-" for r in rt.values()]
    return [
        "",
        "## Relearn time (more draws = harder to relearn)",
        "",
        *table_lines(["", *models], [["draws", *draws], ["D_f loss before / target", *losses]]),
    ]


def _skipped(result: dict) -> list[str]:
    items = [
        f"- {m}: {k}: {v['skipped']}"
        for m in result["models"]
        for k, v in result["results"][m].items()
        if isinstance(v, dict) and "skipped" in v
    ]
    return ["", "## Skipped", "", *items] if items else []


SECTIONS = (_per_class, _near, _ou_sweep, _pra, _finetune, _statistics, _relearn_grid, _relearn, _skipped)


def detail_sections(result: dict) -> list[str]:
    """Markdown lines of every detailed section the result has data for."""
    return [line for section in SECTIONS for line in section(result)]
