"""What every API backend shares: retries, and turning a stream into a sample."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from llmarch.backends.base import GenerationSample
from llmarch.streaming import StreamEvent, request_metrics

# Retries of 429, 5xx, time-outs and lost connections: exponential back-off
# from BACKOFF_S unless the server's Retry-After says otherwise, never above
# MAX_WAIT_S per wait.
BACKOFF_S = 0.5
MAX_WAIT_S = 30.0

# One attempt: (events, error or None, whether to retry, seconds to wait).
Attempt = Callable[
    [], Awaitable[tuple[list[StreamEvent], str | None, bool, float | None]]
]


async def with_retries(
    attempt: Attempt, *, max_retries: int
) -> tuple[float, list[StreamEvent], str | None]:
    """Run ``attempt`` until it succeeds, fails for good or retries run out.

    Returns the clock at the first attempt (so a retried request's TTFT
    includes its waiting), the last attempt's events and its error. A stream
    that broke after text arrived is never retried.
    """
    t0 = time.perf_counter()
    tries = 0
    while True:
        tries += 1
        events, error, retryable, wait = await attempt()
        if error is None or events or not retryable or tries > max_retries:
            break
        await asyncio.sleep(min(wait or BACKOFF_S * 2 ** (tries - 1), MAX_WAIT_S))
    if error is not None and tries > 1:
        error += f" after {tries} attempts"
    if error is not None and any(e.text for e in events):
        error += " (stream broke after text arrived)"
    return t0, events, error


def api_sample(
    t0: float,
    events: list[StreamEvent],
    error: str | None,
    *,
    prompt_tokens: int,
    new_tokens: int,
    concurrency: int | None,
    rate: float | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> GenerationSample:
    """One request's sample, measured with ``llmarch.streaming``'s definitions."""
    m = request_metrics(t0, events, count_tokens=count_tokens, error=error)
    return GenerationSample(
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        batch=1,
        t0=t0,
        token_times=[e.t for e in events if e.text] if m.ok else [],
        output_tokens=m.output_tokens,
        tokens_source=m.tokens_source,
        concurrency=concurrency,
        rate=rate,
        error=None if m.ok else m.error,
        text=m.text,
    )
