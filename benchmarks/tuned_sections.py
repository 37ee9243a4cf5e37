"""Write the tuned [methods.*] tables of a bench spec from `spotter tune --out` JSON files.

Everything in SPEC after the line `# --- tuned methods ---` is replaced: one table per method that
has tune results in TUNE_DIR (all `METHOD*.json` files there are pooled and the lowest-scoring
trial wins, so extra grids can live in extra files such as `scrub_extra.json`), holding every
setting of the winner's config that differs from the method's defaults (the grid values and the
--set values the tuning ran with) and a comment giving the winner's validation forget/retain
accuracy. `--combos` adds BASE+spotter tables with the base's
tuned settings plus Spotter's terms (`--spotter-terms`, default: the fashion-mnist preset's).

    python benchmarks/tuned_sections.py runs/tune_fm benchmarks/fm_methods.toml --combos all
    python benchmarks/tuned_sections.py runs/tune_fm benchmarks/fashion_mnist.toml \\
        --combos grad_ascent,finetune,salun
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from spotter import methods

MARKER = "# --- tuned methods ---"
ORDER = (
    "finetune", "random_label", "grad_ascent", "neggrad_plus", "boundary_shrink", "boundary_expand", "salun",
    "l1_sparse", "scrub", "bad_teacher", "unsir", "delete", "unsc", "scar",
)  # fmt: skip


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    text = str(v)
    for cast in (int, float):
        try:
            return repr(cast(text))
        except ValueError:
            pass
    return json.dumps(text)


def changed_settings(method: str, config: dict) -> dict:
    """The entries of a tuned config that differ from the method's defaults: the grid winner plus the
    --set values the tuning ran with (the tune JSON records the full config, not the command line)."""
    defaults = json.loads(json.dumps(dataclasses.asdict(methods.make_config(method))))
    return {k: v for k, v in config.items() if k != "seed" and defaults.get(k) != v}


def method_tables(tune_dir: Path, combos: set[str], terms: dict[str, float]) -> str:
    out = []
    for method in ORDER:
        # each file's config is its best trial's, so the overall winner is the best file's config
        candidates, n_trials = [], 0
        for f in sorted(tune_dir.glob(f"{method}*.json")):
            r = json.loads(f.read_text())
            if r.get("method") != method:  # e.g. grad_ascent.json vs a grad_ascent+spotter file
                continue
            best = min(r["trials"], key=lambda t: t["score"])
            candidates.append((best["score"], best, r["config"]))
            n_trials += len(r["trials"])
        if not candidates:
            continue
        _, best, config = min(candidates, key=lambda c: c[0])
        body = "".join(f"{k} = {toml_value(v)}\n" for k, v in changed_settings(method, config).items())
        body = body or "# (the method's defaults won)\n"
        note = f"val forget {best['forget_acc']:.2f}, val retain {best['retain_acc']:.2f}, best of {n_trials}"
        out.append(f"[methods.{method}]  # tuned: {note}\n{body}")
        if "all" in combos or method in combos:
            extra = "".join(f"spotter_{k} = {toml_value(v)}\n" for k, v in terms.items())
            out.append(f'[methods."{method}+spotter"]\n{body}{extra}')
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tune_dir", type=Path)
    p.add_argument("spec", type=Path)
    p.add_argument("--combos", default="", help="comma-separated bases for BASE+spotter rows, or 'all'")
    p.add_argument("--spotter-terms", default='{"temperature": 2.0, "lambda2": 1.25}', help="JSON")
    args = p.parse_args()
    text = args.spec.read_text()
    if MARKER not in text:
        raise SystemExit(f"{args.spec} has no line {MARKER!r} after which the tuned tables go")
    head = text[: text.index(MARKER) + len(MARKER)]
    combos = {c for c in args.combos.split(",") if c}
    tables = method_tables(args.tune_dir, combos, json.loads(args.spotter_terms))
    args.spec.write_text(f"{head}\n\n{tables}")
    print(f"{args.spec}: {tables.count('[methods.')} tuned tables")


if __name__ == "__main__":
    main()
