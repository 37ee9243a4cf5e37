"""Search Spotter's settings on the embedded default (Fashion-MNIST, width-16 ResNet-18).

Trains (or loads from the cache) the demo's original and retrained models, then runs Spotter
for each setting given as a JSON object on the command line and appends one row per setting to
--out (JSON lines), printing the foundation measures. Used to choose the `fashion-mnist` preset;
the settings tried and what each gave are recorded in benchmarks/README.md.

    python benchmarks/spotter_search.py --out runs/search.jsonl '{}' '{"lr": 1e-3}'
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict

from spotter import methods
from spotter.data import DataConfig, prepare
from spotter.evaluation.evaluator import EvalConfig, Evaluator
from spotter.models import model_spec
from spotter.report.markdown import markdown
from spotter.training.device import resolve_device
from spotter.training.fit import TrainConfig
from spotter.training.zoo import reference_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("settings", nargs="*", help="JSON objects of Spotter overrides")
    p.add_argument("--forget", default="0")
    p.add_argument("--epochs", type=int, default=TrainConfig().epochs, help="original/retrained epochs")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--preset", default=None)
    p.add_argument(
        "--seed", type=int, default=0, help="training and unlearning seed, as `spotter demo --seed`"
    )
    p.add_argument("--retain-limit", type=int, default=10000, help="retain_acc on a subset (speed)")
    p.add_argument("--references", action="store_true", help="also evaluate original and retrained")
    p.add_argument("--out", default="runs/search.jsonl")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda:N")
    args = p.parse_args()
    device = resolve_device(args.device)
    logging.basicConfig(level=logging.WARNING)
    data = DataConfig(forget=tuple(int(c) for c in args.forget.split(",")))
    splits, info = prepare(data)
    spec = model_spec(info, "resnet18", args.width)
    train = TrainConfig(epochs=args.epochs, seed=args.seed)
    original, _ = reference_model("original", info.name, splits, spec, train, device=device)
    evaluator = Evaluator(original, splits, EvalConfig(retain_limit=args.retain_limit))
    rows = []
    if args.references:
        retrained, _ = reference_model("retrained", info.name, splits, spec, train, device=device)
        rows += [{"model": "original", **evaluator(original)}, {"model": "retrained", **evaluator(retrained)}]
    for text in args.settings or ["{}"]:
        overrides = {"seed": args.seed, **json.loads(text)}
        cfg = methods.make_config("spotter", overrides, args.preset)
        t0 = time.time()
        model = methods.run("spotter", original, splits, cfg)
        row = {"model": f"spotter {text}", **evaluator(model), "time_s": time.time() - t0}
        row["config"] = asdict(cfg)
        row["forget_classes"] = list(splits.forget_classes)
        row["seed"] = args.seed
        rows.append(row)
        with open(args.out, "a") as fh:
            fh.write(json.dumps({k: v for k, v in row.items() if k != "pra_curve"}) + "\n")
        print(markdown([row]).splitlines()[-1], flush=True)
    print(markdown(rows))


if __name__ == "__main__":
    main()
