"""Surrogate data for SCAR: another dataset's images, conformed to the unlearned dataset's shape."""

from __future__ import annotations

import pytest
import torch

from spotter import methods
from spotter.data import DataConfig, conform, load, load_surrogate, prepare
from tests.test_formats import write_cifar10, write_fashion


def test_conform_converts_channels_and_size():
    rgb = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    rgb[:, 0] = 30
    rgb[:, 1] = 60
    rgb[:, 2] = 90
    grey = conform(rgb, 1, 16)
    assert grey.shape == (2, 1, 16, 16) and grey.dtype == torch.uint8
    assert int(grey.min()) == int(grey.max()) == 60  # channel mean, constant image stays constant
    back = conform(grey, 3, 16)
    assert back.shape == (2, 3, 16, 16) and torch.equal(back[:, 0], back[:, 2])
    same = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    assert torch.equal(conform(same, 1, 16), same)
    with pytest.raises(ValueError, match="3-channel"):
        conform(torch.zeros(1, 4, 8, 8, dtype=torch.uint8), 3, 8)


def test_surrogate_from_another_dataset(tmp_path):
    write_fashion(tmp_path / "fm", gz=True, n_train=40)
    _, _, info = load("synthetic")
    sur = load_surrogate("fashion-mnist", tmp_path / "fm", info, count=25, seed=0)
    assert sur.x.shape == (25, info.channels, info.size, info.size)
    again = load_surrogate("fashion-mnist", tmp_path / "fm", info, count=25, seed=0)
    assert torch.equal(sur.x, again.x)  # seeded draw
    assert len(load_surrogate("fashion-mnist", tmp_path / "fm", info, count=1000)) == 40  # capped


def test_surrogate_must_be_another_dataset():
    _, _, info = load("synthetic")
    with pytest.raises(ValueError, match="'synthetic' is the dataset being unlearned; pick another"):
        load_surrogate("synthetic", None, info)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_surrogate("imagenet-21k", None, info)


def test_prepare_attaches_the_surrogate_and_scar_reads_it(tmp_path, original, monkeypatch):
    write_cifar10(tmp_path, per_batch=8)
    splits, _ = prepare(
        DataConfig("synthetic", forget=(0,), val_size=48, surrogate="cifar10", surrogate_dir=str(tmp_path))
    )
    assert splits.surrogate is not None and len(splits.surrogate) == 40
    plain, _ = prepare(DataConfig("synthetic", forget=(0,), val_size=48))
    assert plain.surrogate is None
    assert DataConfig(surrogate="cifar10").split_key() == DataConfig().split_key()  # cache keys unchanged

    import spotter.methods.scar as scar

    seen = []
    real = scar.surrogate_set
    monkeypatch.setattr(
        scar, "surrogate_set", lambda t, s, c, g: seen.append(s.surrogate) or real(t, s, c, g)
    )
    cfg = methods.make_config("scar", {"epochs": 1, "batch_size": 16})
    methods.run("scar", original, splits, cfg)
    assert seen and seen[0] is splits.surrogate
