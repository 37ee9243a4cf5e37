"""`spotter demo`: original + retrained (cached) + the methods asked for, evaluated side by side.

By default two rows of unlearning: the paper's Spotter as its authors released it (`spotter` with
the `authors` preset) and ours (`spotter_auto`, no preset: it calibrates itself), so a user sees
both on the same models."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spotter import methods
from spotter.data import DataConfig, prepare
from spotter.evaluation.evaluator import EvalConfig, Evaluator, metric_code_digest
from spotter.io import (
    atomic_write,
    cached_json,
    check_writable,
    digest,
    file_digest,
    git_revision,
    write_json,
)
from spotter.models import model_spec
from spotter.progress import task
from spotter.report.markdown import markdown
from spotter.training.checkpoint import save_model
from spotter.training.device import resolve_device
from spotter.training.fit import TrainConfig
from spotter.training.zoo import default_cache_dir, reference_model

log = logging.getLogger("spotter")


@dataclass
class DemoConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: str = "resnet18"
    width: int = 16  # CPU-sized; 64 is the paper's model
    train: TrainConfig = field(default_factory=TrainConfig)
    # NAME or NAME:PRESET per row; docs/method.md names the presets
    methods: tuple[str, ...] = ("spotter:authors", "spotter_auto")
    preset: str | None = None  # for every listed method without its own :PRESET
    overrides: dict[str, Any] = field(default_factory=dict)
    protocol: str = "full"  # "retain-free" hides every retain split from the method
    eval: EvalConfig = field(default_factory=EvalConfig)
    device: str = "auto"
    seed: int = 0  # unlearning seed
    cache_dir: str | None = None
    out: str = "runs/demo"


def run_demo(cfg: DemoConfig) -> list[dict[str, Any]]:
    """Original + retrained (cached) + one method, evaluated side by side; writes results.json/.md."""
    if cfg.protocol not in methods.PROTOCOLS:
        raise ValueError(f"unknown protocol {cfg.protocol!r}; valid choices: {', '.join(methods.PROTOCOLS)}")
    out = check_writable(cfg.out)
    device = resolve_device(cfg.device)
    _check_overrides(cfg)
    runs = [_method_config(cfg, item) for item in cfg.methods]  # (row name, method, config)
    if not runs:
        raise ValueError("no method to run; give --method NAME[:PRESET][,NAME...], e.g. spotter_auto")
    splits, info = prepare(cfg.data)
    spec = model_spec(info, cfg.model, cfg.width)
    t_start = time.time()
    original, meta_o = reference_model("original", info.name, splits, spec, cfg.train, cfg.cache_dir, device)
    retrained, meta_r = reference_model(
        "retrained", info.name, splits, spec, cfg.train, cfg.cache_dir, device
    )
    # Neighbourhoods and the reference models' rows are deterministic functions of the model
    # files, the split, the evaluation settings and the metric code: cache them, so a re-run (or a
    # new method setting) only pays for the unlearned model.
    evals = Path(cfg.cache_dir or default_cache_dir()) / "evals"
    base_key = [file_digest(meta_o["path"]), asdict(cfg.eval), cfg.data.split_key(), metric_code_digest()]
    evaluator = Evaluator(original, splits, cfg.eval, evals / f"neighbours-{digest(base_key)}.safetensors")
    unlearned = []
    for name, method, method_cfg in runs:
        log.info("unlearning with %s", name)
        t0 = time.time()
        model = methods.run(method, original, splits, method_cfg, protocol=cfg.protocol)
        unlearned.append((name, method, method_cfg, model, time.time() - t0))
    common = {
        "dataset": info.name,
        "forget_classes": list(splits.forget_classes),
        "arch": spec.to_dict(),
        "train": asdict(cfg.train),
        "eval": asdict(cfg.eval),
        "git": git_revision(),
    }
    models = (
        ("original", original, meta_o.get("train_seconds"), {"checkpoint": meta_o["path"]}),
        ("retrained", retrained, meta_r.get("train_seconds"), {"checkpoint": meta_r["path"]}),
        *((name, model, seconds, {
            "method": method, "method_config": asdict(method_cfg), "protocol": cfg.protocol,
            "history": getattr(model, "unlearn_history", None),
        }) for name, method, method_cfg, model, seconds in unlearned),
    )  # fmt: skip
    rows = [
        {"model": name, **measures, "time_s": seconds, **extra, **common}
        for (name, _, seconds, extra), measures in zip(
            models, _measure(models, evaluator, evals, base_key), strict=True
        )
    ]
    # the unlearned models too, so `spotter eval` / `spotter audit` can probe them later
    for name, method, method_cfg, model, seconds in unlearned:
        save_model(
            out / f"{checkpoint_stem(name)}.safetensors",
            model,
            spec,
            {
                "method": method,
                "method_config": asdict(method_cfg),
                "forget_classes": list(splits.forget_classes),
                "unlearn_seconds": seconds,
            },
        )
    write_json(out / "results.json", rows)
    table = markdown(rows) + "\n"
    atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(table))
    log.info("demo finished in %.0fs; results in %s", time.time() - t_start, out)
    return rows


def _measure(models: tuple, evaluator: Evaluator, evals: Path, base_key: list) -> list[dict[str, Any]]:
    """The evaluator's row of each model; the reference models' rows come from (and go to) the cache."""
    out = []
    for name, model, _, extra in models:
        with task(f"evaluating {name} (accuracies, OU@ε, PRA)"):
            if name in ("original", "retrained"):
                key = digest([*base_key, file_digest(extra["checkpoint"])])
                out.append(cached_json(evals / f"row-{name}-{key}.json", lambda m=model: evaluator(m)))
            else:
                out.append(evaluator(model))
    return out


def _check_overrides(cfg: DemoConfig) -> None:
    """Each --set key applies to every listed method that has it; a key none has is an error."""
    known: set[str] = set()
    for item in cfg.methods:
        known |= {f.name for f in dataclasses.fields(methods.get(item.partition(":")[0]).Config)}
    unknown = sorted(set(cfg.overrides) - known)
    if unknown:
        raise ValueError(
            f"unknown setting {unknown[0]!r} for {', '.join(cfg.methods)}; valid keys: {', '.join(sorted(known))}"
        )


def checkpoint_stem(name: str) -> str:
    """The file name of a row's checkpoint: `spotter:authors` -> `spotter-authors`."""
    return name.replace(":", "-")


def _method_config(cfg: DemoConfig, item: str) -> tuple[str, str, Any]:
    """(row name, method, config) of one `NAME[:PRESET]` item: its own preset, else --preset, else
    the one the method ships for the dataset; then the overrides."""
    method, _, own = item.partition(":")
    preset = own or cfg.preset or methods.default_preset(method, cfg.data.dataset)
    if preset is not None and not own and cfg.preset is None:
        log.info(
            "%s: using the %r preset shipped for %s (`spotter list presets` shows them all)",
            method,
            preset,
            cfg.data.dataset,
        )
    known = {f.name for f in dataclasses.fields(methods.get(method).Config)}
    own_overrides = {k: v for k, v in cfg.overrides.items() if k in known}
    method_cfg = methods.make_config(method, own_overrides, preset)
    method_cfg = methods.with_seed(method_cfg, cfg.seed)
    return (f"{method}:{preset}" if own else method), method, method_cfg
