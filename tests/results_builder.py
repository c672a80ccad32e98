"""Hand-built results databases: runs whose every figure is chosen in the test.

``add_speed_run`` stores ``repeat`` generations per setting with a TTFT of
``ttft_s`` and a constant step of ``1 / decode_tps`` (per row of the batch),
so that the stored TTFT, decode tokens/s and peak memory are exactly the
values given; ``add_quality_run`` stores 0/1 credits so that accuracy is
``right / items``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmarch.backends.base import GenerationSample
from llmarch.store import ResultStore

MACHINE = {"cpu_model": "Test CPU", "cpu_affinity": 2, "gpu": None}
HERE = "cpu:Test CPU:2"  # candidates.hardware_key(MACHINE, "cpu")
OTHER = {"cpu_model": "Other CPU", "cpu_affinity": 64, "gpu": None}


def store_at(path: Path) -> ResultStore:
    return ResultStore(path)


def add_speed_run(
    store: ResultStore,
    model: str,
    *,
    decode_tps: float,
    ttft_s: float,
    peak_bytes: int,
    weight_bytes: int = 10**9,
    params: int = 5 * 10**8,
    kv_bytes: int = 0,
    prompt_tokens: int = 128,
    new_tokens: int = 9,
    batch: int = 1,
    repeat: int = 3,
    jitter: float = 0.0,
    backend: str = "transformers",
    machine: dict[str, Any] | None = None,
    run_id: str | None = None,
    started_at: str | None = None,
    extra_meta: dict[str, Any] | None = None,
    run_meta: dict[str, Any] | None = None,
) -> str:
    """A completed run with one setting whose figures are the ones given.

    ``jitter`` spreads the repeats' decode speed by +/- that fraction;
    ``run_meta`` adds run metadata (``work`` and ``hardware`` for MBU / MFU).
    """
    run_id = store.start_run(
        model=model,
        backend=backend,
        device="cpu",
        dtype="float32",
        settings={},
        metadata={
            "machine": machine or MACHINE,
            "model": {"parameters": params, **(extra_meta or {})},
            **(run_meta or {}),
        },
        run_id=run_id,
    )
    store.update_run(run_id, load_json={"weight_bytes": weight_bytes})
    offsets = [0.0] if repeat == 1 else [-jitter, 0.0, jitter][:repeat]
    offsets += [0.0] * (repeat - len(offsets))
    for i, off in enumerate(offsets):
        step = batch / (decode_tps * (1 + off))
        times = [ttft_s + k * step for k in range(new_tokens)]
        store.add_sample(
            run_id,
            GenerationSample(
                prompt_tokens=prompt_tokens,
                new_tokens=new_tokens,
                batch=batch,
                t0=0.0,
                token_times=times,
                kv_tokens=prompt_tokens + new_tokens - 1,
                kv_bytes_measured=kv_bytes,
                kv_bytes_computed=kv_bytes,
                peak_memory_bytes=peak_bytes,
            ),
            repeat=i,
            is_warmup=False,
        )
    store.finish_run(run_id, "completed")
    if started_at:
        with store.conn:
            store.conn.execute(
                "UPDATE runs SET started_at = ? WHERE run_id = ?", (started_at, run_id)
            )
    return run_id


def add_quality_run(
    store: ResultStore,
    model: str,
    task: str,
    *,
    right: int,
    items: int,
    limit: int | None = None,
    backend: str = "transformers",
) -> str:
    """A completed eval run: ``right`` of ``items`` multiple-choice items right."""
    run_id = store.start_run(
        model=model,
        backend=backend,
        device="cpu",
        dtype="float32",
        settings={"quality": {"tasks": [task], "limit": limit}},
        metadata={"machine": MACHINE},
    )
    records = [
        {"item_id": str(i), "credit": 1.0 if i < right else 0.0, "tied": False}
        for i in range(items)
    ]
    store.add_items(run_id, task, "multiple_choice", records, seconds=0.1)
    store.finish_run(run_id, "completed")
    return run_id
