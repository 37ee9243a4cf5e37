"""Which code produced a committed benchmark row, and which committed rows are stale now.

A job's id hashes its config only, so a refactor never invalidates committed rows. What can make a
row wrong is a change in the code that computed it; each row therefore records digests of that
code (`code`: measure, and method or train), and the runner compares them with the working tree.
Each digest covers the modules reached by imports from a few roots, inside a scope, so a new module
that none of them imports (a new method, a new loss) leaves every committed row valid:

- measure: from the evaluator, the audit checks and the bench job, every module they import among
  spotter.evaluation, spotter.functional, the heads, the BatchNorm helper and inference;
- method (unlearning rows): from the method's module (both sides of a BASE+spotter) and the method
  rails, every module they import among spotter.methods, spotter.functional and the BatchNorm
  helper, plus the registry (spotter/methods/__init__.py, whose own imports are not followed);
- train (reference rows): the training loop, the model cache, the architectures and the loaders.

A stale row is kept (it is still the best number there is) and named; `spotter bench --rerun-stale`
reruns exactly those jobs and replaces their rows. Rows written before digests were recorded are
"unverified": listed, never rerun on their own.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

from spotter.evaluation.evaluator import MEASURE_CODE
from spotter.io import digest, file_digest

ROOT = Path(__file__).resolve().parent.parent  # the spotter package
# the roots of the measure digest, and where its imports are followed
MEASURE_ROOTS = ("evaluation/evaluator.py", "audit/checks.py", "audit/context.py", "bench/job.py")
MEASURE_SCOPE = (*MEASURE_CODE, "audit/checks.py", "audit/context.py", "bench/job.py")
METHOD_ROOTS = ("methods/_common.py",)
METHOD_SCOPE = ("methods", "functional", "models/batchnorm.py")
METHOD_REGISTRY = "methods/__init__.py"  # digested, its imports (every method) not followed
# the loaders that decode and split the data, not the converters for users' own arrays
TRAIN_CODE = (
    "training/fit.py", "training/zoo.py", "models", "data/core.py", "data/catalog.py", "data/loaders.py",
    "data/formats.py", "data/imagefolder.py", "data/faces.py",
)  # fmt: skip


def _expand(entries: tuple[str, ...], root: Path) -> list[Path]:
    files: list[Path] = []
    for entry in entries:
        path = root / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def _digest(files: list[Path], root: Path) -> str:
    unique = sorted(set(files))
    return digest([[str(f.relative_to(root)), file_digest(f)] for f in unique], 16)


def imported_files(path: Path, root: Path | None = None) -> list[Path]:
    """The spotter source files `path` imports (modules, and the package __init__ of a package
    imported whole), resolved under `root` (default: this package)."""
    root = root or ROOT
    found: list[Path] = []

    def add(parts: list[str]) -> bool:
        base = root.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if parts and candidate.exists():
                found.append(candidate)
                return True
        return False

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "spotter":
            parts = node.module.split(".")[1:]
            for alias in node.names:  # `from spotter.x import module` or `from spotter.x import name`
                if not add([*parts, alias.name]):
                    add(parts)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "spotter":
                    add(alias.name.split(".")[1:])
    return found


def closure(roots: list[Path], scope: tuple[str, ...], root: Path | None = None) -> list[Path]:
    """`roots` and every file they import, transitively, that lies inside `scope` (paths relative to
    `root`: folders or files); package __init__ files are kept but their imports not followed."""
    root = root or ROOT
    inside = [root / entry for entry in scope]

    def in_scope(path: Path) -> bool:
        return any(path == entry or entry in path.parents for entry in inside)

    seen: list[Path] = []
    todo = [p for p in roots if p.exists()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        if path.name != "__init__.py":
            todo += [f for f in imported_files(path, root) if in_scope(f) and f not in seen]
    return seen


def method_files(method: str, root: Path | None = None) -> list[Path]:
    """Every file a method's rows depend on: its module (both sides of BASE+spotter), the rails and
    what they import inside spotter.methods / spotter.functional / the BatchNorm helper, and the
    registry."""
    root = root or ROOT
    roots = [root / "methods" / f"{part}.py" for part in method.split("+")] + [root / r for r in METHOD_ROOTS]
    if "+" in method:  # a combination is built by the _plus rails
        roots.append(root / "methods" / "_plus.py")
    return closure(roots, METHOD_SCOPE, root) + [root / METHOD_REGISTRY]


def measure_files(root: Path | None = None) -> list[Path]:
    root = root or ROOT
    return closure([root / r for r in MEASURE_ROOTS], MEASURE_SCOPE, root)


@functools.cache
def code_digests(kind: str, method: str, root: Path | None = None) -> dict[str, str]:
    """The digests a row of this kind ("reference" or "method") and method records (of the package
    at `root`, default this one)."""
    root = root or ROOT
    measure = _digest(measure_files(root), root)
    if kind == "reference":
        return {"measure": measure, "train": _digest(_expand(TRAIN_CODE, root), root)}
    return {"measure": measure, "method": _digest(method_files(method, root), root)}


def stale_reason(row: dict[str, Any]) -> str | None:
    """Why a committed row no longer matches the code ("measure code changed", ...), "unverified"
    for a row without digests, None when it matches."""
    recorded = row.get("code")
    if not isinstance(recorded, dict):
        return "unverified"
    now = code_digests(row.get("kind", "method"), row.get("method", ""))
    changed = [part for part in now if recorded.get(part) != now[part]]
    return f"{' and '.join(changed)} code changed" if changed else None


def latest_per_job(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per job id, the last one written (a rerun stale row replaces the old one)."""
    last: dict[Any, dict[str, Any]] = {}
    for r in rows:
        last[r.get("job")] = r
    return list(last.values())
