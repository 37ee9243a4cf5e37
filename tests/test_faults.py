"""Faults: runs killed mid-epoch resume to the same weights, writes survive kills, NaN losses stop
cleanly, an interrupted benchmark resumes without redoing or duplicating jobs, and the same command
twice gives bit-identical results on the CPU."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import spotter.bench.runner
from spotter.bench.runner import run_bench
from spotter.cli.main import main
from spotter.io import atomic_write
from spotter.report.tables import RESULTS, read_rows
from spotter.training.checkpoint import load_model, load_tensors, save_tensors

SMOKE = Path(__file__).resolve().parent.parent / "benchmarks" / "smoke.toml"
SYNTH = ["--dataset", "synthetic", "--val-size", "48", "--device", "cpu"]
# 1 872 training images, batch 32: 58 steps an epoch, about a second each epoch
RECIPE = [
    "--model",
    "tiny",
    "--width",
    "8",
    "--epochs",
    "3",
    "--train-set",
    "batch_size=32",
    "lr=0.05",
    "pad=1",
]

# Trains through the CLI and blocks at the second step of the epoch that follows this process's
# first checkpoint, printing "mid-epoch" so the test knows when to send its signal. A shell's
# background job starts with SIGINT ignored, and a child inherits that: Python's own handler is
# restored first, so the test also runs under `pytest &`.
CHILD = r"""
import signal, sys, time, torch
signal.signal(signal.SIGINT, signal.default_int_handler)
torch.set_num_threads(1)
import spotter.training.fit as T
saves, steps = [], []
real_save, real_augment = T._save_state, T.augment
def save(*args):
    real_save(*args)
    saves.append(1)
def augment(*args, **kwargs):
    if saves:
        steps.append(1)
        if len(steps) == 2:
            print("mid-epoch", flush=True)
            time.sleep(600)
    return real_augment(*args, **kwargs)
T._save_state, T.augment = save, augment
from spotter.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def train_argv(cache: Path, out: Path) -> list[str]:
    return ["train", *SYNTH, *RECIPE, "--cache-dir", str(cache), "--out", str(out)]


