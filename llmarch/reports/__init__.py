"""Reports over many runs: history, aggregate tables, comparisons and plots.

``aggregate`` reads runs from the results database into per-setting rows
(the same summaries as a run's own report), ``compare`` sets two runs side
by side with a noise test, ``derived`` computes the KV-cache curves from
model configs and the quality / speed Pareto points from the recommender,
``plots`` draws them with matplotlib, and ``markdown`` and ``html`` render
the tables of ``tables``. ``build.write_report`` ties these together. The
README's "Reports, history and comparisons" defines every figure.
"""

from __future__ import annotations

from llmarch.reports.aggregate import RunData, load_runs, resolve_run, select_runs
from llmarch.reports.build import FORMATS, write_report
from llmarch.reports.compare import compare_runs, noise_test

__all__ = [
    "FORMATS",
    "RunData",
    "compare_runs",
    "load_runs",
    "noise_test",
    "resolve_run",
    "select_runs",
    "write_report",
]
