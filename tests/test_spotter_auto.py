"""Spotter-auto's pieces on the tiny synthetic model: what each must do, and that it notices when
its maths is changed."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from _methods_fixtures import data, original

from spotter.data import augment, to_float
from spotter.methods import _common
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


def test_retain_argmax_is_the_masked_teachers_label():
    logits = torch.tensor([[9.0, 1.0, 5.0], [0.0, 7.0, 8.0]])
    assert auto.retain_argmax(logits, (0,)).tolist() == [2, 2]
    assert auto.retain_argmax(logits, (2,)).tolist() == [0, 1]


def test_anchor_term_distils_the_anchors_of_the_batch_images_only():
    from spotter.functional.losses import masked_kd

    model, splits = original(), data()
    k, n = 2, 6
    x = to_float(splits.forget.x[: n * k])  # stands in for anchors: anchor i*k + j belongs to image i
    t = torch.randn(n * k, 6, generator=torch.Generator().manual_seed(0)) * 3
    src = torch.tensor([4, 1])
    cfg = auto.Config(temperature=2.0)
    got = auto._anchor_term(model, x, t, n, src, (0,), cfg, torch.device("cpu"))
    pick = torch.tensor([8, 9, 2, 3])
    want = masked_kd(model(x[pick]), t[pick], (0,), 2.0)
    assert torch.allclose(got, want, atol=1e-5)
    other = masked_kd(model(x[:4]), t[:4], (0,), 2.0)  # the first images' anchors: a different loss
    assert not torch.allclose(got, other, atol=1e-3)


def _scripted(
    monkeypatch, attacks: list[float], agreements: list[float], inverted: list[float] | None = None
):  # noqa: ANN202
    """Script the held-out check: the attack per round, the anchor and the inverted-image agreement."""
    attacks_it, anchor_it = iter(attacks), iter(agreements)
    inverted_it = iter(inverted or [100.0] * len(agreements))
    seen = {"proxies": [], "labels": [], "calls": 0}

    def fake_attack(student, shots, held, classes, counts, g, device, proxy_x, proxy_y, draws, share, tol):  # noqa: ANN001
        seen["proxies"].append(proxy_y)
        seen.setdefault("shares", []).append(share)
        seen.setdefault("tolerances", []).append(tol)
        return next(attacks_it)

    def fake_agreement(student, x, labels, device):  # noqa: ANN001
        seen["calls"] += 1  # per round: the held anchors first, then the held inverted images
        seen["labels"].append(labels)
        return next(anchor_it) if seen["calls"] % 2 else next(inverted_it)

    monkeypatch.setattr(auto, "strongest_attack", fake_attack)
    monkeypatch.setattr(auto, "_agreement", fake_agreement)
    return seen


def test_dual_steps_and_retain_proxies(monkeypatch):
    """λ3 doubles while the (scripted) attack wins and the anchors hold; λa doubles instead when the
    anchor agreement drops; the attacker's retain proxies never carry a forget label."""
    from _methods_fixtures import tiny_config

    seen = _scripted(monkeypatch, [50.0] * 3, [90.0, 85.0, 90.0])
    # anchors too close to move: the original still calls most of them the forget class
    # (agreement_min_images 0: the tiny held-out sets would otherwise make 5 points a few images)
    cfg = tiny_config(
        "spotter_auto", max_epochs=3, min_epochs=3, anchor_radii=(1e-4,), agreement_min_images=0
    )
    model = auto.unlearn(original(), data(), cfg)
    history = model.unlearn_history
    assert [h["lambda3"] for h in history] == [cfg.lambda3, 2 * cfg.lambda3, 2 * cfg.lambda3]
    assert [h["anchor_weight"] for h in history] == [cfg.anchor_weight] * 2 + [2 * cfg.anchor_weight]
    # class 0 is the forget class: anchors the original gives it are no retain proxies; the
    # model-inverted images are (labelled by the masked original)
    for proxy_y in seen["proxies"]:
        assert proxy_y is not None and len(proxy_y) and not (proxy_y == 0).any()
    assert seen["shares"] == [5 / 6] * 3  # the retain classes' share of a balanced test set
    for labels in seen["labels"]:  # the student is held to the masked original's label
        assert len(labels) and not (labels == 0).any()