def interrupt(argv: list[str], sig: signal.Signals) -> subprocess.CompletedProcess:
    """Run `spotter argv` in a child and send it `sig` in the middle of an epoch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "mid-epoch", (line, proc.stderr.read() if proc.poll() is not None else "")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_tensors(path)[0]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def history(path: Path) -> list[tuple[float, float]]:
    return [(e["loss"], e["val_acc"]) for e in load_model(path)[2]["history"]]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("uninterrupted")
    assert main(train_argv(base / "cache", base / "model.safetensors")) == 0
    return base / "model.safetensors"


def test_killed_mid_epoch_resumes_to_the_same_weights(uninterrupted, tmp_path, caplog) -> None:
    """SIGINT in epoch 2, then SIGKILL in epoch 3, then a plain rerun: the weights of one run."""
    cache, out = tmp_path / "cache", tmp_path / "model.safetensors"
    argv = train_argv(cache, out)
    first = interrupt(argv, signal.SIGINT)
    assert first.returncode == 130, first.stderr
    assert "interrupted; finished epochs are checkpointed, rerun to resume" in first.stderr
    assert "Traceback" not in first.stderr
    (state,) = (cache / "models").glob("*.state.safetensors")
    assert load_tensors(state)[1]["epoch"] == 0  # epoch 1 finished, epoch 2 was cut
    second = interrupt(argv, signal.SIGKILL)
    assert second.returncode == -signal.SIGKILL
    assert "resuming from epoch 2" in second.stderr
    assert load_tensors(state)[1]["epoch"] == 1 and not out.exists()
    caplog.set_level(logging.INFO, logger="spotter")
    assert main(argv) == 0
    assert "resuming from epoch 3" in caplog.text
    assert same(tensors(out), tensors(uninterrupted))
    assert history(out) == history(uninterrupted)
    assert not state.exists()  # the finished model replaced its training state


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kill_during_a_write_leaves_the_previous_file(tmp_path) -> None:
    path = tmp_path / "model.safetensors"
    save_tensors(path, {"w": torch.arange(4.0)}, {"version": 1})
    before = path.read_bytes()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: write half of the new file, report, then hang until killed
        try:

            def half(tmp: str) -> None:
                with open(tmp, "wb") as fh:
                    fh.write(b"x" * 4096)
                    fh.flush()
                os.write(write_end, b"1")
                time.sleep(600)

            atomic_write(path, half)
        finally:
            os._exit(1)
    os.close(write_end)
    assert os.read(read_end, 1) == b"1"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert path.read_bytes() == before
    assert load_tensors(path)[1] == {"version": 1}
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "model.safetensors"]
    assert all(name.startswith(".model.safetensors.") and name.endswith(".tmp") for name in leftovers)


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["train", *SYNTH, *RECIPE, "lr=1e30"], ("loss became", "epoch 1, step 2", "nothing was saved")),
        (
            ["unlearn", *SYNTH, "--set", "lr=1e30", "epochs=1", "batch_size=16"],
            ("spotter loss became", "optimiser step 2", "nothing was saved"),
        ),
    ],
    ids=["train", "unlearn"],
)
def test_nan_loss_stops_with_epoch_and_step(argv, needles, tmp_path, capsys) -> None:
    if argv[0] == "unlearn":
        from spotter.models import ModelSpec, build_model
        from spotter.training.checkpoint import save_model

        spec = ModelSpec("tiny", 6, 1, 8, (0.5,), (0.25,))
        save_model(tmp_path / "m.safetensors", build_model(spec), spec)
        argv = [*argv, "--checkpoint", str(tmp_path / "m.safetensors")]
    else:
        argv = [*argv, "--cache-dir", str(tmp_path)]
    code = main([*argv, "--out", str(tmp_path / "out.safetensors")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "out.safetensors").exists()


class FakeContext:
    def __init__(self, *args) -> None:
        pass


@pytest.mark.parametrize("cut", range(8))
def test_benchmark_interrupted_at_any_job_resumes(cut: int, tmp_path, monkeypatch) -> None:
    """Ctrl-C while job `cut` runs (plus a row cut mid-line): the rerun runs exactly the rest."""
    ran: list[str] = []

    def run_job(job, ctx, out):
        if len(ran) == cut and stop:
            raise KeyboardInterrupt
        ran.append(job["id"])
        return {"job": job["id"], "wall_s": 0.0}

    monkeypatch.setattr(spotter.bench.runner, "Context", FakeContext)
    monkeypatch.setattr(spotter.bench.runner, "run_job", run_job)
    monkeypatch.setattr("spotter.bench.runner.git_revision", lambda: "test")
    stop = True
    with pytest.raises(KeyboardInterrupt):
        run_bench(SMOKE, tmp_path)
    done = list(ran)
    assert len(done) == cut
    with open(tmp_path / RESULTS, "a") as fh:
        fh.write('{"job": "cut-by-a-kill", "wall')  # a row whose write was cut off
    stop, ran[:] = False, []
    result = run_bench(SMOKE, tmp_path)
    assert result.skipped == cut and result.ran == 8 - cut and not result.failed
    assert not set(ran) & set(done)  # nothing finished was redone
    ids = [r["job"] for r in read_rows(tmp_path / RESULTS)]
    assert len(ids) == len(set(ids)) == 8  # every job once; the cut line is skipped, not duplicated
    again = run_bench(SMOKE, tmp_path)
    assert again.skipped == 8 and again.ran == 0


def test_same_command_twice_is_bit_identical_on_cpu(uninterrupted, tmp_path) -> None:
    """train, unlearn and eval each run twice with the same seed give the same bits."""
    other = tmp_path / "trained-again.safetensors"
    assert main(train_argv(tmp_path / "cache", other)) == 0
    assert same(tensors(other), tensors(uninterrupted)) and history(other) == history(uninterrupted)
    outs = []
    for i in range(2):
        unlearned = tmp_path / f"unlearned-{i}.safetensors"
        argv = ["unlearn", *SYNTH, "--checkpoint", str(uninterrupted), "--out", str(unlearned)]
        assert main([*argv, "--set", "epochs=2", "--seed", "3"]) == 0
        rows = tmp_path / f"rows-{i}.json"
        argv = ["eval", *SYNTH, str(unlearned), "--original", str(uninterrupted), "--out", str(rows)]
        assert main([*argv, "--eval-set", "alphas=0.5,1.0"]) == 0
        (row,) = json.loads(rows.read_text())
        outs.append(
            (tensors(unlearned), {k: v for k, v in row.items() if k not in ("model", "checkpoint", "time_s")})
        )
    assert same(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1] and "ou_pgd" in outs[0][1]
