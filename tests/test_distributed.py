"""Data-parallel training: two gloo processes on the CPU against one process on the same global batch.

The equivalence model has no BatchNorm: under DDP on CPUs (gloo) each rank normalises with its
own share's batch statistics (SyncBatchNorm runs on GPUs only), so a BN model differs slightly
from one process. bf16 autocast is off so the comparison is in float32.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import spotter.training.fit
import spotter.training.zoo
from spotter import methods
from spotter.data import TensorSet, load, make_splits
from spotter.methods import finetune
from spotter.models import Classifier, ModelSpec
from spotter.training import distributed
from spotter.training.fit import TrainConfig, fit

torch.set_num_threads(1)

WORLD = 2
# 99 samples, batch 33: 3 steps per epoch, shares of 17 and 16 (uneven on purpose)
CFG = TrainConfig(epochs=3, batch_size=33, lr=0.05, pad=1, amp="off", select="last")
SPEC = ModelSpec("tiny", 6, 1, 4, (0.5,), (0.25,))


def no_bn_model() -> Classifier:
    torch.manual_seed(0)
    features = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()
    )
    body = nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Classifier(body, nn.Linear(16, 6), (0.5,), (0.25,))


def data() -> tuple[TensorSet, TensorSet]:
    train, test, _ = load("synthetic")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    return train.subset(perm[:99]), test.subset(torch.arange(0, len(test), 4))


# retain of 96 samples in batches of 32: every batch splits evenly over two ranks
FINETUNE = finetune.Config(lr=0.05, epochs=2, batch_size=32)


def method_splits():
    train, test, info = load("synthetic")
    splits = make_splits(train, test, (0,), info.num_classes, val_size=48, seed=0)
    return dataclasses.replace(splits, retain=splits.retain.subset(torch.arange(96)))


def _stop_at_second_validation(real):
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash in epoch 2, after epoch 1 was saved")
        return real(*args, **kwargs)

    return wrapped


def _worker(rank: int, port: int, out: str) -> None:
    """One rank: a full run, an interrupted + resumed run, and a cached reference model."""
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    out_dir = Path(out)
    real_save = spotter.training.fit._save_state

    def recording_save(path, *args):
        with open(out_dir / f"writer-{rank}.txt", "a") as fh:
            fh.write(f"{Path(path).name}\n")
        real_save(path, *args)

    spotter.training.fit._save_state = recording_save
    train, val = data()
    with distributed.session("train") as group:
        assert group is not None and group.rank == rank and group.world_size == WORLD
        model, history = fit(no_bn_model(), train, val, CFG, state_path=out_dir / "full.safetensors")
        torch.save({"state": model.state_dict(), "history": history.epochs}, out_dir / f"full-{rank}.pt")

        real_val = spotter.training.fit._val_accuracy
        spotter.training.fit._val_accuracy = _stop_at_second_validation(real_val)
        try:
            fit(no_bn_model(), train, val, CFG, state_path=out_dir / "cut.safetensors")
        except KeyboardInterrupt:
            pass
        spotter.training.fit._val_accuracy = real_val
        torch.manual_seed(99)  # the resumed run must not depend on the fresh model's weights
        resumed, h = fit(no_bn_model(), train, val, CFG, state_path=out_dir / "cut.safetensors")
        torch.save({"state": resumed.state_dict(), "history": h.epochs}, out_dir / f"resumed-{rank}.pt")

        train_all, test, info = load("synthetic")
        splits = make_splits(train_all, test, (0,), info.num_classes, val_size=48, seed=0)
        cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, pad=1)
        ref, meta = spotter.training.zoo.reference_model(
            "retrained", "synthetic", splits, SPEC, cfg, out_dir / "cache"
        )
        torch.save(ref.state_dict(), out_dir / f"ref-{rank}.pt")

        tuned = methods.run("finetune", no_bn_model(), method_splits(), FINETUNE)
        torch.save(tuned.state_dict(), out_dir / f"finetune-{rank}.pt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(free_port(), str(out)), nprocs=WORLD, start_method="spawn")
    return out


def close(a: dict, b: dict, tol: float = 1e-5) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=tol, rtol=tol) for k in a)


def test_two_processes_match_one_on_the_same_global_batch(ranks):
    train, val = data()
    single, history = fit(no_bn_model(), train, val, CFG)
    r0, r1 = (torch.load(ranks / f"full-{r}.pt") for r in range(WORLD))
    assert close(r0["state"], single.state_dict())
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])  # ranks agree exactly
    assert not close(r0["state"], no_bn_model().state_dict())  # it trained
    for d, s in zip(r0["history"], history.epochs, strict=True):  # loss over all ranks, same val acc
        assert d["loss"] == pytest.approx(s["loss"], rel=1e-5) and d["val_acc"] == s["val_acc"]


def test_rank_zero_alone_writes_checkpoints(ranks):
    assert (ranks / "writer-0.txt").exists() and not (ranks / "writer-1.txt").exists()
    written = set((ranks / "writer-0.txt").read_text().split())
    assert {"full.safetensors", "cut.safetensors"} < written  # and the reference model's state
    models = list((ranks / "cache" / "models").glob("*.safetensors"))
    assert len(models) == 1 and ".state." not in models[0].name  # the epoch state was removed
    r0, r1 = (torch.load(ranks / f"ref-{r}.pt") for r in range(WORLD))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # rank 1 loaded what rank 0 wrote


def test_interrupted_distributed_run_resumes(ranks):
    full, resumed = torch.load(ranks / "full-0.pt"), torch.load(ranks / "resumed-0.pt")
    assert [e["epoch"] for e in resumed["history"]] == [1, 2, 3]
    assert all(torch.equal(full["state"][k], resumed["state"][k]) for k in full["state"])


def test_methods_train_data_parallel_through_the_shared_step(ranks):
    single = methods.run("finetune", no_bn_model(), method_splits(), FINETUNE)
    r0, r1 = (torch.load(ranks / f"finetune-{r}.pt") for r in range(WORLD))
    assert close(r0, single.state_dict()) and all(torch.equal(r0[k], r1[k]) for k in r0)
    assert not close(r0, no_bn_model().state_dict())


def test_share_covers_a_batch_evenly():
    shares = [distributed.Dist(r, 3, r).share(10) for r in range(3)]
    assert shares == [(0, 4), (4, 7), (7, 10)]
    assert distributed.current() is None and distributed.is_main()


def test_non_distributed_commands_refuse_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="does not run under torchrun"), distributed.session("eval"):
        pass
