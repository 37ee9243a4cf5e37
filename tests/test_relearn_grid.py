"""The relearning attack grid: attackers on copies, scopes and BatchNorm modes, the attacker's rule,
relearn time, the gap to the retrained model, and the audit's check, section, verdict and figure."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from _methods_fixtures import data, micro, one_thread, original, same, state

from spotter.audit.context import audit_config
from spotter.evaluation import relearn_grid as rg
from spotter.evaluation.gap import balanced_weights, decided_gap, declined
from spotter.evaluation.relearn_grid import (
    Attacker,
    RelearnGridConfig,
    attack,
    attack_data,
    fresh_head,
    keep_best,
    relearn_grid,
    relearn_steps,
    relearning_gap,
)
from spotter.models.batchnorm import batchnorm_layers

# Every axis, one lr each, a few steps: all 24 attackers in about a second.
ALL_AXES = RelearnGridConfig(shots=(5,), budgets=(3,), checkpoints=(1, 3), sgd_lrs=(1e-2,), adam_lrs=(1e-3,))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


def _suppressed(model):
    """The forget class removed at the head only: what a weak unlearning method leaves behind."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.head.weight[0] = 0.0
        out.head.bias[0] = -10.0
    return out


def _bn_buffers(model) -> list[torch.Tensor]:
    return [t.clone() for m in batchnorm_layers(model) for t in (m.running_mean, m.running_var)]


# ---- attacks on copies ----------------------------------------------------------------------


def test_every_attacker_runs_on_copies_and_the_result_is_json():
    model = original()
    before, mode = state(model), model.training
    res = relearn_grid(model, data(), ALL_AXES)
    assert same(state(model), before) and model.training == mode
    names = [a["name"] for a in res["attackers"]]
    assert len(names) == 2 * 2 * 3 * 2 == len(set(names))
    assert res["steps"] == [0, 1, 3] and res["budgets"] == [3] and res["cap"] == 3 and res["not_reached"] == 4
    for a in res["attackers"]:
        assert len(a["test_forget_acc"]) == len(a["test_retain_acc"]) == len(a["lr"]) == 3
        assert a["lr"][0] == 0.0 and a["lr"][1] in a["lrs"]
    json.loads(json.dumps(res))  # lists, numbers and strings only


@pytest.mark.parametrize("scope", ["head", "head_reinit"])
@pytest.mark.parametrize("bn", ["eval", "train"])
def test_head_scopes_change_only_the_head(scope, bn):
    model, s = original(), data()
    before = state(model)
    attacker = Attacker(5, "mixed", "sgd", scope, bn)
    *_, (step, attacked) = attack(model, attack_data(s, 5, "mixed", 0), attacker, 0.05, (0, 3), ALL_AXES)
    assert step == 3
    after = dict(attacked.named_parameters())
    for name, value in model.named_parameters():
        moved = not torch.equal(after[name].detach().cpu(), value.detach())
        assert moved == name.startswith("head."), name
    if bn == "eval":  # nothing but the head moves at all, buffers included
        assert same({k: v for k, v in state(attacked).items() if not k.startswith("head.")},
                    {k: v for k, v in before.items() if not k.startswith("head.")})  # fmt: skip


def test_bn_eval_keeps_running_statistics_and_train_updates_them():
    model, s = original(), data()
    shots = attack_data(s, 5, "mixed", 0)
    stats = _bn_buffers(model)
    assert stats, "the tiny CNN has BatchNorm"
    for bn, changed in (("eval", False), ("train", True)):
        *_, (_, attacked) = attack(
            model, shots, Attacker(5, "mixed", "adam", "whole", bn), 1e-3, (2,), ALL_AXES
        )
        moved = any(not torch.equal(a, b) for a, b in zip(_bn_buffers(attacked), stats, strict=True))
        assert moved == changed, bn
    assert all(torch.equal(a, b) for a, b in zip(_bn_buffers(model), stats, strict=True))


def test_head_reinit_is_seeded_and_leaves_the_global_rng_alone():
    head = original().head
    rng = torch.get_rng_state()
    a, b, c = fresh_head(head, 0), fresh_head(head, 0), fresh_head(head, 1)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)
    assert not torch.equal(a.weight, head.weight)


def test_mixed_data_is_the_attack_set_and_forget_data_its_forget_shots():
    s = data()
    mixed, forget = attack_data(s, 5, "mixed", 0), attack_data(s, 5, "forget", 0)
    assert len(mixed) == 10 and len(forget) == 5 and (forget.y == 0).all()
    assert torch.equal(mixed.x[:5], forget.x)  # the same nested shots


