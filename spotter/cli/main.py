"""`spotter` command line: thin argparse subcommands over spotter.cli.demo (no logic here)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from spotter import __version__

EPILOG = """examples:
  spotter demo                                  # Fashion-MNIST, forget class 0 (see the README for timings)
  spotter demo --dataset synthetic --model tiny --epochs 2 --out runs/smoke  # the same story in seconds
  spotter train --kind original --out original.safetensors
  spotter unlearn --checkpoint original.safetensors --forget 0 --out spotter.safetensors
  spotter eval spotter.safetensors --original original.safetensors --forget 0
  spotter audit --original original.safetensors --unlearned spotter.safetensors --forget 0 --out runs/audit
  spotter list methods
  spotter bench benchmarks/smoke.toml --out runs/smoke && spotter report runs/smoke
"""


# Names listed in --help without importing torch (tests/test_cli.py checks them against the registries).
MODEL_NAMES = ("resnet18", "tiny", "vit", "vit64", "face_arcface", "face_cosface")
DATASET_HELP = (
    "fashion-mnist (default), cifar10, cifar100, synthetic, tinyimagenet, faces (identity folders), "
    "imagefolder (--data-dir with train/<class>/ and val/ or test/; streamed from disk when larger than "
    "$SPOTTER_MEMORY_BUDGET GiB, default 1/4 of RAM)"
)
DEVICE_HELP = "auto (default), cpu, cuda, cuda:N, mps"
CACHE_HELP = "where trained models are cached (default $SPOTTER_CACHE or ~/.cache/spotter)"


def _device(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def _cache_dir(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--cache-dir", help=CACHE_HELP)


def _out(p: argparse.ArgumentParser, what: str, default: str | None = None) -> None:
    """--out: required unless a default is given."""
    if default is None:
        p.add_argument("--out", required=True, help=what)
    else:
        p.add_argument("--out", default=default, help=f"{what} (default {default})")


def _pairs_option(p: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, help: str, **kw) -> None:  # noqa: ANN003
    p.add_argument(flag, nargs="*", default=[], metavar="KEY=VALUE", help=help, **kw)


def _protocol(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--protocol",
        default="full",
        help="full (default): the method reads what it declares; retain-free: no retain data at all",
    )


def _data_args(p: argparse.ArgumentParser, surrogate: bool = False) -> None:
    """Dataset and split flags; `surrogate`: also the surrogate-data flags of commands that run methods."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="fashion-mnist", help=DATASET_HELP)
    g.add_argument("--data-dir", help="dataset folder (else $SPOTTER_DATA, else /usr/share/datasets)")
    g.add_argument("--forget", default="0", help="forget class id(s), comma separated (default 0)")
    g.add_argument(
        "--shots", type=int, default=5, help="attacker's samples per forget class for PRA (default 5)"
    )
    g.add_argument(
        "--val-size", type=int, default=5000, help="validation images carved from train (default 5000)"
    )
    g.add_argument("--split-seed", type=int, default=0, help="seed of the validation/shots split (default 0)")
    if not surrogate:
        return
    g.add_argument(
        "--surrogate",
        metavar="DATASET",
        help="another dataset whose training images serve as surrogate data (SCAR), converted to this "
        "dataset's channels and size, e.g. cifar10 for fashion-mnist; default: SCAR's synthetic fallback",
    )
    g.add_argument("--surrogate-dir", help="folder of the surrogate dataset (same rules as --data-dir)")
    g.add_argument(
        "--surrogate-size", type=int, default=5000, help="surrogate images drawn, seeded (default 5000)"
    )


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and training")
    g.add_argument("--model", default="resnet18", help=f"{', '.join(MODEL_NAMES)} (default resnet18)")
    g.add_argument(
        "--width",
        type=int,
        help="channel width (resnet18: 64 = paper, 16 by default here; others: their own)",
    )
    g.add_argument("--epochs", type=int, help="training epochs of original/retrained (default 8)")
    g.add_argument(
        "--recipe",
        choices=("fast", "paper"),
        default="fast",
        help="fast: one-cycle CPU recipe (default); paper: 200 epochs, docs/method.md §7",
    )
    _pairs_option(g, "--train-set", "training recipe overrides, e.g. lr=0.05 batch_size=256")
    g.add_argument("--seed", type=int, default=0, help="training / unlearning seed (default 0)")
    _device(g)
    _cache_dir(g)


def _method_args(p: argparse.ArgumentParser, several: bool = False) -> None:
    g = p.add_argument_group("unlearning method")
    if several:
        g.add_argument(
            "--method",
            help="methods to run, NAME[:PRESET] comma separated (default: spotter:authors,spotter_auto, "
            "the paper's Spotter beside ours; with --preset alone: spotter with that preset); "
            "`spotter list methods`",
        )
    else:
        g.add_argument("--method", default="spotter", help="method name (see `spotter list methods`)")
    g.add_argument(
        "--preset",
        help="named setting of the method, e.g. spotter's 'authors' (the authors' released method) or "
        "'fashion-mnist-paper' (the paper's objective tuned for Fashion-MNIST); `spotter list presets`",
    )
    _pairs_option(g, "--set", "method config overrides, e.g. lr=1e-3 lambda2=2", dest="overrides")
    _protocol(g)


