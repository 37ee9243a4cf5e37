"""PGD and Gaussian neighbourhoods (docs/method.md §3)."""

from __future__ import annotations

import pytest
import torch

from spotter.data import to_float
from spotter.functional.perturb import gaussian, neighbourhood, pgd, runner_up


@pytest.fixture(scope="module")
def batch(reference):
    s = reference.splits
    x = to_float(torch.cat([s.forget.x[:48], s.retain.x[:48]]))
    return x, torch.cat([s.forget.y[:48], s.retain.y[:48]])


def runner_up_prob(model, x, target):
    with torch.no_grad():
        return torch.softmax(model(x), 1).gather(1, target.view(-1, 1)).squeeze(1)


@pytest.mark.parametrize("direction", ["toward", "away"])
def test_pgd_stays_in_eps_ball_and_pixel_range(original, batch, direction):
    x, y = batch
    eps = 0.05
    x_adv = pgd(original, x, y, eps=eps, step=0.02, steps=4, direction=direction)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > eps / 2  # it did move


def test_pgd_direction(original, batch):
    x, y = batch
    with torch.no_grad():
        target = runner_up(original(x), y)
    clean = runner_up_prob(original, x, target).mean()
    g = torch.Generator().manual_seed(0)
    toward = runner_up_prob(original, pgd(original, x, y, generator=g), target).mean()
    g = torch.Generator().manual_seed(0)
    away = runner_up_prob(original, pgd(original, x, y, direction="away", generator=g), target).mean()
    assert toward > clean > away


def test_runner_up_is_strongest_other_class():
    logits = torch.tensor([[5.0, 4.0, 1.0], [0.0, 9.0, 3.0], [2.0, 0.0, 7.0]])
    assert runner_up(logits, torch.tensor([0, 1, 0])).tolist() == [1, 2, 2]


def test_pgd_seeded(original, batch):
    x, y = batch[0][:16], batch[1][:16]
    a = pgd(original, x, y, generator=torch.Generator().manual_seed(1))
    b = pgd(original, x, y, generator=torch.Generator().manual_seed(1))
    c = pgd(original, x, y, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pgd_bad_arguments(original, batch):
    x, y = batch
    with pytest.raises(ValueError, match="'sideways'"):
        pgd(original, x, y, direction="sideways")
    with pytest.raises(ValueError, match="eps"):
        pgd(original, x, y, eps=-0.1)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_pgd_restores_training_mode(original, batch, mode):
    x, y = batch
    original.train(mode == "train")
    try:
        original.zero_grad(set_to_none=True)
        before = {k: v.clone() for k, v in original.state_dict().items()}
        pgd(original, x[:8], y[:8])
        assert all(m.training == (mode == "train") for m in original.modules())
        # eval mode during the attack: BatchNorm running statistics are not touched
        assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
        assert all(p.grad is None for p in original.parameters())
    finally:
        original.eval()


def test_gaussian_in_range_and_seeded():
    x = torch.rand(16, 1, 8, 8)
    x[0] = 0.0
    x[1] = 1.0
    a = gaussian(x, 0.05, torch.Generator().manual_seed(0))
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, gaussian(x, 0.05, torch.Generator().manual_seed(0)))
    noise = (a - x)[2:]
    assert 0.03 < noise.std() < 0.07
    assert torch.equal(gaussian(x, 0.0), x)
    with pytest.raises(ValueError, match="sigma"):
        gaussian(x, -1.0)


@pytest.mark.parametrize("kind", ["pgd", "pgd_away", "gaussian"])
def test_neighbourhood_shapes_and_seed(original, reference, kind):
    forget = reference.splits.forget
    x8, y = forget.x[:6], forget.y[:6]
    x_nb, y_nb = neighbourhood(original, x8, y, kind, seed=3, copies=2, batch_size=4)
    assert x_nb.shape == (12, *x8.shape[1:]) and x_nb.dtype == torch.float32
    assert torch.equal(y_nb, y.repeat(2))
    assert (x_nb - to_float(x8).repeat(2, 1, 1, 1)).abs().max() <= 0.03 + 1e-6 or kind == "gaussian"
    assert not torch.equal(x_nb[:6], x_nb[6:])  # the copies are different draws
    again, _ = neighbourhood(original, x8, y, kind, seed=3, copies=2, batch_size=4)
    assert torch.equal(x_nb, again)
    other, _ = neighbourhood(original, x8, y, kind, seed=4, copies=2, batch_size=4)
    assert not torch.equal(x_nb, other)
    with pytest.raises(ValueError, match="'adv'"):
        neighbourhood(original, x8, y, "adv", seed=0)