def test_a_round_that_breaks_the_retain_proxies_is_rolled_back_with_half_the_step(monkeypatch):
    from _methods_fixtures import tiny_config

    snapshots = []
    real_log = auto._common.log_epoch

    def log_and_snapshot(history, name, epoch, epochs, **values):  # noqa: ANN001
        snapshots.append(None)
        real_log(history, name, epoch, epochs, **values)

    monkeypatch.setattr(auto._common, "log_epoch", log_and_snapshot)
    # the inverted-image agreement falls in round 2 (the far retain classes broke), then holds
    _scripted(monkeypatch, [50.0] * 3, [90.0] * 3, inverted=[95.0, 80.0, 95.0])
    cfg = tiny_config(
        "spotter_auto", max_epochs=3, min_epochs=3, anchor_radii=(1e-4,), agreement_min_images=0
    )
    states = []
    real_load = torch.nn.Module.load_state_dict

    def spy_load(self, state, *a, **k):  # noqa: ANN001, ANN002, ANN003
        states.append({key: v.clone() for key, v in state.items()})
        return real_load(self, state, *a, **k)

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", spy_load)
    model = auto.unlearn(original(), data(), cfg)
    history = model.unlearn_history
    assert [h["lr"] for h in history] == [cfg.lr, cfg.lr, cfg.lr / 2]  # halved after the broken round
    assert history[2]["anchor_weight"] == 2 * cfg.anchor_weight
    assert states, "the broken round was not rolled back"
    off = tiny_config(
        "spotter_auto",
        max_epochs=3,
        min_epochs=3,
        anchor_radii=(1e-4,),
        rollback=False,
        agreement_min_images=0,
    )
    _scripted(monkeypatch, [50.0] * 3, [90.0] * 3, inverted=[95.0, 80.0, 95.0])
    assert [h["lr"] for h in auto.unlearn(original(), data(), off).unlearn_history] == [cfg.lr] * 3


def test_the_check_reads_and_the_method_returns_the_moving_average_of_the_weights(monkeypatch):
    from _methods_fixtures import tiny_config

    def moved(horizon: float) -> tuple[float, float]:
        """(largest weight change of the model the check saw in round 1, of the returned model)."""
        checked = []
        real_attack = auto.strongest_attack

        def spy(student, *a, **k):  # noqa: ANN001, ANN002, ANN003
            if not checked:
                checked.append(_largest_change(student))
            return real_attack(student, *a, **k)

        monkeypatch.setattr(auto, "strongest_attack", spy)
        cfg = tiny_config(
            "spotter_auto", max_epochs=2, min_epochs=2, average_horizon=horizon, rollback=False,
            reset_forget_rows=False,  # the reset head row is not averaged; this test reads the weights
        )  # fmt: skip
        returned = _largest_change(auto.unlearn(original(), data(), cfg))
        return checked[0], returned

    raw_check, raw_out = moved(0.0)
    slow_check, slow_out = moved(1e6)  # an average that barely follows the weights
    assert raw_check > 0 and raw_out > 0
    assert 0 < slow_check < raw_check / 100 and 0 < slow_out < raw_out / 100
    with pytest.raises(ValueError, match="average_horizon"):
        auto.Config(average_horizon=-1)


def test_follow_bn_re_estimates_the_running_statistics_and_only_then():
    from _methods_fixtures import tiny_config

    from spotter.models.batchnorm import batchnorm_layers

    def stats_moved(follow: bool) -> float:
        cfg = tiny_config("spotter_auto", max_epochs=1, min_epochs=1, follow_bn=follow)
        model = auto.unlearn(original(), data(), cfg)
        pairs = zip(batchnorm_layers(model), batchnorm_layers(original()), strict=True)
        return max(float((s.running_mean - t.running_mean).abs().max()) for s, t in pairs)

    assert stats_moved(False) == 0.0  # frozen statistics stay the original's
    assert stats_moved(True) > 1e-4


def _largest_change(model: torch.nn.Module) -> float:
    reference = dict(original().named_parameters())
    return max(float((p.detach() - reference[n].detach()).abs().max()) for n, p in model.named_parameters())


def test_schedule_and_anchor_count_follow_the_forget_set_size():
    cfg = auto.Config()
    assert auto.schedule(5400, 5400, cfg) == (128, 43)  # a Fashion-MNIST class: the authors' batch, one epoch
    assert auto.schedule(117, 117, cfg) == (32, 20)  # a digits class: small batches, at least 20 steps
    assert auto.anchor_count(5400, 9, cfg) == 2 and auto.anchor_count(117, 9, cfg) == 9
    assert auto.anchor_count(117, 9, auto.Config(anchor_classes=3)) == 3


