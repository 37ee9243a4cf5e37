"""Face identities: cosine/margin heads, PRA on a bias-free cosine head, the identity-folder loader,
verification maths, and Spotter end to end on a synthetic identity tree written as PNGs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _methods_fixtures import data, one_thread, original_arch
from torch import nn

pytest.importorskip("PIL")

from spotter import methods  # noqa: E402
from spotter.data import TensorSet, load, make_splits  # noqa: E402
from spotter.data.faces import carve, identity_ids, load_faces, write_synthetic_identities  # noqa: E402
from spotter.evaluation.evaluator import Evaluator  # noqa: E402
from spotter.evaluation.faces import FaceEvalConfig, face_measures, tar_at_far, templates, threshold_at  # noqa: E402
from spotter.evaluation.pra import attacked_head, pra_sweep, prototype_relearning  # noqa: E402
from spotter.methods.boundary_expand import expand_head, prune_head  # noqa: E402
from spotter.models import HEADS, Classifier, ModelSpec, build_model  # noqa: E402
from spotter.models.faceresnet import FaceResNetFeatures  # noqa: E402
from spotter.models.heads import CosineHead, training_logits  # noqa: E402
from spotter.training.fit import TrainConfig, fit  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def test_cosine_head_is_a_bias_free_linear_giving_scaled_cosines():
    torch.manual_seed(0)
    head = CosineHead(6, 4, scale=30.0)
    assert isinstance(head, nn.Linear) and head.bias is None
    f = torch.randn(5, 6)
    expected = 30 * F.normalize(f, dim=1) @ F.normalize(head.weight, dim=1).T
    assert torch.allclose(head(f), expected, atol=1e-5)
    assert torch.allclose(head(3 * f), head(f), atol=1e-5)  # scale-free in the features


@pytest.mark.parametrize("kind, m", [("cosface", 0.35), ("arcface", 0.5)])
def test_margins_change_only_the_target_logit(kind, m):
    s = 16.0
    head = CosineHead(3, 4, scale=s, margin=m, kind=kind)
    cos = torch.tensor([[0.8, 0.1, -0.3, 0.2], [0.0, -0.99, 0.5, 0.1]])
    y = torch.tensor([0, 1])
    out = head.margin_logits(s * cos, y)
    theta = math.acos(0.8)
    want0 = 0.8 - m if kind == "cosface" else math.cos(theta + m)
    assert out[0, 0].item() == pytest.approx(s * want0, abs=1e-4)
    # cos = -0.99: θ + m passes π, so ArcFace falls back to cos θ - m·sin m (monotone)
    want1 = -0.99 - m if kind == "cosface" else -0.99 - m * math.sin(m)
    assert out[1, 1].item() == pytest.approx(s * want1, abs=1e-3)
    keep = torch.ones_like(cos, dtype=torch.bool)
    keep[0, 0] = keep[1, 1] = False
    assert torch.allclose(out[keep], s * cos[keep], atol=1e-5)


def test_fit_trains_a_margin_head_on_margin_logits():
    """fit() applies the head's margin (the training loss is larger than on plain s·cos logits)."""
    splits = data()

    def run(kind: str) -> float:
        torch.manual_seed(0)
        features = nn.Sequential(nn.Flatten(), nn.Linear(256, 8))
        model = Classifier(features, CosineHead(8, 6, 16.0, 0.35, kind), (0.5,), (0.25,))
        cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05, select="last", channels_last=False)
        return fit(model, splits.retain, None, cfg)[1].epochs[0]["loss"]

    assert run("cosface") > run("none") + 0.5
    plain = nn.Linear(3, 2)
    logits, y = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
    assert torch.equal(training_logits(Classifier(nn.Identity(), plain), logits, y), logits)


