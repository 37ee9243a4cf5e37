"""The audit's reports from a hand-built result: the verdict, audit.html standing alone, audit.md."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import torch

from spotter.audit import plots as audit_plots
from spotter.audit.report import (
    ATTACK_TOL,
    CHECKS,
    GAP_100_TOL,
    GAP_400_TOL,
    MIA_TOL,
    NEEDS_RETRAINED,
    SAFE,
    UNCERTIFIED,
    WEAKER,
    markdown,
    verdict,
    write_report,
)
from spotter.evaluation.relearn_grid import relearning_gap

CHROMIUM = Path("/usr/bin/chromium")
# what a reader of a forwarded report does not have
FOREIGN = ("method.md", "baselines.md", "§", "docs/", "README", "audit.json (")


def _grid(relearned: float) -> dict:
    """A relearning grid of two attackers (SGD, Adam) whose forget accuracy climbs to `relearned` at 400
    steps (half of it at 100), shaped as `spotter.evaluation.relearn_grid.relearn_grid` returns it."""
    attackers = [
        {
            "name": f"K=5 mixed {opt} whole bn-eval",
            "shots": 5,
            "data": "mixed",
            "optimiser": opt,
            "scope": "whole",
            "bn": "eval",
            "lrs": [0.001, 0.01],
            "test_forget_acc": [0.0, relearned / 2, relearned],
            "test_retain_acc": [88.0, 87.0, 86.0],
            "lr": [0.0, 0.01, 0.01],
            "relearn_steps": 400 if relearned >= 50 else 401,
            "relearned": relearned >= 50,
            "seconds": 1.0,
        }
        for opt in ("sgd", "adam")
    ]
    return {"steps": [0, 100, 400], "budgets": [100, 400], "target": 50.0, "cap": 400, "not_reached": 401,
            "test_forget_images": 1000, "test_retain_images": 2000, "attackers": attackers, "notes": [],
            "seconds": 2.0}  # fmt: skip


def _model(
    forget: float, pra: float, ou: float, mia: float, probe: float, draws: int, relearned: float
) -> dict:
    """One model's audit result with every check, shaped as `spotter.audit.run.audit` returns it."""
    return {
        "eval": {
            "forget_acc": forget, "test_forget_acc": forget, "retain_acc": 90.0, "test_retain_acc": 88.0,
            "ou_pgd": ou, "ou_pgd_away": ou, "ou_gaussian": ou, "pra_forget_acc": pra, "pra_alpha": 0.5,
            "dispersion": 0.3, "per_class_test_acc": [forget, 90.0, 86.0],
        },
        "near": {"classes": [{"class": 1, "confusion_share": 5.0, "runner_up_share": 60.0, "acc": 90.0,
                              "delta": 0.0}], "mean_delta": 0.0, "other_mean_delta": -0.5},
        "ou_sweep": {"eps": [0.01, 0.03], "pgd": [ou / 2, ou], "pgd_away": [ou / 2, ou], "gaussian": [ou, ou]},
        "pra": {
            "shots": [1, 5], "curve_shots": 5,
            "variants": {
                "cosine": {"forget_acc": [pra - 3, pra - 1], "alpha": [0.5, 0.5],
                           "curve": {"alphas": [0.5, 1.0], "test_forget_acc": [pra - 1, pra - 4], "best_alpha": 0.5}},
                "scaled": {"forget_acc": [pra - 2, pra], "alpha": [0.6, 0.6],
                           "curve": {"alphas": [0.5, 1.0], "test_forget_acc": [pra - 2, pra], "best_alpha": 1.0}},
            },
        },
        "finetune": {"steps": [0, 10], "test_forget_acc": [forget, pra], "test_retain_acc": [88.0, 87.0],
                     "lr": [0.0, 0.01]},
        "relearn_grid": _grid(relearned),
        "relearn_time": {"draws": draws, "reached": True, "losses": [3.0, 2.0, 1.0][: draws + 1],
                         "target_loss": 1.0},
        "statistics": {"images": [0, 100], "test_forget_acc": [forget, forget],
                       "test_retain_acc": [88.0, 87.5]},
        "probe": {"auroc": probe},
        "mia": {"mia_efficacy": mia, "mia_member_rate": 100 - mia, "entropy_member_rate": 50.0,
                "entropy_auroc": 0.5},
    }  # fmt: skip


