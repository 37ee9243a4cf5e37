"""Membership inference attacks, each named for what it counts and which direction is good.

Inputs are logits and labels (tensors), so every function is pure: no model, no data loading.
scikit-learn supplies the attackers and is imported inside the functions that need it
(a dependency of spotter); `confidence`, `entropy` and `auroc` are torch only.

Do not mix them up (docs/baselines.md §4.17):
- `mia_efficacy`: SalUn / Unlearn-Sparse (Jia et al. 2023) — share of D_f the attacker calls
  NON-member, in percent. Higher = better forgetting; the retrained model is the reference, not 100.
- `mia_member_rate`: its complement (100 − efficacy), what DELETE logs from the same function.
- `entropy_attack`: the entropy logistic-regression attack of SCRUB (Kurmanji et al. 2023), also
  used by SSD/SUPREME and SFR-on: its member rate on D_f and its AUROC at telling D_f from
  unseen forget-class test images.
"""

from __future__ import annotations

import torch


def require_sklearn() -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ImportError(
            "membership inference and the linear probe need scikit-learn: "
            "it is a dependency of spotter-unlearning: reinstall it (pip install scikit-learn)"
        ) from None


def confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """p(y | x) for each row, the SalUn attack feature. (N,)."""
    probs = torch.softmax(logits.double(), dim=-1)
    return probs.gather(1, y.long().view(-1, 1)).flatten()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Prediction entropy H(p) in nats, with 0·log 0 = 0. (N,)."""
    probs = torch.softmax(logits.double(), dim=-1)
    return -torch.special.xlogy(probs, probs).sum(-1)


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve in [0, 1] (Mann-Whitney U, ties count one half); nan if one class
    is missing. 0.5 = the score cannot tell positives (label 1) from negatives (label 0)."""
    scores, labels = scores.double().flatten(), labels.bool().flatten()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = scores.argsort()
    # 1-based ranks, tied scores sharing the mean rank of their group (which ends at rank `ends`)
    _, inverse, counts = torch.unique_consecutive(scores[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = torch.empty_like(scores)
    ranks[order] = (ends - (counts.double() - 1) / 2)[inverse]
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _column(x: torch.Tensor):  # noqa: ANN202 - numpy array
    return x.detach().double().cpu().numpy().reshape(-1, 1)


def svc_member_predictions(
    member_conf: torch.Tensor, nonmember_conf: torch.Tensor, target_conf: torch.Tensor
) -> torch.Tensor:
    """SalUn's attacker: an RBF SVC (C = 3, gamma = "auto") fitted on shadow confidences, members
    labelled 1 and non-members 0; returns its membership call (bool) for every target. (N,).

    Members are cut to the first len(nonmember_conf) rows, as SalUn's shadow member set is
    `Subset(retain, range(len(test)))`.
    """
    require_sklearn()
    import numpy as np
    from sklearn.svm import SVC

    member_conf = member_conf[: len(nonmember_conf)]
    if len(member_conf) == 0 or len(nonmember_conf) == 0:
        raise ValueError("the MIA needs non-empty shadow member and non-member sets")
    x = np.concatenate([_column(member_conf), _column(nonmember_conf)])
    y = np.concatenate([np.ones(len(member_conf)), np.zeros(len(nonmember_conf))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return torch.from_numpy(clf.predict(_column(target_conf)) == 1)


def mia_efficacy(
    member_logits: torch.Tensor,
    member_y: torch.Tensor,
    nonmember_logits: torch.Tensor,
    nonmember_y: torch.Tensor,
    forget_logits: torch.Tensor,
    forget_y: torch.Tensor,
) -> float:
    """MIA-efficacy (SalUn/Sparse, docs/baselines.md §4.17): percent of D_f predicted NON-member.

    Higher = better forgetting; compare with the retrained model, not with 100.

    Args:
        member_logits, member_y: shadow members, D_r without augmentation in its stored order
            (only the first len(nonmember) rows are used).
        nonmember_logits, nonmember_y: shadow non-members, the test set of the retain classes.
        forget_logits, forget_y: the forget train set D_f, the attack's targets.
    """
    called_member = svc_member_predictions(
        confidence(member_logits, member_y),
        confidence(nonmember_logits, nonmember_y),
        confidence(forget_logits, forget_y),
    )
    if len(called_member) == 0:
        return float("nan")
    return float((~called_member).double().mean() * 100)


def mia_member_rate(*args: torch.Tensor) -> float:
    """Percent of D_f predicted MEMBER (100 − `mia_efficacy`, same arguments), as DELETE logs it.

    Lower = better forgetting; compare with the retrained model.
    """
    return 100.0 - mia_efficacy(*args)


def entropy_attack(
    member_logits: torch.Tensor,
    nonmember_logits: torch.Tensor,
    forget_logits: torch.Tensor,
    test_forget_logits: torch.Tensor,
) -> dict[str, float]:
    """SCRUB's entropy attack: logistic regression (class_weight="balanced") on prediction entropy,
    members (label 1) vs non-members (0), then applied to the forget classes.

    Returns:
        member_rate: percent of D_f the attacker calls member (SCRUB's number). Compare with the
            retrained model; lower = less evidence that D_f was trained on.
        auroc: how well the attacker's score separates D_f (train) from forget-class TEST images,
            in [0, 1]. 0.5 = indistinguishable (what a model that never saw D_f gives); far from
            0.5 in either direction means the model still treats its former training images apart.
    """
    require_sklearn()
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([_column(entropy(member_logits)), _column(entropy(nonmember_logits))])
    y = np.concatenate([np.ones(len(member_logits)), np.zeros(len(nonmember_logits))])
    clf = LogisticRegression(class_weight="balanced", solver="lbfgs").fit(x, y)
    f, tf = _column(entropy(forget_logits)), _column(entropy(test_forget_logits))
    member_rate = float(clf.predict(f).mean() * 100) if len(f) else float("nan")
    scores = torch.from_numpy(clf.decision_function(np.concatenate([f, tf])))
    labels = torch.cat([torch.ones(len(f)), torch.zeros(len(tf))])
    return {"member_rate": member_rate, "auroc": auroc(scores, labels)}