def _eval_args(p: argparse.ArgumentParser) -> None:
    _pairs_option(p, "--eval-set", "evaluation overrides, e.g. eps=0.05 divergence=kl alphas=0.5,1.0")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line that points to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train/load original + retrained, unlearn, evaluate, print a table",
        description="The whole pipeline on one dataset; writes OUT/results.json and results.md.",
    )
    _data_args(p, surrogate=True), _model_args(p), _method_args(p, several=True), _eval_args(p)
    _out(p, "output folder", "runs/demo")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train (or load from cache) the original or retrained model",
        description="Train a reference model and write it as a safetensors checkpoint. On several GPUs "
        "(or CPU processes): torchrun --nproc_per_node N -m spotter train ... (data parallel, same "
        "global batch; rank 0 writes the checkpoint).",
    )
    _data_args(p), _model_args(p)
    p.add_argument("--kind", default="original", help="original (all classes) or retrained (retain only)")
    _out(p, "checkpoint path to write (.safetensors)")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the training forward (GPUs, long runs)"
    )


def _add_unlearn(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "unlearn",
        help="unlearn forget classes from a checkpoint",
        description="Run one unlearning method on a checkpoint; writes the unlearned checkpoint. Methods "
        "that train on the retain set run data-parallel under torchrun --nproc_per_node N -m spotter unlearn ...",
    )
    _data_args(p, surrogate=True), _method_args(p)
    p.add_argument("--checkpoint", required=True, help="the original model (.safetensors from spotter train)")
    p.add_argument("--seed", type=int, default=0, help="unlearning seed (default 0)")
    _device(p)
    _out(p, "checkpoint path to write (.safetensors)")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate checkpoints: accuracies, OU@ε, PRA, dispersion",
        description="Evaluate one or more checkpoints against the original; prints a table, writes JSON.",
    )
    _data_args(p), _eval_args(p)
    p.add_argument("checkpoints", nargs="+", help="checkpoints to evaluate (.safetensors)")
    p.add_argument("--original", required=True, help="the original model (reference for OU@ε)")
    _device(p)
    p.add_argument("--out", help="write the rows to this JSON file")


def _add_audit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="audit an unlearned checkpoint: relearning attacks, MIA, OU@ε, PRA; writes a report",
        description="Run every check (accuracies, damage near the forget class, OU@ε and its ε sweep, "
        "PRA over α, K and prototype variants, few-shot fine-tuning, BatchNorm statistics re-estimated "
        "on retain images, the relearning grid, relearn time, a linear probe, "
        "membership inference) for the original, retrained (when given) and unlearned models, side by "
        "side; writes OUT/audit.html (one self-contained page, the verdict first), OUT/audit.md, "
        "OUT/audit.json and PNG plots. Use the --dataset/--val-size/"
        "--split-seed the models were trained with, so train and test images are told apart correctly.",
    )
    _data_args(p), _eval_args(p)
    p.add_argument(
        "--original", required=True, help="model before unlearning (spotter .safetensors, or .pt/.pth)"
    )
    p.add_argument("--unlearned", required=True, help="the unlearned model to audit")
    p.add_argument("--retrained", help="model trained without the forget classes (the reference)")
    p.add_argument(
        "--model",
        help=f"architecture of foreign .pt/.pth state dicts: {', '.join(MODEL_NAMES)} or package.module:factory; "
        "spotter checkpoints carry their own",
    )
    p.add_argument("--width", type=int, help="channel width of --model NAME (default: the model's default)")
    p.add_argument(
        "--input-norm",
        default="dataset",
        choices=("dataset", "none"),
        help="inputs a factory model expects: dataset-normalised (default) or raw [0, 1] pixels",
    )
    _pairs_option(
        p,
        "--audit-set",
        "audit settings, e.g. relearn.cap=20 finetune.steps=10,50 ou_eps=0.01,0.03 checks=pra,mia",
    )
    _device(p)
    _out(p, "report folder", "runs/audit")


