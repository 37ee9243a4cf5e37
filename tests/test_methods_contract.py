"""The method contract (docs/design.md): every registered method and every "+spotter" combination
returns a new model, leaves the input untouched, keeps weights finite, is deterministic under a
seed, has an inert Config and receives only the data its NEEDS declare."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import typing

import pytest
import torch
from _methods_fixtures import TINY, data, one_thread, original, original_arch, same, state, tiny_config

from spotter import methods
from spotter.methods import _plus
from spotter.methods import spotter as spotter_method


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


BASES = methods.available()
COMBOS = methods.combinations()
ALL = BASES + COMBOS


def test_registry_lists_every_method_and_combination():
    expected = {
        "bad_teacher", "boundary_expand", "boundary_shrink", "delete", "finetune", "grad_ascent",
        "l1_sparse", "neggrad_plus", "random_label", "retrain", "salun", "scar", "scrub", "spotter",
        "unsc", "unsir", "spotter_auto",
    }  # fmt: skip
    assert set(BASES) == expected
    assert not any("+" in n for n in BASES)  # available() lists no combinations
    # spotter_auto is already Spotter's terms and more: it takes no "+spotter"
    assert set(COMBOS) == {f"{n}+spotter" for n in expected - {"retrain", "spotter", "spotter_auto"}}
    assert set(TINY) == expected


@pytest.mark.parametrize("name", ["retrain+spotter", "spotter+spotter", "nosuch+spotter", "nosuch"])
def test_unavailable_names_are_refused(name):
    with pytest.raises(ValueError, match="not available|unknown method"):
        methods.get(name)


@pytest.mark.parametrize("name", ALL)
def test_module_declares_access_docs_and_tune_grid(name):
    module = methods.get(name)
    assert module.NEEDS and set(module.NEEDS) <= set(methods.ACCESS)
    assert (module.__doc__ or "").strip().splitlines()[0].strip()
    fields = {f.name for f in dataclasses.fields(module.Config)}
    assert "seed" in fields
    assert set(getattr(module, "TUNE", {})) <= fields
    if name.endswith("+spotter"):
        base = methods.get(name.removesuffix("+spotter"))
        assert set(module.NEEDS) == set(base.NEEDS) | set(spotter_method.NEEDS)
        assert {f"spotter_{n}" for n in _plus.FIELDS} <= fields
    else:
        assert "Search" in (module.Config.__doc__ or "")  # a documented search range


@pytest.mark.parametrize("name", ALL)
def test_config_is_inert(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = torch.get_rng_state()
    module = methods.get(name)
    a, b = module.Config(), methods.make_config(name)
    assert a == b
    typing.get_type_hints(type(a))  # overrides can check field types
    dataclasses.asdict(a)  # results rows store it
    assert torch.equal(torch.get_rng_state(), rng)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("arch", ["tiny", "vit", "face"])  # CNN+BN, ViT (LayerNorm), cosine head
@pytest.mark.parametrize("name", ALL)
def test_contract(name, arch):
    model, splits = original_arch(arch), data()
    before, mode = state(model), model.training
    cfg = tiny_config(name)
    out = methods.run(name, model, splits, cfg)
    again = methods.run(name, model, splits, cfg)
    assert out is not model and again is not model
    assert same(state(model), before) and model.training == mode  # input untouched
    for k, v in out.state_dict().items():
        assert torch.isfinite(v.float()).all(), k
    assert same(state(out), state(again))  # same cfg (seed) -> same weights
    assert out.head.out_features == splits.num_classes
    assert set(out.state_dict()) == set(model.state_dict())


@pytest.mark.parametrize("protocol", methods.PROTOCOLS)
@pytest.mark.parametrize("name", ALL)
def test_access_contract(name, protocol, monkeypatch):
    """What the method receives is decided by NEEDS and the protocol, not by trust."""
    module = methods.get(name)
    seen = []
    monkeypatch.setattr(module, "unlearn", lambda model, splits, cfg: seen.append(splits) or model)
    splits = data()
    reads_retain = any(n in methods.RETAIN_ACCESS for n in module.NEEDS)
    if reads_retain and protocol == "retain-free":
        with pytest.raises(ValueError, match="retain-free"):
            methods.run(name, original(), splits, protocol=protocol)
        assert seen == []
        return
    methods.run(name, original(), splits, protocol=protocol)
    (got,) = seen
    assert (got.retain is splits.retain) if reads_retain else (got.retain is None)
    assert got.forget is splits.forget and got.forget_classes == splits.forget_classes


def test_methods_import_no_metrics_attacks_or_cli():
    """docs/design.md: a method never imports metrics, attacks, evaluate or the CLI (checked in a fresh
    interpreter, so transitive imports count)."""
    code = (
        "import sys, spotter.methods as m\n"
        "[m.get(n) for n in m.available() + m.combinations()]\n"
        "bad = {'spotter.functional.metrics', 'spotter.evaluation.pra', 'spotter.evaluation.evaluator', 'spotter.cli.main', 'spotter.cli.commands'}\n"
        "print(sorted(bad & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
