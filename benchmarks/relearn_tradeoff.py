"""The relearning trade-off: what resisting gradient relearning costs, across every row that ran the grid.

For each method of the committed bench runs (median over its complete contexts) and each
development row that recorded both relearning grids (one context each), one point: the relearning
gap at 100 steps (the bench's reduced grid, each attacker free to decline an attack that lowers
overall test accuracy: spotter.evaluation.gap) against the worst retain class's change and the
time against retraining. Writes a scatter plot and a markdown table; the reading is in
benchmarks/README.md ("Relearning: where the class lives, and the trade-off").

    python benchmarks/relearn_tradeoff.py --out benchmarks/results/relearn_tradeoff
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from classes_summary import contexts, current_rows

from spotter.evaluation.gap import balanced_weights, decided_gap
from spotter.methods import Access, get
from spotter.report.tables import read_rows

RUNS = ("benchmarks/results/fashion_mnist", "benchmarks/results/fashion_mnist_classes")
DEV_ROWS = "benchmarks/results/dev_probe"


def reads_retain(method: str) -> bool:
    """Whether a method, or either part of a BASE+spotter combination, reads retain data."""
    return any(Access(tuple(get(part).NEEDS)).reads_retain for part in method.split("+"))


def bench_points(run: Path) -> list[dict[str, Any]]:
    """One point per label of a bench run: medians over its complete contexts, fresh rows only."""
    rows, _ = current_rows([r for r in read_rows(run / "results.jsonl") if not r.get("diverged")])
    method_of = {r["label"]: r["method"] for r in rows}
    table = contexts(rows)
    points = []
    for label in sorted({lab for per in table.values() for lab in per} - {"original", "retrained"}):
        measured = [
            per[label] for per in table.values() if label in per and per[label]["relearn_gap_100"] is not None
        ]
        if not measured:
            continue
        ratios = [
            m["time_s"] / m["retrained_time_s"] for m in measured if m["time_s"] and m["retrained_time_s"]
        ]
        points.append({
            "source": run.name,
            "label": label,
            "retain_free": not reads_retain(method_of[label]),
            "contexts": len(measured),
            "gap_100": statistics.median(m["relearn_gap_100"] for m in measured),
            "gap_100_worst": max(m["relearn_gap_100"] for m in measured),
            "gap_25": statistics.median(m["relearn_gap_25"] for m in measured),
            "worst_class": statistics.median(m["worst_class_change"] for m in measured),
            "retain_change": statistics.median(m["retain_change"] for m in measured),
            "time_ratio": statistics.median(ratios) if ratios else None,
            "meets_100": sum(m["relearn_gap_100"] <= 10 for m in measured),
        })  # fmt: skip
    return points


def dev_points(folder: Path) -> list[dict[str, Any]]:
    """One point per development row that recorded the unlearned and the retrained model's grids."""
    points = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            grid, reference = row.get("relearn_grid"), row.get("retrained_relearn_grid")
            if not (isinstance(grid, dict) and isinstance(reference, dict)):
                continue
            num_classes = len(row.get("per_class") or row["per_class_delta"])
            weights = balanced_weights(num_classes, row["forget"])  # as the bench summaries weigh
            gap = dict(zip(reference["budgets"], decided_gap(grid, reference, weights)["worst"], strict=True))
            if row.get("probe") == "relearn_oracle":
                label = f"oracle {row['variant']}"
            else:
                label = row.get("tag") or json.dumps(row.get("settings", {}), separators=(",", ":"))
            points.append({
                "source": path.stem,
                "label": f"{label} {','.join(map(str, row['forget']))}",
                "retain_free": row.get("probe") != "relearn_oracle",
                "contexts": 1,
                "gap_100": gap.get(100),
                "gap_100_worst": gap.get(100),
                "gap_25": gap.get(25),
                "worst_class": row.get("worst", row.get("worst_class")),
                "retain_change": row.get("delta_retain", row.get("delta_retain_mean")),
                "time_ratio": None,
                "meets_100": int(gap.get(100, 100) <= 10),
            })  # fmt: skip
    return points


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def table(points: list[dict[str, Any]]) -> str:
    head = ("source", "label", "retain-free", "contexts", "gap 25 (median)", "gap 100 (median)", "gap 100 (worst)",
            "≤ 10 at 100", "worst class Δ (median)", "Δ retain (median)", "time / retraining (median)")  # fmt: skip
    keys = ("source", "label", "retain_free", "contexts", "gap_25", "gap_100", "gap_100_worst", "meets_100",
            "worst_class", "retain_change", "time_ratio")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in sorted(points, key=lambda p: (p["gap_100"], p["label"])):
        lines.append(
            "| "
            + " | ".join(_fmt(p[k]) if k != "retain_free" else ("yes" if p[k] else "no") for k in keys)
            + " |"
        )
    return "\n".join(lines) + "\n"


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, key, xlabel in (
        (axes[0], "worst_class", "worst retain class change, points (median over contexts)"),
        (axes[1], "time_ratio", "unlearning time / retraining time (median)"),
    ):
        for p in points:
            if p[key] is None or p["gap_100"] is None:
                continue
            marker = "o" if p["source"].startswith("fashion_mnist") else "^"
            color = "tab:green" if p["retain_free"] else "tab:gray"
            ax.scatter(p[key], p["gap_100"], marker=marker, color=color, s=18 + 6 * p["contexts"], alpha=0.8)
            ax.annotate(p["label"][:28], (p[key], p["gap_100"]), fontsize=6, alpha=0.8)
        ax.axhline(10, color="tab:red", lw=0.8, ls="--")
        ax.set(xlabel=xlabel, ylabel="relearning gap at 100 steps (median over contexts)")
    axes[0].axvline(-3, color="tab:red", lw=0.8, ls="--")
    axes[1].axvline(3, color="tab:red", lw=0.8, ls="--")
    axes[0].set_title("green: retain-free, grey: reads retain data; o bench, ^ one dev context")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="*", default=list(RUNS))
    p.add_argument("--dev", default=DEV_ROWS, help="folder of development rows (JSON lines)")
    p.add_argument("--out", default="benchmarks/results/relearn_tradeoff", help="writes OUT.md and OUT.png")
    args = p.parse_args()
    points = [pt for run in args.runs for pt in bench_points(Path(run))] + dev_points(Path(args.dev))
    out = Path(args.out)
    out.with_suffix(".md").write_text(table(points))
    plot(points, out.with_suffix(".png"))
    print(f"{len(points)} points -> {out.with_suffix('.md')}, {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
