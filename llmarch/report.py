"""Per-setting summaries of a run, written as CSV, Markdown and JSON.

Files and machine-readable output use SI base units (seconds, bytes,
tokens per second); tables for people show milliseconds and MiB, and every
header names its unit. The README documents each column.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from llmarch.metrics import METRIC_UNITS
from llmarch.roofline import add_utilisation
from llmarch.stats import STAT_NAMES, summarize

# A local backend runs ``batch`` prompts in one generation; an API backend
# sends ``concurrency`` single requests at once.
SETTING_KEYS = ("prompt_tokens", "new_tokens", "batch", "concurrency")
MIB = 2**20


# Markdown sections: title, scale from the stored SI unit, unit shown.
SECTION_UNITS = {
    "ttft_s": ("Time to first token", 1e3, "ms"),
    "tpot_s": ("Time per output token", 1e3, "ms"),
    "e2e_s": ("End-to-end latency", 1.0, "s"),
    "prefill_tps": ("Prefill throughput", 1.0, "tokens/s"),
    "decode_tps": ("Decode throughput", 1.0, "tokens/s"),
}


def summarize_samples(
    samples: list[dict[str, Any]], run: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One row per (prompt tokens, new tokens, batch), warm-ups excluded.

    With the ``run``, rows gain ``mbu`` and ``mfu`` (see llmarch.roofline)
    from the model's work and the machine's limits stored with it.
    """
    groups: dict[tuple[int, ...], list[dict[str, Any]]] = defaultdict(list)
    for s in samples:
        if not s.get("is_warmup"):
            groups[tuple(s.get(k) or 1 for k in SETTING_KEYS)].append(s)

    rows = []
    for key in sorted(groups):
        every = groups[key]
        group = [s for s in every if not s.get("error")]
        row: dict[str, Any] = dict(zip(SETTING_KEYS, key, strict=True))
        row["n"] = len(group)
        row["failed"] = len(every) - len(group)
        sources = sorted({s["tokens_source"] for s in group if s.get("tokens_source")})
        row["tokens_source"] = ",".join(sources) or None
        for metric in METRIC_UNITS:
            summary = summarize([s[metric] for s in group if s[metric] is not None])
            for stat in STAT_NAMES:
                row[f"{metric}_{stat}"] = getattr(summary, stat) if summary else None
        last = group[-1] if group else every[-1]
        row["kv_tokens"] = last.get("kv_tokens")
        row["kv_bytes_measured"] = last.get("kv_bytes_measured")
        row["kv_bytes_computed"] = last.get("kv_bytes_computed")
        measured = [s.get("kv_bytes_measured") for s in group]
        row["kv_match"] = (
            None
            if not group or None in measured
            else all(
                s["kv_bytes_measured"] == s.get("kv_bytes_computed") for s in group
            )
        )
        peaks = [s["peak_memory_bytes"] for s in group if s.get("peak_memory_bytes")]
        row["peak_memory_bytes"] = max(peaks) if peaks else None
        for phase in ("prefill_peak_bytes", "decode_peak_bytes"):  # CUDA only
            found = [s[phase] for s in group if s.get(phase)]
            row[phase] = max(found) if found else None
        rows.append(row)
    if run is not None:
        add_utilisation(rows, run)
    return rows


def summary_frame(run: dict[str, Any], rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The summary rows with the run's identity columns in front."""
    ident = {
        "run_id": run["run_id"],
        "model": run["model"],
        "backend": run["backend"],
        "device": run["device"],
        "dtype": run["dtype"],
        "weight_bytes": (run.get("load") or {}).get("weight_bytes"),
    }
    frame = pd.DataFrame([{**ident, **row} for row in rows])
    if frame.empty:
        frame = pd.DataFrame(columns=list(ident) + list(SETTING_KEYS))
    return frame


def _fmt(value: Any, scale: float = 1.0, digits: int = 1, sep: str = ",") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * scale:{sep}.{digits}f}"


HEADLINE_COLUMNS = (
    # (header, column, scale, digits)
    ("prompt tokens", "prompt_tokens", 1, 0),
    ("new tokens", "new_tokens", 1, 0),
    ("batch", "batch", 1, 0),
    ("concurrency", "concurrency", 1, 0),
    ("runs", "n", 1, 0),
    ("failed", "failed", 1, 0),
    ("TTFT median (ms)", "ttft_s_median", 1e3, 1),
    ("TTFT p90 (ms)", "ttft_s_p90", 1e3, 1),
    ("TPOT median (ms)", "tpot_s_median", 1e3, 2),
    ("prefill median (tok/s)", "prefill_tps_median", 1, 1),
    ("decode median (tok/s)", "decode_tps_median", 1, 2),
    ("end-to-end median (s)", "e2e_s_median", 1, 3),
    ("KV measured (MiB)", "kv_bytes_measured", 1 / MIB, 3),
    ("KV computed (MiB)", "kv_bytes_computed", 1 / MIB, 3),
    ("peak memory (MiB)", "peak_memory_bytes", 1 / MIB, 0),
    ("MBU (%)", "mbu", 100, 1),
    ("MFU (%)", "mfu", 100, 1),
)


