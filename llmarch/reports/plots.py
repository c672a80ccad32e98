"""The report's plots: PNG files drawn with matplotlib's Agg canvas.

Each plot is skipped, with the reason, when the runs lack the data it needs
(a line needs two points), rather than drawn empty. Figures are built with
``matplotlib.figure.Figure`` (no pyplot, no global state), which renders
through Agg.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmarch.errors import BackendError
from llmarch.reports.aggregate import RunData
from llmarch.reports.compare import setting_text
from llmarch.reports.derived import KV_BYTES_PER_ELEMENT, KvModel, ParetoData

MIB = 2**20
DPI = 110
# A box plot of more groups than this is unreadable; the rest are left out.
MAX_BOXES = 24


@dataclass
class Plot:
    """One plot of the report: where it was saved, or why it was not drawn."""

    name: str
    title: str
    caption: str
    path: Path | None = None
    skipped: str | None = None


def _figure(width: float = 7.5, height: float = 4.6) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise BackendError(
            "plots need matplotlib; pip install 'matplotlib>=3.7' (or pass --no-plots)"
        ) from exc
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Any, plot: Plot, path: Path) -> Plot:
    fig.savefig(path, format="png", dpi=DPI, facecolor="white")
    plot.path = path
    return plot


def run_labels(data: list[RunData]) -> dict[str, str]:
    """The model's name, with the run id's end when a model has several runs."""
    count: dict[str, int] = defaultdict(int)
    for d in data:
        count[d.run["model"]] += 1
    return {
        d.run_id: d.run["model"]
        if count[d.run["model"]] == 1
        else f"{d.run['model']} ({d.run_id[-6:]})"
        for d in data
    }


def _parallel(row: dict[str, Any]) -> int:
    return int(row.get("batch") or 1) * int(row.get("concurrency") or 1)


def _series(
    data: list[RunData], x_of: Any, key_of: Any, y_column: str
) -> list[tuple[RunData, tuple[Any, ...], list[tuple[float, float]]]]:
    """Lines of (x, y) with two or more distinct x, one per run and key."""
    out = []
    for d in data:
        lines: dict[tuple[Any, ...], dict[float, float]] = defaultdict(dict)
        for row in d.rows:
            if row.get(y_column) is not None:
                lines[key_of(row)][x_of(row)] = row[y_column]
        for key, points in lines.items():
            if len(points) >= 2:
                out.append((d, key, sorted(points.items())))
    return out


def _plain_ticks(ax: Any) -> None:
    """Label a log2 axis 1, 2, 4, ... rather than 2^0, 2^1, 2^2."""
    from matplotlib.ticker import ScalarFormatter

    ax.xaxis.set_major_formatter(ScalarFormatter())


def decode_vs_batch(data: list[RunData], path: Path) -> Plot:
    plot = Plot(
        "decode-vs-batch",
        "Decode tokens/s against batch size",
        "Median decode tokens/s (all sequences of the batch) against the number "
        "of sequences in parallel (batch × concurrency), one line per run, "
        "prompt length and new tokens.",
    )
    lines = _series(
        data,
        _parallel,
        lambda r: (r["prompt_tokens"], r["new_tokens"]),
        "decode_tps_median",
    )
    if not lines:
        plot.skipped = (
            "no run measured decode tokens/s at two or more batch sizes with the "
            "same prompt and new tokens"
        )
        return plot
    labels = run_labels(data)
    fig = _figure()
    ax = fig.subplots()
    for d, (p, n), points in lines:
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=f"{labels[d.run_id]} · P={p} N={n}")
    ax.set_xscale("log", base=2)
    _plain_ticks(ax)
    ax.set_xlabel("sequences in parallel (batch × concurrency)")
    ax.set_ylabel("decode median (tokens/s)")
    ax.set_title(plot.title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, plot, path)


def ttft_vs_prompt(data: list[RunData], path: Path) -> Plot:
    plot = Plot(
        "ttft-vs-prompt",
        "TTFT against prompt length",
        "Median time to first token against prompt tokens, one line per run, "
        "batch and new tokens.",
    )
    lines = _series(
        data,
        lambda r: r["prompt_tokens"],
        lambda r: (_parallel(r), r["new_tokens"]),
        "ttft_s_median",
    )
    if not lines:
        plot.skipped = "no run measured TTFT at two or more prompt lengths"
        return plot
    labels = run_labels(data)
    fig = _figure()
    ax = fig.subplots()
    for d, (b, n), points in lines:
        xs, ys = zip(*points, strict=True)
        ax.plot(
            xs,
            [y * 1e3 for y in ys],
            marker="o",
            label=f"{labels[d.run_id]} · B={b} N={n}",
        )
    ax.set_xscale("log", base=2)
    _plain_ticks(ax)
    ax.set_xlabel("prompt length (tokens)")
    ax.set_ylabel("TTFT median (ms)")
    ax.set_title(plot.title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, plot, path)


def latency_distribution(data: list[RunData], path: Path) -> Plot:
    plot = Plot(
        "latency-distribution",
        "Latency distribution",
        "Box plots of every measured TTFT and TPOT sample (warm-ups and failures "
        "excluded), one box per run and setting: the box spans p25 to p75 with "
        "the median inside, whiskers reach the furthest sample within 1.5 box "
        "lengths, and points beyond them are drawn.",
    )
    labels = run_labels(data)
    groups: dict[str, dict[str, list[float]]] = {"ttft_s": {}, "tpot_s": {}}
    for d in data:
        by_setting: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in d.samples:
            if not s.get("error") and not s.get("is_warmup"):
                setting = {k: s.get(k) or 1 for k in ("prompt_tokens", "new_tokens")}
                setting |= {"batch": s.get("batch") or 1}
                setting |= {"concurrency": s.get("concurrency") or 1}
                by_setting[f"{labels[d.run_id]}\n{setting_text(setting)}"].append(s)
        for name, samples in by_setting.items():
            for metric in groups:
                values = [s[metric] * 1e3 for s in samples if s.get(metric) is not None]
                if values:
                    groups[metric][name] = values
    panels = [(m, g) for m, g in groups.items() if g]
    if not panels:
        plot.skipped = "no measured samples with a TTFT"
        return plot
    boxes = max(len(g) for _, g in panels)
    if boxes > MAX_BOXES:
        plot.caption += f" Only the first {MAX_BOXES} of {boxes} groups are drawn."
    fig = _figure(4.2 * len(panels) + 2.5, max(3.0, 0.45 * min(boxes, MAX_BOXES) + 1.6))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    names = list(panels[0][1])[:MAX_BOXES]
    for ax, (metric, g) in zip(axes, panels, strict=True):
        at = [i + 1 for i, n in enumerate(names) if g.get(n)]
        ax.boxplot([g[names[i - 1]] for i in at], positions=at, **_horizontal())
        ax.set_yticks(range(1, len(names) + 1), labels=names)
        ax.set_xlabel(f"{'TTFT' if metric == 'ttft_s' else 'TPOT'} (ms)")
        ax.grid(True, axis="x", alpha=0.3)
    # The panels share their y axis: inverting it once puts the first group on
    # top of both (inverting it on each panel would flip it back).
    axes[0].invert_yaxis()
    axes[0].tick_params(axis="y", labelsize="small")
    fig.suptitle(plot.title)
    return _save(fig, plot, path)


def _horizontal() -> dict[str, Any]:
    """Box plot keywords for horizontal boxes (renamed in matplotlib 3.10)."""
    import matplotlib

    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    return (
        {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}
    )


def _kv_grid(m: KvModel) -> list[int]:
    import numpy as np

    top = m.max_tokens
    points = set(np.unique(np.geomspace(16, top, 160).astype(int)).tolist())
    for layer in m.architecture.layers:
        if layer.window is not None and layer.window - 1 <= top:
            points |= {layer.window - 1, layer.window}
    return sorted(p for p in points | {top} if 1 <= p <= top)


def kv_vs_context(
    models: list[KvModel], skipped: list[tuple[str, str]], path: Path
) -> Plot:
    plot = Plot(
        "kv-vs-context",
        "KV cache against context length",
        f"KV-cache bytes for one sequence after T tokens, computed from each "
        f"model's config at {8 * KV_BYTES_PER_ELEMENT}-bit elements, up to the "
        "model's context length; a sliding-window layer stops growing at "
        "window − 1 tokens.",
    )
    if skipped:
        plot.caption += (
            " Not drawn (no config or arithmetic): "
            + ", ".join(m for m, _ in skipped)
            + "."
        )
    if not models:
        plot.skipped = "no model in the report has a config llmarch can read"
        return plot
    fig = _figure()
    ax = fig.subplots()
    for m in models:
        xs = _kv_grid(m)
        ys = [(m.bytes_at(x) or 0) / MIB for x in xs]
        ax.plot(xs, ys, label=f"{m.model} ({m.attention}; {m.layout})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length T (tokens)")
    ax.set_ylabel("KV cache, batch 1 (MiB)")
    ax.set_title(plot.title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small")
    return _save(fig, plot, path)


def pareto_chart(p: ParetoData | None, path: Path) -> Plot:
    plot = Plot(
        "pareto",
        "Quality against decode speed",
        "The recommender's quality (± one standard error) against decode "
        "tokens/s for each model and backend; ◆ marks the Pareto front "
        "(quality, speed and memory).",
    )
    points = [
        x for x in (p.points if p else []) if x.quality is not None and x.decode_tps
    ]
    if not points:
        plot.skipped = "no model has both quality results and decode tokens/s"
        return plot
    plot.caption += f" {p.note[0].upper()}{p.note[1:]}." if p else ""
    fig = _figure()
    ax = fig.subplots()
    labelled: set[bool] = set()
    for x in points:
        ax.errorbar(
            x.decode_tps,
            x.quality * 100,
            yerr=(x.quality_se or 0) * 100,
            fmt="D" if x.front else "o",
            markersize=9 if x.front else 6,
            color="tab:red" if x.front else "tab:blue",
            capsize=3,
            label=None
            if x.front in labelled
            else ("on the Pareto front" if x.front else "not on the front"),
        )
        labelled.add(x.front)
        ax.annotate(
            x.model,
            (x.decode_tps, x.quality * 100),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize="small",
        )
    ax.set_xlabel("decode (tokens/s)")
    ax.set_ylabel("quality (%)")
    ax.set_title(plot.title)
    # Room for the model names written beside the points.
    ax.margins(x=0.15, y=0.1)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, plot, path)


def make_plots(
    data: list[RunData],
    kv: tuple[list[KvModel], list[tuple[str, str]]],
    pareto: ParetoData | None,
    stem: Path,
) -> list[Plot]:
    """Draw every plot to ``<stem>-<name>.png``; skipped ones have no file."""

    def at(name: str) -> Path:
        return stem.with_name(f"{stem.name}-{name}.png")

    return [
        decode_vs_batch(data, at("decode-vs-batch")),
        ttft_vs_prompt(data, at("ttft-vs-prompt")),
        latency_distribution(data, at("latency-distribution")),
        kv_vs_context(*kv, at("kv-vs-context")),
        pareto_chart(pareto, at("pareto")),
    ]