def fake_result(
    retrained: bool = True, unlearned_pra: float = 12.0, unlearned_relearned: float = 44.0
) -> dict:
    models = {
        "original": _model(forget=95.0, pra=97.0, ou=0.30, mia=2.0, probe=0.99, draws=0, relearned=100.0),
        "retrained": _model(forget=0.0, pra=10.0, ou=0.02, mia=30.0, probe=0.70, draws=2, relearned=40.0),
        "unlearned": _model(forget=0.5, pra=unlearned_pra, ou=0.021, mia=28.0, probe=0.72, draws=2,
                            relearned=unlearned_relearned),
    }  # fmt: skip
    if not retrained:
        del models["retrained"]
    else:  # as `audit` adds it: every model's grid against the retrained model's
        for m in models.values():
            m["relearn_gap"] = relearning_gap(m["relearn_grid"], models["retrained"]["relearn_grid"])
    return {
        "forget_classes": [0],
        "num_classes": 3,
        "models": list(models),
        "near_classes": [{"class": 1, "confusion_share": 5.0, "runner_up_share": 60.0}],
        "config": {"eval": {"eps": 0.03, "alphas": [0.5, 1.0]}, "checks": ["pra", "mia"], "seed": 0,
                   "relearn": {"draw": 64, "cap": 4}},
        "notes": ["PRA shots above 50 (the smallest forget class) skipped"],
        "results": models,
        "seconds": 12.0,
    }  # fmt: skip


def _rows(result: dict) -> dict[str, dict]:
    return {r["key"]: r for r in verdict(result)}


def test_verdict_has_a_row_per_attack_and_pra_is_the_strongest_row():
    rows = _rows(fake_result())
    assert list(rows) == [c.key for c in CHECKS]
    for key in (
        "forget_acc",
        "pra_strongest",
        "ou_pgd",
        "mia_efficacy",
        "finetune_forget_acc",
        "relearn_gap_100",
        "relearn_gap_400",
        "probe_auroc",
    ):
        assert key in rows
    assert rows["pra_strongest"]["unlearned"] == 12.0  # the highest of every variant and K
    assert all(r["verdict"] == SAFE for r in rows.values()), [r["verdict"] for r in rows.values()]


def test_pra_far_above_retrained_is_weaker_and_within_tolerance_is_as_safe():
    assert _rows(fake_result(unlearned_pra=60.0))["pra_strongest"]["verdict"] == WEAKER
    just_inside = 10.0 + ATTACK_TOL.value - 0.1
    assert _rows(fake_result(unlearned_pra=just_inside))["pra_strongest"]["verdict"] == SAFE
    assert _rows(fake_result(unlearned_pra=0.0))["pra_strongest"]["verdict"] == SAFE  # below is safe too


def test_relearning_gap_is_judged_against_its_bars():
    """Retrained relearns to 20% at 100 steps and 40% at 400: the gap may reach 10 and 20 points."""
    assert (GAP_100_TOL.value, GAP_400_TOL.value) == (10.0, 20.0)
    rows = _rows(fake_result(unlearned_relearned=58.0))  # gaps 9 and 18
    assert rows["relearn_gap_100"]["unlearned"] == 9.0 and rows["relearn_gap_400"]["unlearned"] == 18.0
    assert rows["relearn_gap_100"]["retrained"] == 0.0 and rows["relearn_gap_400"]["original"] == 60.0
    assert rows["relearn_gap_100"]["verdict"] == SAFE and rows["relearn_gap_400"]["verdict"] == SAFE
    rows = _rows(fake_result(unlearned_relearned=70.0))  # gaps 15 and 30
    assert rows["relearn_gap_100"]["verdict"] == WEAKER and rows["relearn_gap_400"]["verdict"] == WEAKER
    result = fake_result()
    for m in result["models"]:
        result["results"][m]["relearn_gap"]["budgets"] = [25, 100]  # a grid without a 400-step budget
    assert _rows(result)["relearn_gap_400"]["verdict"].startswith(
        "not measured: the relearning grid has no 400"
    )


