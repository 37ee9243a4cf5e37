"""Audit building blocks: MIA, linear probe, PRA suite and scaled variant, relearning attacks."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import same_state, state_copy
from torch import nn

from spotter.audit.context import AuditConfig, audit_config, near_classes
from spotter.data import TensorSet
from spotter.evaluation.mia import auroc, confidence, entropy, entropy_attack, mia_efficacy, mia_member_rate
from spotter.evaluation.pra import (
    VARIANTS,
    draw_shots,
    pra_suite,
    pra_sweep,
    prototype_relearning,
    prototype_rows,
)
from spotter.evaluation.relearn import (
    FinetuneConfig,
    RelearnTimeConfig,
    finetune_relearn,
    linear_probe,
    loss_on,
    relearn_time,
    spread_sample,
)
from spotter.models import Classifier
from spotter.training.inference import evaluate_accuracy, predict

sklearn = pytest.importorskip("sklearn")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on busy shared cores run several times faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def logits_with_confidence(conf: torch.Tensor, y: torch.Tensor, k: int = 6) -> torch.Tensor:
    """Logits whose softmax gives probability `conf` to class y and spreads the rest evenly."""
    rest = (1 - conf) / (k - 1)
    probs = rest.view(-1, 1).repeat(1, k)
    probs[torch.arange(len(y)), y] = conf
    return probs.log()


# ---- membership inference -------------------------------------------------------------------


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        scores = torch.randint(0, 6, (80,), generator=g).double()  # many ties
        labels = torch.randint(0, 2, (80,), generator=g)
        assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()))
    assert auroc(torch.arange(4.0), torch.tensor([0, 0, 1, 1])) == 1.0
    assert auroc(torch.arange(4.0), torch.ones(4)) != auroc(torch.arange(4.0), torch.ones(4))  # nan


def test_confidence_and_entropy():
    y = torch.tensor([0, 2])
    logits = logits_with_confidence(torch.tensor([0.9, 0.5]), y)
    assert torch.allclose(confidence(logits, y), torch.tensor([0.9, 0.5], dtype=torch.double))
    assert entropy(torch.zeros(1, 4)).item() == pytest.approx(torch.log(torch.tensor(4.0)).item())
    assert entropy(torch.tensor([[0.0, -float("inf")]])).item() == 0.0  # 0·log 0 = 0


def sets(g: torch.Generator, n: int, member_conf: float, nonmember_conf: float, target_conf: float):
    def draw(c: float):
        y = torch.randint(0, 6, (n,), generator=g)
        conf = (c + 0.05 * torch.randn(n, generator=g)).clamp(0.01, 0.99)
        return logits_with_confidence(conf, y), y

    return (*draw(member_conf), *draw(nonmember_conf), *draw(target_conf))


def test_mia_sign_convention():
    """Efficacy counts NON-member calls: a forget set that looks like members scores ~0, one that
    looks like test data ~100; member rate is the complement and they sum to 100."""
    g = torch.Generator().manual_seed(0)
    remembered = sets(g, 150, member_conf=0.95, nonmember_conf=0.5, target_conf=0.95)
    forgotten = sets(g, 150, member_conf=0.95, nonmember_conf=0.5, target_conf=0.5)
    assert mia_efficacy(*remembered) < 5
    assert mia_efficacy(*forgotten) > 95
    for args in (remembered, forgotten):
        assert mia_efficacy(*args) + mia_member_rate(*args) == pytest.approx(100)


def test_mia_members_vs_members_near_chance():
    """Shadow members, shadow non-members and targets all drawn alike: the SVC calls held-out
    'members' and 'non-members' at the same rate, and the entropy attack's AUROC is ~0.5."""
    g = torch.Generator().manual_seed(1)
    m_logits, m_y, n_logits, n_y, f_logits, f_y = sets(g, 300, 0.8, 0.8, 0.8)
    _, _, _, _, t_logits, t_y = sets(g, 300, 0.8, 0.8, 0.8)
    called_nonmember_f = mia_efficacy(m_logits, m_y, n_logits, n_y, f_logits, f_y)
    called_nonmember_t = mia_efficacy(m_logits, m_y, n_logits, n_y, t_logits, t_y)
    assert abs(called_nonmember_f - called_nonmember_t) < 15
    ent = entropy_attack(m_logits, n_logits, f_logits, t_logits)
    assert abs(ent["auroc"] - 0.5) < 0.1