def _add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="grid-search a method's learning rate (and epochs) on the validation split",
        description="Run METHOD over a small grid (its TUNE grid, or --grid) against the original and "
        "retrained models (trained or loaded from the cache like `spotter demo`) and keep the setting "
        "closest to the retrained model on validation: |forget acc - retrained's| + |retain acc - "
        "original's|. Prints every trial and the winning --set values.",
    )
    p.add_argument("tune_method", metavar="METHOD", help="method name, e.g. salun or salun+spotter")
    _data_args(p, surrogate=True), _model_args(p)
    p.add_argument("--preset", help="named setting of the method to start from")
    _pairs_option(p, "--set", "fixed overrides", dest="overrides")
    p.add_argument(
        "--grid", nargs="*", default=[], metavar="KEY=V1,V2", help="grid, e.g. lr=1e-4,1e-3 epochs=5,10"
    )
    _protocol(p)
    p.add_argument("--out", help="write the trials and the best config to this JSON file")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark spec (TOML): methods x forget sets x seeds -> OUT/results.jsonl",
        description="Run every job of SPEC (see benchmarks/*.toml) that OUT/results.jsonl does not hold yet: "
        "one JSON row per job (config, git revision, wall time, every metric), appended as it finishes, so "
        "a re-run after a crash or Ctrl-C resumes. Original and retrained models come from the cache. "
        "Each row records digests of the code that computed it; rows whose code has changed since are "
        "named as stale and kept until --rerun-stale. Render the rows with `spotter report OUT`.",
    )
    p.add_argument("spec", metavar="SPEC", help="benchmark spec, e.g. benchmarks/fashion_mnist.toml")
    _out(p, "run folder (results.jsonl, features/, report/)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1; threads are split)")
    p.add_argument("--devices", help="comma-separated devices spread over the workers, e.g. cuda:0,cuda:1")
    p.add_argument(
        "--rerun-stale",
        action="store_true",
        help="also rerun the jobs whose committed rows were computed by code that has changed since "
        "(the new row replaces the old one)",
    )
    part = p.add_argument_group(
        "a part of the spec (a grid that needs several sessions: finish chosen contexts or rows first)"
    )
    part.add_argument(
        "--methods", metavar="LABELS", help="comma-separated method labels of the spec, e.g. original,spotter"
    )
    part.add_argument(
        "--forget",
        action="append",
        metavar="CLASSES",
        help="a forget set of the spec, its classes comma-separated (repeat for several: --forget 0 --forget 5,7,9)",
    )
    part.add_argument("--seeds", metavar="SEEDS", help="comma-separated training seeds of the spec, e.g. 0,1")
    part.add_argument(
        "--status",
        action="store_true",
        help="run nothing: list per context (forget set, seed) the jobs with a fresh, stale or no committed row",
    )
    _cache_dir(p)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="render a bench run folder: Markdown/CSV/LaTeX tables, PNG plots, one HTML page",
        description="Read DIR/results.jsonl (and DIR/features) and write DIR/report/: report.md, report.html "
        "(self-contained), one .md/.csv/.tex table and PNG plots per setting. Needs only the run folder.",
    )
    p.add_argument("run_dir", metavar="DIR", help="a `spotter bench --out` folder")
    p.add_argument(
        "--include-stale",
        action="store_true",
        help="also tabulate rows computed by code that has changed since (left out by default, and "
        "counted in the report; `spotter bench --rerun-stale` reruns them)",
    )


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list methods, datasets, models or presets")
    p.add_argument("what", choices=("methods", "datasets", "models", "presets"))


COMMANDS = (
    _add_demo,
    _add_train,
    _add_unlearn,
    _add_eval,
    _add_audit,
    _add_tune,
    _add_bench,
    _add_report,
    _add_list,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spotter",
        description="Class-level machine unlearning with OU@ε and prototypical relearning attack.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"spotter {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    from spotter.cli import commands  # heavy imports after parsing keeps --help fast
    from spotter.training import distributed
    from spotter.training.fit import TrainingDiverged

    try:
        with distributed.session(args.command):  # a process group only when launched by torchrun
            return commands.dispatch(args)
    except (ValueError, OSError, KeyError, ImportError) as err:
        # user errors (ValueError naming the bad value and the valid choices), files that cannot be
        # read or written, missing optional packages: one line, no traceback (-v adds it to the log)
        logging.getLogger("spotter").debug("traceback", exc_info=True)
        print(f"spotter {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (TrainingDiverged, FloatingPointError) as err:  # a NaN/Inf loss: a setting, not a crash
        logging.getLogger("spotter").debug("traceback", exc_info=True)
        print(f"spotter {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # a failure deep inside torch, or a bug: still one line, the traceback with -v
        logging.getLogger("spotter").debug("traceback", exc_info=True)
        if type(err).__name__ == "OutOfMemoryError":
            print(
                f"spotter {args.command}: error: out of memory ({_one_line(err)[:160]}); lower batch_size "
                "(--set / --train-set batch_size=N) or use another --device",
                file=sys.stderr,
            )
        else:
            print(
                f"spotter {args.command}: internal error: {type(err).__name__}: {_one_line(err)} "
                "(rerun with -v for the traceback, and please report it)",
                file=sys.stderr,
            )
        return 1
    except KeyboardInterrupt:
        print(
            f"spotter {args.command}: interrupted; {INTERRUPTED.get(args.command, 'nothing was written')}",
            file=sys.stderr,
        )
        return 130


# what survives Ctrl-C, by command (the others write only when they finish)
INTERRUPTED = {
    **dict.fromkeys(("demo", "train", "tune"), "finished epochs are checkpointed, rerun to resume"),
    "bench": "finished jobs are in OUT/results.jsonl, rerun to resume",
}


def _one_line(err: BaseException) -> str:
    """The message of an exception on one line; an OSError names its file and the reason."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.filename}: {err.strerror}"
        if err.filename2 is not None:
            text = f"{err.filename} -> {err.filename2}: {err.strerror}"
    elif isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
