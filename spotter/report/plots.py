"""PNG plots of one benchmark setting, drawn from the rows (and OUT/features) alone.

OU@ε vs ε, PRA forget accuracy vs α and vs K, forget vs retain accuracy of every method, retain
drop vs PRA, the change of every class's accuracy against the original (a heatmap), a 2-D
PCA of forget- and neighbour-class features for the models whose features were saved, and the
training curves of Spotter (and BASE+spotter) from the method's history. Without matplotlib the
plots are skipped with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from spotter.io import atomic_write

log = logging.getLogger("spotter")

STYLE = {"original": ("tab:gray", "--"), "retrained": ("tab:blue", ":")}


def pyplot():  # noqa: ANN202 - the pyplot module or None
    """matplotlib's pyplot on the Agg backend, or None (with a warning) when it is missing."""
    try:
        import matplotlib
    except ImportError:
        log.warning(
            "matplotlib is not installed: plots skipped (a dependency of spotter-unlearning: pip install matplotlib)"
        )
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt: Any, fig: Any, path: Path) -> bool:
    """Save `fig` atomically (format from the suffix) and close it."""
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png"))
    plt.close(fig)
    return True


# where a point's label may go, in points from the point (tried in order): right, below, left, above
LABEL_OFFSETS = ((4, 3), (4, -11), (-4, 3), (-4, -11), (4, 14), (4, -22), (-4, 14), (-4, -22))


