"""Prototypical relearning attack (docs/method.md §4)."""

from __future__ import annotations

import pytest
import torch
from conftest import same_state, state_copy
from torch import nn

from spotter.evaluation.pra import DEFAULT_ALPHAS, pra_sweep, prototype_relearning, prototype_rows
from spotter.functional.metrics import accuracy
from spotter.models import Classifier
from spotter.training.inference import predict

D, K = 8, 4


def linear_model(weight: torch.Tensor, bias: torch.Tensor) -> Classifier:
    """features = the input itself (B, D, 1, 1) -> (B, D); a hand-set linear head."""
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return Classifier(nn.Flatten(), head)


def as_images(feats: torch.Tensor) -> torch.Tensor:
    return feats.view(len(feats), -1, 1, 1)


@pytest.fixture
def separable():
    """Positive clustered features (like post-ReLU embeddings); head = normalised class centres."""
    g = torch.Generator().manual_seed(0)
    centres = 0.3 + 3 * torch.eye(K, D)
    y = torch.arange(K).repeat_interleave(30)
    feats = centres[y] + 0.2 * torch.rand(len(y), D, generator=g)
    weight = torch.nn.functional.normalize(centres, dim=1)
    return feats, y, weight


def test_attack_changes_only_forget_rows_of_a_copy(separable):
    feats, y, weight = separable
    model = linear_model(weight, torch.linspace(-0.5, 0.5, K))
    model.backbone = nn.Sequential(nn.Flatten(), nn.Linear(D, D))  # a backbone with parameters
    before = state_copy(model)
    shot_y = torch.tensor([1] * 5 + [3] * 5)
    shot_feats = predict(model, as_images(torch.cat([feats[y == 1][:5], feats[y == 3][:5]])), features=True)
    attacked = prototype_relearning(model, shot_feats, shot_y, (1, 3), alpha=0.5)
    assert attacked is not model
    assert same_state(state_copy(model), before)  # the original is untouched
    new = state_copy(attacked)
    for key in before:
        if key not in ("head.weight", "head.bias"):
            assert torch.equal(new[key], before[key]), key
    for c in range(K):
        changed_w = not torch.equal(new["head.weight"][c], before["head.weight"][c])
        changed_b = not torch.equal(new["head.bias"][c], before["head.bias"][c])
        assert changed_w == (c in (1, 3)) and changed_b == (c in (1, 3)), c
    # editing the copy does not reach the original
    with torch.no_grad():
        attacked.head.weight.zero_()
    assert same_state(state_copy(model), before)


@pytest.mark.parametrize("variant", ["cosine", "l2"])
@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_rows_follow_method_md(separable, variant, alpha):
    feats, y, weight = separable
    bias = torch.tensor([0.1, -0.2, 0.3, 0.4])
    model = linear_model(weight, bias)
    shot_feats, shot_y = feats[y == 2][:5], torch.full((5,), 2)
    p_hat = shot_feats.mean(0) / shot_feats.mean(0).norm()
    w, b = (p_hat, 0.0) if variant == "cosine" else (2 * p_hat, -1.0)  # l2: b = -‖p̂‖² = -1
    attacked = prototype_relearning(model, shot_feats, shot_y, (2,), alpha, variant)
    assert torch.allclose(attacked.head.weight[2], alpha * w + (1 - alpha) * weight[2], atol=1e-6)
    assert attacked.head.bias[2].item() == pytest.approx(alpha * b + (1 - alpha) * 0.3, abs=1e-6)
    rows, biases = prototype_rows(shot_feats, shot_y, (2,), variant)
    assert torch.allclose(rows[0], w, atol=1e-6) and biases[0].item() == pytest.approx(b, abs=1e-6)


def test_bad_arguments(separable):
    feats, y, weight = separable
    model = linear_model(weight, torch.zeros(K))
    with pytest.raises(ValueError, match="'dot'"):
        prototype_relearning(model, feats[:5], y[:5], (0,), 1.0, "dot")
    with pytest.raises(ValueError, match="alpha"):
        prototype_relearning(model, feats[:5], y[:5], (0,), 1.5)
    with pytest.raises(ValueError, match="no shots for forget class 3"):
        prototype_relearning(model, feats[:5], y[:5], (3,), 1.0)


