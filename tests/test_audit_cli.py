"""`spotter audit` end to end, and loading checkpoints a user brings (ours or foreign)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import FORGET, TRAIN_CFG, VAL_SIZE

from spotter import cli
from spotter.audit import plots as audit_plots
from spotter.audit.context import audit_config
from spotter.audit.report import write_report
from spotter.audit.run import audit
from spotter.data import INFO
from spotter.evaluation import mia
from spotter.training.checkpoint import CheckpointError, save_model
from spotter.training.foreign import load_classifier
from spotter.training.inference import predict

pytest.importorskip("sklearn")

DATA = ["--dataset", "synthetic", "--val-size", str(VAL_SIZE), "--forget", ",".join(map(str, FORGET))]
# Small budgets: every check runs, in seconds.
QUICK = [
    "relearn.cap=4",
    "relearn.draw=64",
    "finetune.steps=5,20",
    "ou_eps=0.01,0.05",
    "pra_shots=1,5",
    "probe_samples=60",
    "statistics_images=40",
    # the relearning grid at a fraction of its size: two attackers, two lrs, the verdict's budgets
    "relearn_grid.shots=5",
    "relearn_grid.data=mixed",
    "relearn_grid.optimisers=adam",
    "relearn_grid.scopes=whole,head_reinit",
    "relearn_grid.bn=eval",
    "relearn_grid.budgets=100,400",
    "relearn_grid.checkpoints=10",
    "relearn_grid.adam_lrs=0.0001,0.001",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Evil:
    """A pickle payload: unpickling it would open (create) the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_foreign_pickle_with_code_is_refused_not_run(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"head.weight": torch.zeros(6, 32), "payload": Evil(str(marker))}, path)
    with pytest.raises(CheckpointError) as err:
        load_classifier(path, INFO["synthetic"], model="tiny")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"refusing {path}")
    assert "GLOBAL" in message  # names what the pickle would have called
    assert not marker.exists()
    code = cli.main(["audit", *DATA, "--original", str(path), "--unlearned", str(path), "--model", "tiny",
                     "--out", str(tmp_path / "out")])  # fmt: skip
    stderr = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in stderr and "refusing" in stderr
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: unsafe loading would have run it
    assert marker.exists()


def test_foreign_state_dict_loads_with_a_registered_model(tmp_path, original):
    path = tmp_path / "plain.pt"
    state = {k: v for k, v in original.state_dict().items() if k not in ("mean", "std")}
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # DDP-style
    model = load_classifier(path, INFO["synthetic"], model="tiny")
    x = torch.rand(4, 1, 16, 16)
    assert torch.allclose(predict(model, x), predict(original, x), atol=1e-6)
    with pytest.raises(ValueError, match="--model"):
        load_classifier(path, INFO["synthetic"])
    with pytest.raises(CheckpointError, match="does not fit"):
        load_classifier(path, INFO["synthetic"], model="tiny", width=8)


