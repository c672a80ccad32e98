#!/usr/bin/env bash
# GPU check: the packaged model through `llmarch bench` in float32, bfloat16,
# bitsandbytes 8-bit and 4-bit, on a CUDA machine with no network.
#
#   benchmarks/gpu_check.sh                        # needs nvidia-smi and CUDA
#   LLMARCH_CHECK_DEVICE=cpu benchmarks/gpu_check.sh   # everything but CUDA
#
# For each format it asserts that the measured KV cache equals the arithmetic
# to the byte, that the loaded weight bytes are within the README's tolerance
# (0.1 %) of the arithmetic for that format, and (on CUDA) that the prefill
# and decode allocator peaks were read and the GPU name and driver recorded.
# It prints one table and exits non-zero on the first failed check. Each bench
# is bounded by `timeout`, the whole script by about 4 minutes on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

DEVICE="${LLMARCH_CHECK_DEVICE:-cuda}"
PER_RUN_S="${LLMARCH_CHECK_TIMEOUT_S:-50}"
FORMATS="${LLMARCH_CHECK_FORMATS:-float32:none bfloat16:none bfloat16:bnb-8bit bfloat16:bnb-4bit}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [[ "$DEVICE" == cuda* ]]; then
    command -v nvidia-smi >/dev/null || { echo "gpu_check: nvidia-smi not found; no NVIDIA driver here" >&2; exit 1; }
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        || { echo "gpu_check: torch sees no CUDA device (CPU build of torch?)" >&2; exit 1; }
fi
python -c "import bitsandbytes" 2>/dev/null \
    || { echo "gpu_check: bitsandbytes missing: pip install 'llmarch[gpu]'" >&2; exit 1; }

# The first bench converts the packaged GGUF once (cached); give it longer.
first=1
for pair in $FORMATS; do
    dtype="${pair%%:*}" quant="${pair##*:}"
    limit="$PER_RUN_S"
    if [[ $first == 1 ]]; then limit=$((PER_RUN_S + 90)); first=0; fi
    echo "gpu_check: bench $dtype $quant on $DEVICE (at most ${limit}s)" >&2
    timeout "$limit" llmarch bench gemma-3-270m --device "$DEVICE" --dtype "$dtype" \
        --quant "$quant" --prompt-tokens 128 --new-tokens 32 --batch 1,4 \
        --repeat 2 --warmup 1 --json --db "$WORK/check.sqlite" --out-dir "$WORK" \
        > "$WORK/$dtype-$quant.json"
done

python - "$WORK" "$DEVICE" $FORMATS <<'PY'
import json
import sys
from pathlib import Path

work, device, pairs = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
TOLERANCE = 0.001  # llmarch.backends.transformers_backend.WEIGHT_TOLERANCE
MIB = 2**20
failures = []
print(f"{'format':<20} {'weights MiB':>11} {'computed':>9} {'KV ok':>6} "
      f"{'decode tok/s B=1':>16} {'B=4':>8} {'prefill pk MiB':>14} {'decode pk MiB':>13}")
gpu = None
for pair in pairs:
    dtype, quant = pair.split(":")
    doc = json.loads((work / f"{dtype}-{quant}.json").read_text())
    run = doc["run"]
    load = run.get("load") or {}
    gpu = gpu or (run.get("metadata") or {}).get("machine", {}).get("gpu")
    measured, computed = load.get("weight_bytes"), load.get("weight_bytes_computed")
    if not measured or not computed:
        failures.append(f"{pair}: no weight figures")
    elif abs(measured - computed) > TOLERANCE * computed:
        failures.append(f"{pair}: weights {measured} vs arithmetic {computed}")
    kv_ok = True
    for s in doc["samples"]:
        if s["kv_bytes_measured"] != s["kv_bytes_computed"]:
            kv_ok = False
            failures.append(
                f"{pair}: KV {s['kv_bytes_measured']} != {s['kv_bytes_computed']} "
                f"(P={s['prompt_tokens']} B={s['batch']})"
            )
        if device.startswith("cuda") and not s["is_warmup"]:
            if not s.get("prefill_peak_bytes") or not s.get("decode_peak_bytes"):
                failures.append(f"{pair}: no allocator peak per phase")
    rows = {r["batch"]: r for r in doc["summary"]}
    measured_s = [s for s in doc["samples"] if not s["is_warmup"]]
    pre = max((s.get("prefill_peak_bytes") or 0) for s in measured_s) / MIB
    dec = max((s.get("decode_peak_bytes") or 0) for s in measured_s) / MIB
    print(f"{dtype + ' ' + quant:<20} {measured / MIB:>11.1f} {computed / MIB:>9.1f} "
          f"{'yes' if kv_ok else 'NO':>6} {rows[1]['decode_tps_median']:>16.1f} "
          f"{rows[4]['decode_tps_median']:>8.1f} {pre:>14.1f} {dec:>13.1f}")
if device.startswith("cuda"):
    if not gpu or not gpu.get("name") or not (gpu.get("driver") or gpu.get("cuda")):
        failures.append(f"run metadata lacks the GPU name and driver: {gpu}")
    else:
        print(f"GPU: {gpu['name']}, driver {gpu.get('driver')}, CUDA {gpu.get('cuda')}")
for f in failures:
    print("FAIL:", f)
print("gpu_check: " + ("FAILED" if failures else "all checks passed"))
sys.exit(1 if failures else 0)
PY
