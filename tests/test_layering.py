"""Dependencies point one way (docs/design.md, "Layout"): data -> models -> functional -> training
-> methods -> evaluation -> audit / bench -> report -> cli. Checked by importing each subpackage's
modules in a fresh interpreter and listing what came along, so lazy imports inside functions count
only when they run; the static graph (every import statement) is checked too."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "spotter"

PROBE = """
import json, sys
for name in {imports!r}:
    __import__(name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("spotter", "sklearn", "scipy", "matplotlib", "torch")))))
"""

ABOVE_DATA = ["spotter.models", "spotter.functional", "spotter.training", "spotter.methods"]
ABOVE_METHODS = ["spotter.evaluation", "spotter.audit", "spotter.bench", "spotter.report", "spotter.cli"]

# subpackage -> what it must never import (statically, lazy imports included)
FORBIDDEN = {
    "spotter.io": ["spotter.data", "spotter.models", *ABOVE_DATA, *ABOVE_METHODS],
    "spotter.progress": ["spotter.data", "spotter.models", *ABOVE_DATA, *ABOVE_METHODS],
    "spotter.config": ["spotter.data", "spotter.models", *ABOVE_DATA, *ABOVE_METHODS],
    "spotter.data": ABOVE_DATA + ABOVE_METHODS,
    "spotter.functional": ["spotter.data", "spotter.models", "spotter.training", "spotter.methods", *ABOVE_METHODS],
    "spotter.models": ["spotter.training", "spotter.methods", *ABOVE_METHODS],
    "spotter.training": ["spotter.methods", *ABOVE_METHODS],
    "spotter.methods": ABOVE_METHODS,
    "spotter.evaluation": ["spotter.audit", "spotter.bench", "spotter.report", "spotter.cli"],
    "spotter.audit": ["spotter.bench", "spotter.cli"],
    "spotter.bench": ["spotter.cli"],
    "spotter.cli": [],  # the top: may import anything
    "spotter.report": [
        "spotter.training", "spotter.methods", "spotter.evaluation", "spotter.audit", "spotter.bench", "spotter.cli",
    ],
}  # fmt: skip


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("spotter")}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_static_imports_point_one_way(package: str) -> None:
    bad = []
    for name, path in _modules().items():
        if not _within(name, package):
            continue
        for target in _imports(path):
            if any(_within(target, f) for f in FORBIDDEN[package]):
                bad.append(f"{name} imports {target}")
    assert not bad, bad


def test_every_subpackage_has_a_rule_and_a_docstring() -> None:
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    ruled = {name.split(".")[1] for name in FORBIDDEN}
    assert packages - {"methods"} <= ruled | {"methods"}, packages - ruled
    for p in PACKAGE.glob("*/__init__.py"):
        assert ast.get_docstring(ast.parse(p.read_text())), f"{p} needs a docstring saying what it holds"


def test_no_import_cycle() -> None:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = set()
        for t in _imports(path):
            while t and t not in mods:
                t = t.rpartition(".")[0]
            # a package's __init__ re-exporting its own submodules is its face, not a cycle
            if t and t != name and not _within(t, name) and not _within(name, t):
                targets.add(t)
        graph[name] = targets
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_no_prefix_family_at_the_top_level() -> None:
    top = [p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_")]
    prefixes = [t.split("_")[0] for t in top if "_" in t]
    assert not [p for p in set(prefixes) if prefixes.count(p) + (p in top) >= 3], top


RUNTIME = {
    # the pure functions load only torch, whatever else is installed
    "functional": (
        ["spotter.functional.losses", "spotter.functional.metrics", "spotter.functional.perturb",
         "spotter.functional.prototype", "spotter.functional.measures"],
        ["sklearn", "scipy", "matplotlib", "spotter.data", "spotter.models", "spotter.training", "spotter.methods"],
    ),
    # a method never loads evaluation, the CLI or scikit-learn
    "method": (["spotter.methods.spotter"], [*ABOVE_METHODS, "sklearn", "matplotlib"]),
    # the report renders row files without training code
    "report": (["spotter.report.render"], ["spotter.training", "spotter.methods", "spotter.evaluation"]),
    # `import spotter` is light: the public API loads on first use
    "package": (["spotter"], ["spotter.data", "spotter.training", "spotter.methods", "torch"]),
}  # fmt: skip


@pytest.fixture(scope="module")
def loaded() -> dict[str, list[str]]:
    procs = {
        key: subprocess.Popen(
            [sys.executable, "-c", PROBE.format(imports=imports)], stdout=subprocess.PIPE, text=True
        )
        for key, (imports, _) in RUNTIME.items()
    }
    out = {}
    for key, proc in procs.items():
        stdout, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        out[key] = json.loads(stdout)
    return out


@pytest.mark.parametrize("case", sorted(RUNTIME))
def test_runtime_imports_point_one_way(loaded, case):
    imports, forbidden = RUNTIME[case]
    modules = loaded[case]
    assert set(imports) <= set(modules)  # the probe really imported them
    bad = [m for m in modules if any(_within(m, f) for f in forbidden)]
    assert not bad, f"importing {imports} pulled in {bad}"


def test_cached_evaluation_rows_depend_on_every_measuring_module(tmp_path, monkeypatch) -> None:
    """A change to PRA's rows, the heads or the inference helper must invalidate cached rows."""
    from spotter.evaluation import evaluator

    names = {str(f.relative_to(PACKAGE)) for f in evaluator.measure_code_files()}
    for needed in ("functional/prototype.py", "functional/metrics.py", "evaluation/pra.py", "evaluation/evaluator.py",
                   "models/heads.py", "training/inference.py"):  # fmt: skip
        assert needed in names, needed
    before = evaluator.metric_code_digest()
    copy = tmp_path / "spotter"
    for f in evaluator.measure_code_files():
        target = copy / f.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())
    (copy / "evaluation").mkdir(exist_ok=True)
    monkeypatch.setattr(evaluator, "__file__", str(copy / "evaluation" / "evaluator.py"))
    assert evaluator.metric_code_digest() == before  # same bytes, same digest
    (copy / "functional" / "prototype.py").write_text("# changed\n")
    assert evaluator.metric_code_digest() != before
