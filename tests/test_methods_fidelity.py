"""One test per method pinning its maths on a tiny case (docs/users.md: "unit tests that pin each
baseline's maths"), plus the "+spotter" plug-in and the tuner."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from _methods_fixtures import Poison, data, micro, one_thread, original, same, state, tiny_config

from spotter import methods
from spotter.data import TensorSet, to_float
from spotter.functional.losses import masked_kd, masked_probs
from spotter.methods import (
    _plus,
    bad_teacher,
    boundary_expand,
    boundary_shrink,
    delete,
    grad_ascent,
    l1_sparse,
    neggrad_plus,
    random_label,
    salun,
    scar,
    scrub,
    unsc,
    unsir,
)
from spotter.methods import spotter as spotter_method
from spotter.methods.tune import score, tune
from spotter.training.fit import TrainConfig
from spotter.training.inference import evaluate_accuracy, predict


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def forget_ce(model, splits) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(to_float(splits.forget.x)), splits.forget.y))


def no_aug(name: str, **extra):
    return tiny_config(name, augment=False, **extra)


def test_grad_ascent_raises_the_forget_loss():
    model, splits = micro(), data()
    cfg = no_aug("grad_ascent", lr=1e-2, momentum=0.0, weight_decay=0.0, batch_size=len(splits.forget))
    out = grad_ascent.unlearn(model, splits, cfg)  # one full-batch step
    assert len(out.unlearn_history) == 1
    assert forget_ce(out, splits) > forget_ce(model, splits)
    logits, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 3])
    assert torch.isclose(grad_ascent.ascent_loss(logits, y), -F.cross_entropy(logits, y))


def test_neggrad_plus_sign_and_weighting():
    torch.manual_seed(0)
    lr_, yr, lf, yf = (
        torch.randn(5, 6),
        torch.randint(0, 6, (5,)),
        torch.randn(3, 6),
        torch.randint(0, 6, (3,)),
    )
    params, anchor = [torch.randn(4, 2)], [torch.randn(4, 2)]
    alpha, lam = 0.8, 0.3
    dist = ((params[0] - anchor[0]) ** 2).sum()
    expected = alpha * (F.cross_entropy(lr_, yr) + lam / 2 * dist) - (1 - alpha) * F.cross_entropy(lf, yf)
    got = neggrad_plus.neggrad_plus_loss(lr_, yr, lf, yf, params, anchor, alpha, lam)
    assert torch.isclose(got, expected)
    # alpha = 0: pure ascent on the forget batch, so a step raises the forget loss
    model, splits = micro(), data()
    cfg = no_aug("neggrad_plus", alpha=0.0, lr=1e-2, forget_batch_size=len(splits.forget), batch_size=1000)
    assert forget_ce(neggrad_plus.unlearn(model, splits, cfg), splits) > forget_ce(model, splits)


def test_boundary_shrink_labels_come_from_the_frozen_original(monkeypatch):
    model, splits = original(), data()
    before = state(model)
    calls = []
    real = boundary_shrink.neighbour_labels

    def spy(net, x, y, eps, round_pixels=False):
        labels = real(net, x, y, eps, round_pixels)
        calls.append((same(state(net), before), any(p.requires_grad for p in net.parameters())))
        # the labels are the original's argmax on the FGSM point of the ORIGINAL's loss
        x_adv = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        with torch.no_grad():
            assert torch.equal(labels, model((x + eps * grad.sign()).clamp(0, 1)).argmax(1))
        return labels

    monkeypatch.setattr(boundary_shrink, "neighbour_labels", spy)
    out = boundary_shrink.unlearn(model, splits, no_aug("boundary_shrink", lr=0.05, epochs=2))
    assert len(calls) >= 4
    assert all(frozen_state and not grads for frozen_state, grads in calls)  # never the student
    assert not same(state(out), before)  # while the student did move


def test_boundary_expand_trains_a_shadow_output_and_removes_it(monkeypatch):
    model, splits = original(), data()
    k = splits.num_classes
    widths = []
    real = boundary_expand.expand_head

    def spy(head):
        wide = real(head)
        assert torch.equal(wide.weight[:k], head.weight) and torch.equal(wide.bias[:k], head.bias)
        widths.append(wide.out_features)
        return wide

    monkeypatch.setattr(boundary_expand, "expand_head", spy)
    out = boundary_expand.unlearn(model, splits, no_aug("boundary_expand", lr=0.05))
    assert widths == [k + 1]
    assert out.head.out_features == k and out(torch.rand(2, 1, 16, 16)).shape == (2, k)
    assert set(out.state_dict()) == set(model.state_dict())
    wide = real(model.head)
    pruned = boundary_expand.prune_head(wide)
    assert torch.equal(pruned.weight, wide.weight[:k]) and torch.equal(pruned.bias, wide.bias[:k])


def test_salun_mask_keeps_the_top_fraction_and_frozen_weights_do_not_move():
    model, splits = original(), data()
    ratio = 0.3
    mask = salun.saliency_mask(model, splits.forget, ratio, 64)
    params = list(model.parameters())
    model.zero_grad()
    (-F.cross_entropy(model.eval()(to_float(splits.forget.x)), splits.forget.y)).backward()
    sal = torch.cat([p.grad.abs().flatten() for p in params])
    model.zero_grad(set_to_none=True)
    keep = torch.cat([m.flatten() for m in mask])
    assert int(keep.sum()) == int(ratio * len(keep))
    assert sal[keep].min() >= sal[~keep].max() - 1e-6  # the kept entries are the most salient
    out = salun.unlearn(model, splits, tiny_config("salun", mask_ratio=ratio, lr=0.05))
    moved = 0
    for (name, p0), p1, m in zip(model.named_parameters(), out.parameters(), out.saliency_mask, strict=True):
        assert torch.equal(p1[~m], p0[~m]), name  # weight decay and momentum did not move them
        moved += int((p1[m] != p0[m]).sum())
    assert moved > 0


def test_scrub_alternates_max_and_min_steps_as_scheduled():
    cfg = scrub.Config(epochs=3, msteps=2)
    assert scrub.schedule(cfg) == [(1, "max"), (1, "min"), (2, "max"), (2, "min"), (3, "min")]
    assert [scrub.lr_at(cfg, e) for e in (1, 3, 4, 6, 10)] == pytest.approx([5e-4, 5e-4, 5e-5, 5e-6, 5e-7])
    model, splits = micro(), data()
    out = scrub.unlearn(model, splits, no_aug("scrub", epochs=3, msteps=2))
    assert [(h["epoch"], h["phase"]) for h in out.unlearn_history] == scrub.schedule(cfg)
    # max-steps run over forget batches (32), min-steps over retain batches (64)
    steps = [h["steps"] for h in out.unlearn_history]
    assert steps == [-(-len(splits.forget) // 32), -(-len(splits.retain) // 64)] * 2 + [
        -(-len(splits.retain) // 64)
    ]
    # the max-step ascends T²·KL(teacher ‖ student); the min-step is γ·CE + α·KL
    torch.manual_seed(0)
    s, t, y = torch.randn(4, 6), torch.randn(4, 6), torch.randint(0, 6, (4,))
    kl = 16 * F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction="batchmean")
    assert torch.isclose(scrub.phase_loss("max", s, t, y, cfg), -kl)
    assert torch.isclose(scrub.phase_loss("min", s, t, y, cfg), 0.99 * F.cross_entropy(s, y) + 0.001 * kl)


def test_bad_teacher_targets_come_from_the_random_teacher_on_forget_samples_only(monkeypatch):
    good, bad = torch.randn(4, 6), torch.randn(4, 6)
    flags = torch.tensor([True, False, True, False])
    t = bad_teacher.targets(good, bad, flags, 2.0)
    assert torch.allclose(t[flags], F.softmax(bad[flags] / 2, 1))
    assert torch.allclose(t[~flags], F.softmax(good[~flags] / 2, 1))
    model, splits = original(), data()
    seen = []
    real = bad_teacher.targets

    def spy(competent, incompetent, is_forget, temperature):
        seen.append((competent, incompetent, is_forget))
        return real(competent, incompetent, is_forget, temperature)

    monkeypatch.setattr(bad_teacher, "targets", spy)
    bad_teacher.unlearn(model, splits, no_aug("bad_teacher", retain_fraction=0.3))
    competent = torch.cat([s[0] for s in seen])
    incompetent = torch.cat([s[1] for s in seen])
    is_forget = torch.cat([s[2] for s in seen])
    assert int(is_forget.sum()) == len(splits.forget)
    assert int((~is_forget).sum()) == round(0.3 * len(splits.retain))
    # the competent teacher (the original) recognises the flagged rows as the forget class, and
    # the others as retained classes: the flags follow the samples
    assert (competent[is_forget].argmax(1) == 0).float().mean() > 0.9
    assert (competent[~is_forget].argmax(1) != 0).float().mean() > 0.9
    assert not torch.allclose(competent, incompetent)  # a different, random network


def test_unsir_noise_is_labelled_with_the_forget_class(monkeypatch):
    splits = data((2,))  # forget class 2, not the official notebook's constant 0
    model = original()
    shape = tuple(splits.retain.x.shape[1:])
    cfg = tiny_config("unsir", noise_steps=10, noise_lambda=0.0)
    g = torch.Generator().manual_seed(0)
    start = torch.randn((cfg.noise_batch, *shape), generator=torch.Generator().manual_seed(0)) * 0.25 + 0.5
    noise = unsir.make_noise(model, 2, cfg, shape, g)
    label = torch.full((cfg.noise_batch,), 2)
    with torch.no_grad():
        assert F.cross_entropy(model(noise), label) > F.cross_entropy(model(start), label)  # error-maximising
    built = []
    real = unsir.impair_set

    def spy(noises, copies, rx, ry):
        x, y = real(noises, copies, rx, ry)
        built.append((noises, copies, ry, y))
        return x, y

    monkeypatch.setattr(unsir, "impair_set", spy)
    methods.run("unsir", model, splits, cfg)
    ((noises, copies, ry, y),) = built
    assert list(noises) == [2]
    assert torch.equal(y[: len(ry)], ry) and not (ry == 2).any()  # retain part: kept classes only
    assert (y[len(ry) :] == 2).all() and len(y) - len(ry) == copies * cfg.noise_batch


def test_unsc_updates_lie_in_the_null_space_it_computed():
    model, splits = original(), data()
    out = unsc.unlearn(model, splits, no_aug("unsc", epochs=2, lr=0.1))
    layers_before = unsc.projected_layers(model)
    layers_after = unsc.projected_layers(out)
    moved = 0.0
    for a, b, P in zip(layers_before, layers_after, out.unsc_projectors, strict=True):
        assert torch.allclose(P @ P, P, atol=1e-4)  # an orthogonal projector
        delta = (b.weight - a.weight).detach().reshape(len(b.weight), -1)
        assert (delta @ P).norm() <= 1e-4 * delta.norm() + 1e-6
        moved += float(delta.norm())
    assert moved > 0
    for (name, p0), p1 in zip(model.named_parameters(), out.parameters(), strict=True):
        if p0.dim() == 1:
            assert torch.equal(p0, p1), name  # biases and BatchNorm are frozen
    assert same(
        {k: v for k, v in state(out).items() if "running" in k},
        {k: v for k, v in state(model).items() if "running" in k},
    )
    # the basis update reaches the energy threshold with the fewest directions
    cov = torch.diag(torch.tensor([10.0, 5.0, 1.0], dtype=torch.float64))
    basis = unsc.update_basis(cov, cov.new_zeros(3, 0), 0.9)
    assert basis.shape == (3, 2)
    assert unsc.pseudo_labels(torch.tensor([[5.0, 1.0, 3.0]]), (0,)).tolist() == [2]


def test_delete_and_spotter_targets_are_the_renormalised_masked_teacher():
    torch.manual_seed(0)
    t, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    p = F.softmax(t, 1)
    renorm = p.scatter(1, y.view(-1, 1), 0.0)
    renorm = renorm / renorm.sum(1, keepdim=True)
    assert torch.allclose(delete.delete_targets(t, y, "true", (0,)), renorm, atol=1e-6)
    zeroed = p.clone()
    zeroed[:, [0, 2]] = 0
    zeroed = zeroed / zeroed.sum(1, keepdim=True)
    assert torch.allclose(delete.delete_targets(t, y, "forget", (0, 2)), zeroed, atol=1e-6)
    assert torch.allclose(masked_probs(t, (0, 2)), zeroed, atol=1e-6)  # Spotter's mask
    s = torch.randn(6, 5)
    kl = (torch.special.xlogy(zeroed, zeroed) - zeroed * F.log_softmax(s, 1)).sum(1).mean()
    assert torch.isclose(masked_kd(s, t, (0, 2)), kl, atol=1e-6)  # Spotter's KD targets the same
    # one full-batch DELETE step moves the student toward q: its KL to the target drops
    model, splits = micro(), data()
    x = to_float(splits.forget.x)
    q = delete.delete_targets(model(x).detach(), splits.forget.y, "true", (0,))
    out = delete.unlearn(model, splits, no_aug("delete", lr=0.05, batch_size=len(splits.forget)))
    with torch.no_grad():
        kl0 = F.kl_div(F.log_softmax(model(x), 1), q, reduction="batchmean")
        kl1 = F.kl_div(F.log_softmax(out(x), 1), q, reduction="batchmean")
    assert kl1 < kl0


def test_random_label_never_assigns_the_true_label_when_configured_so(monkeypatch):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 6, (3000,), generator=g)
    other = random_label.draw_labels(y, 6, (0,), "other", g)
    assert not (other == y).any() and set(other.tolist()) == set(range(6))
    kept = random_label.draw_labels(y, 6, (0, 3), "retain", g)
    assert set(kept.tolist()) == {1, 2, 4, 5}
    assert (random_label.draw_labels(y, 6, (0,), "all", g) == y).any()  # SalUn: may equal the truth
    drawn = []
    real = random_label.draw_labels

    def spy(labels, k, forget_classes, pool, generator):
        out = real(labels, k, forget_classes, pool, generator)
        drawn.append((labels, out))
        return out

    monkeypatch.setattr(random_label, "draw_labels", spy)
    random_label.unlearn(original(), data(), tiny_config("random_label", label_pool="other", epochs=2))
    assert len(drawn) == 2 and all(not (t == r).any() for t, r in drawn)


def test_l1_sparse_gamma_schedule():
    cfg = l1_sparse.Config(gamma=1e-4, epochs=10, no_l1_epochs=2)
    expected = [1e-4 * (1 - t / 8) for t in range(8)] + [0.0, 0.0]
    assert [l1_sparse.gamma_at(cfg, t) for t in range(10)] == pytest.approx(expected)
    out = l1_sparse.unlearn(
        original(), data(), tiny_config("l1_sparse", gamma=1e-3, epochs=3, no_l1_epochs=1)
    )
    assert [h["gamma"] for h in out.unlearn_history] == pytest.approx([1e-3, 5e-4, 0.0])


def test_finetune_and_retrain_read_only_retain():
    splits = data()
    poisoned = dataclasses.replace(
        splits,
        forget=Poison("forget"),
        test_forget=Poison("test_forget"),
        test_retain=Poison("test_retain"),
        shots=Poison("shots"),
    )
    out = methods.run("finetune", original(), poisoned, tiny_config("finetune"))
    assert methods.get("finetune").NEEDS == ("retain",)
    assert not same(state(out), state(original()))


def test_retrain_keeps_a_k_way_head_and_starts_from_scratch():
    model, splits = original(), data()
    broken = copy.deepcopy(model)
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(float("nan"))  # the original's weights must not matter
    cfg = methods.make_config("retrain")
    cfg = dataclasses.replace(
        cfg, train=TrainConfig(epochs=1, batch_size=64, select="last", channels_last=False)
    )
    poisoned = dataclasses.replace(splits, forget=Poison("forget"), shots=Poison("shots"))
    out = methods.run("retrain", broken, poisoned, cfg)
    assert out.head.out_features == splits.num_classes
    assert all(torch.isfinite(p).all() for p in out.parameters())


def test_scar_mahalanobis_target_class_and_surrogate_filtering():
    # identity precisions: the distance is the squared gap of L2-normalised vectors
    u = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    means = torch.tensor([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    precisions = torch.eye(2).repeat(3, 1, 1)
    d = scar.mahalanobis(u, means, precisions)
    expected = torch.cdist(F.normalize(u, dim=1), F.normalize(means, dim=1)) ** 2
    assert torch.allclose(d, expected, atol=1e-6)
    classes = [1, 4, 5]  # ids of the three retained classes
    # nearest is the true class id for sample 0 (class 1): the next one is taken
    assert scar.target_classes(d, torch.tensor([1, 0]), classes).tolist() == [2, 1]
    # a precision that stretches one axis changes which class is nearest
    stretched = torch.diag(torch.tensor([1.0, 100.0])).repeat(3, 1, 1)
    assert scar.mahalanobis(torch.tensor([[1.0, 0.2]]), means, stretched).argmin().item() == 0
    logits = torch.tensor([[5.0, 0.0, 1.0], [0.0, 4.0, 1.0], [0.0, 1.0, 6.0]])
    assert scar.keep_surrogate(logits, (0,)).tolist() == [False, True, True]
    t = scar.teacher_targets(logits, (0, 2))
    assert torch.equal(t[:, 0], torch.zeros(3)) and torch.equal(t[:, 2], torch.zeros(3)) and t[1, 1] == 4
    cov = torch.tensor([[2.0, 0.5], [0.5, 4.0]])
    assert torch.allclose(scar.shrink(cov, 3, 3), cov + torch.tensor([[9.0, 1.5], [1.5, 9.0]]))
    # a given surrogate set is used (and filtered); the fallback has the images' shape
    model, splits = original(), data()
    g = torch.Generator().manual_seed(0)
    fallback = scar.fallback_surrogate(splits.forget, tiny_config("scar", surrogate_size=10), g)
    assert fallback.shape == (10, *splits.forget.x.shape[1:]) and fallback.dtype == torch.uint8
    sur = TensorSet(splits.retain.x[:40], torch.zeros(40, dtype=torch.long))
    out = methods.run("scar", model, dataclasses.replace(splits, surrogate=sur), tiny_config("scar"))
    assert out.head.out_features == splits.num_classes
    bad = TensorSet(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="surrogate"):
        methods.run("scar", model, dataclasses.replace(splits, surrogate=bad), tiny_config("scar"))


def test_plus_spotter_adds_exactly_spotters_terms():
    model, splits = original(), data()
    base = methods.run("delete", model, splits, no_aug("delete"))
    off = methods.run(
        "delete+spotter", model, splits, no_aug("delete+spotter", spotter_lambda1=1.0, spotter_lambda2=0.0)
    )
    on = methods.run("delete+spotter", model, splits, no_aug("delete+spotter"))
    assert same(state(off), state(base))  # zero weights: the base method's run, bit for bit
    assert not same(state(on), state(base))
    # the hook's value is (1 - λ1)·neighbour KD + λ2·dispersion from spotter_terms
    cfg = spotter_method.Config(lambda1=0.6, lambda2=2.0, batch_size=16)
    hook = _plus.SpotterTerms(model, splits, cfg, seed=0, scale="none")
    value = hook(model)
    idx = spotter_method.spread_order(hook.y, torch.Generator().manual_seed(0))[:16]
    _, kd_nb, disp, _ = spotter_method.spotter_terms(
        model,
        to_float(splits.forget.x[idx]),
        hook.x_nb[idx],
        hook.y[idx],
        predict(model, splits.forget.x[idx]),
        predict(model, hook.x_nb[idx]),
        splits.forget_classes,
        1.0,
    )
    assert torch.isclose(value, 0.4 * kd_nb + 2.0 * disp, atol=1e-5)
    cfg = methods.make_config("salun+spotter", {"spotter_lambda2": "0.5", "lr": "0.1"})
    assert cfg.spotter_lambda2 == 0.5 and cfg.lr == 0.1
    with pytest.raises(ValueError, match="lambda1"):
        methods.make_config("salun+spotter", {"spotter_lambda1": "2"})


def test_plus_spotter_terms_follow_the_base_batchnorm_mode_and_never_touch_running_statistics():
    from spotter.models.batchnorm import batchnorm_layers

    model, splits = original(), data()
    assert batchnorm_layers(model)
    student = copy.deepcopy(model).train()  # a base that trains BatchNorm in train mode
    buffers = {k: v.clone() for k, v in student.named_buffers()}
    cfg = spotter_method.Config(batch_size=16)
    follow = _plus.SpotterTerms(model, splits, cfg, seed=0, bn="follow", scale="none")(student)
    assert all(torch.equal(v, buffers[k]) for k, v in student.named_buffers())  # running statistics untouched
    assert all(m.training and m.momentum == 0.1 for m in batchnorm_layers(student))  # and the mode restored
    on_running = _plus.SpotterTerms(model, splits, cfg, seed=0, bn="eval", scale="none")(student)
    assert not torch.isclose(follow, on_running)  # "follow" normalised with the batch's statistics
    assert all(torch.equal(v, buffers[k]) for k, v in student.named_buffers())
    with pytest.raises(ValueError, match="spotter_bn"):
        _plus.SpotterTerms(model, splits, cfg, seed=0, bn="batch")
    with pytest.raises(ValueError, match="spotter_bn"):
        methods.make_config("finetune+spotter", {"spotter_bn": "batch"})


def test_a_fast_base_with_the_add_on_keeps_the_retain_classes():
    """finetune at lr 0.3 trains BatchNorm in train mode and moves fast: with the terms normalised as
    the base's forward pass is ("follow"), the combination forgets without collapsing."""
    model, splits = original(), data()
    out = methods.run("finetune+spotter", model, splits, tiny_config("finetune+spotter", lr=0.3, epochs=2))
    assert evaluate_accuracy(out, splits.test_retain) >= 90.0
    assert evaluate_accuracy(out, splits.test_forget) <= 10.0


