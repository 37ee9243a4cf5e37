"""Plain-text/Markdown tables of result rows (used by the CLI and the demo)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

DEFAULT_COLUMNS = (
    ("model", "model"),
    ("forget_acc", "forget"),
    ("retain_acc", "retain"),
    ("test_forget_acc", "test_forget"),
    ("test_retain_acc", "test_retain"),
    ("ou_pgd", "OU@ε pgd"),
    ("ou_pgd_away", "OU@ε away"),
    ("ou_gaussian", "OU@ε gauss"),
    ("pra_forget_acc", "PRA forget"),
    ("pra_alpha", "PRA α"),
    ("pra_scaled_forget_acc", "PRA scaled"),
    ("dispersion", "dispersion"),
    ("time_s", "time s"),
)


def _fmt(value: Any, key: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if key.startswith("ou_") or key == "dispersion":
            return f"{value:.4f}"
        if key == "pra_alpha":
            return f"{value:.1f}"
        if key == "time_s":
            return f"{value:.0f}"
        return f"{value:.2f}"
    return str(value)


def markdown(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]] = DEFAULT_COLUMNS) -> str:
    """A Markdown table; accuracies in percent, OU@ε and dispersion as fractions."""
    cols = [(k, title) for k, title in columns if any(k in r for r in rows)]
    lines = ["| " + " | ".join(t for _, t in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k), k) for k, _ in cols) + " |")
    return "\n".join(lines)
