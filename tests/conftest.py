"""Shared fixtures: the synthetic dataset and a tiny original/retrained pair, trained once per session."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from spotter.data import DatasetInfo, Splits, TensorSet, load, make_splits
from spotter.models import Classifier, ModelSpec
from spotter.training.fit import TrainConfig
from spotter.training.zoo import reference_model

# Tiny models gain nothing from intra-op threads, and on a 2-core machine shared with other jobs
# OpenMP's spinning threads slow everyone down; one thread keeps the suite fast and steady.
torch.set_num_threads(1)

FORGET = (0,)
VAL_SIZE = 48
# The fixture recipe; test_cli and test_audit_cli reuse it (--epochs 1 --train-set ...) to hit the same
# cache entry. One epoch of the 1 872 training images is 58 steps of 32, and the original already
# knows every class (test_train.py checks it).
TRAIN_CFG = TrainConfig(epochs=1, batch_size=32, lr=0.05, pad=1)


@dataclass
class Reference:
    original: Classifier
    retrained: Classifier
    splits: Splits
    spec: ModelSpec
    cfg: TrainConfig
    cache_dir: str


@pytest.fixture(scope="session")
def synthetic() -> tuple[TensorSet, TensorSet, DatasetInfo]:
    return load("synthetic")


@pytest.fixture(scope="session")
def splits(synthetic) -> Splits:
    train, test, info = synthetic
    return make_splits(train, test, FORGET, info.num_classes, val_size=VAL_SIZE, shots=5, seed=0)


@pytest.fixture(scope="session")
def spec(synthetic) -> ModelSpec:
    info = synthetic[2]
    return ModelSpec("tiny", info.num_classes, info.channels, 16, info.mean, info.std)


@pytest.fixture(scope="session")
def reference(tmp_path_factory, splits, spec) -> Reference:
    """Original (all classes) and retrained (retain only) tiny models, cached in a session folder."""
    cache = tmp_path_factory.mktemp("cache")
    original, _ = reference_model("original", "synthetic", splits, spec, TRAIN_CFG, cache)
    retrained, _ = reference_model("retrained", "synthetic", splits, spec, TRAIN_CFG, cache)
    return Reference(original.eval(), retrained.eval(), splits, spec, TRAIN_CFG, str(cache))


@pytest.fixture(scope="session")
def original(reference) -> Classifier:
    return reference.original


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """The smoke benchmark (benchmarks/smoke.toml) run once per session (a _bench_fixtures.Run):
    test_bench.py and test_report.py both read it, and neither changes it."""
    from _bench_fixtures import smoke_run

    return smoke_run(tmp_path_factory)


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
