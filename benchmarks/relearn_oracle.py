"""Where does a forgotten class live? Oracle rebuilds of the original's last layers, with retain data.

A diagnostic for the relearning issue, not a method: it reads retain data, which no retain-free
method may. For one context of a bench spec it re-initialises the original's last layers and
trains them on retain training images (the earlier layers frozen, features cached once), then runs
the bench's reduced relearning grid on the result and reports the gap to the retrained model with
the option to decline (spotter.evaluation.gap). If a rebuild of the layers a retain-free method
trains (`spotter_auto`'s `train_last = 0.75` is about the last stage) still relearns in 100 steps,
the class lives in the frozen stages and no change to the last stage can remove it; if it does
not, the last stage can be made safe and the question is the data that rebuilds it.

Variants: `head` (the linear head re-initialised), `last` (stage 4 and the head), `last2` (stages
3 and 4 and the head), `keep-last` (stage 4 and the head trained from the original's weights, the
forget row reset: fine-tuning near the original, for contrast). Which part of a rebuilt head
matters: `reset` (the original with `spotter_auto`'s forget-row reset alone), `head-retain` (the
rebuilt head's retain rows, the forget rows reset as `spotter_auto` resets them), `head-forget` (the
original's head with the rebuilt head's forget rows).

    python benchmarks/relearn_oracle.py benchmarks/fashion_mnist_classes.toml --forget 1 \
        --variants head,last,last2 --out benchmarks/results/dev_probe/oracle_2026-12-08.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
from auto_probe import context_for, per_class  # a sibling script
from torch import nn

from spotter.data import to_float
from spotter.evaluation.gap import decided_gap
from spotter.evaluation.relearn_grid import RelearnGridConfig, relearn_grid
from spotter.methods.spotter_auto import FrozenTrunk, reset_forget_rows

VARIANTS = ("head", "last", "last2", "keep-last", "reset", "head-retain", "head-forget")


def _reinit(module: nn.Module, generator_seed: int) -> None:
    torch.manual_seed(generator_seed)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):  # BatchNorm's running statistics too
            m.reset_parameters()


def _reset_rows(model: nn.Module, ctx) -> None:  # noqa: ANN001
    """spotter_auto's forget-row reset, against the mean feature of 1000 retain training images."""
    pick = torch.randperm(len(ctx.splits.retain.y), generator=torch.Generator().manual_seed(3))[:1000]
    with torch.no_grad():
        feats = model.features(to_float(ctx.splits.retain.x[pick]))
        reset_forget_rows(model.head, tuple(ctx.splits.forget_classes), feats)


def rebuild(original: nn.Module, ctx, variant: str, epochs: int, count: int, seed: int) -> nn.Module:  # noqa: ANN001
    """A copy of `original` whose last layers (per `variant`) are trained on `count` retain images."""
    if variant == "reset":
        model = copy.deepcopy(original).eval()
        _reset_rows(model, ctx)
        return model
    if variant in ("head-retain", "head-forget"):
        rebuilt = rebuild(original, ctx, "head", epochs, count, seed)
        model = copy.deepcopy(original).eval()
        forget = list(ctx.splits.forget_classes)
        retain = [c for c in range(model.head.out_features) if c not in forget]
        rows = retain if variant == "head-retain" else forget
        with torch.no_grad():
            model.head.weight[rows] = rebuilt.head.weight[rows]
            model.head.bias[rows] = rebuilt.head.bias[rows]
        if variant == "head-retain":
            _reset_rows(model, ctx)
        return model
    model = copy.deepcopy(original).eval()
    b = model.backbone
    frozen_upto = {"head": 4, "last": 3, "keep-last": 3, "last2": 2}[variant]
    trained = [model.head, *(b.layer1, b.layer2, b.layer3, b.layer4)[frozen_upto:]]
    if variant != "keep-last":
        for i, m in enumerate(trained):
            _reinit(m, seed + i)
    else:  # the forget rows as a retrained model has them is the job of training; start them at 0
        with torch.no_grad():
            for c in ctx.splits.forget_classes:
                model.head.weight[c].zero_()
                model.head.bias[c].fill_(-5.0)
    g = torch.Generator().manual_seed(seed)
    retain = ctx.splits.retain
    pick = torch.randperm(len(retain.y), generator=g)[:count]
    x_all, y_all = to_float(retain.x[pick]), retain.y[pick]
    with torch.no_grad():
        # the frozen stages' output once: stem (stage 0) and layers up to `frozen_upto`
        cached = torch.cat([
            FrozenTrunk.run_stages(b, (x - model.mean) / model.std, 0, frozen_upto + 1)
            for x in x_all.split(512)
        ])  # fmt: skip
    params = [p for m in trained for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = epochs * math.ceil(len(cached) / 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=steps, pct_start=0.2)
    stages = (b.layer1, b.layer2, b.layer3, b.layer4)[frozen_upto:]
    for epoch in range(epochs):
        for m in stages:
            m.train()
        order = torch.randperm(len(cached), generator=g)
        total = 0.0
        for i in range(0, len(order), 128):
            idx = order[i : i + 128]
            logits = model.head(FrozenTrunk.run_stages(b, cached[idx], frozen_upto + 1))
            loss = nn.functional.cross_entropy(logits, y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        print(f"{variant} epoch {epoch + 1}: loss {total / len(order):.4f}", flush=True)
    return model.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec")
    p.add_argument("--forget", default="0")
    p.add_argument("--seed", type=int, default=0, help="the context's training seed")
    p.add_argument("--variants", default="head,last,last2", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--images", type=int, default=30000, help="retain training images the rebuild reads")
    p.add_argument("--out", default="runs/relearn_oracle.jsonl")
    args = p.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variant(s) {bad}; valid: {', '.join(VARIANTS)}")
    forget, ctx, _ = context_for(args.spec, args.forget, args.seed)
    original, retrained = ctx.models["original"], ctx.models["retrained"]
    base = per_class(original, ctx)
    weights = (len(ctx.splits.test_forget), len(ctx.splits.test_retain))
    t0 = time.time()
    retrained_grid = relearn_grid(retrained, ctx.splits, RelearnGridConfig.reduced(), ctx.device)
    print(f"retrained grid {time.time() - t0:.0f} s", flush=True)
    for variant in variants:
        t0 = time.time()
        model = rebuild(original, ctx, variant, args.epochs, args.images, seed=17)
        seconds = time.time() - t0
        final = per_class(model, ctx)
        grid = relearn_grid(model, ctx.splits, RelearnGridConfig.reduced(), ctx.device)
        gap = decided_gap(grid, retrained_grid, weights)
        retain = [c for c in range(len(base)) if c not in forget]
        row = {
            "probe": "relearn_oracle",
            "forget": forget,
            "train_seed": args.seed,
            "variant": variant,
            "epochs": args.epochs,
            "images": args.images,
            "per_class": final,
            "delta": [round(v - b, 1) for v, b in zip(final, base, strict=True)],
            "test_forget": round(sum(final[c] for c in forget) / len(forget), 1),
            "delta_retain_mean": round(sum(final[c] - base[c] for c in retain) / len(retain), 2),
            "worst_class": round(min(final[c] - base[c] for c in retain), 1),
            "gap": {k: gap[k] for k in ("budgets", "worst", "worst_attacker", "raw_worst")},
            "relearn_grid": grid,
            "retrained_relearn_grid": retrained_grid,
            "rebuild_s": round(seconds, 1),
        }
        print(json.dumps({k: row[k] for k in ("variant", "test_forget", "delta_retain_mean", "worst_class", "gap")}),
              flush=True)  # fmt: skip
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
