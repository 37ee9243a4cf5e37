"""`spotter report`: OUT/results.jsonl (+ OUT/features) -> Markdown, CSV and LaTeX tables, PNG plots
and one self-contained HTML page, all under OUT/report/. Needs nothing but the run folder.

Rows are grouped into settings (dataset, model, forget classes); within one, methods are table
rows and each cell is mean ± std over the replicates (seeds). The best unlearning method per
column is marked (bold) by the metric's direction (spotter.functional.measures); metrics without a
direction (MIA-efficacy) mark the value closest to the retrained model's. Reference rows
(original, retrained) are shown but never marked. A replicate is a row's training seed (and
unlearning seed), not its index in a spec: a spec restricted to one seed to finish a grid numbers
that seed's replicate 0. When a label has two rows for one replicate (a spec edited between runs),
the later row wins.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spotter.functional.measures import MEASURES, direction
from spotter.report.markdown import table_lines

log = logging.getLogger("spotter")

# the measures of the Table-1 layout, in order (titles, decimals and directions: the registry)
COLUMNS = (
    "forget_acc", "retain_acc", "test_forget_acc", "test_retain_acc", "ou_pgd", "ou_gaussian",
    "pra_forget_acc", "mia_efficacy", "time_s",
)  # fmt: skip
REFERENCES = ("original", "retrained")
RESULTS = "results.jsonl"


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every complete row of a results.jsonl (a line cut by a crash is skipped with a warning)."""
    path = Path(path)
    if not path.exists():
        return []
    rows, bad = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    if bad:
        log.warning("%s: %d unreadable line(s) skipped (a job cut short); it will be rerun", path, bad)
    return rows


class Stat:
    """Mean ± sample std of one metric over replicates (None values skipped)."""

    def __init__(self, values: Sequence[Any]) -> None:
        self.values = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
        n = len(self.values)
        self.n = n
        self.mean = sum(self.values) / n if n else math.nan
        self.std = math.sqrt(sum((v - self.mean) ** 2 for v in self.values) / (n - 1)) if n > 1 else 0.0

    def fmt(self, decimals: int, pm: str = " ± ") -> str:
        if not self.n:
            return "-"
        return f"{self.mean:.{decimals}f}{pm}{self.std:.{decimals}f}"


def train_seed(row: dict[str, Any]) -> Any:
    """The seed the row's models were trained with (its spec-relative `replicate` for rows without
    recorded seeds)."""
    seeds = row.get("seeds") or {}
    return seeds.get("train", row.get("replicate"))


def replicate_of(row: dict[str, Any]) -> tuple:
    """(training seed, unlearning seed): what makes two rows of one label different replicates. The
    references have no unlearning seed (counted as -1)."""
    seeds = row.get("seeds") or {}
    unlearn = seeds.get("unlearn")
    return (train_seed(row), -1 if unlearn is None else unlearn)


