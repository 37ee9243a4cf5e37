"""Development probe for spotter_auto: one context of a bench spec, a few settings, fast measures.

Builds the context of SPEC's first job for --forget (cached original and retrained models), runs
spotter_auto once per JSON object of overrides and appends a row per setting to --out: per-class
test accuracy of the result and after every round (a diagnostic the method never sees: it reads
no retain data), PRA (cosine, l2, scaled at K 5 and 20) and the time. Faster than a bench row (no
OU@ε sweep or MIA), for choosing what to run on the full sweep. With --relearn it also runs the
bench's reduced relearning grid on the result and on the retrained model and records the worst gap
per budget; with --save DIR it writes each result's weights there (to audit or attack them later).

    python benchmarks/auto_probe.py benchmarks/dev_inversion.toml --forget 5 '{}' '{"lambda3_max": 4}'
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import logging
import time
from pathlib import Path

import torch

from spotter import methods
from spotter.audit.checks import pra_report
from spotter.bench.job import Context
from spotter.bench.spec import load_spec
from spotter.data import to_float
from spotter.evaluation.gap import decided_gap
from spotter.evaluation.relearn import spread_sample
from spotter.evaluation.relearn_grid import RelearnGridConfig, relearn_grid
from spotter.functional.inversion import InversionConfig, invert
from spotter.methods import spotter_auto
from spotter.models.batchnorm import reestimate_statistics
from spotter.training.checkpoint import save_model
from spotter.training.inference import predict

# the relearning gap with the option to decline (spotter.evaluation.gap), and without it ("raw")
GAP_KEYS = ("budgets", "worst", "worst_attacker", "raw_worst", "raw_worst_attacker")


def context_for(spec: str, forget_text: str, seed: int = 0) -> tuple[list[int], Context, int]:
    """(the forget classes, the context of SPEC's first job that forgets them with training seed
    `seed`: cached original and retrained models, CPU, and the job's unlearning seed) from --forget's comma-separated classes."""
    forget = [int(c) for c in forget_text.split(",")]
    jobs = [j for j in load_spec(spec).jobs if list(j["config"]["data"]["forget"]) == forget]
    if not jobs:
        raise SystemExit(f"no context of {spec} forgets {forget}")
    seeded = [j for j in jobs if j["config"]["train"]["seed"] == seed]
    if not seeded:
        have = sorted({j["config"]["train"]["seed"] for j in jobs})
        raise SystemExit(f"no context of {spec} forgets {forget} with training seed {seed}; valid: {have}")
    # the references have no unlearning seed; the methods of the same context share one
    unlearn_seed = next((j["config"]["unlearn_seed"] for j in seeded if "unlearn_seed" in j["config"]), 0)
    return forget, Context(seeded[0]["config"], "cpu", None, None), unlearn_seed


def per_class(model: torch.nn.Module, ctx: Context) -> list[float]:
    s = ctx.splits
    x = torch.cat([s.test_retain.x, s.test_forget.x])
    y = torch.cat([s.test_retain.y, s.test_forget.y])
    pred = predict(model, x, device=ctx.device).argmax(1)
    return [round(float((pred[y == c] == c).float().mean()) * 100, 1) for c in range(ctx.info.num_classes)]


def fresh_inverted(
    original: torch.nn.Module, ctx: Context, forget: list[int], per_class_count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class_count` images per retain class inverted from the original with a seed the method
    never uses, kept where the original assigns their class; (images, classes)."""
    if per_class_count <= 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    retain = [c for c in range(ctx.info.num_classes) if c not in forget]
    wanted = torch.tensor(retain).repeat_interleave(per_class_count)
    shape = tuple(ctx.splits.forget.x.shape[1:])
    x = invert(original, wanted, shape, InversionConfig(), torch.Generator().manual_seed(99991), ctx.device)
    ok = predict(original, x, device=ctx.device).argmax(1) == wanted
    print(f"fresh inverted images: {int(ok.sum())} of {len(ok)} on target", flush=True)
    return x[ok], wanted[ok]


def confusion_of(model: torch.nn.Module, ctx: Context, classes: list[int]) -> dict[int, list[float]]:
    """For each of `classes`: the % of its test images the model assigns to each class."""
    s = ctx.splits
    x = torch.cat([s.test_retain.x, s.test_forget.x])
    y = torch.cat([s.test_retain.y, s.test_forget.y])
    pred = predict(model, x, device=ctx.device).argmax(1)
    n = ctx.info.num_classes
    return {c: [round(float((pred[y == c] == k).float().mean()) * 100, 1) for k in range(n)] for c in classes}


def after_reestimate(model: torch.nn.Module, ctx: Context, count: int = 1000) -> list[float]:
    """Per-class test accuracy after BatchNorm's running statistics are re-estimated on `count`
    retain training images (no gradient step): does the forgetting live in stale statistics?"""
    pick = spread_sample(ctx.splits.retain.y, count, seed=7)  # as statistics_relearn draws them
    model = copy.deepcopy(model)
    reestimate_statistics(model, to_float(ctx.splits.retain.x[pick]).to(ctx.device))
    return per_class(model, ctx)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec")
    p.add_argument("settings", nargs="*", help="JSON objects of spotter_auto overrides")
    p.add_argument("--forget", default="0", help="comma-separated forget classes of a spec context")
    p.add_argument("--seed", type=int, default=0, help="the context's training seed (default 0)")
    p.add_argument("--out", default="runs/auto_probe.jsonl")
    p.add_argument("--tag", default="", help="a name for the rows (the code version)")
    p.add_argument(
        "--inverted-check", type=int, default=0, metavar="N",
        help="also invert N fresh images per retain class (never trained on) and log the student's "
        "per-class agreement with the original on them each round: do stand-ins see the damage?",
    )  # fmt: skip
    p.add_argument("--relearn", action="store_true", help="run the reduced relearning grid (slower)")
    p.add_argument(
        "--round-pra", action="store_true",
        help="also measure PRA on the test set after every round (a diagnostic the method never sees): "
        "which round's real attack meets the bars, against what the method's held-out check read",
    )  # fmt: skip
    p.add_argument("--save", metavar="DIR", help="write each unlearned model to DIR/TAG-FORGET-N.safetensors")
    args = p.parse_intermixed_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    forget, ctx, ctx_unlearn_seed = context_for(args.spec, args.forget, args.seed)
    original = ctx.models["original"]
    base = per_class(original, ctx)
    print("original", base, flush=True)
    base_reestimated = after_reestimate(original, ctx)
    rounds: list[list[float]] = []
    inverted_rounds: list[list[float]] = []
    kl_rounds: list[dict[str, list[float]]] = []
    check = spotter_auto.strongest_attack
    fresh_x, fresh_y = fresh_inverted(original, ctx, forget, args.inverted_check)

    t_fresh = predict(original, fresh_x, device=ctx.device) if len(fresh_x) else None
    s = ctx.splits
    x_test = torch.cat([s.test_retain.x, s.test_forget.x])
    y_test = torch.cat([s.test_retain.y, s.test_forget.y])
    t_test = predict(original, x_test, device=ctx.device)
    f_fresh = predict(original, fresh_x, device=ctx.device, features=True) if len(fresh_x) else None
    f_test = predict(original, x_test, device=ctx.device, features=True)

    def drift_per_class(f_student: torch.Tensor, f_teacher: torch.Tensor, y: torch.Tensor) -> list[float]:
        """Per class, the features' squared change relative to their squared norm (×1000): does the
        stand-ins' feature drift track the real images' (the term `feature_weight` trains on)?"""
        return [
            round(float(spotter_auto.feature_drift(f_student[y == c], f_teacher[y == c])) * 1000, 1)
            if bool((y == c).any())
            else -1.0
            for c in range(ctx.info.num_classes)
        ]

    def masked_kl_per_class(z_student: torch.Tensor, z_teacher: torch.Tensor, y: torch.Tensor) -> list[float]:
        """Mean KL(masked original || masked student) at T = 1 per class (×1000): a continuous
        disagreement, to compare what the stand-ins show with what the real images show."""
        keep = [c for c in range(z_teacher.shape[1]) if c not in forget]
        p = torch.log_softmax(z_teacher[:, keep], 1)
        q = torch.log_softmax(z_student[:, keep], 1)
        kl = (p.exp() * (p - q)).sum(1)
        return [
            round(float(kl[y == c].mean()) * 1000, 1) if bool((y == c).any()) else -1.0
            for c in range(z_teacher.shape[1])
        ]

    def inverted_per_class(student: torch.nn.Module) -> list[float]:
        if not len(fresh_x):
            return []
        pred = predict(student, fresh_x, device=ctx.device).argmax(1)
        return [
            round(float((pred[fresh_y == c] == c).float().mean()) * 100, 1)
            if bool((fresh_y == c).any())
            else -1.0
            for c in range(ctx.info.num_classes)
        ]

    round_pra: list[dict[str, list[float]]] = []
    round_checks: list[dict[str, float]] = []

    def check_variants(call: inspect.BoundArguments) -> dict[str, float]:
        """What the held-out check would read with other attacker rules, on the same shots: the
        proxies' tolerance, K = 5 only, no proxies (the worst α)."""
        generator = call.arguments["generator"]
        state = generator.get_state()
        out = {}
        for name, changes in (
            *((f"tolerance {t:g}", {"proxy_tolerance": float(t)}) for t in (0, 5, 10, 20, 30)),
            ("K 5, tolerance 0", {"shot_counts": (5,), "proxy_tolerance": 0.0}),
            ("worst alpha", {"proxy_x": None, "proxy_y": None, "proxy_share": None}),
        ):
            changed = inspect.signature(check).bind(**{**call.arguments, **changes})
            generator.set_state(state)
            out[name] = round(check(*changed.args, **changed.kwargs), 2)
        generator.set_state(state)  # the method's own check draws the shots it always draws
        return out

    def watched(student, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        rounds.append(per_class(student, ctx))  # the per-round diagnostic
        if args.round_pra:
            round_checks.append(check_variants(inspect.signature(check).bind(student, *a, **k)))
            print("round check variants", round_checks[-1], flush=True)
            feats = {key: predict(student, getattr(s, key).x, device=ctx.device, features=True)
                     for key in ("forget", "test_forget", "test_retain")}  # fmt: skip
            pra_now = pra_report(ctx.shared, student, feats)
            round_pra.append({v: pra_now["variants"][v]["forget_acc"] for v in pra_now["variants"]})
            print("round PRA", round_pra[-1], flush=True)
        if len(fresh_x):
            inverted_rounds.append(inverted_per_class(student))
            print("fresh inverted agreement", inverted_rounds[-1], flush=True)
            kl_fresh = masked_kl_per_class(predict(student, fresh_x, device=ctx.device), t_fresh, fresh_y)
            kl_rounds.append(
                {
                    "fresh": kl_fresh,
                    "test": masked_kl_per_class(predict(student, x_test, device=ctx.device), t_test, y_test),
                }
            )
            kl_rounds[-1]["drift_fresh"] = drift_per_class(
                predict(student, fresh_x, device=ctx.device, features=True), f_fresh, fresh_y
            )
            kl_rounds[-1]["drift_test"] = drift_per_class(
                predict(student, x_test, device=ctx.device, features=True), f_test, y_test
            )
            print("masked KL x1000 fresh inverted", kl_fresh, "test", kl_rounds[-1]["test"], flush=True)
            print("feature drift x1000 fresh inverted", kl_rounds[-1]["drift_fresh"], "test",
                  kl_rounds[-1]["drift_test"], flush=True)  # fmt: skip
        print(
            "round", len(rounds), [round(v - b, 1) for v, b in zip(rounds[-1], base, strict=True)], flush=True
        )
        return check(student, *a, **k)

    spotter_auto.strongest_attack = watched
    retrained_grid, reset_stand_ins = None, torch.zeros(0)
    weights = (len(ctx.splits.test_forget), len(ctx.splits.test_retain))  # the attacker's overall accuracy
    if args.relearn:
        reset_stand_ins = fresh_inverted(original, ctx, forget, 16)[0]
        retrained_grid = relearn_grid(
            ctx.models["retrained"], ctx.splits, RelearnGridConfig.reduced(), ctx.device
        )
    for n_setting, text in enumerate(args.settings or ["{}"]):
        rounds.clear()
        round_pra.clear()
        round_checks.clear()
        inverted_rounds.clear()
        kl_rounds.clear()
        cfg = methods.make_config("spotter_auto", json.loads(text), None)
        torch.manual_seed(ctx_unlearn_seed)  # as the bench job seeds its method
        t0 = time.time()
        model = methods.run("spotter_auto", original, ctx.splits, cfg)
        seconds = time.time() - t0
        row, feats, _ = ctx.shared.evaluator.measure(model.eval())
        pra = pra_report(ctx.shared, model, feats)
        final = per_class(model, ctx)
        reestimated = after_reestimate(model, ctx)
        delta = [round(v - b, 1) for v, b in zip(final, base, strict=True)]
        retain = [d for c, d in enumerate(delta) if c not in forget]
        out = {
            "tag": args.tag,
            "forget": forget,
            "train_seed": args.seed,
            "settings": json.loads(text),
            "time_s": round(seconds, 1),
            "test_forget_acc": row["test_forget_acc"],
            "forget_acc": row["forget_acc"],
            "ou": {k: row[k] for k in ("ou_pgd", "ou_pgd_away", "ou_gaussian") if k in row},
            "delta_retain": round(sum(retain) / len(retain), 2),
            "worst": min(retain),
            "per_class_delta": delta,
            # BatchNorm statistics re-estimated on 1000 retain images, per class against the original
            "reestimated_delta": [round(v - b, 1) for v, b in zip(reestimated, base, strict=True)],
            "original_reestimated_delta": [
                round(v - b, 1) for v, b in zip(base_reestimated, base, strict=True)
            ],
            # where the three most damaged retain classes' images go, before and after
            "confusion": {
                str(c): {
                    "original": confusion_of(original, ctx, [c])[c],
                    "unlearned": confusion_of(model, ctx, [c])[c],
                }
                for c in sorted((c for c in range(len(delta)) if c not in forget), key=lambda c: delta[c])[:3]
            },
            "pra": {"shots": pra["shots"], **{v: pra["variants"][v]["forget_acc"] for v in pra["variants"]}},
            "rounds": [[round(v - b, 1) for v, b in zip(r, base, strict=True)] for r in rounds],
            "fresh_inverted_agreement_rounds": inverted_rounds,
            "masked_kl_rounds": kl_rounds,
            "round_pra": list(round_pra),  # per round, per variant, at the spec's PRA shots
            "round_checks": list(round_checks),  # per round, the held-out check under other rules
            "history": [
                {k: (round(v, 3) if isinstance(v, float) else v) for k, v in h.items()}
                for h in getattr(model, "unlearn_history", []) or []
            ],
        }
        if retrained_grid is not None:
            grid = relearn_grid(model, ctx.splits, RelearnGridConfig.reduced(), ctx.device)
            gap = decided_gap(grid, retrained_grid, weights)
            out["relearn_gap"] = {k: gap[k] for k in GAP_KEYS}
            # the grids themselves, so a later rule can re-read them without a rerun
            out["relearn_grid"], out["retrained_relearn_grid"] = grid, retrained_grid
            if not cfg.reset_forget_rows:  # the same model with the forget rows reset afterwards
                reset = copy.deepcopy(model)
                stand_ins = reset_stand_ins if len(reset_stand_ins) else to_float(ctx.splits.forget.x[:512])
                feats_ref = predict(reset, stand_ins, device=ctx.device, features=True)
                spotter_auto.reset_forget_rows(reset.head, tuple(forget), feats_ref)
                gap = decided_gap(
                    relearn_grid(reset, ctx.splits, RelearnGridConfig.reduced(), ctx.device),
                    retrained_grid,
                    weights,
                )
                reset_row = ctx.shared.evaluator.measure(reset.eval())[0]
                out["relearn_gap_reset_rows"] = {k: gap[k] for k in GAP_KEYS}
                out["reset_rows_eval"] = {k: reset_row[k] for k in ("test_forget_acc", "test_retain_acc",
                                                                    "pra_forget_acc")}  # fmt: skip
        if args.save:
            path = (
                Path(args.save)
                / f"{args.tag or 'probe'}-{args.forget.replace(',', '_')}-{n_setting}.safetensors"
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            save_model(path, model, ctx.spec, {"settings": text})
            out["saved"] = str(path)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(out) + "\n")
        print(json.dumps({k: out[k] for k in ("settings", "time_s", "test_forget_acc", "delta_retain",
                                               "worst", "per_class_delta", "reestimated_delta", "pra")}),
              out.get("relearn_gap"), out.get("relearn_gap_reset_rows"), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
