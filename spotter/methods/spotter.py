"""Spotter: masked distillation on forget samples and their neighbours, plus feature dispersion.

Data: reads only the original model and the forget set D_f with its labels (no retain data).
Reference: Ha, Park, Yoon, "Unlearning's Blind Spots: Over-Unlearning and Prototypical Relearning
Attack", ICML 2026 (arXiv 2506.01318), Eq. for L in §5 of our docs/method.md:

    L = λ1·KL(mask(p_orig(x)) ‖ p_θ(x)) + (1-λ1)·KL(mask(p_orig(x')) ‖ p_θ(x')) + λ2·disp(h_θ(x), y)

Non-obvious settings: x' are PGD neighbours (toward the runner-up, as the paper's text says; the
authors' code and preset `authors` step away from it) built ONCE from the frozen
original with `neighbour_seed`, a different draw from the one OU@ε is evaluated on. BatchNorm stays
in eval mode (single-class batches would corrupt its statistics); its affine parameters train.

Our extension (not in the paper, off unless `lambda3` > 0): + λ3·(simulated PRA), the attack of
docs/method.md §4 run inside each forget batch with random shots and α (`losses.prototype_attack_loss`).
Why: dispersion is only a proxy for PRA robustness, and on the embedded default it did not stop the
attack where penalising the attack itself did (the measurements: benchmarks/README.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from spotter.data import Splits, TensorSet, to_float
from spotter.functional.losses import dispersion, masked_kd, prototype_attack_loss
from spotter.functional.perturb import DIRECTIONS, neighbourhood
from spotter.functional.prototype import VARIANTS as PROTO_VARIANTS
from spotter.methods import _common
from spotter.models.batchnorm import set_mode
from spotter.progress import bar as progress_bar
from spotter.training.inference import predict

log = logging.getLogger("spotter")

NEEDS = ("forget",)


@dataclass
class Config:
    """Spotter's settings. Defaults are the authors' CIFAR-10 ResNet-18 values (docs/method.md §5).

    Search ranges: lr 1e-5..1e-2 (log), lambda1 0.3..0.9, lambda2 0.1..5 (log), epochs 3..20.
    """

    lambda1: float = 0.7  # weight of the clean-sample term; 1-λ1 weighs the neighbours (authors)
    lambda2: float = 1.0  # dispersion weight (authors; 0.1 trades PRA for OU@ε, docs/method.md §5)
    temperature: float = 1.0  # authors
    lr: float = 1e-4  # authors
    momentum: float = 0.9  # authors
    weight_decay: float = 5e-4  # authors
    epochs: int = 10  # authors
    batch_size: int = 128  # authors
    eps: float = 0.03  # neighbourhood L∞ radius in pixels (docs/method.md §3)
    step: float = 0.01  # PGD step (docs/method.md §3)
    steps: int = 3  # PGD steps (docs/method.md §3)
    direction: str = "toward"  # PGD toward the runner-up class (docs/method.md §3)
    copies: int = 1  # neighbours per forget sample
    neighbour_seed: int = 0  # the training draw; evaluation uses another seed
    freeze_bn: bool = True  # docs/method.md §5
    train_head: bool = True  # False freezes the linear head: only the backbone moves (authors: True)
    lambda3: float = 0.0  # weight of the simulated-PRA term (ours, not in the paper; 0 = off)
    proto_variants: str = "cosine,scaled"  # PRA rows the simulated attack writes (of cosine, l2, scaled)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.lambda1 <= 1.0:
            raise ValueError(f"lambda1 must be in [0, 1], got {self.lambda1}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction {self.direction!r}; valid choices: {', '.join(DIRECTIONS)}")
        if self.lambda3 < 0:
            raise ValueError(f"lambda3 must be >= 0, got {self.lambda3}")
        bad = [v.strip() for v in self.proto_variants.split(",") if v.strip() not in PROTO_VARIANTS]
        if bad:
            raise ValueError(
                f"proto_variants {self.proto_variants!r}: unknown {', '.join(map(repr, bad))}; "
                f"give a comma-separated list of: {', '.join(PROTO_VARIANTS)}"
            )
        if self.epochs < 0 or self.batch_size < 1 or self.copies < 1:
            raise ValueError("epochs must be >= 0, batch_size >= 1 and copies >= 1")


# Named settings. The paper's text has the training neighbours step toward the runner-up class;
# the authors' released code steps away from it (ascends its cross-entropy). `authors` is their
# method as released (away); `authors-toward` is the same values with our default direction.
PRESETS: dict[str, dict] = {
    "authors": {"direction": "away"},
    "authors-toward": {},
    # The paper's objective searched on the embedded default (Fashion-MNIST, width-16 ResNet-18,
    # class 0, seed 0; benchmarks/spotter_search.py): a larger lr than the authors' to move the
    # model at all, a frozen head and a softer teacher to spare the retain classes near the forget
    # class. Its measurements and history: benchmarks/README.md.
    "fashion-mnist-paper": {"lr": 7e-4, "train_head": False, "temperature": 2.0, "lambda2": 1.25},
    # The shipped preset for this dataset: the above plus our simulated-attack term (λ3), with the
    # retain cost it brings paid back by less dispersion, a softer teacher, more weight on the
    # neighbours and wider training neighbourhoods (OU@ε is still measured at ε 0.03). Searched on
    # class 0 only; how it does on the other classes: benchmarks/README.md.
    "fashion-mnist": {
        "lr": 7e-4,
        "train_head": False,
        "temperature": 4.0,
        "lambda1": 0.5,
        "lambda2": 0.25,
        "lambda3": 0.5,
        "eps": 0.1,
        "step": 0.04,
    },
}


def spread_order(y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A shuffled order in which every class is spread evenly over the epoch, so each batch holds
    samples of every forget class (the dispersion term needs >= 2 of a class per batch)."""
    position = torch.empty(len(y))
    for c in y.unique():
        idx = (y == c).nonzero().flatten()
        perm = idx[torch.randperm(len(idx), generator=generator)]
        jitter = torch.rand(len(idx), generator=generator)
        position[perm] = (torch.arange(len(idx)) + jitter) / len(idx)
    return position.argsort()


