"""One benchmark job: unlearn (or take a reference model) and measure it, returning its row.

A `Context` holds what jobs of the same (dataset, split, forget set, model, recipe, seed, evaluation)
share: the splits, the cached original and retrained models and the evaluation neighbourhoods.
Everything in it is seeded, so building it twice gives the same numbers.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spotter import methods
from spotter.audit.checks import mia_check, ou_sweep, pra_report
from spotter.audit.context import AuditConfig, Shared
from spotter.bench.provenance import code_digests
from spotter.bench.spec import set_fields
from spotter.bench.store import FEATURES, file_lock
from spotter.config import apply_overrides
from spotter.data import DataConfig, prepare
from spotter.evaluation.evaluator import EvalConfig
from spotter.evaluation.relearn import statistics_relearn
from spotter.evaluation.relearn_grid import RelearnGridConfig, relearn_grid
from spotter.io import atomic_write
from spotter.models import model_spec
from spotter.training.device import resolve_device
from spotter.training.fit import TrainConfig
from spotter.training.inference import predict
from spotter.training.zoo import cache_key, default_cache_dir, reference_model

log = logging.getLogger("spotter")

CHECKS = ("ou_sweep", "pra", "mia")  # besides the Evaluator's row: OU@ε vs ε, PRA vs K, MIA
STATISTICS_IMAGES = 1000  # the audit's largest statistics_images (docs/method.md, statistics relearning)


class Context:
    def __init__(
        self, config: dict[str, Any], device: str, cache_dir: str | None, data_dir: str | None
    ) -> None:
        self.device = resolve_device(device)
        d = config["data"]
        data = DataConfig(
            config["dataset"],
            data_dir,
            tuple(d["forget"]),
            d["val_size"],
            d["shots"],
            d["split_seed"],
            surrogate=d.get("surrogate"),
            surrogate_dir=d.get("surrogate_dir"),
            surrogate_size=d.get("surrogate_size", 5000),
        )
        self.splits, self.info = prepare(data)
        self.spec = model_spec(self.info, config["model"]["name"], config["model"]["width"])
        train = apply_overrides(TrainConfig(), config["train"])
        self.models, self.meta = {}, {}
        folder = Path(cache_dir) if cache_dir else default_cache_dir()
        for kind in ("original", "retrained"):
            digest, _ = cache_key(kind, self.info.name, self.splits, self.spec, train)
            with file_lock(folder / "models" / f"{self.info.name}-{kind}-{digest}.lock"):
                model, meta = reference_model(
                    kind, self.info.name, self.splits, self.spec, train, cache_dir, self.device
                )
            self.models[kind], self.meta[kind] = model, meta
        eval_cfg = apply_overrides(EvalConfig(), config["eval"])
        audit = apply_overrides(AuditConfig(), config["audit"])
        audit = dataclasses.replace(audit, eval=eval_cfg, checks=CHECKS)
        self.shared = Shared(self.models["original"], self.splits, audit, self.device)


def measure(ctx: Context, model: torch.nn.Module) -> dict[str, Any]:
    """The Evaluator's row plus OU@ε over ε, PRA over K, the reduced relearning grid, statistics
    relearning at STATISTICS_IMAGES retain images and the MIAs (audit checks)."""
    sh, s, dev = ctx.shared, ctx.splits, ctx.device
    model = model.to(dev).eval()
    row, feats, logits = sh.evaluator.measure(model)
    feats, logits = ({k: d[k] for k in ("forget", "test_forget", "test_retain")} for d in (feats, logits))
    row["ou_sweep"] = ou_sweep(sh, model)
    pra = pra_report(sh, model, feats)
    row["pra_shots"] = {
        "shots": pra["shots"],
        **{v: pra["variants"][v]["forget_acc"] for v in pra["variants"]},
    }
    # the reduced relearning grid (docs/method.md §9): summaries read the gap against the retrained row
    row["relearn_grid"] = relearn_grid(model, s, RelearnGridConfig.reduced(), dev)
    # relearning without a gradient step: BatchNorm statistics re-estimated on 1000 retain images
    stats = statistics_relearn(model, s, (STATISTICS_IMAGES,), sh.cfg.seed, dev)
    row["statistics_forget_acc"] = stats["test_forget_acc"][-1]
    row["statistics_retain_acc"] = stats["test_retain_acc"][-1]
    try:
        row.update(mia_check(sh, model, logits))
    except ImportError as err:  # scikit-learn missing
        log.warning("MIA skipped: %s", err)
    if ctx.info.name == "faces":  # identity-level verification measures (spotter/faces.py)
        from spotter.evaluation.faces import face_measures

        row.update(face_measures(model, s, device=dev))
    return row


def save_features(ctx: Context, model: torch.nn.Module, per_class: int, path: Path) -> dict[str, Any]:
    """Test features of the forget classes and their nearest classes, `per_class` each (.npz)."""
    s = ctx.splits
    near = [r["class"] for r in ctx.shared.near]
    xs, ys = [], []
    for c in (*s.forget_classes, *near):
        part = s.test_forget if c in s.forget_classes else s.test_retain
        idx = (part.y == c).nonzero().flatten()[:per_class]
        xs.append(part.x[idx])
        ys.append(part.y[idx])
    feats = predict(model, torch.cat(xs), device=ctx.device, features=True)
    arrays = {"feats": feats.float().numpy().astype(np.float16), "labels": torch.cat(ys).numpy()}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, **arrays)

    atomic_write(path, write)
    return {"file": f"{FEATURES}/{path.name}", "forget_classes": list(s.forget_classes), "near_classes": near}


def run_job(job: dict[str, Any], ctx: Context, out: Path) -> dict[str, Any]:
    cfg, meta = job["config"], job["meta"]
    t0 = time.time()
    history = None
    if cfg["kind"] == "reference":
        model = ctx.models[cfg["method"]]
        seconds = ctx.meta[cfg["method"]].get("train_seconds")
    else:
        method_cfg = methods.make_config(cfg["method"], None, cfg["preset"])
        method_cfg = set_fields(method_cfg, cfg["method_config"])
        torch.manual_seed(cfg["unlearn_seed"])
        t1 = time.time()
        model = methods.run(
            cfg["method"], ctx.models["original"], ctx.splits, method_cfg, protocol=cfg["protocol"]
        )
        seconds = time.time() - t1
        history = getattr(model, "unlearn_history", None)
    torch.manual_seed(cfg["eval"]["seed"])
    t2 = time.time()
    metrics = measure(ctx, model)
    features = (
        save_features(ctx, model, cfg["features"], out / FEATURES / f"{job['id']}.npz")
        if cfg["features"]
        else None
    )
    return {
        "job": job["id"],
        "spec": meta["spec"],
        "label": cfg["label"],
        "method": cfg["method"],
        "kind": cfg["kind"],
        "replicate": meta["replicate"],
        "order": meta["order"],
        "dataset": cfg["dataset"],
        "forget_classes": cfg["data"]["forget"],
        "model": cfg["model"],
        "seeds": {
            "train": cfg["train"]["seed"],
            "unlearn": cfg.get("unlearn_seed"),
            "eval": cfg["eval"]["seed"],
        },
        "time_s": seconds,
        "eval_s": time.time() - t2,
        "wall_s": time.time() - t0,
        **metrics,
        "near_classes": [r["class"] for r in ctx.shared.near],
        "history": history,
        "features": features,
        "checkpoints": {k: ctx.meta[k]["path"] for k in ctx.meta},
        "device": str(ctx.device),
        "host": platform.node(),
        "torch": torch.__version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": code_digests(cfg["kind"], cfg["method"]),  # what makes this row stale later
        "config": cfg,
    }
