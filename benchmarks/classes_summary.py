"""Summary of an all-class sweep (benchmarks/fashion_mnist_classes.toml): does a method hold on classes
nobody tuned it on?

    python benchmarks/classes_summary.py benchmarks/results/fashion_mnist_classes [--out summary.md]

Reads RUN/results.jsonl (rows of `spotter bench`) and writes RUN/summary.md: per method, the median
and the worst context of every measure and how many contexts meet each bar of the all-class issue;
then one table per context. A context is (forget classes, training seed); it needs its original and
retrained rows. Measures computed here from the rows (none needs a model):
- worst retain class: the largest test-accuracy drop of a single retain class against the original
  (and which class), beside the mean test_retain change;
- OU@ε (pgd, pgd_away, gaussian) and the ratio of the pgd value to the retrained model's;
- PRA at the attacker's best α for the cosine, l2 and scaled rows at K = 5 and K = 20;
- unlearning wall time against the retrained model's training time in the same run: the recipe
  timed in the job's own process where the row has it (`retrain_clock`), else the retrained row's;
- the relearning gaps: the reduced grid's worst at 25 and 100 steps, each attacker free to decline
  an attack that lowers overall test accuracy (spotter.evaluation.gap; test sets taken as balanced),
  the worst at 100 steps without that option ("raw"), and BatchNorm statistics re-estimated on 1000
  retain images (forget test accuracy minus the retrained model's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spotter.bench.provenance import stale_reason
from spotter.evaluation.gap import balanced_weights, decided_gap
from spotter.report.tables import read_rows  # skips a line cut by a crash, with a warning

REFERENCES = ("original", "retrained")
VARIANTS = ("cosine", "l2", "scaled")


def context_of(row: dict[str, Any]) -> tuple[tuple[int, ...], int]:
    return tuple(row["forget_classes"]), row["seeds"]["train"]


def pra_at(row: dict[str, Any], variant: str, shots: int) -> float | None:
    """The variant's forget test accuracy at the attacker's best α with `shots` shots, if measured."""
    table = row.get("pra_shots") or {}
    if shots not in table.get("shots", []) or variant not in table:
        return None
    return table[variant][table["shots"].index(shots)]


def derived(row: dict[str, Any], original: dict[str, Any], retrained: dict[str, Any]) -> dict[str, Any]:
    """Every measure of the sweep for one row of a context."""
    forget = set(row["forget_classes"])
    drops = {
        c: row["per_class_test_acc"][c] - original["per_class_test_acc"][c]
        for c in range(len(original["per_class_test_acc"]))
        if c not in forget
    }
    worst_class = min(drops, key=drops.get)
    out = {
        "forget_acc": row["forget_acc"],
        "test_forget_acc": row["test_forget_acc"],
        "retain_change": row["test_retain_acc"] - original["test_retain_acc"],
        "worst_class_change": drops[worst_class],
        "worst_class": worst_class,
        "ou_pgd": row["ou_pgd"],
        "ou_pgd_away": row["ou_pgd_away"],
        "ou_gaussian": row["ou_gaussian"],
        "ou_ratio": row["ou_pgd"] / retrained["ou_pgd"] if retrained["ou_pgd"] else None,
        "time_s": row.get("time_s"),
        "retrained_time_s": retraining_seconds(row, retrained),
    }
    for variant in VARIANTS:
        for k in (5, 20):
            out[f"pra_{variant}_k{k}"] = pra_at(row, variant, k)
    out["rounds"], out["check_lowest"] = held_out_check(row)
    out["relearn_gap_25"], out["relearn_gap_100"], out["relearn_gap_100_raw"] = relearn_gaps(row, retrained)
    # BatchNorm statistics re-estimated on retain images: the gap to the retrained model's (rows
    # written before the bench measured it have none)
    if row.get("statistics_forget_acc") is not None and retrained.get("statistics_forget_acc") is not None:
        out["statistics_gap"] = row["statistics_forget_acc"] - retrained["statistics_forget_acc"]
    else:
        out["statistics_gap"] = None
    return out


def held_out_check(row: dict[str, Any]) -> tuple[int | None, float | None]:
    """The rounds a self-checking method ran and the lowest attack its held-out check read (the
    round it returns is among the lowest); None for rows whose history has no check."""
    history = row.get("history")
    if not isinstance(history, list) or not history or "held_attack" not in history[-1]:
        return None, None
    return len(history), min(epoch["held_attack"] for epoch in history)


def relearn_gaps(row: dict[str, Any], retrained: dict[str, Any]) -> tuple[float | None, ...]:
    """The worst relearning gap (points of forget test accuracy above the retrained model's, over
    the bench's reduced grid of attackers) at 25 and 100 steps with the option to decline, and at
    100 steps without it; None for rows without the grid."""
    if not (isinstance(row.get("relearn_grid"), dict) and isinstance(retrained.get("relearn_grid"), dict)):
        return None, None, None
    weights = balanced_weights(len(row["per_class_test_acc"]), row["forget_classes"])
    gap = decided_gap(row["relearn_grid"], retrained["relearn_grid"], weights)
    worst = dict(zip(gap["budgets"], gap["worst"], strict=True))
    raw = dict(zip(gap["budgets"], gap["raw_worst"], strict=True))
    return worst.get(25), worst.get(100), raw.get(100)


def _le(key: str, bound: float) -> Callable[[dict], bool | None]:
    return lambda m: None if m.get(key) is None else m[key] <= bound


def _pra_k20(m: dict) -> bool | None:
    values = [m[f"pra_{v}_k20"] for v in VARIANTS]
    return None if any(v is None for v in values) else max(values) <= 2.0


def retraining_seconds(row: dict, retrained: dict) -> float | None:
    """What retraining costs against this row's time: the recipe timed beside the job in the same
    process (`retrain_clock`, spotter/bench/retrain_clock.py) where the row has it, else the cached
    retrained model's training time, which may come from a run under other conditions."""
    clock = row.get("retrain_clock")
    if isinstance(clock, dict) and clock.get("seconds"):
        return clock["seconds"]
    return retrained.get("time_s")


def _time(m: dict) -> bool | None:
    if m.get("time_s") is None or m.get("retrained_time_s") is None:
        return None
    return m["time_s"] <= m["retrained_time_s"]


# (name, test): the bars of the all-class issue; None where a row lacks what the bar needs
BARS: tuple[tuple[str, Callable[[dict], bool | None]], ...] = (
    ("forget ≤ 0.5% (train and test)", lambda m: max(m["forget_acc"], m["test_forget_acc"]) <= 0.5),
    ("mean retain drop ≤ 1.0", lambda m: m["retain_change"] >= -1.0),
    ("worst class drop ≤ 3", lambda m: m["worst_class_change"] >= -3.0),
    ("OU@ε pgd ≤ 0.2× retrained", _le("ou_ratio", 0.2)),
    ("PRA cosine K5 ≤ 1%", _le("pra_cosine_k5", 1.0)),
    ("PRA every row K20 ≤ 2%", _pra_k20),
    ("time ≤ retraining", _time),
)
# the relearning issue's bar on the bench's reduced grid, counted apart from the bars above
RELEARN_BAR = ("relearning gap ≤ 10 at 100 steps", _le("relearn_gap_100", 10.0))

# (key, title, decimals, higher is better) of the per-method summary
COLUMNS = (
    ("test_forget_acc", "test forget", 2, False),
    ("retain_change", "Δ retain", 2, True),
    ("worst_class_change", "worst class Δ", 2, True),
    ("ou_pgd", "OU pgd", 4, False),
    ("ou_ratio", "OU / retrained", 2, False),
    ("pra_cosine_k5", "PRA cos K5", 2, False),
    ("pra_l2_k5", "PRA l2 K5", 2, False),
    ("pra_scaled_k5", "PRA scaled K5", 2, False),
    ("pra_cosine_k20", "PRA cos K20", 2, False),
    ("pra_l2_k20", "PRA l2 K20", 2, False),
    ("pra_scaled_k20", "PRA scaled K20", 2, False),
    ("relearn_gap_25", "relearn gap 25", 1, False),
    ("relearn_gap_100", "relearn gap 100", 1, False),
    ("relearn_gap_100_raw", "relearn gap 100 raw", 1, False),
    ("statistics_gap", "statistics gap", 1, False),
    ("rounds", "rounds", 0, False),
    ("check_lowest", "check, lowest", 1, False),
    ("time_s", "time s", 0, False),
    ("retrained_time_s", "retraining s", 0, False),
)


def contexts(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, dict[str, Any]]]:
    """{context: {label: derived measures}} for every context holding both reference rows."""
    grouped: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        grouped.setdefault(context_of(r), {})[r["label"]] = r  # a later row of a label wins
    out = {}
    for ctx, by_label in sorted(grouped.items()):
        if not all(ref in by_label for ref in REFERENCES):
            continue
        original, retrained = by_label["original"], by_label["retrained"]
        out[ctx] = {label: derived(r, original, retrained) for label, r in by_label.items()}
    return out