def test_batches_yield_exactly_the_round_and_restart_whole_epochs():
    y = torch.tensor([0] * 10)
    batches = list(auto._batches(y, 4, 7, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2, 4]
    assert sorted(torch.cat(batches[:3]).tolist()) == list(range(10))  # the first epoch, whole


def test_batch_terms_shift_and_neighbour_features():
    from spotter.functional.losses import dispersion, masked_kd
    from spotter.methods.spotter import Config as SpotterConfig
    from spotter.methods.spotter import targets

    model, splits = original(), data()
    cpu = torch.device("cpu")
    forget = splits.forget.subset(torch.arange(16))
    material = targets(model, forget, SpotterConfig(), cpu)
    idx, g = torch.arange(8), torch.Generator().manual_seed(0)
    plain = auto.Config(shift=0, attack_neighbours=False)
    kd_clean, kd_nb, disp, feats, y, src, _ = auto._batch_terms(
        model, model, forget.x, material, idx, (0,), plain, cpu, g
    )
    x = to_float(forget.x[src])
    assert torch.allclose(kd_clean, masked_kd(model(x), material[3][src], (0,), plain.temperature), atol=1e-5)
    assert torch.allclose(
        kd_nb, masked_kd(model(material[0][idx]), material[4][idx], (0,), plain.temperature), atol=1e-5
    )
    assert feats.shape[0] == 8 and torch.allclose(disp, dispersion(feats, y))
    both = auto.Config(shift=0, attack_neighbours=True)
    _, _, disp2, feats2, y2, _, _ = auto._batch_terms(
        model, model, forget.x, material, idx, (0,), both, cpu, g
    )
    assert feats2.shape[0] == 16 and len(y2) == 16 and not torch.allclose(disp2, disp)
    assert torch.allclose(feats2[:8], feats, atol=1e-5)  # the clean features first, then the neighbours'
    shifted = auto.Config(shift=2, attack_neighbours=False)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    kd_s, _, _, feats_s, _, _, _ = auto._batch_terms(
        model, model, forget.x, material, idx, (0,), shifted, cpu, g1
    )
    xs = augment(x, 2, False, g2)  # the same draw
    assert not torch.allclose(xs, x) and torch.allclose(feats_s, model.features(xs), atol=1e-5)
    # the teacher is asked again on the translated images, not reused from the untranslated ones
    assert torch.allclose(kd_s, masked_kd(model(xs), model(xs), (0,), shifted.temperature), atol=1e-5)
    assert not torch.allclose(
        kd_s, masked_kd(model(xs), material[3][src], (0,), shifted.temperature), atol=1e-3
    )


def test_cover_anchors_head_toward_every_retain_class_from_a_budgeted_subset():
    model, splits = original(), data()
    train = splits.forget.subset(torch.arange(40))
    t = predict(model, train.x)
    cfg = auto.Config(anchor_budget=50, anchor_radii=(0.3,), anchor_hit=0.0)
    g = torch.Generator().manual_seed(0)
    anchors, labels, radius = auto._cover_anchors(model, train, t, (0,), cfg, torch.device("cpu"), g)
    assert anchors.shape[0] == 50 and radius == 0.3  # 50 // 5 retain classes = 10 images, 5 anchors each
    # at a large radius the original calls most anchors their target: several retain classes appear
    assert len(set(labels.argmax(1).tolist()) - {0}) >= 3


def test_proxy_share_weighs_the_proxies_as_a_balanced_test_set_would(monkeypatch):
    """The attacker's α rule: each image counts once, or the proxies carry `proxy_share` of the
    score whatever their number. Scripted: the attack wins every query from α = 0.9 on, where it
    also steals 20% of the 10 proxies."""

    def fake_head(weight, bias, rows, row_biases, classes, alpha, cosine):  # noqa: ANN001
        return torch.tensor(alpha), None

    def fake_logits(head, feats, w, b):  # noqa: ANN001
        strong = w is not None and float(w) >= 0.9  # None: the unattacked head
        out = torch.zeros(len(feats), 3)
        is_query = feats[:, 0] == 0
        stolen = torch.arange(len(feats)) % 5 == 0  # 20% of the proxies
        label = torch.where(
            is_query, torch.full_like(stolen, 2, dtype=torch.long), torch.ones_like(stolen, dtype=torch.long)
        )
        if strong:
            label = torch.where(is_query | stolen, torch.zeros_like(label), label)
        out[torch.arange(len(feats)), label] = 1.0
        return out

    monkeypatch.setattr(auto, "attacked_head", fake_head)
    monkeypatch.setattr(auto, "head_logits", fake_logits)
    query, proxies = torch.zeros(10, 1), torch.ones(10, 1)
    proxy_y = torch.ones(10, dtype=torch.long)
    args = (None, None, None, None, None, 0, False, query, proxies, proxy_y)
    assert auto._win_at_best_alpha(*args) == 100.0  # counts: (10 + 8) / 20 at α 0.9 beats 10 / 20
    assert auto._win_at_best_alpha(*args, 0.9) == 0.0  # share 0.9: 0.1 + 0.72 < 0.9, the timid α
    assert auto._win_at_best_alpha(*args, 0.5) == 100.0  # share 0.5: 0.5 + 0.4 > 0.5
    # a tolerance of 20 points forgives the 20% the proxies lose: the strong α is free again
    assert auto._win_at_best_alpha(*args, 0.9, 20.0) == 100.0
    assert auto._win_at_best_alpha(*args, 0.9, 5.0) == 0.0  # 0.1 + 0.9 * 0.85 < 0.9


def test_inverted_term_distils_the_stored_logits_or_asks_the_original_on_augmented_images():
    from spotter.functional.losses import masked_kd

    model, splits, teacher = original(), data(), original()
    x = to_float(splits.forget.x[:8])  # stands in for inverted images
    t_true = predict(teacher, x)  # stored logits as the method stores them
    t_other = torch.randn(8, 6, generator=torch.Generator().manual_seed(0)) * 3
    forget = splits.forget.x[8:16]  # as stored (uint8): the term converts the partners it draws
    dev = torch.device("cpu")

    def term(cfg: auto.Config, t: torch.Tensor, student: torch.nn.Module = model) -> torch.Tensor:
        g = torch.Generator().manual_seed(1)
        kd, features = auto._inverted_term(student, teacher, x, t, 5, (0,), cfg, dev, g, forget)
        assert float(features) == 0.0  # feature matching is off by default and costs nothing
        return kd

    plain = term(auto.Config(), t_other)
    # "boundary" adds images before training; the term distils them as stored, unmixed
    assert torch.equal(term(auto.Config(inverted_augment="boundary"), t_other), plain)
    pick = torch.randint(8, (5,), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(
        plain, masked_kd(model(x[pick]), t_other[pick], (0,), auto.Config().temperature), atol=1e-5
    )
    for mode in ("mix", "mix_forget"):
        cfg = auto.Config(inverted_augment=mode)
        # the original labels the augmented images afresh: the stored logits do not matter ...
        assert torch.allclose(term(cfg, t_true), term(cfg, t_other), atol=1e-6)
        # ... and the images are not the stored ones (same draws, same true labels, another loss)
        assert not torch.allclose(term(cfg, t_true), term(auto.Config(), t_true), atol=1e-4)
    mixed_inv, mixed_forget = (
        term(auto.Config(inverted_augment="mix"), t_true),
        term(auto.Config(inverted_augment="mix_forget"), t_true),
    )
    assert not torch.allclose(mixed_inv, mixed_forget, atol=1e-4)


def test_feature_matching_is_zero_for_the_original_and_grows_with_the_students_drift():
    teacher, splits = original(), data()
    x = to_float(splits.forget.x[:8])
    t = predict(teacher, x)
    dev, cfg = torch.device("cpu"), auto.Config(feature_weight=1.0)

    def features_term(student: torch.nn.Module) -> float:
        g = torch.Generator().manual_seed(1)
        return float(auto._inverted_term(student, teacher, x, t, 5, (0,), cfg, dev, g, x)[1].detach())

    assert features_term(original()) < 1e-10  # the student is the original: nothing drifted
    drifts = []
    for scale in (0.01, 0.1):
        student = copy.deepcopy(original())
        with torch.no_grad():
            for p in student.backbone.parameters():
                p.add_(scale * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
        drifts.append(features_term(student))
    assert 0 < drifts[0] < drifts[1]
    f = torch.randn(6, 4, generator=torch.Generator().manual_seed(3))
    assert float(auto.feature_drift(2 * f, f)) == pytest.approx(1.0)  # relative to the features' size
    with pytest.raises(ValueError, match="feature_weight"):
        auto.Config(feature_weight=-1)


def _two_pixel_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 3, bias=False))


def test_fisher_ratio_mask_frees_the_weights_only_the_forget_images_use():
    # forget images light pixel 0 only, retain stand-ins pixel 1 only: the weights reading pixel 0
    # carry the forget set's Fisher information and none of the stand-ins'
    model = _two_pixel_model()
    params = list(model.parameters())
    forget_x = torch.tensor([1.0, 0.0]).repeat(8, 1).view(8, 1, 1, 2)
    retain_x = torch.tensor([0.0, 1.0]).repeat(8, 1).view(8, 1, 1, 2)
    mask = auto.fisher_ratio_mask(
        model, params, forget_x, torch.zeros(8, dtype=torch.long), retain_x, torch.ones(8, dtype=torch.long),
        0.5, torch.device("cpu"),
    )  # fmt: skip
    assert mask[0].tolist() == [[True, False]] * 3
    # with the ratio's sides swapped it would free the stand-ins' weights: the test notices
    swapped = auto.fisher_ratio_mask(
        model, params, retain_x, torch.ones(8, dtype=torch.long), forget_x, torch.zeros(8, dtype=torch.long),
        0.5, torch.device("cpu"),
    )  # fmt: skip
    assert swapped[0].tolist() != mask[0].tolist()


def test_weights_outside_the_mask_keep_the_originals_values_and_lose_their_momentum():
    model = _two_pixel_model()
    params = list(model.parameters())
    theta_o = [p.detach().clone() for p in params]
    mask = [torch.tensor([[True, False]] * 3)]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.ones(4, 1, 1, 2)).pow(2).sum().backward()
        opt.step()
        _common.hold_outside_mask(params, mask, theta_o, opt)
    w = params[0].detach()
    assert torch.equal(w[:, 1], theta_o[0][:, 1])  # held, despite gradient, momentum and decay
    assert not torch.allclose(w[:, 0], theta_o[0][:, 0])  # the free ones moved
    assert opt.state[params[0]]["momentum_buffer"][:, 1].abs().sum() == 0


