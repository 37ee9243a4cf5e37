"""Spotter through the method registry: the method contract plus its own behaviour (docs/method.md §5)."""

from __future__ import annotations

import copy
import dataclasses
import types

import pytest
import torch
from conftest import same_state, state_copy

import spotter.methods
import spotter.methods.spotter as spotter_method
from spotter import methods
from spotter.data import make_splits, to_float
from spotter.functional.losses import dispersion, masked_kd
from spotter.training.inference import evaluate_accuracy

# ~10 steps on the ~310 forget images: forgets class 0 and keeps the retain classes (100% here;
# 10 epochs of this also forget but over-unlearn, retain ~80%)
FAST = {"lr": 1e-2, "epochs": 2, "batch_size": 64}


@pytest.fixture(scope="module")
def run_twice(reference, monkeypatch_module):
    """Two seeded runs; the second records the splits Spotter receives."""
    before = state_copy(reference.original)
    first = methods.run("spotter", reference.original, reference.splits, overrides=FAST)
    seen = []

    def recording_unlearn(model, splits, cfg):
        seen.append(splits)
        return real_unlearn(model, splits, cfg)

    real_unlearn = spotter_method.unlearn
    monkeypatch_module.setattr(spotter_method, "unlearn", recording_unlearn)
    second = methods.run("spotter", reference.original, reference.splits, overrides=FAST)
    monkeypatch_module.undo()
    return types.SimpleNamespace(before=before, first=first, second=second, seen=seen)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_spotter_forgets(reference, run_twice):
    s, model = reference.splits, run_twice.first
    assert evaluate_accuracy(reference.original, s.test_forget) > 80
    assert evaluate_accuracy(model, s.forget) < 20
    assert evaluate_accuracy(model, s.test_forget) < 20
    # the retain classes stay known (the original has 100% on them)
    assert evaluate_accuracy(model, s.test_retain) > 90


def test_spotter_returns_a_new_model_and_leaves_the_input_untouched(reference, run_twice):
    assert run_twice.first is not reference.original
    assert same_state(state_copy(reference.original), run_twice.before)
    assert not same_state(state_copy(run_twice.first), run_twice.before)
    assert all(
        torch.isfinite(v).all() for v in run_twice.first.state_dict().values() if v.is_floating_point()
    )
    assert not run_twice.first.training
    history = run_twice.first.unlearn_history
    assert len(history) == FAST["epochs"] and history[-1]["loss"] < history[0]["loss"]


def test_spotter_is_deterministic(run_twice):
    assert same_state(state_copy(run_twice.first), state_copy(run_twice.second))


def test_spotter_never_sees_retain_data(reference, run_twice):
    (splits,) = run_twice.seen
    assert splits.retain is None
    assert torch.equal(splits.forget.x, reference.splits.forget.x)
    assert reference.splits.retain is not None  # the caller's splits are not modified


def test_spotter_keeps_batchnorm_statistics(reference, run_twice):
    def running(model):
        return {k: v for k, v in model.state_dict().items() if "running" in k}

    assert same_state(running(run_twice.first), running(reference.original))


def test_spotter_terms_match_the_loss_functions(reference):
    s, model = reference.splits, reference.original
    x = to_float(s.forget.x[:8])
    x_nb = (x + 0.01).clamp(0, 1)
    y = s.forget.y[:8]
    with torch.no_grad():
        t_clean, t_nb = model(x), model(x_nb)
    student = copy.deepcopy(model).eval()
    with torch.no_grad():
        student.head.weight.add_(0.1)  # differ from the teacher
        kd_clean, kd_nb, disp, feats = spotter_method.spotter_terms(
            student, x, x_nb, y, t_clean, t_nb, (0,), 2.0
        )
        assert kd_clean.item() == pytest.approx(masked_kd(student(x), t_clean, (0,), 2.0).item(), rel=1e-5)
        assert kd_nb.item() == pytest.approx(masked_kd(student(x_nb), t_nb, (0,), 2.0).item(), rel=1e-5)
        assert disp.item() == pytest.approx(dispersion(student.features(x), y).item(), rel=1e-5)
        assert torch.allclose(feats, student.features(x), atol=1e-5)
    assert kd_clean.item() > 0 and kd_nb.item() > 0


def test_spread_order_puts_every_forget_class_in_every_batch():
    y = torch.tensor([0] * 30 + [3] * 10 + [5] * 20)
    order = spotter_method.spread_order(y, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(60))
    for i in range(0, 60, 12):
        counts = torch.bincount(y[order[i : i + 12]], minlength=6)
        assert counts[0] >= 4 and counts[3] >= 1 and counts[5] >= 3


def test_several_forget_classes(synthetic, reference):
    train, test, info = synthetic
    splits = make_splits(train, test, (0, 3), info.num_classes, val_size=48, shots=5)
    model = methods.run("spotter", reference.original, splits, overrides={**FAST, "epochs": 6})
    for c in (0, 3):
        assert evaluate_accuracy(reference.original, splits.test_forget.of_classes([c])) > 60
        assert evaluate_accuracy(model, splits.test_forget.of_classes([c])) < 20


def test_zero_epochs_is_a_copy(reference):
    model = methods.run("spotter", reference.original, reference.splits, overrides={"epochs": 0})
    assert model is not reference.original
    assert same_state(state_copy(model), state_copy(reference.original))


