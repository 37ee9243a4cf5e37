"""The catalogue of bad inputs: every one ends in ONE line naming the bad value and what is valid.

CLI cases run `spotter ...` in-process and assert a non-zero exit, a single stderr line and no
traceback; API cases assert a ValueError (or FileNotFoundError) whose message is one line. Every
case fails before any training, so the whole catalogue runs in a few seconds on tiny files written
here (IDX, CIFAR pickles, image folders, checkpoints), never on downloads.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_formats import idx_bytes, write_cifar10, write_fashion

from spotter import methods
from spotter.cli.main import main
from spotter.data import TensorSet, load, make_splits
from spotter.models import ModelSpec, build_model
from spotter.training.checkpoint import save_model, save_tensors

SYNTH = ["--dataset", "synthetic", "--val-size", "48"]
SPEC = ModelSpec("tiny", 6, 1, 16, (0.5,), (0.25,))  # a synthetic-dataset model (6 classes, grey)


EXTS = ("safetensors", "pt", "pth", "bin")


class RunsCode:
    """A pickle payload: unpickling it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@dataclass
class Files:
    root: Path

    def __getattr__(self, name: str) -> Path:  # f.evil_pth -> root/evil.pth, f.fm_gz -> root/fm-gz
        stem, _, ext = name.rpartition("_")
        return self.root / (f"{stem}.{ext}" if ext in EXTS else name.replace("_", "-"))


@pytest.fixture(scope="module")
def f(tmp_path_factory) -> Files:
    """Every file the catalogue needs, written once."""
    root = tmp_path_factory.mktemp("bad")
    f = Files(root)
    save_model(f.ckpt_safetensors, build_model(SPEC), SPEC)  # a valid (untrained) synthetic checkpoint
    for name, spec in (
        ("wide", ModelSpec("tiny", 6, 1, 32, (0.5,), (0.25,))),
        ("ten", ModelSpec("tiny", 10, 1, 16, (0.5,), (0.25,))),
        ("rgb", ModelSpec("tiny", 6, 3, 16, (0.5,) * 3, (0.25,) * 3)),
    ):
        save_model(root / f"{name}.safetensors", build_model(spec), spec)
    f.junk_safetensors.write_bytes(b"certainly not a safetensors file")
    save_file({"w": torch.zeros(2)}, str(f.foreign_safetensors))  # safetensors without our metadata
    save_file(
        {"w": torch.zeros(1)},
        str(f.badjson_safetensors),
        metadata={"spotter_format": "spotter-1", "meta": "{oops"},
    )
    for name, model in (
        ("strwidth", {**SPEC.to_dict(), "width": "wide"}),
        ("vgg", {**SPEC.to_dict(), "name": "vgg"}),
    ):
        save_tensors(root / f"{name}.safetensors", {"w": torch.zeros(1)}, {"model": model})
    state = build_model(SPEC).state_dict()
    state["head.weight"] = torch.full_like(state["head.weight"], float("nan"))
    save_tensors(f.nan_safetensors, state, {"model": SPEC.to_dict()})
    (root / "folder.safetensors").mkdir()
    (root / "pwned").unlink(missing_ok=True)
    f.evil_pth.write_bytes(pickle.dumps({"head.weight": RunsCode(root / "pwned")}, protocol=2))  # raw pickle
    torch.save({"w": torch.zeros(3)}, f.plain_pt)
    f.a_file.write_text("")
    f.binary.write_bytes(b"\xff\xfe\x00 not text")
    # datasets: one broken copy of each format
    arrays = np.zeros((7, 28, 28), np.uint8)
    write_fashion(f.fm_magic, gz=False)
    (f.fm_magic / "train-images-idx3-ubyte").write_bytes(idx_bytes(arrays, magic=0x08030000))
    write_fashion(f.fm_short, gz=False)
    short = f.fm_short / "t10k-images-idx3-ubyte"
    short.write_bytes(short.read_bytes()[:-5])
    write_fashion(f.fm_gz, gz=True)
    cut = f.fm_gz / "train-labels-idx1-ubyte.gz"
    cut.write_bytes(cut.read_bytes()[:20])
    write_fashion(f.fm_part, gz=True)
    (f.fm_part / "t10k-labels-idx1-ubyte.gz").unlink()
    f.empty.mkdir()
    batches = {}
    for case in ("nokey", "cut", "labels", "code"):
        write_cifar10(root / f"c-{case}")
        batches[case] = root / f"c-{case}" / "cifar-10-batches-py" / "data_batch_2"
    blob = pickle.loads(batches["nokey"].read_bytes())
    del blob[b"labels"]
    batches["nokey"].write_bytes(pickle.dumps(blob, protocol=2))
    batches["cut"].write_bytes(batches["cut"].read_bytes()[:60])
    blob = pickle.loads(batches["labels"].read_bytes())
    blob[b"labels"] = [0, 1, 42]
    batches["labels"].write_bytes(pickle.dumps(blob, protocol=2))
    batches["code"].write_bytes(pickle.dumps({b"data": RunsCode(root / "pwned"), b"labels": [0]}, protocol=2))
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (f.goodimages / split / cls).mkdir(parents=True)
            Image.new("L", (8, 8), 40 if cls == "cat" else 200).save(f.goodimages / split / cls / "a.png")
        (f.noimages / split / "cat").mkdir(parents=True)
        (f.badimage / split / "cat").mkdir(parents=True)
        (f.badimage / split / "cat" / "a.png").write_bytes(b"\x89PNG but not really")
    return f


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No cache or dataset folder of the machine's is touched, whatever a case does."""
    monkeypatch.setenv("SPOTTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPOTTER_DATA", raising=False)