def test_boundary_images_step_inverted_images_toward_the_next_retain_classes():
    model, splits = original(), data()
    x = to_float(splits.retain.x[:6])  # stands in for inverted images of retain classes
    t = predict(model, x)
    cfg = auto.Config(anchor_radii=(0.3,), anchor_hit=0.0)
    x_all, t_all = auto._with_boundaries(model, x, t, (0,), cfg, torch.device("cpu"))
    assert len(x_all) == 3 * len(x) and torch.equal(x_all[:6], x) and torch.equal(t_all[:6], t)
    assert torch.allclose(t_all[6:], predict(model, x_all[6:]), atol=1e-5)  # the original's logits
    # each image's two targets: the retain classes ranked after its own, never the forget class
    others = t.clone()
    others[torch.arange(6), t.argmax(1)] = float("-inf")
    targets = auto.anchor_targets(others, (0,), 2).reshape(-1)
    assert not bool((targets == 0).any()) and not bool((targets == t.argmax(1).repeat_interleave(2)).any())
    on_target = (t_all[6:].argmax(1) == targets).float().mean()
    assert on_target >= 0.5  # the original now calls most of them their target (none before)
    assert (x_all[6:] - x.repeat_interleave(2, 0)).abs().max() <= 0.3 + 1e-6


def test_mask_share_and_inverted_augment_are_validated():
    import pytest

    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="mask_share"):
            auto.Config(mask_share=bad)
    with pytest.raises(ValueError, match="valid choices: none, mix, mix_forget, boundary"):
        auto.Config(inverted_augment="nope")


