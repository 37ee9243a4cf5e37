"""Every foundation measure for one model against the original: accuracies, OU@ε, PRA, dispersion.

Neighbourhoods A_ε(D_f) are built once from the ORIGINAL model with `EvalConfig.seed` (a draw
separate from Spotter's training draw) and reused for every model compared (docs/method.md §3).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spotter.data import Splits, TensorSet
from spotter.evaluation.pra import DEFAULT_ALPHAS, VARIANTS, pra_sweep
from spotter.functional.metrics import (
    DIVERGENCES,
    accuracy,
    dispersion_score,
    over_unlearning,
    per_class_accuracy,
)
from spotter.functional.perturb import neighbourhood
from spotter.io import digest, file_digest
from spotter.training.checkpoint import CheckpointError, load_tensors, save_tensors
from spotter.training.inference import outputs, predict

log = logging.getLogger("spotter")


@dataclass
class EvalConfig:
    """Evaluation settings (docs/method.md §3-4). Change `seed` only to study variance."""

    eps: float = 0.03  # PGD L∞ radius, pixels (docs/method.md §3)
    step: float = 0.01  # PGD step (docs/method.md §3)
    steps: int = 3  # PGD steps (docs/method.md §3)
    sigma: float = 0.01  # Gaussian neighbourhood std (docs/method.md §3)
    copies: int = 1  # neighbours per forget sample
    source: str = "forget"  # neighbourhood of "forget" (train) or "test_forget" images
    seed: int = 1234  # evaluation draw; Spotter trains on neighbour_seed=0
    divergence: str = "js"  # "js" (default) or "kl" (docs/method.md §3)
    alphas: tuple[float, ...] = DEFAULT_ALPHAS  # PRA sweep (docs/method.md §4)
    pra_variant: str = "cosine"  # "cosine" (authors' default) or "l2"
    retain_limit: int = 0  # evaluate retain_acc on a seeded subset of this size; 0 = all
    batch_size: int = 256  # faster than larger batches on the CPU (caches; benchmarks/README.md)

    def __post_init__(self) -> None:
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps must be in (0, 1] (pixels in [0, 1]), got {self.eps}")
        if not (0 <= self.step <= 1 and 0 <= self.sigma <= 1):
            raise ValueError(
                f"step and sigma must be in [0, 1] (pixels), got step={self.step}, sigma={self.sigma}"
            )
        for name, low in (("steps", 0), ("copies", 1), ("batch_size", 1), ("retain_limit", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.source not in ("forget", "test_forget"):
            raise ValueError(f"source {self.source!r}; valid choices: forget, test_forget")
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"divergence {self.divergence!r}; valid choices: {', '.join(DIVERGENCES)}")
        if self.pra_variant not in VARIANTS:
            raise ValueError(f"pra_variant {self.pra_variant!r}; valid choices: {', '.join(VARIANTS)}")
        self.alphas = tuple(float(a) for a in self.alphas)
        bad = [a for a in self.alphas if not 0 <= a <= 1]
        if bad or not self.alphas:
            raise ValueError(f"PRA alphas must lie in [0, 1], got {list(self.alphas)}")


def _load_neighbours(path: str | Path | None) -> dict[str, torch.Tensor] | None:
    if path is None or not Path(path).exists():
        return None
    try:
        return load_tensors(path)[0]
    except CheckpointError as err:
        log.warning("ignoring cached neighbourhoods %s (%s)", path, err)
        return None


class Evaluator:
    """Holds what is shared by all models compared: neighbourhoods and the original's logits."""

    def __init__(
        self,
        original: nn.Module,
        splits: Splits,
        cfg: EvalConfig | None = None,
        cache_path: str | Path | None = None,
    ) -> None:
        """`cache_path`: a file keyed (by the caller) on the original, the splits and `cfg`; the
        neighbourhoods and the original's logits on them are loaded from it or saved to it."""
        self.cfg = cfg or EvalConfig()
        self.splits = splits
        self.device = next(original.parameters()).device
        src: TensorSet = getattr(splits, self.cfg.source)
        t0 = time.time()
        self.neighbours: dict[str, torch.Tensor] = {}
        self.reference: dict[str, torch.Tensor] = {}
        cached = _load_neighbours(cache_path)
        for kind in ("pgd", "pgd_away", "gaussian"):
            if cached is not None:
                self.neighbours[kind], self.reference[kind] = cached[f"x.{kind}"], cached[f"ref.{kind}"]
                continue
            x_nb, _ = neighbourhood(
                original,
                src.x,
                src.y,
                kind,
                self.cfg.seed,
                self.cfg.eps,
                self.cfg.step,
                self.cfg.steps,
                self.cfg.sigma,
                self.cfg.copies,
                device=self.device,
            )
            self.neighbours[kind] = x_nb
            self.reference[kind] = predict(original, x_nb, self.cfg.batch_size, self.device)
        if cache_path is not None and cached is None:
            tensors = {f"x.{k}": v for k, v in self.neighbours.items()}
            tensors.update({f"ref.{k}": v for k, v in self.reference.items()})
            save_tensors(cache_path, tensors, {"eval": asdict(self.cfg)})
        retain = splits.retain
        if retain is not None and self.cfg.retain_limit and len(retain) > self.cfg.retain_limit:
            g = torch.Generator().manual_seed(self.cfg.seed)
            retain = retain.subset(torch.randperm(len(retain), generator=g)[: self.cfg.retain_limit])
        self.retain = retain
        log.info(
            "evaluation neighbourhoods ready (%d points each, %.0fs)",
            len(src) * self.cfg.copies,
            time.time() - t0,
        )

    def __call__(self, model: nn.Module) -> dict[str, Any]:
        """All measures for `model` (accuracies in percent)."""
        return self.measure(model)[0]

    def measure(
        self, model: nn.Module
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(the row of `__call__`, features, logits) on forget, test_forget, test_retain and shots: the
        audit and the benchmark job read the model's outputs from here instead of computing them again."""
        cfg, s, dev = self.cfg, self.splits, self.device
        # channels-last: faster inference, values agree to ~1e-6 (benchmarks/README.md, throughput)
        model = model.to(dev).to(memory_format=torch.channels_last).eval()
        feats, logits = outputs(
            model, s, ("forget", "test_forget", "test_retain", "shots"), cfg.batch_size, dev
        )
        row = self._accuracies(model, logits)
        row.update(self._over_unlearning(model))
        row["dispersion"] = dispersion_score(feats["test_forget"], s.test_forget.y)
        row["dispersion_train"] = dispersion_score(feats["forget"], s.forget.y)
        row.update(self._pra(model, feats))
        return row, feats, logits

    def _accuracies(self, model: nn.Module, logits: dict[str, torch.Tensor]) -> dict[str, Any]:
        s, cfg = self.splits, self.cfg
        row: dict[str, Any] = {
            "forget_acc": accuracy(logits["forget"], s.forget.y),
            "test_forget_acc": accuracy(logits["test_forget"], s.test_forget.y),
            "test_retain_acc": accuracy(logits["test_retain"], s.test_retain.y),
        }
        if self.retain is not None:
            retain_logits = predict(model, self.retain.x, cfg.batch_size, self.device)
            row["retain_acc"] = accuracy(retain_logits, self.retain.y)
        test_logits = torch.cat([logits["test_forget"], logits["test_retain"]])
        test_y = torch.cat([s.test_forget.y, s.test_retain.y])
        row["test_acc"] = accuracy(test_logits, test_y)
        row["per_class_test_acc"] = per_class_accuracy(test_logits, test_y, s.num_classes)
        return row

    def _over_unlearning(self, model: nn.Module) -> dict[str, float]:
        """OU@ε (docs/method.md §3) on the three neighbourhoods built from the original."""
        row = {}
        for kind in ("pgd", "pgd_away", "gaussian"):
            model_logits = predict(model, self.neighbours[kind], self.cfg.batch_size, self.device)
            row[f"ou_{kind}"] = over_unlearning(
                self.reference[kind], model_logits, self.splits.forget_classes, self.cfg.divergence
            )
        return row

    def _pra(self, model: nn.Module, feats: dict[str, torch.Tensor]) -> dict[str, Any]:
        """PRA (docs/method.md §4) with the configured row, and our scaled row, at the attacker's best α."""
        s, cfg = self.splits, self.cfg
        parts = {k: (feats[k], getattr(s, k).y) for k in ("forget", "test_forget", "test_retain")}
        head = model.head.cpu()
        pra = pra_sweep(head, feats["shots"], s.shots.y, s.forget_classes, parts, cfg.alphas, cfg.pra_variant)
        # Our stronger variant (the prototype scaled to a typical head row, evaluation/pra.py): a unit-norm
        # cosine row can lose to well-trained rows merely by being short, which flatters a model.
        scaled = pra_sweep(head, feats["shots"], s.shots.y, s.forget_classes, parts, cfg.alphas, "scaled")
        model.head.to(self.device)
        curve = zip(
            pra.alphas, pra.test_forget_acc, pra.forget_acc, pra.test_retain_acc, pra.test_acc, strict=True
        )
        return {
            "pra_scaled_forget_acc": scaled.at_best("test_forget_acc"),
            "pra_scaled_alpha": scaled.best_alpha,
            "pra_forget_acc": pra.at_best("test_forget_acc"),
            "pra_train_forget_acc": pra.at_best("forget_acc"),
            "pra_retain_acc": pra.at_best("test_retain_acc"),
            "pra_alpha": pra.best_alpha,
            "pra_alpha1_forget_acc": pra.test_forget_acc[-1] if pra.alphas[-1] == 1.0 else float("nan"),
            "pra_curve": [
                {"alpha": a, "test_forget_acc": f, "forget_acc": tf, "test_retain_acc": r, "test_acc": t}
                for a, f, tf, r, t in curve
            ],
        }

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg)


# Every module whose code can change a measured number: the pure measure functions, the measures
# themselves, the heads (PRA writes rows into them) and the inference helper every measure reads
# a model through. Cached evaluation rows are keyed on this digest, so a change here re-measures.
MEASURE_CODE = ("functional", "evaluation", "models/heads.py", "models/batchnorm.py", "training/inference.py")


def measure_code_files() -> list[Path]:
    """Every source file a measured number depends on (MEASURE_CODE, folders expanded)."""
    root = Path(__file__).resolve().parent.parent
    files: list[Path] = []
    for entry in MEASURE_CODE:
        path = root / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def metric_code_digest() -> str:
    """Changes whenever the code that computes a measure changes (stale cached rows are ignored)."""
    root = Path(__file__).resolve().parent.parent
    return digest([[str(f.relative_to(root)), file_digest(f)] for f in measure_code_files()])
