"""How far model-inverted images sit from the other classes, against real test images, per class.

spotter_auto's held-out check scores the simulated attacker's α on images inverted from the
original (DeepInversion) standing in for the retain classes. Where those stand-ins lose more to a
prototype row than real images would, the check's attacker is timid; where they lose less, it is
bold. This script measures, on the original model of a bench spec's context (seed of its first
job, cached model), for every class c:

- the median logit margin (own class minus the strongest other) on real test images of c and on
  images inverted for c;
- brittleness: c as the victim of prototype rows written for the three classes the original
  confuses c with most (rows from inverted shots, every PRA variant, α 0.1..1): the accuracy c
  loses on its inverted images divided by what it loses on its real test images (1: the
  stand-ins lose as real images do).

    python benchmarks/inversion_margins.py benchmarks/fashion_mnist_classes.toml --steps 200 \
        --out benchmarks/results/dev_probe/inversion_margins_2026-12-07.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from auto_probe import context_for

from spotter.evaluation.pra import DEFAULT_ALPHAS
from spotter.functional.inversion import InversionConfig, invert
from spotter.functional.prototype import VARIANTS, attacked_head, head_logits, is_cosine, prototype_rows
from spotter.training.inference import predict


def margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(len(y))
    own = logits[rows, y]
    other = logits.clone()
    other[rows, y] = float("-inf")
    return own - other.max(1).values


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec")
    p.add_argument(
        "--steps", type=int, default=200, help="DeepInversion steps (spotter_auto's inversion_steps)"
    )
    p.add_argument("--per-class", type=int, default=24, help="images inverted per class")
    p.add_argument("--out", default="runs/inversion_margins.json")
    args = p.parse_args()
    _, ctx, _ = context_for(args.spec, "0")
    model = ctx.models["original"].eval()
    s, n = ctx.splits, ctx.info.num_classes
    wanted = torch.arange(n).repeat_interleave(args.per_class)
    generator = torch.Generator().manual_seed(4242)
    x_inv = invert(
        model, wanted, tuple(s.forget.x.shape[1:]), InversionConfig(steps=args.steps), generator, ctx.device
    )
    on_target = predict(model, x_inv, device=ctx.device).argmax(1) == wanted
    x_inv, y_inv = x_inv[on_target], wanted[on_target]
    x_real = torch.cat([s.test_retain.x, s.test_forget.x])
    y_real = torch.cat([s.test_retain.y, s.test_forget.y])
    f_real = predict(model, x_real, device=ctx.device, features=True)
    f_inv = predict(model, x_inv, device=ctx.device, features=True)
    head = model.head
    weight = head.weight.detach().cpu()
    bias = head.bias.detach().cpu() if head.bias is not None else None
    cosine = is_cosine(head)
    logits_real = head_logits(head, f_real, weight, bias)
    m_real, m_inv = margins(logits_real, y_real), margins(head_logits(head, f_inv, weight, bias), y_inv)
    confusion = torch.softmax(logits_real, 1)
    out = {}
    for c in range(n):
        mean_probs = confusion[y_real == c].mean(0)
        mean_probs[c] = -1.0
        # (features, accuracy on them before any row is written)
        sets = {
            "real": (f_real[y_real == c], float((m_real[y_real == c] > 0).float().mean())),
            "inverted": (f_inv[y_inv == c], float((m_inv[y_inv == c] > 0).float().mean())),
        }
        lost = dict.fromkeys(sets, 0.0)  # points of c's accuracy lost, summed over rows and alphas
        for r in (int(k) for k in mean_probs.argsort(descending=True)[:3]):
            shots = f_inv[y_inv == r]
            for variant in VARIANTS[:1] if cosine else VARIANTS:
                rows, row_biases = prototype_rows(shots, torch.full((len(shots),), r), (r,), variant, head)
                for alpha in DEFAULT_ALPHAS:
                    w, b = attacked_head(weight, bias, rows, row_biases, (r,), alpha, cosine)
                    for name, (feats, unattacked) in sets.items():
                        kept = float((head_logits(head, feats, w, b).argmax(1) == c).float().mean())
                        lost[name] += 100 * (unattacked - kept)
        out[c] = {
            "margin_real": round(float(m_real[y_real == c].median()), 2),
            "margin_inverted": round(float(m_inv[y_inv == c].median()), 2),
            "brittleness": round(lost["inverted"] / lost["real"], 2) if lost["real"] > 0 else None,
            "inverted_on_target": int((y_inv == c).sum()),
        }
        print(c, out[c], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"spec": args.spec, "steps": args.steps, "per_class": out}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
