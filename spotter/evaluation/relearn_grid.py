"""The relearning attack grid: how far, and how fast, many few-shot attackers bring the forget class back.

What it measures. An attacker holds K forget images per forget class, alone ("forget") or with as
many retain images spread over the retain classes ("mixed", `relearn.attack_set`), and fine-tunes a
copy of the model with full-batch SGD (momentum 0.9) or Adam: every weight ("whole"), the final
linear layer only ("head"), or that layer re-initialised first ("head_reinit"), with BatchNorm's
running statistics frozen ("eval") or computed from the attack batch and updated ("train"). One
combination is an attacker. It runs every learning rate of its optimiser's grid and, at each step
checkpoint, keeps the run whose attacked model has the highest overall test accuracy: the rule of
`relearn.finetune_relearn` and of PRA's α, so a diverged or collapsed run never counts as relearning.
Recorded per checkpoint: forget-class and retain test accuracy and the kept lr; per attacker the
relearn time, the first checkpoint where forget test accuracy reaches `target`.

Why a grid. Relearning results are fragile to the attacker's settings: one learning rate, optimiser
or choice of data can turn "robust" into "relearned" (Qi et al., ICLR 2025; Hu et al., "Unlearning
or Obfuscating?"; Siddiqui et al., "From Dormant to Deleted", NeurIPS 2025). One setting is not an
attack; the strongest of many is closer to one.

Why a gap. A model that never saw the class learns it from a few shots too, so a high relearned
accuracy alone proves nothing. The retrained model, attacked by the same attackers on the same
splits, is the reference: `relearning_gap` is unlearned − retrained forget accuracy per attacker and
budget (0 = as hard to relearn as never having learned), and its worst value per budget is the
measure; the relearn-time ratio unlearned / retrained says the same about speed.

Every attack trains a copy; the caller's model is never modified. Head-only attackers train on
features computed once and shared (the body never changes for them, except BatchNorm statistics in
"train" mode, which depend on the attack set and the step only), which gives the same numbers as
running the whole model and makes them nearly free; docs/method.md §9 has the cost estimate.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spotter.data import Splits, TensorSet, to_float
from spotter.evaluation.pra import draw_shots
from spotter.evaluation.relearn import attack_set, forget_probe_set
from spotter.functional.metrics import accuracy
from spotter.models.batchnorm import set_mode
from spotter.training.inference import predict

DATA = ("mixed", "forget")
OPTIMISERS = ("sgd", "adam")
SCOPES = ("whole", "head", "head_reinit")
BN_MODES = ("eval", "train")
AXES = {"data": DATA, "optimisers": OPTIMISERS, "scopes": SCOPES, "bn": BN_MODES}


def _values(value: Any) -> tuple:
    """A setting as a tuple without repeats (a single value is a tuple of one)."""
    items = value if isinstance(value, list | tuple) else (value,)
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class Attacker:
    """One attacker of the grid: what it holds and how it fine-tunes."""

    shots: int
    data: str
    optimiser: str
    scope: str
    bn: str

    @property
    def name(self) -> str:
        return f"K={self.shots} {self.data} {self.optimiser} {self.scope} bn-{self.bn}"


@dataclass
class RelearnGridConfig:
    """The attackers (the product of the five axes), step budgets, lr grids and evaluation subsets."""

    shots: tuple[int, ...] = (5, 20)  # forget shots per forget class: PRA's K = 5 and a richer attacker
    data: tuple[str, ...] = DATA  # "mixed": + as many retain images (attack_set); "forget": shots alone
    optimisers: tuple[str, ...] = OPTIMISERS
    scopes: tuple[str, ...] = SCOPES  # "head" is `model.head`, the final linear layer
    bn: tuple[str, ...] = BN_MODES  # "eval": running statistics frozen; "train": batch statistics
    budgets: tuple[int, ...] = (25, 100, 400)  # step budgets the gap is reported (and judged) at
    # every step where accuracy is recorded: the resolution of relearn time (budgets are added)
    checkpoints: tuple[int, ...] = (5, 10, 25, 50, 100, 200, 400)
    sgd_lrs: tuple[float, ...] = (1e-4, 1e-3, 1e-2)  # finetune_relearn's grid
    adam_lrs: tuple[float, ...] = (1e-5, 1e-4, 1e-3)  # Adam's steps are about lr in size: a decade lower
    momentum: float = 0.9  # SGD's, as finetune_relearn
    target: float = 50.0  # forget test accuracy (%) at which the class counts as relearned
    # seeded subsets of the test sets the runs are scored on (0 = all): the grid evaluates every
    # run at every checkpoint, so these set most of its cost
    test_forget_limit: int = 1000
    test_retain_limit: int = 2000
    seed: int = 0  # shots, retain images, head re-initialisation and test subsets

    def __post_init__(self) -> None:
        for name, choices in AXES.items():
            values = _values(getattr(self, name))
            bad = [v for v in values if v not in choices]
            if bad or not values:
                got = repr(bad[0]) if bad else "nothing"
                raise ValueError(
                    f"relearn_grid.{name}: unknown value {got}; valid choices: {', '.join(choices)}"
                )
            setattr(self, name, values)
        for name in ("shots", "budgets", "checkpoints"):
            values = _values(getattr(self, name))
            bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
            if bad or not values:
                got = repr(bad[0]) if bad else "nothing"
                raise ValueError(f"relearn_grid.{name}: {got} is not a valid count; expected integers >= 1")
            setattr(self, name, tuple(sorted(values)))
        for name in ("sgd_lrs", "adam_lrs"):
            values = _values(getattr(self, name))
            bad = [
                v
                for v in values
                if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < math.inf
            ]
            if bad or not values:
                got = repr(bad[0]) if bad else "nothing"
                raise ValueError(f"relearn_grid.{name}: {got} is not a learning rate; expected numbers > 0")
            setattr(self, name, tuple(float(v) for v in values))
        if not 0 <= self.momentum < 1:
            raise ValueError(f"relearn_grid.momentum: {self.momentum!r} must lie in [0, 1)")
        if not 0 < self.target <= 100:
            raise ValueError(f"relearn_grid.target: {self.target!r} must lie in (0, 100] (percent)")
        for name in ("test_forget_limit", "test_retain_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"relearn_grid.{name}: {getattr(self, name)!r} must be >= 0 (0 = all)")

    @classmethod
    def reduced(cls) -> RelearnGridConfig:
        """The benchmark's grid: K = 5 mixed, whole model, SGD and Adam with two lrs each, both
        BatchNorm modes, budgets 25 and 100 (4 attackers, 8 runs of 100 steps). Accuracy is recorded
        at the budgets only: scoring the runs is most of the cost, and relearn time at that
        resolution is coarse (0, 25, 100 or "not reached") but still orders the models."""
        return cls(
            shots=(5,), data=("mixed",), scopes=("whole",), budgets=(25, 100), checkpoints=(25, 100),
            sgd_lrs=(1e-3, 1e-2), adam_lrs=(1e-4, 1e-3),
        )  # fmt: skip

    @property
    def steps(self) -> tuple[int, ...]:
        """Where accuracy is recorded: 0 (before the first step), every checkpoint and budget."""
        return (0, *sorted(set(self.checkpoints) | set(self.budgets)))

    def lrs(self, optimiser: str) -> tuple[float, ...]:
        return self.sgd_lrs if optimiser == "sgd" else self.adam_lrs

    def attackers(self, shots: Sequence[int] | None = None) -> list[Attacker]:
        """Every combination of the axes (`shots` replaces cfg.shots, e.g. without unaffordable K)."""
        axes = (self.shots if shots is None else shots, self.data, self.optimisers, self.scopes, self.bn)
        return [Attacker(*combo) for combo in itertools.product(*axes)]


def attack_data(splits: Splits, shots: int, data: str, seed: int) -> TensorSet:
    """The attacker's images: the seeded forget shots (PRA's nested draws), plus for "mixed" as many
    retain images spread over the retain classes (exactly `relearn.attack_set`)."""
    if data == "mixed":
        return attack_set(splits, shots, seed)
    return splits.forget.subset(draw_shots(splits.forget.y, splits.forget_classes, shots, seed))


def fresh_head(head: nn.Linear, seed: int) -> nn.Linear:
    """A copy of `head` with its default initialisation drawn from `seed`: on the CPU, so a seed gives
    the same head on every device, and in a forked RNG, so the caller's random state is untouched."""
    new = copy.deepcopy(head).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new.reset_parameters()
    return new.to(head.weight.device)