def test_make_config_presets_and_overrides():
    cfg = methods.make_config("spotter", {"lr": "1e-3", "epochs": 4}, preset="authors")
    default = spotter_method.Config()
    assert cfg.lr == 1e-3 and cfg.epochs == 4
    assert dataclasses.replace(cfg, lr=default.lr, epochs=default.epochs, direction="toward") == default
    assert methods.make_config("spotter", ["lambda2=2", "direction=away"]).lambda2 == 2.0
    # the authors' released code steps PGD away from the runner-up; the paper's text (our default) toward
    assert methods.make_config("spotter", preset="authors") == dataclasses.replace(default, direction="away")
    assert methods.make_config("spotter", preset="authors-toward") == default
    assert (default.lambda1, default.lambda2, default.lr, default.epochs) == (0.7, 1.0, 1e-4, 10)
    with pytest.raises(ValueError, match="'fast'.*authors"):
        methods.make_config("spotter", preset="fast")


def test_unknown_override_lists_valid_keys():
    with pytest.raises(ValueError) as err:
        methods.make_config("spotter", {"lamda2": 1})
    message = str(err.value)
    assert "'lamda2'" in message and "lambda2" in message and "neighbour_seed" in message
    with pytest.raises(ValueError, match="epochs: expected an integer"):
        methods.make_config("spotter", {"epochs": "ten"})
    with pytest.raises(ValueError, match="lambda1"):
        methods.make_config("spotter", {"lambda1": 1.5})


def test_registry():
    assert "spotter" in methods.available()
    assert methods.get("spotter") is spotter_method
    assert set(spotter_method.NEEDS) <= set(methods.ACCESS)
    with pytest.raises(ValueError, match="'nope'.*spotter"):
        methods.get("nope")


def test_retain_free_protocol(reference, monkeypatch):
    splits = reference.splits
    assert methods.visible_splits("spotter", splits, "retain-free").retain is None
    assert methods.visible_splits("spotter", splits, "full").retain is None  # NEEDS has no retain
    model = methods.run(
        "spotter", reference.original, splits, overrides={"epochs": 1}, protocol="retain-free"
    )
    assert model is not reference.original
    with pytest.raises(ValueError, match="'partial'"):
        methods.visible_splits("spotter", splits, "partial")
    # a method that reads retain data gets it under "full" and is refused under "retain-free"
    reader = types.SimpleNamespace(NEEDS=("forget", "retain"))
    monkeypatch.setattr(spotter.methods, "get", lambda name: reader)
    assert methods.visible_splits("reader", splits, "full").retain is splits.retain
    with pytest.raises(ValueError, match="retain-free"):
        methods.visible_splits("reader", splits, "retain-free")


def test_frozen_head_stays_put_and_is_trainable_afterwards(reference):
    cfg = methods.make_config("spotter", {**FAST, "epochs": 2, "train_head": False})
    model = methods.run("spotter", reference.original, reference.splits, cfg)
    assert torch.equal(model.head.weight, reference.original.head.weight)
    assert torch.equal(model.head.bias, reference.original.head.bias)
    assert not torch.equal(next(model.backbone.parameters()), next(reference.original.backbone.parameters()))
    assert all(p.requires_grad for p in model.parameters())


def test_dataset_presets_are_picked_by_name():
    assert methods.default_preset("spotter", "fashion-mnist") == "fashion-mnist"
    assert methods.default_preset("spotter", "synthetic") is None
    assert methods.default_preset("spotter", None) is None
    shipped = methods.make_config("spotter", preset="fashion-mnist")
    assert (shipped.lr, shipped.train_head, shipped.temperature) == (7e-4, False, 4.0)
    assert (shipped.lambda1, shipped.lambda2, shipped.lambda3, shipped.eps) == (0.5, 0.25, 0.5, 0.1)
    paper = methods.make_config("spotter", preset="fashion-mnist-paper")
    assert (paper.lr, paper.train_head, paper.temperature, paper.lambda2, paper.lambda3) == (
        7e-4,
        False,
        2.0,
        1.25,
        0.0,
    )
    authors = methods.make_config("spotter", preset="authors")
    assert (authors.lr, authors.lambda1, authors.lambda2, authors.epochs) == (1e-4, 0.7, 1.0, 10)


def test_simulated_attack_term_is_off_by_default_and_recorded_when_on(reference, run_twice):
    assert spotter_method.Config().lambda3 == 0.0  # the paper's objective unless asked
    assert all(h["prototype"] == 0.0 for h in run_twice.first.unlearn_history)
    cfg = methods.make_config("spotter", {**FAST, "epochs": 2, "lambda3": 1.0, "proto_variants": "cosine"})
    model = methods.run("spotter", reference.original, reference.splits, cfg)
    assert all(h["prototype"] > 0 for h in model.unlearn_history)
    assert not same_state(state_copy(model), state_copy(run_twice.first))
    with pytest.raises(ValueError, match="'bogus'.*cosine, l2, scaled"):
        methods.make_config("spotter", {"proto_variants": "cosine,bogus"})
    with pytest.raises(ValueError, match="lambda3 must be >= 0, got -1"):
        methods.make_config("spotter", {"lambda3": -1})