def _counting_attack(monkeypatch) -> list[str]:
    """Record the scope of every run that goes through the whole model (`attack`)."""
    calls: list[str] = []
    real = rg.attack

    def counted(model, shots, attacker, *args, **kw):
        calls.append(attacker.scope)
        return real(model, shots, attacker, *args, **kw)

    monkeypatch.setattr(rg, "attack", counted)
    return calls


def test_shared_head_features_give_the_numbers_of_running_the_model(monkeypatch):
    """Head-only attackers train on features computed once; running the whole model must agree."""
    cfg = RelearnGridConfig(shots=(5,), data=("mixed", "forget"), scopes=("head", "head_reinit"), budgets=(4,),
                            checkpoints=(2, 4), sgd_lrs=(1e-2, 1e-1), adam_lrs=(1e-2,))  # fmt: skip
    model, s = original(), data()
    calls = _counting_attack(monkeypatch)
    fast = relearn_grid(model, s, cfg)
    assert calls == []  # the shared features were used
    slow = relearn_grid(model, s, cfg, cache_heads=False)
    assert len(calls) == 2 * 2 * 2 * (2 + 1)  # data x scope x bn x (SGD lrs + Adam lrs)
    for a, b in zip(fast["attackers"], slow["attackers"], strict=True):
        for key in ("test_forget_acc", "test_retain_acc", "lr", "relearn_steps"):
            assert a[key] == pytest.approx(b[key], abs=1e-9, nan_ok=True), (a["name"], key)


def test_a_body_with_dropout_is_run_whole(monkeypatch):
    """Dropout makes the body's training output differ step to step: features cannot be shared."""
    model = micro()
    model.backbone = torch.nn.Sequential(*model.backbone, torch.nn.Dropout(0.5))
    calls = _counting_attack(monkeypatch)
    cfg = RelearnGridConfig(shots=(5,), data=("mixed",), optimisers=("sgd",), scopes=("head",), bn=("eval",),
                            budgets=(3,), checkpoints=(3,), sgd_lrs=(1e-2,))  # fmt: skip
    relearn_grid(model, data(), cfg)
    assert calls == ["head"]


# ---- the attacker's rule and relearn time ----------------------------------------------------


def test_keep_best_takes_the_highest_overall_accuracy_and_never_nan():
    runs = [
        {"test_forget_acc": [0.0, 90.0, 100.0], "test_retain_acc": [80.0, 20.0, 10.0]},  # collapsed
        {"test_forget_acc": [0.0, 30.0, math.nan], "test_retain_acc": [80.0, 78.0, math.nan]},  # diverged
        {"test_forget_acc": [0.0, 10.0, 40.0], "test_retain_acc": [80.0, 79.0, 75.0]},
    ]
    kept = keep_best(runs, (1.0, 0.1, 0.01), weights=(1, 9))  # retain weighs 9x, as on Fashion-MNIST
    assert kept["lr"] == [0.0, 0.1, 0.01]  # step 0: the first lr (a tie), reported as no lr
    assert kept["test_forget_acc"] == [0.0, 30.0, 40.0] and kept["test_retain_acc"] == [80.0, 78.0, 75.0]
    # forget and retain weighted by the sizes of the full test sets, not the subsets
    assert keep_best(runs[::2], (1.0, 0.01), weights=(9, 1))["test_forget_acc"][2] == 100.0


def test_the_grid_keeps_the_lr_its_rule_prefers(monkeypatch):
    """Runs scripted per lr: the grid reports, per step, the run with the best overall accuracy."""
    script = {  # lr -> (forget, retain) at steps 0, 5, 10
        1e-3: ([0.0, 10.0, 20.0], [90.0, 90.0, 90.0]),
        1e-2: ([0.0, 60.0, 100.0], [90.0, 92.0, 10.0]),
    }

    def run(self, attacker, shots, lr):
        f, r = script[lr]
        return {"test_forget_acc": f, "test_retain_acc": r}

    monkeypatch.setattr(rg._Grid, "run", run)
    cfg = RelearnGridConfig(shots=(5,), data=("mixed",), optimisers=("sgd",), scopes=("whole",), bn=("eval",),
                            budgets=(10,), checkpoints=(5,), sgd_lrs=(1e-3, 1e-2))  # fmt: skip
    (a,) = relearn_grid(original(), data(), cfg)["attackers"]
    assert a["lr"] == [0.0, 1e-2, 1e-3]
    assert a["test_forget_acc"] == [0.0, 60.0, 20.0] and a["test_retain_acc"] == [90.0, 92.0, 90.0]
    assert a["relearn_steps"] == 5 and a["relearned"]


