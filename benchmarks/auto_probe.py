"""Development probe for spotter_auto: one context of a bench spec, a few settings, fast measures.

Builds the context of SPEC's first job for --forget (cached original and retrained models), runs
spotter_auto once per JSON object of overrides and appends a row per setting to --out: per-class
test accuracy of the result and after every round (a diagnostic the method never sees: it reads
no retain data), PRA (cosine, l2, scaled at K 5 and 20) and the time. Faster than a bench row (no
OU@ε sweep, MIA or relearning grid), for choosing what to run on the full sweep.

    python benchmarks/auto_probe.py benchmarks/dev_inversion.toml --forget 5 '{}' '{"lambda3_max": 4}'
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import torch

from spotter import methods
from spotter.audit.checks import pra_report
from spotter.bench.job import Context
from spotter.bench.spec import load_spec
from spotter.methods import spotter_auto
from spotter.training.inference import predict


def per_class(model: torch.nn.Module, ctx: Context) -> list[float]:
    s = ctx.splits
    x = torch.cat([s.test_retain.x, s.test_forget.x])
    y = torch.cat([s.test_retain.y, s.test_forget.y])
    pred = predict(model, x, device=ctx.device).argmax(1)
    return [round(float((pred[y == c] == c).float().mean()) * 100, 1) for c in range(ctx.info.num_classes)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec")
    p.add_argument("settings", nargs="*", help="JSON objects of spotter_auto overrides")
    p.add_argument("--forget", default="0", help="comma-separated forget classes of a spec context")
    p.add_argument("--out", default="runs/auto_probe.jsonl")
    p.add_argument("--tag", default="", help="a name for the rows (the code version)")
    args = p.parse_intermixed_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    forget = [int(c) for c in args.forget.split(",")]
    jobs = [j for j in load_spec(args.spec).jobs if list(j["config"]["data"]["forget"]) == forget]
    if not jobs:
        raise SystemExit(f"no context of {args.spec} forgets {forget}")
    ctx = Context(jobs[0]["config"], "cpu", None, None)
    original = ctx.models["original"]
    base = per_class(original, ctx)
    print("original", base, flush=True)
    rounds: list[list[float]] = []
    check = spotter_auto.strongest_attack

    def watched(student, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        rounds.append(per_class(student, ctx))  # the per-round diagnostic
        print(
            "round", len(rounds), [round(v - b, 1) for v, b in zip(rounds[-1], base, strict=True)], flush=True
        )
        return check(student, *a, **k)

    spotter_auto.strongest_attack = watched
    for text in args.settings or ["{}"]:
        rounds.clear()
        cfg = methods.make_config("spotter_auto", json.loads(text), None)
        t0 = time.time()
        model = methods.run("spotter_auto", original, ctx.splits, cfg)
        seconds = time.time() - t0
        row, feats, _ = ctx.shared.evaluator.measure(model.eval())
        pra = pra_report(ctx.shared, model, feats)
        final = per_class(model, ctx)
        delta = [round(v - b, 1) for v, b in zip(final, base, strict=True)]
        retain = [d for c, d in enumerate(delta) if c not in forget]
        out = {
            "tag": args.tag,
            "forget": forget,
            "settings": json.loads(text),
            "time_s": round(seconds, 1),
            "test_forget_acc": row["test_forget_acc"],
            "forget_acc": row["forget_acc"],
            "delta_retain": round(sum(retain) / len(retain), 2),
            "worst": min(retain),
            "per_class_delta": delta,
            "pra": {"shots": pra["shots"], **{v: pra["variants"][v]["forget_acc"] for v in pra["variants"]}},
            "rounds": [[round(v - b, 1) for v, b in zip(r, base, strict=True)] for r in rounds],
            "history": [
                {k: (round(v, 3) if isinstance(v, float) else v) for k, v in h.items()}
                for h in getattr(model, "unlearn_history", []) or []
            ],
        }
        with open(args.out, "a") as fh:
            fh.write(json.dumps(out) + "\n")
        print(json.dumps({k: out[k] for k in ("settings", "time_s", "test_forget_acc", "delta_retain",
                                               "worst", "per_class_delta", "pra")}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
