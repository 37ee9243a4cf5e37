"""Loss and metric maths against brute force and scipy references, plus property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from spotter.evaluation.pra import pra_sweep, prototype_relearning
from spotter.functional.losses import (
    dispersion,
    kd,
    masked_kd,
    masked_log_probs,
    masked_probs,
    prototype_attack_loss,
)
from spotter.functional.metrics import (
    LN2,
    accuracy,
    dispersion_score,
    js_divergence,
    kl_divergence,
    over_unlearning,
    per_class_accuracy,
)
from spotter.models.heads import CosineHead

GEN = torch.Generator().manual_seed(0)


def random_logits(b: int = 16, k: int = 7, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(b, k, generator=GEN, dtype=torch.float64) * scale


# --- masked teacher distribution (docs/method.md §2) ---------------------------------------------------


@pytest.mark.parametrize("forget", [(0,), (2, 5), (6,)])
def test_masked_probs_zero_forget_columns_rows_sum_to_one(forget):
    logits = random_logits()
    p = masked_probs(logits, forget)
    assert torch.all(p[:, list(forget)] == 0)
    assert torch.allclose(p.sum(1), torch.ones(len(p), dtype=p.dtype))
    keep = [c for c in range(7) if c not in forget]
    assert torch.allclose(p[:, keep], torch.softmax(logits[:, keep], 1))  # renormalised rest


def test_masked_probs_temperature():
    logits = random_logits()
    assert torch.allclose(masked_probs(logits, (1,), 2.0), masked_probs(logits / 2, (1,)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_masked_probs_finite_when_teacher_is_certain_of_forget_class(dtype):
    logits = torch.tensor([[1e4, 0.0, -3.0, 1.0], [1e4, 1e4, 5.0, 0.0]], dtype=dtype)
    p = masked_probs(logits, (0,))
    assert torch.isfinite(p).all()
    assert p[0, 0] == 0 and torch.allclose(p.sum(1), torch.ones(2, dtype=dtype))
    expected = torch.softmax(torch.tensor([0.0, -3.0, 1.0], dtype=dtype), 0)
    assert torch.allclose(p[0, 1:], expected)
    assert p[1, 1] == pytest.approx(1.0)
    # the authors' (p / (sum + 1e-10)) would put ~0/1e-10 here; ours stays a distribution
    assert torch.isfinite(masked_log_probs(logits, (0,))[:, 1:]).all()


def test_masked_kd_matches_manual():
    student, teacher = random_logits(), random_logits()
    forget, t = (1, 4), 2.0
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        keep = [c for c in range(7) if c not in forget]
        z = [t_row[c] / t for c in keep]
        mx = max(z)
        norm = sum(math.exp(v - mx) for v in z)
        target = {c: math.exp(t_row[c] / t - mx) / norm for c in keep}
        zs = [v / t for v in s_row]
        lse = max(zs) + math.log(sum(math.exp(v - max(zs)) for v in zs))
        total += sum(p * (math.log(p) - (zs[c] - lse)) for c, p in target.items() if p > 0)
    expected = total / len(student) * t**2
    got = masked_kd(student, teacher, forget, temperature=t)
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_masked_kd_gradient_only_through_student():
    student = random_logits().requires_grad_(True)
    teacher = random_logits().requires_grad_(True)
    masked_kd(student, teacher, (0,)).backward()
    assert student.grad is not None and teacher.grad is None


def test_masked_kd_zero_at_masked_teacher():
    teacher = random_logits()
    student = teacher.clone()
    student[:, 3] = -1e9
    assert masked_kd(student, teacher, (3,)).item() == pytest.approx(0.0, abs=1e-9)
    assert masked_kd(teacher, teacher, (3,)).item() > 0.01


def test_kd_is_zero_on_identical_logits_and_positive_otherwise():
    a, b = random_logits(), random_logits()
    assert kd(a, a).item() == pytest.approx(0.0, abs=1e-12)
    assert kd(a, b).item() > 0


# --- dispersion (docs/method.md §5) ---------------------------------------------------------------------


def brute_dispersion(feats: torch.Tensor, y: torch.Tensor) -> float:
    sims = []
    for i in range(len(y)):
        for j in range(len(y)):
            if i != j and y[i] == y[j]:
                a, b = feats[i], feats[j]
                sims.append(float(a @ b / (a.norm() * b.norm())))
    return sum(sims) / len(sims) if sims else 0.0


@pytest.mark.parametrize("labels", [[0, 0, 0, 0, 0], [0, 1, 0, 1, 1, 2], [3, 3, 5, 6, 5, 3, 3]])
def test_dispersion_matches_brute_force(labels):
    y = torch.tensor(labels)
    feats = torch.randn(len(y), 9, generator=GEN, dtype=torch.float64)
    assert dispersion(feats, y).item() == pytest.approx(brute_dispersion(feats, y), rel=1e-9)
    assert dispersion_score(feats.float(), y) == pytest.approx(brute_dispersion(feats, y), abs=1e-5)


def test_dispersion_zero_without_pairs_and_one_when_collapsed():
    feats = torch.randn(4, 5, generator=GEN)
    assert dispersion(feats, torch.tensor([0, 1, 2, 3])).item() == 0.0
    same = torch.randn(1, 5, generator=GEN).repeat(4, 1) * torch.tensor([[1.0], [2.0], [3.0], [0.5]])
    assert dispersion(same, torch.zeros(4, dtype=torch.long)).item() == pytest.approx(1.0, abs=1e-6)


def test_dispersion_ignores_cross_class_pairs():
    # class 0 collapsed, class 1 opposite; cross-class similarity would be -1
    feats = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [-3.0, 0.0]])
    assert dispersion(feats, torch.tensor([0, 0, 1, 1])).item() == pytest.approx(1.0)


# --- divergences (docs/method.md §3) --------------------------------------------------------------------


def _prototype_setting(seed: int = 0):
    """A 4-class head on 8-d features; every class, forget class 0 included, on its own axis."""
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(8, 4)
    with torch.no_grad():
        head.weight.copy_(torch.eye(4, 8) * 3)
        head.bias.zero_()
    forget = (torch.eye(8)[0] * 4 + 0.3 * torch.rand(64, 8, generator=g)).relu()
    retain = torch.cat([(torch.eye(8)[k] * 4 + 0.3 * torch.rand(32, 8, generator=g)) for k in (1, 2, 3)])
    retain_y = torch.arange(1, 4).repeat_interleave(32)
    return head, forget, retain, retain_y


def _pra_forget_acc(head, forget, retain, retain_y, variant):
    zeros = torch.zeros(len(forget), dtype=torch.long)
    feats = {"forget": (forget, zeros), "test_forget": (forget, zeros), "test_retain": (retain, retain_y)}
    res = pra_sweep(head, forget[:5], zeros[:5], (0,), feats, alphas=(1.0,), variant=variant)
    return res.test_forget_acc[0]


def test_prototype_attack_loss_trains_features_the_attack_cannot_use():
    head, forget, retain, retain_y = _prototype_setting()
    # the forget row points away (as after unlearning): class 0 is not predicted, but PRA restores it
    with torch.no_grad():
        head.weight[0] = -head.weight[0]
    y = torch.zeros(len(forget), dtype=torch.long)
    assert _pra_forget_acc(head, forget, retain, retain_y, "cosine") > 90
    assert _pra_forget_acc(head, forget, retain, retain_y, "scaled") > 90
    feats = forget.clone().requires_grad_(True)
    opt = torch.optim.Adam([feats], lr=0.05)
    g = torch.Generator().manual_seed(0)
    first = prototype_attack_loss(feats, y, head, (0,), g).item()
    for _ in range(300):
        loss = prototype_attack_loss(feats.relu(), y, head, (0,), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert head.weight.grad is None  # the head is read, never trained
    assert loss.item() < 0.1 * first
    moved = feats.detach().relu()
    assert _pra_forget_acc(head, moved, retain, retain_y, "cosine") < 10
    assert _pra_forget_acc(head, moved, retain, retain_y, "scaled") < 10


def test_prototype_attack_loss_is_zero_without_enough_samples_and_checks_variants():
    head, forget, _, _ = _prototype_setting()
    g = torch.Generator().manual_seed(0)
    y = torch.zeros(64, dtype=torch.long)
    assert prototype_attack_loss(forget[:6], y[:6], head, (0,), g, shots=(5,)).item() == 0.0
    assert prototype_attack_loss(forget[:7], y[:7], head, (0,), g, shots=(5,)).item() > 0
    # samples of a retain class are never shots or queries
    assert prototype_attack_loss(forget[:8], y[:8] + 1, head, (0,), g, shots=(5,)).item() == 0.0
    with pytest.raises(ValueError, match="'bogus'.*cosine, l2, scaled"):
        prototype_attack_loss(forget, y, head, (0,), g, variants=("bogus",))


@pytest.mark.parametrize("variant", ["cosine", "l2", "scaled"])
def test_prototype_attack_loss_is_the_measured_attack(variant):
    """Identical forget features make the shot draw irrelevant: the term must equal -log(1 - P(c))
    under the head that `prototype_relearning` (the evaluated attack) writes."""
    head, _, _, _ = _prototype_setting()
    f0 = torch.tensor([0.5, 2.0, 0.1, 0.0, 1.0, 0.0, 0.3, 0.0])
    feats, y = f0.repeat(12, 1), torch.zeros(12, dtype=torch.long)
    model = torch.nn.Module()
    model.head = head
    attacked = prototype_relearning(model, feats[:5], y[:5], (0,), alpha=1.0, variant=variant)
    expected = -torch.log1p(-torch.softmax(attacked.head(f0[None]), dim=1)[0, 0])
    got = prototype_attack_loss(
        feats, y, head, (0,), torch.Generator(), shots=(5,), alpha_low=1.0, variants=(variant,)
    )
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_prototype_attack_loss_on_a_cosine_head():
    _, forget, _, _ = _prototype_setting()
    head = CosineHead(8, 4, scale=16.0)
    with torch.no_grad():
        head.weight.copy_(torch.eye(4, 8))
        head.weight[0] = -head.weight[0]
    y = torch.zeros(len(forget), dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    aligned = prototype_attack_loss(forget, y, head, (0,), g, shots=(5,), alpha_low=1.0).item()
    # features spread over the retain rows' directions leave the prototype no common direction
    spread = torch.eye(8)[torch.arange(64) % 3 + 1] * 4
    scattered = prototype_attack_loss(spread, y, head, (0,), g, shots=(5,), alpha_low=1.0).item()
    assert aligned > 5 and scattered < aligned / 5


def random_dists(b: int, k: int, seed: int, zeros: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k) * 0.7, size=b)
    if zeros:
        p[rng.random((b, k)) < 0.3] = 0
        p[:, 0] += 1e-3  # keep every row non-empty
        p /= p.sum(1, keepdims=True)
    return p


@pytest.mark.parametrize("zeros", [False, True])
def test_js_matches_scipy(zeros):
    p, q = random_dists(20, 6, 1, zeros), random_dists(20, 6, 2, zeros)
    got = js_divergence(torch.from_numpy(p), torch.from_numpy(q)).numpy()
    expected = np.array([jensenshannon(a, b) ** 2 for a, b in zip(p, q, strict=True)])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_kl_matches_scipy():
    p, q = random_dists(20, 6, 3, zeros=True), random_dists(20, 6, 4)
    got = kl_divergence(torch.from_numpy(p), torch.from_numpy(q)).numpy()
    expected = np.array([entropy(a, b) for a, b in zip(p, q, strict=True)])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_kl_infinite_where_q_misses_mass():
    p, q = torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]])
    assert kl_divergence(p, q).item() == math.inf
    assert kl_divergence(q, p).item() == pytest.approx(math.log(2))


def test_js_maximal_on_disjoint_support():
    p, q = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.3, 0.7]])
    assert js_divergence(p, q).item() == pytest.approx(LN2, rel=1e-6)
    assert LN2 == pytest.approx(math.log(2))


logit_rows = st.lists(
    st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False), min_size=5, max_size=5
)


@settings(max_examples=60, deadline=None)
@given(a=st.lists(logit_rows, min_size=1, max_size=4), b=st.lists(logit_rows, min_size=1, max_size=4))
def test_js_properties(a, b):
    n = min(len(a), len(b))
    p = torch.softmax(torch.tensor(a[:n], dtype=torch.float32), 1)
    q = torch.softmax(torch.tensor(b[:n], dtype=torch.float32), 1)
    pq, qp = js_divergence(p, q), js_divergence(q, p)
    assert torch.isfinite(pq).all()
    assert torch.allclose(pq, qp, atol=1e-7)
    assert (pq >= 0).all() and (pq <= LN2).all()
    assert torch.all(js_divergence(p, p) == 0)


@settings(max_examples=60, deadline=None)
@given(
    a=st.lists(logit_rows, min_size=1, max_size=4), forget=st.sets(st.integers(0, 4), min_size=1, max_size=4)
)
def test_masked_probs_properties(a, forget):
    logits = torch.tensor(a, dtype=torch.float32)
    p = masked_probs(logits, sorted(forget))
    assert torch.isfinite(p).all()
    assert torch.all(p[:, sorted(forget)] == 0)
    assert torch.allclose(p.sum(1), torch.ones(len(p)), atol=1e-5)


# --- accuracies and OU@ε ---------------------------------------------------------------------------


def test_accuracy_hand_cases():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 1, 2])
    assert accuracy(logits, y) == pytest.approx(50.0)
    assert per_class_accuracy(logits, y, 4)[:3] == pytest.approx([100.0, 50.0, 0.0])
    assert math.isnan(per_class_accuracy(logits, y, 4)[3])
    assert math.isnan(accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)))


def test_over_unlearning_zero_for_the_masked_original():
    original = random_logits(32, 6).float()
    original[:, 2] += 3  # the original puts real mass on forget class 2
    ideal = original.clone()
    ideal[:, 2] = -1e9
    assert over_unlearning(original, ideal, (2,)) == pytest.approx(0.0, abs=1e-6)
    assert over_unlearning(original, ideal, (2,), divergence="kl") == pytest.approx(0.0, abs=1e-6)
    ou_original = over_unlearning(original, original, (2,))
    assert ou_original > 0.05 and ou_original <= LN2
    # a model that keeps the forget class out but is otherwise wrong also scores badly
    shuffled = ideal[:, [1, 0, 2, 4, 5, 3]]
    assert over_unlearning(original, shuffled, (2,)) > 0.05


def test_over_unlearning_is_a_mean_over_samples():
    original = random_logits(10, 4).float()
    model = random_logits(10, 4).float()
    per_sample = [over_unlearning(original[i : i + 1], model[i : i + 1], (0,)) for i in range(10)]
    assert over_unlearning(original, model, (0,)) == pytest.approx(sum(per_sample) / 10, rel=1e-5)
    with pytest.raises(ValueError, match="'tv'"):
        over_unlearning(original, model, (0,), divergence="tv")