def test_mia_shadow_members_are_the_first_len_test():
    """SalUn's shadow members are Subset(retain, range(len(test))): later rows are ignored."""
    g = torch.Generator().manual_seed(2)
    m_logits, m_y, n_logits, n_y, f_logits, f_y = sets(g, 100, 0.95, 0.5, 0.95)
    junk = logits_with_confidence(torch.full((100,), 0.5), m_y)
    full = mia_efficacy(torch.cat([m_logits, junk]), torch.cat([m_y, m_y]), n_logits, n_y, f_logits, f_y)
    assert full == mia_efficacy(m_logits, m_y, n_logits, n_y, f_logits, f_y)


def test_entropy_attack_direction():
    g = torch.Generator().manual_seed(3)
    m_logits, _, n_logits, _, f_logits, _ = sets(g, 200, 0.95, 0.4, 0.95)
    _, _, _, _, tf_logits, _ = sets(g, 200, 0.95, 0.4, 0.4)
    ent = entropy_attack(m_logits, n_logits, f_logits, tf_logits)
    assert ent["member_rate"] > 95 and ent["auroc"] > 0.95


# ---- linear probe ---------------------------------------------------------------------------


def test_linear_probe_chance_without_information_and_one_when_separable():
    g = torch.Generator().manual_seed(0)
    n, d = 300, 16
    is_forget, test_is_forget = torch.arange(n) % 2, torch.arange(n) % 2
    noise = linear_probe(
        torch.randn(n, d, generator=g), is_forget, torch.randn(n, d, generator=g), test_is_forget
    )
    assert abs(noise["auroc"] - 0.5) < 0.1
    shift = torch.zeros(d)
    shift[3] = 4.0
    train = torch.randn(n, d, generator=g) + is_forget.view(-1, 1) * shift
    test = torch.randn(n, d, generator=g) + test_is_forget.view(-1, 1) * shift
    assert linear_probe(train, is_forget, test, test_is_forget)["auroc"] > 0.99


# ---- PRA suite ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_pra_variants_change_only_forget_rows_of_a_copy(original, splits, variant):
    before = state_copy(original)
    shot_feats = predict(original, splits.shots.x, features=True)
    attacked = prototype_relearning(original, shot_feats, splits.shots.y, splits.forget_classes, 1.0, variant)
    assert same_state(state_copy(original), before)
    after = state_copy(attacked)
    rows = torch.zeros(splits.num_classes, dtype=torch.bool)
    rows[list(splits.forget_classes)] = True
    for key in before:
        if key in ("head.weight", "head.bias"):
            assert torch.equal(after[key][~rows], before[key][~rows])
            assert not torch.equal(after[key][rows], before[key][rows])
        else:
            assert torch.equal(after[key], before[key]), key


def test_scaled_variant_needs_the_head():
    with pytest.raises(ValueError, match="needs the model's head"):
        prototype_rows(torch.ones(2, 3), torch.tensor([0, 0]), [0], "scaled")


