"""What retraining would cost right now: the retrained model's recipe, timed in the same process.

The all-class issue's time bar compares an unlearning run with the retrained model's training
time "measured in the same run". A cached retrained model carries the time of the run that
trained it, often under other conditions (two threads alone against one thread beside another
job here: 424 s against 960 s for the same recipe), so the comparison is only fair against a clock
read beside the unlearning job. After each unlearning job the runner times the recipe's own
training step and validation pass on this machine, as loaded at that moment, and extrapolates:

    estimate = epochs x (steps per epoch x seconds per step + seconds per validation pass)

Seconds per step are the difference between a short and a longer `fit` on a slice of the retain
set (so fit's set-up is not counted as a step); fit's per-epoch bookkeeping and checkpointing are
left out. It reads the machine as loaded at that moment: on the 2-core CPU, beside one other job,
it estimated 521 s where the retrained model trained in the same run took 490 s
(benchmarks/README.md, "The retraining clock").
"""

from __future__ import annotations

import dataclasses
import logging
import time

import torch

from spotter.data import Splits, TensorSet
from spotter.models import ModelSpec, build_model
from spotter.training.fit import TrainConfig, fit
from spotter.training.inference import predict

log = logging.getLogger("spotter")

SHORT_STEPS, LONG_STEPS = 3, 15  # the step time is (long - short) / (LONG_STEPS - SHORT_STEPS)


def retrain_estimate(
    spec: ModelSpec, splits: Splits, cfg: TrainConfig, device: torch.device, seed: int = 0
) -> dict[str, float]:
    """{"seconds": the extrapolated training time of the retrained model's recipe, "step_s",
    "val_s", "steps"}: measured now, in this process, on `device`."""
    train = splits.retain if splits.retain is not None else splits.full_train()
    val = splits.val_retain
    batch = min(cfg.batch_size, len(train))
    steps_per_epoch = len(train) // batch if len(train) > batch else 1

    def timed_fit(steps: int) -> float:
        torch.manual_seed(seed)
        part = _slice(train, steps * batch + 1)  # one image over, so fit keeps full batches
        model = build_model(spec)
        short = dataclasses.replace(cfg, epochs=1)
        t0 = time.perf_counter()
        fit(model, part, None, short, device, desc="retrain clock")
        return time.perf_counter() - t0

    quiet = logging.getLogger("spotter")
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING))  # the clock's fits are not news
    try:
        step = max(0.0, (timed_fit(LONG_STEPS) - timed_fit(SHORT_STEPS)) / (LONG_STEPS - SHORT_STEPS))
        model = build_model(spec).to(device).eval()
        t0 = time.perf_counter()
        if val is not None and len(val):
            predict(model, val.x, device=device)
        val_s = time.perf_counter() - t0
    finally:
        quiet.setLevel(level)
    seconds = cfg.epochs * (steps_per_epoch * step + val_s)
    return {"seconds": seconds, "step_s": step, "val_s": val_s, "steps": steps_per_epoch * cfg.epochs}


def _slice(data: TensorSet, n: int) -> TensorSet:
    n = min(n, len(data))
    return TensorSet(data.x[:n], data.y[:n])
