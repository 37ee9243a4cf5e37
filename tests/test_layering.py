"""Dependencies point one way (design.md, "Layout"): checked by importing modules in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
for name in {imports!r}:
    __import__(name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("spotter", "sklearn", "scipy")))))
"""

CASES = {
    # metric maths, losses and neighbourhoods import only torch (and each other)
    "maths": (
        ["spotter.metrics", "spotter.losses", "spotter.perturb"],
        [
            "sklearn",
            "scipy",
            "spotter.train",
            "spotter.methods",
            "spotter.cli",
            "spotter.data",
            "spotter.attacks",
        ],
    ),
    # a method never imports metrics, attacks, evaluation or the CLI
    "method": (
        ["spotter.methods.spotter"],
        [
            "spotter.metrics",
            "spotter.attacks",
            "spotter.evaluate",
            "spotter.cli",
            "spotter.commands",
            "sklearn",
        ],
    ),
}


@pytest.fixture(scope="module")
def loaded() -> dict[str, list[str]]:
    procs = {
        key: subprocess.Popen(
            [sys.executable, "-c", PROBE.format(imports=imports)], stdout=subprocess.PIPE, text=True
        )
        for key, (imports, _) in CASES.items()
    }
    out = {}
    for key, proc in procs.items():
        stdout, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        out[key] = json.loads(stdout)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_imports_point_one_way(loaded, case):
    imports, forbidden = CASES[case]
    modules = loaded[case]
    assert set(imports) <= set(modules)  # the probe really imported them
    bad = [m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert not bad, f"importing {imports} pulled in {bad}"
