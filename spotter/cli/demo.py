"""`spotter demo`: original + retrained (cached) + one method, evaluated side by side."""

from __future__ import annotations

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
    method: str = "spotter"
    preset: str | None = None
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
    method_cfg = _method_config(cfg)
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
    t0 = time.time()
    unlearned = methods.run(cfg.method, original, splits, method_cfg, protocol=cfg.protocol)
    unlearn_s = time.time() - t0
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
        (cfg.method, unlearned, unlearn_s, {
            "method_config": asdict(method_cfg), "protocol": cfg.protocol,
            "history": getattr(unlearned, "unlearn_history", None),
        }),
    )  # fmt: skip
    rows = [
        {"model": name, **measures, "time_s": seconds, **extra, **common}
        for (name, _, seconds, extra), measures in zip(
            models, _measure(models, evaluator, evals, base_key), strict=True
        )
    ]
    # the unlearned model too, so `spotter eval` / `spotter audit` can probe it later
    save_model(
        out / f"{cfg.method}.safetensors",
        unlearned,
        spec,
        {
            "method": cfg.method,
            "method_config": asdict(method_cfg),
            "forget_classes": list(splits.forget_classes),
            "unlearn_seconds": unlearn_s,
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
        t_eval = time.time()
        if name in ("original", "retrained"):
            key = digest([*base_key, file_digest(extra["checkpoint"])])
            out.append(cached_json(evals / f"row-{name}-{key}.json", lambda m=model: evaluator(m)))
        else:
            out.append(evaluator(model))
        log.info("evaluated %s in %.0fs", name, time.time() - t_eval)
    return out


def _method_config(cfg: DemoConfig) -> Any:
    """The method's config: the preset asked for, else the one shipped for the dataset, with overrides."""
    preset = cfg.preset or methods.default_preset(cfg.method, cfg.data.dataset)
    if preset is not None and cfg.preset is None:
        log.info(
            "%s: using the %r preset shipped for %s (--preset authors for the authors' released method; "
            "`spotter list presets` shows them all)",
            cfg.method,
            preset,
            cfg.data.dataset,
        )
    method_cfg = methods.make_config(cfg.method, cfg.overrides, preset)
    method_cfg = methods.with_seed(method_cfg, cfg.seed)
    return method_cfg
