"""The report as one self-contained HTML file: inline CSS, images as data URIs.

Nothing is fetched when the page opens (no external CSS, JS or fonts), so
it reads the same offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
from html import escape

from llmarch.reports.plots import Plot
from llmarch.reports.tables import Section

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif;
       margin: 2rem auto; max-width: 90rem; padding: 0 1rem; color: #1b1b1b; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; }
table { border-collapse: collapse; font-size: .82rem; margin: .5rem 0; }
th, td { border: 1px solid #d0d0d0; padding: .25rem .45rem; }
td { white-space: nowrap; }
th { background: #f3f3f3; text-align: left; vertical-align: bottom; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: .85rem; max-width: 60rem; }
.skipped { color: #8a5a00; font-style: italic; }
ul.facts { list-style: none; padding: 0; columns: 2; font-size: .9rem; }
"""


def _is_number(cell: str) -> bool:
    text = cell.replace(",", "").replace(" ✓", "").replace(" ✗", "")
    try:
        float(text.replace("–", "nan"))
    except ValueError:
        return False
    return True


def _table(s: Section) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in s.headers)
    rows = []
    for r in s.body:
        cells = "".join(
            f'<td class="num">{escape(c)}</td>'
            if _is_number(c)
            else f"<td>{escape(c)}</td>"
            for c in r
        )
        rows.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _figure(p: Plot) -> str:
    if p.path is None:
        return (
            f"<h3>{escape(p.title)}</h3>"
            f'<p class="skipped">Not drawn: {escape(p.skipped or "")}.</p>'
        )
    data = base64.b64encode(p.path.read_bytes()).decode("ascii")
    return (
        f"<h3>{escape(p.title)}</h3><figure>"
        f'<img alt="{escape(p.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(p.caption)}</figcaption></figure>"
    )


def render(
    title: str,
    facts: list[tuple[str, str]],
    sections: list[Section],
    plots: list[Plot] | None,
) -> str:
    """One HTML page with every table and every plot inlined."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        '<ul class="facts">'
        + "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in facts)
        + "</ul>",
    ]
    for s in sections:
        parts.append(f"<h2>{escape(s.title)}</h2>")
        if s.intro:
            parts.append(f'<p class="note">{escape(s.intro)}</p>')
        parts.append(_table(s))
        if s.notes:
            parts.append(
                '<ul class="note">'
                + "".join(f"<li>{escape(n)}</li>" for n in s.notes)
                + "</ul>"
            )
    if plots is not None:
        parts.append("<h2>Plots</h2>")
        parts += [_figure(p) for p in plots]
    parts.append("</body></html>\n")
    return "\n".join(parts)