def test_registered_face_models_use_margin_heads():
    for name, kind in (("face_arcface", "arcface"), ("face_cosface", "cosface")):
        model = build_model(ModelSpec(name, 5, 3, 2)).eval()
        assert isinstance(model.head, CosineHead) and model.head.kind == kind and name in HEADS
        with torch.no_grad():
            logits = model(torch.rand(2, 3, 32, 32))
        assert logits.shape == (2, 5) and logits.abs().max() <= model.head.scale + 1e-4


def test_pra_row_write_on_a_cosine_head_is_the_normalised_mix():
    torch.manual_seed(0)
    head = CosineHead(4, 3, scale=10.0)
    feats, y = torch.randn(6, 4), torch.tensor([1] * 6)
    p_hat = F.normalize(feats.mean(0), dim=0)
    for alpha in (0.3, 1.0):
        w, b = attacked_head(head.weight, None, p_hat[None], torch.zeros(1), [1], alpha, cosine=True)
        want = F.normalize(alpha * p_hat + (1 - alpha) * F.normalize(head.weight[1], dim=0), dim=0)
        assert b is None and torch.allclose(w[1], want, atol=1e-6)
        assert torch.equal(w[[0, 2]], head.weight[[0, 2]])
    model = Classifier(nn.Identity(), head)
    attacked = prototype_relearning(model, feats, y, [1], 1.0)
    assert attacked.head.bias is None and torch.allclose(attacked.head.weight[1], p_hat, atol=1e-6)
    assert torch.equal(model.head.weight, head.weight)  # a copy was attacked
    probe = torch.randn(5, 4)
    labelled = {k: (probe, torch.ones(5, dtype=torch.long)) for k in ("forget", "test_forget", "test_retain")}
    sweep = pra_sweep(head, feats, y, [1], labelled, alphas=(1.0,))
    acc = float((attacked.head(probe).argmax(1) == 1).float().mean() * 100)
    assert sweep.test_forget_acc == [pytest.approx(acc)]


def test_pra_on_a_plain_linear_head_without_bias():
    head = nn.Linear(4, 3, bias=False)
    feats, y = torch.randn(6, 4), torch.tensor([2] * 6)
    attacked = prototype_relearning(Classifier(nn.Identity(), head), feats, y, [2], 0.5)
    assert attacked.head.bias is None
    want = 0.5 * F.normalize(feats.mean(0), dim=0) + 0.5 * head.weight[2]
    assert torch.allclose(attacked.head.weight[2], want, atol=1e-6)


def test_boundary_expand_keeps_the_cosine_head():
    head = CosineHead(4, 3, scale=8.0, margin=0.2, kind="arcface")
    wide = expand_head(head)
    assert isinstance(wide, CosineHead) and wide.out_features == 4 and wide.scale == 8.0
    back = prune_head(wide)
    assert isinstance(back, CosineHead) and back.kind == "arcface" and torch.equal(back.weight, head.weight)


def test_verification_maths():
    impostor = torch.arange(1000, dtype=torch.float32) / 1000  # 0.000 .. 0.999
    tau = threshold_at(impostor, 0.01)
    assert (impostor > tau).sum() == 10  # exactly FAR of the impostors accepted
    genuine = torch.tensor([0.5, 0.995, 0.999, 1.0])
    tar, _ = tar_at_far(genuine, impostor, 0.01)
    assert tar == pytest.approx(75.0)
    assert threshold_at(impostor, 0.0) == pytest.approx(0.999)  # FAR 0: above every impostor
    # against sklearn's ROC: TAR at the largest FPR <= FAR
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    gen, imp = torch.randn(300, generator=g) + 2, torch.randn(3000, generator=g)
    fpr, tpr, _ = metrics.roc_curve(np.r_[np.ones(300), np.zeros(3000)], np.r_[gen.numpy(), imp.numpy()])
    for far in (1e-2, 1e-3):
        assert tar_at_far(gen, imp, far)[0] == pytest.approx(100 * tpr[fpr <= far].max(), abs=1e-6)
    t = templates(torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2]), [2, 0])
    assert t.shape == (2, 3) and torch.allclose(t.norm(dim=1), torch.ones(2))


