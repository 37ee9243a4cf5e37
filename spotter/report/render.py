"""`spotter report`: OUT/results.jsonl (+ OUT/features) -> Markdown, CSV and LaTeX tables, PNG plots
and one self-contained HTML page, all under OUT/report/. Needs nothing but the run folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from spotter.io import write_text
from spotter.report.html import html_page
from spotter.report.plots import plot_setting
from spotter.report.tables import (
    RESULTS,
    csv_table,
    latex_table,
    markdown_table,
    read_rows,
    settings,
    summary_lines,
    wall_time_table,
)


def render(
    folder: str | Path,
    stale: Callable[[dict[str, Any]], str | None] | None = None,
    include_stale: bool = False,
) -> dict[str, Any]:
    """Write OUT/report/{report.md, report.html, *.csv, *.tex, *.png}; returns what was written.

    `stale(row)` names why a row no longer matches the code that would compute it today (None when
    it does; the bench's provenance check, passed in so that the report reads nothing but the
    folder). Stale rows are left out of the tables unless `include_stale`, and counted in the
    report: a mean over rows of two code versions, or a stale row beside a fresh one of another
    seed, would read as one measurement."""
    folder = Path(folder)
    rows = read_rows(folder / RESULTS)
    if not rows:
        raise FileNotFoundError(
            f"no rows in {folder / RESULTS}; run `spotter bench SPEC --out {folder}` first"
        )
    diverged = [r for r in rows if r.get("diverged")]
    rows = [r for r in rows if not r.get("diverged")]
    reasons = [stale(r) if stale is not None else None for r in rows]
    old = [r for r, why in zip(rows, reasons, strict=True) if why not in (None, "unverified")]
    if not include_stale:
        rows = [r for r, why in zip(rows, reasons, strict=True) if why in (None, "unverified")]
        if not rows:
            raise ValueError(
                f"every row of {folder / RESULTS} is stale (computed by code that has changed since); "
                f"rerun them with `spotter bench SPEC --out {folder} --rerun-stale`, or render them "
                "anyway with `spotter report --include-stale`"
            )
    note = "\n\n".join(n for n in (stale_note(old, include_stale), diverged_note(diverged)) if n)
    out = folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    sections, written = [], []
    md = [
        f"# Benchmark report: {folder.name}",
        "",
        f"{len(rows)} rows; git {', '.join(sorted({r.get('git', '?') for r in rows}))}. Cells: mean ± std over "
        "seeds, accuracies in %; best unlearning method per column in bold (by the metric's direction; "
        "MIA-efficacy: closest to retrained). Reference rows are never marked; their time is training time.",
        "",
        *([note, ""] if note else []),
    ]
    for st in settings(rows):
        tables = {"md": markdown_table(st), "csv": csv_table(st), "tex": latex_table(st)}
        for ext, text in tables.items():
            path = out / f"{st.slug}.{ext}"
            write_text(path, text + "\n")
            written.append(path)
        plots = plot_setting(st, folder, out)
        written += [p for p, _ in plots]
        lines = summary_lines(st)
        md += [f"## {st.title}", "", *(f"- {line}" for line in lines), "", tables["md"], ""]
        md += [f"![{caption}]({p.name})\n\n{caption}\n" for p, caption in plots]
        md += ["Wall time per context (minutes, as the rows recorded them):", "", wall_time_table(st), ""]
        sections.append({"setting": st, "lines": lines, "plots": plots})
    write_text(out / "report.md", "\n".join(md) + "\n")
    write_text(out / "report.html", html_page(folder.name, rows, sections, note))
    written += [out / "report.md", out / "report.html"]
    return {
        "folder": out,
        "files": written,
        "settings": [s["setting"] for s in sections],
        "sections": sections,
        "stale": len(old),
        "note": note,
    }


def diverged_note(rows: list[dict[str, Any]]) -> str:
    """One line naming the jobs whose method diverged (rows without numbers)."""
    if not rows:
        return ""
    names = "; ".join(
        f"{r.get('label')} (forget {r.get('forget_classes')}, seed {r.get('seeds', {}).get('train')}): {r['diverged']}"
        for r in rows
    )
    return f"{len(rows)} job(s) diverged at their settings and have no numbers (left out of the tables): {names}."


def stale_note(old: list[dict[str, Any]], included: bool) -> str:
    """One paragraph on the stale rows: how many, of which methods, and what to do about them."""
    if not old:
        return ""
    counts: dict[str, int] = {}
    for r in old:
        counts[r.get("label", "?")] = counts.get(r.get("label", "?"), 0) + 1
    which = ", ".join(f"{label} ×{n}" if n > 1 else label for label, n in counts.items())
    fate = "included in the tables (--include-stale)" if included else "left out of the tables"
    return (
        f"{len(old)} stale row(s), computed by code that has changed since, are {fate}: {which}. "
        "`spotter bench SPEC --out DIR --rerun-stale` reruns them."
    )
