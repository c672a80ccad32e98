"""``llmarch report``: read runs, derive figures, draw plots, write one file."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmarch import paths
from llmarch.errors import ConfigError
from llmarch.profiles import Profile
from llmarch.reports import html, markdown
from llmarch.reports.aggregate import (
    json_document,
    load_runs,
    quality_long_frame,
    select_runs,
    speed_frame,
)
from llmarch.reports.derived import (
    KV_BYTES_PER_ELEMENT,
    KV_TABLE_TOKENS,
    kv_models,
    pareto,
)
from llmarch.reports.plots import Plot, make_plots
from llmarch.reports.tables import sections
from llmarch.store import ResultStore, now_iso

FORMATS = ("md", "csv", "json", "html")


@dataclass
class Written:
    """What ``write_report`` produced."""

    path: Path | None  # None when the report went to stdout
    text: str | None = None  # the report itself, when written to stdout
    plots: list[Plot] = field(default_factory=list)
    runs: int = 0
    others: list[Path] = field(default_factory=list)  # files beside the report


def report_path(out: Path | None, fmt: str) -> Path | None:
    """Where the report goes: ``--out``, a folder's ``report.<fmt>``, or stdout."""
    if out is None:
        return paths.results_dir() / f"report.{fmt}"
    if str(out) == "-":
        return None
    if out.is_dir():
        return out / f"report.{fmt}"
    return out


def _kv_json(models: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "model": m.model,
            "attention": m.attention,
            "layers": m.layout,
            "context_length": m.context_length,
            "bytes_per_element": KV_BYTES_PER_ELEMENT,
            "kv_bytes_per_token": m.per_token_bytes,
            "kv_bytes_at": {
                str(t): m.bytes_at(t)
                for t in (
                    *KV_TABLE_TOKENS,
                    *([m.context_length] if m.context_length else []),
                )
            },
        }
        for m in models
    ]


def write_report(
    store: ResultStore,
    run_ids: list[str],
    *,
    fmt: str,
    out: Path | None,
    plots: bool = True,
    profile: Profile | None = None,
    kv_extra: list[str] | None = None,
) -> Written:
    """Aggregate the runs named (default: every completed or interrupted run)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    target = report_path(out, fmt)
    runs = select_runs(store, run_ids)
    data = load_runs(store, runs, with_samples=fmt in ("md", "html"))
    facts = [
        ("database", str(store.path)),
        ("generated (UTC)", now_iso()),
        ("runs", str(len(data))),
        ("models", ", ".join(dict.fromkeys(d.run["model"] for d in data))),
    ]

    try:
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            text = speed_frame(data).to_csv(index=False)
            written = _finish(target, text, [], len(data))
            quality = quality_long_frame(data)
            if target is not None and not quality.empty:
                # Quality in long form beside it, as for a single run's report.
                beside = target.with_name(f"{target.stem}-quality.csv")
                quality.to_csv(beside, index=False)
                written.others.append(beside)
            return written
        kv = kv_models(data, kv_extra)
        front = pareto(store, data, profile)
        if fmt == "json":
            doc = json_document(
                data,
                {
                    "database": str(store.path),
                    "generated_at": facts[1][1],
                    "kv": _kv_json(kv[0]),
                    "kv_skipped": [{"model": m, "why": w} for m, w in kv[1]],
                    "pareto": {
                        "profile": front.profile.name,
                        "note": front.note,
                        "points": [vars(p) for p in front.points],
                    },
                },
            )
            return _finish(
                target, json.dumps(doc, indent=2, default=str) + "\n", [], len(data)
            )

        tables = sections(data, kv, front)
        title = "llmarch report"
        if fmt == "html" and target is None:
            # The page goes to stdout: draw the plots in a scratch folder, inline
            # them, and leave no files behind.
            with tempfile.TemporaryDirectory(prefix="llmarch-report-") as tmp:
                drawn = (
                    make_plots(data, kv, front, Path(tmp) / "report") if plots else None
                )
                text = html.render(title, facts, tables, drawn)
            return _finish(None, text, [], len(data))
        drawn = None
        if plots and target is not None:
            drawn = make_plots(data, kv, front, target.with_suffix(""))
        if fmt == "md":
            text = markdown.render(title, facts, tables, drawn, relative_to=target)
        else:
            text = html.render(title, facts, tables, drawn)
        return _finish(target, text, drawn or [], len(data))
    except OSError as exc:
        where = target if target is not None else "stdout"
        raise ConfigError(
            f"cannot write the report to {where} ({exc.strerror or exc}); choose a "
            "writable path with --out"
        ) from None


def _finish(target: Path | None, text: str, plots: list[Plot], runs: int) -> Written:
    if target is None:
        return Written(None, text, plots, runs)
    target.write_text(text, encoding="utf-8")
    return Written(target, None, plots, runs)