def test_tuner_picks_the_setting_closest_to_the_retrained_model():
    model, splits = original(), data()
    assert score(10.0, 80.0, {"forget_acc": 0.0, "retain_acc": 85.0}) == 15.0
    grid = {"lr": [1e-6, 0.05]}
    result = tune("grad_ascent", model, model, splits, tiny_config("grad_ascent", epochs=2), grid)
    assert [t["lr"] for t in result.trials] == grid["lr"]
    best = min(result.trials, key=lambda t: t["score"])
    assert result.best == {"lr": best["lr"]} and result.config.lr == best["lr"]
    assert result.reference["forget_acc"] == pytest.approx(
        float((predict(model, splits.val_forget.x).argmax(1) == splits.val_forget.y).float().mean() * 100)
    )
    with pytest.raises(ValueError, match="retain-free"):
        tune(
            "finetune", model, model, splits, tiny_config("finetune"), {"lr": [0.01]}, protocol="retain-free"
        )


def test_gradient_balance_caps_the_terms_at_the_bases_gradient_norm():
    # One parameter vector, a base loss and a terms loss with known gradients: the stand-in the
    # hook returns must carry exactly c·g_T, and the norm it reads for the base must be the base's.
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    holder = torch.nn.Module()
    holder.w = w
    balance = _plus.GradientBalance(ratio=0.5)
    opt = torch.optim.SGD([w], lr=0.0)  # lr 0: the point is the gradient, not the update
    g_base, g_terms = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 10.0])  # norms 5 and 10
    grads = []
    for _ in range(3):
        terms = (w * g_terms).sum()
        stand_in = balance(holder, terms)
        assert torch.isclose(stand_in, terms.detach())  # the value a base logs is the terms'
        opt.zero_grad()
        ((w * g_base).sum() + stand_in).backward()
        grads.append(w.grad.clone())
    assert torch.allclose(grads[0], g_base)  # step 1: no base norm yet, no terms
    assert balance.base_norm == pytest.approx(5.0)  # read from the summed gradient, terms removed
    # c = min(1, 0.5·5/10) = 0.25 from step 2 on
    assert torch.allclose(grads[1], g_base + 0.25 * g_terms) and torch.allclose(grads[2], grads[1])
    assert [round(c, 6) for _, c in balance.log] == [0.25, 0.25]
    balance.close()
    assert not w._backward_hooks  # no hook outlives the run