def test_an_agreement_drop_counts_only_when_enough_held_out_images_changed():
    cfg = auto.Config(agreement_drop=2.0, agreement_min_images=3)
    assert auto._tolerance(cfg, 5000) == 2.0  # many images: the points rule
    assert abs(auto._tolerance(cfg, 50) - 6.0) < 1e-9  # 50 images: three of them, not one
    assert auto._tolerance(auto.Config(agreement_min_images=0), 50) == 2.0


def test_train_last_freezes_the_input_side_and_the_run_leaves_it_untouched():
    from _methods_fixtures import tiny_config

    model = copy.deepcopy(original())
    names = [n for n, _ in model.named_parameters() if not n.startswith("head")]
    sizes = dict((n, p.numel()) for n, p in model.named_parameters())
    total = sum(sizes[n] for n in names)
    frozen = auto.freeze_early(model, 0.5)
    moving = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head")]
    still = [n for n in names if n not in moving]
    assert still == names[: len(still)] and moving == names[len(still) :]  # a prefix, the input side
    assert frozen == sum(sizes[n] for n in still) and 0.5 * total <= total - frozen < 0.5 * total + max(
        sizes.values()
    )
    assert all(p.requires_grad for p in model.head.parameters())  # the head is not the backbone's

    teacher = original()
    cfg = tiny_config("spotter_auto", max_epochs=1, min_epochs=1, train_last=0.5, rollback=False)
    out = auto.unlearn(teacher, data(), cfg)
    before, after = dict(teacher.named_parameters()), dict(out.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in still)
    assert any(not torch.equal(before[n], after[n]) for n in moving)
    assert all(p.requires_grad for p in out.parameters())  # handed back trainable
    with pytest.raises(ValueError, match="train_last"):
        auto.Config(train_last=0)


def test_reset_forget_rows_writes_a_short_row_against_the_data_and_touches_nothing_else():
    torch.manual_seed(0)
    head = torch.nn.Linear(6, 4)
    features = torch.rand(50, 6) + 0.5  # post-ReLU features: positive
    before = head.weight.detach().clone(), head.bias.detach().clone()
    auto.reset_forget_rows(head, (1,), features)
    retain = [0, 2, 3]
    assert torch.equal(head.weight[retain], before[0][retain]) and torch.equal(
        head.bias[retain], before[1][retain]
    )
    row = head.weight[1].detach()
    assert row.norm() == pytest.approx(auto.RESET_ROW_SHARE * float(before[0][retain].norm(dim=1).mean()))
    assert torch.nn.functional.cosine_similarity(row, features.mean(0), dim=0) == pytest.approx(-1.0)
    assert float(head.bias[1].detach()) == float(before[1][retain].min())
    with torch.no_grad():
        assert not (head(features).argmax(1) == 1).any()  # the class is now nobody's answer
    # with the sign flipped (a row along the data) the class would win here: the test can fail
    with torch.no_grad():
        head.weight[1] = -head.weight[1] * 10
        assert (head(features).argmax(1) == 1).any()


