"""Training loop, checkpoints and the model cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import same_state, state_copy

import spotter.training.fit
import spotter.training.zoo
from spotter.data import TensorSet
from spotter.io import atomic_write
from spotter.models import ModelSpec, build_model
from spotter.training.checkpoint import (
    CheckpointError,
    load_foreign_state,
    load_model,
    load_tensors,
    save_model,
    save_tensors,
)
from spotter.training.fit import TrainConfig, TrainingDiverged, fit, lr_at
from spotter.training.inference import predict
from spotter.training.zoo import reference_model

SMALL = TrainConfig(epochs=3, batch_size=32, lr=0.05, pad=1)
SPEC = ModelSpec("tiny", 6, 1, 4, (0.5,), (0.25,))


@pytest.fixture(scope="module")
def small(synthetic) -> tuple[TensorSet, TensorSet]:
    train = synthetic[0]
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(train), generator=g)
    return train.subset(perm[:64]), train.subset(perm[64:96])


def fresh(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(SPEC)


def test_fit_is_deterministic(small):
    train, val = small
    a, ha = fit(fresh(), train, val, SMALL)
    b, hb = fit(fresh(), train, val, SMALL)
    assert same_state(state_copy(a), state_copy(b))
    assert [e["loss"] for e in ha.epochs] == [e["loss"] for e in hb.epochs]
    assert len(ha.epochs) == 3 and 1 <= ha.best_epoch <= 3
    c, _ = fit(fresh(), train, val, TrainConfig(epochs=3, batch_size=32, lr=0.05, pad=1, seed=1))
    assert not same_state(state_copy(a), state_copy(c))


def test_interrupted_run_resumes_to_identical_weights(small, tmp_path, monkeypatch):
    train, val = small
    reference, _ = fit(fresh(), train, val, SMALL, state_path=tmp_path / "full.safetensors")

    real_save = spotter.training.fit._save_state

    def save_then_crash(path, model, opt, best, history, epoch, fp):
        real_save(path, model, opt, best, history, epoch, fp)
        if epoch == 1:
            raise KeyboardInterrupt("simulated crash after epoch 2")

    state = tmp_path / "run.safetensors"
    monkeypatch.setattr(spotter.training.fit, "_save_state", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        fit(fresh(), train, val, SMALL, state_path=state)
    assert state.exists()
    monkeypatch.setattr(spotter.training.fit, "_save_state", real_save)

    epochs_run = []
    real_batches = spotter.training.fit.batches

    def counting_batches(*args, **kwargs):
        epochs_run.append(1)
        return real_batches(*args, **kwargs)

    monkeypatch.setattr(spotter.training.fit, "batches", counting_batches)
    resumed, history = fit(fresh(seed=99), train, val, SMALL, state_path=state)
    assert len(epochs_run) == 1  # only the third epoch ran again
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3]
    assert same_state(state_copy(resumed), state_copy(reference))


def test_state_of_another_config_is_ignored(small, tmp_path):
    train, val = small
    state = tmp_path / "s.safetensors"
    fit(fresh(), train, val, TrainConfig(epochs=1, batch_size=32, lr=0.05, pad=1), state_path=state)
    other = TrainConfig(epochs=1, batch_size=32, lr=0.01, pad=1)
    a, h = fit(fresh(), train, val, other, state_path=state)
    b, _ = fit(fresh(), train, val, other)
    assert len(h.epochs) == 1 and same_state(state_copy(a), state_copy(b))


class _NaNAfter(torch.nn.Module):
    """A classifier whose training forward returns NaN from its `n`-th call on."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.inner, self.n, self.calls = fresh(), n, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.n:
                return out * float("nan")
        return out


def test_nan_loss_raises_naming_epoch_and_step(small, tmp_path):
    train, val = small  # 64 samples, batch 32: two steps per epoch
    state = tmp_path / "state.safetensors"
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 2") as err:
        fit(_NaNAfter(4), train, val, SMALL, state_path=state)
    assert "nan" in str(err.value) and str(state) in str(err.value)
    _, meta = load_tensors(state)
    assert meta["epoch"] == 0  # the last good epoch (the first) is kept


def test_config_validation():
    with pytest.raises(ValueError, match="'weekly'"):
        TrainConfig(schedule="weekly")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)


def test_onecycle_schedule_shape():
    cfg = TrainConfig(lr=1.0, warmup=0.2)
    lrs = [lr_at(cfg, s, 100, 0) for s in range(100)]
    assert lrs[19] == pytest.approx(1.0) and max(lrs) == pytest.approx(1.0)
    assert lrs[:20] == sorted(lrs[:20]) and lrs[20:] == sorted(lrs[20:], reverse=True)
    assert lrs[-1] < 0.02
    multi = TrainConfig(lr=1.0, schedule="multistep", milestones=(2, 4), gamma=0.5)
    assert [lr_at(multi, 0, 10, e) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]


