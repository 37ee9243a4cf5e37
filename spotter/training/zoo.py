"""Original and retrained models, trained once and cached by a hash of their full configuration.

The key covers the dataset (name and a fingerprint of the exact samples), the split, the forget
classes (retrained only), the architecture, the recipe and the seed (docs/design.md, docs/users.md #5).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from spotter.data import Splits, TensorSet
from spotter.data.imagefolder import LazyImages
from spotter.io import digest
from spotter.models import Classifier, ModelSpec, build_model
from spotter.training import distributed
from spotter.training.checkpoint import CheckpointError, load_model, save_model
from spotter.training.fit import FitOptions, TrainConfig, fit

log = logging.getLogger("spotter")

KINDS = ("original", "retrained")


def default_cache_dir() -> Path:
    """$SPOTTER_CACHE, else $XDG_CACHE_HOME/spotter, else ~/.cache/spotter."""
    if os.environ.get("SPOTTER_CACHE"):
        return Path(os.environ["SPOTTER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spotter"


def fingerprint(*sets: TensorSet) -> str:
    h = hashlib.sha256()
    for s in sets:
        h.update(s.x.digest() if isinstance(s.x, LazyImages) else s.x.contiguous().numpy().tobytes())
        h.update(s.y.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(kind: str, dataset: str, splits: Splits, spec: ModelSpec, cfg: TrainConfig) -> tuple[str, dict]:
    train = _training_set(kind, splits)
    key: dict[str, Any] = {
        "kind": kind,
        "dataset": dataset,
        "data": fingerprint(train, splits.val),
        "model": spec.to_dict(),
        "recipe": cfg.key(),
    }
    if kind == "retrained":
        key["forget_classes"] = list(splits.forget_classes)
    return digest(key, 12), key


def _training_set(kind: str, splits: Splits) -> TensorSet:
    if kind not in KINDS:
        raise ValueError(f"unknown reference model {kind!r}; valid choices: {', '.join(KINDS)}")
    if splits.retain is None:
        raise ValueError("training a reference model needs the retain split")
    if kind == "retrained":
        return splits.retain
    return splits.full_train()


def reference_model(
    kind: str,
    dataset: str,
    splits: Splits,
    spec: ModelSpec,
    cfg: TrainConfig,
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    options: FitOptions | None = None,
) -> tuple[Classifier, dict[str, Any]]:
    """The cached `original` (all train classes) or `retrained` (retain only, still K outputs).

    Under torchrun every rank trains its share; rank 0 writes the model, the others wait and load it.
    """
    digest, key = cache_key(kind, dataset, splits, spec, cfg)
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / "models" / f"{dataset}-{kind}-{digest}.safetensors"
    if path.exists():
        try:
            model, _, meta = load_model(path, expect=spec, device=device)
            log.info("%s model loaded from cache %s", kind, path)
            if cfg.channels_last:  # as fit() leaves a fresh model: same layout, same kernels
                model.to(memory_format=torch.channels_last)
            return model.eval(), {**meta, "path": str(path), "cached": True}
        except CheckpointError as err:
            log.warning("cached %s unusable (%s); retraining", path, err)
    train = _training_set(kind, splits)
    val = splits.val if kind == "original" else splits.val_retain
    torch.manual_seed(cfg.seed)
    model = build_model(spec)
    t0 = time.time()
    state = path.with_name(path.stem + ".state.safetensors")
    log.info(
        "training %s model (%s, %d samples, %d epochs) -> %s",
        kind,
        spec.name,
        len(train),
        cfg.epochs,
        path,
    )
    model, history = fit(model, train, val, cfg, device, state_path=state, desc=kind, options=options)
    meta = {
        "kind": kind,
        "key": key,
        "history": history.epochs,
        "best_epoch": history.best_epoch,
        "train_seconds": time.time() - t0,
    }
    if distributed.is_main():
        save_model(path, model, spec, meta)
        state.unlink(missing_ok=True)
    distributed.barrier()
    if not distributed.is_main():  # every rank ends with the file rank 0 wrote
        model, _, _ = load_model(path, expect=spec, device=device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
    return model.eval(), {**meta, "path": str(path), "cached": False}
