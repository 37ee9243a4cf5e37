"""PNG plots of an `audit` result (matplotlib, Agg backend, imported lazily).

Without matplotlib (a dependency, so only in a broken install) the plots are skipped with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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
    "relearn_time.png": "Relearn time: the loss on the forget training images after each draw of SGD "
    "fine-tuning; the black line is the original's loss, which relearning has to reach. Later is better.",
}

PLOTS = {
    "ou_eps.png": _ou,
    "pra_alpha.png": _pra_alpha,
    "pra_shots.png": _pra_shots,
    "finetune.png": _finetune,
    "relearn_time.png": _relearn,
}


def plot_all(result: dict, out: Path) -> list[Path]:
    """Draw every plot the result has data for into `out`; [] when matplotlib is missing."""
    plt = _pyplot()
    if plt is None:
        return []
    return [out / name for name, draw in PLOTS.items() if draw(plt, result, out / name)]
