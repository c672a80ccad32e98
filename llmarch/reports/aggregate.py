"""Runs read back from the results database, one row per run and setting.

Rows are the per-setting summaries of ``llmarch.report.summarize_samples``;
they are never pooled across runs, so timings from two sessions never mix.
Quality comes from ``llmarch.quality.evaluate.summaries``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from llmarch.errors import ConfigError
from llmarch.quality.evaluate import summaries
from llmarch.report import (
    SETTING_KEYS,
    quality_columns,
    quality_frame,
    summarize_samples,
    summary_frame,
)
from llmarch.store import ResultStore

# Runs a report takes when no id is given.
REPORTED_STATUSES = ("completed", "interrupted")

# CSV columns that hold whole numbers; written without ".0", empty when absent.
INTEGER_COLUMNS = (
    "weight_bytes",
    *SETTING_KEYS,
    "n",
    "failed",
    "kv_tokens",
    "kv_bytes_measured",
    "kv_bytes_computed",
    "peak_memory_bytes",
)
IDENTITY = ("run_id", "model", "backend", "device", "dtype")
QUALITY_MAIN_METRICS = ("acc", "exact_match", "bits_per_byte", "perplexity")


@dataclass
class RunData:
    """One run with its per-setting rows, measured samples and quality rows."""

    run: dict[str, Any]
    rows: list[dict[str, Any]]
    samples: list[dict[str, Any]] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.run["run_id"])


def open_store(db: Path) -> ResultStore:
    """The results database at ``db``, refused (never created) when missing."""
    if not db.is_file():
        raise ConfigError(
            f"no results database at {db}; run llmarch bench first, or pass the "
            "database with --db PATH"
        )
    return ResultStore(db)


def resolve_run(store: ResultStore, text: str) -> dict[str, Any]:
    """The run whose id is ``text``, or the only one whose id starts with it."""
    run = store.run(text)
    if run is not None:
        return run
    matches = [r for r in store.runs() if str(r["run_id"]).startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(str(r["run_id"]) for r in matches[:5])
        raise ConfigError(
            f"run id {text!r} is ambiguous ({ids}{', ...' if len(matches) > 5 else ''}"
            "); give more of it"
        )
    raise ConfigError(
        f"no run {text!r} in {store.path}; 'llmarch results --db {store.path}' "
        "lists the runs"
    )


def select_runs(store: ResultStore, run_ids: list[str]) -> list[dict[str, Any]]:
    """The runs named (in that order), or every completed or interrupted run."""
    if run_ids:
        chosen: list[dict[str, Any]] = []
        for text in run_ids:
            run = resolve_run(store, text)
            if all(r["run_id"] != run["run_id"] for r in chosen):
                chosen.append(run)
        return chosen
    runs = [r for r in store.runs() if r["status"] in REPORTED_STATUSES]
    if not runs:
        raise ConfigError(
            f"{store.path} holds no completed or interrupted run; run llmarch "
            "bench first, or name runs by id"
        )
    return runs


def load_runs(
    store: ResultStore, runs: list[dict[str, Any]], *, with_samples: bool = True
) -> list[RunData]:
    """Rows, samples (warm-ups excluded) and quality summaries of each run."""
    out = []
    for run in runs:
        samples = store.samples(run["run_id"])
        out.append(
            RunData(
                run=run,
                rows=summarize_samples(samples, run),
                samples=samples if with_samples else [],
                quality=summaries(store, run["run_id"]),
            )
        )
    return out


# -- the figures a run is listed with -----------------------------------------


def _known(values: list[Any]) -> list[float]:
    return [v for v in values if v is not None and not _isnan(v)]


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def headline(data: RunData) -> dict[str, Any]:
    """What ``llmarch results`` lists for a run (README: "Listing runs").

    ``settings``: settings measured; ``samples``: measured generations in the
    statistics; ``decode_tps``: the highest median decode tokens/s of any
    setting; ``ttft_s``: the lowest median TTFT of any setting;
    ``peak_memory_bytes``: the largest peak memory of any setting; ``quality``:
    each task's first metric of acc, exact_match, bits_per_byte, perplexity.
    """
    rows = data.rows
    decode = _known([r.get("decode_tps_median") for r in rows])
    ttft = _known([r.get("ttft_s_median") for r in rows])
    peak = _known([r.get("peak_memory_bytes") for r in rows])
    quality = {}
    for q in data.quality:
        metric = next((m for m in QUALITY_MAIN_METRICS if m in q["metrics"]), None)
        if metric is not None:
            fig = q["metrics"][metric]
            quality[q["task"]] = {"metric": metric, **fig}
    return {
        "run_id": data.run_id,
        "started_at": data.run["started_at"],
        "status": data.run["status"],
        "model": data.run["model"],
        "backend": data.run["backend"],
        "device": data.run["device"],
        "dtype": data.run["dtype"],
        "settings": len(rows),
        "samples": sum(r["n"] for r in rows),
        "decode_tps": max(decode) if decode else None,
        "ttft_s": min(ttft) if ttft else None,
        "peak_memory_bytes": max(peak) if peak else None,
        "quality": quality,
    }


# -- frames and files ---------------------------------------------------------


def speed_frame(data: list[RunData]) -> pd.DataFrame:
    """One row per run and setting, with the run's own quality columns.

    A run that scored quality only has no row here (its figures are in
    ``quality_long_frame``), so that no setting column is ever empty and
    whole-number columns read back as integers.
    """
    records: list[dict[str, Any]] = []
    columns: list[str] = []
    for d in data:
        if not d.rows:
            continue
        frame = summary_frame(d.run, d.rows)
        frame.insert(1, "started_at", d.run["started_at"])
        frame.insert(2, "status", d.run["status"])
        for column, value in quality_columns(d.quality).items():
            frame[column] = value
        columns += [c for c in frame.columns if c not in columns]
        records += frame.astype(object).where(frame.notna(), None).to_dict("records")
    if not records:
        columns = list(summary_frame({k: None for k in IDENTITY}, []).columns)
    table = pd.DataFrame(records, columns=columns)
    for column in INTEGER_COLUMNS:
        if column in table:
            table[column] = pd.to_numeric(table[column]).astype("Int64")
    if "kv_match" in table:
        table["kv_match"] = table["kv_match"].astype(object)
    # A text column that is empty everywhere (local runs only) would read back
    # as floats; it says nothing, so it is left out.
    if "tokens_source" in table and table["tokens_source"].isna().all():
        table = table.drop(columns="tokens_source")
    return table


def quality_long_frame(data: list[RunData]) -> pd.DataFrame:
    """One row per run, task and metric (``llmarch.report.quality_frame``)."""
    frames = [quality_frame(d.run, d.quality) for d in data if d.quality]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def json_document(data: list[RunData], extra: dict[str, Any]) -> dict[str, Any]:
    """Every run with its rows and quality, plus the report's derived figures."""
    runs = [
        {"run": d.run, "headline": headline(d), "summary": d.rows, "quality": d.quality}
        for d in data
    ]
    return {"runs": runs, **extra}
