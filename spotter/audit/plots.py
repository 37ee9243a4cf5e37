"""PNG plots of an `audit` result (matplotlib, Agg backend, imported lazily).

Without matplotlib (a dependency, so only in a broken install) the plots are skipped with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from spotter.evaluation.gap import balanced_weights, declined
from spotter.report.plots import pyplot as _pyplot
from spotter.report.plots import save_figure as _save

log = logging.getLogger("spotter")

STYLE = {"original": ("tab:gray", "--"), "retrained": ("tab:blue", ":"), "unlearned": ("tab:red", "-")}
KIND_TITLES = {"pgd": "PGD toward runner-up", "pgd_away": "PGD away", "gaussian": "Gaussian (σ = ε)"}


def _line(ax: Any, name: str, x: list, y: list, **kw: Any) -> None:
    color, style = STYLE.get(name, (None, "-"))
    width = 3.0 if name == "original" else 1.5  # drawn wide so a model on top of it stays visible
    ax.plot(x, y, linestyle=style, color=color, marker="o", markersize=3, linewidth=width, label=name, **kw)


def _parts(result: dict, key: str) -> dict[str, dict]:
    """{model: result[key]} for the models where that check ran (and was not skipped)."""
    out = {}
    for m in result["models"]:
        part = result["results"][m].get(key)
        if isinstance(part, dict) and "skipped" not in part:
            out[m] = part
    return out


def _ou(plt: Any, result: dict, path: Path) -> bool:
    sweep = _parts(result, "ou_sweep")
    if not sweep:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True)
    for ax, kind in zip(axes, KIND_TITLES, strict=True):
        for m, d in sweep.items():
            _line(ax, m, d["eps"], d[kind])
        ax.set(title=KIND_TITLES[kind], xlabel="ε (pixels)")
    axes[0].set_ylabel("OU@ε (JS, lower is better)")
    axes[0].legend()
    return _save(plt, fig, path)


def _pra_alpha(plt: Any, result: dict, path: Path) -> bool:
    pra = {m: p for m, p in _parts(result, "pra").items() if p.get("curve_shots")}
    if not pra:
        return False
    variants = list(next(iter(pra.values()))["variants"])
    fig, axes = plt.subplots(1, len(variants), figsize=(4 * len(variants), 3.4), sharey=True, squeeze=False)
    for ax, v in zip(axes[0], variants, strict=True):
        for m, p in pra.items():
            curve = p["variants"][v]["curve"]
            _line(ax, m, curve["alphas"], curve["test_forget_acc"])
            ax.axvline(curve["best_alpha"], color=STYLE.get(m, (None,))[0], alpha=0.3, linewidth=3)
        k = next(iter(pra.values()))["curve_shots"]
        ax.set(title=f"PRA {v}, K = {k}", xlabel="α (shaded: attacker's best)", ylim=(-3, 103))
    axes[0][0].set_ylabel("forget test accuracy % (lower is better)")
    axes[0][0].legend()
    return _save(plt, fig, path)


def _pra_shots(plt: Any, result: dict, path: Path) -> bool:
    pra = {m: p for m, p in _parts(result, "pra").items() if p.get("shots")}
    if not pra:
        return False
    variants = list(next(iter(pra.values()))["variants"])
    fig, axes = plt.subplots(1, len(variants), figsize=(4 * len(variants), 3.4), sharey=True, squeeze=False)
    for ax, v in zip(axes[0], variants, strict=True):
        for m, p in pra.items():
            _line(ax, m, p["shots"], p["variants"][v]["forget_acc"])
        ax.set(title=f"PRA {v} at the best α", xlabel="shots K", xscale="log", ylim=(-3, 103))
    axes[0][0].set_ylabel("forget test accuracy % (lower is better)")
    axes[0][0].legend()
    return _save(plt, fig, path)


def _finetune(plt: Any, result: dict, path: Path) -> bool:
    ft = _parts(result, "finetune")
    if not ft:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for m, d in ft.items():
        _line(axes[0], m, d["steps"], d["test_forget_acc"])
        _line(axes[1], m, d["steps"], d["test_retain_acc"])
    axes[0].set(title="few-shot fine-tuning: forget test acc %", xlabel="SGD steps", ylim=(-3, 103))
    axes[1].set(title="retain test acc %", xlabel="SGD steps")
    axes[0].legend()
    return _save(plt, fig, path)


OPTIMISER_TITLES = {"sgd": "SGD (momentum 0.9)", "adam": "Adam"}


def _strongest(grid: dict, optimiser: str) -> list[float]:
    """Per recorded step (after 0), the highest forget test accuracy of any attacker using `optimiser`
    (NaN where every one of them diverged)."""
    rows = [a["test_forget_acc"] for a in grid["attackers"] if a["optimiser"] == optimiser]
    out = []
    for i in range(1, len(grid["steps"])):
        values = [r[i] for r in rows if r[i] == r[i]]
        out.append(max(values) if values else float("nan"))
    return out


def _relearn_grid(plt: Any, result: dict, path: Path) -> bool:
    grids = _parts(result, "relearn_grid")
    if not grids:
        return False
    # each attacker may decline an attack that lowers overall accuracy (spotter.evaluation.gap), as
    # the gap does: a collapsed run is not drawn as relearning
    weights = result.get("test_sizes") or balanced_weights(result["num_classes"], result["forget_classes"])
    grids = {m: declined(g, tuple(weights)) for m, g in grids.items()}
    first = next(iter(grids.values()))
    optimisers = list(dict.fromkeys(a["optimiser"] for g in grids.values() for a in g["attackers"]))
    if not optimisers or len(first["steps"]) < 2:
        return False
    fig, axes = plt.subplots(
        1, len(optimisers), figsize=(5 * len(optimisers), 3.8), sharey=True, squeeze=False
    )
    for ax, opt in zip(axes[0], optimisers, strict=True):
        for m, g in grids.items():
            _line(ax, m, g["steps"][1:], _strongest(g, opt))  # log x: step 0 is left out
        ax.axhline(first["target"], color="k", linewidth=0.8, label=f"target {first['target']:g}%")
        ax.set(title=f"{OPTIMISER_TITLES.get(opt, opt)}: strongest attacker", xlabel="fine-tuning steps",
               xscale="log", ylim=(-3, 103))  # fmt: skip
        ax.set_xticks(first["steps"][1:], [str(s) for s in first["steps"][1:]])  # the recorded steps
        ax.minorticks_off()
    axes[0][0].set_ylabel("forget test accuracy %")
    axes[0][0].legend()
    return _save(plt, fig, path)


def _relearn(plt: Any, result: dict, path: Path) -> bool:
    rt = _parts(result, "relearn_time")
    if not rt:
        return False
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for m, d in rt.items():
        _line(ax, m, list(range(len(d["losses"]))), d["losses"])
    ax.axhline(next(iter(rt.values()))["target_loss"], color="k", linewidth=0.8, label="original's D_f loss")
    draw = result.get("config", {}).get("relearn", {}).get("draw", "?")
    ax.set(title="relearn time", xlabel=f"draws of {draw} samples", ylabel="D_f loss", yscale="log")
    ax.legend()
    return _save(plt, fig, path)


# What each figure shows, in plain words (the reports print it under the figure)
CAPTIONS = {
    "ou_eps.png": "Over-unlearning (OU@ε) against the neighbourhood radius ε, for three kinds of neighbours "
    "of the forget images; lower is better and the retrained model shows what a model that never saw the "
    "forget classes scores.",
    "pra_alpha.png": "Prototypical relearning attack: forget test accuracy against the weight α with which "
    "the attacker writes the prototype into the forget row, one panel per prototype variant; the shaded "
    "line marks the attacker's best α. Lower is better.",
    "pra_shots.png": "Prototypical relearning attack at the attacker's best α against the number of forget "
    "images the attacker holds (shots K). Lower is better.",
    "finetune.png": "Few-shot fine-tuning: forget (left) and retain (right) test accuracy after each budget "
    "of SGD steps on K forget images plus as many retain images. A low forget accuracy that stays low is "
    "better.",
    "relearn_grid.png": "Relearning grid: forget test accuracy against fine-tuning steps (log scale), one "
    "panel per optimiser. At each step the curve shows the strongest attacker for that optimiser: the "
    "highest forget accuracy among all its attackers (shots, data, trained layers, BatchNorm mode), each at "
    "its best learning rate. The retrained model shows how fast a model that never learned the class picks "
    "it up from the same images; an unlearned curve well above it means the class comes back. An attack "
    "that lowers overall test accuracy (a model that calls retain images the forget class) is declined: "
    "the curve stays at the untouched model's value there.",
    "relearn_time.png": "Relearn time: the loss on the forget training images after each draw of SGD "
    "fine-tuning; the black line is the original's loss, which relearning has to reach. Later is better.",
}

PLOTS = {
    "ou_eps.png": _ou,
    "pra_alpha.png": _pra_alpha,
    "pra_shots.png": _pra_shots,
    "finetune.png": _finetune,
    "relearn_grid.png": _relearn_grid,
    "relearn_time.png": _relearn,
}


def plot_all(result: dict, out: Path) -> list[Path]:
    """Draw every plot the result has data for into `out`; [] when matplotlib is missing."""
    plt = _pyplot()
    if plt is None:
        return []
    return [out / name for name, draw in PLOTS.items() if draw(plt, result, out / name)]
