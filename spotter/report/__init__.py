"""Rendering: rows -> tables (Markdown, CSV, LaTeX; mean ± std over seeds), plots and an HTML page.

`markdown` is the one Markdown table renderer; `tables` groups rows into settings and formats
cells; `plots` and `html` draw them; `render` writes a run folder's report. Reads row files only:
never imports training, methods, evaluation, bench or cli.
"""
