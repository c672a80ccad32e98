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


def _gb(n: int | None) -> str:
    return "–" if n is None else f"{n / GB:,.2f}"


def _list(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


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
        ("query / KV heads", f"{r['query_heads']} / {_list(r['kv_heads'])}"),
        ("head dim", _list(r["head_dim"])),
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
        rows.append((f"weights {dtype} (GB)", _gb(size)))
    rows += [
        (f"KV per token, {r['kv_dtype']} (bytes)", f"{r['kv_bytes_per_token']:,}"),
        (f"KV at {r['context']:,} tokens x {r['batch']} (GB)", _gb(r["kv_bytes"])),
        ("same with plain MHA (GB)", _gb(r["kv_bytes_mha"])),
        (f"weights {r['weights_dtype']} + KV (GB)", _gb(r["memory_needed_bytes"])),
    ]
    for budget, fits in r["fits"].items():
        rows.append((f"fits in {budget}", "yes" if fits else "no"))
    if r["license"]:
        rows.append(
            (
                "licence / open weights",
                f"{r['license']} / {'yes' if r['open_weights'] else 'no'}",
            )
        )
    for name, api_id in (r["api_ids"] or {}).items():
        rows.append((f"API id ({name})", api_id))
    return rows


def inspect_table(reports: list[dict[str, Any]]) -> Table:
    """One column per model, one row per figure."""
    table = Table(
        box=box.SIMPLE_HEAD,
        caption="GB = 10^9 bytes; memory excludes activations and framework overhead",
    )
    table.add_column("", style="bold")
    for r in reports:
        table.add_column(r["model"], overflow="fold")
    per_model = [dict(inspect_rows(r)) for r in reports]
    labels: list[str] = []
    for rows in per_model:  # every label once, in first-seen order
        labels += [label for label in rows if label not in labels]
    for label in labels:
        table.add_row(label, *(rows.get(label, "–") for rows in per_model))
    return table
