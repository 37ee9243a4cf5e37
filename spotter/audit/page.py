"""audit.html: the audit's Markdown as one self-contained page, to forward to a reviewer.

The page is rendered from the very Markdown text of audit.md (one source of truth), so it only
needs the few constructs `audit.report` writes: headings, paragraphs, tables, bullet lists, `code`,
**bold**, *italic* and images. Images are embedded as base64 PNG data URIs, the style is inline and
there are no scripts or links: the file reads offline in any browser, on its own.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1180px; margin: 2em auto;
       padding: 0 1.2em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.3em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.scroll { overflow-x: auto; margin: 0.8em 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.long { min-width: 22em; } td.short { white-space: nowrap; }
table.verdict td:nth-child(5) { white-space: nowrap; }
table.settings-and-versions td { text-align: left; }
td.safe { background: #e3f4e1; color: #1d5e1a; font-weight: 600; white-space: nowrap; }
td.weaker { background: #fbe3e1; color: #8a1f17; font-weight: 600; white-space: nowrap; }
td.uncertified { background: #fdf1d6; color: #7a5300; }
td.unmeasured { background: #eee; color: #555; }
p.headline { font-size: 1.1em; padding: 0.6em 0.9em; border-left: 5px solid #888; background: #f7f7f7; }
p.headline.safe { border-color: #2e8b2a; } p.headline.weaker { border-color: #c0392b; }
p.headline.uncertified { border-color: #d4a017; }
figure { margin: 1.5em 0; } img { max-width: 100%; display: block; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #444; margin-top: 0.3em; }
code { font-family: ui-monospace, monospace; font-size: 12.5px; background: #f4f4f4; padding: 0 2px; }
"""

IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")
# verdict cells, by how the verdict text begins (`audit.report`'s wording) -> their CSS class
VERDICT_CLASSES = (
    ("as safe as retrained", "safe"),
    ("weaker than retrained", "weaker"),
    ("no better than the original", "weaker"),
    ("improved on the original", "uncertified"),
    ("not certified", "uncertified"),
    ("not measured", "unmeasured"),
)
NUMBER = re.compile(r"^([-+−]?\.?\d.{0,24}|-)$")  # a number, perhaps with a short note: "98.2 (α 0.4)"


def inline(text: str) -> str:
    """Escaped text with `code`, **bold** and *italic* as HTML."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", out)


def _cell(text: str) -> str:
    for start, cls in VERDICT_CLASSES:
        if text.startswith(start):
            return f'<td class="{cls}">{inline(text)}</td>'
    if NUMBER.match(text):
        return f'<td class="num">{inline(text)}</td>'
    cls = "long" if len(text) > 60 else "short" if len(text) <= 16 else ""
    return f'<td class="{cls}">{inline(text)}</td>' if cls else f"<td>{inline(text)}</td>"


def _split(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split(" | ")]


def _table(lines: list[str], cls: str) -> str:
    head = "".join(f"<th>{inline(c)}</th>" for c in _split(lines[0]))
    body = "".join("<tr>" + "".join(_cell(c) for c in _split(r)) + "</tr>" for r in lines[2:])
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _figure(path: Path | None, alt: str, caption: str) -> str:
    if path is None or not path.is_file():
        return ""  # never a link to a file the reader may not have
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def body(markdown: str, images: dict[str, Path]) -> list[str]:
    """HTML blocks of `markdown`; image references are looked up by file name in `images`."""
    lines, out, i, section, first = markdown.splitlines(), [], 0, "", False
    while i < len(lines):
        line = lines[i]
        headline, first = first, first and not line.strip()  # the verdict's first paragraph is its headline
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            title = line[level:].strip()
            section = _slug(title)
            out.append(f'<h{level} id="{section}">{inline(title)}</h{level}>')
            i, first = i + 1, section == "verdict"
        elif line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append(_table(lines[i:j], section))
            i = j
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
        elif match := IMAGE.match(line.strip()):
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            caption = ""
            if i < len(lines) and lines[i].startswith("*Figure"):  # the caption under the image
                caption, i = inline(lines[i]).removeprefix("<em>").removesuffix("</em>"), i + 1
            out.append(_figure(images.get(match[2]), match[1], caption))
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ")):
                para.append(lines[i])
                i += 1
            text = inline(" ".join(para))
            if headline:
                status = (
                    "weaker" if "weaker on" in text else "uncertified" if "cannot certify" in text else "safe"
                )
                out.append(f'<p class="headline {status}">{text}</p>')
            else:
                out.append(f"<p>{text}</p>")
    return out


def html_page(markdown: str, plots: list[Path], title: str = "Unlearning audit") -> str:
    """One self-contained HTML page of the audit's Markdown, the plots inline."""
    images = {Path(p).name: Path(p) for p in plots}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        *body(markdown, images),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