def _fmt(value: Any, decimals: int) -> str:
    return "-" if value is None else f"{value:.{decimals}f}"


def _name(ctx: tuple) -> str:
    forget, seed = ctx
    return f"{{{', '.join(map(str, forget))}}} s{seed}"


def method_table(table: dict[tuple, dict[str, dict]], labels: list[str]) -> list[str]:
    """Median and worst context of every measure, per method."""
    lines = [
        "| method | n | " + " | ".join(f"{t} (median / worst)" for _, t, _, _ in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for label in labels:
        per = {ctx: m[label] for ctx, m in table.items() if label in m}
        cells = []
        for key, _, d, higher in COLUMNS:
            values = [(m[key], ctx) for ctx, m in per.items() if m.get(key) is not None]
            if not values:
                cells.append("-")
                continue
            median = statistics.median(v for v, _ in values)
            worst = (min if higher else max)(values, key=lambda vc: vc[0])
            cells.append(f"{median:.{d}f} / {worst[0]:.{d}f} ({_name(worst[1])})")
        lines.append(f"| {label} | {len(per)} | " + " | ".join(cells) + " |")
    return lines


def bar_table(table: dict[tuple, dict[str, dict]], labels: list[str]) -> list[str]:
    """How many contexts meet each bar, per method ("k of n"; contexts lacking a measure are named)."""
    lines = [
        "| method | " + " | ".join(name for name, _ in BARS) + f" | all bars | {RELEARN_BAR[0]} |",
        "|---|" + "---|" * (len(BARS) + 2),
    ]
    for label in labels:
        per = [m[label] for m in table.values() if label in m]
        cells, every = [], [True] * len(per)
        for _, test in BARS:
            verdicts = [test(m) for m in per]
            known = [v for v in verdicts if v is not None]
            cell = f"{sum(known)} of {len(known)}"
            cells.append(
                cell + (f" ({len(verdicts) - len(known)} n/a)" if len(known) < len(verdicts) else "")
            )
            every = [e and bool(v) for e, v in zip(every, verdicts, strict=True)]
        relearn = [v for v in (RELEARN_BAR[1](m) for m in per) if v is not None]
        tail = f" | {sum(relearn)} of {len(relearn)} |" if relearn else " | - |"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {sum(every)} of {len(per)}" + tail)
    return lines


def context_tables(table: dict[tuple, dict[str, dict]], labels: list[str]) -> list[str]:
    lines = []
    for ctx, per in table.items():
        lines += [f"### forget {_name(ctx)}", ""]
        head = ["method", "train forget", "worst class (Δ)"] + [t for _, t, _, _ in COLUMNS]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label in [*REFERENCES, *labels]:
            if label not in per:
                continue
            m = per[label]
            worst = f"{m['worst_class']} ({m['worst_class_change']:+.2f})"
            cells = [label, _fmt(m["forget_acc"], 2), worst] + [_fmt(m.get(k), d) for k, _, d, _ in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def current_rows(rows: list[dict[str, Any]], include_stale: bool = False) -> tuple[list[dict], list[dict]]:
    """(the rows a summary reads, the stale ones among the latest): a rerun under a new job id leaves
    its old row behind, so the later row of a (context, label) wins; rows computed by code that has
    changed since (spotter.bench.provenance) are dropped unless `include_stale`."""
    latest = {(context_of(r), r["label"]): r for r in rows}
    rows = [r for r in rows if latest[(context_of(r), r["label"])] is r]
    stale = [r for r in rows if stale_reason(r) not in (None, "unverified")]
    if not include_stale:
        rows = [r for r in rows if stale_reason(r) in (None, "unverified")]
    return rows, stale


def summarise(run: Path, references: Path | None = None, include_stale: bool = False) -> str:
    """The summary of RUN's rows; with `references`, the reference rows (original, retrained) are
    taken from that run instead (a development run of the same contexts that skips them). Rows
    computed by code that has changed since (spotter.bench.provenance) are left out and counted,
    as `spotter report` does, unless `include_stale`."""
    rows = [r for r in read_rows(run / "results.jsonl") if not r.get("diverged")]  # no numbers
    if references is not None:
        refs = [r for r in read_rows(references / "results.jsonl") if r["label"] in REFERENCES]
        rows = refs + [r for r in rows if r["label"] not in REFERENCES]
    rows, stale = current_rows(rows, include_stale)
    table = contexts(rows)
    labels = sorted({label for per in table.values() for label in per} - set(REFERENCES))
    labels = [*(["retrained"] if table else []), *labels]
    unfinished = sorted({context_of(r) for r in rows} - set(table))
    text = [
        f"# All-class sweep: {run.name}",
        "",
        f"{len(rows)} rows, {len(table)} complete contexts"
        + (f" ({len(unfinished)} without both reference rows yet)" if unfinished else "")
        + ". Changes are against the original model of the same context, in points; the retrained "
        "row shows what a model that never saw the class does.",
        "",
        *([_stale_line(stale, include_stale), ""] if stale else []),
        "## Bars met (contexts)",
        "",
        *bar_table(table, labels),
        "",
        "## Median and worst context per measure",
        "",
        *method_table(table, labels),
        "",
        "## Per context",
        "",
        *context_tables(table, [label for label in labels if label != "retrained"]),
    ]
    return "\n".join(text).rstrip() + "\n"


def _stale_line(stale: list[dict], included: bool) -> str:
    counts: dict[str, int] = {}
    for r in stale:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    names = ", ".join(f"{label} ×{n}" if n > 1 else label for label, n in sorted(counts.items()))
    what = "included (--include-stale)" if included else "left out"
    return (
        f"{len(stale)} stale row(s), computed by code that has changed since, are {what}: {names}. "
        "`spotter bench SPEC --out RUN --rerun-stale` reruns them."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `spotter bench --out` folder")
    parser.add_argument("--out", type=Path, help="where to write the summary (default RUN/summary.md)")
    parser.add_argument(
        "--references", type=Path, help="take the original and retrained rows from this run (same contexts)"
    )
    parser.add_argument(
        "--include-stale", action="store_true", help="also count rows computed by code that has changed since"
    )
    args = parser.parse_args(argv)
    for run in (args.run, args.references):
        if run is not None and not (run / "results.jsonl").exists():
            print(
                f"error: {run / 'results.jsonl'} does not exist; run `spotter bench SPEC --out {run}`",
                file=sys.stderr,
            )
            return 1
    text = summarise(args.run, args.references, args.include_stale)
    out = args.out or args.run / "summary.md"
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
