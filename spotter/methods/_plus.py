""" "+spotter" on any base method: the base's own loss plus Spotter's neighbourhood and dispersion terms.

    L = L_base + c·[(1 − λ1)·KL(mask(p_orig(x')) ‖ p_θ(x')) + λ2·dispersion(h_θ(x), y) + λ3·PRA_sim]

on a forget batch (x, y) and its PGD neighbours x' at every optimiser step of the base method, in
one training run (docs/method.md §5, "Plug-and-play"). The terms come from `spotter.spotter_terms`;
the neighbours are built once from the frozen original, as Spotter builds them. Their gradients go
through the base's own gradient handling (SalUn's mask, UNSC's projection). Data: the forget set
(the terms), plus whatever the base reads; the terms never read retain data, also where the base
does (they are Spotter's retain-free terms; a base that reads D_r already protects it its way).

λ3·PRA_sim is our simulated prototype attack (`spotter_lambda3`, off as in Spotter's defaults; the
term of our `spotter` presets and of spotter_auto): with it the add-on is "BASE + our terms".

Ours, beyond the paper: how the terms follow the base, so one setting serves every base (measured
in benchmarks/README.md, "+spotter on every base"; the paper adds the terms at a weight tuned with
its base):
- The factor c (`spotter_scale`). "step" (default): under an SGD base c = min(1, spotter_lr / the
  base's lr), read from the optimiser at every step, so the terms move the weights about as far per
  step as in Spotter's own training at `spotter_lr`, whatever the base's lr (at full weight under a
  base at lr 0.03 they overran it: retain classes collapsed, or the loss went to NaN); under an
  Adam-type base, whose steps are normalised per weight and so do not grow with the gradient, the
  terms' gradient is capped at `spotter_grad_ratio` (0.5) times the base's own gradient norm
  (`GradientBalance`), so they redirect the base's step without ruling it (at 1 the retain classes
  paid for it; at 0.3 the prototype attack kept most of what it wins on the base alone).
  "gradient" uses that cap under every optimiser; "none" takes the weights as given (the paper).
- BatchNorm (`spotter_bn`). "eval" (default) normalises the terms with the running statistics, as
  the evaluation and Spotter itself do; "follow" normalises them as the base's own forward pass at
  that step (the batch's statistics where the base trains BatchNorm), never updating the running
  statistics in either mode (single-class batches would corrupt them). "follow" was the default
  while the terms went unscaled, because with them the running statistics went stale under a fast
  base and the terms went to NaN; with c the NaN is gone, and terms computed on a single-class
  batch's own statistics did not lower OU@ε, which is measured with the running ones.

A combination's Config holds the base's fields plus Spotter's, prefixed `spotter_` (λ1, λ2,
temperature, lr, the forget batch size and the neighbourhood settings) and the three above; its
NEEDS is the union of the base's and Spotter's ("forget"). Bases take part by accepting
`extra_loss` in `unlearn` (see `_common.step`). Which cannot, and why: `retrain` trains from
scratch through the shared trainer (it has no original to distil and must stay the
exact-unlearning reference); `spotter` already is these terms.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import types
import typing
from collections.abc import Iterator

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from spotter.data import Splits
from spotter.functional.losses import prototype_attack_loss
from spotter.methods import _common
from spotter.methods import spotter as spotter_method
from spotter.models.batchnorm import batchnorm_layers, bn_eval

log = logging.getLogger("spotter")

SUFFIX = "+spotter"
PREFIX = "spotter_"
# Spotter settings a combination exposes (as spotter_<name>).
FIELDS = (
    "lambda1",
    "lambda2",
    "temperature",
    "lr",  # the step the terms are given under an SGD base (spotter_scale "step")
    "batch_size",
    "eps",
    "step",
    "steps",
    "direction",
    "copies",
    "neighbour_seed",
    "lambda3",  # ours: the simulated prototype attack ("BASE+spotter" with it is BASE + our terms)
    "proto_variants",
)
BN_MODES = ("follow", "eval")  # how the added terms see BatchNorm (module docstring)
SCALES = ("step", "gradient", "none")  # how the added terms' weight follows the base (module docstring)
WHY_NOT = {
    "retrain": "retrain trains from scratch with the shared trainer: there is no original to distil, "
    "and the exact-unlearning reference must stay untouched",
    "spotter": "spotter already trains with these terms",
    "spotter_auto": "spotter_auto already trains with these terms (and more)",
}


def takes_extra_loss(module: types.ModuleType) -> bool:
    return "extra_loss" in inspect.signature(module.unlearn).parameters


class _KWay:
    """A view of `model` whose head returns only the first k logits (Boundary Expanding's shadow
    output is not part of the distribution Spotter distils)."""

    def __init__(self, model: nn.Module, k: int) -> None:
        self.features, self._head, self.k = model.features, model.head, k

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        return self._head(feats)[:, : self.k]


@contextlib.contextmanager
def statistics_untouched(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers keep their mode (train: batch statistics; eval: running ones) but no running
    statistic changes: momentum 0 for the duration, the batch counter restored afterwards."""
    layers = [m for m in batchnorm_layers(model) if m.training and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(layers, saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


class SpotterTerms:
    """The `extra_loss` hook: (1 − λ1)·neighbour masked KD + λ2·dispersion on the next forget batch."""

    def __init__(
        self,
        original: nn.Module,
        splits: Splits,
        cfg: spotter_method.Config,
        seed: int,
        bn: str = "eval",
        scale: str = "step",
        grad_ratio: float = 0.5,
    ) -> None:
        if bn not in BN_MODES:
            raise ValueError(f"unknown spotter_bn {bn!r}; valid choices: {', '.join(BN_MODES)}")
        if scale not in SCALES:
            raise ValueError(f"unknown spotter_scale {scale!r}; valid choices: {', '.join(SCALES)}")
        if not grad_ratio > 0:
            raise ValueError(f"spotter_grad_ratio must be > 0, got {grad_ratio}")
        self.bn, self.scale = bn, scale
        self.balance = GradientBalance(grad_ratio) if scale != "none" else None
        self.watch = OptimizerWatch() if scale == "step" else None
        self.scales: list[float] = []  # the factor each step's terms were given ("step", SGD)
        forget = _common.require(splits.forget, "forget", "+spotter")
        device = next(original.parameters()).device
        self.x_nb, self.y, self.src, self.t_clean, self.t_nb = spotter_method.targets(
            original, forget, cfg, device
        )
        self.forget, self.cfg, self.device = forget, cfg, device
        self.forget_classes = splits.forget_classes
        self.k = splits.num_classes
        self.generator = torch.Generator().manual_seed(seed)
        self.g_attack = torch.Generator().manual_seed(seed + 7919)  # as Spotter's own λ3 stream
        self.variants = tuple(v.strip() for v in cfg.proto_variants.split(","))
        self.queue: list[torch.Tensor] = []
        self.sums, self.calls = torch.zeros(3), 0

    def _next(self) -> torch.Tensor:
        if not self.queue:  # a new pass, every batch holding each forget class (spotter.spread_order)
            order = spotter_method.spread_order(self.y, self.generator)
            self.queue = list(order.split(self.cfg.batch_size))[::-1]
        return self.queue.pop()

    def __call__(self, student: nn.Module) -> torch.Tensor:
        idx = self._next()
        src = self.src[idx]
        x = self.forget.x[src].to(self.device).float().div(255)
        view = student if student.head.out_features == self.k else _KWay(student, self.k)
        with bn_eval(student) if self.bn == "eval" else statistics_untouched(student):
            _, kd_nb, disp, feats = spotter_method.spotter_terms(
                view,
                x,
                self.x_nb[idx].to(self.device),
                self.y[idx].to(self.device),
                self.t_clean[src].to(self.device),
                self.t_nb[idx].to(self.device),
                self.forget_classes,
                self.cfg.temperature,
            )
        proto = torch.zeros((), device=self.device)
        if self.cfg.lambda3 > 0:  # ours: the simulated prototype attack (docs/method.md §5)
            proto = prototype_attack_loss(
                feats, self.y[idx].to(self.device), student.head, self.forget_classes, self.g_attack,
                variants=self.variants,
            )  # fmt: skip
        self.sums += torch.tensor([kd_nb.item(), disp.item(), proto.item()])
        self.calls += 1
        # docs/method.md §5: (1 − λ1)·KD(x') + λ2·disp (+ λ3·PRA_sim, ours)
        terms = (1 - self.cfg.lambda1) * kd_nb + self.cfg.lambda2 * disp + self.cfg.lambda3 * proto
        if self.balance is None:  # "none": the weights as given
            return terms
        if self.watch is not None:
            self.watch.follow(student)
            if self.watch.lr is None:  # the base's optimiser has not stepped yet: nothing to match
                return 0.0 * terms
            if not self.watch.adaptive:
                self.scales.append(min(1.0, self.cfg.lr / self.watch.lr))
                return self.scales[-1] * terms
        return self.balance(student, terms)  # "gradient", or an adaptive optimiser under "step"

    def close(self) -> None:
        if self.balance is not None:
            self.balance.close()
        if self.watch is not None:
            self.watch.close()


class OptimizerWatch:
    """Which optimiser steps the student's weights, and at what learning rate: read before each of
    its steps (a global optimiser pre-step hook, removed by `close`), so schedules and bases with
    several phases are followed without their code knowing. Optimisers of other tensors (UNSIR's
    noise) are ignored."""

    def __init__(self) -> None:
        self.lr: float | None = None
        self.adaptive = False
        self.ids: set[int] = set()
        self.handle = register_optimizer_step_pre_hook(self._seen)

    def follow(self, student: nn.Module) -> None:
        if not self.ids:
            self.ids = {id(p) for p in student.parameters()}

    def _seen(self, opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        for group in opt.param_groups:
            if any(id(p) in self.ids for p in group["params"]):
                # SGD's step is lr·gradient; Adam-type steps are normalised per weight, so their lr
                # says nothing about how far a gradient of a given size moves the weights
                self.lr, self.adaptive = float(group["lr"]), not isinstance(opt, torch.optim.SGD)
                return

    def close(self) -> None:
        self.handle.remove()


class GradientBalance:
    """Caps the added terms' gradient at `ratio` times the base's own gradient norm, so a base that
    trains with a large learning rate or loss scale is not overrun by terms weighted for Spotter's
    own small steps (the weights λ1, λ2 still set the terms' mix).

    `_common.step` sums the hook's value into the base's loss before one backward pass, so the
    base's gradient alone is never materialised. The hook therefore takes the terms' gradient g_T
    itself and returns a stand-in whose value is the terms' and whose gradient is exactly c·g_T; a
    gradient hook on each parameter then reads the base's part of the summed gradient (total − c·g_T)
    during that backward pass. c for step t uses the base's norm from step t − 1 (the first step
    adds no terms): c = min(1, ratio·‖g_base‖ / ‖g_T‖)."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self.params: list[nn.Parameter] = []
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self.added: dict[int, torch.Tensor] = {}  # id(param) -> c·g_T of the pending backward
        self.base_sq = 0.0  # ‖g_base‖² accumulated by the parameter hooks of the pending backward
        self.seen = False
        self.base_norm: float | None = None
        self.log: list[tuple[float, float]] = []  # (‖g_T‖ / ‖g_base‖, c) per step

    def _watch(self, student: nn.Module) -> None:
        self.params = [p for p in student.parameters() if p.requires_grad]
        for p in self.params:
            self.handles.append(p.register_hook(functools.partial(self._observe, id(p))))

    def _observe(self, key: int, grad: torch.Tensor) -> None:
        added = self.added.pop(key, None)  # set only for the step's own backward pass
        if added is not None:
            self.base_sq += float((grad - added).pow(2).sum())
            self.seen = True

    def __call__(self, student: nn.Module, terms: torch.Tensor) -> torch.Tensor:
        if not self.params:
            self._watch(student)
        if self.seen:  # the previous step's backward ran: its base norm is complete
            self.base_norm, self.base_sq, self.seen = self.base_sq**0.5, 0.0, False
        self.added = {}
        grads = torch.autograd.grad(terms, self.params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads, strict=True)]
        norm = float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
        if self.base_norm is None or norm == 0.0:
            scale = 0.0
        else:
            scale = min(1.0, self.ratio * self.base_norm / norm)
            self.log.append((norm / max(self.base_norm, 1e-12), scale))
        self.added = {id(p): scale * g for p, g in zip(self.params, grads, strict=True)}
        inner = sum((p * self.added[id(p)]).sum() for p in self.params)
        return terms.detach() + inner - inner.detach()  # value: the terms'; gradient: c·g_T

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles, self.added = [], {}


def _field(f: dataclasses.Field) -> dataclasses.Field:
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory)
    return dataclasses.field(default=f.default)


def split_config(cfg: typing.Any, base: types.ModuleType) -> tuple[typing.Any, spotter_method.Config]:
    """(base Config, spotter Config) from a combination's Config (validating both)."""
    names = [f.name for f in dataclasses.fields(base.Config)]
    base_cfg = base.Config(**{n: getattr(cfg, n) for n in names})
    spot_cfg = spotter_method.Config(**{n: getattr(cfg, PREFIX + n) for n in FIELDS})
    return base_cfg, spot_cfg


@functools.cache
def combo(name: str) -> types.ModuleType:
    """A method module for "BASE+spotter" (Config, NEEDS, unlearn), built once per base."""
    from spotter import methods  # the registry imports this module lazily

    base_name = name.removesuffix(SUFFIX)
    if base_name in WHY_NOT:
        raise ValueError(f"{name!r} is not available: {WHY_NOT[base_name]}")
    base = methods.get(base_name)
    if not takes_extra_loss(base):
        raise ValueError(f"{name!r} is not available: {base_name} does not train with a loss")
    base_hints = typing.get_type_hints(base.Config)
    spot_hints = typing.get_type_hints(spotter_method.Config)
    defaults = spotter_method.Config()
    fields = [(f.name, base_hints[f.name], _field(f)) for f in dataclasses.fields(base.Config)]
    fields += [(PREFIX + n, spot_hints[n], dataclasses.field(default=getattr(defaults, n))) for n in FIELDS]
    fields.append((PREFIX + "bn", str, dataclasses.field(default="eval")))
    fields.append((PREFIX + "scale", str, dataclasses.field(default="step")))
    fields.append((PREFIX + "grad_ratio", float, dataclasses.field(default=0.5)))
    clash = {PREFIX + n for n in FIELDS} & {f.name for f in dataclasses.fields(base.Config)}
    assert not clash, clash

    def post_init(self) -> None:  # noqa: ANN001
        split_config(self, base)
        if getattr(self, PREFIX + "bn") not in BN_MODES:
            raise ValueError(
                f"unknown spotter_bn {getattr(self, PREFIX + 'bn')!r}; valid choices: {', '.join(BN_MODES)}"
            )
        if getattr(self, PREFIX + "scale") not in SCALES:
            raise ValueError(
                f"unknown spotter_scale {getattr(self, PREFIX + 'scale')!r}; valid choices: {', '.join(SCALES)}"
            )
        if not getattr(self, PREFIX + "grad_ratio") > 0:
            raise ValueError(f"spotter_grad_ratio must be > 0, got {getattr(self, PREFIX + 'grad_ratio')}")

    config = dataclasses.make_dataclass(
        base.Config.__name__,
        fields,
        namespace={
            "__post_init__": post_init,
            "__doc__": f"{base_name} settings plus Spotter's, prefixed {PREFIX} (defaults: the authors', "
            f"docs/method.md §5). Search: the base's ranges; spotter_lambda2 0.1..5 (log), spotter_lambda1 "
            f"0.3..0.9.\n\n{base.Config.__doc__ or ''}",
        },
    )
    config.__module__ = __name__
    config.__qualname__ = f"{base_name}_plus_spotter.Config"

    def unlearn(model: nn.Module, splits: Splits, cfg: typing.Any) -> nn.Module:
        base_cfg, spot_cfg = split_config(cfg, base)
        torch.manual_seed(getattr(base_cfg, "seed", 0))
        terms = SpotterTerms(
            model, splits, spot_cfg, seed=getattr(base_cfg, "seed", 0), bn=cfg.spotter_bn,
            scale=cfg.spotter_scale, grad_ratio=cfg.spotter_grad_ratio,
        )  # fmt: skip
        try:
            out = base.unlearn(model, splits, base_cfg, extra_loss=terms)
        finally:
            terms.close()
        if terms.scales:
            log.info(
                "%s: the terms weighted by %.3g (spotter_lr / the base's lr, median of %d steps)",
                name, sorted(terms.scales)[len(terms.scales) // 2], len(terms.scales),
            )  # fmt: skip
        if terms.balance is not None and terms.balance.log:
            ratios, scales = zip(*terms.balance.log, strict=True)
            log.info(
                "%s: the terms' gradient was %.2f× the base's (median), scaled by %.2f (median, %d steps)",
                name, sorted(ratios)[len(ratios) // 2], sorted(scales)[len(scales) // 2], len(scales),
            )  # fmt: skip
        if terms.calls:
            kd_nb, disp, proto = (terms.sums / terms.calls).tolist()
            log.info(
                "%s: %d steps with Spotter's terms (mean kd_nb %.4f, disp %.4f, simulated PRA %.4f)",
                name,
                terms.calls,
                kd_nb,
                disp,
                proto,
            )
        return out

    summary = (base.__doc__ or "").strip().splitlines()[0].rstrip(".")
    module = types.ModuleType(
        f"{methods.__name__}.{name}",
        f"{summary}; plus Spotter's neighbourhood KD and dispersion (docs/method.md §5).\n\n{__doc__}",
    )
    module.Config = config
    module.NEEDS = tuple(dict.fromkeys((*base.NEEDS, *spotter_method.NEEDS)))
    module.TUNE = getattr(base, "TUNE", {})
    module.BASE = base_name
    module.unlearn = unlearn
    return module