def unlearn(f: Files, *extra: str, out: Path | None = None) -> list[str]:
    out = out or f.root / "out.safetensors"
    return ["unlearn", "--checkpoint", str(f.ckpt_safetensors), "--out", str(out), "--device", "cpu", *extra]


def evaluate(f: Files, original: Path, *extra: str) -> list[str]:
    return ["eval", *SYNTH, str(f.ckpt_safetensors), "--original", str(original), "--device", "cpu", *extra]


def audit(f: Files, original: Path, *extra: str) -> list[str]:
    return ["audit", *SYNTH, "--original", str(original), "--unlearned", str(f.ckpt_safetensors), "--out", str(f.root / "audit"), *extra]  # fmt: skip


def data(name: str, folder: Path) -> list[str]:
    return ["--dataset", name, "--data-dir", str(folder), "--val-size", "1", "--shots", "1"]


def spec(f: Files, name: str, body: str) -> list[str]:
    path = f.root / f"{name}.toml"
    path.write_text('name = "bad"\ndataset = "synthetic"\nmodel = "tiny"\n' + body)
    return ["bench", str(path), "--out", str(f.root / "bench")]


# id -> f -> (argv, substrings the one error line must hold)
CLI: dict[str, Callable[[Files], tuple[list[str], tuple[str, ...]]]] = {
    # unknown names
    "unknown dataset": lambda f: (["demo", "--dataset", "mnist", "--out", str(f.root / "d")], ("'mnist'", "synthetic")),
    "unknown model": lambda f: (["demo", *SYNTH, "--model", "vgg", "--out", str(f.root / "d")], ("'vgg'", "tiny")),
    "unknown method": lambda f: (unlearn(f, *SYNTH, "--method", "forgetful"), ("'forgetful'", "spotter")),
    "unknown demo method": lambda f: (["demo", *SYNTH, "--method", "spotter,forgetful", "--out", str(f.root / "d")], ("'forgetful'", "spotter_auto")),
    "unknown demo preset": lambda f: (["demo", *SYNTH, "--method", "spotter:nope", "--out", str(f.root / "d")], ("'nope'", "authors")),
    "unknown demo setting": lambda f: (["demo", *SYNTH, "--set", "speed=3", "--out", str(f.root / "d")], ("'speed'", "max_epochs")),
    "unknown preset": lambda f: (unlearn(f, *SYNTH, "--preset", "nope"), ("'nope'", "authors")),
    "unknown protocol": lambda f: (unlearn(f, *SYNTH, "--protocol", "half"), ("'half'", "retain-free")),
    "unknown --kind": lambda f: (["train", *SYNTH, "--kind", "teacher", "--out", str(f.root / "t")], ("'teacher'", "retrained")),
    "unknown list": lambda f: (["list", "things"], ("'things'", "methods")),
    "unknown surrogate": lambda f: (unlearn(f, *SYNTH, "--surrogate", "noise"), ("'noise'", "cifar10")),
    "retain reader under retain-free": lambda f: (
        unlearn(f, *SYNTH, "--method", "finetune", "--protocol", "retain-free"), ("'finetune'", "--protocol full"),
    ),
    # forget classes and K
    "forget out of range": lambda f: (unlearn(f, *SYNTH, "--forget", "9"), ("forget class 9", "0..5")),
    "forget negative": lambda f: (unlearn(f, *SYNTH, "--forget", "-1"), ("forget class -1", "0..5")),
    "forget duplicated": lambda f: (unlearn(f, *SYNTH, "--forget", "1,1"), ("[1, 1]", "duplicates", "each class once")),
    "forget every class": lambda f: (unlearn(f, *SYNTH, "--forget", "0,1,2,3,4,5"), ("cover all 6", "keep one")),
    "forget empty": lambda f: (unlearn(f, *SYNTH, "--forget", ","), ("empty", "at least one class id")),
    "forget not a number": lambda f: (unlearn(f, *SYNTH, "--forget", "one"), ("'one'", "e.g. 0 or 3,5")),
    "K larger than the forget set": lambda f: (unlearn(f, *SYNTH, "--shots", "1000"), ("shots=1000", "samples of forget class 0")),
    "K zero": lambda f: (unlearn(f, *SYNTH, "--shots", "0"), ("got 0", ">= 1")),
    # dataset files
    "data folder without the dataset": lambda f: (unlearn(f, *data("fashion-mnist", f.empty)), (str(f.empty), "apt-get install")),
    "IDX wrong magic": lambda f: (unlearn(f, *data("fashion-mnist", f.fm_magic)), ("train-images-idx3-ubyte", "08030000", "00000803")),
    "IDX truncated": lambda f: (unlearn(f, *data("fashion-mnist", f.fm_short)), ("t10k-images-idx3-ubyte", "truncated")),
    "IDX gzip cut short": lambda f: (unlearn(f, *data("fashion-mnist", f.fm_gz)), ("train-labels-idx1-ubyte.gz", "cannot read")),
    "IDX file missing": lambda f: (unlearn(f, *data("fashion-mnist", f.fm_part)), ("t10k-labels-idx1-ubyte", "missing")),
    "CIFAR pickle missing a key": lambda f: (unlearn(f, *data("cifar10", f.c_nokey)), ("data_batch_2", "'labels' missing", "expected")),
    "CIFAR pickle truncated": lambda f: (unlearn(f, *data("cifar10", f.c_cut)), ("data_batch_2", "not a CIFAR python batch")),
    "CIFAR labels out of range": lambda f: (unlearn(f, *data("cifar10", f.c_labels)), ("data_batch_2", "0..42", "0..9")),
    "CIFAR pickle running code": lambda f: (unlearn(f, *data("cifar10", f.c_code)), ("data_batch_2", "refusing", "posix.system")),
    "image folder without images": lambda f: (unlearn(f, *data("imagefolder", f.noimages)), ("no images found", ".png")),
    "image folder with a corrupt image": lambda f: (unlearn(f, *data("imagefolder", f.badimage)), ("a.png", "not a readable image")),
    # checkpoints
    "checkpoint missing": lambda f: (evaluate(f, f.root / "nope.safetensors"), ("nope.safetensors", "does not exist")),
    "checkpoint is a folder": lambda f: (evaluate(f, f.root / "folder.safetensors"), ("folder.safetensors", "is a folder")),
    "checkpoint not safetensors": lambda f: (evaluate(f, f.junk_safetensors), (str(f.junk_safetensors), "not a readable safetensors file")),
    "checkpoint of another width": lambda f: (evaluate(f, f.wide_safetensors), (str(f.ckpt_safetensors), "width 16", "width 32")),
    "checkpoint of another class count": lambda f: (evaluate(f, f.ten_safetensors), ("10 classes", "num_classes")),
    "checkpoint of another channel count": lambda f: (audit(f, f.rgb_safetensors), ("3-channel", "synthetic has 1")),
    "safetensors without spotter metadata": lambda f: (evaluate(f, f.foreign_safetensors), ("spotter_format=None", "'spotter-1'")),
    "safetensors metadata not JSON": lambda f: (evaluate(f, f.badjson_safetensors), (str(f.badjson_safetensors), "not valid JSON")),
    "safetensors metadata of wrong type": lambda f: (evaluate(f, f.strwidth_safetensors), ("width='wide'", "positive integer")),
    "safetensors metadata naming no model": lambda f: (evaluate(f, f.vgg_safetensors), ("'vgg'", "resnet18")),
    "checkpoint with NaN weights": lambda f: (evaluate(f, f.nan_safetensors), ("head.weight", "NaN")),
    "foreign pickle running code": lambda f: (audit(f, f.evil_pth, "--model", "tiny"), ("refusing", "evil.pth", "nothing in it was run")),
    "foreign state dict without --model": lambda f: (audit(f, f.plain_pt), ("not a spotter checkpoint", "--model NAME")),
    "foreign state dict of another model": lambda f: (audit(f, f.plain_pt, "--model", "tiny"), ("does not fit", "unexpected ['w']")),
    "factory that fails": lambda f: (audit(f, f.plain_pt, "--model", "os:system"), ("'os:system'", "calling the factory failed")),
    "factory that cannot be imported": lambda f: (audit(f, f.plain_pt, "--model", "nosuch.mod:f"), ("nosuch.mod", "cannot import")),
    # overrides
    "--set unknown key": lambda f: (unlearn(f, *SYNTH, "--set", "lamda2=3"), ("'lamda2'", "lambda2")),
    "--set wrong type": lambda f: (unlearn(f, *SYNTH, "--set", "epochs=many"), ("epochs", "'many'", "integer")),
    "--set without =": lambda f: (unlearn(f, *SYNTH, "--set", "lr"), ("'lr'", "key=value")),
    "--set NaN": lambda f: (unlearn(f, *SYNTH, "--set", "lambda2=nan"), ("lambda2=nan", "finite")),
    "--set negative lr": lambda f: (unlearn(f, *SYNTH, "--set", "lr=-1"), ("lr=-1.0", "(0, ∞)")),
    "--train-set unknown key": lambda f: (["train", *SYNTH, "--model", "tiny", "--train-set", "lrr=1", "--out", str(f.root / "t")], ("'lrr'", "valid keys")),
    "--train-set wrong type": lambda f: (["train", *SYNTH, "--train-set", "epochs=1.5", "--out", str(f.root / "t")], ("epochs", "'1.5'")),
    "--train-set bad schedule": lambda f: (["train", *SYNTH, "--train-set", "schedule=weekly", "--out", str(f.root / "t")], ("'weekly'", "onecycle")),
    "--eval-set wrong type": lambda f: (evaluate(f, f.ckpt_safetensors, "--eval-set", "alphas=half"), ("alphas", "'half'", "number")),
    "--audit-set unknown check": lambda f: (audit(f, f.ckpt_safetensors, "--audit-set", "checks=xyz"), ("'xyz'", "relearn_time")),
    "--input-norm not a choice": lambda f: (audit(f, f.ckpt_safetensors, "--input-norm", "imagenet"), ("'imagenet'", "'dataset'", "--help")),
    "--width not a number": lambda f: (["train", *SYNTH, "--width", "wide", "--out", str(f.root / "t")], ("'wide'", "int")),
    "tune grid value out of range": lambda f: (["tune", "spotter", *SYNTH, "--model", "tiny", "--grid", "lr=1e-3,-1"], ("lr=-1.0", "(0, ∞)")),
    "tune grid unknown key": lambda f: (["tune", "spotter", *SYNTH, "--model", "tiny", "--grid", "rate=1,2"], ("'rate'", "lambda2")),
    # ε and α
    "eval ε above 1": lambda f: (evaluate(f, f.ckpt_safetensors, "--eval-set", "eps=2"), ("eps", "2.0", "(0, 1]")),
    "eval ε zero": lambda f: (evaluate(f, f.ckpt_safetensors, "--eval-set", "eps=0"), ("eps", "(0, 1]")),
    "spotter ε above 1": lambda f: (unlearn(f, *SYNTH, "--set", "eps=5"), ("eps=5.0", "[0, 1]")),
    "audit ε sweep above 1": lambda f: (audit(f, f.ckpt_safetensors, "--audit-set", "ou_eps=0.01,3"), ("ou_eps", "3.0", "(0, 1]")),
    "PRA α above 1": lambda f: (evaluate(f, f.ckpt_safetensors, "--eval-set", "alphas=0.5,2"), ("alphas", "2.0", "[0, 1]")),
    "PRA α negative": lambda f: (evaluate(f, f.ckpt_safetensors, "--eval-set", "alphas=-0.1"), ("-0.1", "[0, 1]")),
    # devices and outputs
    "device that does not exist": lambda f: (unlearn(f, *SYNTH, "--device", "cuda:7"), ("'cuda:7'",)),
    "device of an unknown kind": lambda f: (unlearn(f, *SYNTH, "--device", "tpu"), ("'tpu'", "cuda:N")),
    "output folder under a file": lambda f: (unlearn(f, *SYNTH, out=f.a_file / "sub" / "o.safetensors"), ("a-file", "cannot be written")),
    "output file is a folder": lambda f: (unlearn(f, *SYNTH, out=f.empty), (str(f.empty), "give a file path")),
    "audit output folder is a file": lambda f: (audit(f, f.ckpt_safetensors)[:-2] + ["--out", str(f.a_file)], ("a-file", "is a file")),
    # benchmark specs (TOML): the error names the line
    "spec missing": lambda f: (["bench", str(f.root / "none.toml"), "--out", str(f.root / "b")], ("none.toml", "does not exist")),
    "spec TOML syntax": lambda f: (spec(f, "syntax", "seeds = [0,\n[methods.finetune]\n"), ("syntax.toml:5:",)),
    "spec forget out of range": lambda f: (spec(f, "range", "forget = [7]\n[methods.finetune]\n"), ("range.toml:4:", "forget class 7", "0..5")),
    "spec forget empty": lambda f: (spec(f, "noforget", "forget = []\n[methods.finetune]\n"), ("noforget.toml:4:", "empty")),
    "spec ε out of range": lambda f: (spec(f, "eps", "[eval]\neps = 3.0\n[methods.finetune]\n"), ("eps.toml:5:", "eps", "(0, 1]")),
    "spec α out of range": lambda f: (spec(f, "alpha", "[eval]\nalphas = [0.5, 1.5]\n[methods.finetune]\n"), ("alpha.toml:5:", "1.5")),
    "spec K of wrong type": lambda f: (spec(f, "shots", '[data]\nshots = "five"\n[methods.finetune]\n'), ("shots.toml:5:", "data.shots", "integer >= 1")),
    "spec method setting out of range": lambda f: (spec(f, "lr", "[methods.spotter]\nepochs = 1\nlr = -0.1\n"), ("lr.toml:6:", "lr=-0.1")),
    "spec references not a bool": lambda f: (spec(f, "refs", 'references = "yes"\n[methods.finetune]\n'), ("refs.toml:4:", "true or false")),
    "spec not UTF-8": lambda f: (["bench", str(f.binary), "--out", str(f.root / "b")], (str(f.binary), "UTF-8")),
    "bench workers zero": lambda f: (["bench", str(f.junk_safetensors), "--out", str(f.root / "b"), "--workers", "0"], ("--workers", "got 0")),
    "report of an empty folder": lambda f: (["report", str(f.empty)], (str(f.empty), "spotter bench")),
}  # fmt: skip


