"""The API client's own cost per request at 1, 16 and 64 concurrent streams.

A local OpenAI-compatible stub (``tests/fault_server.py``) runs in a child
process and streams ``--chunks`` text chunks per request as fast as it can,
so the server does almost no work. In this process llmarch's OpenAI backend
sends the requests; its CPU time (``time.process_time``) divided by the
number of requests is the client's overhead per request, and divided by the
chunks, per chunk. Wall time per level is shown beside it.

    python benchmarks/client_overhead.py [--levels 1,16,64] [--requests 64]
        [--chunks 64] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.fault_server import FaultServer
with FaultServer(words={chunks}, gap_s=0.0) as server:
    print(server.base_url, flush=True)
    time.sleep(3600)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from llmarch.backends.openai_backend import OpenAIBackend
    from llmarch.load import LoadSettings, run_level

    child = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(root=str(ROOT), chunks=args.chunks)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = child.stdout.readline().strip()  # type: ignore[union-attr]
        backend = OpenAIBackend(base_url=base_url, model="fault-model")
        backend.load()
        rows = []
        for level in (int(x) for x in args.levels.split(",")):
            settings = LoadSettings(
                concurrency=[level],
                rates=[],
                requests=args.requests,
                prompt_tokens=16,
                new_tokens=args.chunks,
            )
            cpu, wall = time.process_time(), time.perf_counter()
            samples, _ = run_level(backend, "concurrency", level, settings)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            failed = sum(s.error is not None for s in samples)
            chunks = sum(len(s.token_times) for s in samples)
            rows.append(
                {
                    "concurrency": level,
                    "requests": len(samples),
                    "failed": failed,
                    "client_cpu_ms_per_request": 1e3 * cpu / len(samples),
                    "client_cpu_us_per_chunk": 1e6 * cpu / max(chunks, 1),
                    "wall_s": wall,
                    "requests_per_s": len(samples) / wall,
                }
            )
    finally:
        child.kill()

    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{args.requests} requests per level, {args.chunks} chunks each")
        print(
            f"{'streams':>8} {'CPU ms/req':>11} {'CPU us/chunk':>13} "
            f"{'wall s':>7} {'req/s':>7} {'failed':>6}"
        )
        for r in rows:
            print(
                f"{r['concurrency']:>8} {r['client_cpu_ms_per_request']:>11.2f} "
                f"{r['client_cpu_us_per_chunk']:>13.1f} {r['wall_s']:>7.2f} "
                f"{r['requests_per_s']:>7.1f} {r['failed']:>6}"
            )
    return 0 if all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
