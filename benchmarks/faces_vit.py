"""Issue 7's two tables: identity unlearning on a synthetic face set, and a ViT on Fashion-MNIST.

faces: writes a synthetic CASIA-WebFace-shaped tree (spotter.data.faces.write_synthetic_identities:
  every identity a seeded template with jitter), trains a small CosFace ResNet (original, and
  retrained without the forget identities) with the margin, runs Spotter and two baselines, and
  reports identification (head) and verification (embedding templates, TAR at FAR 1e-2 / 1e-3)
  measures next to the foundation measures. A few minutes on one CPU core.
fashion: the registered `vit` (dim 128, 6 blocks, patch 4) on Fashion-MNIST, forget class 0:
  original, retrained (cached by spotter.training.zoo) and Spotter with the foundation measures. Runtime
  on one core of a 2-core CPU with `--epochs 8 --vit-width 64`: 39 min (90-125 s per training
  epoch, ~4.3 min per Spotter run); the table is in benchmarks/README.md. Default width 128 and
  20 epochs: roughly 2 h there, minutes on a GPU (not measured).

    python benchmarks/faces_vit.py faces --out runs/faces_vit
    python benchmarks/faces_vit.py fashion --out runs/faces_vit [--epochs 20 --device cuda]
    python benchmarks/faces_vit.py fashion --dataset synthetic --epochs 2 --vit-width 16  # smoke
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import torch

from spotter import methods
from spotter.data import DataConfig, make_splits, prepare
from spotter.data.faces import load_faces, write_synthetic_identities
from spotter.evaluation.evaluator import EvalConfig, Evaluator
from spotter.evaluation.faces import FaceEvalConfig, face_measures
from spotter.models import ModelSpec, model_spec
from spotter.report.markdown import DEFAULT_COLUMNS, markdown
from spotter.training.fit import TrainConfig
from spotter.training.zoo import reference_model

FACE_COLUMNS = (
    ("model", "model"),
    ("id_forget_acc", "id forget"),
    ("id_retain_acc", "id retain"),
    ("tar_forget@0.01", "TAR forget @1e-2"),
    ("tar_retain@0.01", "TAR retain @1e-2"),
    ("tar_forget@0.001", "TAR forget @1e-3"),
    ("tar_retain@0.001", "TAR retain @1e-3"),
    ("rank1_forget", "rank-1 forget"),
    ("rank1_retain", "rank-1 retain"),
    ("ou_pgd", "OU@ε pgd"),
    ("pra_forget_acc", "PRA forget"),
    ("dispersion", "dispersion"),
    ("time_s", "time s"),
)
# label -> (method, overrides). The forget set is tiny (two identities, ~32 images: one batch),
# so the methods get more epochs than their defaults. On a cosine head the logits are s·cos θ
# with s = 64: the masked-KD gradients grow with s and swamp the dispersion term at λ2 = 1 (the
# forget identities collapse onto their neighbour's direction, dispersion rises); λ2 ≈ s restores
# the balance. A sweep on this set (lr 1e-3, 100 epochs unless said): λ2 30 left forget TAR at
# 100% and cut retain identification to 25%; λ2 64 gave forget TAR 58% (@1e-2); λ2 100 and 128
# reached 8% and 0% but cut retain identification to 76% and 64%; λ2 64 for 200 epochs gave
# forget TAR 8% with retain identification 100% -- the row below.
# Baselines: Boundary Shrink (forget only, the paper's table) and Random Label (reads D_r), each
# with the smallest lr of {1e-3, 1e-2, 5e-2} that moved identification accuracy on this set.
FACE_METHODS = {
    "spotter (λ2 = 1)": ("spotter", {"lr": 1e-3, "epochs": 100, "batch_size": 32}),
    "spotter (λ2 = 64)": ("spotter", {"lr": 1e-3, "epochs": 200, "batch_size": 32, "lambda2": 64.0}),
    "boundary_shrink": ("boundary_shrink", {"lr": 1e-2, "epochs": 20, "batch_size": 32}),
    "random_label": ("random_label", {"lr": 5e-2, "epochs": 10}),
}


def _write(out: Path, name: str, rows: list[dict], columns) -> str:  # noqa: ANN001
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.jsonl", "w") as fh:
        for r in rows:
            fh.write(
                json.dumps({k: v for k, v in r.items() if k not in ("pra_curve", "per_class_test_acc")})
                + "\n"
            )
    table = markdown(rows, columns)
    (out / f"{name}.md").write_text(table + "\n")
    return table


def faces(args: argparse.Namespace) -> str:
    root = args.out / "synthetic-faces"  # seeded: the same tree on every run
    shutil.rmtree(root, ignore_errors=True)
    write_synthetic_identities(root, args.identities, args.per_identity, 32, seed=0)
    train, test, info = load_faces(root, test_fraction=0.25)
    forget = tuple(range(args.forget))
    splits = make_splits(train, test, forget, info.num_classes, val_size=0.1, shots=5, seed=0)
    spec = ModelSpec(args.model, info.num_classes, info.channels, args.width, info.mean, info.std)
    cfg = TrainConfig(epochs=args.epochs, batch_size=64, lr=0.1, pad=2, flip=True, channels_last=False)
    cache = args.out / "cache"
    rows = []
    original, _ = reference_model("original", "faces-synthetic", splits, spec, cfg, cache)
    retrained, _ = reference_model("retrained", "faces-synthetic", splits, spec, cfg, cache)
    evaluator = Evaluator(original, splits, EvalConfig())
    fcfg = FaceEvalConfig(k=5)
    for name, model, secs in (("original", original, None), ("retrained", retrained, None)):
        rows.append({"model": name, **evaluator(model), **face_measures(model, splits, fcfg), "time_s": secs})
    for label, (name, overrides) in FACE_METHODS.items():
        t0 = time.time()
        model = methods.run(name, original, splits, overrides=overrides)
        secs = time.time() - t0
        rows.append(
            {"model": label, **evaluator(model), **face_measures(model, splits, fcfg), "time_s": secs}
        )
    return _write(args.out, "faces", rows, FACE_COLUMNS)


def fashion(args: argparse.Namespace) -> str:
    data = DataConfig(dataset=args.dataset, data_dir=args.data_dir, forget=(0,))
    splits, info = prepare(data)
    spec = model_spec(info, "vit", args.vit_width)
    # AdamW is the usual ViT optimiser; fit() runs SGD, so a ViT-friendly SGD recipe: lr 0.05,
    # one-cycle, nesterov, no flip (Fashion-MNIST), crop pad 2.
    cfg = TrainConfig(epochs=args.epochs, lr=0.05, flip=False)
    cache = args.cache_dir
    original, _ = reference_model("original", info.name, splits, spec, cfg, cache, args.device)
    retrained, _ = reference_model("retrained", info.name, splits, spec, cfg, cache, args.device)
    evaluator = Evaluator(original, splits, EvalConfig(retain_limit=10000))
    rows = [{"model": "original", **evaluator(original)}, {"model": "retrained", **evaluator(retrained)}]
    # the authors' setting, then the preset shipped for the ResNet on this dataset (untuned here)
    for label, preset in (("spotter", None), ("spotter (fashion-mnist preset)", "fashion-mnist")):
        t0 = time.time()
        model = methods.run("spotter", original, splits, methods.make_config("spotter", None, preset))
        rows.append({"model": label, **evaluator(model), "time_s": time.time() - t0})
    return _write(args.out, f"vit_{args.dataset}", rows, DEFAULT_COLUMNS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["faces", "fashion", "all"])
    p.add_argument("--out", type=Path, default=Path("runs/faces_vit"))
    p.add_argument("--identities", type=int, default=16, help="synthetic identities")
    p.add_argument("--per-identity", type=int, default=24, help="images per synthetic identity")
    p.add_argument("--forget", type=int, default=2, help="forget identities (ids 0..N-1)")
    p.add_argument("--model", default="face_arcface", choices=["face_arcface", "face_cosface"])
    p.add_argument("--width", type=int, default=8, help="face ResNet width (embedding 8x)")
    p.add_argument("--epochs", type=int, default=None, help="original/retrained epochs")
    p.add_argument("--vit-width", type=int, default=128)
    p.add_argument("--dataset", default="fashion-mnist", help="ViT part's dataset (synthetic: a smoke run)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", default=None, help="model cache (default: spotter's cache)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.part in ("faces", "all"):
        a = argparse.Namespace(**{**vars(args), "epochs": args.epochs or 40})
        print(f"## Synthetic faces ({args.model}, width {args.width})\n\n{faces(a)}\n", flush=True)
    if args.part in ("fashion", "all"):
        a = argparse.Namespace(**{**vars(args), "epochs": args.epochs or 20})
        print(f"## {args.dataset}, ViT (dim {args.vit_width})\n\n{fashion(a)}\n", flush=True)


if __name__ == "__main__":
    main()
