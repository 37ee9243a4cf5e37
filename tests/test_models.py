"""Every registered model honours the Classifier contract; user modules can be adapted."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spotter.models import MODELS, Classifier, ModelSpec, adapt, build_model, default_width


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("channels", [1, 3])
def test_registered_model_contract(name, channels):
    mean, std = (0.4,) * channels, (0.2,) * channels
    torch.manual_seed(0)
    model = build_model(ModelSpec(name, 5, channels, 4, mean, std)).eval()
    x = torch.rand(3, channels, 8, 8)
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
        assert logits.shape == (3, 5) and model.num_classes == 5
        assert feats.shape == (3, model.head.in_features) and model.feature_dim == feats.shape[1]
        assert torch.equal(logits, model.head(feats))
        # normalisation lives inside the model: features(x) = backbone((x - mean) / std)
        assert torch.allclose(feats, model.backbone((x - 0.4) / 0.2), atol=1e-6)
        assert not torch.allclose(feats, model.backbone(x), atol=1e-3)
    assert isinstance(model.head, nn.Linear)
    assert default_width(name) == MODELS[name][1]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_width_scales_features(name):
    dims = [build_model(ModelSpec(name, 3, 1, w)).feature_dim for w in (2, 4)]
    assert dims[1] == 2 * dims[0]


def test_resnet18_width_and_channels():
    model = build_model(ModelSpec("resnet18", 7, 2, 3)).eval()
    assert model.feature_dim == 8 * 3  # 8x the stem width, as in the CIFAR ResNet-18 (512 at 64)
    assert model.backbone.conv1.in_channels == 2 and model.backbone.conv1.out_channels == 3
    with torch.no_grad():
        assert model(torch.rand(2, 2, 8, 8)).shape == (2, 7)
    blocks = [len(getattr(model.backbone, f"layer{i}")) for i in range(1, 5)]
    assert blocks == [2, 2, 2, 2]


def test_per_channel_normalisation():
    model = build_model(ModelSpec("tiny", 3, 3, 2, (0.1, 0.2, 0.3), (0.5, 0.6, 0.7))).eval()
    x = torch.rand(2, 3, 8, 8)
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.6, 0.7]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model.features(x), model.backbone((x - mean) / std), atol=1e-6)


@pytest.mark.parametrize(
    "spec, match",
    [
        (ModelSpec("vgg", 3), "'vgg'"),
        (ModelSpec("tiny", 1), "num_classes"),
        (ModelSpec("tiny", 3, width=0), "width"),
        (ModelSpec("tiny", 3, 3, 4, (0.1, 0.2), (0.1, 0.2)), "mean/std"),
    ],
)
def test_build_model_validates(spec, match):
    with pytest.raises(ValueError, match=match):
        build_model(spec)


def user_module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 6),
        nn.ReLU(),
        nn.Linear(6, 5),
    )


def test_adapt_gives_identical_outputs():
    module = user_module().eval()
    x = torch.rand(7, 3, 4, 4)
    with torch.no_grad():
        expected = module(x)
    wrapped = adapt(copy.deepcopy(module), example=x)
    assert isinstance(wrapped, Classifier) and wrapped.num_classes == 5 and wrapped.feature_dim == 6
    with torch.no_grad():
        assert torch.allclose(wrapped.eval()(x), expected, atol=1e-6)
        assert wrapped.features(x).shape == (7, 6)
    named = adapt(copy.deepcopy(module), head="5")
    with torch.no_grad():
        assert torch.allclose(named.eval()(x), expected, atol=1e-6)


def test_adapt_refuses_modules_without_a_linear_head():
    with pytest.raises(ValueError, match="no nn.Linear"):
        adapt(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
    with pytest.raises(ValueError, match="not an nn.Linear"):
        adapt(user_module(), head="1")


def test_adapt_detects_a_linear_that_is_not_applied_last():
    class LinearFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.tanh(self.fc(x.flatten(1)))

    x = torch.rand(3, 4, 1, 1)
    with pytest.raises(ValueError, match="not applied last"):
        adapt(LinearFirst(), example=x)