def headline_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of the table people read first."""
    headers = [h for h, *_ in HEADLINE_COLUMNS]
    body = [
        [
            _fmt(row.get(col), scale, digits)
            for _h, col, scale, digits in HEADLINE_COLUMNS
        ]
        for row in rows
    ]
    return headers, body


CONSOLE_COLUMNS = (
    ("prompt\ntok", "prompt_tokens", 1, 0),
    ("new\ntok", "new_tokens", 1, 0),
    ("batch", "batch", 1, 0),
    ("conc.", "concurrency", 1, 0),
    ("runs", "n", 1, 0),
    ("TTFT\nms", "ttft_s_median", 1e3, 1),
    ("TPOT\nms", "tpot_s_median", 1e3, 1),
    ("prefill\ntok/s", "prefill_tps_median", 1, 1),
    ("decode\ntok/s", "decode_tps_median", 1, 2),
    ("e2e\ns", "e2e_s_median", 1, 2),
    ("KV\nMiB", "kv_bytes_measured", 1 / MIB, 2),
    ("peak\nMiB", "peak_memory_bytes", 1 / MIB, 0),
    ("MBU\n%", "mbu", 100, 1),
    ("MFU\n%", "mfu", 100, 1),
)


def console_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """A narrower table for terminals: medians, measured KV with a check mark.

    Columns that say nothing for this run (concurrency when every row is 1,
    KV and peak memory for API runs) are left out.
    """
    columns = [
        c
        for c in CONSOLE_COLUMNS
        if not (c[1] == "concurrency" and all((r.get(c[1]) or 1) == 1 for r in rows))
        and not (
            c[1] in ("kv_bytes_measured", "peak_memory_bytes", "mbu", "mfu")
            and all(r.get(c[1]) is None for r in rows)
        )
    ]
    headers = [h for h, *_ in columns]
    body = []
    for row in rows:
        cells = []
        for _h, column, scale, digits in columns:
            cell = _fmt(row.get(column), scale, digits, "")
            if column == "kv_bytes_measured" and row.get("kv_match") is not None:
                cell += " ✓" if row["kv_match"] else " ✗"
            cells.append(cell)
        body.append(cells)
    return headers, body


def _md_table(headers: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def markdown_report(
    run: dict[str, Any],
    rows: list[dict[str, Any]],
    quality: list[dict[str, Any]] | None = None,
) -> str:
    """A Markdown page: run facts, headline table, full statistics."""
    meta = run.get("metadata") or {}
    machine = meta.get("machine") or {}
    load = run.get("load") or {}
    gpu = machine.get("gpu") or {}
    facts = [
        ("run", run["run_id"]),
        ("status", run["status"]),
        ("started", run["started_at"]),
        ("model", run["model"]),
        ("source", run.get("model_source")),
        ("backend", run["backend"]),
        ("device", run["device"]),
        ("dtype", run["dtype"]),
        ("weights (MiB)", _fmt(load.get("weight_bytes"), 1 / MIB, 1)),
        ("quantisation", load.get("quant") or "none"),
        ("weights computed (MiB)", _fmt(load.get("weight_bytes_computed"), 1 / MIB, 1)),
        ("load time (s)", _fmt(load.get("load_s"), 1, 2)),
        ("CPU", machine.get("cpu_model")),
        ("cores (logical)", machine.get("cpu_cores_logical")),
        ("RAM (GiB)", _fmt(machine.get("ram_bytes"), 1 / 2**30, 1)),
        ("GPU", gpu.get("name", "none")),
        (
            "versions",
            ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items()),
        ),
    ]
    parts = [f"# llmarch bench: {run['model']}", ""]
    parts += [f"- **{k}**: {v}" for k, v in facts]
    if rows:
        parts += ["", "## Summary (medians over repeats; warm-up runs excluded)", ""]
        parts.append(_md_table(*headline_table(rows)))
    if quality:
        q = (run.get("settings") or {}).get("quality") or {}
        parts += [
            "",
            f"## Quality (limit {q.get('limit') or 'all'}, {q.get('shots', 0)}-shot, "
            f"seed {q.get('seed')})",
            "",
            _md_table(*quality_table(quality)),
        ]
    for metric, (title, scale, shown) in SECTION_UNITS.items():
        if not rows:
            break
        headers = ["prompt tokens", "new tokens", "batch", "concurrency", "runs"] + [
            f"{stat} ({shown})" for stat in STAT_NAMES
        ]
        body = [
            [
                str(r["prompt_tokens"]),
                str(r["new_tokens"]),
                str(r["batch"]),
                str(r["concurrency"]),
                str(r["n"]),
            ]
            + [_fmt(r.get(f"{metric}_{stat}"), scale, 3) for stat in STAT_NAMES]
            for r in rows
        ]
        parts += ["", f"## {title} ({shown})", "", _md_table(headers, body)]
    parts.append("")
    return "\n".join(parts)


def json_document(
    run: dict[str, Any], rows: list[dict[str, Any]], samples: list[dict[str, Any]]
) -> dict[str, Any]:
    """Everything about one run as one JSON-ready dict."""
    clean_samples = []
    for s in samples:
        s = dict(s)
        s["token_times_s"] = json.loads(s.pop("token_times_json") or "[]")
        s.pop("id", None)
        clean_samples.append(s)
    return {"run": run, "summary": rows, "samples": clean_samples}


METRIC_LABELS = {
    # metric: (label with unit, scale of the shown value, digits)
    "acc": ("acc %", 100.0, 1),
    "acc_norm": ("acc_norm %", 100.0, 1),
    "exact_match": ("exact_match %", 100.0, 1),
    "perplexity": ("perplexity", 1.0, 2),
    "bits_per_byte": ("bits/byte", 1.0, 4),
    "byte_perplexity": ("byte ppl", 1.0, 4),
    "word_perplexity": ("word ppl", 1.0, 2),
    "token_perplexity": ("token ppl", 1.0, 2),
}
QUALITY_HEADERS = [
    "task",
    "metric",
    "value",
    "± s.e.",
    "items",
    "failed",
    "ties",
    "time (s)",
]


def quality_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """One line per task and metric; percentages for accuracies."""
    body = []
    for row in rows:
        for metric, fig in row["metrics"].items():
            label, scale, digits = METRIC_LABELS.get(metric, (metric, 1.0, 4))
            ties = row.get("ties_norm") if metric == "acc_norm" else row.get("ties")
            body.append(
                [
                    row["task"],
                    label,
                    _fmt(fig["value"], scale, digits),
                    _fmt(fig["stderr"], scale, digits),
                    str(row["items"]),
                    str(row["failed"]),
                    str(ties or 0) if metric in ("acc", "acc_norm") else "–",
                    _fmt(row["seconds"], 1, 1),
                ]
            )
    return QUALITY_HEADERS, body


def quality_frame(run: dict[str, Any], rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Long form: one row per task and metric, values as stored (fractions)."""
    settings = (run.get("settings") or {}).get("quality") or {}
    records = [
        {
            "run_id": run["run_id"],
            "model": run["model"],
            "backend": run["backend"],
            "device": run["device"],
            "dtype": run["dtype"],
            "task": row["task"],
            "kind": row["kind"],
            "metric": metric,
            "value": fig["value"],
            "stderr": fig["stderr"],
            "items": row["items"],
            "failed": row["failed"],
            "ties": row.get("ties_norm") if metric == "acc_norm" else row.get("ties"),
            "seconds": row["seconds"],
            "limit": settings.get("limit"),
            "shots": settings.get("shots"),
            "seed": settings.get("seed"),
        }
        for row in rows
        for metric, fig in row["metrics"].items()
    ]
    return pd.DataFrame(records)


