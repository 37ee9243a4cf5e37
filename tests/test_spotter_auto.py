"""Spotter-auto's pieces on the tiny synthetic model: what each must do, and that it notices when
its maths is changed."""

from __future__ import annotations

import torch
from _methods_fixtures import data, original

from spotter.data import to_float
from spotter.methods import spotter_auto as auto
from spotter.training.inference import predict


def test_holdout_is_stratified_disjoint_and_complete():
    y = torch.tensor([0] * 50 + [3] * 20)
    train, held = auto.holdout_split(y, 0.1, torch.Generator().manual_seed(0))
    assert set(train.tolist()).isdisjoint(held.tolist())
    assert sorted(train.tolist() + held.tolist()) == list(range(70))
    assert (y[held] == 0).sum() == 5 and (y[held] == 3).sum() == 5  # at least 5 per class


def test_anchor_targets_rank_retain_classes_only():
    logits = torch.tensor([[9.0, 1.0, 5.0, 3.0], [9.0, 7.0, 2.0, 8.0]])
    assert auto.anchor_targets(logits, (0,), 2).tolist() == [[2, 3], [3, 1]]


def test_anchors_land_in_their_target_class_and_radius_is_the_smallest_that_does():
    model, splits = original(), data()
    x = to_float(splits.forget.x[:24])
    classes = auto.anchor_targets(predict(model, x), splits.forget_classes, 1)
    cfg = auto.Config(anchor_radii=(0.0001, 0.3), anchor_hit=0.5)
    anchors, radius, hit = auto.build_anchors(model, x, classes, cfg, torch.device("cpu"))
    assert anchors.shape == x.shape and radius == 0.3 and hit >= 0.5  # 1e-4 pixels moves nothing
    assert (anchors - x).abs().max() <= 0.3 + 1e-6
    on_target = (predict(model, anchors).argmax(1) == classes[:, 0]).float().mean()
    assert on_target >= 0.5
    assert (predict(model, x).argmax(1) == classes[:, 0]).float().mean() < 0.2  # it was not so before


def test_strongest_attack_wins_on_the_original_and_uses_the_attackers_alpha():
    model, splits = original(), data()
    g = torch.Generator().manual_seed(0)
    forget = splits.forget
    train, held = forget.subset(torch.arange(0, 40)), forget.subset(torch.arange(40, len(forget)))
    cpu = torch.device("cpu")
    win = auto.strongest_attack(model, train, held, splits.forget_classes, (5,), g, cpu)
    assert win > 50  # the original still recognises its class: the prototype brings it back
    # with retain proxies the attacker cannot pick an α that steals them: never stronger
    proxies = to_float(splits.test_retain.x[:64])
    labels = predict(model, proxies).argmax(1)
    g = torch.Generator().manual_seed(0)
    with_rule = auto.strongest_attack(
        model, train, held, splits.forget_classes, (5,), g, cpu, proxies, labels
    )
    assert with_rule <= win