def test_track_bn_moves_the_running_statistics_and_reset_forget_rows_changes_only_the_forget_row():
    from _methods_fixtures import tiny_config

    from spotter.models.batchnorm import batchnorm_layers

    teacher = original()
    cfg = tiny_config("spotter_auto", max_epochs=1, min_epochs=1, rollback=False)
    assert cfg.reset_forget_rows  # the default: the forget rows are reset at the end
    frozen = auto.unlearn(teacher, data(), dataclasses.replace(cfg, reset_forget_rows=False))
    tracked = auto.unlearn(teacher, data(), dataclasses.replace(cfg, track_bn=True))
    pairs = list(
        zip(batchnorm_layers(teacher), batchnorm_layers(frozen), batchnorm_layers(tracked), strict=True)
    )
    assert pairs and all(
        torch.equal(t.running_mean, f.running_mean) for t, f, _ in pairs
    )  # frozen by default
    assert any(
        not torch.allclose(t.running_mean, k.running_mean) for t, _, k in pairs
    )  # tracked: they follow
    classes = list(data().forget_classes)
    keep = [c for c in range(teacher.head.weight.shape[0]) if c not in classes]
    assert torch.equal(tracked.head.weight[keep], teacher.head.weight[keep])
    assert not torch.equal(tracked.head.weight[classes], teacher.head.weight[classes])
    assert torch.equal(frozen.head.weight, teacher.head.weight)


def _simulated_attack(model: torch.nn.Module, cfg: auto.Config) -> tuple[list[torch.Tensor], float]:
    """One simulated fine-tuning attack on the fixture's forget set, forget shots only, fixed seed."""
    d, none = data(), torch.zeros(0)
    grads, recovered = auto.simulated_finetune(
        model, d.forget, none, none.long(), tuple(d.forget_classes), cfg, torch.Generator().manual_seed(3),
        torch.device("cpu"),
    )  # fmt: skip
    return grads, float(recovered)


def test_simulated_finetune_gradient_lowers_what_the_attacker_wins_back_and_leaves_the_student():
    teacher = original()
    cfg = auto.Config(finetune_steps=3, finetune_shots=5, finetune_lrs=(1e-3, 1e-3))
    student = copy.deepcopy(teacher)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    grads, recovered = _simulated_attack(student, cfg)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())  # a copy is attacked
    assert recovered > 90  # the original: the attack keeps the class
    moved = {}
    for sign in (1, -1):  # descent along the meta-gradient defends; the flipped sign helps the attacker
        m = copy.deepcopy(student)
        with torch.no_grad():
            for p, g in zip(m.parameters(), grads, strict=True):
                p.sub_(sign * 0.03 * g)
        moved[sign] = _simulated_attack(m, cfg)[1]
    assert moved[1] < 10 < recovered <= moved[-1]
    with pytest.raises(ValueError, match="finetune_lrs"):
        auto.Config(finetune_lrs=(1e-3, 1e-4))
    with pytest.raises(ValueError, match="finetune_bn"):
        auto.Config(finetune_bn="frozen")


def test_the_simulated_attacker_in_train_mode_uses_the_batchs_statistics_and_not_the_students():
    from spotter.models.batchnorm import batchnorm_layers

    student = copy.deepcopy(original())
    running = [m.running_mean.clone() for m in batchnorm_layers(student)]
    assert running  # the fixture model has BatchNorm, or this test could not fail
    out = {}
    for mode in ("eval", "train"):
        cfg = auto.Config(finetune_steps=2, finetune_lrs=(1e-3, 1e-3), finetune_bn=mode)
        out[mode] = _simulated_attack(student, cfg)
    assert all(
        torch.equal(m.running_mean, r) for m, r in zip(batchnorm_layers(student), running, strict=True)
    )
    assert out["eval"][1] != pytest.approx(out["train"][1], abs=1e-3)  # another attack


def test_finetune_weight_runs_the_simulated_attacker_and_logs_what_it_wins_back():
    from _methods_fixtures import tiny_config

    cfg = tiny_config("spotter_auto", max_epochs=1, min_epochs=1, rollback=False, finetune_weight=1.0,
                      finetune_steps=2)  # fmt: skip
    out = auto.unlearn(original(), data(), cfg)
    history = out.unlearn_history
    assert history and history[0]["finetune_attack"] > 0
    off = auto.unlearn(original(), data(), dataclasses.replace(cfg, finetune_weight=0.0))
    assert off.unlearn_history[0]["finetune_attack"] == 0
    assert not all(torch.equal(a, b) for a, b in zip(out.parameters(), off.parameters(), strict=True))


def test_shrink_perturb_moves_only_weight_tensors_by_the_set_amount():
    torch.manual_seed(0)
    layer = torch.nn.Conv2d(3, 8, 3)
    bn = torch.nn.BatchNorm2d(8)
    params = [*layer.parameters(), *bn.parameters()]
    before = [p.detach().clone() for p in params]
    auto.shrink_perturb(params, 0.5, 0.0, torch.Generator().manual_seed(1))
    assert torch.allclose(layer.weight, 0.5 * before[0])  # shrink alone: exactly scaled
    assert all(torch.equal(p, b) for p, b in zip(params[1:], before[1:], strict=True))  # vectors kept
    w = layer.weight.detach().clone()
    auto.shrink_perturb(params, 1.0, 0.1, torch.Generator().manual_seed(1))
    spread = float((layer.weight.detach() - w).std() / w.std())
    assert 0.07 < spread < 0.13  # noise of 0.1 of the tensor's own spread
    with pytest.raises(ValueError, match="shrink"):
        auto.Config(shrink=0)