@pytest.fixture(scope="module")
def face_root(tmp_path_factory):
    return write_synthetic_identities(
        tmp_path_factory.mktemp("faces"), identities=8, per_identity=10, size=16, shift=0
    )


def test_identity_folder_loader(face_root):
    train, test, info = load("faces", face_root)
    assert info.num_classes == 8 and info.channels == 3 and info.size == 16
    assert info.class_names[0] == "id_0000"
    assert set(test.y.tolist()) == set(range(8)) == set(train.y.tolist())  # every identity held out
    assert len(train) + len(test) == 80 and torch.bincount(test.y).tolist() == [1] * 8
    again, again_test, _ = load_faces(face_root)
    assert torch.equal(again.x, train.x) and torch.equal(again_test.y, test.y)  # seeded carve
    streamed, streamed_test, _ = load_faces(face_root, stream=True, workers=0)
    assert torch.equal(streamed.x[torch.arange(len(streamed))], train.x)
    tr, te = carve([0] * 10 + [1] * 3 + [2], 0.3, seed=1)
    assert len(te) == 3 + 1 + 0 and set(tr.tolist()).isdisjoint(te.tolist())
    assert identity_ids(info, ["id_0003", 5]) == (3, 5)
    with pytest.raises(ValueError, match="unknown identity"):
        identity_ids(info, ["nobody"])
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load("faces")


def test_spotter_unlearns_identities_on_a_face_model(face_root):
    train, test, info = load_faces(face_root, test_fraction=0.3)
    splits = make_splits(train, test, (0, 1), info.num_classes, val_size=8, shots=3, seed=0)
    torch.manual_seed(0)  # the registered face ResNet, smaller (one block per stage, 4x4 grid, s = 16)
    # width 8, not less: see tests/_methods_fixtures.py (a oneDNN crash on AVX2-only CPUs)
    features = FaceResNetFeatures(width=8, in_channels=3, blocks=(1, 1, 1, 1), grid=4)
    head = CosineHead(features.out_dim, info.num_classes, scale=16.0, margin=0.2, kind="cosface")
    model = Classifier(features, head, info.mean, info.std)
    cfg = TrainConfig(epochs=10, batch_size=8, lr=0.05, select="last", channels_last=False)
    everything = TensorSet(
        torch.cat([splits.forget.x, splits.retain.x]), torch.cat([splits.forget.y, splits.retain.y])
    )
    original, _ = fit(model, everything, None, cfg)
    cfg_eval = FaceEvalConfig(k=3, fars=(0.1,))
    before = face_measures(original.eval(), splits, cfg_eval)
    # learned beyond chance (1 in 8 identities), with room below for the unlearned model; 3 of 6
    # test images is where this toy lands on some CPUs, so the bar is not that edge
    assert before["id_forget_acc"] > 2 * 100 / info.num_classes and before["tar_forget@0.1"] >= 0
    unlearned = methods.run(
        "spotter", original, splits, overrides={"epochs": 5, "lr": 1e-2, "batch_size": 16}
    )
    after = face_measures(unlearned, splits, cfg_eval)
    assert after["id_forget_acc"] < before["id_forget_acc"]
    for row in (before, after):
        assert all(math.isfinite(v) for v in row.values())
    assert set(after) >= {"tar_forget@0.1", "tar_retain@0.1", "rank1_forget", "id_retain_acc"}
    row = Evaluator(original, splits)(unlearned)  # OU@ε and PRA through the cosine head
    assert math.isfinite(row["ou_pgd"]) and 0 <= row["pra_forget_acc"] <= 100


def test_contract_face_fixture_is_a_trained_cosine_model():
    model = original_arch("face")
    assert isinstance(model.head, CosineHead)
    splits = data()
    with torch.no_grad():
        acc = (model(splits.test_retain.x.float() / 255).argmax(1) == splits.test_retain.y).float().mean()
    assert acc > 0.3