# --- checkpoints -------------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path):
    model = fresh(3).eval()
    path = tmp_path / "m.safetensors"
    save_model(path, model, SPEC, {"note": "hello", "history": [1, 2]})
    loaded, spec, meta = load_model(path, expect=SPEC)
    assert spec == SPEC and meta["note"] == "hello" and meta["history"] == [1, 2]
    assert same_state(state_copy(loaded), state_copy(model))
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))


@pytest.mark.parametrize(
    "other, word",
    [
        (ModelSpec("tiny", 6, 1, 8, (0.5,), (0.25,)), "width"),
        (ModelSpec("tiny", 10, 1, 4, (0.5,), (0.25,)), "num_classes"),
        (ModelSpec("resnet18", 6, 1, 4, (0.5,), (0.25,)), "name"),
    ],
)
def test_checkpoint_of_another_architecture(tmp_path, other, word):
    path = tmp_path / "m.safetensors"
    save_model(path, fresh(), SPEC)
    with pytest.raises(CheckpointError) as err:
        load_model(path, expect=other)
    message = str(err.value)
    assert "\n" not in message and word in message and str(path) in message


def test_unreadable_and_foreign_checkpoints(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError):
        load_model(junk)
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="spotter_format"):
        load_model(foreign)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.safetensors")
    save_tensors(tmp_path / "nometa.safetensors", {"w": torch.zeros(2)}, {"other": 1})
    with pytest.raises(CheckpointError, match="'model'"):
        load_model(tmp_path / "nometa.safetensors")


class _Payload:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_foreign_pt_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing"):
        load_foreign_state(path)
    assert not marker.exists()
    torch.save({"state_dict": {"module.w": torch.ones(2)}}, tmp_path / "ok.pt")
    assert list(load_foreign_state(tmp_path / "ok.pt")) == ["w"]


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")

    def broken(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write("half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temp file left
    atomic_write(path, lambda tmp: Path(tmp).write_text("new"))
    assert path.read_text() == "new"


# --- the model cache ---------------------------------------------------------------------------------


def test_reference_model_uses_the_cache(reference, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("fit called although the model is cached")

    monkeypatch.setattr(spotter.training.zoo, "fit", no_training)
    for kind, trained in (("original", reference.original), ("retrained", reference.retrained)):
        model, meta = reference_model(
            kind, "synthetic", reference.splits, reference.spec, reference.cfg, reference.cache_dir
        )
        assert meta["cached"] is True and meta["kind"] == kind
        assert same_state(state_copy(model), state_copy(trained))
    # anything in the key changes the entry: another recipe or other forget classes retrain
    other = TrainConfig(**{**reference.cfg.key(), "seed": 1})
    with pytest.raises(AssertionError, match="fit called"):
        reference_model("original", "synthetic", reference.splits, reference.spec, other, reference.cache_dir)
    splits = reference.splits
    from dataclasses import replace

    moved = replace(splits, forget_classes=(1,))
    with pytest.raises(AssertionError, match="fit called"):
        reference_model("retrained", "synthetic", moved, reference.spec, reference.cfg, reference.cache_dir)


def test_original_model_does_not_depend_on_the_forget_classes(reference, synthetic, monkeypatch):
    """One original serves every forget-class choice: same training data, same order, same cache entry."""
    from spotter.data import make_splits

    train, test, info = synthetic
    other = make_splits(
        train, test, (2, 3), info.num_classes, val_size=len(reference.splits.val), shots=5, seed=0
    )
    assert torch.equal(other.full_train().x, reference.splits.full_train().x)
    assert torch.equal(other.full_train().y, reference.splits.full_train().y)

    def no_training(*args, **kwargs):
        raise AssertionError("fit called although the original is cached")

    monkeypatch.setattr(spotter.training.zoo, "fit", no_training)
    model, meta = reference_model(
        "original", "synthetic", other, reference.spec, reference.cfg, reference.cache_dir
    )
    assert meta["cached"] is True
    assert same_state(state_copy(model), state_copy(reference.original))


def test_retain_free_splits_hold_no_retain_images(reference):
    free = reference.splits.without_retain()
    assert free.retain is None and free.train is None
    with pytest.raises(ValueError, match="retain"):
        free.full_train()


def test_reference_models_behave(reference):
    s = reference.splits
    accs, retain = {}, {}
    for name, model in (("original", reference.original), ("retrained", reference.retrained)):
        logits = predict(model, s.test_forget.x)
        accs[name] = float((logits.argmax(1) == s.test_forget.y).float().mean())
        retain[name] = float((predict(model, s.test_retain.x).argmax(1) == s.test_retain.y).float().mean())
    assert accs["original"] >= 0.9 and accs["retrained"] == 0.0
    assert retain["original"] >= 0.9 and retain["retrained"] >= 0.9


def test_reference_model_validates(reference):
    with pytest.raises(ValueError, match="'teacher'"):
        reference_model(
            "teacher", "synthetic", reference.splits, reference.spec, reference.cfg, "/nonexistent"
        )
    with pytest.raises(ValueError, match="retain"):
        reference_model(
            "original",
            "synthetic",
            reference.splits.without_retain(),
            reference.spec,
            reference.cfg,
            "/nonexistent",
        )