def place_labels(ax: Any, points: list[tuple[float, float]], labels: list[str], fontsize: float = 8) -> list:
    """Annotate each point with its label at the first of LABEL_OFFSETS whose text box overlaps no
    label placed before it (methods with near-equal scores sit on one spot: labels written on top
    of each other cannot be read). Returns the (dx, dy) offsets used, in points."""
    ax.autoscale_view()
    to_px = ax.figure.dpi / 72
    placed: list[tuple[float, float, float, float]] = []
    used = []
    for (x, y), label in zip(points, labels, strict=True):
        px, py = ax.transData.transform((x, y))
        width, height = 0.6 * fontsize * len(label) * to_px, 1.2 * fontsize * to_px
        choice = LABEL_OFFSETS[0]
        for dx, dy in LABEL_OFFSETS:
            left = px + dx * to_px - (width if dx < 0 else 0)
            box = (left, py + dy * to_px, left + width, py + dy * to_px + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                choice = (dx, dy)
                break
        else:
            left = px + choice[0] * to_px
            box = (left, py + choice[1] * to_px, left + width, py + choice[1] * to_px + height)
        placed.append(box)
        used.append(choice)
        ax.annotate(label, (x, y), fontsize=fontsize, xytext=choice, textcoords="offset points",
                    ha="right" if choice[0] < 0 else "left")  # fmt: skip
    return used


def _mean_curve(rows: list[dict], get: Any) -> tuple[list, list] | None:
    """x and the mean y over replicates of curves `get(row) -> (x, y)` that share their x."""
    curves = [c for c in (get(r) for r in rows) if c is not None]
    if not curves:
        return None
    x = curves[0][0]
    ys = [np.asarray(y, dtype=float) for cx, y in curves if list(cx) == list(x) and None not in y]
    return (x, list(np.mean(ys, axis=0))) if ys else None


def _lines(ax: Any, st: Any, get: Any) -> bool:
    drawn = False
    for label in st.labels:
        curve = _mean_curve(st.of(label), get)
        if curve is None:
            continue
        color, style = STYLE.get(label, (None, "-"))
        width = 2.5 if label == "spotter" else 1.3
        ax.plot(*curve, linestyle=style, color=color, marker="o", markersize=3, linewidth=width, label=label)
        drawn = True
    return drawn


def _finish(plt: Any, fig: Any, path: Path, drawn: bool) -> bool:
    if drawn:
        return save_figure(plt, fig, path)
    plt.close(fig)
    return False


def _ou(plt: Any, st: Any, path: Path) -> bool:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    drawn = False
    for ax, kind, title in zip(
        axes, ("pgd", "gaussian"), ("PGD toward runner-up", "Gaussian (σ = ε)"), strict=True
    ):
        drawn |= _lines(
            ax, st, lambda r, k=kind: (r["ou_sweep"]["eps"], r["ou_sweep"][k]) if r.get("ou_sweep") else None
        )
        ax.set(title=title, xlabel="ε (pixels)")
        ax.set_yscale("symlog", linthresh=1e-4)
    axes[0].set_ylabel("OU@ε (JS, lower is better)")
    axes[1].legend(fontsize=7, ncol=2)
    return _finish(plt, fig, path, drawn)


def _alpha_curve(r: dict) -> tuple[list, list] | None:
    curve = r.get("pra_curve")
    return ([p["alpha"] for p in curve], [p["test_forget_acc"] for p in curve]) if curve else None


def _k_curve(r: dict) -> tuple[list, list] | None:
    """Forget accuracy at the attacker's best α for each K, with the evaluation's prototype variant."""
    shots = r.get("pra_shots")
    return (shots["shots"], shots[r["config"]["eval"].get("pra_variant", "cosine")]) if shots else None


def _pra_alpha(plt: Any, st: Any, path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    drawn = _lines(ax, st, _alpha_curve)
    ax.set(
        xlabel="α (weight of the prototype row)",
        ylabel="forget test accuracy after PRA (%)",
        title="PRA vs α",
    )
    ax.legend(fontsize=7, ncol=2)
    return _finish(plt, fig, path, drawn)


def _pra_k(plt: Any, st: Any, path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    drawn = _lines(ax, st, _k_curve)
    ax.set(xlabel="K (attacker's samples per forget class)", ylabel="forget test accuracy after PRA (%)")
    shots = sorted({k for r in st.rows if r.get("pra_shots") for k in r["pra_shots"]["shots"]})
    ax.set(xscale="log", title="PRA at the attacker's best α vs K")
    ax.set_xticks(shots, [str(k) for k in shots], minor=False)
    ax.minorticks_off()
    ax.legend(fontsize=7, ncol=2)
    return _finish(plt, fig, path, drawn)


def _scatter(plt: Any, st: Any, path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    points, names = [], []
    for label in st.labels:
        f, r = st.stat(label, "test_forget_acc"), st.stat(label, "test_retain_acc")
        if not (f.n and r.n):
            continue
        color = STYLE.get(label, (None,))[0]
        ax.errorbar(r.mean, f.mean, xerr=r.std, yerr=f.std, fmt="o", color=color, capsize=2, label=label)
        points.append((r.mean, f.mean))
        names.append(label)
    place_labels(ax, points, names, fontsize=7)
    ax.set(xlabel="retain test accuracy (%) →", ylabel="forget test accuracy (%) ↓", title="forget vs retain")
    return save_figure(plt, fig, path)


def _paired(st: Any, label: str, get: Any) -> list[Any]:
    """`get(row, original)` for each of the label's rows that has the original of its seed."""
    originals = {r["seeds"]["train"]: r for r in st.of("original")}
    return [get(r, originals[r["seeds"]["train"]]) for r in st.of(label) if r["seeds"]["train"] in originals]


def _damage_pra(plt: Any, st: Any, path: Path) -> bool:
    """Retain drop against the original vs PRA forget accuracy: the two blind spots in one picture."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    points, names = [], []
    for label in st.labels:
        if label == "original":
            continue
        pairs = _paired(
            st, label, lambda r, o: (o["test_retain_acc"] - r["test_retain_acc"], r.get("pra_forget_acc"))
        )
        pairs = np.asarray([p for p in pairs if p[1] is not None], dtype=float)
        if not len(pairs):
            continue
        mean, std = pairs.mean(0), pairs.std(0)
        color = STYLE.get(label, (None,))[0]
        ax.errorbar(*mean, xerr=std[0], yerr=std[1], fmt="o", color=color, capsize=2)
        points.append(tuple(mean))
        names.append(label)
    place_labels(ax, points, names)
    ax.set(xlabel="retain test accuracy drop vs original (points) ←", ylabel="PRA forget accuracy (%) ↓",
           title="damage vs relearning (lower left is better)")  # fmt: skip
    ax.axvline(0, color="0.7", linewidth=0.8)
    return _finish(plt, fig, path, bool(points))


def per_class_changes(st: Any) -> tuple[list[str], np.ndarray]:
    """(method labels, their per-class test accuracy change against the original of the same seed,
    mean over seeds: one row per label, one column per class)."""
    names, rows = [], []
    for label in st.labels:
        if label == "original":
            continue
        diffs = _paired(
            st,
            label,
            lambda r, o: (
                np.asarray(r["per_class_test_acc"], float) - np.asarray(o["per_class_test_acc"], float)
            ),
        )
        if diffs:
            names.append(label)
            rows.append(np.mean(diffs, axis=0))
    return names, np.asarray(rows)


def _per_class(plt: Any, st: Any, path: Path) -> bool:
    """Test accuracy change of every class against the original, per method (mean over seeds)."""
    names, table = per_class_changes(st)
    if not names:
        return False
    rows = names
    forget = set(st.rows[0].get("forget_classes", []))
    shown = np.where([[c in forget for c in range(table.shape[1])]] * len(rows), np.nan, table)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * table.shape[1], 0.9 + 0.36 * len(rows)))
    limit = max(5.0, float(np.nanmax(np.abs(shown))) if np.isfinite(shown).any() else 5.0)
    image = ax.imshow(shown, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for i in range(len(rows)):
        for c in range(table.shape[1]):
            text = "forget" if c in forget else f"{table[i, c]:+.1f}"
            ax.text(c, i, text, ha="center", va="center", fontsize=7, color="0.2" if c in forget else "black")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in range(table.shape[1])])
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.set(xlabel="class", title="test accuracy change per class vs original (points; red: lost)")
    fig.colorbar(image, ax=ax, fraction=0.03)
    return save_figure(plt, fig, path)


def _features(plt: Any, st: Any, folder: Path, path: Path) -> bool:
    shown = []
    for label in st.labels:
        rows = [r for r in st.of(label) if r.get("features") and (folder / r["features"]["file"]).exists()]
        if rows:
            shown.append((label, rows[0]))
    missing = [
        lab for lab in st.labels for r in st.of(lab)[:1] if r.get("features") and (lab, r) not in shown
    ]
    if missing:
        log.warning("feature files missing for %s (copy OUT/features with results.jsonl)", ", ".join(missing))
    if not shown:
        return False
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 3.6), squeeze=False)
    for ax, (label, row) in zip(axes[0], shown, strict=True):
        with np.load(folder / row["features"]["file"], allow_pickle=False) as z:
            feats, labels = z["feats"].astype(np.float64), z["labels"]
        centred = feats - feats.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)  # PCA: top-2 right singular vectors
        xy = centred @ vt[:2].T
        for c in np.unique(labels):
            is_forget = int(c) in row["features"]["forget_classes"]
            m = labels == c
            ax.scatter(
                *xy[m].T,
                s=4,
                alpha=0.6,
                marker="x" if is_forget else "o",
                label=f"{'forget' if is_forget else 'near'} {c}",
            )
        ax.set(title=f"{label} (seed {row['seeds']['train']})", xticks=[], yticks=[])
    axes[0][0].legend(fontsize=7, markerscale=2)
    fig.suptitle("Test features, PCA to 2-D: forget class vs its nearest classes", fontsize=9)
    return save_figure(plt, fig, path)


def _curves(plt: Any, st: Any, path: Path) -> bool:
    labels = [lab for lab in st.labels if any(r.get("history") for r in st.of(lab)) and "spotter" in lab]
    labels = labels or [lab for lab in st.labels if any(r.get("history") for r in st.of(lab))][:4]
    if not labels:
        return False
    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 3.4), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        rows = [r for r in st.of(label) if r.get("history")]
        keys = [k for k, v in rows[0]["history"][0].items() if k != "epoch" and isinstance(v, int | float)]
        for k in keys:
            curve = _mean_curve(
                rows, lambda r, k=k: ([h["epoch"] for h in r["history"]], [h.get(k) for h in r["history"]])
            )
            if curve:
                ax.plot(*curve, marker="o", markersize=3, label=k)
        ax.set(title=f"{label} (mean of {len(rows)} seeds)", xlabel="epoch")
        ax.legend(fontsize=7)
    return save_figure(plt, fig, path)


PLOTS = (
    ("ou_eps", "OU@ε vs ε (mean over seeds; lower is better)"),
    ("pra_alpha", "PRA forget accuracy vs α (mean over seeds; lower is better)"),
    ("pra_k", "PRA forget accuracy vs K (mean over seeds; lower is better)"),
    ("scatter", "Forget vs retain test accuracy of every method (mean ± std over seeds)"),
    ("damage_pra", "Retain accuracy drop vs PRA forget accuracy per method (mean ± std over seeds)"),
    ("per_class", "Test accuracy change of every class against the original (mean over seeds)"),
    ("features", "2-D PCA of forget- and neighbour-class test features"),
    ("curves", "Spotter's training curves (loss terms per epoch, mean over seeds)"),
)


def plot_setting(st: Any, folder: Path, out: Path) -> list[tuple[Path, str]]:
    """Every plot of one setting that has data; [(png path, caption)]."""
    plt = pyplot()
    if plt is None:
        return []
    draw = {
        "ou_eps": lambda p: _ou(plt, st, p),
        "pra_alpha": lambda p: _pra_alpha(plt, st, p),
        "pra_k": lambda p: _pra_k(plt, st, p),
        "scatter": lambda p: _scatter(plt, st, p),
        "damage_pra": lambda p: _damage_pra(plt, st, p),
        "per_class": lambda p: _per_class(plt, st, p),
        "features": lambda p: _features(plt, st, folder, p),
        "curves": lambda p: _curves(plt, st, p),
    }
    done = []
    for name, caption in PLOTS:
        path = out / f"{st.slug}-{name}.png"
        if draw[name](path):
            done.append((path, caption))
        else:  # a figure an earlier render drew from data this one lacks would go on being shown
            path.unlink(missing_ok=True)
    return done