def test_relearn_steps_counts_to_the_first_checkpoint_and_cap_plus_one_when_not_reached():
    steps = [0, 5, 10, 25]
    assert relearn_steps(steps, [0.0, 40.0, 50.0, 90.0], 50.0) == 10
    assert relearn_steps(steps, [80.0, 0.0, 0.0, 0.0], 50.0) == 0  # already there before any step
    assert relearn_steps(steps, [0.0, 10.0, math.nan, 49.9], 50.0) == 26  # not reached: cap + 1


def test_a_head_suppressed_class_comes_back_and_a_tiny_lr_does_not_bring_it():
    model, s = _suppressed(original()), data()
    common = dict(shots=(5,), data=("mixed",), optimisers=("sgd",), scopes=("head",), bn=("eval",),
                  budgets=(30,), checkpoints=(10, 30))  # fmt: skip
    strong = relearn_grid(model, s, RelearnGridConfig(**common, sgd_lrs=(0.1,)))["attackers"][0]
    assert strong["test_forget_acc"][0] == 0.0 and strong["relearned"] and strong["relearn_steps"] <= 30
    weak = relearn_grid(model, s, RelearnGridConfig(**common, sgd_lrs=(1e-9,)))
    assert (
        not weak["attackers"][0]["relearned"]
        and weak["attackers"][0]["relearn_steps"] == weak["not_reached"] == 31
    )


# ---- the gap ---------------------------------------------------------------------------------


def _grid(rows: dict[str, tuple[list[float], int]]) -> dict:
    """A hand-built grid result: attacker name -> (forget accuracy at steps 0, 25, 100, relearn steps)."""
    attackers = [{"name": n, "optimiser": "sgd", "test_forget_acc": f, "relearn_steps": k}
                 for n, (f, k) in rows.items()]  # fmt: skip
    return {"steps": [0, 25, 100], "budgets": [25, 100], "target": 50.0, "cap": 100, "attackers": attackers}


def test_gap_is_unlearned_minus_retrained_and_the_worst_is_the_largest():
    unlearned = _grid({"a": ([0, 30, 90], 50), "b": ([0, 60, 70], 25), "c": ([0, math.nan, 10], 101)})
    retrained = _grid({"a": ([0, 10, 60], 100), "b": ([0, 5, 75], 50), "c": ([0, 0, 0], 0)})
    gap = relearning_gap(unlearned, retrained)
    rows = {r["name"]: r for r in gap["attackers"]}
    assert rows["a"]["gap"] == [20, 30] and rows["b"]["gap"] == [55, -5]
    assert math.isnan(rows["c"]["gap"][0]) and rows["c"]["gap"][1] == 10
    assert gap["worst"] == [55, 30] and gap["worst_attacker"] == ["b", "a"]  # NaN never the worst
    assert rows["a"]["time_ratio"] == 0.5 and rows["b"]["time_ratio"] == 0.5
    assert rows["c"]["time_ratio"] is None  # the reference needs no step: no ratio
    assert gap["time_ratio"] == 0.5 and gap["time_ratio_attacker"] == "a"
    same_model = relearning_gap(retrained, retrained)
    assert same_model["worst"] == [0, 0] and same_model["time_ratio"] == 1.0
    with pytest.raises(ValueError, match="different attackers"):
        relearning_gap(unlearned, _grid({"a": ([0, 0, 0], 1)}))


# ---- the option to decline (spotter.evaluation.gap) -----------------------------------------


def _runs(rows: dict[str, tuple[list[float], list[float]]]) -> dict:
    """A recorded grid: attacker name -> (forget, retain test accuracy at steps 0, 25, 100)."""
    attackers = [{"name": n, "test_forget_acc": list(f), "test_retain_acc": list(r), "lr": [0.0, 0.1, 0.1],
                  "relearn_steps": relearn_steps([0, 25, 100], f, 50.0)} for n, (f, r) in rows.items()]  # fmt: skip
    return {"steps": [0, 25, 100], "budgets": [25, 100], "target": 50.0, "cap": 100, "attackers": attackers}


