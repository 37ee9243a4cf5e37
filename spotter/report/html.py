"""One self-contained HTML page of a benchmark report: tables inline, plots as base64 data URIs.

It reads offline in any browser. A tiny script marks the page once every image has decoded
(`<p id="image-check">all N images decoded</p>`), which the tests read back from headless Chromium.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from spotter.functional.measures import MEASURES
from spotter.report.tables import COLUMNS, REFERENCES, Setting

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
tr.reference td { color: #666; font-style: italic; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
figure { margin: 1.5em 0; } figcaption { font-size: 13px; color: #555; }
code, .summary li { font-family: ui-monospace, monospace; font-size: 12.5px; }
"""

CHECK = """
<p id="image-check">images not checked yet</p>
<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.getElementById("image-check").textContent = bad.length
    ? "missing images: " + bad.map(function (i) { return i.alt; }).join(", ")
    : "all " + imgs.length + " images decoded";
});
</script>
"""


def _table(st: Setting) -> str:

    head = "".join(
        f"<th>{html.escape(t)}</th>" for t in ["method", "n", *(MEASURES[k].title for k in COLUMNS)]
    )
    marks = {key: st.best(key, MEASURES[key].decimals) for key in COLUMNS}
    body = []
    for label in st.labels:
        cells = [f"<td>{html.escape(label)}</td>", f"<td>{len(st.of(label))}</td>"]
        for key in COLUMNS:
            d = MEASURES[key].decimals
            text = html.escape(st.stat(label, key).fmt(d))
            cells.append(f"<td><b>{text}</b></td>" if label in marks[key] else f"<td>{text}</td>")
        cls = ' class="reference"' if label in REFERENCES else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(path.name)
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def html_page(name: str, rows: list[dict[str, Any]], sections: list[dict[str, Any]], note: str = "") -> str:
    gits = ", ".join(sorted({str(r.get("git", "?")) for r in rows}))
    wall = sum(r.get("wall_s") or 0 for r in rows)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>spotter benchmark: {html.escape(name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Benchmark report: {html.escape(name)}</h1>",
        f"<p>{len(rows)} rows (jobs); git revision(s) {html.escape(gits)}; {wall / 60:.1f} min of job wall time. "
        "Cells are mean ± std over seeds; accuracies in %; the best unlearning method per column is bold "
        "(by the metric's direction; MIA-efficacy: closest to the retrained model). "
        "Reference rows (original, retrained) are in italics and never marked; their time is training "
        "time, the others' unlearning time.</p>",
        *([f"<p>{html.escape(note)}</p>"] if note else []),
    ]
    for sec in sections:
        st: Setting = sec["setting"]
        parts.append(f"<h2>{html.escape(st.title)}</h2>")
        parts.append(
            '<ul class="summary">' + "".join(f"<li>{html.escape(x)}</li>" for x in sec["lines"]) + "</ul>"
        )
        parts.append(_table(st))
        parts += [_img(p, caption) for p, caption in sec["plots"]]
    parts += [CHECK, "</body></html>"]
    return "\n".join(parts) + "\n"