def test_mia_is_judged_on_both_sides_of_the_retrained_model():
    result = fake_result()
    for value, expected in (
        (30.0 + MIA_TOL.value + 1, WEAKER),
        (30.0 - MIA_TOL.value - 1, WEAKER),
        (31.0, SAFE),
    ):
        result["results"]["unlearned"]["mia"]["mia_efficacy"] = value
        assert _rows(result)["mia_efficacy"]["verdict"] == expected, value


def test_skipped_or_missing_checks_are_not_measured_with_the_reason():
    result = fake_result()
    for m in result["models"]:
        result["results"][m]["mia"] = {"skipped": "needs scikit-learn"}
        del result["results"][m]["probe"]
    rows = _rows(result)
    assert rows["mia_efficacy"]["verdict"] == "not measured: needs scikit-learn"
    assert rows["probe_auroc"]["verdict"].startswith("not measured: the probe check was not run")
    assert "Not measured: MIA (SVC), MIA (entropy AUROC), linear probe." in markdown(result, [])


def test_without_retrained_the_report_cannot_certify():
    result = fake_result(retrained=False)
    rows = _rows(result)
    assert rows["forget_acc"]["verdict"] == UNCERTIFIED  # 0.5 against the original's 95
    assert rows["mia_efficacy"]["verdict"] == NEEDS_RETRAINED
    assert rows["relearn_gap_100"]["verdict"] == NEEDS_RETRAINED  # a gap needs the retrained grid
    assert not any(r["verdict"] == SAFE for r in rows.values())
    text = markdown(result, [])
    assert "cannot certify that the unlearned model is as safe as retrained" in text


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("audit")
    sources = {
        "original": "/home/someone/secret/original.safetensors",
        "unlearned": "runs/x/spotter.safetensors",
    }
    return write_report(fake_result(), out, sources)


def test_html_stands_alone_with_the_verdict_first(written):
    page = written["html"].read_text(encoding="utf-8")
    assert page.index('id="verdict"') < page.index('<table class="verdict"') < page.index('id="summary"')
    assert page.index('id="summary"') < page.index('id="figures"') < page.index('id="settings-and-versions"')
    assert re.search(r'<td class="safe">as safe as retrained</td>', page)
    # every figure inline, nothing that points at a file, no script
    assert page.count('src="data:image/png;base64,') == len(audit_plots.PLOTS)
    assert re.findall(r'src="(?!data:image/png;base64,)', page) == []
    assert "href=" not in page and "<script" not in page
    for text in FOREIGN:
        assert text not in page, text
    assert "/home/someone" not in page and "original.safetensors" in page  # file names only
    assert re.search(rf"<td[^>]*>torch</td><td[^>]*>{re.escape(torch.__version__)}</td>", page)
    assert "relearn.cap" in page and "Figure 2." in page
    # the tolerances are stated
    assert f"{ATTACK_TOL.value:g} points" in page and "≤ retrained + 5 pts" in page


def test_markdown_carries_the_same_verdict_and_settings(written):
    text = written["md"].read_text(encoding="utf-8")
    assert text.index("## Verdict") < text.index(
        "| check | unlearned | retrained | original | tolerance | verdict |"
    )
    assert text.index("## Verdict") < text.index("## Summary") < text.index("## Settings and versions")
    assert f"| torch | {torch.__version__} |" in text
    assert "![pra_alpha](pra_alpha.png)" in text  # the plots written beside it
    for text_ in FOREIGN:
        assert text_ not in text, text_


def test_json_keeps_the_verdict_and_environment(written):
    import json

    data = json.loads(written["json"].read_text())
    assert [r["key"] for r in data["verdict"]] == [c.key for c in CHECKS]
    assert data["environment"]["torch"] == torch.__version__
    assert data["sources"]["original"].startswith("/home/someone")  # the JSON keeps the full paths


def test_html_without_plots_has_no_images(tmp_path, monkeypatch):
    monkeypatch.setattr(audit_plots, "_pyplot", lambda: None)
    result = copy.deepcopy(fake_result())
    paths = write_report(result, tmp_path)
    page = paths["html"].read_text(encoding="utf-8")
    assert "<img" not in page and 'id="figures"' not in page and 'id="verdict"' in page


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
)
def test_html_opens_in_headless_chromium(written, tmp_path):
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", written["html"].as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=90).stdout
    assert '<table class="verdict">' in dom and "Settings and versions" in dom
    assert dom.count("data:image/png;base64,") == len(audit_plots.PLOTS)