class Setting:
    """The rows of one (dataset, model, forget classes): labels in spec order, latest row per replicate."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        first = rows[0]
        self.dataset, self.model, self.forget = first["dataset"], first["model"], first["forget_classes"]
        latest: dict[tuple, dict] = {}
        for r in rows:
            latest[(r["label"], *replicate_of(r))] = r
        self.rows = list(latest.values())
        order = {}
        for r in self.rows:
            rank = REFERENCES.index(r["label"]) - 10 if r["label"] in REFERENCES else r.get("order", 0)
            order.setdefault(r["label"], rank)
        self.labels = sorted(order, key=lambda label: (order[label], label))

    @property
    def title(self) -> str:
        return f"{self.dataset}, {self.model['name']} (width {self.model['width']}), forget {self.forget}"

    @property
    def slug(self) -> str:
        forget = "-".join(map(str, self.forget))
        return re.sub(
            r"[^A-Za-z0-9_.-]+",
            "_",
            f"{self.dataset}_{self.model['name']}{self.model['width']}_forget{forget}",
        )

    def of(self, label: str) -> list[dict[str, Any]]:
        return sorted((r for r in self.rows if r["label"] == label), key=replicate_of)

    def stat(self, label: str, key: str) -> Stat:
        return Stat([r.get(key) for r in self.of(label)])

    def best(self, key: str, decimals: int) -> set[str]:
        """Labels of the unlearning methods with the best mean (as displayed) for `key`."""
        sign = direction(key)
        target = self.stat("retrained", key).mean
        scores = {}
        for label in self.labels:
            s = self.stat(label, key)
            if label in REFERENCES or not s.n:
                continue
            value = round(s.mean, decimals)
            if sign == 0:
                if math.isnan(target):
                    continue
                value = round(abs(s.mean - target), decimals)
            scores[label] = -value if sign > 0 else value
        top = min(scores.values(), default=None)
        return {label for label, v in scores.items() if v == top}


def settings(rows: list[dict[str, Any]]) -> list[Setting]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["dataset"], r["model"]["name"], r["model"]["width"], tuple(r["forget_classes"]))
        groups.setdefault(key, []).append(r)
    return [Setting(g) for g in groups.values()]


def _cells(st: Setting, bold: tuple[str, str], pm: str) -> list[list[str]]:
    marks = {key: st.best(key, MEASURES[key].decimals) for key in COLUMNS}
    out = []
    for label in st.labels:
        n = len(st.of(label))
        cells = [label, str(n)]
        for key in COLUMNS:
            text = st.stat(label, key).fmt(MEASURES[key].decimals, pm)
            cells.append(f"{bold[0]}{text}{bold[1]}" if label in marks[key] else text)
        out.append(cells)
    return out


def markdown_table(st: Setting) -> str:
    head = ["method", "n", *(MEASURES[k].title for k in COLUMNS)]
    return "\n".join(table_lines(head, _cells(st, ("**", "**"), " ± ")))


def latex_table(st: Setting) -> str:
    head = ["method", "$n$", *(MEASURES[k].latex or MEASURES[k].title for k in COLUMNS)]
    body = []
    for cells in _cells(st, (r"\mathbf{", "}"), r" \pm "):
        label = cells[0].replace("_", r"\_").replace("+", "{+}")
        body.append(
            " & ".join([label, cells[1], *(f"${c}$" if c != "-" else "-" for c in cells[2:])]) + r" \\"
        )
    caption = (
        st.title.replace("_", r"\_")
        + r". Mean $\pm$ std over seeds; accuracies in \%; best unlearning method in bold."
    )
    return "\n".join(
        [
            r"\begin{table}[t]", r"\centering", r"\small",
            r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}", r"\toprule",
            " & ".join(head) + r" \\", r"\midrule", *body, r"\bottomrule", r"\end{tabular}",
            rf"\caption{{{caption}}}", r"\end{table}",
        ]
    )  # fmt: skip


def csv_table(st: Setting) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "n", *(f"{k}_{s}" for k in COLUMNS for s in ("mean", "std"))])
    for label in st.labels:
        stats = [st.stat(label, k) for k in COLUMNS]
        values = [v for s in stats for v in ((s.mean, s.std) if s.n else ("", ""))]
        w.writerow([label, len(st.of(label)), *values])
    return buf.getvalue()


def _signed(x: float, decimals: int) -> str:
    return f"{x:+.{decimals}f}".replace("-", "−")


def summary_lines(st: Setting) -> list[str]:
    """One quotable line per method, e.g. 'spotter: forget 0.0 ± 0.0, retain −0.3 ± 0.2 (vs original), ...'."""
    originals = {train_seed(r): r for r in st.of("original")}
    retrained_ou = st.stat("retrained", "ou_pgd").mean
    lines = []
    for label in st.labels:
        rows = st.of(label)
        parts = [f"forget {st.stat(label, 'test_forget_acc').fmt(1)}"]
        deltas = [
            r["test_retain_acc"] - originals[train_seed(r)]["test_retain_acc"]
            for r in rows
            if train_seed(r) in originals and r.get("test_retain_acc") is not None
        ]
        if label != "original" and deltas:
            d = Stat(deltas)
            parts.append(f"retain {_signed(d.mean, 1)} ± {d.std:.1f} (vs original)")
        else:
            parts.append(f"retain {st.stat(label, 'test_retain_acc').fmt(1)}")
        ou = st.stat(label, "ou_pgd")
        ratio = (
            f" ({ou.mean / retrained_ou:.2g}× retrained)"
            if retrained_ou and label != "retrained" and ou.n
            else ""
        )
        parts.append(f"OU@ε {ou.fmt(4)}{ratio}")
        parts.append(f"PRA {st.stat(label, 'pra_forget_acc').fmt(1)}")
        if st.stat(label, "mia_efficacy").n:
            parts.append(f"MIA-efficacy {st.stat(label, 'mia_efficacy').fmt(1)}")
        parts.append(f"time {st.stat(label, 'time_s').fmt(1)} s")
        lines.append(f"{label}: " + ", ".join(parts) + f" (n = {len(rows)} seeds)")
    return lines


def wall_time_table(st: Setting) -> str:
    """Per training seed: the rows there, the minutes the jobs took (unlearning and evaluation;
    for the references, their evaluation), the references' training minutes as recorded (a cached
    model's were spent in an earlier run), and the machines. What a context costs to reproduce."""
    lines = [
        "| seed | rows | job wall min | of which unlearning min | reference training min | host, device |",
        "|---|---|---|---|---|---|",
    ]
    for seed in sorted({train_seed(r) for r in st.rows}, key=str):
        rows = [r for r in st.rows if train_seed(r) == seed]
        methods = [r for r in rows if r["label"] not in REFERENCES]
        references = [r for r in rows if r["label"] in REFERENCES]
        wall = sum(r.get("wall_s") or 0.0 for r in rows) / 60
        unlearning = sum(r.get("time_s") or 0.0 for r in methods) / 60
        training = sum(r.get("time_s") or 0.0 for r in references) / 60
        hosts = ", ".join(sorted({f"{r.get('host', '?')} {r.get('device', '?')}" for r in rows}))
        lines.append(f"| {seed} | {len(rows)} | {wall:.0f} | {unlearning:.0f} | {training:.0f} | {hosts} |")
    return "\n".join(lines)
