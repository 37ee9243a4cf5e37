"""`spotter report`: OUT/results.jsonl (+ OUT/features) -> Markdown, CSV and LaTeX tables, PNG plots
and one self-contained HTML page, all under OUT/report/. Needs nothing but the run folder."""

from __future__ import annotations

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
)


def render(folder: str | Path) -> dict[str, Any]:
    """Write OUT/report/{report.md, report.html, *.csv, *.tex, *.png}; returns what was written."""
    folder = Path(folder)
    rows = read_rows(folder / RESULTS)
    if not rows:
        raise FileNotFoundError(
            f"no rows in {folder / RESULTS}; run `spotter bench SPEC --out {folder}` first"
        )
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
        sections.append({"setting": st, "lines": lines, "plots": plots})
    write_text(out / "report.md", "\n".join(md) + "\n")
    write_text(out / "report.html", html_page(folder.name, rows, sections))
    written += [out / "report.md", out / "report.html"]
    return {
        "folder": out,
        "files": written,
        "settings": [s["setting"] for s in sections],
        "sections": sections,
    }
