"""Latency and throughput of one generation, from per-token timestamps.

A generation of ``N`` new tokens for a batch of ``B`` prompts of ``P`` tokens
each is described by the clock reading ``t0`` taken just before the request
starts and the readings ``t1 <= ... <= tN`` taken when each new token (one per
sequence of the batch) is available on the host, after the device has been
synchronised. From those:

- TTFT (s) = ``t1 - t0``: prompt processing plus the first new token.
- TPOT (s) = ``(tN - t1) / (N - 1)``: mean time per output token after the
  first; absent when ``N == 1``.
- end-to-end latency (s) = ``tN - t0``.
- prefill tokens/s = ``B * P / TTFT``.
- decode tokens/s = ``B * (N - 1) / (tN - t1)``, that is ``B / TPOT``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

METRIC_UNITS = {
    "ttft_s": "s",
    "tpot_s": "s",
    "e2e_s": "s",
    "prefill_tps": "tokens/s",
    "decode_tps": "tokens/s",
}


@dataclass(frozen=True)
class TokenTimings:
    """The figures derived from one generation's token timestamps."""

    ttft_s: float
    tpot_s: float | None
    e2e_s: float
    prefill_tps: float | None
    decode_tps: float | None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def timings_from_token_times(
    t0: float,
    token_times: Sequence[float],
    *,
    prompt_tokens: int,
    batch: int = 1,
    tokens: int | None = None,
) -> TokenTimings:
    """Compute TTFT, TPOT, end-to-end latency and tokens/s from timestamps.

    ``tokens`` is the number of new tokens when a reading can cover several
    (an API chunk holding two tokens); by default one token per reading.
    """
    if not token_times:
        raise ValueError("a generation without any new token has no timings")
    if (
        any(b < a for a, b in zip(token_times, token_times[1:], strict=False))
        or token_times[0] < t0
    ):
        raise ValueError("token timestamps must not go back in time")
    if prompt_tokens < 1 or batch < 1:
        raise ValueError("prompt_tokens and batch must be at least 1")

    n = len(token_times) if tokens is None else tokens
    ttft = token_times[0] - t0
    decode_span = token_times[-1] - token_times[0]
    tpot = decode_span / (n - 1) if n > 1 else None
    decode_tps = batch * (n - 1) / decode_span if n > 1 and decode_span > 0 else None
    return TokenTimings(
        ttft_s=ttft,
        tpot_s=tpot,
        e2e_s=token_times[-1] - t0,
        prefill_tps=batch * prompt_tokens / ttft if ttft > 0 else None,
        decode_tps=decode_tps,
    )
