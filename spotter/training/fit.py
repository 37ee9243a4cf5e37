"""One readable training loop for original and retrained models (and methods that fine-tune).

Data are in-memory uint8 tensors batched by indexing (as in KellerJordan/cifar10-airbench). Each
epoch's shuffle and augmentation come from a generator seeded by (seed, epoch), so a run resumed
from its last epoch checkpoint ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import TensorSet, augment, batches, to_float
from spotter.io import digest
from spotter.models.heads import training_logits
from spotter.progress import bar as progress_bar
from spotter.training import distributed
from spotter.training.checkpoint import CheckpointError, load_tensors, save_tensors
from spotter.training.inference import channels_last, evaluate_accuracy, predict
from spotter.training.speed import FitOptions, local_batches, resident, unwrap, wrap

log = logging.getLogger("spotter")

SCHEDULES = ("onecycle", "cosine", "multistep", "constant")
AMP_MODES = ("auto", "bf16", "off")


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bf16 natively (AVX512-BF16 / AMX): there autocast is faster, elsewhere
    slower (throughput: benchmarks/README.md)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device | str, amp: str) -> torch.autocast:
    """bf16 autocast for the forward pass where it helps (amp="auto") or when asked ("bf16")."""
    dev = torch.device(device)
    enabled = amp == "bf16" or (
        amp == "auto" and (dev.type == "cuda" or (dev.type == "cpu" and cpu_has_native_bf16()))
    )
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=enabled)


@dataclass
class TrainConfig:
    """SGD recipe. Defaults: the fast CPU recipe for the embedded default (see README, "Recipes").

    The paper's recipe (docs/method.md §7) is `TrainConfig.paper()`.
    """

    epochs: int = 8
    batch_size: int = 128
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # docs/method.md §7
    schedule: str = "onecycle"  # linear warm-up over `warmup` of the steps, then linear decay to 0
    warmup: float = 0.2  # fraction of all steps (onecycle / cosine)
    milestones: tuple[int, ...] = (60, 120, 160)  # multistep epochs (docs/method.md §7)
    gamma: float = 0.2  # multistep factor (docs/method.md §7)
    label_smoothing: float = 0.0
    pad: int = 2  # random-crop padding in pixels (4 is the CIFAR convention at 32 px)
    flip: bool = True
    select: str = "val"  # "val": keep the epoch with the best validation accuracy; "last"
    seed: int = 0
    channels_last: bool = True  # faster on CPU and GPU (benchmarks/README.md, throughput)
    amp: str = "auto"  # bf16 autocast: "auto" = on CUDA and on CPUs with native bf16 (AMX), "bf16", "off"

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid choices: {', '.join(SCHEDULES)}")
        if self.select not in ("val", "last"):
            raise ValueError(f"unknown select {self.select!r}; valid choices: val, last")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be a number > 0, got {self.lr}")
        for name in ("momentum", "weight_decay", "gamma", "pad"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)}")
        for name in ("warmup", "label_smoothing"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        self.milestones = tuple(self.milestones)
        if self.amp not in AMP_MODES:
            raise ValueError(f"unknown amp {self.amp!r}; valid choices: {', '.join(AMP_MODES)}")

    @classmethod
    def paper(cls, **overrides: Any) -> TrainConfig:
        """The authors' recipe (docs/method.md §7): 200 epochs, lr 0.1 ×0.2 at 60/120/160, batch 128."""
        base = dict(epochs=200, lr=0.1, nesterov=False, schedule="multistep", pad=4)
        return cls(**{**base, **overrides})

    def key(self) -> dict[str, Any]:
        return asdict(self)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good epoch checkpoint is kept."""


def lr_at(cfg: TrainConfig, step: int, total: int, epoch: int) -> float:
    """Learning rate for a global step (schedules are per step, multistep per epoch)."""
    t = step / max(total, 1)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "multistep":
        return cfg.lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.warmup > 0 and t < cfg.warmup:
        return cfg.lr * (t + 1 / max(total, 1)) / cfg.warmup
    rest = (t - cfg.warmup) / max(1 - cfg.warmup, 1e-8)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * rest))
    return cfg.lr * max(0.0, 1 - rest)


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = float("-inf")


def _save_state(path: Path, model, opt, best_state, history: History, epoch: int, fingerprint: str) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best_state.items()})
    for i, p in enumerate(opt.param_groups[0]["params"]):
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            tensors[f"opt.{i}"] = buf
    meta = {"epoch": epoch, "fingerprint": fingerprint, "history": asdict(history)}
    save_tensors(path, tensors, meta)


def _load_state(path: Path, model, opt, fingerprint: str) -> tuple[int, dict, History] | None:
    try:
        tensors, meta = load_tensors(path)
    except (CheckpointError, FileNotFoundError):
        return None
    if meta.get("fingerprint") != fingerprint:
        log.warning("ignoring %s: it belongs to another training configuration", path)
        return None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for i, p in enumerate(opt.param_groups[0]["params"]):
        if f"opt.{i}" in tensors:
            opt.state[p]["momentum_buffer"] = tensors[f"opt.{i}"].to(p.device).clone()
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    h = meta["history"]
    return meta["epoch"], best, History(h["epochs"], h["best_epoch"], h["best_val"])


def _val_accuracy(model: nn.Module, val: TensorSet, device, group: distributed.Dist | None) -> float:
    if group is None:
        return evaluate_accuracy(model, val, device)
    lo, hi = group.share(len(val))  # each rank scores its share, the counts are summed
    logits = predict(model, val.x[lo:hi], device=device)
    correct = (logits.argmax(1) == val.y[lo:hi]).sum().item()
    (correct,) = distributed.all_sum([float(correct)], device)
    return float(torch.tensor(correct, dtype=torch.float32) / len(val) * 100)


def _check_finite(loss_step: tuple[torch.Tensor, int] | None, desc, epoch, state_path, group) -> None:
    """Raise TrainingDiverged (on every rank at once) when a step's loss is NaN or Inf."""
    if loss_step is None:
        return
    loss, step = loss_step
    if bool(torch.isfinite(loss)) if group is None else distributed.all_finite(loss):
        return
    if state_path is not None and state_path.exists():
        kept = f"; last good checkpoint (end of epoch {epoch}) kept at {state_path}"
    else:
        kept = "; no epoch had finished, nothing was saved" if state_path is not None else ""
    raise TrainingDiverged(f"{desc}: loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}{kept}")


