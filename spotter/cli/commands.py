"""What each CLI subcommand does, given parsed arguments (kept apart from argparse set-up)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

from spotter import methods
from spotter.cli.demo import DemoConfig, run_demo
from spotter.config import apply_overrides
from spotter.data import DATASETS, DataConfig, prepare
from spotter.evaluation.evaluator import EvalConfig, Evaluator
from spotter.io import check_output_file, check_writable, write_json
from spotter.models import MODELS, default_width, model_spec
from spotter.report.markdown import markdown
from spotter.training import distributed
from spotter.training.checkpoint import load_model, save_model
from spotter.training.device import resolve_device
from spotter.training.fit import FitOptions, TrainConfig
from spotter.training.zoo import KINDS, reference_model

log = logging.getLogger("spotter")


def parse_classes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in str(text).split(",") if t.strip())
    except ValueError:
        raise ValueError(
            f"--forget {text!r} is not a comma-separated list of class ids, e.g. 0 or 3,5"
        ) from None


def model_width(name: str, width: int | None) -> int | None:
    """--width, else 16 for resnet18 (CPU-sized; 64 is the paper's), else the model's own default."""
    if width:
        return width
    if name == "resnet18":
        return 16
    return default_width(name) if name in MODELS else None


def data_config(args: argparse.Namespace) -> DataConfig:
    if args.shots < 1:
        raise ValueError(f"--shots must be >= 1, got {args.shots}")
    return DataConfig(
        args.dataset,
        args.data_dir,
        parse_classes(args.forget),
        args.val_size,
        args.shots,
        args.split_seed,
        surrogate=getattr(args, "surrogate", None),
        surrogate_dir=getattr(args, "surrogate_dir", None),
        surrogate_size=getattr(args, "surrogate_size", 5000),
    )


def train_config(args: argparse.Namespace) -> TrainConfig:
    cfg = TrainConfig.paper() if args.recipe == "paper" else TrainConfig()
    cfg = dataclasses.replace(cfg, seed=args.seed)
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    return apply_overrides(cfg, args.train_set)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.protocol not in methods.PROTOCOLS:
        raise ValueError(f"unknown protocol {args.protocol!r}; valid choices: {', '.join(methods.PROTOCOLS)}")
    width = model_width(args.model, args.width)
    cfg = DemoConfig(
        data=data_config(args),
        model=args.model,
        width=width,
        train=train_config(args),
        methods=demo_methods(args.method, args.preset),
        preset=args.preset,
        overrides=dict(_pairs(args.overrides)),
        protocol=args.protocol,
        eval=apply_overrides(EvalConfig(), args.eval_set),
        device=args.device,
        seed=args.seed,
        cache_dir=args.cache_dir,
        out=args.out,
    )
    t0 = time.time()
    rows = run_demo(cfg)
    print(markdown(rows))
    print(
        f"\n{len(rows)} models evaluated in {time.time() - t0:.0f}s; rows written to {Path(args.out) / 'results.json'}"
    )
    return 0


def demo_methods(method: str | None, preset: str | None) -> tuple[str, ...]:
    """The demo's rows: --method's comma-separated NAME[:PRESET] items; without --method, the paper's
    Spotter beside ours, or Spotter alone when --preset names one of its presets."""
    if method is None:
        return ("spotter",) if preset else DemoConfig.methods
    return tuple(m.strip() for m in method.split(",") if m.strip())


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    from spotter.config import parse_overrides

    return list(parse_overrides(items).items())


def cmd_train(args: argparse.Namespace) -> int:
    if args.kind not in KINDS:
        raise ValueError(f"unknown --kind {args.kind!r}; valid choices: {', '.join(KINDS)}")
    device = resolve_device(args.device)
    check_output_file(args.out)
    splits, info = prepare(data_config(args))
    spec = model_spec(info, args.model, model_width(args.model, args.width))
    options = FitOptions(compile=getattr(args, "compile", False))
    model, meta = reference_model(
        args.kind, info.name, splits, spec, train_config(args), args.cache_dir, device, options
    )
    if not distributed.is_main():  # under torchrun rank 0 writes and reports
        return 0
    save_model(args.out, model, spec, {k: v for k, v in meta.items() if k not in ("path", "cached")})
    print(
        f"{args.kind} model written to {args.out} (validation accuracy of the selected epoch: "
        f"{max((e['val_acc'] for e in meta.get('history', [])), default=float('nan')):.2f}%)"
    )
    return 0


def cmd_unlearn(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    check_output_file(args.out)
    splits, info = prepare(data_config(args))
    model, spec, _ = load_model(
        args.checkpoint, expect=model_spec(info, *_arch(args.checkpoint)), device=device
    )
    preset = args.preset or methods.default_preset(args.method, args.dataset)
    cfg = methods.make_config(args.method, dict(_pairs(args.overrides)), preset)
    cfg = methods.with_seed(cfg, args.seed)
    t0 = time.time()
    unlearned = methods.run(args.method, model, splits, cfg, protocol=args.protocol)
    seconds = time.time() - t0
    if not distributed.is_main():  # under torchrun rank 0 writes and reports
        return 0
    meta = {
        "method": args.method,
        "method_config": dataclasses.asdict(cfg),
        "forget_classes": list(splits.forget_classes),
        "source": str(args.checkpoint),
        "unlearn_seconds": seconds,
    }
    save_model(args.out, unlearned, spec, meta)
    print(
        f"{args.method} unlearned classes {list(splits.forget_classes)} in {seconds:.0f}s; written to {args.out}"
    )
    return 0


def _arch(path: str) -> tuple[str, int]:
    """(model name, width) stored in a checkpoint, so the dataset check can use them."""
    from spotter.training.checkpoint import load_tensors, model_meta

    spec = model_meta(path, load_tensors(path)[1])
    return spec.name, spec.width


def cmd_eval(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if args.out:
        check_output_file(args.out)
    splits, info = prepare(data_config(args))
    expect = model_spec(info, *_arch(args.original))
    original, _, _ = load_model(args.original, expect=expect, device=device)
    # load every checkpoint before the (slow) neighbourhoods, so a wrong file fails at once
    loaded = [(path, *load_model(path, expect=expect, device=device)[::2]) for path in args.checkpoints]
    evaluator = Evaluator(original, splits, apply_overrides(EvalConfig(), args.eval_set))
    rows = []
    for path, model, meta in loaded:
        rows.append(
            {
                "model": Path(path).stem,
                **evaluator(model),
                "time_s": meta.get("unlearn_seconds"),
                "checkpoint": str(path),
                "forget_classes": list(splits.forget_classes),
            }
        )
    print(markdown(rows))
    if args.out:
        write_json(args.out, rows)
        print(f"rows written to {args.out}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from spotter.audit.context import audit_config
    from spotter.audit.report import summary_table, write_report
    from spotter.audit.run import audit
    from spotter.training.foreign import load_classifier

    device = resolve_device(args.device)
    out = check_writable(args.out)
    cfg = audit_config(list(args.audit_set) + [f"eval.{item}" for item in args.eval_set])
    splits, info = prepare(data_config(args))
    paths = {"original": args.original, "retrained": args.retrained, "unlearned": args.unlearned}
    paths = {name: path for name, path in paths.items() if path}
    models = {
        name: load_classifier(path, info, args.model, args.width, args.input_norm, device)
        for name, path in paths.items()
    }
    t0 = time.time()
    result = audit(models["original"], models["unlearned"], splits, models.get("retrained"), cfg, device)
    written = write_report(result, out, {name: str(path) for name, path in paths.items()})
    print(summary_table(result))
    print(
        f"\naudit finished in {time.time() - t0:.0f}s; report in {written['html']} (the same in "
        f"{written['md'].name}; {len(written)} files)"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "methods":
        for name in methods.available():
            module = methods.get(name)
            summary = (module.__doc__ or "").strip().splitlines()[0]
            print(f"{name:16s} reads: {', '.join(module.NEEDS):24s} {summary}")
        bases = [n.removesuffix("+spotter") for n in methods.combinations()]
        print(f"\nBASE+spotter adds Spotter's terms to any of: {', '.join(bases)}")
    elif args.what == "datasets":
        print("\n".join(DATASETS))
    elif args.what == "models":
        for name in sorted(MODELS):
            print(f"{name:10s} default width {default_width(name)}")
    else:
        for name in methods.available():
            presets = getattr(methods.get(name), "PRESETS", {})
            for preset, values in presets.items():
                print(f"{name}:{preset} {json.dumps(values)}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from spotter.methods.tune import default_grid, grid_points, parse_grid, tune

    device = resolve_device(args.device)
    if args.out:
        check_output_file(args.out)
    cfg = methods.make_config(args.tune_method, dict(_pairs(args.overrides)), args.preset)
    cfg = methods.with_seed(cfg, args.seed)
    grid_points(cfg, parse_grid(args.grid) or default_grid(args.tune_method, cfg))  # before any training
    splits, info = prepare(data_config(args))
    spec = model_spec(info, args.model, model_width(args.model, args.width))
    train = train_config(args)
    original, _ = reference_model("original", info.name, splits, spec, train, args.cache_dir, device)
    retrained, _ = reference_model("retrained", info.name, splits, spec, train, args.cache_dir, device)
    result = tune(args.tune_method, original, retrained, splits, cfg, parse_grid(args.grid), args.protocol)
    keys = [k for k in result.trials[0] if k not in ("forget_acc", "retain_acc", "time_s", "score")]
    print(
        f"reference (validation): retrained forget {result.reference['forget_acc']:.2f}, "
        f"original retain {result.reference['retain_acc']:.2f}"
    )
    print("| " + " | ".join([*keys, "forget", "retain", "score", "time s"]) + " |")
    print("|" + "---|" * (len(keys) + 4))
    for t in result.trials:
        cells = [str(t[k]) for k in keys] + [
            f"{t['forget_acc']:.2f}",
            f"{t['retain_acc']:.2f}",
            f"{t['score']:.2f}",
            f"{t['time_s']:.0f}",
        ]
        print("| " + " | ".join(cells) + " |")
    best = " ".join(f"{k}={v}" for k, v in result.best.items())
    print(f"\nbest: spotter unlearn --method {args.tune_method} --set {best}")
    if args.out:
        write_json(args.out, result.to_dict())
        print(f"trials written to {args.out}")
    return 0


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{flag}: expected comma-separated integers, got {text!r}")
    return values


def _bench_selection(args: argparse.Namespace):  # noqa: ANN202
    from spotter.bench.runner import Selection

    labels = tuple(v.strip() for v in args.methods.split(",") if v.strip()) if args.methods else None
    forget = tuple(tuple(sorted(_int_list(f, "--forget"))) for f in args.forget) if args.forget else None
    seeds = _int_list(args.seeds, "--seeds") if args.seeds else None
    return Selection(labels, forget, seeds)


def _print_bench_status(args: argparse.Namespace, selection) -> int:  # noqa: ANN001
    from spotter.bench.runner import bench_status

    contexts = bench_status(args.spec, args.out, selection)
    kinds = ("fresh", "unverified", "stale", "missing")
    totals = dict.fromkeys(kinds, 0)
    for c in contexts:
        counts = {k: len(getattr(c, k)) for k in kinds}
        totals = {k: totals[k] + counts[k] for k in kinds}
        print(f"forget {c.forget} seed {c.seed}: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
        if c.missing:
            print(f"  missing: {', '.join(c.missing)}")
        if c.unverified:
            print(f"  unverified (written before code digests; counted as done): {', '.join(c.unverified)}")
        if c.diverged:
            print(f"  diverged at their settings (a row without numbers): {', '.join(c.diverged)}")
        for s in c.stale:
            print(f"  stale: {s}")
    summary = ", ".join(f"{n} {k}" for k, n in totals.items())
    print(f"{len(contexts)} contexts: {summary} rows in {args.out}")
    if totals["stale"]:
        print("`--rerun-stale` reruns the stale rows; without it they are kept and skipped")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from spotter.bench.runner import RESULTS, run_bench

    selection = _bench_selection(args)
    if args.status:
        return _print_bench_status(args, selection)
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    for d in devices or []:
        resolve_device(d)
    res = run_bench(args.spec, args.out, args.workers, devices, args.cache_dir, args.rerun_stale, selection)
    print(
        f"{res.total} jobs: {res.skipped} already done, {res.ran} run now in {res.seconds:.0f}s"
        f"{f', {len(res.failed)} failed' if res.failed else ''}; rows in {res.out / RESULTS}"
    )
    if res.stale:
        print(f"{len(res.stale)} stale row(s) kept (the code that computed them changed; --rerun-stale):")
        for label in res.stale:
            print(f"  stale: {label}")
    if res.unverified:
        print(f"{res.unverified} row(s) written before code digests were recorded: not checked")
    for label in res.diverged:
        print(f"  diverged: {label} (recorded as a row without numbers; the report lists it)")
    for label in res.failed:
        print(f"  failed: {label} (see the log above; rerun to retry)")
    print(f"render with: spotter report {res.out}")
    return 1 if res.failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from spotter.bench.provenance import stale_reason
    from spotter.report.render import render

    result = render(args.run_dir, stale=stale_reason, include_stale=args.include_stale)
    if result["note"]:
        print(result["note"])
    for section in result["sections"]:
        print(f"## {section['setting'].title}")
        print("\n".join(section["lines"]))
    print(f"\nreport written to {result['folder']} ({len(result['files'])} files; open report.html)")
    return 0


def dispatch(args: argparse.Namespace) -> int:
    return {
        "demo": cmd_demo,
        "train": cmd_train,
        "unlearn": cmd_unlearn,
        "eval": cmd_eval,
        "list": cmd_list,
        "tune": cmd_tune,
        "audit": cmd_audit,
        "bench": cmd_bench,
        "report": cmd_report,
    }[args.command](args)
