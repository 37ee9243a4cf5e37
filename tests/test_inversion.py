"""Model inversion (DeepInversion): images the model takes for the asked classes, model untouched."""

import pytest
import torch
from test_spotter_auto import data, original

from spotter.functional.inversion import InversionConfig, _BatchNormStatistics, invert
from spotter.training.inference import predict


def test_inverted_images_are_taken_for_their_classes_and_match_batchnorm_statistics():
    model, splits = original(), data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks_before = sum(len(m._forward_hooks) for m in model.modules())
    wanted = torch.arange(1, 6).repeat_interleave(4)
    shape = tuple(splits.forget.x.shape[1:])
    x = invert(model, wanted, shape, InversionConfig(steps=40), torch.Generator().manual_seed(0))
    assert x.shape == (len(wanted), *shape) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert (predict(model, x).argmax(1) == wanted).float().mean() >= 0.9
    # the feature statistics of the inverted batch sit closer to the running ones than noise does
    stats = _BatchNormStatistics(model)
    with torch.no_grad():
        model(x)
        inverted = float(stats.take(torch.device("cpu")))
        model(torch.rand_like(x))
        noise = float(stats.take(torch.device("cpu")))
    stats.remove()
    assert inverted < noise
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched
    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks_before
    assert all(p.requires_grad for p in model.parameters()) and not model.training


def test_inversion_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        invert(original(), torch.tensor([1]), (16, 16))
    with pytest.raises(ValueError, match="steps"):
        invert(original(), torch.tensor([1]), (1, 16, 16), InversionConfig(steps=0))
