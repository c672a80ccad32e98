"""Rich tables for figures that the command line shows (inspect)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

GB = 10**9


def _count(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n:,} ({n / 1e9:.2f} B)" if n >= 1e8 else f"{n:,} ({n / 1e6:.1f} M)"


def _size(n: int | None) -> str:
    """Bytes in decimal units with three significant figures or more."""
    if n is None:
        return "–"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n} B"


def _kv_layout(r: dict[str, Any]) -> str:
    parts = []
    for k in r["kv_layout"]:
        if not k["stores_kv"]:
            what = "reuse an earlier cache"
        elif k["mla_latent"]:
            what = f"latent {k['mla_latent']}"
        else:
            what = f"{k['kv_heads']} x {k['head_dim']}"
        parts.append(f"{k['layers']} {k['attention']}: {what}")
    return "; ".join(parts)


def inspect_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs for one model's inspect report."""
    moe = (
        f"{r['experts']} experts, {r['experts_per_token']} per token"
        + (f", {r['shared_experts']} shared" if r["shared_experts"] else "")
        if r["experts"]
        else "dense"
    )
    published = _count(r["params_published"])
    rows = [
        ("source", r["source"]),
        ("model type", r["model_type"]),
        ("attention", r["attention"]),
        ("layers", f"{r['layers']}: {r['layout']}"),
        ("hidden size", f"{r['hidden_size']:,}"),
        ("query heads", str(r["query_heads"])),
        ("KV heads x head dim", _kv_layout(r)),
        ("vocabulary", f"{r['vocab_size']:,}"),
        (
            "context length (tokens)",
            f"{r['context_length']:,}" if r["context_length"] else "–",
        ),
        ("MoE", moe),
        (
            "positions / norm / activation",
            f"{r['positional']} / {r['norm']} / {r['activation']}",
        ),
        ("parameters, computed", _count(r["params_total"])),
        ("parameters, published", published),
        ("active per token, computed", _count(r["params_active"])),
        ("active per token, published", _count(r["params_active_published"])),
        ("active, without lookup-only tables", _count(r["params_active_compute"])),
        ("embedding parameters", _count(r["params_embedding"])),
    ]
    for dtype, size in r["weight_bytes"].items():
        rows.append((f"weights {dtype}", _size(size)))
    rows += [
        (f"KV per token, {r['kv_dtype']}", f"{r['kv_bytes_per_token']:,} B"),
        (f"KV at {r['context']:,} tokens x {r['batch']:,}", _size(r["kv_bytes"])),
        ("same with plain MHA", _size(r["kv_bytes_mha"])),
        (f"weights {r['weights_dtype']} + KV", _size(r["memory_needed_bytes"])),
    ]
    for budget, fits in r["fits"].items():
        rows.append((f"fits in {budget}", "yes" if fits else "no"))
    pred = r.get("prediction")
    if pred:
        setting = f"P={pred['prompt_tokens']} N={pred['new_tokens']} B={pred['batch']}"
        if pred.get("decode_tps") is None and pred.get("ttft_s") is None:
            rows.append((f"predicted speed ({pred['where']})", pred["basis"]))
        else:
            rows.append(
                (
                    f"predicted decode tok/s ({setting})",
                    f"~{pred['decode_tps']:,.1f}" if pred["decode_tps"] else "–",
                )
            )
            rows.append(
                (f"predicted TTFT ms ({setting})", f"~{pred['ttft_s'] * 1e3:,.0f}")
            )
            rows.append(("prediction basis", pred["basis"]))
    if r["license"]:
        rows.append(
            (
                "licence / open weights",
                f"{r['license']} / {'yes' if r['open_weights'] else 'no'}",
            )
        )
    for name, api_id in (r["api_ids"] or {}).items():
        rows.append((f"API id ({name})", api_id))
    for i, note in enumerate(r["notes"]):
        rows.append((f"note {i + 1}", note))
    return rows


LABEL_WIDTH = 34
MODEL_WIDTH = 26


def inspect_tables(reports: list[dict[str, Any]], *, width: int) -> list[Table]:
    """Side-by-side tables, as many models per table as the width allows.

    Splitting keeps every number whole rather than folding it mid-digit.
    """
    per_table = max(1, (width - LABEL_WIDTH) // MODEL_WIDTH)
    return [
        inspect_table(reports[i : i + per_table])
        for i in range(0, len(reports), per_table)
    ]


def inspect_table(reports: list[dict[str, Any]]) -> Table:
    """One column per model, one row per figure."""
    table = Table(
        box=box.SIMPLE_HEAD,
        caption="GB, MB, kB: powers of 10; memory "
        "excludes activations and framework overhead",
    )
    table.add_column("", style="bold", min_width=20)
    for r in reports:
        table.add_column(r["model"], overflow="fold", min_width=MODEL_WIDTH - 2)
    per_model = [dict(inspect_rows(r)) for r in reports]
    labels: list[str] = []
    for rows in per_model:  # every label once, in first-seen order
        labels += [label for label in rows if label not in labels]
    for label in labels:
        table.add_row(label, *(rows.get(label, "–") for rows in per_model))
    return table


def load_table(levels: list[dict[str, Any]]) -> Table:
    """One row per load level: throughput, goodput and latency percentiles."""
    table = Table(
        box=box.SIMPLE_HEAD,
        caption="latencies over completed requests; "
        "throughputs over each level's wall time",
        pad_edge=False,
    )
    headers = (
        "level",
        "ok",
        "err",
        "req/s",
        "good\nreq/s",
        "out\ntok/s",
        "TTFT\np50 ms",
        "TTFT\np99 ms",
        "TPOT\np50 ms",
        "TPOT\np99 ms",
        "e2e\np50 s",
    )
    for h in headers:
        table.add_column(h, justify="right", overflow="fold")

    def num(v: Any, scale: float = 1.0, digits: int = 2) -> str:
        return "–" if v is None else f"{v * scale:.{digits}f}"

    for lv in levels:
        label = (
            f"c={lv['value']:g}"
            if lv["kind"] == "concurrency"
            else f"{lv['value']:g}/s"
        )
        table.add_row(
            label,
            str(lv["completed"]),
            str(lv["failed"]),
            num(lv["request_throughput"]),
            num(lv["goodput"]),
            num(lv["output_throughput"], digits=1),
            num(lv["ttft_s_median"], 1e3, 0),
            num(lv["ttft_s_p99"], 1e3, 0),
            num(lv["tpot_s_median"], 1e3, 0),
            num(lv["tpot_s_p99"], 1e3, 0),
            num(lv["e2e_s_median"]),
        )
    return table