def test_pra_restores_a_zeroed_forget_row(separable):
    feats, y, weight = separable
    forget = 2
    w = weight.clone()
    w[forget] = 0
    bias = torch.zeros(K)
    bias[forget] = -5.0
    model = linear_model(w, bias)
    x, fy = as_images(feats[y == forget]), y[y == forget]
    assert accuracy(model(x), fy) == 0.0
    shots = feats[y == forget][:5]
    attacked = prototype_relearning(model, shots, torch.full((5,), forget), (forget,), alpha=1.0)
    assert accuracy(attacked(x), fy) > 90.0
    assert accuracy(attacked(as_images(feats[y != forget])), y[y != forget]) > 90.0
    weak = prototype_relearning(model, shots, torch.full((5,), forget), (forget,), alpha=0.1)
    assert accuracy(weak(x), fy) < 10.0  # a small α cannot overcome the -5 bias


def test_pra_sweep_agrees_with_attacked_copies(reference):
    model, s = reference.original, reference.splits
    parts = ("forget", "test_forget", "test_retain")
    feats = {k: (predict(model, getattr(s, k).x, features=True), getattr(s, k).y) for k in parts}
    shot_feats = predict(model, s.shots.x, features=True)
    res = pra_sweep(model.head, shot_feats, s.shots.y, s.forget_classes, feats)
    assert res.alphas == list(DEFAULT_ALPHAS) and len(res.test_forget_acc) == 10
    for i, alpha in enumerate(res.alphas):
        attacked = prototype_relearning(model, shot_feats, s.shots.y, s.forget_classes, alpha)
        acc = {k: accuracy(predict(attacked, getattr(s, k).x), getattr(s, k).y) for k in parts}
        assert res.forget_acc[i] == pytest.approx(acc["forget"], abs=1e-4)
        assert res.test_forget_acc[i] == pytest.approx(acc["test_forget"], abs=1e-4)
        assert res.test_retain_acc[i] == pytest.approx(acc["test_retain"], abs=1e-4)
        n_f, n_r = len(s.test_forget), len(s.test_retain)
        overall = (acc["test_forget"] * n_f + acc["test_retain"] * n_r) / (n_f + n_r)
        assert res.test_acc[i] == pytest.approx(overall, abs=1e-3)
    assert res.best_alpha == res.alphas[res.best_index]
    assert res.at_best("test_acc") == max(res.test_acc)


def best_alpha_case(retain_forget_component: float):
    """3 classes in 3-d feature space; forget class 0 (row zeroed, bias -10); shots at e0.

    Forget test points 11·e0 are recovered once 11α > 10(1-α), i.e. α ≥ 0.5. Retain class-1 points
    e1 + c·e0 are stolen by the attacked row once αc - 10(1-α) > 1.
    """
    weight = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    head = nn.Linear(3, 3)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(torch.tensor([-10.0, 0.0, 0.0]))
    shots = torch.tensor([[1.0, 0.0, 0.0]] * 5)
    forget = torch.tensor([[11.0, 0.0, 0.0]] * 4)
    retain = torch.tensor([[retain_forget_component, 1.0, 0.0]] * 6 + [[0.0, 0.0, 1.0]] * 6)
    retain_y = torch.tensor([1] * 6 + [2] * 6)
    feats = {
        "forget": (forget, torch.zeros(4, dtype=torch.long)),
        "test_forget": (forget, torch.zeros(4, dtype=torch.long)),
        "test_retain": (retain, retain_y),
    }
    return pra_sweep(head, shots, torch.zeros(5, dtype=torch.long), (0,), feats)


def test_best_alpha_ties_go_to_the_larger_alpha():
    res = best_alpha_case(0.0)  # retain never stolen: accuracy is flat at its maximum for α ≥ 0.5
    assert res.test_forget_acc[:4] == [0.0] * 4 and res.test_forget_acc[4:] == [100.0] * 6
    assert res.test_retain_acc == [100.0] * 10
    assert res.best_alpha == 1.0


def test_best_alpha_refuses_to_break_retain_classes():
    # c = 5: retain class 1 is stolen from α > 11/15 ≈ 0.73, so the attacker stops at 0.7
    res = best_alpha_case(5.0)
    assert res.test_forget_acc[-1] == 100.0 and res.test_retain_acc[-1] == 50.0
    assert res.best_alpha == 0.7
    assert res.at_best("test_forget_acc") == 100.0 and res.at_best("test_retain_acc") == 100.0
