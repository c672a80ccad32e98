"""``llmarch hardware``: this machine's measured limits, and known devices."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from llmarch.errors import LlmarchError

GB = 1e9


def hardware(
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Measure again instead of the cache.")
    ] = False,
    device: Annotated[
        str, typer.Option(help="cpu, cuda or auto (cpu, and cuda when present).")
    ] = "auto",
    known: Annotated[
        bool,
        typer.Option("--known", help="List the named devices inspect can predict for."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Measure (once, then cached) memory bandwidth and matmul FLOP/s."""
    from llmarch import hardware as hw
    from llmarch.cli import _fail, err, out
    from llmarch.sysinfo import machine_info

    if known:
        _known(as_json)
        return
    if device not in ("auto", "cpu", "cuda"):
        _fail(f"--device must be auto, cpu or cuda, not '{device}'")
        return
    info = machine_info()
    devices = ["cpu"] if device in ("auto", "cpu") else []
    if device in ("auto", "cuda") and info.get("gpu"):
        devices.append("cuda")
    if device == "cuda" and not info.get("gpu"):
        _fail("no CUDA device here; run `llmarch hardware --device cpu`")
        return
    found = []
    try:
        for d in devices:
            cached = None if refresh else hw.cached(d)
            if cached is None:
                with err.status(f"Measuring {d} bandwidth and FLOP/s (about 10 s)"):
                    cached = hw.limits(d, refresh=True)
            found.append(cached)
    except (LlmarchError, RuntimeError) as exc:
        _fail(f"could not measure: {exc}")
        return
    if as_json:
        doc = {
            "machine": info,
            "cache": str(hw._cache_path()),
            "devices": [hw.as_dict(x) for x in found],
        }
        out.print_json(json.dumps(doc, default=str))
        return
    gpu = info.get("gpu") or {}
    facts = Table(box=box.SIMPLE_HEAD, show_header=False)
    facts.add_column("", style="bold")
    facts.add_column("")
    facts.add_row("CPU", str(info.get("cpu_model")))
    facts.add_row(
        "cores",
        f"{info.get('cpu_cores_physical')} physical, "
        f"{info.get('cpu_cores_logical')} logical, "
        f"{info.get('cpu_affinity')} usable; torch threads {info.get('torch_threads')}",
    )
    facts.add_row("memory", f"{(info.get('ram_bytes') or 0) / 2**30:.1f} GiB")
    facts.add_row(
        "GPU",
        f"{gpu.get('name')} ({gpu.get('memory_bytes', 0) / 2**30:.1f} GiB, "
        f"driver {gpu.get('driver')}, CUDA {gpu.get('cuda')})"
        if gpu
        else "none",
    )
    facts.add_row("cache", str(hw._cache_path()))
    out.print(facts)
    table = Table(title="measured limits", box=box.SIMPLE_HEAD)
    table.add_column("figure", no_wrap=True)
    for x in found:
        table.add_column(f"{x.device}: {x.name}", justify="right", no_wrap=True)
    table.add_row(
        "read bandwidth", *[f"{x.read_bandwidth / GB:.1f} GB/s" for x in found]
    )
    table.add_row(
        "copy bandwidth", *[f"{x.copy_bandwidth / GB:.1f} GB/s" for x in found]
    )
    for dt in sorted({k for x in found for k in x.matmul_flops}):
        table.add_row(
            f"{dt} matmul",
            *[
                f"{x.matmul_flops[dt] / GB:,.0f} GFLOP/s"
                if dt in x.matmul_flops
                else "–"
                for x in found
            ],
        )
    table.add_row("measured at", *[x.measured_at for x in found])
    out.print(table)
    for x in found:
        err.print(f"method ({x.device}): {x.method}", highlight=False)


def _known(as_json: bool) -> None:
    from llmarch import hardware as hw
    from llmarch.cli import out

    if as_json:
        out.print_json(
            json.dumps(
                {
                    k: {**d.as_limits(), "memory_bytes": d.memory_bytes}
                    for k, d in hw.KNOWN_DEVICES.items()
                }
            )
        )
        return
    table = Table(
        title="named devices (published figures; dense, no sparsity)",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("name", no_wrap=True)
    table.add_column("device")
    for col in ("GB", "TB/s", "fp32\nTFLOP/s", "bf16\nTFLOP/s", "fp16\nTFLOP/s"):
        table.add_column(col, justify="right", no_wrap=True)
    for key, d in hw.KNOWN_DEVICES.items():
        table.add_row(
            key,
            d.name.removeprefix("NVIDIA ").removeprefix("GeForce "),
            f"{d.memory_bytes / GB:.0f}",
            f"{d.bandwidth / 1e12:.3f}",
            *[
                f"{d.matmul_flops[dt] / 1e12:.1f}" if dt in d.matmul_flops else "–"
                for dt in ("float32", "bfloat16", "float16")
            ],
        )
    out.print(table)