def test_scaled_at_least_as_strong_as_plain_when_rows_are_large():
    """Retain rows of norm 10: a unit-norm prototype row cannot win an argmax, a scaled one can."""
    k, d = 4, 8
    centres = 0.3 + 3 * torch.eye(k, d)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(k).repeat_interleave(30)
    feats = centres[y] + 0.2 * torch.rand(len(y), d, generator=g)
    head = nn.Linear(d, k)
    with torch.no_grad():
        head.weight.copy_(10 * torch.nn.functional.normalize(centres, dim=1))
        head.weight[0] = 0.0
        head.bias.fill_(0.5)
        head.bias[0] = -5.0
    forget = y == 0
    labelled = {
        "forget": (feats[forget], y[forget]),
        "test_forget": (feats[forget], y[forget]),
        "test_retain": (feats[~forget], y[~forget]),
    }
    shots = torch.arange(5)
    res = {v: pra_sweep(head, feats[shots], y[shots], [0], labelled, variant=v) for v in ("cosine", "scaled")}
    assert res["scaled"].test_forget_acc[-1] >= res["cosine"].test_forget_acc[-1]
    assert res["scaled"].at_best("test_forget_acc") >= res["cosine"].at_best("test_forget_acc")
    assert res["scaled"].at_best("test_forget_acc") > 90 and res["cosine"].test_forget_acc[-1] < 10
    rows, biases = prototype_rows(feats[shots], y[shots], [0], "scaled", head)
    assert rows.norm().item() == pytest.approx(10.0, rel=1e-5) and biases.item() == pytest.approx(0.5)


def test_draw_shots_nested_seeded_and_checked():
    y = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)
    five = draw_shots(y, [0, 2], 5, seed=3)
    assert torch.equal(five, draw_shots(y, [0, 2], 5, seed=3))
    assert set(draw_shots(y, [0, 2], 1, seed=3).tolist()) <= set(five.tolist())
    assert (y[five] == 0).sum() == 5 and (y[five] == 2).sum() == 5
    with pytest.raises(ValueError, match="shots=11"):
        draw_shots(y, [0], 11)


def test_pra_suite_covers_every_variant_and_k(original, splits):
    feats = {
        k: predict(original, getattr(splits, k).x, features=True)
        for k in ("forget", "test_forget", "test_retain")
    }
    labelled = {k: (v, getattr(splits, k).y) for k, v in feats.items()}
    suite = pra_suite(
        original.head, feats["forget"], labelled, splits.forget_classes, (1, 5), alphas=(0.5, 1.0)
    )
    assert set(suite) == set(VARIANTS) and all(set(v) == {1, 5} for v in suite.values())
    assert suite["cosine"][5].alphas == [0.5, 1.0]


# ---- relearning by training -----------------------------------------------------------------


