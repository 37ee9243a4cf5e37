"""The one Markdown table renderer: result rows (dicts) or ready cells -> a Markdown table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spotter.functional.measures import MEASURES

# the demo's and `spotter eval`'s table: the model, then every foundation measure
DEFAULT_COLUMNS = (
    "model", "forget_acc", "retain_acc", "test_forget_acc", "test_retain_acc", "ou_pgd", "ou_pgd_away",
    "ou_gaussian", "pra_forget_acc", "pra_alpha", "pra_scaled_forget_acc", "dispersion", "time_s",
)  # fmt: skip


def table_lines(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a Markdown table of ready-formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def cell(value: Any, key: str) -> str:
    """A value as the tables print it: the registered measure's decimals, "-" when missing."""
    if key in MEASURES:
        return MEASURES[key].fmt(value)
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def markdown(
    rows: Sequence[dict[str, Any]], columns: Sequence[str | tuple[str, str]] = DEFAULT_COLUMNS
) -> str:
    """A Markdown table of result rows; columns are measure keys (titled by the registry) or
    (key, title) pairs. Accuracies in percent, OU@ε and dispersion as fractions."""
    pairs = [c if isinstance(c, tuple) else (c, MEASURES[c].title if c in MEASURES else c) for c in columns]
    cols = [(k, title) for k, title in pairs if any(k in r for r in rows)]
    return "\n".join(table_lines([t for _, t in cols], [[cell(r.get(k), k) for k, _ in cols] for r in rows]))
