"""The report as one Markdown page, plots linked as files beside it."""

from __future__ import annotations

from pathlib import Path

from llmarch.report import _md_table
from llmarch.reports.plots import Plot
from llmarch.reports.tables import Section


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def render(
    title: str,
    facts: list[tuple[str, str]],
    sections: list[Section],
    plots: list[Plot] | None,
    *,
    relative_to: Path | None = None,
) -> str:
    """Facts, then each section's table, then each plot or why it is missing."""
    parts = [f"# {title}", ""]
    parts += [f"- **{k}**: {v}" for k, v in facts]
    for s in sections:
        parts += ["", f"## {s.title}", ""]
        if s.intro:
            parts += [s.intro, ""]
        headers = [_escape(h) for h in s.headers]
        parts.append(_md_table(headers, [[_escape(c) for c in r] for r in s.body]))
        if s.notes:
            parts += [""] + [f"- {n}" for n in s.notes]
    if plots is not None:
        parts += ["", "## Plots"]
        for p in plots:
            parts += ["", f"### {p.title}", ""]
            if p.path is None:
                parts.append(f"*Not drawn: {p.skipped}.*")
                continue
            link = p.path.name if relative_to is not None else str(p.path)
            parts += [f"![{p.title}]({link})", "", p.caption]
    parts.append("")
    return "\n".join(parts)
