"""The small ViT (features = CLS after the final norm) and the timm adapter path; the method
contract on a ViT runs in test_methods_contract.py (arch "vit")."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from _methods_fixtures import data, one_thread, original_arch
from torch import nn

from spotter.evaluation.evaluator import Evaluator
from spotter.models import MODELS, Classifier, ModelSpec, build_model
from spotter.models.timm_adapter import adapt_timm, from_timm
from spotter.models.vit import ViTFeatures, heads_for, patch_for

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def test_patch_size_follows_the_input_size():
    assert [patch_for(s) for s in (28, 32, 64)] == [4, 4, 8]
    assert heads_for(128) == 4 and heads_for(16) == 1 and heads_for(96) == 3
    assert "vit" in MODELS and "vit64" in MODELS
    assert build_model(ModelSpec("vit", 10, 1, 32)).backbone.patch_size == 4
    assert build_model(ModelSpec("vit64", 10, 3, 32)).backbone.patch_size == 8


@pytest.mark.parametrize("size", [28, 32, 64])
def test_vit_takes_28_to_64_px_and_has_no_batchnorm(size):
    torch.manual_seed(0)
    model = build_model(ModelSpec("vit", 7, 3, 32)).eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert model(x).shape == (2, 7) and model.features(x).shape == (2, 32)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert any(isinstance(m, nn.LayerNorm) for m in model.modules())


def test_features_are_the_cls_token_after_the_final_norm():
    torch.manual_seed(0)
    vit = ViTFeatures(dim=16, depth=2, in_channels=1, image_size=16).eval()
    seen = {}
    vit.norm.register_forward_hook(lambda m, a, out: seen.update(out=out))
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        feats = vit(x)
    assert seen["out"].shape == (3, 1 + 16, 16)  # CLS + a 4x4 grid of 4-px patches
    assert torch.equal(feats, seen["out"][:, 0])
    # position embeddings are interpolated for another grid, and exact for the native one
    assert torch.equal(vit.position(4, 4), vit.pos_embed)
    assert vit.position(7, 7).shape == (1, 50, 16)


def test_pra_and_ou_run_on_a_vit():
    model, splits = original_arch("vit"), data()
    row = Evaluator(model, splits)(copy.deepcopy(model))
    assert row["test_retain_acc"] > 30
    assert math.isfinite(row["ou_pgd"]) and 0 <= row["pra_forget_acc"] <= 100


class TimmLike(nn.Module):
    """Shaped like a timm classifier: forward_features, forward_head(pre_logits), get/reset_classifier."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.fc_norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, num_classes)
        self.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.2, 0.2, 0.2)}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x).flatten(2).transpose(1, 2)  # (B, tokens, C)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.fc_norm(x.mean(1))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(8, num_classes) if num_classes > 0 else nn.Identity()


def test_timm_adapter_on_a_stand_in_module():
    torch.manual_seed(0)
    module = TimmLike().eval()
    x = torch.rand(4, 3, 6, 6)
    with torch.no_grad():
        expected = module((x - 0.5) / 0.2)
    wrapped = adapt_timm(copy.deepcopy(module))
    assert isinstance(wrapped, Classifier) and wrapped.num_classes == 5 and wrapped.feature_dim == 8
    with torch.no_grad():
        assert torch.allclose(wrapped.eval()(x), expected, atol=1e-5)  # its own normalisation
    # the classifier lives only in `head` (no duplicate parameters)
    assert sum(1 for n, _ in wrapped.named_parameters() if "head" in n) == 2
    with pytest.raises(ValueError, match="not a timm classifier"):
        adapt_timm(nn.Linear(3, 2))


def test_real_timm_model():
    timm = pytest.importorskip("timm")
    kwargs = dict(img_size=32, patch_size=4, embed_dim=32, depth=1, num_heads=2)
    module = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=4, **kwargs)
    x = torch.rand(2, 3, 32, 32)
    wrapped = adapt_timm(module, mean=(0.0,), std=(1.0,))
    with torch.no_grad():
        assert wrapped.eval()(x).shape == (2, 4)
    model = from_timm("resnet18", 3, in_chans=1)
    assert model.num_classes == 3


@pytest.mark.parametrize("name", ["vit_fashion_mnist", "vit_cifar10", "casia_webface"])
def test_issue_specs_parse(name):
    from pathlib import Path

    from spotter.bench.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.toml")
    assert spec.jobs and all(j["config"]["model"]["name"] in MODELS for j in spec.jobs)
