""" "+spotter" on any base method: the base's own loss plus Spotter's neighbourhood and dispersion terms.

    L = L_base + (1 − λ1)·KL(mask(p_orig(x')) ‖ p_θ(x')) + λ2·dispersion(h_θ(x), y)

on a forget batch (x, y) and its PGD neighbours x' at every optimiser step of the base method, in
one training run (docs/method.md §5, "Plug-and-play"). The terms come from `spotter.spotter_terms`;
the neighbours are built once from the frozen original, as Spotter builds them. How the terms see
BatchNorm (`spotter_bn`): "follow" (default) normalises them the way the base's own forward pass
does at that step: with running statistics where the base keeps BatchNorm in eval mode, with the
batch's statistics where the base trains it, and then without updating the running statistics
(single-class batches would corrupt them); "eval" always uses the running statistics (Spotter's
own setting, and this module's before 2026-12-04: a base that moves fast in train mode leaves them
stale for the terms, which went to NaN at finetune's and l1_sparse's lr 0.03). Their gradients go
through the base's own gradient handling (SalUn's mask, UNSC's projection).

A combination's Config holds the base's fields plus Spotter's, prefixed `spotter_` (λ1, λ2,
temperature, the forget batch size and the neighbourhood settings); its NEEDS is the union of the
base's and Spotter's ("forget"). Bases take part by accepting `extra_loss` in `unlearn` (see
`_common.step`). Measured on Fashion-MNIST (benchmarks/README.md, "Every method on the embedded
default"): bases that move the weights fast (SGD lr 3e-2, Adam 5e-3..1e-2) need a much smaller λ2
(0.05) or lr, and unsir+spotter collapsed at every λ2 tried. Which cannot, and why: `retrain`
trains from scratch through the shared trainer (it has no original to distil and must stay the
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

from spotter.data import Splits
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
    "batch_size",
    "eps",
    "step",
    "steps",
    "direction",
    "copies",
    "neighbour_seed",
)
BN_MODES = ("follow", "eval")  # how the added terms see BatchNorm (module docstring)
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
        bn: str = "follow",
        grad_ratio: float = 0.0,
    ) -> None:
        if bn not in BN_MODES:
            raise ValueError(f"unknown spotter_bn {bn!r}; valid choices: {', '.join(BN_MODES)}")
        if not grad_ratio >= 0:
            raise ValueError(f"spotter_grad_ratio must be >= 0 (0 = off), got {grad_ratio}")
        self.bn, self.grad_ratio = bn, grad_ratio
        self.balance = GradientBalance(grad_ratio) if grad_ratio > 0 else None
        forget = _common.require(splits.forget, "forget", "+spotter")
        device = next(original.parameters()).device
        self.x_nb, self.y, self.src, self.t_clean, self.t_nb = spotter_method.targets(
            original, forget, cfg, device
        )
        self.forget, self.cfg, self.device = forget, cfg, device
        self.forget_classes = splits.forget_classes
        self.k = splits.num_classes
        self.generator = torch.Generator().manual_seed(seed)
        self.queue: list[torch.Tensor] = []
        self.sums, self.calls = torch.zeros(2), 0

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
            _, kd_nb, disp, _ = spotter_method.spotter_terms(
                view,
                x,
                self.x_nb[idx].to(self.device),
                self.y[idx].to(self.device),
                self.t_clean[src].to(self.device),
                self.t_nb[idx].to(self.device),
                self.forget_classes,
                self.cfg.temperature,
            )
        self.sums += torch.tensor([kd_nb.item(), disp.item()])
        self.calls += 1
        terms = (1 - self.cfg.lambda1) * kd_nb + self.cfg.lambda2 * disp  # docs/method.md §5
        return terms if self.balance is None else self.balance(student, terms)

    def close(self) -> None:
        if self.balance is not None:
            self.balance.close()


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
    fields.append((PREFIX + "bn", str, dataclasses.field(default="follow")))
    fields.append((PREFIX + "grad_ratio", float, dataclasses.field(default=0.0)))
    clash = {PREFIX + n for n in FIELDS} & {f.name for f in dataclasses.fields(base.Config)}
    assert not clash, clash

    def post_init(self) -> None:  # noqa: ANN001
        split_config(self, base)
        if getattr(self, PREFIX + "bn") not in BN_MODES:
            raise ValueError(
                f"unknown spotter_bn {getattr(self, PREFIX + 'bn')!r}; valid choices: {', '.join(BN_MODES)}"
            )
        if not getattr(self, PREFIX + "grad_ratio") >= 0:
            raise ValueError(
                f"spotter_grad_ratio must be >= 0 (0 = off), got {getattr(self, PREFIX + 'grad_ratio')}"
            )

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
            grad_ratio=cfg.spotter_grad_ratio,
        )  # fmt: skip
        try:
            out = base.unlearn(model, splits, base_cfg, extra_loss=terms)
        finally:
            terms.close()
        if terms.balance is not None and terms.balance.log:
            ratios, scales = zip(*terms.balance.log, strict=True)
            log.info(
                "%s: the terms' gradient was %.2f× the base's (median), scaled by %.2f (median, %d steps)",
                name, sorted(ratios)[len(ratios) // 2], sorted(scales)[len(scales) // 2], len(scales),
            )  # fmt: skip
        if terms.calls:
            kd_nb, disp = (terms.sums / terms.calls).tolist()
            log.info(
                "%s: %d steps with Spotter's terms (mean kd_nb %.4f, disp %.4f)",
                name,
                terms.calls,
                kd_nb,
                disp,
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
