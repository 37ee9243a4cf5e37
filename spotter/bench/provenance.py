"""Which code produced a committed benchmark row, and which committed rows are stale now.

A job's id hashes its config only, so a refactor never invalidates committed rows. What can make a
row wrong is a change in the code that computed it; each row therefore records digests of that
code (`code`: measure, and method or train), and the runner compares them with the working tree:

- measure: every module a measured number depends on (the evaluator's list in
  spotter.evaluation.evaluator.MEASURE_CODE, plus the audit checks and the bench job that call it);
- method (unlearning rows): the method's module, every spotter.methods module it imports (so
  spotter_auto follows spotter), the method rails, the loss functions and the BatchNorm helper;
- train (reference rows): the training loop, the model cache and the architectures.

A stale row is kept (it is still the best number there is) and named; `spotter bench --rerun-stale`
reruns exactly those jobs and replaces their rows. Rows written before digests were recorded are
"unverified": listed, never rerun on their own.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

from spotter.evaluation.evaluator import measure_code_files
from spotter.io import digest, file_digest

ROOT = Path(__file__).resolve().parent.parent  # the spotter package
# besides the evaluator's files: what the bench's measure() calls
BENCH_MEASURE_CODE = ("audit/checks.py", "audit/context.py", "bench/job.py")
METHOD_SHARED = ("methods/_common.py", "methods/__init__.py", "functional", "models/batchnorm.py")
# the loaders that decode and split the data, not the converters for users' own arrays
TRAIN_CODE = (
    "training/fit.py", "training/zoo.py", "models", "data/core.py", "data/catalog.py", "data/loaders.py",
    "data/formats.py", "data/imagefolder.py", "data/faces.py",
)  # fmt: skip


def _expand(entries: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for entry in entries:
        path = ROOT / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def _digest(files: list[Path]) -> str:
    unique = sorted(set(files))
    return digest([[str(f.relative_to(ROOT)), file_digest(f)] for f in unique], 16)


def method_files(method: str) -> list[Path]:
    """The method's module and every spotter.methods module it imports, transitively (a combination
    BASE+spotter: both sides)."""
    todo = [ROOT / "methods" / f"{part}.py" for part in method.split("+")]
    seen: list[Path] = []
    while todo:
        path = todo.pop()
        if path in seen or not path.exists():
            continue
        seen.append(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "spotter.methods":
                    todo += [ROOT / "methods" / f"{a.name}.py" for a in node.names]
                elif node.module.startswith("spotter.methods."):
                    todo.append(ROOT / "methods" / f"{node.module.rsplit('.', 1)[1]}.py")
    return seen


@functools.cache
def measure_digest() -> str:
    return _digest([*measure_code_files(), *_expand(BENCH_MEASURE_CODE)])


@functools.cache
def code_digests(kind: str, method: str) -> dict[str, str]:
    """The digests a row of this kind ("reference" or "method") and method records."""
    if kind == "reference":
        return {"measure": measure_digest(), "train": _digest(_expand(TRAIN_CODE))}
    return {"measure": measure_digest(), "method": _digest(method_files(method) + _expand(METHOD_SHARED))}


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