def _device_of(device: torch.device | str) -> torch.device:
    """`device` with an explicit CUDA index (DDP and the resident copy need one)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def _resume(
    state_path: Path | None, model: nn.Module, opt: torch.optim.Optimizer, fingerprint: str, desc: str
) -> tuple[int, dict, History]:
    """(first epoch to run, best weights so far, history): from `state_path` when it holds this run."""
    best_state = copy.deepcopy(model.state_dict())
    if state_path is not None and state_path.exists():  # every rank reads rank 0's file
        resumed = _load_state(state_path, model, opt, fingerprint)
        if resumed is not None:
            epoch, best_state, history = resumed
            log.info("%s: resuming from epoch %d (%s)", desc, epoch + 2, state_path)
            return epoch + 1, best_state, history
    return 0, best_state, History()


def _train_epoch(
    net: nn.Module,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    train: TensorSet,
    cfg: TrainConfig,
    epoch: int,
    run: dict,
) -> tuple[torch.Tensor, int]:
    """One pass over `train`; returns (sum of per-sample losses, samples seen) on this rank.

    `run` holds what the epochs share: device, group, options, steps_per_epoch, total, drop_last, where.
    """
    device, group = run["device"], run["group"]
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    model.train()
    loss_sum, n_seen = torch.zeros((), device=device), 0
    bar = (
        progress_bar(run["steps_per_epoch"], f"{run['desc']} {epoch + 1}/{cfg.epochs}")
        if run["main"]
        else None
    )
    order = list(batches(len(train), cfg.batch_size, True, g, run["drop_last"]))  # same on every rank
    pending = None  # on GPUs the previous step's loss is checked, so the queue never drains
    where = (run["desc"], epoch, run["state_path"], group)
    for step, (xb, y, lo, n) in enumerate(local_batches(train, order, group, device, run["options"])):
        lr = lr_at(cfg, epoch * run["steps_per_epoch"] + step, run["total"], epoch)
        for group_ in opt.param_groups:
            group_["lr"] = lr
        x = augment(to_float(xb), cfg.pad, cfg.flip, g, total=n, offset=lo)
        with autocast(device, cfg.amp):
            logits = net(channels_last(x) if cfg.channels_last else x)
        # a margin head (ArcFace / CosFace) trains on margin-adjusted logits (models/heads.py)
        logits = training_logits(model, logits.float(), y)
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        if device.type == "cuda":
            _check_finite(pending, *where)
            pending = (loss.detach(), step)
        else:
            _check_finite((loss, step), *where)
        opt.zero_grad(set_to_none=True)
        # DDP averages gradients over ranks; weighting each rank's mean by its share of the
        # global batch makes that average the gradient of the global batch's mean loss
        (loss if group is None else loss * (len(y) * group.world_size / n)).backward()
        opt.step()
        loss_sum += loss.detach() * len(y)
        n_seen += len(y)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}")
    _check_finite(pending, *where)
    if bar is not None:
        bar.close()
    return loss_sum, n_seen


def fit(
    model: nn.Module,
    train: TensorSet,
    val: TensorSet | None,
    cfg: TrainConfig,
    device: torch.device | str = "cpu",
    state_path: str | Path | None = None,
    desc: str = "train",
    options: FitOptions | None = None,
) -> tuple[nn.Module, History]:
    """Train `model` in place with SGD on `train`; return the selected weights and the history.

    With `state_path`, the state after every epoch is saved there (atomically) and an existing
    state for the same configuration is resumed. Inside a torch.distributed group (torchrun, see
    spotter/training/distributed.py) the model is wrapped in DistributedDataParallel: each rank trains on
    its share of every global batch of `cfg.batch_size`, and only rank 0 logs and saves. BatchNorm
    under DDP: SyncBatchNorm on GPUs (`options.sync_bn`); on CPUs (gloo) each rank normalises with
    its own share's statistics, so only models without BatchNorm match one process exactly.
    """
    if len(train) == 0:
        raise ValueError("training set is empty")
    opts = options or FitOptions()
    group = distributed.current()
    device = _device_of(device)
    if group is not None and min(cfg.batch_size, len(train)) < group.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is smaller than the {group.world_size} processes")
    main = group is None or group.is_main
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = _optimizer(model, cfg)
    fingerprint = digest([cfg.key(), len(train)], length=64)
    state_path = Path(state_path) if state_path else None
    start, best_state, history = _resume(state_path, model, opt, fingerprint, desc)
    distributed.barrier()  # no rank may see a state file that rank 0 writes after this point
    net, restore = wrap(model, device, group, opts)
    train = resident(train, device, opts)
    drop_last = len(train) > cfg.batch_size
    steps_per_epoch = len(train) // cfg.batch_size if drop_last else 1
    run = {
        "device": device, "group": group, "options": opts, "main": main, "desc": desc, "state_path": state_path,
        "drop_last": drop_last, "steps_per_epoch": steps_per_epoch, "total": steps_per_epoch * cfg.epochs,
    }  # fmt: skip
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        loss_sum, n_seen = _train_epoch(net, model, opt, train, cfg, epoch, run)
        if group is not None:  # identical BatchNorm statistics on every rank before validating
            for b in model.buffers():
                torch.distributed.broadcast(b, 0)
        loss_total, n_total = distributed.all_sum([float(loss_sum), float(n_seen)], device)
        val_acc = _val_accuracy(model, val, device, group) if val is not None and len(val) else float("nan")
        record = {"epoch": epoch + 1, "loss": loss_total / max(n_total, 1), "val_acc": val_acc}
        record["seconds"] = time.time() - t0
        history.epochs.append(record)
        score = val_acc if cfg.select == "val" and not math.isnan(val_acc) else float(epoch)
        if score >= history.best_val:
            history.best_val, history.best_epoch = score, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        log.info(
            "%s epoch %d/%d: loss %.4f, val acc %.2f%%, %.0fs",
            desc, epoch + 1, cfg.epochs, record["loss"], val_acc, record["seconds"],
        )  # fmt: skip
        if state_path is not None and main:
            _save_state(state_path, model, opt, best_state, history, epoch, fingerprint)
    unwrap(model, restore)
    model.train(model.training)  # the restored BatchNorm layers follow the model's mode
    model.load_state_dict(best_state)
    model.zero_grad(set_to_none=True)  # a trained model looks the same as one loaded from the cache
    return model, history