def api_splits(**kwargs) -> object:
    train, test, info = load("synthetic")
    return make_splits(train, test, num_classes=info.num_classes, **{"forget_classes": (0,), **kwargs})


def no_class_zero() -> object:
    train, test, info = load("synthetic")
    return make_splits(train.without_classes([0]), test, (0,), info.num_classes, val_size=10)


def run_method_with(**settings) -> object:
    cfg = methods.make_config("spotter")
    for k, v in settings.items():
        setattr(cfg, k, v)  # set after construction, past the config's own checks
    return methods.run("spotter", build_model(SPEC), api_splits(val_size=10), cfg)


def api_cases() -> dict[str, tuple[Callable[[Files], object], tuple[str, ...]]]:
    from spotter.audit.context import AuditConfig
    from spotter.bench.spec import load_spec
    from spotter.config import apply_overrides
    from spotter.data import conform
    from spotter.data.formats import read_cifar_batch, read_idx
    from spotter.evaluation.evaluator import EvalConfig
    from spotter.functional.metrics import accuracy, over_unlearning
    from spotter.training.checkpoint import check_safe_torch_load
    from spotter.training.device import resolve_device
    from spotter.training.fit import TrainConfig, fit
    from spotter.training.foreign import load_classifier

    empty = TensorSet(torch.zeros(0, 1, 16, 16, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    return {
        "load unknown dataset": (lambda f: load("mnist"), ("'mnist'", "fashion-mnist")),
        "methods.get unknown name": (lambda f: methods.get("forgetful"), ("'forgetful'", "spotter")),
        "make_splits empty forget classes": (lambda f: api_splits(forget_classes=()), ("empty", "at least one")),
        "make_splits forget class without samples": (lambda f: no_class_zero(), ("forget class 0", "no training samples")),
        "make_splits K too large": (lambda f: api_splits(shots=500), ("shots=500", "samples of forget class 0")),
        "make_splits validation eats train": (lambda f: api_splits(val_size=10_000), ("val_size 10000", "1920 samples")),
        "fit on an empty training set": (lambda f: fit(build_model(SPEC), empty, None, TrainConfig()), ("training set is empty",)),
        "TrainConfig NaN lr": (lambda f: TrainConfig(lr=float("nan")), ("lr", "nan", "> 0")),
        "TrainConfig warmup above 1": (lambda f: TrainConfig(warmup=2.0), ("warmup", "[0, 1]")),
        "apply_overrides unknown key": (lambda f: apply_overrides(TrainConfig(), {"lrr": 1}), ("'lrr'", "batch_size")),
        "EvalConfig zero copies": (lambda f: EvalConfig(copies=0), ("copies", ">= 1")),
        "AuditConfig unknown check": (lambda f: AuditConfig(checks=("x",)), ("'x'", "near")),
        "methods.run with ε out of range": (lambda f: run_method_with(eps=2.0), ("eps=2.0", "[0, 1]")),
        "resolve_device missing GPU": (lambda f: resolve_device("cuda:99"), ("'cuda:99'",)),
        "read_idx on a CIFAR batch": (lambda f: read_idx(f.c_nokey / "cifar-10-batches-py" / "test_batch"), ("not an IDX file",)),
        "read_cifar_batch on an IDX file": (
            lambda f: read_cifar_batch(f.fm_magic / "train-labels-idx1-ubyte", "labels"), ("not a CIFAR python batch",),
        ),
        "load_classifier foreign pickle": (
            lambda f: load_classifier(f.evil_pth, load("synthetic")[2], "tiny"), ("refusing", "nothing in it was run"),
        ),
        "load_spec setting out of range": (lambda f: load_spec(Path(spec(f, "api", "features_per_class = 0\n")[1])), ("api.toml:4:", "integer >= 1")),
        "over_unlearning shape mismatch": (
            lambda f: over_unlearning(torch.zeros(4, 6), torch.zeros(4, 5), (0,)), ("(4, 6)", "(4, 5)"),
        ),
        "over_unlearning forget class out of range": (
            lambda f: over_unlearning(torch.zeros(4, 6), torch.zeros(4, 6), (6,)), ("forget class 6", "0..5"),
        ),
        "accuracy labels of another length": (lambda f: accuracy(torch.zeros(4, 3), torch.zeros(5)), ("(4, 3)", "(5,)")),
        "a .pt on a torch with weights_only bypasses": (lambda f: check_safe_torch_load("2.5.1"), ("torch 2.5.1", "2.10", "safetensors")),
        "conform to 2 channels": (lambda f: conform(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), 2, 4), ("3-channel", "2-channel")),
    }  # fmt: skip


API = api_cases()


def error_line(f: Files, capsys, argv: list[str]) -> tuple[int | str | None, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return code, lines[0]


@pytest.mark.parametrize("case", list(CLI))
def test_cli_bad_input(case: str, f: Files, capsys) -> None:
    argv, needles = CLI[case](f)
    code, line = error_line(f, capsys, argv)
    assert code not in (0, None), line
    assert line.startswith("spotter "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert not (f.root / "pwned").exists()  # no pickle payload ever ran


@pytest.mark.parametrize("case", list(API))
def test_api_bad_input(case: str, f: Files) -> None:
    call, needles = API[case]
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        call(f)
    message = str(err.value)
    assert "\n" not in message and message.strip(), message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    assert not (f.root / "pwned").exists()


def test_an_old_torch_never_unpickles_a_foreign_file(f: Files, monkeypatch) -> None:
    from spotter.training.checkpoint import load_foreign_state

    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_foreign_state(f.plain_pt)
    monkeypatch.undo()
    assert list(load_foreign_state(f.plain_pt)) == ["w"]


def test_bad_memory_budget_is_named(f: Files, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SPOTTER_MEMORY_BUDGET", "lots")
    code, line = error_line(f, capsys, unlearn(f, *data("imagefolder", f.goodimages)))
    assert code == 2 and "SPOTTER_MEMORY_BUDGET='lots'" in line and "GiB" in line


def test_a_failure_deep_inside_is_one_line_with_the_traceback_under_v(
    f: Files, capsys, monkeypatch, caplog
) -> None:
    import spotter.cli.commands

    def deep(args):
        raise RuntimeError("CUDA error: device-side assert triggered\nCompile with TORCH_USE_CUDA_DSA")

    monkeypatch.setattr(spotter.cli.commands, "cmd_list", deep)
    code, line = error_line(f, capsys, ["list", "methods"])
    assert code == 1 and "internal error: RuntimeError: CUDA error" in line and "-v" in line
    caplog.set_level(logging.DEBUG, logger="spotter")
    assert main(["-v", "list", "methods"]) == 1
    assert "Traceback" in caplog.text and "in deep" in caplog.text


def test_catalogue_size() -> None:
    assert len(CLI) + len(API) >= 40
