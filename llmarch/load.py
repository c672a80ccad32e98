"""Load sweeps against an API server: fixed concurrency levels and Poisson rates.

A *concurrency* level keeps ``c`` requests in flight until ``requests`` have
been sent. A *rate* level sends ``requests`` requests whose gaps are drawn
from an exponential distribution of mean ``1 / rate`` seconds (a Poisson
process, seeded), however many are then in flight.

Per level, over its wall time ``T`` (first request sent -> last response
done):

- request throughput = completed requests / T (req/s); failures are counted
  apart, never dropped;
- output throughput = output tokens of completed requests / T (tokens/s);
- TTFT, TPOT and end-to-end latency per request (see ``llmarch.streaming``),
  as mean, median, p90 and p99 over completed requests;
- goodput = completed requests meeting every given target (TTFT <= the TTFT
  target, TPOT <= the TPOT target; a one-token request has no TPOT and meets
  that target) / T (req/s).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from llmarch.backends.base import GenerationSample
from llmarch.backends.openai_backend import OpenAIBackend
from llmarch.errors import ConfigError
from llmarch.stats import summarize


@dataclass
class LoadSettings:
    """The levels to sweep and the requests each sends."""

    concurrency: list[int]
    rates: list[float]
    requests: int = 20
    prompt_tokens: int = 128
    new_tokens: int = 64
    seed: int = 0
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None

    def __post_init__(self) -> None:
        if not self.concurrency and not self.rates:
            raise ConfigError("give --concurrency levels, --rate levels, or both")
        if any(c < 1 for c in self.concurrency):
            raise ConfigError("--concurrency values must be at least 1")
        if any(not math.isfinite(r) or r <= 0 for r in self.rates):
            raise ConfigError(
                "--rate values must be finite numbers above 0 (requests per second)"
            )
        for name in ("slo_ttft_s", "slo_tpot_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                option = "--slo-ttft-ms" if name == "slo_ttft_s" else "--slo-tpot-ms"
                raise ConfigError(f"{option} must be a number above 0")
        if self.requests < 1:
            raise ConfigError("--requests must be at least 1")
        if self.prompt_tokens < 1 or self.new_tokens < 1:
            raise ConfigError("--prompt-tokens and --new-tokens must be at least 1")

    def levels(self) -> list[tuple[str, float]]:
        return [("concurrency", float(c)) for c in self.concurrency] + [
            ("rate", r) for r in self.rates
        ]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def poisson_offsets(n: int, rate: float, seed: int) -> list[float]:
    """Send times (s after the start) of ``n`` requests at ``rate`` per second."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate)
    return out


async def _run_level(
    backend: OpenAIBackend,
    kind: str,
    value: float,
    settings: LoadSettings,
    on_sample: Callable[[GenerationSample], None] | None,
) -> tuple[list[GenerationSample], float]:
    texts = backend.prompts(settings.prompt_tokens, settings.requests)
    p, n = settings.prompt_tokens, settings.new_tokens
    samples: list[GenerationSample] = []

    def done(sample: GenerationSample) -> GenerationSample:
        samples.append(sample)
        if on_sample is not None:  # stored now: an interrupt keeps it
            on_sample(sample)
        return sample

    async with backend._client() as client:
        start = time.perf_counter()
        if kind == "concurrency":
            c = int(value)
            pending = list(range(len(texts)))

            async def worker() -> None:
                while pending:
                    i = pending.pop(0)
                    done(await backend._one(client, texts[i], p, n, c))

            await asyncio.gather(*(worker() for _ in range(min(c, len(texts)))))
        else:
            offsets = poisson_offsets(len(texts), value, settings.seed)

            async def send(i: int) -> None:
                await asyncio.sleep(max(0.0, start + offsets[i] - time.perf_counter()))
                done(await backend._one(client, texts[i], p, n, None, rate=value))

            await asyncio.gather(*(send(i) for i in range(len(texts))))
        duration = time.perf_counter() - start
    return samples, duration


def run_level(
    backend: OpenAIBackend,
    kind: str,
    value: float,
    settings: LoadSettings,
    *,
    on_sample: Callable[[GenerationSample], None] | None = None,
) -> tuple[list[GenerationSample], float]:
    """Run one level; returns its samples and its wall time in seconds.

    ``on_sample`` receives each request as soon as it is done.
    """
    return asyncio.run(_run_level(backend, kind, value, settings, on_sample))


def summarize_level(
    rows: list[dict[str, Any]],
    duration_s: float,
    *,
    slo_ttft_s: float | None,
    slo_tpot_s: float | None,
) -> dict[str, Any]:
    """The level's figures from its stored sample rows (see the module doc)."""
    ok = [r for r in rows if not r.get("error")]
    good = [
        r
        for r in ok
        if (slo_ttft_s is None or r["ttft_s"] <= slo_ttft_s)
        and (slo_tpot_s is None or r["tpot_s"] is None or r["tpot_s"] <= slo_tpot_s)
    ]
    out: dict[str, Any] = {
        "requests": len(rows),
        "completed": len(ok),
        "failed": len(rows) - len(ok),
        "errors": sorted({r["error"] for r in rows if r.get("error")}),
        "duration_s": duration_s,
        "request_throughput": len(ok) / duration_s if duration_s > 0 else None,
        "output_throughput": (
            sum(r["output_tokens"] or 0 for r in ok) / duration_s
            if duration_s > 0
            else None
        ),
        "goodput": len(good) / duration_s if duration_s > 0 else None,
    }
    for metric in ("ttft_s", "tpot_s", "e2e_s"):
        s = summarize([r[metric] for r in ok if r[metric] is not None])
        for stat in ("mean", "median", "p90", "p99"):
            out[f"{metric}_{stat}"] = getattr(s, stat) if s else None
    return out