def quality_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Wide columns for the speed summary: ``quality_<task>_<metric>[_stderr]``."""
    out: dict[str, Any] = {}
    for row in rows:
        for metric, fig in row["metrics"].items():
            out[f"quality_{row['task']}_{metric}"] = fig["value"]
            out[f"quality_{row['task']}_{metric}_stderr"] = fig["stderr"]
    return out


def write_reports(
    run: dict[str, Any],
    samples: list[dict[str, Any]],
    out_dir: Path,
    *,
    quality: list[dict[str, Any]] | None = None,
    items: list[dict[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write ``<run_id>.csv`` and ``<run_id>.md`` under ``out_dir``.

    With quality results, also ``<run_id>-quality.csv`` (one row per task and
    metric) and ``<run_id>-items.jsonl`` (every scored item); the speed CSV
    gains the quality figures as columns, so one table holds both.
    """
    rows = summarize_samples(samples, run)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if rows or not quality:
        csv_path = out_dir / f"{run['run_id']}.csv"
        frame = summary_frame(run, rows)
        for column, value in quality_columns(quality or []).items():
            frame[column] = value
        frame.to_csv(csv_path, index=False)
        paths["csv"] = csv_path
    if quality:
        q_path = out_dir / f"{run['run_id']}-quality.csv"
        quality_frame(run, quality).to_csv(q_path, index=False)
        paths["quality csv"] = q_path
        i_path = out_dir / f"{run['run_id']}-items.jsonl"
        with i_path.open("w", encoding="utf-8") as f:
            for item in items or []:
                f.write(json.dumps(item, ensure_ascii=False) + "\n")
        paths["items"] = i_path
    md_path = out_dir / f"{run['run_id']}.md"
    md_path.write_text(markdown_report(run, rows, quality or []), encoding="utf-8")
    paths["markdown"] = md_path
    return paths