def test_optimizer_watch_reads_the_students_optimiser_only():
    student, other = torch.nn.Linear(2, 2), torch.nn.Parameter(torch.zeros(3))
    watch = _plus.OptimizerWatch()
    try:
        watch.follow(student)
        assert watch.lr is None
        torch.optim.Adam([other], lr=0.1).step()  # another tensor's optimiser (UNSIR's noise)
        assert watch.lr is None
        torch.optim.SGD(student.parameters(), lr=0.03).step()
        assert (watch.lr, watch.adaptive) == (0.03, False)
        torch.optim.Adam(student.parameters(), lr=5e-4).step()
        assert (watch.lr, watch.adaptive) == (5e-4, True)
    finally:
        watch.close()
    torch.optim.SGD(student.parameters(), lr=0.5).step()
    assert watch.lr == 5e-4  # the global hook is gone


def test_plus_spotter_with_a_fast_base_stays_stable_when_the_terms_follow_its_step():
    # finetune at a large lr with heavily weighted terms: taken as given ("none"), the terms overrun
    # the base and the retain accuracy falls far below the base alone; given Spotter's own step
    # ("step", the default) or capped at the base's gradient norm ("gradient") it stays near the
    # base (issue: "+spotter" stable at each base's own settings).
    model, splits = original(), data()
    fast = {"lr": 0.3, "epochs": 3}
    base = methods.run("finetune", model, splits, no_aug("finetune", **fast))
    kw = dict(fast, spotter_lambda2=200.0)
    runs = {"base": base}
    for scale in ("none", "step", "gradient"):
        runs[scale] = methods.run(
            "finetune+spotter", model, splits, no_aug("finetune+spotter", spotter_scale=scale, **kw)
        )
    acc = {k: evaluate_accuracy(m, splits.test_retain) for k, m in runs.items()}
    assert acc["none"] < acc["base"] - 20, acc
    assert acc["step"] > acc["base"] - 5 and acc["gradient"] > acc["base"] - 5, acc
    assert all(torch.isfinite(p).all() for p in runs["step"].parameters())


