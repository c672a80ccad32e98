"""First conversion of the embedded GGUF against a load from llmarch's cache.

Each measurement runs in a fresh Python process, so neither benefits from the
other's imports. The first process converts into an empty cache folder
(assemble the GGUF, de-quantise, save); the next ones load the cached folder.
Times cover ``TransformersBackend.load()`` only (not interpreter start-up).
The target: a cached load at least 5 times faster than the first conversion.

    python benchmarks/model_cache.py [--loads 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

TARGET_SPEEDUP = 5.0
CHILD = """
import json, time
from llmarch.backends.transformers_backend import TransformersBackend
from llmarch.models import resolve
b = TransformersBackend(resolve("gemma-3-270m"), device="cpu", dtype="float32")
t = time.perf_counter()
info = b.load()
print(json.dumps({"total_s": time.perf_counter() - t, "converted": info.converted,
                  "convert_s": info.convert_s, "load_s": info.load_s}))
"""


def child(cache: str) -> dict:
    env = dict(os.environ, LLMARCH_CACHE_DIR=cache, HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="llmarch-cache-") as cache:
        first = child(cache)
        cached = [child(cache) for _ in range(args.loads)]
    assert first["converted"] and not any(c["converted"] for c in cached)
    cached_s = statistics.median(c["total_s"] for c in cached)
    speedup = first["total_s"] / cached_s
    result = {
        "first_conversion_s": first["total_s"],
        "convert_s": first["convert_s"],
        "cached_load_s": [c["total_s"] for c in cached],
        "cached_median_s": cached_s,
        "speedup": speedup,
        "target": TARGET_SPEEDUP,
        "passed": speedup >= TARGET_SPEEDUP,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"first run (assemble + convert + load): {first['total_s']:.1f} s")
        print("cached loads: " + ", ".join(f"{c['total_s']:.2f} s" for c in cached))
        print(
            f"speed-up {speedup:.1f}x ({'PASS' if result['passed'] else 'FAIL'}, "
            f"needs >= {TARGET_SPEEDUP:.0f}x)"
        )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
