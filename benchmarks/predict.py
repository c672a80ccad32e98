"""Predicted against measured speed of the packaged model at two contexts.

Benches the model once at two prompt lengths (``llmarch bench``, one run),
then, for each prompt length, predicts decode tokens/s and TTFT from the
machine's limits (``llmarch hardware``) and the efficiencies (MBU, MFU)
measured at the *other* prompt length only (leave one context out), and
reports the error of each prediction against the measurement. This is the
rule inspect and the recommender use for models without results
(``llmarch.roofline``); the check passes when every error is within 25%.

    python benchmarks/predict.py [--model gemma-3-270m] [--contexts 128,1024]
        [--new-tokens 32] [--repeat 3] [--refresh-hardware] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from llmarch import hardware
from llmarch.roofline import Efficiency, predict, run_work

THRESHOLD = 0.25


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the packaged model")
    parser.add_argument("--contexts", default="128,1024")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--refresh-hardware", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    if args.refresh_hardware:
        hardware.limits("cpu", refresh=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            *(sys.executable, "-c", "from llmarch.cli import main; main()", "bench"),
            *([args.model] if args.model else []),
            *("--prompt-tokens", args.contexts, "--new-tokens", str(args.new_tokens)),
            *("--repeat", str(args.repeat), "--warmup", "1", "--json"),
            *("--db", str(Path(tmp) / "p.sqlite"), "--out-dir", tmp),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return 1
    doc = json.loads(done.stdout)
    run, rows = doc["run"], doc["summary"]
    work = run_work(run)
    limits = run["metadata"]["hardware"]
    bw, flops = limits["read_bandwidth"], limits["matmul_flops"][run["dtype"]]
    if work is None or len(rows) != 2:
        print("need a local run with two prompt lengths", file=sys.stderr)
        return 1

    results = []
    for i, row in enumerate(rows):
        other = rows[1 - i]
        eff = Efficiency(
            other["mbu"], other["prefill_eff"], f"P={other['prompt_tokens']}"
        )
        p = predict(
            work,
            prompt_tokens=row["prompt_tokens"],
            new_tokens=row["new_tokens"],
            batch=row["batch"],
            bandwidth=bw,
            flops=flops,
            eff=eff,
        )
        results.append(
            {
                "prompt_tokens": row["prompt_tokens"],
                "calibrated_on": other["prompt_tokens"],
                "mbu": row["mbu"],
                "mfu": row["mfu"],
                "decode_tps": row["decode_tps_median"],
                "decode_tps_predicted": p.decode_tps,
                "decode_error": p.decode_tps / row["decode_tps_median"] - 1,
                "ttft_s": row["ttft_s_median"],
                "ttft_s_predicted": p.ttft_s,
                "ttft_error": p.ttft_s / row["ttft_s_median"] - 1,
            }
        )
    ok = all(
        abs(r["decode_error"]) <= THRESHOLD and abs(r["ttft_error"]) <= THRESHOLD
        for r in results
    )
    if args.json:
        print(json.dumps({"limits": limits, "results": results, "ok": ok}, indent=2))
    else:
        print(
            f"{run['model']} ({run['backend']}, {run['device']}, {run['dtype']}); "
            f"limits: read {bw / 1e9:.1f} GB/s, {run['dtype']} matmul "
            f"{flops / 1e9:.0f} GFLOP/s; N={rows[0]['new_tokens']}, "
            f"{args.repeat} repeats\n"
        )
        print(
            "| P | calibrated on P | MBU % | MFU % | decode tok/s | predicted "
            "| error | TTFT ms | predicted | error |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            print(
                f"| {r['prompt_tokens']} | {r['calibrated_on']} "
                f"| {r['mbu'] * 100:.1f} | {r['mfu'] * 100:.1f} "
                f"| {r['decode_tps']:.2f} | {r['decode_tps_predicted']:.2f} "
                f"| {r['decode_error']:+.1%} | {r['ttft_s'] * 1e3:.1f} "
                f"| {r['ttft_s_predicted'] * 1e3:.1f} | {r['ttft_error']:+.1%} |"
            )
        print(f"\n{'PASS' if ok else 'FAIL'}: every error within {THRESHOLD:.0%}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