def test_foreign_state_dict_loads_through_a_factory(tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def small_cnn(num_classes=10):
                return nn.Sequential(
                    nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                    nn.Linear(4, num_classes),
                )
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import user_models

    torch.manual_seed(0)
    net = user_models.small_cnn(num_classes=6)
    torch.save(net.state_dict(), tmp_path / "user.pth")
    model = load_classifier(
        tmp_path / "user.pth", INFO["synthetic"], "user_models:small_cnn", input_norm="none"
    )
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
    assert model.num_classes == 6 and model.feature_dim == 4
    with pytest.raises(ValueError, match="no attribute"):
        load_classifier(tmp_path / "user.pth", INFO["synthetic"], "user_models:missing")


def test_audit_api_without_optional_packages(reference, monkeypatch, tmp_path):
    """No scikit-learn: MIA and probe are skipped and say so; no matplotlib: no plots."""

    def missing() -> None:
        raise ImportError("needs scikit-learn")

    monkeypatch.setattr(mia, "require_sklearn", missing)
    monkeypatch.setattr("spotter.evaluation.relearn.require_sklearn", missing)
    monkeypatch.setattr(audit_plots, "_pyplot", lambda: None)
    cfg = audit_config([*QUICK, "checks=pra,probe,mia"])
    result = audit(reference.original, reference.retrained, reference.splits, cfg=cfg)
    assert result["models"] == ["original", "unlearned"]
    assert result["results"]["unlearned"]["mia"] == {"skipped": "needs scikit-learn"}
    paths = write_report(result, tmp_path)
    assert set(paths) == {"json", "md", "html"}
    assert "needs scikit-learn" in paths["md"].read_text()


def test_spotter_audit_end_to_end(reference, tmp_path, capsys):
    """Checkpoints written by `spotter train` (the session's cached models) and a suppressed copy."""
    recipe = ["--model", "tiny", "--epochs", str(TRAIN_CFG.epochs), "--train-set",
              f"batch_size={TRAIN_CFG.batch_size}", f"lr={TRAIN_CFG.lr}", f"pad={TRAIN_CFG.pad}",
              "--cache-dir", reference.cache_dir]  # fmt: skip
    paths = {kind: tmp_path / f"{kind}.safetensors" for kind in ("original", "retrained")}
    for kind, path in paths.items():
        assert cli.main(["-q", "train", "--kind", kind, *DATA, *recipe, "--out", str(path)]) == 0
    # a head-suppressed copy stands in for an unlearning method
    save_model(tmp_path / "unlearned.safetensors", _suppressed(reference.original), reference.spec)
    out = tmp_path / "report"
    code = cli.main(["-q", "audit", *DATA, "--original", str(paths["original"]), "--retrained",
                     str(paths["retrained"]), "--unlearned", str(tmp_path / "unlearned.safetensors"),
                     "--device", "cpu", "--out", str(out), "--audit-set", *QUICK])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "MIA efficacy" in printed and "report in" in printed
    plots = ("ou_eps.png", "pra_alpha.png", "pra_shots.png", "finetune.png", "relearn_grid.png")
    for name in ("audit.md", "audit.json", "audit.html", *plots):
        assert (out / name).stat().st_size > 0, name
    result = json.loads((out / "audit.json").read_text())
    assert result["models"] == ["original", "retrained", "unlearned"]
    rows = {r["key"]: r for r in result["summary"]}
    assert rows["test_forget_acc"]["unlearned"] == 0.0
    assert rows["relearn_draws"]["original"] == 0
    # re-estimated statistics cannot undo a head that suppresses the class; the original keeps it
    assert rows["statistics_forget_acc"]["unlearned"] == 0.0
    assert rows["statistics_forget_acc"]["original"] > 50
    assert rows["relearn_gap_100"]["retrained"] == 0.0 and rows["relearn_gap_400"]["unlearned"] is not None
    efficacy, rate = rows["mia_efficacy"], rows["mia_member_rate"]
    assert all(efficacy[m] + rate[m] == pytest.approx(100) for m in result["models"])
    text = (out / "audit.md").read_text()
    assert "`better` says which direction is good" in text
    assert "![pra_alpha](pra_alpha.png)" in text
    assert "## BatchNorm statistics relearning" in text and "| 40 |" in text
    assert "## Relearning grid" in text and "| K=5 mixed adam head_reinit bn-eval |" in text


def _suppressed(model):
    out = copy.deepcopy(model)
    with torch.no_grad():
        for c in FORGET:
            out.head.weight[c] = 0.0
            out.head.bias[c] = -10.0
    return out


def test_core_imports_without_sklearn_or_matplotlib():
    """scikit-learn and matplotlib are optional: they are imported only inside the checks."""
    code = (
        "import sys; sys.modules['sklearn'] = None; sys.modules['matplotlib'] = None\n"
        "import spotter.audit.run, spotter.audit.report, spotter.audit.plots, spotter.evaluation.mia, spotter.evaluation.relearn, spotter.training.foreign, "
        "spotter.cli.commands\n"
        "from spotter.evaluation.mia import require_sklearn\n"
        "try:\n    require_sklearn()\nexcept ImportError as err:\n    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install scikit-learn" in out.stdout  # a dependency now: the message says how to reinstall it
