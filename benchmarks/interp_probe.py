"""Development probe: how do forgetting and retain damage trade along the straight line from the
original model to an unlearned one?

Loads a model that `auto_probe.py --save DIR` wrote, builds the same context (SPEC's job for
--forget, cached original and retrained models) and measures, for each t of --t, the weights
original + t·(unlearned − original) (every float tensor, BatchNorm's running statistics included):
per-class test accuracy change against the original, test forget accuracy, PRA (cosine, l2, scaled
at K 5 and 20) and the forget accuracy after BatchNorm's statistics are re-estimated on 1,000
retain images (with --relearn also the bench's reduced relearning grid: does the distance from the
original buy resistance?). A diagnostic on real test images: if a shorter step forgets as well and costs the
retain classes less, a retain-free line search along it is worth building.

    python benchmarks/interp_probe.py benchmarks/dev_inversion.toml --forget 1 \
        --load runs/models/s5-cpu-1-0.safetensors --t 0.5,0.7,0.85,1 --out runs/interp.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import logging

import torch
from auto_probe import GAP_KEYS, after_reestimate, context_for, per_class  # a sibling script

from spotter.audit.checks import pra_report
from spotter.evaluation.gap import decided_gap
from spotter.evaluation.relearn_grid import RelearnGridConfig, relearn_grid
from spotter.training.checkpoint import load_model


def interpolate(original: torch.nn.Module, unlearned: torch.nn.Module, t: float) -> torch.nn.Module:
    """original + t·(unlearned − original) over every float tensor of the state (integer buffers,
    e.g. BatchNorm's batch counter, are the unlearned model's)."""
    model = copy.deepcopy(unlearned)
    a, b = original.state_dict(), unlearned.state_dict()
    model.load_state_dict({k: (a[k] + t * (b[k] - a[k])) if b[k].is_floating_point() else b[k] for k in b})
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec")
    p.add_argument("--forget", default="0")
    p.add_argument("--load", required=True, help="an unlearned model written by auto_probe.py --save")
    p.add_argument("--t", default="0.5,0.7,0.85,1", help="comma-separated steps along the line")
    p.add_argument("--out", default="runs/interp_probe.jsonl")
    p.add_argument("--relearn", action="store_true", help="also the reduced relearning grid's worst gap")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    forget, ctx, _ = context_for(args.spec, args.forget)
    original = ctx.models["original"].eval()
    unlearned, _, _ = load_model(args.load, expect=ctx.spec)
    base = per_class(original, ctx)
    grid = RelearnGridConfig.reduced()
    retrained_grid = (
        relearn_grid(ctx.models["retrained"], ctx.splits, grid, ctx.device) if args.relearn else None
    )
    for t in (float(v) for v in args.t.split(",")):
        model = interpolate(original, unlearned, t).eval()
        row, feats, _ = ctx.shared.evaluator.measure(model)
        pra = pra_report(ctx.shared, model, feats)
        delta = [round(v - b, 1) for v, b in zip(per_class(model, ctx), base, strict=True)]
        retain = [d for c, d in enumerate(delta) if c not in forget]
        out = {
            "load": args.load,
            "forget": forget,
            "t": t,
            "test_forget_acc": round(row["test_forget_acc"], 2),
            "forget_acc": round(row["forget_acc"], 2),
            "delta_retain": round(sum(retain) / len(retain), 2),
            "worst": min(retain),
            "per_class_delta": delta,
            "reestimated_forget_acc": [after_reestimate(model, ctx)[c] for c in forget],
            "pra": {"shots": pra["shots"], **{v: pra["variants"][v]["forget_acc"] for v in pra["variants"]}},
        }
        if retrained_grid is not None:
            weights = (len(ctx.splits.test_forget), len(ctx.splits.test_retain))
            gap = decided_gap(relearn_grid(model, ctx.splits, grid, ctx.device), retrained_grid, weights)
            out["relearn_gap"] = {k: gap[k] for k in GAP_KEYS}
        with open(args.out, "a") as fh:
            fh.write(json.dumps(out) + "\n")
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
