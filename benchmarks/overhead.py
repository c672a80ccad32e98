"""llmarch's decode tokens/s against a bare ``model.generate`` timing.

Both use the same loaded model, prompt, batch and number of new tokens, in
one process, interleaved so that drifts in machine speed hit both alike.

Bare figure: ``generate`` is timed for ``N`` new tokens and for 1 new token;
decode tokens/s = ``B * (N - 1) / (T_N - T_1)``. llmarch's figure is the decode
tokens/s of ``llmarch bench`` (per-token timestamps). The check passes when
the ratio of medians is at least 0.95.

    python benchmarks/overhead.py [--model gemma-3-270m] [--prompt-tokens 128]
        [--new-tokens 64] [--batch 1] [--trials 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from llmarch.backends.transformers_backend import TransformersBackend
from llmarch.models import resolve
from llmarch.prompts import prompt_token_ids

THRESHOLD = 0.95


def bare_generate_seconds(model, input_ids, new_tokens: int) -> float:
    attention_mask = torch.ones_like(input_ids)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=new_tokens,
            do_sample=False,
        )
    elapsed = time.perf_counter() - t0
    assert out.shape[1] == input_ids.shape[1] + new_tokens
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    backend = TransformersBackend(resolve(args.model), device="auto", dtype="auto")
    backend.load()
    model = backend.model  # EOS removed by llmarch: both runs produce N tokens
    rows = prompt_token_ids(
        backend.tokenizer, prompt_tokens=args.prompt_tokens, batch=args.batch
    )
    input_ids = torch.tensor(rows, device=backend.device)

    # warm-up both paths
    bare_generate_seconds(model, input_ids, 2)
    backend.generate(prompt_tokens=args.prompt_tokens, new_tokens=2, batch=args.batch)

    bare, ours = [], []
    for _ in range(args.trials):
        t_n = bare_generate_seconds(model, input_ids, args.new_tokens)
        t_1 = bare_generate_seconds(model, input_ids, 1)
        bare.append(args.batch * (args.new_tokens - 1) / (t_n - t_1))
        sample = backend.generate(
            prompt_tokens=args.prompt_tokens,
            new_tokens=args.new_tokens,
            batch=args.batch,
        )
        ours.append(sample.timings.decode_tps)

    ratio = statistics.median(ours) / statistics.median(bare)
    result = {
        "model": args.model,
        "device": backend.device,
        "dtype": backend.dtype,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "batch": args.batch,
        "trials": args.trials,
        "bare_decode_tps": bare,
        "llmarch_decode_tps": ours,
        "bare_median": statistics.median(bare),
        "llmarch_median": statistics.median(ours),
        "ratio": ratio,
        "threshold": THRESHOLD,
        "passed": ratio >= THRESHOLD,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"model {args.model} on {backend.device} ({backend.dtype}), "
            f"P={args.prompt_tokens} N={args.new_tokens} B={args.batch}, "
            f"{args.trials} trials"
        )
        print("bare generate decode tok/s: " + ", ".join(f"{x:.2f}" for x in bare))
        print("llmarch decode tok/s:       " + ", ".join(f"{x:.2f}" for x in ours))
        print(
            f"medians: bare {result['bare_median']:.3f}, llmarch "
            f"{result['llmarch_median']:.3f}; ratio {ratio:.3f} "
            f"({'PASS' if result['passed'] else 'FAIL'}, needs >= {THRESHOLD})"
        )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