def _optimiser(params: Any, attacker: Attacker, lr: float, cfg: RelearnGridConfig) -> torch.optim.Optimizer:
    if attacker.optimiser == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum)
    return torch.optim.Adam(params, lr=lr)


def attack(
    model: nn.Module,
    data: TensorSet,
    attacker: Attacker,
    lr: float,
    steps: Sequence[int],
    cfg: RelearnGridConfig,
    device: torch.device | None = None,
) -> Iterator[tuple[int, nn.Module]]:
    """Fine-tune a copy of `model` on `data` as `attacker` does with `lr`; yields (step, the copy) at
    each of `steps` (0: before the first step, head already re-initialised for "head_reinit").

    Full-batch steps; "head" scopes train `model.head` alone; bn "eval" freezes BatchNorm's running
    statistics after `.train()` (as finetune_relearn), "train" uses and updates them. Stops yielding
    once the loss is no longer finite (a diverged run has nothing left to score).
    """
    device = device or next(model.parameters()).device
    attacked = copy.deepcopy(model).to(device)
    if attacker.scope == "head_reinit":
        attacked.head.load_state_dict(fresh_head(model.head, cfg.seed).state_dict())
    if attacker.scope != "whole":
        attacked.requires_grad_(False)  # the body's gradients are never needed: skip computing them
        attacked.head.requires_grad_(True)
    trained = attacked.parameters() if attacker.scope == "whole" else attacked.head.parameters()
    opt = _optimiser(trained, attacker, lr, cfg)
    x, y = to_float(data.x).to(device), data.y.to(device)
    if 0 in steps:
        yield 0, attacked
    for step in range(1, max(steps) + 1):
        set_mode(attacked, freeze_bn=attacker.bn == "eval")
        if not _step(opt, F.cross_entropy(attacked(x), y)):
            return
        if step in steps:
            yield step, attacked


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> bool:
    """One full-batch step; False (and no step) once the loss is no longer finite."""
    if not torch.isfinite(loss):
        return False
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return True


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy in percent; NaN for non-finite logits (a blown-up model predicts nothing)."""
    return accuracy(logits, y) if torch.isfinite(logits).all() else float("nan")


class _Grid:
    """One model's grid: the shared evaluation subsets and, for head-only attackers, features
    computed once per (attack set, BatchNorm mode) and shared by every head, optimiser and lr."""

    def __init__(
        self,
        model: nn.Module,
        splits: Splits,
        cfg: RelearnGridConfig,
        device: torch.device,
        cache_heads: bool,
    ) -> None:
        self.model, self.cfg, self.device = model, cfg, device
        self.steps = cfg.steps
        self.evalsets = (
            forget_probe_set(splits.test_forget, cfg.test_forget_limit, cfg.seed),
            forget_probe_set(splits.test_retain, cfg.test_retain_limit, cfg.seed + 1),
        )
        self.cache_heads = cache_heads
        self.feats0 = [predict(model, s.x, device=device, features=True) for s in self.evalsets]
        with torch.no_grad():
            self.initial = [
                _acc(model.head(f.to(device)).cpu(), s.y)
                for f, s in zip(self.feats0, self.evalsets, strict=True)
            ]
        self._heads: dict[tuple, tuple[torch.Tensor, dict[int, list[torch.Tensor]]] | None] = {}

    def run(self, attacker: Attacker, data: TensorSet, lr: float) -> dict[str, list[float]]:
        """Forget and retain test accuracy at every step of one run (NaN after a divergence)."""
        inputs = self._head_inputs(attacker, data) if attacker.scope != "whole" and self.cache_heads else None
        scores = (
            self._head_run(attacker, data, lr, *inputs) if inputs else self._model_run(attacker, data, lr)
        )
        pad = [float("nan")] * 2
        return {
            "test_forget_acc": [scores.get(s, pad)[0] for s in self.steps],
            "test_retain_acc": [scores.get(s, pad)[1] for s in self.steps],
        }

    def _model_run(self, attacker: Attacker, data: TensorSet, lr: float) -> dict[int, list[float]]:
        scores = {}
        for step, attacked in attack(self.model, data, attacker, lr, self.steps, self.cfg, self.device):
            if step == 0 and attacker.scope != "head_reinit":
                scores[0] = self.initial  # the copy before any step is the model itself
                continue
            scores[step] = [_acc(predict(attacked, s.x, device=self.device), s.y) for s in self.evalsets]
        return scores

    def _head_inputs(
        self, attacker: Attacker, data: TensorSet
    ) -> tuple[torch.Tensor, dict[int, list[torch.Tensor]]] | None:
        """(features the head trains on, {step: features of each test subset}), or None when the body
        is not deterministic in training mode (dropout): then only running the model is faithful."""
        key = (attacker.shots, attacker.data, attacker.bn)
        if key not in self._heads:
            self._heads[key] = self._body_features(data, attacker.bn)
        return self._heads[key]

    def _body_features(
        self, data: TensorSet, bn: str
    ) -> tuple[torch.Tensor, dict[int, list[torch.Tensor]]] | None:
        body = copy.deepcopy(self.model).to(self.device)
        x = to_float(data.x).to(self.device)
        feats: dict[int, list[torch.Tensor]] = {s: self.feats0 for s in self.steps}  # bn "eval": never change
        with torch.no_grad():
            # the body sees the same batch at every step, so its training-mode output is the same each
            # time and only the running statistics move (in "train" mode); two steps tell whether
            # anything random (dropout) makes the output differ
            for step in range(1, self.steps[-1] + 1):
                set_mode(body, freeze_bn=bn == "eval")
                out = body.features(x)
                if step == 1:
                    train = out
                elif not torch.equal(out, train):
                    return None
                if bn == "eval" and step >= 2:
                    break
                if bn == "train" and step in self.steps:
                    feats[step] = [
                        predict(body, s.x, device=self.device, features=True) for s in self.evalsets
                    ]
        return train, feats

    def _head_run(
        self,
        attacker: Attacker,
        data: TensorSet,
        lr: float,
        train: torch.Tensor,
        feats: dict[int, list[torch.Tensor]],
    ) -> dict[int, list[float]]:
        """The same run as `attack` for a head-only attacker, on the shared features."""
        source = (
            fresh_head(self.model.head, self.cfg.seed) if attacker.scope == "head_reinit" else self.model.head
        )
        head = copy.deepcopy(source).to(self.device).requires_grad_(True)
        opt = _optimiser(head.parameters(), attacker, lr, self.cfg)
        y = data.y.to(self.device)
        scores = {}
        for step in range(self.steps[-1] + 1):
            if step and not _step(opt, F.cross_entropy(head(train), y)):
                break
            if step in self.steps:
                with torch.no_grad():
                    scores[step] = [
                        _acc(head(f.to(self.device)).cpu(), s.y)
                        for f, s in zip(feats[step], self.evalsets, strict=True)
                    ]
        return scores


def keep_best(
    runs: list[dict[str, list[float]]], lrs: Sequence[float], weights: tuple[int, int]
) -> dict[str, list[float]]:
    """Per step, the run the attacker keeps: the highest overall test accuracy, forget and retain
    accuracy weighted by the full test sets' sizes `weights` (as finetune_relearn; the subsets only
    estimate them); NaN never wins, ties go to the earlier lr. lr is 0.0 at step 0 (no step taken)."""
    n_f, n_r = weights
    out: dict[str, list[float]] = {"test_forget_acc": [], "test_retain_acc": [], "lr": []}
    for i in range(len(runs[0]["test_forget_acc"])):

        def overall(run: dict[str, list[float]], i: int = i) -> float:
            acc = (run["test_forget_acc"][i] * n_f + run["test_retain_acc"][i] * n_r) / max(1, n_f + n_r)
            return acc if acc == acc else -1.0

        best = max(range(len(runs)), key=lambda r: (overall(runs[r]), -r))
        out["test_forget_acc"].append(runs[best]["test_forget_acc"][i])
        out["test_retain_acc"].append(runs[best]["test_retain_acc"][i])
        out["lr"].append(float(lrs[best]) if i else 0.0)
    return out


def relearn_steps(steps: Sequence[int], forget_acc: Sequence[float], target: float) -> int:
    """The first step whose forget accuracy reaches `target`; not reached: the cap (last step) + 1,
    a lower bound that keeps ratios defined and orders "not reached" after every reached count."""
    return next((s for s, a in zip(steps, forget_acc, strict=True) if a >= target), steps[-1] + 1)


def relearn_grid(
    model: nn.Module,
    splits: Splits,
    cfg: RelearnGridConfig | None = None,
    device: torch.device | str | None = None,
    *,
    cache_heads: bool = True,
) -> dict[str, Any]:
    """Run every attacker of `cfg` on copies of `model`; a JSON-able dict.

    Keys: steps (recorded, 0 first), budgets, target, cap (the last step), not_reached (cap + 1, the
    relearn_steps of an attacker that never reached target), test_forget_images / test_retain_images
    (subset sizes), notes, seconds, and attackers: one dict per attacker with its axes, name, lrs,
    and over `steps` the kept run's test_forget_acc, test_retain_acc (percent) and lr, plus
    relearn_steps, relearned and seconds. `cache_heads=False` runs head-only attackers through the
    whole model (the same numbers, slower: a check).
    """
    cfg = cfg or RelearnGridConfig()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    t0 = time.time()
    grid = _Grid(model, splits, cfg, device, cache_heads)
    pool = min(int((splits.forget.y == c).sum()) for c in splits.forget_classes)
    shots = [k for k in cfg.shots if k <= pool]
    notes = (
        [f"relearn grid: shots above {pool} (the smallest forget class) skipped"]
        if len(shots) < len(cfg.shots)
        else []
    )
    weights = (len(splits.test_forget), len(splits.test_retain))
    rows = []
    for attacker in cfg.attackers(shots):
        t1 = time.time()
        data = attack_data(splits, attacker.shots, attacker.data, cfg.seed)
        lrs = cfg.lrs(attacker.optimiser)
        kept = keep_best([grid.run(attacker, data, lr) for lr in lrs], lrs, weights)
        n = relearn_steps(grid.steps, kept["test_forget_acc"], cfg.target)
        rows.append({"name": attacker.name, **asdict(attacker), "lrs": list(lrs), **kept, "relearn_steps": n,
                     "relearned": n <= grid.steps[-1], "seconds": time.time() - t1})  # fmt: skip
    return {
        "steps": list(grid.steps),
        "budgets": list(cfg.budgets),
        "target": cfg.target,
        "cap": grid.steps[-1],
        "not_reached": grid.steps[-1] + 1,
        "test_forget_images": len(grid.evalsets[0]),
        "test_retain_images": len(grid.evalsets[1]),
        "attackers": rows,
        "notes": notes,
        "seconds": time.time() - t0,
    }


def _worst(values: Sequence[float | None], pick: Any = max) -> int | None:
    """Index of the worst defined (not NaN, not None) value by `pick`; None when there is none."""
    defined = [i for i, v in enumerate(values) if v is not None and v == v]
    return pick(defined, key=lambda i: values[i]) if defined else None


def relearning_gap(unlearned: dict[str, Any], retrained: dict[str, Any]) -> dict[str, Any]:
    """The relearning gap of one model's grid against the retrained model's (same splits, attackers).

    Per attacker: forget test accuracy of both at each budget, gap = unlearned − retrained (points;
    0 = as hard to relearn as never having learned, > 0 = the class comes back faster), relearn
    steps of both and time_ratio = unlearned / retrained (None when the retrained model needs 0
    steps; "not reached" counts as cap + 1, so two unreached give 1). Summary: worst (largest) gap
    per budget and its attacker, and the worst (smallest) time ratio and its attacker.
    """
    if unlearned["steps"] != retrained["steps"] or unlearned["budgets"] != retrained["budgets"]:
        raise ValueError(
            f"the grids differ in steps or budgets ({unlearned['budgets']} vs {retrained['budgets']}); "
            "run both with the same RelearnGridConfig"
        )
    reference = {a["name"]: a for a in retrained["attackers"]}
    names = [a["name"] for a in unlearned["attackers"]]
    if set(names) != set(reference):
        odd = sorted(set(names) ^ set(reference))
        raise ValueError(
            f"the grids have different attackers (e.g. {odd[0]!r}); run both with the same config"
        )
    at = [unlearned["steps"].index(b) for b in unlearned["budgets"]]
    rows = []
    for a in unlearned["attackers"]:
        r = reference[a["name"]]
        u_acc, r_acc = [a["test_forget_acc"][i] for i in at], [r["test_forget_acc"][i] for i in at]
        u_n, r_n = a["relearn_steps"], r["relearn_steps"]
        rows.append({"name": a["name"], "unlearned": u_acc, "retrained": r_acc,
                     "gap": [u - v for u, v in zip(u_acc, r_acc, strict=True)], "relearn_steps": [u_n, r_n],
                     "time_ratio": u_n / r_n if r_n else None})  # fmt: skip
    worst = [_worst([row["gap"][j] for row in rows]) for j in range(len(at))]
    slowest = _worst([row["time_ratio"] for row in rows], min)
    return {
        "budgets": list(unlearned["budgets"]),
        "attackers": rows,
        "worst": [rows[i]["gap"][j] if i is not None else None for j, i in enumerate(worst)],
        "worst_attacker": [rows[i]["name"] if i is not None else None for i in worst],
        "time_ratio": rows[slowest]["time_ratio"] if slowest is not None else None,
        "time_ratio_attacker": rows[slowest]["name"] if slowest is not None else None,
    }
