"""Predicted speed for models without results: limits x measured efficiency.

``inspect`` and the recommender use this one module. The limits are this
machine's (``llmarch hardware``; the figures stored with the latest local
run here, else the cache) or a named device's published figures. The
efficiencies are the median MBU and MFU over the settings of measured local
runs on this machine (``llmarch.roofline``), else the documented defaults;
for a named device, this machine's efficiencies do not carry over and the
defaults are used.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from llmarch import arch
from llmarch.report import summarize_samples
from llmarch.roofline import (
    Efficiency,
    Prediction,
    Work,
    efficiency_from_rows,
    peak_flops,
    predict,
    run_limits,
)

LOCAL_BACKENDS = ("transformers", "llamacpp")
WEIGHT_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "int8": 1.0}
WEIGHT_BYTES["4bit"] = 0.5
# The matmul dtype a weight format computes in.
COMPUTE_DTYPE = {"int8": "bfloat16", "4bit": "bfloat16"}


def hardware_key(machine: dict[str, Any] | None, device: str | None) -> str:
    """What decides local speed: the GPU's name, or the CPU model and cores."""
    machine = machine or {}
    gpu = machine.get("gpu") or {}
    if device and device.startswith("cuda") and gpu:
        return f"gpu:{gpu.get('name')}"
    return f"cpu:{machine.get('cpu_model')}:{machine.get('cpu_affinity')}"


@dataclass
class Basis:
    """Limits and efficiencies a prediction rests on."""

    limits: dict[str, Any] | None
    efficiency: Efficiency
    where: str  # "this machine" or the named device
    overhead_bytes: float | None = None  # peak memory beyond weights + KV
    runs: int = 0

    def note(self) -> str:
        if self.limits is None:
            return "no hardware limits known"
        return (
            f"{self.where}'s limits x efficiency "
            f"(bandwidth {self.efficiency.bandwidth:.0%}, FLOPs "
            f"{self.efficiency.flops:.0%}: {self.efficiency.source})"
        )


def local_rows(store: Any, here: str) -> tuple[list[dict], list[dict], list[dict]]:
    """Summary rows (with MBU / MFU), their runs, and runs without work info,
    for the completed local runs on this machine, newest first."""
    rows, runs, plain = [], [], []
    for run in sorted(store.runs(), key=lambda r: r["started_at"], reverse=True):
        if run["backend"] not in LOCAL_BACKENDS or run["status"] != "completed":
            continue
        machine = (run.get("metadata") or {}).get("machine")
        if hardware_key(machine, run["device"]) != here:
            continue
        found = summarize_samples(store.samples(run["run_id"]), run)
        if not found:
            continue
        runs.append(run)
        rows.extend({**r, "_run": run} for r in found)
        if run_limits(run) is None:
            plain.append(run)
    return rows, runs, plain


def this_machine(store: Any | None, here: str, device: str = "cpu") -> Basis:
    """Limits and efficiencies for this machine from its runs and the cache."""
    from llmarch import hardware

    rows, runs, _ = local_rows(store, here) if store is not None else ([], [], [])
    limits = next((run_limits(r) for r in runs if run_limits(r)), None)
    if limits is None:
        cached = hardware.cached(device)
        limits = hardware.as_dict(cached) if cached else None
    overhead = []
    for r in rows:
        weights = (r["_run"].get("load") or {}).get("weight_bytes")
        kv = r.get("kv_bytes_measured") or r.get("kv_bytes_computed") or 0
        if weights and r.get("peak_memory_bytes"):
            overhead.append(max(r["peak_memory_bytes"] - weights - kv, 0))
    return Basis(
        limits,
        efficiency_from_rows(rows),
        "this machine",
        statistics.median(overhead) if overhead else None,
        len({r["_run"]["run_id"] for r in rows if r.get("mbu") or r.get("mfu")}),
    )


def named_device(name: str) -> Basis:
    from llmarch import hardware

    dev = hardware.known_device(name)
    return Basis(dev.as_limits(), Efficiency(), dev.name)


def work_for(
    a: arch.Architecture, weights_dtype: str, kv_bytes_per_element: int
) -> Work:
    """The work of a model loaded with ``weights_dtype`` weights."""
    return Work.from_arch(
        a,
        weight_bytes=int(a.params_total * WEIGHT_BYTES[weights_dtype]),
        kv_bytes_per_element=kv_bytes_per_element,
    )


def predicted(
    work: Work,
    basis: Basis,
    *,
    weights_dtype: str,
    prompt_tokens: int,
    new_tokens: int,
    batch: int,
) -> Prediction | None:
    """Decode tokens/s and TTFT, or None without limits."""
    lim = basis.limits
    if lim is None or not lim.get("read_bandwidth"):
        return None
    flops = peak_flops(lim, COMPUTE_DTYPE.get(weights_dtype, weights_dtype))
    if not flops:
        return None
    return predict(
        work,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        batch=batch,
        bandwidth=lim["read_bandwidth"],
        flops=flops,
        eff=basis.efficiency,
    )