def test_class_centres_are_the_teachers_mean_features_per_assigned_class():
    model = original()
    x = to_float(data().test_retain.x[:40])
    logits = predict(model, x)
    centres = auto.class_centres(model, x, logits, torch.device("cpu"))
    feats, labels = predict(model, x, features=True), logits.argmax(1)
    for c in range(logits.shape[1]):
        want = feats[labels == c].mean(0) if (labels == c).any() else torch.zeros(feats.shape[1])
        assert torch.allclose(centres[c], want, atol=1e-5)


def test_collapse_weight_pulls_forget_features_to_their_retain_class_centre():
    from _methods_fixtures import tiny_config

    cfg = tiny_config("spotter_auto", max_epochs=2, min_epochs=2, rollback=False, inverted_per_class=8,
                      inversion_steps=5, collapse_weight=4.0)  # fmt: skip
    out = auto.unlearn(original(), data(), cfg)
    history = out.unlearn_history
    assert history[0]["collapse"] > 0 and history[-1]["collapse"] < history[0]["collapse"]
    off = auto.unlearn(original(), data(), dataclasses.replace(cfg, collapse_weight=0.0))
    assert off.unlearn_history[0]["collapse"] == 0
    with pytest.raises(ValueError, match="collapse_weight"):
        auto.Config(collapse_weight=-1)
    with pytest.raises(ValueError, match="inverted_per_class"):
        auto.Config(collapse_weight=1.0, inverted_per_class=0)


