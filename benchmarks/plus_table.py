"""BASE alone against BASE+spotter on committed rows (the "+spotter on every base" issue's table).

    python benchmarks/plus_table.py [--runs benchmarks/results/fashion_mnist benchmarks/results/fm_plus]

Reads the rows of every run folder given (stale rows left out, as `spotter report` does), pairs each
base's row with its "+spotter" row (the paper's terms) and its "+ours" row (the terms of our preset
`fashion-mnist`) of the same context (forget set, train seed) and prints, per
base, the mean over the contexts both hold of: the change "+spotter" makes to forget test accuracy,
test_retain, the worst retain class (change against the original, the lower of the two rows'), OU@ε
(PGD) and PRA (cosine, K 5, attacker's best α); then the issue's bars per base: stable (test_retain
within 3 points of the base in every context), OU@ε lower, PRA at least halved where the base's is
above 10% (else lower or equal), mean test_retain at most 1 point below the base's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classes_summary import context_of, pra_at  # noqa: E402

from spotter.bench.provenance import latest_per_job, stale_reason  # noqa: E402

SUFFIXES = ("+spotter", "+ours")  # the paper's terms; the terms of our preset `fashion-mnist`
RUNS = ("benchmarks/results/fashion_mnist", "benchmarks/results/fm_plus")


def load(runs: list[Path], include_stale: bool = False) -> dict[tuple, dict[str, dict[str, Any]]]:
    """context -> label -> row (the latest row per job; fresh rows only unless `include_stale`)."""
    table: dict[tuple, dict[str, dict[str, Any]]] = {}
    for run in runs:
        path = run / "results.jsonl"
        if not path.is_file():
            continue
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if not r.get("diverged")]  # a diverged job has no numbers
        for row in latest_per_job(rows):
            if not include_stale and stale_reason(row) not in (None, "unverified"):
                continue
            table.setdefault(context_of(row), {})[row["label"]] = row
    return table


def worst_change(row: dict[str, Any], original: dict[str, Any]) -> float:
    forget = set(row["forget_classes"])
    return min(
        row["per_class_test_acc"][c] - original["per_class_test_acc"][c]
        for c in range(len(original["per_class_test_acc"]))
        if c not in forget
    )


def pairs(
    table: dict[tuple, dict[str, dict]], suffix: str
) -> dict[str, list[tuple[tuple, dict, dict, dict]]]:
    """base -> [(context, original, base row, BASE+suffix row)]."""
    out: dict[str, list] = {}
    for ctx, rows in sorted(table.items()):
        original = rows.get("original")
        for label, combo in rows.items():
            base = label.removesuffix(suffix)
            if label.endswith(suffix) and base in rows and original is not None:
                out.setdefault(base, []).append((ctx, original, rows[base], combo))
    return out


def pra_cos5(row: dict[str, Any]) -> float:
    """PRA forget accuracy, cosine row, K 5 (the row's K sweep; else the evaluator's PRA at K 5)."""
    value = pra_at(row, "cosine", 5)
    return row["pra_forget_acc"] if value is None else value


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def render(table: dict[tuple, dict[str, dict]], suffix: str = "+spotter") -> str:
    s = suffix
    head = (f"| base | contexts | Δ test forget | test_retain base → {s} | worst class base → {s} | "
            f"OU@ε base → {s} | PRA cos K5 base → {s} | stable | OU lower | PRA halved | retain −1 |")  # fmt: skip
    lines = [head, "|" + "---|" * 11]
    for base, items in sorted(pairs(table, suffix).items()):
        get = {
            "forget": [c["test_forget_acc"] - b["test_forget_acc"] for _, _, b, c in items],
            "ret_b": [b["test_retain_acc"] for _, _, b, _ in items],
            "ret_c": [c["test_retain_acc"] for _, _, _, c in items],
            "worst_b": [worst_change(b, o) for _, o, b, _ in items],
            "worst_c": [worst_change(c, o) for _, o, _, c in items],
            "ou_b": [b["ou_pgd"] for _, _, b, _ in items],
            "ou_c": [c["ou_pgd"] for _, _, _, c in items],
            "pra_b": [pra_cos5(b) for _, _, b, _ in items],
            "pra_c": [pra_cos5(c) for _, _, _, c in items],
        }
        m = {k: _mean(v) for k, v in get.items()}
        stable = all(c >= b - 3 for b, c in zip(get["ret_b"], get["ret_c"], strict=True))
        pra_ok = m["pra_c"] <= m["pra_b"] / 2 if m["pra_b"] > 10 else m["pra_c"] <= m["pra_b"]
        yes = {True: "yes", False: "**no**"}
        lines.append(
            f"| {base} | {len(items)} | {m['forget']:+.1f} | {m['ret_b']:.2f} → {m['ret_c']:.2f} | "
            f"{m['worst_b']:+.1f} → {m['worst_c']:+.1f} | {m['ou_b']:.4f} → {m['ou_c']:.4f} | "
            f"{m['pra_b']:.1f} → {m['pra_c']:.1f} | {yes[stable]} | {yes[m['ou_c'] < m['ou_b']]} | "
            f"{yes[pra_ok]} | {yes[m['ret_c'] >= m['ret_b'] - 1]} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", nargs="+", type=Path, default=[Path(r) for r in RUNS], help="bench run folders"
    )
    parser.add_argument("--include-stale", action="store_true", help="also rows whose code has changed since")
    args = parser.parse_args(argv)
    table = load(args.runs, args.include_stale)
    for suffix in SUFFIXES:
        print(f"\nBASE{suffix}\n")
        print(render(table, suffix))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
