"""Development probe for BASE+spotter: the methods of a bench spec on one context, fast measures,
the original model only.

For each --label (a method table of SPEC, e.g. "finetune+spotter") it runs that method on the
context of SPEC that forgets --forget at train seed --seed and appends a row to --out: forget and
retain accuracy, per-class test accuracy, OU@ε and PRA (the Evaluator's row: no ε sweep, MIA or
relearning grid) and the time. JSON objects after the labels override method fields of every
label (one run per label and override). Unlike a bench job it never trains the retrained model,
so a cold model cache costs one training, not two.

    python benchmarks/plus_probe.py benchmarks/dev_plus.toml --forget 0 --seed 2 \
        --label finetune+spotter --out runs/plus.jsonl '{}' '{"spotter_grad_ratio": 1.0}'
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import torch

import spotter.bench.job as bench_job
from spotter import methods
from spotter.bench.spec import load_spec, set_fields


def _original_only(kind: str, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    if kind == "retrained":
        return None, {}
    return _reference_model(kind, *args, **kwargs)


_reference_model = bench_job.reference_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec")
    ap.add_argument("--forget", required=True, help="comma-separated forget classes of a context of SPEC")
    ap.add_argument("--seed", type=int, default=0, help="train seed of the context")
    ap.add_argument("--label", action="append", required=True, help="method table of SPEC (repeatable)")
    ap.add_argument("--out", required=True, help="JSON-lines file the rows are appended to")
    ap.add_argument("--tag", default="", help="free text stored in each row")
    ap.add_argument("overrides", nargs="*", default=["{}"], help="JSON objects of method fields")
    args = ap.parse_intermixed_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    forget = [int(c) for c in args.forget.split(",")]
    jobs = {
        j["config"]["label"]: j
        for j in load_spec(args.spec).jobs
        if list(j["config"]["data"]["forget"]) == forget and j["config"]["train"]["seed"] == args.seed
    }
    missing = [lab for lab in args.label if lab not in jobs]
    if missing:
        raise SystemExit(f"no job {missing} forgets {forget} at seed {args.seed}; labels: {sorted(jobs)}")
    bench_job.reference_model = _original_only
    first = jobs[args.label[0]]["config"]
    ctx = bench_job.Context(first, "cpu", None, None)
    for label in args.label:
        cfg = jobs[label]["config"]
        for text in args.overrides:
            extra = json.loads(text)
            method_cfg = methods.make_config(cfg["method"], None, cfg["preset"])
            method_cfg = set_fields(method_cfg, {**cfg["method_config"], **extra})
            torch.manual_seed(cfg["unlearn_seed"])
            t0 = time.time()
            model = methods.run(cfg["method"], ctx.models["original"], ctx.splits, method_cfg)
            seconds = time.time() - t0
            torch.manual_seed(cfg["eval"]["seed"])
            row, _, _ = ctx.shared.evaluator.measure(model.eval())
            keep = ("forget_acc", "test_forget_acc", "test_retain_acc", "per_class_test_acc", "ou_pgd",
                    "pra_forget_acc", "pra_scaled_forget_acc")  # fmt: skip
            out = {"label": label, "forget": forget, "seed": args.seed, "override": extra, "tag": args.tag,
                   "time_s": round(seconds, 1), **{k: row[k] for k in keep if k in row}}  # fmt: skip
            print(json.dumps(out), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
