"""How close a run came to the machine's limits, and what a model would do.

A decode step reads every active weight once and the whole KV cache; a
prefill is matrix multiplies over every prompt token. ``Work`` holds what a
model must read and compute (from the architecture arithmetic and the
loaded weight bytes), so that, for a setting of ``B`` prompts of ``P`` tokens
and ``N`` new tokens:

- **bytes per decode step** = active weight bytes + the mean, over the steps
  that make new tokens 2..N, of the KV cache the step reads: the step that
  makes token ``i`` attends ``P + i - 1`` tokens per row, so
  ``mean_{i=2..N} kv_bytes(P + i - 1, B)`` (the same arithmetic as the
  computed KV column, windows included). Active weight bytes = loaded weight
  bytes x active compute parameters / all parameters (all of them for a
  dense model with tied embeddings; MoE reads only the routed experts; an
  untied input embedding is only looked up).
- **MBU** (model bandwidth utilisation) = bytes per decode step x decode
  steps/s / read bandwidth, where decode steps/s = decode tokens/s / B.
- **prefill FLOPs** = ``2 B P (A - V H)`` for the matrix multiplies of the
  decoder (``A`` active compute parameters, ``V H`` the output projection) +
  attention ``sum over layers 2 B q_heads (d_k + d_v) pairs(P, W)`` with
  ``pairs = sum_{t=1..P} min(t, W)`` causal query-key pairs (``W`` the
  window; no window: ``P (P + 1) / 2``) + ``2 B V H`` for the logits of the
  last position only (generation computes no others).
- **MFU** (model FLOPs utilisation) = prefill FLOPs / TTFT / matmul FLOP/s of
  the run's dtype. TTFT includes the first new token, as in the bench table.

Predictions invert these: decode tokens/s = ``B e_bw BW / bytes per step``
and TTFT = ``active weight bytes / (e_bw BW) + FLOPs / (e_fl F)``: a prefill
reads every weight once and does its matrix multiplies. ``e_bw`` is the
median MBU of measured runs on the same machine; ``e_fl`` the median
*prefill compute efficiency* = FLOPs / ((TTFT - weight read time) x F),
the share of the matmul peak the prefill reached once the weight read is
taken out (MFU counts the whole TTFT). Without measured runs: defaults.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from llmarch.arch import Architecture, LayerArch

# Efficiencies assumed when no run on this machine says otherwise: what
# well-tuned runtimes typically reach (decode ~60% of bandwidth; prefill
# ~40% of peak matmul FLOP/s at long prompts).
DEFAULT_BW_EFFICIENCY = 0.6
DEFAULT_FLOPS_EFFICIENCY = 0.4


def causal_pairs(tokens: int, window: int | None) -> int:
    """Query-key pairs a causal prefill of ``tokens`` tokens scores.

    Token ``t`` (1-based) attends ``min(t, W)`` tokens: itself and up to
    ``W - 1`` before it, the window transformers applies.
    """
    if tokens < 0:
        raise ValueError("tokens must be >= 0")
    if window is None or tokens <= window:
        return tokens * (tokens + 1) // 2
    return window * (window + 1) // 2 + (tokens - window) * window


@dataclass(frozen=True)
class Work:
    """What one forward pass of a model reads and computes."""

    layers: tuple[LayerArch, ...]
    params_total: int
    params_active_compute: int
    lm_head_params: int  # vocab x hidden: the output projection
    weight_bytes: int  # bytes of the loaded weights
    kv_bytes_per_element: int

    @classmethod
    def from_arch(
        cls, a: Architecture, *, weight_bytes: int, kv_bytes_per_element: int
    ) -> Work:
        return cls(
            layers=tuple(a.layers),
            params_total=a.params_total,
            params_active_compute=a.params_active_compute,
            lm_head_params=a.vocab_size * a.hidden_size,
            weight_bytes=int(weight_bytes),
            kv_bytes_per_element=int(kv_bytes_per_element),
        )

    # -- storage: layers grouped, so a 64-layer model stays a few lines -----

    def as_dict(self) -> dict[str, Any]:
        groups = Counter(self.layers)
        seen: list[LayerArch] = []
        for layer in self.layers:
            if layer not in seen:
                seen.append(layer)
        return {
            "params_total": self.params_total,
            "params_active_compute": self.params_active_compute,
            "lm_head_params": self.lm_head_params,
            "weight_bytes": self.weight_bytes,
            "kv_bytes_per_element": self.kv_bytes_per_element,
            "layers": [{"count": groups[x], **asdict(x)} for x in seen],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Work:
        layers: list[LayerArch] = []
        for g in d["layers"]:
            g = dict(g)
            count = g.pop("count")
            layers.extend([LayerArch(**g)] * count)
        return cls(
            layers=tuple(layers),
            params_total=d["params_total"],
            params_active_compute=d["params_active_compute"],
            lm_head_params=d["lm_head_params"],
            weight_bytes=d["weight_bytes"],
            kv_bytes_per_element=d["kv_bytes_per_element"],
        )

    # -- bytes ----------------------------------------------------------------

    @property
    def active_weight_bytes(self) -> float:
        if self.params_total <= 0:
            return float(self.weight_bytes)
        return self.weight_bytes * self.params_active_compute / self.params_total

    def kv_bytes(self, tokens: int, batch: int = 1) -> int:
        per_row = sum(x.cached_elements() * x.held_tokens(tokens) for x in self.layers)
        return batch * per_row * self.kv_bytes_per_element

    def decode_step_bytes(
        self, prompt_tokens: int, new_tokens: int, batch: int = 1
    ) -> float | None:
        """Mean bytes a decode step reads; None when there is no decode step."""
        if new_tokens < 2:
            return None
        kv = [
            self.kv_bytes(prompt_tokens + i - 1, batch)
            for i in range(2, new_tokens + 1)
        ]
        return self.active_weight_bytes + sum(kv) / len(kv)

    # -- FLOPs ----------------------------------------------------------------

    def attention_flops(self, prompt_tokens: int, batch: int = 1) -> int:
        return batch * sum(
            2
            * x.q_heads
            * (x.head_dim + x.v_head_dim)
            * causal_pairs(prompt_tokens, x.window)
            for x in self.layers
        )

    def prefill_flops(self, prompt_tokens: int, batch: int = 1) -> int:
        body = self.params_active_compute - self.lm_head_params
        return (
            2 * batch * prompt_tokens * body
            + self.attention_flops(prompt_tokens, batch)
            + 2 * batch * self.lm_head_params
        )


# -- utilisation of a measured row -------------------------------------------


def mbu(
    work: Work,
    *,
    prompt_tokens: int,
    new_tokens: int,
    batch: int,
    decode_tps: float | None,
    bandwidth: float | None,
) -> float | None:
    """Model bandwidth utilisation of a measured decode (0..1, can exceed 1)."""
    step = work.decode_step_bytes(prompt_tokens, new_tokens, batch)
    if step is None or not decode_tps or not bandwidth:
        return None
    return step * (decode_tps / batch) / bandwidth


def mfu(
    work: Work,
    *,
    prompt_tokens: int,
    batch: int,
    ttft_s: float | None,
    flops: float | None,
) -> float | None:
    """Model FLOPs utilisation of a measured prefill (0..1)."""
    if not ttft_s or not flops:
        return None
    return work.prefill_flops(prompt_tokens, batch) / ttft_s / flops


def prefill_efficiency(
    work: Work,
    *,
    prompt_tokens: int,
    batch: int,
    ttft_s: float | None,
    flops: float | None,
    bw_efficiency: float | None,
    bandwidth: float | None,
) -> float | None:
    """FLOPs / ((TTFT - active weight bytes / (e_bw BW)) x peak FLOP/s)."""
    if not ttft_s or not flops or not bw_efficiency or not bandwidth:
        return None
    compute_s = ttft_s - work.active_weight_bytes / (bw_efficiency * bandwidth)
    if compute_s <= 0:
        return None
    return work.prefill_flops(prompt_tokens, batch) / compute_s / flops


def run_work(run: dict[str, Any]) -> Work | None:
    """The Work stored with a run (``metadata.work``), if any."""
    stored = (run.get("metadata") or {}).get("work")
    if not stored:
        return None
    try:
        return Work.from_dict(stored)
    except (KeyError, TypeError):
        return None


def run_limits(run: dict[str, Any]) -> dict[str, Any] | None:
    """The hardware limits stored with a run (``metadata.hardware``)."""
    return (run.get("metadata") or {}).get("hardware") or None


def peak_flops(limits: dict[str, Any], dtype: str) -> float | None:
    table = limits.get("matmul_flops") or {}
    return table.get(dtype) or (table.get("bfloat16") if dtype == "float16" else None)


def add_utilisation(rows: list[dict[str, Any]], run: dict[str, Any]) -> None:
    """Add ``mbu``, ``mfu`` and ``prefill_eff`` to summary rows of ``run``
    (None when unknown)."""
    work, lim = run_work(run), run_limits(run)
    for row in rows:
        row["mbu"] = row["mfu"] = row["prefill_eff"] = None
        if work is None or lim is None:
            continue
        b = int(row.get("batch") or 1)
        row["mbu"] = mbu(
            work,
            prompt_tokens=row["prompt_tokens"],
            new_tokens=row["new_tokens"],
            batch=b,
            decode_tps=row.get("decode_tps_median"),
            bandwidth=lim.get("read_bandwidth"),
        )
        row["mfu"] = mfu(
            work,
            prompt_tokens=row["prompt_tokens"],
            batch=b,
            ttft_s=row.get("ttft_s_median"),
            flops=peak_flops(lim, run.get("dtype") or ""),
        )
        row["prefill_eff"] = prefill_efficiency(
            work,
            prompt_tokens=row["prompt_tokens"],
            batch=b,
            ttft_s=row.get("ttft_s_median"),
            flops=peak_flops(lim, run.get("dtype") or ""),
            bw_efficiency=row["mbu"],
            bandwidth=lim.get("read_bandwidth"),
        )


# -- prediction ----------------------------------------------------------------


@dataclass
class Efficiency:
    """Fractions of the limits a run reaches, and where they come from."""

    bandwidth: float = DEFAULT_BW_EFFICIENCY
    flops: float = DEFAULT_FLOPS_EFFICIENCY
    source: str = "defaults"
    rows: int = 0
    details: dict[str, Any] = field(default_factory=dict)


def efficiency_from_rows(rows: Iterable[dict[str, Any]]) -> Efficiency:
    """Median MBU and prefill compute efficiency over summary rows that have
    them; defaults otherwise."""
    rows = list(rows)
    bw = [r["mbu"] for r in rows if r.get("mbu")]
    fl = [r["prefill_eff"] for r in rows if r.get("prefill_eff")]
    if not bw and not fl:
        return Efficiency()
    return Efficiency(
        bandwidth=statistics.median(bw) if bw else DEFAULT_BW_EFFICIENCY,
        flops=statistics.median(fl) if fl else DEFAULT_FLOPS_EFFICIENCY,
        source=f"median of {max(len(bw), len(fl))} measured settings on this machine",
        rows=max(len(bw), len(fl)),
    )


@dataclass(frozen=True)
class Prediction:
    decode_tps: float | None
    ttft_s: float
    step_bytes: float | None
    prefill_flops: int


def predict(
    work: Work,
    *,
    prompt_tokens: int,
    new_tokens: int,
    batch: int,
    bandwidth: float,
    flops: float,
    eff: Efficiency,
) -> Prediction:
    """Decode tokens/s and TTFT of a setting from limits and efficiencies."""
    step = work.decode_step_bytes(prompt_tokens, new_tokens, batch)
    decode = batch * eff.bandwidth * bandwidth / step if step else None
    f = work.prefill_flops(prompt_tokens, batch)
    ttft = work.active_weight_bytes / (eff.bandwidth * bandwidth) + f / (
        eff.flops * flops
    )
    return Prediction(decode, ttft, step, f)