def test_a_collapsed_or_diverged_attack_is_declined_and_a_real_one_is_kept():
    grid = _runs({
        "collapse": ([0.0, 97.4, 96.2], [95.5, 60.4, 62.6]),  # shirts everywhere: overall 64 < 86
        "relearn": ([0.0, 70.9, 86.4], [95.5, 91.8, 88.5]),  # overall 89.7 and 88.3 >= 85.95
        "diverged": ([0.0, math.nan, math.nan], [95.5, math.nan, math.nan]),
    })  # fmt: skip
    out = {a["name"]: a for a in declined(grid, weights=(1000, 9000))["attackers"]}
    assert out["collapse"]["test_forget_acc"] == [0.0, 0.0, 0.0] and out["collapse"]["lr"] == [0.0, 0.0, 0.0]
    assert out["collapse"]["test_retain_acc"] == [95.5, 95.5, 95.5] and out["collapse"]["declined"] == [
        25,
        100,
    ]
    assert not out["collapse"]["relearned"] and out["collapse"]["relearn_steps"] == 101  # recounted
    assert out["relearn"]["test_forget_acc"] == [0.0, 70.9, 86.4] and out["relearn"]["declined"] == []
    assert out["relearn"]["relearn_steps"] == 25 and out["relearn"]["relearned"]
    assert out["diverged"]["test_forget_acc"] == [0.0, 0.0, 0.0]
    assert grid["attackers"][0]["test_forget_acc"] == [0.0, 97.4, 96.2]  # a copy: the record is untouched
    # weighed by the test sets' sizes: where forget images were most of the test set, the collapse pays
    assert declined(grid, weights=(9, 1))["attackers"][0]["declined"] == []


def test_the_decided_gap_declines_for_both_models_and_keeps_the_raw_gap_beside_it():
    unlearned = _runs({"collapse": ([0.0, 97.4, 96.2], [95.5, 60.4, 62.6]),
                       "relearn": ([0.0, 70.9, 86.4], [95.5, 91.8, 88.5])})  # fmt: skip
    retrained = _runs({"collapse": ([0.0, 0.0, 97.7], [95.5, 85.9, 47.2]),  # the reference collapses too
                       "relearn": ([0.0, 0.0, 0.0], [95.5, 87.5, 88.1])})  # fmt: skip
    gap = decided_gap(unlearned, retrained, weights=(1000, 9000))
    rows = {r["name"]: r for r in gap["attackers"]}
    assert rows["collapse"]["gap"] == [0.0, 0.0] and rows["relearn"]["gap"] == [70.9, 86.4]
    assert gap["worst"] == [70.9, 86.4] and gap["worst_attacker"] == ["relearn", "relearn"]
    # the grid's own rule counts the collapse as relearning: 97.4 at 25 steps, and at 100 steps the
    # reference's collapse (97.7) hides the unlearned model's real relearning (86.4) behind a -1.5 gap
    assert gap["raw_worst"] == [97.4, 86.4] and gap["raw_worst_attacker"] == ["collapse", "relearn"]
    assert relearning_gap(unlearned, retrained)["attackers"][0]["gap"] == [97.4, pytest.approx(-1.5)]
    assert balanced_weights(10, [0]) == (1, 9) and balanced_weights(10, [5, 7, 9]) == (3, 7)
    with pytest.raises(ValueError, match="0 < forget classes < num_classes"):
        balanced_weights(2, [0, 1])
    with pytest.raises(ValueError, match="weights must be positive"):
        declined(unlearned, weights=(0, 9))


# ---- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, named",
    [
        (dict(scopes=("head", "tail")), ["'tail'", "whole, head, head_reinit"]),
        (dict(optimisers=("rmsprop",)), ["'rmsprop'", "sgd, adam"]),
        (dict(bn=("frozen",)), ["'frozen'", "eval, train"]),
        (dict(data=("retain",)), ["'retain'", "mixed, forget"]),
        (dict(data=()), ["nothing", "mixed, forget"]),
        (dict(shots=(0,)), ["relearn_grid.shots", "0"]),
        (dict(budgets=(25, -1)), ["relearn_grid.budgets", "-1"]),
        (dict(adam_lrs=(0.0,)), ["relearn_grid.adam_lrs", "0.0"]),
        (dict(target=0.0), ["relearn_grid.target", "0.0"]),
        (dict(momentum=1.0), ["relearn_grid.momentum", "1.0"]),
        (dict(test_retain_limit=-5), ["relearn_grid.test_retain_limit", "-5"]),
    ],
)
def test_bad_settings_raise_naming_the_value(bad, named):
    with pytest.raises(ValueError) as err:
        RelearnGridConfig(**bad)
    assert all(n in str(err.value) for n in named), str(err.value)