def spotter_terms(
    student: nn.Module,
    x: torch.Tensor,
    x_nb: torch.Tensor,
    y: torch.Tensor,
    teacher_logits: torch.Tensor,
    teacher_nb_logits: torch.Tensor,
    forget_classes: tuple[int, ...],
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean masked KD, neighbour masked KD, dispersion, clean features) for one batch; shared with
    "+spotter". The features feed the optional simulated-attack term (`lambda3`)."""
    feats = student.features(torch.cat([x, x_nb]))
    logits = student.head(feats)
    n = len(x)
    kd_clean = masked_kd(logits[:n], teacher_logits, forget_classes, temperature)
    kd_nb = masked_kd(logits[n:], teacher_nb_logits, forget_classes, temperature)
    return kd_clean, kd_nb, dispersion(feats[:n], y), feats[:n]


def targets(
    teacher: nn.Module, forget: TensorSet, cfg: Config, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed training material, built once from the frozen teacher (shared with "+spotter"):
    (PGD neighbours, their labels, index of each neighbour's clean image, teacher logits on the
    clean images, teacher logits on the neighbours)."""
    x_nb, y_nb = neighbourhood(
        teacher,
        forget.x,
        forget.y,
        "pgd" if cfg.direction == "toward" else "pgd_away",
        cfg.neighbour_seed,
        cfg.eps,
        cfg.step,
        cfg.steps,
        copies=cfg.copies,
        device=device,
    )
    src = torch.arange(len(forget)).repeat(cfg.copies)  # neighbour i comes from clean i % N
    return x_nb, y_nb, src, predict(teacher, forget.x, device=device), predict(teacher, x_nb, device=device)


def batch_terms(
    student: nn.Module,
    forget_x: torch.Tensor,
    material: tuple[torch.Tensor, ...],
    idx: torch.Tensor,
    forget_classes: tuple[int, ...],
    temperature: float,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spotter's terms on the batch `idx` of neighbours (indices into `targets()`'s material):
    (clean KD, neighbour KD, dispersion, clean features, labels, index of each clean image)."""
    x_nb, y_all, x_clean_idx, t_clean, t_nb = material
    src = x_clean_idx[idx]
    x = to_float(forget_x[src].to(device)).contiguous(memory_format=torch.channels_last)
    xn = x_nb[idx].to(device).contiguous(memory_format=torch.channels_last)
    y = y_all[idx].to(device)
    terms = spotter_terms(
        student, x, xn, y, t_clean[src].to(device), t_nb[idx].to(device), forget_classes, temperature
    )
    return (*terms, y, src)


def unlearn(model: nn.Module, splits: Splits, cfg: Config) -> nn.Module:
    """Return an unlearned copy of `model`; `model` is the frozen teacher and stays untouched."""
    forget = _common.require(splits.forget, "forget", "spotter")
    student, device = _common.start(model, cfg.seed)
    material = targets(model, forget, cfg, device)
    y_all = material[1]
    # channels-last convolutions: same maths, faster on CPU and GPU
    student = student.to(memory_format=torch.channels_last)
    if not cfg.train_head:
        # The head's rows and biases are shared by every input: moving them to lower one class's
        # logit can shift the boundaries between retain classes as well.
        student.head.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = _common.optimizer("sgd", params, cfg.lr, cfg.momentum, cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    # the simulated attack draws from its own stream, so switching it on leaves the batch order as is
    g_attack = torch.Generator().manual_seed(cfg.seed + 7919)
    variants = tuple(v.strip() for v in cfg.proto_variants.split(","))
    names = ("loss", "kd_clean", "kd_neighbour", "dispersion", "prototype")
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        set_mode(student, cfg.freeze_bn)
        order = spread_order(y_all, g)
        sums = torch.zeros(len(names))
        shown = progress_bar(-(-len(order) // cfg.batch_size), f"spotter epoch {epoch + 1}/{cfg.epochs}")
        for i in range(0, len(order), cfg.batch_size):
            if shown is not None:
                shown.update()
            idx = order[i : i + cfg.batch_size]
            kd_clean, kd_nb, disp, feats, y, _ = batch_terms(
                student, forget.x, material, idx, splits.forget_classes, cfg.temperature, device
            )
            proto = torch.zeros((), device=device)
            if cfg.lambda3 > 0:  # ours: the PRA attacker simulated on this batch (docs/method.md §5)
                proto = prototype_attack_loss(
                    feats, y, student.head, splits.forget_classes, g_attack, variants=variants
                )
            # L = λ1·KD(x) + (1-λ1)·KD(x') + λ2·disp (+ λ3·PRA, ours)
            loss = (
                cfg.lambda1 * kd_clean + (1 - cfg.lambda1) * kd_nb + cfg.lambda2 * disp + cfg.lambda3 * proto
            )
            total = _common.step(opt, loss, student, what="spotter loss")
            terms = [total, kd_clean.item(), kd_nb.item(), disp.item(), proto.item()]
            sums += torch.tensor(terms) * len(idx)
        means = (sums / len(order)).tolist()
        if shown is not None:
            shown.close()
        _common.log_epoch(history, "spotter", epoch + 1, cfg.epochs, **dict(zip(names, means, strict=True)))
    student.requires_grad_(True)  # the returned model is an ordinary trainable model again
    return _common.finish(student, history)
