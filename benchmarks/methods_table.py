"""Issue 3's table and its reading, from the rows of a `spotter bench` run (one seed).

    python benchmarks/methods_table.py runs/fm_methods [--bar-forget 10 --bar-retain 5]

Prints a Markdown table (one row per method, in the spec's order): forget / retain / test_forget /
test_retain accuracy, OU@ε (PGD toward the runner-up and Gaussian), PRA forget accuracy at the
attacker's best α, the dispersion score and the unlearning wall time; then which baselines meet
the bar (forget ≤ 10%, test_retain within 5 points of the original), the ranking of the methods
that forget fully (forget ≤ 1%) on OU@ε and on PRA, and what "+spotter" changed for each base.
`spotter report` renders the same rows with mean ± std over seeds; this script is the single-seed
reading that benchmarks/README.md quotes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spotter.report.markdown import markdown

COLUMNS = (
    ("label", "method"),
    ("forget_acc", "forget"),
    ("retain_acc", "retain"),
    ("test_forget_acc", "test_forget"),
    ("test_retain_acc", "test_retain"),
    ("ou_pgd", "OU@ε pgd"),
    ("ou_gaussian", "OU@ε gauss"),
    ("pra_forget_acc", "PRA forget"),
    ("pra_alpha", "PRA α"),
    ("dispersion", "dispersion"),
    ("time_s", "time s"),
)


def load_rows(run: Path) -> list[dict]:
    path = run / "results.jsonl"
    if not path.is_file():
        raise SystemExit(f"error: no results.jsonl in {run} (run `spotter bench SPEC --out {run}` first)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if not r.get("diverged")]  # a diverged job has no numbers
    labels = [r["label"] for r in rows]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise SystemExit(
            f"error: {run} holds several rows for {', '.join(repeated)} (several seeds or forget sets, "
            "or rows of an older spec); this script reads one row per method: use `spotter report`"
        )
    return sorted(rows, key=lambda r: r["order"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a `spotter bench --out` folder")
    parser.add_argument("--bar-forget", type=float, default=10.0, help="forget accuracy bar (%%)")
    parser.add_argument("--bar-retain", type=float, default=5.0, help="allowed test_retain drop (points)")
    parser.add_argument("--full", type=float, default=1.0, help="'forgets fully': forget accuracy ≤ this")
    args = parser.parse_args()

    rows = load_rows(args.run)
    by_label = {r["label"]: r for r in rows}
    if "original" not in by_label:
        raise SystemExit("error: the run has no 'original' row; the bar is relative to it")
    original = by_label["original"]
    print(markdown(rows, COLUMNS))
    print()

    methods = [r for r in rows if r["kind"] != "reference"]
    retain_floor = original["test_retain_acc"] - args.bar_retain
    misses = [r for r in methods if r["forget_acc"] > args.bar_forget or r["test_retain_acc"] < retain_floor]
    print(
        f"bar: forget ≤ {args.bar_forget:g}%, test_retain ≥ {retain_floor:.2f} "
        f"(original {original['test_retain_acc']:.2f} − {args.bar_retain:g})"
    )
    for r in misses:
        print(f"  misses: {r['label']}: forget {r['forget_acc']:.2f}, test_retain {r['test_retain_acc']:.2f}")
    print()

    full = [r for r in methods if r["forget_acc"] <= args.full]
    for key, name in (("ou_pgd", "OU@ε pgd"), ("pra_forget_acc", "PRA forget")):
        ranked = sorted(full, key=lambda r: r[key])
        print(f"full forgetters (forget ≤ {args.full:g}%) ranked by {name} (lower is better):")
        for i, r in enumerate(ranked, 1):
            print(f"  {i:2d}. {r['label']}: {r[key]:.4g}")
        print()

    print("+spotter against its base (Δ = combined − base):")
    for r in methods:
        if not r["label"].endswith("+spotter"):
            continue
        base = by_label.get(r["label"].removesuffix("+spotter"))
        if base is None:
            continue
        print(
            f"  {base['label']}: OU@ε {base['ou_pgd']:.4f} → {r['ou_pgd']:.4f} "
            f"({r['ou_pgd'] - base['ou_pgd']:+.4f}), PRA {base['pra_forget_acc']:.2f} → "
            f"{r['pra_forget_acc']:.2f} ({r['pra_forget_acc'] - base['pra_forget_acc']:+.2f}), "
            f"forget {base['forget_acc']:.2f} → {r['forget_acc']:.2f}, test_retain "
            f"{base['test_retain_acc']:.2f} → {r['test_retain_acc']:.2f}"
        )
    total = sum(r.get("wall_s") or 0 for r in rows)
    print(f"\nsum of job wall times: {total / 60:.1f} min over {len(rows)} rows")


if __name__ == "__main__":
    main()