def suppressed(model: Classifier, classes) -> Classifier:
    """The forget class removed at the head only: row zeroed, bias -10; features untouched."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for c in classes:
            out.head.weight[c] = 0.0
            out.head.bias[c] = -10.0
    return out


def test_finetune_relearn_recovers_a_head_suppressed_class(original, splits):
    model = suppressed(original, splits.forget_classes)
    before = state_copy(model)
    assert evaluate_accuracy(model, splits.test_forget) == 0.0
    res = finetune_relearn(model, splits, FinetuneConfig(steps=(10, 50)))
    assert same_state(state_copy(model), before)
    assert res["steps"] == [0, 10, 50] and res["test_forget_acc"][0] == 0.0
    assert res["test_forget_acc"][-1] > 80


def test_finetune_attacker_never_keeps_a_diverged_run(original, splits):
    """A learning rate that blows the model up (NaN or one class everywhere) is never the reported run."""
    model = suppressed(original, splits.forget_classes)
    sane = finetune_relearn(model, splits, FinetuneConfig(steps=(10,), lrs=(0.01,)))
    mixed = finetune_relearn(model, splits, FinetuneConfig(steps=(10,), lrs=(1e4, 0.01)))
    assert mixed["lr"] == [0.0, 0.01]
    assert mixed["test_forget_acc"] == sane["test_forget_acc"]
    assert mixed["test_retain_acc"] == sane["test_retain_acc"]
    with pytest.raises(ValueError, match="every lr > 0"):
        FinetuneConfig(lrs=(0.01, -1.0))


def test_relearn_time_zero_for_original_and_positive_when_suppressed(original, splits):
    train = TensorSet(
        torch.cat([splits.forget.x, splits.retain.x]), torch.cat([splits.forget.y, splits.retain.y])
    )
    target = loss_on(original, splits.forget)
    cfg = RelearnTimeConfig(cap=3, draw=64, batch_size=32)
    assert relearn_time(original, train, splits.forget, target, cfg)["draws"] == 0
    res = relearn_time(suppressed(original, splits.forget_classes), train, splits.forget, target, cfg)
    assert res["draws"] >= 1 and len(res["losses"]) == res["draws"] + 1
    assert res["losses"][-1] < res["losses"][0]


# ---- the rest of the audit ------------------------------------------------------------------


def test_near_classes_rank_by_confusion_then_runner_up():
    logits = torch.tensor(
        [
            [0.0, 5.0, 1.0, 2.0, -1.0],  # predicted 1 (a confusion), strongest retain class 1
            [5.0, 0.0, 1.0, 2.0, -1.0],  # correct; strongest retain class 3
            [5.0, 0.0, 1.0, 2.0, -1.0],
            [5.0, 0.0, 3.0, 2.0, -1.0],  # strongest retain class 2
        ]
    )
    ranked = near_classes(logits, (0,), 5)
    assert [r["class"] for r in ranked] == [1, 3, 2]  # class 4 is never near: left out
    assert ranked[0]["confusion_share"] == 25.0 and ranked[1]["runner_up_share"] == 50.0
    assert [r["class"] for r in near_classes(logits, (0,), 2)] == [1, 3]


def test_few_shot_retain_images_spread_over_classes():
    y = torch.tensor([1] * 20 + [2] * 3 + [3] * 20)
    idx = spread_sample(y, 5, seed=0)
    assert len(set(idx.tolist())) == 5 and set(y[idx].tolist()) == {1, 2, 3}
    assert torch.equal(idx, spread_sample(y, 5, seed=0))
    assert len(spread_sample(y, 100, seed=0)) == len(y)


def test_audit_config_overrides_reach_nested_configs():
    cfg = audit_config(
        [
            "relearn.cap=7",
            "finetune.steps=3,1",
            "eval.eps=0.05",
            "ou_eps=0.01,0.02",
            "relearn_grid.budgets=5,2",
        ]
    )
    assert cfg.relearn.cap == 7 and cfg.finetune.steps == (1, 3) and cfg.eval.eps == 0.05
    assert cfg.relearn_grid.budgets == (2, 5) and cfg.relearn_grid.shots == (5, 20)
    assert cfg.ou_eps == (0.01, 0.02) and cfg.pra_shots == AuditConfig().pra_shots
    with pytest.raises(ValueError, match="valid keys"):
        audit_config(["relearn.nope=1"])
    with pytest.raises(ValueError, match="'momentum'"):
        audit_config(["relearn_grid.optimisers=sgd,momentum"])
    with pytest.raises(ValueError, match="unknown audit check"):
        audit_config(["checks=pra,magic"])


def test_statistics_relearn_undoes_a_stale_statistics_mismatch_and_only_that(original, splits):
    from spotter.evaluation.relearn import statistics_relearn

    stale = copy.deepcopy(original)
    with torch.no_grad():  # statistics that no longer match the weights: the mismatch it must undo
        for m in stale.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.add_(2 * m.running_var.sqrt())
    before = state_copy(stale)
    res = statistics_relearn(stale, splits, images=(200,))
    assert same_state(state_copy(stale), before)  # a copy is attacked
    assert res["images"] == [0, 200]
    ref = statistics_relearn(original, splits, images=(200,))
    assert abs(ref["test_retain_acc"][1] - ref["test_retain_acc"][0]) < 5  # a matched model barely moves
    assert res["test_retain_acc"][0] < ref["test_retain_acc"][0] - 10  # the mismatch hurt
    assert res["test_retain_acc"][1] > ref["test_retain_acc"][0] - 5  # and re-estimation undid it
