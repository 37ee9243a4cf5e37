"""Training throughput: our loop (`fit`) against a bare PyTorch loop, and Spotter's cost vs retraining.

Images per second of `spotter.training.fit.fit` and of the plainest loop PyTorch allows on the same
model, batch, device and precision (uint8 batch by indexing -> float -> forward -> CE -> backward ->
SGD step; no augmentation, no logging, no checks): the bare loop is the ceiling, and the table
reports fit's share of it. Then Spotter's wall time against retraining's at the paper's schedule
(docs/method.md §7: 200 epochs of the retain set), EXTRAPOLATED from the measured per-step times:
retrain = 200 x steps per retain epoch x fit's step time; Spotter = its one-off neighbourhood build + its epochs x steps
per forget epoch x its measured step time (the two separated by timing 1- and 3-epoch runs).

    python benchmarks/throughput.py --steps 30                  # CPU: Fashion-MNIST, width-16 ResNet-18
    python benchmarks/throughput.py --dataset synthetic --model tiny --steps 5   # a smoke check
    python benchmarks/throughput.py --gpu-check --data-dir DIR  # GPU: width-64 ResNet-18, 1 and 3 epochs,
        # with and without bf16 / channels_last; DIR holds the four Fashion-MNIST IDX files
        # (add --compile for torch.compile rows)
Runtime (estimated, not yet measured): --steps 30 on 2 CPU cores ~2 min; --gpu-check on one H100 ~3-5 min.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import torch
import torch.nn.functional as F

from spotter import methods
from spotter.data import TensorSet, load, make_splits, to_float
from spotter.models import ModelSpec, build_model, default_width
from spotter.training.device import resolve_device
from spotter.training.fit import FitOptions, TrainConfig, autocast, fit
from spotter.training.inference import channels_last

PAPER_EPOCHS = 200  # docs/method.md §7


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(spec: ModelSpec, data: TensorSet, cfg: TrainConfig, device: torch.device, steps: int) -> float:
    """Images/s of the plainest training loop on the same model, batch, device and precision."""
    torch.manual_seed(0)
    model = build_model(spec).to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    x_all = data.x.to(device)
    y_all = data.y.to(device)
    model.train()

    def one(i: int) -> None:
        idx = torch.randint(0, len(data), (cfg.batch_size,), device=device)
        x = to_float(x_all[idx])
        x = channels_last(x) if cfg.channels_last else x
        with autocast(device, cfg.amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(3):  # warm-up (oneDNN / cuDNN plans)
        one(i)
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        one(i)
    sync(device)
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def fit_rate(
    spec: ModelSpec,
    data: TensorSet,
    cfg: TrainConfig,
    device: torch.device,
    steps: int,
    epochs: int = 1,
    **kw,
) -> tuple[float, float]:
    """(images/s of fit over `epochs` epochs of `steps` steps, seconds per step)."""
    n = steps * cfg.batch_size
    g = torch.Generator().manual_seed(0)
    train = data.subset(torch.randint(0, len(data), (n,), generator=g))
    run = dataclasses.replace(cfg, epochs=epochs, select="last")
    warm = dataclasses.replace(run, epochs=1)
    fit(build_model(spec), train.subset(torch.arange(3 * cfg.batch_size)), None, warm, device, **kw)
    sync(device)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    fit(build_model(spec), train, None, run, device, **kw)
    sync(device)
    seconds = time.perf_counter() - t0
    return epochs * n / seconds, seconds / (epochs * steps)


def spotter_cost(spec: ModelSpec, splits, device: torch.device, steps: int) -> tuple[float, float, object]:
    """(one-off seconds per forget sample, seconds per optimiser step) of Spotter, on `steps` batches.

    Spotter builds its PGD neighbours and the teacher's targets once, then trains for its epochs:
    runs of 1 and 3 epochs on the same subset separate the per-step cost (their difference / 2
    epochs) from the one-off cost, so neither is extrapolated with the other's factor.
    """
    g = torch.Generator().manual_seed(0)
    n = min(len(splits.forget), steps * methods.make_config("spotter").batch_size)
    small = dataclasses.replace(
        splits, forget=splits.forget.subset(torch.randperm(len(splits.forget), generator=g)[:n])
    )
    model = build_model(spec).to(device).eval()

    def seconds(epochs: int) -> float:
        cfg = methods.make_config("spotter", {"epochs": epochs})
        sync(device)
        t0 = time.perf_counter()
        methods.run("spotter", model, small, cfg)
        sync(device)
        return time.perf_counter() - t0

    seconds(1)  # warm-up
    one, three = seconds(1), seconds(3)
    cfg = methods.make_config("spotter")
    per_epoch = max(0.0, (three - one) / 2)
    setup = max(0.0, one - per_epoch)
    return setup / n, per_epoch / math.ceil(n / cfg.batch_size), cfg


def table(rows: list[list[str]], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--width", type=int, help="default: 16 on CPU, 64 with --gpu-check")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="measured steps per setting")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch intra-op threads (CPU)")
    p.add_argument("--compile", action="store_true", help="also time fit with torch.compile")
    p.add_argument(
        "--gpu-check", action="store_true", help="width-64 ResNet-18, 1 and 3 full epochs, bf16/cl on/off"
    )
    p.add_argument(
        "--check-epochs",
        default="1,3",
        help="--gpu-check: epoch counts timed per setting (e.g. 1 for a short check)",
    )
    p.add_argument("--forget", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    train, test, info = load(args.dataset, args.data_dir)
    width = args.width or (
        64 if args.gpu_check else 16 if args.model == "resnet18" else default_width(args.model)
    )
    spec = ModelSpec(args.model, info.num_classes, info.channels, width, info.mean, info.std)
    base = TrainConfig(batch_size=args.batch_size)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"# {args.dataset}, {args.model} width {width}, batch {args.batch_size}, {where}, torch {torch.__version__}\n"
    )

    if args.gpu_check:
        gpu_check(spec, train, base, device, args)
        return
    rows = []
    settings = [("fit", {})] + (
        [("fit + compile", {"options": FitOptions(compile=True)})] if args.compile else []
    )
    bare = bare_loop(spec, train, base, device, args.steps)
    rows.append(["bare PyTorch loop", f"{bare:.0f}", "1.00"])
    step_s = None
    for name, kw in settings:
        rate, s = fit_rate(spec, train, base, device, args.steps, **kw)
        step_s = step_s or s
        rows.append([name, f"{rate:.0f}", f"{rate / bare:.2f}"])
    print(table(rows, ["loop", "images/s", "ratio to bare"]))

    splits = make_splits(train, test, (args.forget,), info.num_classes, 0.1, 5, 0)
    spot_setup, spot_step, spot_cfg = spotter_cost(spec, splits, device, min(args.steps, 10))
    retain_steps = len(splits.retain) // base.batch_size
    forget_steps = math.ceil(len(splits.forget) / spot_cfg.batch_size)
    retrain_s = PAPER_EPOCHS * retain_steps * step_s
    spotter_s = len(splits.forget) * spot_setup + spot_cfg.epochs * forget_steps * spot_step
    print(
        "\n"
        + table(
            [
                [
                    f"retrain ({PAPER_EPOCHS} epochs x {retain_steps} steps)",
                    f"{step_s * 1000:.1f}",
                    f"{retrain_s / 3600:.2f} h",
                ],
                [
                    f"Spotter (neighbours once, {len(splits.forget) * spot_setup:.0f} s; "
                    f"{spot_cfg.epochs} epochs x {forget_steps} steps)",
                    f"{spot_step * 1000:.1f}",
                    f"{spotter_s / 60:.2f} min",
                ],
            ],
            ["job", "ms/step (measured)", "wall time (extrapolated)"],
        )
    )
    print(
        f"\nSpotter / retrain: {spotter_s / retrain_s:.2e} (retraining costs {retrain_s / spotter_s:.0f}x Spotter); "
        "wall times are extrapolated from the measured step times, not run end to end."
    )


def gpu_check(spec: ModelSpec, train: TensorSet, base: TrainConfig, device: torch.device, args) -> None:
    """Full epochs of fit with and without bf16/channels_last, against the bare loop of each."""
    steps = len(train) // base.batch_size
    rows = []
    for amp, cl in (("bf16", True), ("off", False), ("bf16", False), ("off", True)):
        cfg = dataclasses.replace(base, amp=amp, channels_last=cl)
        bare = bare_loop(spec, train, cfg, device, min(steps, 200))
        for epochs in (int(e) for e in args.check_epochs.split(",")):
            rate, _ = fit_rate(spec, train, cfg, device, steps, epochs)
            rows.append([amp, str(cl), str(epochs), f"{rate:.0f}", f"{bare:.0f}", f"{rate / bare:.2f}"])
            print(
                table(rows[-1:], ["amp", "channels_last", "epochs", "fit img/s", "bare img/s", "ratio"]),
                flush=True,
            )
        extra = [("1 (data on host, pinned)", FitOptions(resident="off"))] if amp == "bf16" and cl else []
        extra += [("1 (compile)", FitOptions(compile=True))] if args.compile else []
        for label, options in extra:
            rate, _ = fit_rate(spec, train, cfg, device, steps, 1, options=options)
            rows.append([amp, str(cl), label, f"{rate:.0f}", f"{bare:.0f}", f"{rate / bare:.2f}"])
    print("\n" + table(rows, ["amp", "channels_last", "epochs", "fit img/s", "bare img/s", "ratio"]))


if __name__ == "__main__":
    main()
