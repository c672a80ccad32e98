"""The tables of a report, as headers and formatted cells.

Markdown and HTML render the same sections, so a figure reads the same in
both. Every header names its unit; stored values are SI (seconds, bytes) and
shown in ms and MiB (2^20 bytes) where that reads better.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmarch.report import _fmt, quality_table
from llmarch.reports.aggregate import RunData
from llmarch.reports.derived import KV_TABLE_TOKENS, KvModel, ParetoData

MIB = 2**20


@dataclass
class Section:
    """A titled table with an optional sentence before it."""

    title: str
    headers: list[str]
    body: list[list[str]]
    intro: str = ""
    notes: list[str] = field(default_factory=list)


def _setting(row: dict[str, Any]) -> list[str]:
    return [
        _fmt(row.get("prompt_tokens"), 1, 0),
        _fmt(row.get("new_tokens"), 1, 0),
        _fmt(row.get("batch"), 1, 0),
        _fmt(row.get("concurrency"), 1, 0),
    ]


SETTING_HEADERS = [
    "prompt (tokens)",
    "new (tokens)",
    "batch (sequences)",
    "concurrency (requests)",
]


def runs_section(data: list[RunData]) -> Section:
    body = []
    for d in data:
        run = d.run
        machine = (run.get("metadata") or {}).get("machine") or {}
        gpu = (machine.get("gpu") or {}).get("name")
        body.append(
            [
                d.run_id,
                str(run["started_at"]),
                str(run["status"]),
                str(run["model"]),
                str(run["backend"]),
                str(run.get("device") or "–"),
                str(run.get("dtype") or "–"),
                str(gpu or machine.get("cpu_model") or "–"),
                _fmt((run.get("load") or {}).get("weight_bytes"), 1 / MIB, 1),
                str(len(d.rows)),
                str(sum(r["n"] for r in d.rows)),
            ]
        )
    headers = [
        "run",
        "started (UTC)",
        "status",
        "model",
        "backend",
        "device",
        "dtype",
        "GPU or CPU",
        "weights (MiB)",
        "settings (count)",
        "samples (count)",
    ]
    return Section("Runs", headers, body)


LATENCY_COLUMNS = (
    # header, column, scale, digits
    ("TTFT median (ms)", "ttft_s_median", 1e3, 2),
    ("TTFT p90 (ms)", "ttft_s_p90", 1e3, 2),
    ("TTFT p99 (ms)", "ttft_s_p99", 1e3, 2),
    ("TPOT median (ms)", "tpot_s_median", 1e3, 3),
    ("TPOT p90 (ms)", "tpot_s_p90", 1e3, 3),
    ("TPOT p99 (ms)", "tpot_s_p99", 1e3, 3),
    ("end-to-end median (s)", "e2e_s_median", 1, 3),
    ("end-to-end p99 (s)", "e2e_s_p99", 1, 3),
)
THROUGHPUT_COLUMNS = (
    ("prefill median (tokens/s)", "prefill_tps_median", 1, 1),
    ("decode median (tokens/s)", "decode_tps_median", 1, 2),
    ("decode mean (tokens/s)", "decode_tps_mean", 1, 2),
    ("decode std (tokens/s)", "decode_tps_std", 1, 2),
    ("KV measured (MiB)", "kv_bytes_measured", 1 / MIB, 3),
    ("KV computed (MiB)", "kv_bytes_computed", 1 / MIB, 3),
    ("peak memory (MiB)", "peak_memory_bytes", 1 / MIB, 1),
)


def _per_setting(
    data: list[RunData], columns: tuple[tuple[str, str, float, int], ...]
) -> tuple[list[str], list[list[str]]]:
    headers = ["model", "run", *SETTING_HEADERS, "runs (count)", "failed (count)"]
    headers += [h for h, *_ in columns]
    body = []
    for d in data:
        for row in d.rows:
            cells = [str(d.run["model"]), d.run_id, *_setting(row)]
            cells += [str(row["n"]), str(row.get("failed") or 0)]
            for _h, column, scale, digits in columns:
                cell = _fmt(row.get(column), scale, digits)
                if column == "kv_bytes_measured" and row.get("kv_match") is not None:
                    cell += " ✓" if row["kv_match"] else " ✗"
                cells.append(cell)
            body.append(cells)
    return headers, body


def latency_section(data: list[RunData]) -> Section:
    headers, body = _per_setting(data, LATENCY_COLUMNS)
    intro = (
        "Percentiles over the measured repeats of each setting (warm-ups "
        "excluded), by linear interpolation; one row per run and setting."
    )
    return Section("Latency", headers, body, intro)


def throughput_section(data: list[RunData]) -> Section:
    headers, body = _per_setting(data, THROUGHPUT_COLUMNS)
    intro = (
        "Decode tokens/s counts every sequence of the batch; ✓ when the "
        "measured KV cache equals the computed one in every repeat."
    )
    return Section("Throughput and memory", headers, body, intro)


def quality_section(data: list[RunData]) -> Section | None:
    body = []
    for d in data:
        if d.quality:
            _, rows = quality_table(d.quality)
            body += [[str(d.run["model"]), d.run_id, *r] for r in rows]
    if not body:
        return None
    headers = [
        "model",
        "run",
        "task",
        "metric (unit)",
        "value (metric's unit)",
        "± s.e. (metric's unit)",
        "items (count)",
        "failed (count)",
        "ties (count)",
        "time (s)",
    ]
    intro = "Accuracies in percent; standard error of the mean over items."
    return Section("Quality", headers, body, intro)


def kv_section(models: list[KvModel], skipped: list[tuple[str, str]]) -> Section:
    headers = [
        "model",
        "attention",
        "layers",
        "context (tokens)",
        "KV per token (bytes)",
    ]
    headers += [f"KV at {t:,} tokens (MiB)" for t in KV_TABLE_TOKENS]
    headers.append("KV at full context (MiB)")
    body = []
    for m in models:
        cells = [
            m.model,
            m.attention,
            m.layout,
            _fmt(m.context_length, 1, 0),
            _fmt(m.per_token_bytes, 1, 0),
        ]
        cells += [_fmt(m.bytes_at(t), 1 / MIB, 2) for t in KV_TABLE_TOKENS]
        cells.append(
            _fmt(m.bytes_at(m.context_length), 1 / MIB, 2) if m.context_length else "–"
        )
        body.append(cells)
    intro = (
        "Computed from each model's config (llmarch.arch) for one sequence at "
        "16-bit elements; sliding-window layers hold at most window − 1 tokens; "
        "– beyond the model's context."
    )
    notes = [f"{model}: no KV arithmetic ({why})" for model, why in skipped]
    return Section("KV cache against context length", headers, body, intro, notes)


def pareto_section(p: ParetoData) -> Section:
    headers = [
        "model",
        "backend",
        "quality (%)",
        "± s.e. (%)",
        "decode (tokens/s)",
        "memory (MiB)",
        "on the front",
    ]
    body = [
        [
            x.model,
            x.backend,
            _fmt(x.quality, 100, 2),
            _fmt(x.quality_se, 100, 2),
            _fmt(x.decode_tps, 1, 2),
            _fmt(x.memory_bytes, 1 / MIB, 1),
            "◆" if x.front else "",
        ]
        for x in p.points
    ]
    intro = (
        f"The recommender's figures for each model and backend ({p.note}); ◆ "
        "no other candidate matches or beats it on quality, decode tokens/s and "
        "memory together while beating it on one."
    )
    return Section("Quality and speed (Pareto front)", headers, body, intro)


def sections(
    data: list[RunData],
    kv: tuple[list[KvModel], list[tuple[str, str]]],
    pareto: ParetoData | None,
) -> list[Section]:
    """Every table of the report, in reading order."""
    out = [runs_section(data)]
    if any(d.rows for d in data):
        out += [latency_section(data), throughput_section(data)]
    quality = quality_section(data)
    if quality is not None:
        out.append(quality)
    if kv[0] or kv[1]:
        out.append(kv_section(*kv))
    if pareto is not None and pareto.points:
        out.append(pareto_section(pareto))
    return out
