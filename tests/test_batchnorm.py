"""BatchNorm helpers: follow_statistics and reestimate_statistics re-estimate running statistics
from probe images."""

from __future__ import annotations

import copy

import torch
from _methods_fixtures import data, original

from spotter.data import to_float
from spotter.models.batchnorm import batchnorm_layers, follow_statistics, reestimate_statistics, set_mode


def _probe() -> torch.Tensor:
    return to_float(data().retain.x[:64])


def test_an_unchanged_student_keeps_the_teachers_statistics_and_modes():
    teacher, x = original(), _probe()
    student = copy.deepcopy(teacher)
    set_mode(student, True)  # train mode, BatchNorm frozen: the modes must come back as they were
    follow_statistics(student, teacher, x)
    for s, t in zip(batchnorm_layers(student), batchnorm_layers(teacher), strict=True):
        assert torch.allclose(s.running_mean, t.running_mean, atol=1e-5)
        assert torch.allclose(s.running_var, t.running_var, rtol=1e-4)
        assert not s.training
    assert student.training and not teacher.training


def test_a_rescaled_first_layer_gets_the_teachers_function_back():
    teacher, x = copy.deepcopy(original()), _probe()
    first = teacher.backbone.body[0]
    with torch.no_grad():  # the teacher's first running statistics are exactly the probe's moments
        c = first((x - teacher.mean) / teacher.std)
        bn = batchnorm_layers(teacher)[0]
        bn.running_mean.copy_(c.mean((0, 2, 3)))
        bn.running_var.copy_(c.var((0, 2, 3), unbiased=False))
    kept = [(b.running_mean.clone(), b.running_var.clone()) for b in batchnorm_layers(teacher)]
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student.backbone.body[0].weight.mul_(2.0)  # every activation of the first layer doubles
    assert not torch.allclose(student(x), teacher(x), atol=1e-3)
    follow_statistics(student, teacher, x)
    s0, s1 = batchnorm_layers(student)
    assert torch.allclose(s0.running_mean, 2 * kept[0][0], atol=1e-5)  # mean_t + (2m - m)
    assert torch.allclose(s0.running_var, 4 * kept[0][1], rtol=1e-4)  # var_t * 4v / v
    assert torch.allclose(s1.running_mean, kept[1][0], atol=1e-4)  # the deeper layer saw the fix
    assert torch.allclose(student(x), teacher(x), atol=1e-4)
    for b, (m, v) in zip(batchnorm_layers(teacher), kept, strict=True):  # the teacher is untouched
        assert torch.equal(b.running_mean, m) and torch.equal(b.running_var, v)


def test_reestimate_statistics_takes_the_images_moments_and_nothing_else():
    model, x = copy.deepcopy(original()), _probe()
    weights = {
        k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k
    }
    set_mode(model, True)
    momenta = [b.momentum for b in batchnorm_layers(model)]
    reestimate_statistics(model, x, batch_size=16)  # four batches, averaged
    first = batchnorm_layers(model)[0]
    with torch.no_grad():
        c = model.backbone.body[0]((x - model.mean) / model.std)
    assert torch.allclose(first.running_mean, c.mean((0, 2, 3)), atol=1e-5)
    per_batch = torch.stack([b.var((0, 2, 3)) for b in c.split(16)]).mean(0)  # unbiased, as torch keeps
    assert torch.allclose(first.running_var, per_batch, rtol=1e-4)
    assert [b.momentum for b in batchnorm_layers(model)] == momenta
    assert model.training and not first.training  # the modes came back
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in weights.items())