def test_plus_ours_adds_the_simulated_attack_term():
    # spotter_lambda3 adds λ3 × the simulated prototype attack on the batch's clean features, the
    # attacker drawing from its own stream (seed + 7919), as Spotter's λ3 does
    from spotter.functional.losses import prototype_attack_loss

    model, splits = original(), data()
    plain = spotter_method.Config(batch_size=32)
    ours = dataclasses.replace(plain, lambda3=0.5)
    without = _plus.SpotterTerms(model, splits, plain, seed=3, scale="none")(model)
    hook = _plus.SpotterTerms(model, splits, ours, seed=3, scale="none")
    value = hook(model)
    idx = spotter_method.spread_order(hook.y, torch.Generator().manual_seed(3))[:32]
    feats = model.features(to_float(splits.forget.x[hook.src[idx]]))
    attack = prototype_attack_loss(
        feats, hook.y[idx], model.head, splits.forget_classes, torch.Generator().manual_seed(3 + 7919),
        variants=("cosine", "scaled"),
    )  # fmt: skip
    assert attack > 0
    assert torch.isclose(value - without, 0.5 * attack, atol=1e-5)
    cfg = methods.make_config("grad_ascent+spotter", {"spotter_lambda3": "0.5"})
    assert cfg.spotter_lambda3 == 0.5
    with pytest.raises(ValueError, match="lambda3"):
        methods.make_config("grad_ascent+spotter", {"spotter_lambda3": "-1"})
