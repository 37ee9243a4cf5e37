"""spotter: class-level machine unlearning, with over-unlearning (OU@ε) and the prototypical
relearning attack (PRA) as first-class measures (Ha, Park, Yoon, ICML 2026, arXiv 2506.01318).

The public API is the names in `__all__`; each is imported on first use, so `import spotter` (and
`spotter --help`) stays fast and importing one subpackage does not pull in the others.
The layout (docs/design.md): data -> models -> functional -> training -> methods -> evaluation ->
audit / bench -> report -> cli, each a subpackage whose docstring says what it may import.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_API = {
    "load": "spotter.data",
    "make_splits": "spotter.data",
    "prepare": "spotter.data",
    "DataConfig": "spotter.data",
    "Splits": "spotter.data",
    "TensorSet": "spotter.data",
    "as_tensorset": "spotter.data",
    "describe": "spotter.data",
    "build_model": "spotter.models",
    "model_spec": "spotter.models",
    "adapt": "spotter.models",
    "fit": "spotter.training.fit",
    "TrainConfig": "spotter.training.fit",
    "reference_model": "spotter.training.zoo",
    "save_model": "spotter.training.checkpoint",
    "load_model": "spotter.training.checkpoint",
    "unlearn": "spotter.methods",
    "make_config": "spotter.methods",
    "Evaluator": "spotter.evaluation.evaluator",
    "EvalConfig": "spotter.evaluation.evaluator",
    "audit": "spotter.audit",
    "AuditConfig": "spotter.audit",
    "write_report": "spotter.audit.report",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'spotter' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip this function
    # Importing spotter.audit (e.g. for write_report) binds the subpackage here as `audit`, hiding the
    # function of that name: drop such bindings so the next lookup resolves the public function.
    for key, bound in list(globals().items()):
        if key in _API and isinstance(bound, ModuleType):
            del globals()[key]
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
