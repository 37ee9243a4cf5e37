"""Method registry: every module in this folder with `Config`, `NEEDS` and `unlearn` is a method.

The file name is the CLI name, the TOML key and the test id (docs/design.md). A method receives only the
data it declares in NEEDS: a method that does not read retain data is handed splits without any.
"BASE+spotter" names (see `combinations()`) add Spotter's terms to a base method (methods/_plus.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
from dataclasses import dataclass, fields
from types import ModuleType
from typing import Any

from torch import nn

from spotter.config import apply_overrides
from spotter.data import Splits

# What a method may read. "forget" is D_f with labels; "retain" the whole D_r; "retain_subset" a
# part of D_r; "retain_stats" statistics of D_r; "surrogate" out-of-distribution images.
ACCESS = ("forget", "retain", "retain_subset", "retain_stats", "surrogate")
RETAIN_ACCESS = ("retain", "retain_subset", "retain_stats")
PROTOCOLS = ("full", "retain-free")


NOT_METHODS = ("tune",)  # modules of this package that are tools over methods, not methods


def available() -> list[str]:
    """Names of all registered methods, sorted."""
    names = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name not in NOT_METHODS:
            names.append(info.name)
    return sorted(names)


def combinations() -> list[str]:
    """Every "BASE+spotter" name: bases that train with a loss, plus Spotter's terms (docs/method.md §5)."""
    from spotter.methods import _plus

    return [
        f"{n}{_plus.SUFFIX}" for n in available() if n not in _plus.WHY_NOT and _plus.takes_extra_loss(get(n))
    ]


def get(name: str) -> ModuleType:
    if not isinstance(name, str):
        raise ValueError(f"method name {name!r} is not a string; valid choices: {', '.join(available())}")
    if name.endswith("+spotter"):  # a combination, built by spotter/methods/_plus.py
        from spotter.methods import _plus

        return _plus.combo(name)
    names = available()
    if name not in names:
        raise ValueError(f"unknown method {name!r}; valid choices: {', '.join(names)} (or BASE+spotter)")
    module = importlib.import_module(f"{__name__}.{name}")
    for attr in ("Config", "NEEDS", "unlearn"):
        assert hasattr(module, attr), f"method module {name} lacks {attr}"
    return module


# Ranges every method's settings share, by field name (a method's own __post_init__ checks the rest).
# lo, hi, whether lo itself is allowed; None = unbounded. Pixels are in [0, 1], so radii and steps are too.
RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    **dict.fromkeys(("lr", "impair_lr", "noise_lr", "repair_lr"), (0, None, False)),
    **dict.fromkeys(("temperature", "spotter_temperature"), (0, None, False)),
    **dict.fromkeys(("eps", "spotter_eps", "step", "spotter_step"), (0, 1, True)),
    **dict.fromkeys(("momentum", "weight_decay", "clip"), (0, None, True)),
    **dict.fromkeys(("retain_fraction", "mask_ratio", "lambda1", "spotter_lambda1"), (0, 1, True)),
    **dict.fromkeys(
        ("epochs", "impair_epochs", "repair_epochs", "no_l1_epochs", "msteps", "steps", "spotter_steps"),
        (0, None, True),
    ),
    **dict.fromkeys(
        ("batch_size", "forget_batch_size", "spotter_batch_size", "noise_batch", "copies", "spotter_copies"),
        (1, None, True),
    ),
}


def check_config(cfg: Any) -> Any:
    """Refuse NaN/Inf numbers and values outside RANGES, naming the setting and its valid range."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            raise ValueError(f"{f.name}={value} is not a finite number")
        if f.name not in RANGES:
            continue
        lo, hi, closed = RANGES[f.name]
        if (lo is not None and (value < lo or (value == lo and not closed))) or (
            hi is not None and value > hi
        ):
            valid = f"{'[' if closed else '('}{lo}, {hi if hi is not None else '∞'}{']' if hi is not None else ')'}"
            raise ValueError(f"{f.name}={value} is out of range; valid values lie in {valid}")
    return cfg


def make_config(name: str, overrides: Any = None, preset: str | None = None) -> Any:
    """The method's Config with a named preset (if the method has PRESETS) and overrides applied."""
    module = get(name)
    cfg = module.Config()
    if preset is not None:
        presets = getattr(module, "PRESETS", {})
        if preset not in presets:
            raise ValueError(
                f"unknown preset {preset!r} for {name}; valid choices: {', '.join(presets) or '(none)'}"
            )
        cfg = apply_overrides(cfg, presets[preset])
    return check_config(apply_overrides(cfg, overrides))


def with_seed(cfg: Any, seed: int) -> Any:
    """`cfg` with its unlearning seed set (methods without randomness have no seed field)."""
    return dataclasses.replace(cfg, seed=seed) if hasattr(cfg, "seed") else cfg


def default_preset(name: str, dataset: str | None) -> str | None:
    """The preset a method ships for `dataset` (a preset named after it), else None."""
    if dataset is None or "+" in name:
        return None
    return dataset if dataset in getattr(get(name), "PRESETS", {}) else None


@dataclass(frozen=True)
class Access:
    needs: tuple[str, ...]

    @property
    def reads_retain(self) -> bool:
        return any(n in RETAIN_ACCESS for n in self.needs)


def visible_splits(name: str, splits: Splits, protocol: str = "full") -> Splits:
    """The splits a method may see under `protocol`; refuses retain readers under retain-free."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid choices: {', '.join(PROTOCOLS)}")
    access = Access(tuple(get(name).NEEDS))
    if access.reads_retain and protocol == "retain-free":
        raise ValueError(
            f"method {name!r} reads {', '.join(n for n in access.needs if n in RETAIN_ACCESS)}, "
            "which the retain-free protocol forbids; use --protocol full or a retain-free method"
        )
    return splits if access.reads_retain else splits.without_retain()


def run(
    name: str,
    model: nn.Module,
    splits: Splits,
    cfg: Any = None,
    overrides: Any = None,
    protocol: str = "full",
) -> nn.Module:
    """Unlearn `splits.forget_classes` from a copy of `model` with method `name`."""
    module = get(name)
    cfg = check_config(apply_overrides(cfg if cfg is not None else module.Config(), overrides))
    return module.unlearn(model, visible_splits(name, splits, protocol), cfg)


def unlearn(
    model: nn.Module,
    splits: Splits,
    method: str = "spotter",
    overrides: Any = None,
    preset: str | None = None,
    protocol: str = "full",
) -> nn.Module:
    """An unlearned copy of `model` (`splits.forget_classes` removed) by `method` with its defaults,
    a named preset and key=value overrides; the retain-free protocol hides every retain split."""
    return run(method, model, splits, make_config(method, overrides, preset), protocol=protocol)