class _ShiftScale(torch.nn.Module):
    """x·s + c per channel, in front of one BatchNorm layer: the student's only change."""

    def __init__(self, s: float, c: float) -> None:
        super().__init__()
        self.s, self.c = torch.nn.Parameter(torch.tensor(s)), torch.nn.Parameter(torch.tensor(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s + self.c


def _bn_pair(s: float, c: float) -> tuple[torch.nn.Module, torch.nn.Module]:
    teacher = torch.nn.Sequential(_ShiftScale(1.0, 0.0), torch.nn.BatchNorm2d(3)).eval()
    student = torch.nn.Sequential(_ShiftScale(s, c), torch.nn.BatchNorm2d(3)).eval()
    return student, teacher


def test_statistics_drift_is_the_shift_in_teacher_deviations_plus_the_log_variance_ratio():
    x = torch.randn(16, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    x = x - x.mean((0, 2, 3), keepdim=True)  # zero mean per channel: shift and scale separate
    v = x.var((0, 2, 3), unbiased=False)
    student, teacher = _bn_pair(1.0, 0.0)
    assert float(auto.statistics_drift(student, teacher, x).detach()) == pytest.approx(0.0, abs=1e-10)
    student, teacher = _bn_pair(1.0, 0.5)  # every channel's mean moves by 0.5
    want = float((0.25 / (v + 1e-5)).mean())
    assert float(auto.statistics_drift(student, teacher, x).detach()) == pytest.approx(want, rel=1e-5)
    student, teacher = _bn_pair(2.0, 0.0)  # every channel's variance ×4
    want = float(((4 * v + 1e-5) / (v + 1e-5)).log().pow(2).mean())
    assert float(auto.statistics_drift(student, teacher, x).detach()) == pytest.approx(want, rel=1e-5)
    # differentiable in the student: a step down the gradient undoes the shift
    student, teacher = _bn_pair(1.0, 0.5)
    auto.statistics_drift(student, teacher, x).backward()
    assert student[0].c.grad > 0 and teacher[0].c.grad is None


def test_stats_weight_holds_the_stand_ins_statistics_during_unlearning():
    from _methods_fixtures import tiny_config

    teacher, splits = original(), data()
    cfg = tiny_config("spotter_auto", max_epochs=2, min_epochs=2, rollback=False, inverted_per_class=8,
                      inversion_steps=5)  # fmt: skip
    probe = to_float(splits.test_retain.x[:64])  # retain images: what a re-estimation would see
    drift = {}
    for weight in (0.0, 5.0):
        out = auto.unlearn(teacher, splits, dataclasses.replace(cfg, stats_weight=weight))
        drift[weight] = float(auto.statistics_drift(out.eval(), teacher, probe).detach())
        logged = [h["statistics"] for h in out.unlearn_history]
        assert all(v == 0 for v in logged) if weight == 0 else all(v > 0 for v in logged)
    assert drift[5.0] < 0.5 * drift[0.0]  # the term keeps what every input's statistics look like
    with pytest.raises(ValueError, match="stats_weight"):
        auto.Config(stats_weight=-1)
    # without stand-ins there is nothing to hold the statistics on: the default weight is then off
    out = auto.unlearn(teacher, splits, dataclasses.replace(cfg, stats_weight=1.0, inverted_per_class=0))
    assert [h["statistics"] for h in out.unlearn_history] == [0.0, 0.0]


def _small_resnet(frozen_share: float = 0.75) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(student with its early stages frozen as spotter_auto freezes them, teacher): a width-16
    ResNet-18 with BatchNorm statistics that are not the defaults, in spotter_auto's training mode."""
    from spotter.models import ModelSpec, build_model
    from spotter.models.batchnorm import batchnorm_layers, set_mode

    torch.manual_seed(0)
    teacher = build_model(ModelSpec("resnet18", 4, 1, 16, (0.5,), (0.25,))).eval()
    for bn in batchnorm_layers(teacher):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    student = copy.deepcopy(teacher).to(memory_format=torch.channels_last)
    auto.freeze_early(student, frozen_share)
    set_mode(student, True)
    return student, teacher


def test_the_frozen_trunk_cache_gives_the_whole_forward_and_the_same_statistics_drift():
    """The frozen stages' output, computed once, then the training stages, must be the student's own
    features; and the statistics drift read from it must equal the whole models' (the frozen layers
    add nothing). Broken if a stage is skipped or the normalisation is left out."""
    student, teacher = _small_resnet()
    trunk = auto.FrozenTrunk.of(student, teacher, auto.Config())
    assert trunk is not None and trunk.start == 4  # the stem and three stages frozen, layer4 trains
    x = torch.rand(6, 1, 16, 16)
    kept = x.clone()
    h = trunk.encode(x, torch.device("cpu"))
    assert torch.equal(x, kept)  # float pixels (stand-ins, anchors, neighbours) are read, never rescaled
    assert torch.allclose(trunk.features(h), student.features(x), atol=1e-5)
    as_bytes = (x * 255).round().to(torch.uint8)  # stored images (uint8) are scaled to [0, 1] first
    assert torch.allclose(
        trunk.encode(as_bytes, torch.device("cpu")), trunk.encode(as_bytes.float() / 255, torch.device("cpu"))
    )
    with torch.no_grad():  # the student's training stage moves; the cache still serves it
        for p in student.backbone.layer4.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert torch.allclose(trunk.features(h), student.features(x), atol=1e-5)
    assert not torch.allclose(trunk.features(h), trunk.features(h, teacher=True), atol=1e-3)
    import functools

    whole = auto.statistics_drift(student, teacher, x)
    cached = auto.statistics_drift(
        student, teacher, h, (trunk.features, functools.partial(trunk.features, teacher=True))
    )
    assert whole > 0 and torch.allclose(cached, whole, rtol=1e-4)
    # nothing frozen, or a setting that moves the frozen stages' statistics: no cache
    assert auto.FrozenTrunk.of(*_small_resnet(1.0), auto.Config()) is None
    assert auto.FrozenTrunk.of(student, teacher, auto.Config(follow_bn=True)) is None
    assert auto.FrozenTrunk.of(original(), original(), auto.Config()) is None  # a model without stages


def test_the_checks_tolerance_is_zero_on_a_class_the_original_confuses(monkeypatch):
    """The held-out check ignores `proxy_tolerance` points of proxy loss only where the original
    keeps the forget class apart (its accuracy on the forget images at least `confusable_below`)."""
    from _methods_fixtures import tiny_config

    labels = torch.zeros(100, dtype=torch.long)
    logits = torch.zeros(100, 4)
    logits[:, 0] = 1.0
    logits[:7, 2] = 2.0  # the original calls 7 of 100 forget images class 2: 93% fit
    cfg = auto.Config(proxy_tolerance=30.0, confusable_below=94.0)
    assert auto.check_tolerance(logits, labels, cfg) == 0.0
    assert auto.check_tolerance(logits, labels, dataclasses.replace(cfg, confusable_below=92.0)) == 30.0
    logits[:7, 2] = 0.0  # every image fitted
    assert auto.check_tolerance(logits, labels, cfg) == 30.0
    assert auto.check_tolerance(logits, labels, dataclasses.replace(cfg, confusable_below=0.0)) == 30.0
    with pytest.raises(ValueError, match="confusable_below"):
        auto.Config(confusable_below=101.0)
    # in a run: the rule reads the original's logits on the training forget images, and the check
    # receives what it gives (the tiny original fits all of them: tolerance 30 at the default)
    seen = _scripted(monkeypatch, [50.0] * 2, [90.0] * 2)
    asked, rule = [], auto.check_tolerance

    def spy(teacher_logits, forget_labels, config):  # noqa: ANN001
        asked.append(rule(teacher_logits, forget_labels, config))
        return 7.0 if config.confusable_below == 100.0 else asked[-1]

    monkeypatch.setattr(auto, "check_tolerance", spy)
    for below, expected in ((100.0, 7.0), (94.0, 30.0)):
        seen["tolerances"] = []
        cfg = tiny_config(
            "spotter_auto", max_epochs=1, min_epochs=1, proxy_tolerance=30.0, confusable_below=below
        )
        history = auto.unlearn(original(), data(), cfg).unlearn_history
        assert asked[-1] == 30.0  # 100% fit is not below either threshold
        assert seen["tolerances"] == [expected] and history[0]["check_tolerance"] == expected