def test_settings_reach_the_grid_through_audit_overrides():
    cfg = audit_config(
        ["relearn_grid.shots=5", "relearn_grid.scopes=head,whole", "relearn_grid.budgets=100,25"]
    )
    assert cfg.relearn_grid.shots == (5,) and cfg.relearn_grid.scopes == ("head", "whole")
    assert cfg.relearn_grid.budgets == (25, 100) and cfg.relearn_grid.optimisers == ("sgd", "adam")
    with pytest.raises(ValueError, match="'tail'"):
        audit_config(["relearn_grid.scopes=tail"])
    with pytest.raises(ValueError, match="valid keys"):
        audit_config(["relearn_grid.nope=1"])


def test_default_and_reduced_grids():
    full, reduced = RelearnGridConfig(), RelearnGridConfig.reduced()
    assert len(full.attackers()) == 48 and full.steps == (0, 5, 10, 25, 50, 100, 200, 400)
    assert full.lrs("sgd") == (1e-4, 1e-3, 1e-2) and full.lrs("adam") == (1e-5, 1e-4, 1e-3)
    assert [a.name for a in reduced.attackers()] == [
        "K=5 mixed sgd whole bn-eval", "K=5 mixed sgd whole bn-train",
        "K=5 mixed adam whole bn-eval", "K=5 mixed adam whole bn-train",
    ]  # fmt: skip
    assert reduced.steps == (0, 25, 100) and len(reduced.sgd_lrs) == len(reduced.adam_lrs) == 2


# ---- in the audit ----------------------------------------------------------------------------

# A tiny grid: two attackers, two lrs each, budgets 100 and 400 (the verdict's)
TINY_GRID = ["relearn_grid.shots=5", "relearn_grid.data=mixed", "relearn_grid.optimisers=sgd",
             "relearn_grid.scopes=whole,head", "relearn_grid.bn=eval", "relearn_grid.budgets=100,400",
             "relearn_grid.checkpoints=10", "relearn_grid.sgd_lrs=0.001,0.01"]  # fmt: skip


def test_audit_runs_the_grid_and_reports_gap_section_and_figure(reference, tmp_path):
    from spotter.audit.report import NEEDS_RETRAINED, markdown, verdict, write_report
    from spotter.audit.run import audit

    cfg = audit_config(["checks=relearn_grid", *TINY_GRID])
    unlearned = _suppressed(reference.original)
    result = audit(reference.original, unlearned, reference.splits, reference.retrained, cfg=cfg)
    res = result["results"]
    assert [a["name"] for a in res["unlearned"]["relearn_grid"]["attackers"]] == [
        "K=5 mixed sgd whole bn-eval", "K=5 mixed sgd head bn-eval"]  # fmt: skip
    assert res["retrained"]["relearn_gap"]["worst"] == [0.0, 0.0]
    assert set(res["original"]["relearn_gap"]) == set(res["unlearned"]["relearn_gap"])
    rows = {r["key"]: r for r in verdict(result)}
    for key in ("relearn_gap_100", "relearn_gap_400"):
        assert rows[key]["status"] in ("safe", "weaker") and rows[key]["retrained"] == 0.0
        assert rows[key]["unlearned"] == max(r["gap"][["relearn_gap_100", "relearn_gap_400"].index(key)]
                                             for r in res["unlearned"]["relearn_gap"]["attackers"])  # fmt: skip
    paths = write_report(result, tmp_path)
    text = paths["md"].read_text(encoding="utf-8")
    assert "## Relearning grid" in text and "| K=5 mixed sgd head bn-eval |" in text
    assert "![relearn_grid](relearn_grid.png)" in text and paths["relearn_grid"].stat().st_size > 0
    assert "relearning gap (100 steps)" in text and "≤ retrained + 10 pts" in text
    # without the retrained model there is no gap to judge, and the report says so
    alone = copy.deepcopy(result)
    alone["models"].remove("retrained")
    del alone["results"]["retrained"]
    for r in alone["results"].values():
        r.pop("relearn_gap")
    assert {r["key"]: r for r in verdict(alone)}["relearn_gap_100"]["verdict"] == NEEDS_RETRAINED
    assert "No retrained model was given, so there is no gap" in markdown(alone, [])
