"""Retrain (oracle): a fresh model trained from scratch on the retain set only; K outputs kept.

Data: reads the whole retain set D_r (and the retain part of the validation split, for the same
epoch selection the cached reference models use). Never sees D_f.
Reference: the "exact unlearning" baseline of every class-unlearning paper (docs/baselines.md §4.1);
trained with spotter's own loop (spotter.training.fit.fit), the same one that builds the cached
`retrained` reference model in spotter.training.zoo.
Non-obvious settings: the head keeps all K outputs; the forget rows are simply never trained
(they keep their random initialisation), as in the Spotter authors' retrained model. The model is
re-initialised in place of `build_model`: every layer's `reset_parameters()` from the seeded
global RNG, so any architecture (also adapted user models) can be retrained. Public recipes
disagree (Unlearn-Sparse: 160 ep @0.1; Unlearn-WorstCase: 182 ep cosine; Spotter: 200 ep ×0.2 at
60/120/160; DELETE: 150 ep); we default to the library's fast CPU recipe (`TrainConfig()`) so
that it matches the zoo's retrained model, and `TrainConfig.paper()` gives the authors' recipe.
This method cannot use the zoo's cache (its key needs the dataset name); use
`spotter.training.zoo.reference_model("retrained", ...)` when a cached copy is wanted.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from torch import nn

from spotter.data import Splits
from spotter.methods import _common
from spotter.training.fit import TrainConfig, fit

log = logging.getLogger("spotter")

NEEDS = ("retain",)
TUNE: dict[str, list] = {}  # the oracle is the reference the tuner scores against


@dataclass
class Config:
    """Retraining recipe. Search: none (this is the reference); epochs/lr only to match a recipe."""

    train: TrainConfig = field(default_factory=TrainConfig)  # spotter's fast recipe, = zoo's (README)
    seed: int = 0  # replaces train.seed, so `--seed` reaches the recipe


def unlearn(model: nn.Module, splits: Splits, cfg: Config) -> nn.Module:
    """A freshly initialised copy of `model`'s architecture trained on splits.retain."""
    retain = _common.require(splits.retain, "retain", "retrain")
    student, device = _common.start(model, cfg.seed)
    _common.reinit(student)
    train_cfg = dataclasses.replace(cfg.train, seed=cfg.seed)
    val = splits.val_retain if len(splits.val) else None
    student, history = fit(student, retain, val, train_cfg, device, desc="retrain")
    assert student.head.out_features == model.head.out_features  # K-way head kept
    return _common.finish(student, history.epochs)
